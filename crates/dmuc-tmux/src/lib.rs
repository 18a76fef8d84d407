//! A tmux control-mode client for one private tmux server.
//!
//! Why not `tmux_interface`: it forks a `tmux` client per command (~6 ms each, against
//! ~0.2 ms over a persistent control connection), keeps only the last line of multi-line
//! control-mode replies, and does not quote arguments (see docs/architecture.md). This module
//! is the small part of it we need, done so that those three things are right:
//!
//! - [`quote`] wraps every argument in single quotes, so `#`, `;`, spaces and quotes reach tmux
//!   intact; newlines and NUL are rejected because a control line is one command.
//! - [`Client::send`] writes its commands at once, one per line, and hands back a future for
//!   their replies; the reader matches `%begin`/`%end`/`%error` blocks to requests in order.
//!   One command per line because a parse error turns a whole `a ; b` line into a single
//!   `%error` block, which would shift every later reply. Blocks not caused by us (flag 0,
//!   e.g. the attach command itself) are skipped.
//! - Everything is read as bytes; notifications (`%exit`, `%window-close`, ...) go to a channel.
//! - The connection is made without a `tmux` process when the server is a tmux release whose
//!   client messages `native` implements (3.2 to 3.5a, decided from its version before
//!   connecting: [`native_speaks`]), else through `tmux -C`.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod native;

use std::collections::VecDeque;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// Errors from the tmux client.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// tmux could not be run.
    #[error("cannot run tmux: {0}")]
    Spawn(#[source] std::io::Error),
    /// The control connection is gone (the server exited or was killed).
    #[error("the tmux control connection is closed")]
    Closed,
    /// An argument cannot be sent over a control line.
    #[error("argument contains a newline or NUL, which a tmux control line cannot carry: {0:?}")]
    BadArgument(String),
    /// tmux answered with `%error`.
    #[error("tmux: {0}")]
    Tmux(String),
}

/// One command's reply: its output lines, or tmux's error text.
pub type Reply = Result<Vec<Vec<u8>>, Error>;

/// A notification line from the server (without the leading `%`), as bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification(pub Vec<u8>);

impl Notification {
    /// The notification's name (`exit`, `window-close`, ...).
    pub fn name(&self) -> &[u8] {
        self.0.split(|b| *b == b' ').next().unwrap_or(&[])
    }
}

/// Quotes one argument for a control-mode command line.
pub fn quote(arg: &str) -> Result<String, Error> {
    if arg.contains('\n') || arg.contains('\r') || arg.contains('\0') {
        return Err(Error::BadArgument(arg.to_string()));
    }
    Ok(format!("'{}'", arg.replace('\'', "'\\''")))
}

/// Builds the control lines for several commands, one line each.
pub fn command_lines(commands: &[Vec<String>]) -> Result<String, Error> {
    let mut out = String::new();
    for c in commands {
        let q: Result<Vec<String>, Error> = c.iter().map(|a| quote(a)).collect();
        out.push_str(&q?.join(" "));
        out.push('\n');
    }
    Ok(out)
}

/// Pending replies, in wire order, and whether the connection is gone (then nothing may be
/// queued: nobody would ever answer it).
#[derive(Default)]
struct Queue {
    waiters: VecDeque<oneshot::Sender<Reply>>,
    closed: bool,
}

type Waiters = Arc<Mutex<Queue>>;

/// A persistent control-mode connection to a private tmux server.
pub struct Client {
    socket: PathBuf,
    waiters: Waiters,
    writer: mpsc::UnboundedSender<String>,
    link: Mutex<Option<Link>>,
}

/// What carries the connection.
enum Link {
    /// A `tmux -C` process (killed when dropped).
    Process(Child),
    /// dmucd itself (`native`): the task answering the server's messages.
    Native(tokio::task::JoinHandle<()>),
}

impl Drop for Client {
    fn drop(&mut self) {
        // The server socket goes with the task: the server then drops this client.
        if let Some(Link::Native(t)) = self.link.get_mut().ok().and_then(|l| l.take()) {
            t.abort();
        }
    }
}

/// `DMUC_TMUX_CLIENT=process` keeps the `tmux -C` process whatever the version.
fn native_allowed() -> bool {
    std::env::var_os("DMUC_TMUX_CLIENT").is_none_or(|v| v != "process")
}

/// The tmux program: `DMUC_TMUX` when set (a path, for a host with several tmux), else
/// `tmux` from `PATH`.
pub fn program() -> PathBuf {
    std::env::var_os("DMUC_TMUX")
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from("tmux"), PathBuf::from)
}

