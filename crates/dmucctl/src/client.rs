//! A blocking client of the control protocol: connect, `hello`, requests, streams. Blocking
//! std I/O keeps `dmucctl` small and quick to start; it does one thing at a time anyway.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use dmuc_proto::{Body, ErrorReply, HelloResult, MAX_FRAME, Reply, Request, StreamItem, Verb};
use serde_json::Value;

/// Why a call did not return a result.
#[derive(Debug)]
pub enum CallError {
    /// Nobody answers on the socket.
    Unreachable {
        /// The socket tried.
        path: PathBuf,
        /// The OS error.
        err: std::io::Error,
    },
    /// The daemon answered with an error.
    Remote(ErrorReply),
    /// The connection broke or the daemon sent nonsense.
    Broken(String),
}

/// A connection that has said hello.
pub struct Client {
    wr: UnixStream,
    rd: BufReader<UnixStream>,
    next: u64,
    /// The daemon's answer to hello.
    pub hello: HelloResult,
}

impl Client {
    /// Connects and says hello.
    pub fn connect(path: &Path) -> Result<Client, CallError> {
        let wr = UnixStream::connect(path).map_err(|err| CallError::Unreachable {
            path: path.to_path_buf(),
            err,
        })?;
        let rd = BufReader::new(
            wr.try_clone()
                .map_err(|e| CallError::Broken(e.to_string()))?,
        );
        let mut c = Client {
            wr,
            rd,
            next: 1,
            hello: HelloResult {
                version: String::new(),
                server: String::new(),
                pid: 0,
                uid: 0,
                can_write: false,
            },
        };
        let v = c.call(Verb::Hello {
            version: dmuc_proto::VERSION.into(),
            client: Some(format!("dmucctl {}", env!("CARGO_PKG_VERSION"))),
        })?;
        c.hello = serde_json::from_value(v).map_err(|e| CallError::Broken(e.to_string()))?;
        Ok(c)
    }

    /// Sends a request; returns its id.
    pub fn send(&mut self, verb: Verb) -> Result<u64, CallError> {
        let id = self.next;
        self.next += 1;
        let mut line = serde_json::to_string(&Request { id, verb })
            .map_err(|e| CallError::Broken(e.to_string()))?;
        line.push('\n');
        self.wr
            .write_all(line.as_bytes())
            .map_err(|e| CallError::Broken(format!("cannot send: {e}")))?;
        Ok(id)
    }

    /// The next frame; `None` when the daemon closed the connection.
    pub fn frame(&mut self) -> Result<Option<Reply>, CallError> {
        let mut buf = Vec::new();
        let n = (&mut self.rd)
            .take(MAX_FRAME as u64)
            .read_until(b'\n', &mut buf)
            .map_err(|e| CallError::Broken(format!("cannot read: {e}")))?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf)
            .map(Some)
            .map_err(|e| CallError::Broken(format!("bad frame from dmucd: {e}")))
    }

    /// Sends a request and returns its result, passing stream items to `each` (which returns
    /// false to stop reading: the connection is then dropped).
    pub fn stream(
        &mut self,
        verb: Verb,
        mut each: impl FnMut(StreamItem) -> bool,
    ) -> Result<Value, CallError> {
        let id = self.send(verb)?;
        loop {
            let Some(r) = self.frame()? else {
                return Err(CallError::Broken("dmucd closed the connection".into()));
            };
            if r.id.is_some() && r.id != Some(id) {
                continue;
            }
            match r.body {
                Body::Result(v) => return Ok(v),
                Body::Error(e) => return Err(CallError::Remote(e)),
                Body::Stream(item) => {
                    if !each(item) {
                        return Ok(Value::Null);
                    }
                }
            }
        }
    }

    /// Sends a request and returns its result.
    pub fn call(&mut self, verb: Verb) -> Result<Value, CallError> {
        self.stream(verb, |_| true)
    }

    /// Waits until the daemon closes the connection (it exits after `shutdown`).
    pub fn wait_closed(&mut self) {
        while let Ok(Some(_)) = self.frame() {}
    }
}
