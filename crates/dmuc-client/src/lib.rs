//! A blocking client of the control protocol: connect, `hello`, requests, streams, and what
//! dmucctl's programs say about a failed call. Blocking std I/O keeps `dmucctl` small and
//! quick to start; it does one thing at a time anyway.

#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// A connection that has said hello (its answer is read with the first reply).
pub struct Client {
    wr: UnixStream,
    rd: BufReader<UnixStream>,
    next: u64,
    /// Bytes of a frame not complete yet (a read timeout may cut one).
    partial: Vec<u8>,
    /// The daemon's answer to hello.
    hello: HelloResult,
    /// The id of a hello sent but not answered yet: the first request follows it without
    /// waiting (one round trip less for a one-shot `dmucctl status`), its reply is taken in
    /// passing.
    hello_pending: Option<u64>,
    /// The hello line, held back to go out in one write with the first request.
    unsent: Vec<u8>,
    /// The socket's read timeout as last set (setting it is a system call per frame).
    timeout: Option<Duration>,
}

impl Client {
    /// Connects and says hello.
    pub fn connect(path: &Path) -> Result<Client, CallError> {
        let wr = UnixStream::connect(path).map_err(|err| CallError::Unreachable {
            path: path.to_path_buf(),
            err,
        })?;
        // Room for a whole status reply of a few hundred components in one read.
        let rd = BufReader::with_capacity(
            64 * 1024,
            wr.try_clone()
                .map_err(|e| CallError::Broken(e.to_string()))?,
        );
        let mut c = Client {
            wr,
            rd,
            next: 1,
            partial: Vec::new(),
            hello: HelloResult {
                version: String::new(),
                server: String::new(),
                pid: 0,
                uid: 0,
                can_write: false,
            },
            hello_pending: None,
            unsent: Vec::new(),
            timeout: None,
        };
        let id = c.send(Verb::Hello {
            version: dmuc_proto::VERSION.into(),
            client: Some(format!("dmucctl {}", env!("CARGO_PKG_VERSION"))),
        })?;
        c.hello_pending = Some(id);
        Ok(c)
    }

    /// The daemon's answer to hello (waiting for it if no request has yet).
    pub fn hello(&mut self) -> Result<&HelloResult, CallError> {
        self.flush()?;
        while self.hello_pending.is_some() {
            let Some(r) = self.frame()? else {
                return Err(CallError::Broken("dmucd closed the connection".into()));
            };
            self.take_hello(r)?;
        }
        Ok(&self.hello)
    }

    /// Takes the hello reply if `r` is it; true when it was.
    fn take_hello(&mut self, r: Reply) -> Result<bool, CallError> {
        if self.hello_pending.is_none() || r.id != self.hello_pending {
            return Ok(false);
        }
        self.hello_pending = None;
        match r.body {
            Body::Result(v) => {
                self.hello =
                    serde_json::from_value(v).map_err(|e| CallError::Broken(e.to_string()))?;
                Ok(true)
            }
            Body::Error(e) => Err(CallError::Remote(e)),
            Body::Stream(_) => Ok(true),
        }
    }

    /// Sends a request; returns its id.
    pub fn send(&mut self, verb: Verb) -> Result<u64, CallError> {
        let id = self.next;
        self.next += 1;
        let hold = matches!(verb, Verb::Hello { .. });
        let mut line = serde_json::to_string(&Request { id, verb })
            .map_err(|e| CallError::Broken(e.to_string()))?;
        line.push('\n');
        self.unsent.extend_from_slice(line.as_bytes());
        if !hold {
            self.flush()?;
        }
        Ok(id)
    }

    fn read_timeout(&mut self, t: Option<Duration>) {
        if t != self.timeout && self.rd.get_ref().set_read_timeout(t).is_ok() {
            self.timeout = t;
        }
    }

    /// Writes what `send` held back.
    fn flush(&mut self) -> Result<(), CallError> {
        if !self.unsent.is_empty() {
            let r = self.wr.write_all(&self.unsent);
            self.unsent.clear();
            r.map_err(|e| CallError::Broken(format!("cannot send: {e}")))?;
        }
        Ok(())
    }

    /// The next frame; `None` when the daemon closed the connection.
    pub fn frame(&mut self) -> Result<Option<Reply>, CallError> {
        match self.frame_within(None)? {
            Some(f) => Ok(f),
            None => Err(CallError::Broken("timed out".into())),
        }
    }