// Which versions the in-process client speaks is shared with `dmucctl doctor`.
pub use dmuc_config::tmux::{native_speaks, parse_version};

/// The version of the tmux that runs (or will run) the server on `socket`: the running
/// server's own binary when one listens (its PID from the socket's peer credentials; a
/// connection that sends nothing is harmless to every version), else [`program`]'s.
async fn server_version(socket: &Path) -> Option<(u32, u32)> {
    let running = std::os::unix::net::UnixStream::connect(socket)
        .ok()
        .and_then(|s| {
            nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials).ok()
        })
        .map(|c| PathBuf::from(format!("/proc/{}/exe", c.pid())));
    let prog = running.unwrap_or_else(program);
    let out = Command::new(&prog)
        .arg("-V")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(2), out)
        .await
        .ok()?
        .ok()?;
    parse_version(&String::from_utf8_lossy(&out.stdout))
}

impl Client {
    /// Starts (or joins) the server on `socket` with config `conf`, attaching a control
    /// client to session `ctl_session`, created if missing and running `idle_argv`.
    /// `preload`, an open shared library, is preloaded into the client, and so into the server
    /// when this client starts it (the server is forked from it). Returns the client and its
    /// notification stream; the stream ends with the connection.
    pub async fn connect(
        socket: &Path,
        conf: &Path,
        ctl_session: &str,
        idle_argv: &[String],
        preload: Option<BorrowedFd<'_>>,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), Error> {
        // The control session: created when missing, running `idle_argv`.
        let mut session: Vec<String> = ["-s", ctl_session, "-n", "ctl", "--"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        session.extend(idle_argv.iter().cloned());
        // Decided before connecting: a server is never sent a message it may not understand.
        let version = server_version(socket).await;
        let native = native_allowed() && native_speaks(version);
        tracing::info!(
            ?version,
            "tmux client: {}",
            if native {
                "in-process"
            } else {
                "a `tmux -C` process"
            }
        );
        if native {
            // Bounded: a server that took the handshake but does not run our commands (a
            // protocol we do not know) must leave time for the `tmux -C` attempt.
            let native = Client::connect_native(socket, conf, &session, preload);
            match tokio::time::timeout(std::time::Duration::from_secs(2), native).await {
                Ok(Ok(c)) => return Ok(c),
                Ok(Err(e)) => tracing::warn!(
                    "tmux: attaching without a tmux client process failed ({e}); using `tmux -C`"
                ),
                Err(_) => tracing::warn!(
                    "tmux: the server did not answer a client without a process; using `tmux -C`"
                ),
            }
        }
        Client::connect_process(socket, conf, &session, preload).await
    }

    /// The attaching command for the control session (`session`: `-s NAME ... -- ARGV`).
    /// `-f no-output` as part of the attach: a separate `refresh-client` right after it can
    /// reach an existing server before this client counts as attached ("no current
    /// client"). Never let our own control client stall the panes (tmux.md §4).
    fn attach_command(session: &[String]) -> Vec<String> {
        let mut a: Vec<String> = ["new-session", "-A", "-f", "no-output"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        a.extend(session.iter().cloned());
        a
    }

    /// A `tmux` command on our server, with the utmp stand-in preloaded when it starts it.
    fn tmux(socket: &Path, conf: &Path, preload: Option<BorrowedFd<'_>>) -> Command {
        let mut cmd = Command::new(program());
        cmd.arg("-S").arg(socket).arg("-f").arg(conf);
        if let Some(fd) = preload {
            let n = fd.as_raw_fd();
            let mut v = std::ffi::OsString::from(format!("/proc/self/fd/{n}"));
            if let Some(old) = std::env::var_os("LD_PRELOAD").filter(|o| !o.is_empty()) {
                v.push(" ");
                v.push(old);
            }
            cmd.env("LD_PRELOAD", v);
            // The descriptor is close-on-exec in this process (no other child gets it); the
            // tmux client keeps it, under the same number, for its loader to open.
            // SAFETY: only fcntl(2), async-signal-safe, between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let fd = BorrowedFd::borrow_raw(n);
                    nix::fcntl::fcntl(
                        fd,
                        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
                    )
                    .map(drop)
                    .map_err(std::io::Error::from)
                });
            }
        }
        cmd
    }

    /// Attaches without a client process (`native`). A server is started first when none
    /// answers, by a `tmux` that creates the control session detached and exits: the server
    /// is forked from a tmux client, so starting one takes that process for a moment.
    async fn connect_native(
        socket: &Path,
        conf: &Path,
        session: &[String],
        preload: Option<BorrowedFd<'_>>,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), Error> {
        let attach = Client::attach_command(session);
        let native = match native::attach(socket, &attach) {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                let mut start = Client::tmux(socket, conf, preload);
                start.arg("new-session").arg("-d").args(session);
                start
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
                let st = start.status().await.map_err(Error::Spawn)?;
                if !st.success() {
                    return Err(Error::Tmux(format!("starting the server: tmux {st}")));
                }
                native::attach(socket, &attach)
            }
            r => r,
        }
        .map_err(Error::Spawn)?;
        let control = native
            .control
            .set_nonblocking(true)
            .and_then(|()| tokio::net::UnixStream::from_std(native.control))
            .map_err(Error::Spawn)?;
        let (rd, wr) = control.into_split();
        let link = Link::Native(tokio::spawn(native::serve(native.server)));
        Client::start(socket, rd, wr, link).await
    }

    /// Attaches with a `tmux -C` process, which also starts the server when none runs.
    async fn connect_process(
        socket: &Path,
        conf: &Path,
        session: &[String],
        preload: Option<BorrowedFd<'_>>,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), Error> {
        let mut cmd = Client::tmux(socket, conf, preload);
        cmd.arg("-C").args(Client::attach_command(session));
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        cmd.kill_on_drop(true);
        let mut child = cmd.spawn().map_err(Error::Spawn)?;
        let stdin = child.stdin.take().ok_or(Error::Closed)?;
        let stdout = child.stdout.take().ok_or(Error::Closed)?;
        Client::start(socket, stdout, stdin, Link::Process(child)).await
    }

    /// Runs the connection's reader and writer; returns once the server has answered.
    async fn start(
        socket: &Path,
        rd: impl tokio::io::AsyncRead + Unpin + Send + 'static,
        mut wr: impl tokio::io::AsyncWrite + Unpin + Send + 'static,
        link: Link,
    ) -> Result<(Client, mpsc::UnboundedReceiver<Notification>), Error> {
        let waiters: Waiters = Arc::new(Mutex::new(Queue::default()));
        let (wtx, mut wrx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(line) = wrx.recv().await {
                if wr.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        });
        let (ntx, nrx) = mpsc::unbounded_channel();
        tokio::spawn(read_loop(BufReader::new(rd), waiters.clone(), ntx));
        let client = Client {
            socket: socket.to_path_buf(),
            waiters,
            writer: wtx,
            link: Mutex::new(Some(link)),
        };
        // A round trip: the server answers, so the connection is up.
        client
            .run(&[vec!["display-message".into(), "-p".into(), "ok".into()]])
            .await?;
        Ok((client, nrx))
    }

    /// The server's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Sends commands on one line now; the receiver yields one reply per command.
    pub fn send(&self, commands: &[Vec<String>]) -> Result<oneshot::Receiver<Vec<Reply>>, Error> {
        let line = command_lines(commands)?;
        let n = commands.len();
        let (tx, rx) = oneshot::channel();
        let mut rxs = Vec::with_capacity(n);
        {
            // Queue the waiters and the write under one lock so the order of the lines on
            // the wire is the order of the waiters.
            let mut w = self.waiters.lock().unwrap_or_else(|e| e.into_inner());
            if w.closed {
                return Err(Error::Closed);
            }
            for _ in 0..n {
                let (t, r) = oneshot::channel();
                w.waiters.push_back(t);
                rxs.push(r);
            }
            self.writer.send(line).map_err(|_| Error::Closed)?;
        }
        tokio::spawn(async move {
            let mut out = Vec::with_capacity(n);
            for r in rxs {
                out.push(r.await.unwrap_or(Err(Error::Closed)));
            }
            let _ = tx.send(out);
        });
        Ok(rx)
    }

    /// Sends commands and waits for their replies; the first error is returned.
    pub async fn run(&self, commands: &[Vec<String>]) -> Result<Vec<Vec<Vec<u8>>>, Error> {
        let replies = self.send(commands)?.await.map_err(|_| Error::Closed)?;
        replies.into_iter().collect()
    }

    /// Detaches the control client (the server keeps running).
    pub async fn detach(&self) {
        let link = self.link.lock().unwrap_or_else(|e| e.into_inner()).take();
        let _ = self.writer.send("detach-client\n".into());
        match link {
            Some(Link::Process(mut c)) => {
                let _ = c.wait().await;
            }
            // The server says goodbye on its socket (detach, exiting, exited); bounded,
            // since a stuck server must not hold up dmucd's exit.
            Some(Link::Native(t)) => {
                let abort = t.abort_handle();
                if tokio::time::timeout(std::time::Duration::from_secs(2), t)
                    .await
                    .is_err()
                {
                    abort.abort();
                }
            }
            None => {}
        }
    }

    /// Whether this connection runs without a `tmux -C` process.
    pub fn is_native(&self) -> bool {
        matches!(
            *self.link.lock().unwrap_or_else(|e| e.into_inner()),
            Some(Link::Native(_))
        )
    }
}

async fn read_loop<R: tokio::io::AsyncRead + Unpin>(
    mut r: BufReader<R>,
    waiters: Waiters,
    notes: mpsc::UnboundedSender<Notification>,
) {
    let mut line = Vec::new();
    // Some(ours, lines) while inside a %begin block.
    let mut block: Option<(bool, Vec<Vec<u8>>)> = None;
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        if let Some((ours, lines)) = block.as_mut() {
            let end = line.starts_with(b"%end ");
            let err = line.starts_with(b"%error ");
            if (end || err) && guard_matches(&line) {
                let ours = *ours;
                let lines = std::mem::take(lines);
                block = None;
                if !ours {
                    tracing::trace!(?lines, "tmux block not ours");
                }
                if ours {
                    let w = waiters
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .waiters
                        .pop_front();
                    if let Some(w) = w {
                        let reply = if err {
                            let text: Vec<String> = lines
                                .iter()
                                .map(|l| String::from_utf8_lossy(l).into_owned())
                                .collect();
                            Err(Error::Tmux(text.join("; ")))
                        } else {
                            Ok(lines)
                        };
                        let _ = w.send(reply);
                    }
                }
                continue;
            }
            lines.push(line.clone());
            continue;
        }
        if let Some(rest) = line.strip_prefix(b"%begin ") {
            // "%begin TIME NUMBER FLAGS": flag 1 means the command came from this client.
            let ours = rest.split(|b| *b == b' ').nth(2).is_some_and(|f| f == b"1");
            block = Some((ours, Vec::new()));
        } else if let Some(rest) = line.strip_prefix(b"%") {
            let _ = notes.send(Notification(rest.to_vec()));
        }
    }
    // Connection gone: every waiter learns it now rather than hanging.
    let mut w = waiters.lock().unwrap_or_else(|e| e.into_inner());
    w.closed = true;
    while let Some(t) = w.waiters.pop_front() {
        let _ = t.send(Err(Error::Closed));
    }
    let _ = notes.send(Notification(b"exit".to_vec()));
}