    /// The next frame, waiting at most `timeout`: `Ok(None)` when it passed, `Ok(Some(None))`
    /// when the daemon closed the connection.
    pub fn frame_within(
        &mut self,
        timeout: Option<Duration>,
    ) -> Result<Option<Option<Reply>>, CallError> {
        self.flush()?;
        self.read_timeout(timeout);
        let room = (MAX_FRAME as u64).saturating_sub(self.partial.len() as u64);
        let got = (&mut self.rd)
            .take(room)
            .read_until(b'\n', &mut self.partial);
        match got {
            Ok(0) if self.partial.is_empty() => return Ok(Some(None)),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(None); // what was read so far stays in `partial`
            }
            Err(e) => return Err(CallError::Broken(format!("cannot read: {e}"))),
        }
        let buf = std::mem::take(&mut self.partial);
        serde_json::from_slice(&buf)
            .map(|r| Some(Some(r)))
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
            if self.hello_pending.is_some() && r.id == self.hello_pending {
                self.take_hello(r)?; // a refused hello is the answer to this call too
                continue;
            }
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

    /// Sends a request whose answer is one result frame, parsed straight into `T`: one pass
    /// over the bytes instead of three (`Reply`'s flattened body buffers the frame, then the
    /// `Value`, then the type). For `dmucctl status` that was most of its own CPU time.
    pub fn call_as<T: serde::de::DeserializeOwned>(&mut self, verb: Verb) -> Result<T, CallError> {
        /// A result or error frame, typed.
        #[derive(serde::Deserialize)]
        struct Typed<T> {
            id: Option<u64>,
            result: Option<T>,
            error: Option<dmuc_proto::ErrorReply>,
        }
        let id = self.send(verb)?;
        self.hello()?; // its answer comes first
        loop {
            self.read_timeout(None);
            let room = (MAX_FRAME as u64).saturating_sub(self.partial.len() as u64);
            match (&mut self.rd)
                .take(room)
                .read_until(b'\n', &mut self.partial)
            {
                Ok(0) => return Err(CallError::Broken("dmucd closed the connection".into())),
                Ok(_) => {}
                Err(e) => return Err(CallError::Broken(format!("cannot read: {e}"))),
            }
            let buf = std::mem::take(&mut self.partial);
            let f: Typed<T> = serde_json::from_slice(&buf)
                .map_err(|e| CallError::Broken(format!("unexpected reply: {e}")))?;
            if f.id.is_some() && f.id != Some(id) {
                continue;
            }
            return match (f.result, f.error) {
                (Some(v), _) => Ok(v),
                (None, Some(e)) => Err(CallError::Remote(e)),
                (None, None) => Err(CallError::Broken("a reply without result".into())),
            };
        }
    }

    /// Waits until the daemon closes the connection (it exits after `shutdown`).
    pub fn wait_closed(&mut self) {
        while let Ok(Some(_)) = self.frame() {}
    }
}

/// Exit code: done.
pub const OK: u8 = 0;
/// Exit code: the operation failed.
pub const FAILED: u8 = 1;
/// Exit code: a usage error (as clap's).
pub const USAGE: u8 = 2;
/// Exit code: no daemon answers.
pub const UNREACHABLE: u8 = 3;

/// The control socket when neither `--socket` nor `DMUC_SOCKET` names one.
pub fn default_socket() -> PathBuf {
    let uid = nix::unistd::geteuid();
    let env = dmuc_config::paths::PathEnv {
        is_root: uid.is_root(),
        uid: uid.as_raw(),
        xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        xdg_state_home: None,
        home: None,
    };
    dmuc_config::paths::Paths::defaults(&env).socket
}

/// Says why a call failed, on stderr; returns the exit code for it.
pub fn report(e: &CallError) -> u8 {
    match e {
        CallError::Unreachable { path, err } => {
            eprintln!("dmucctl: cannot reach dmucd at {}: {err}", path.display());
            eprintln!(
                "hint: is dmucd running? Start it with `dmucd --config FILE`, or point at its socket with --socket or DMUC_SOCKET"
            );
            UNREACHABLE
        }
        CallError::Remote(r) => {
            eprintln!("dmucctl: {}", r.message);
            if let Some(h) = &r.hint {
                eprintln!("hint: {h}");
            }
            FAILED
        }
        CallError::Broken(m) => {
            eprintln!("dmucctl: {m}");
            FAILED
        }
    }
}

/// The tmux dmucd runs: `DMUC_TMUX`, else `tmux` on PATH (as `dmuc_tmux::program`).
pub fn tmux_program() -> std::ffi::OsString {
    std::env::var_os("DMUC_TMUX")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "tmux".into())
}