fn guard_matches(line: &[u8]) -> bool {
    // "%end TIME NUMBER FLAGS": three fields after the keyword.
    line.split(|b| *b == b' ').count() == 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(quote("a b").unwrap(), "'a b'");
        assert_eq!(quote("it's").unwrap(), "'it'\\''s'");
        assert_eq!(quote("#{pane_id};").unwrap(), "'#{pane_id};'");
        assert!(quote("a\nb").is_err());
        let line = command_lines(&[
            vec!["display".into(), "-p".into(), "x".into()],
            vec!["ls".into()],
        ])
        .unwrap();
        assert_eq!(line, "'display' '-p' 'x'\n'ls'\n");
    }
}

#[cfg(test)]
mod native_tests {
    use super::*;
    use std::io::{Read, Write};

    /// A server of another protocol version refuses the handshake (tmux answers
    /// `MSG_VERSION` and drops the peer): the native attempt fails at once, so `connect`
    /// can fall back to a `tmux -C` process.
    #[tokio::test]
    async fn a_refused_handshake_fails_the_native_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut first = [0u8; 16];
            c.read_exact(&mut first).unwrap();
            // The first message is IDENTIFY_FLAGS, stamped with protocol version 8.
            assert_eq!(&first[..4], &100u32.to_ne_bytes());
            assert_eq!(&first[8..12], &8u32.to_ne_bytes());
            let mut version = 12u32.to_ne_bytes().to_vec();
            version.extend_from_slice(&16u16.to_ne_bytes());
            version.extend_from_slice(&[0; 10]);
            c.write_all(&version).unwrap();
        });
        let conf = dir.path().join("conf");
        let r = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            Client::connect_native(&sock, &conf, &["-s".into(), "x".into()], None),
        )
        .await
        .expect("the refusal ends the attempt");
        assert!(r.is_err());
        server.join().unwrap();
    }
}
