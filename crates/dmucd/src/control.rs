//! The control socket's edge: binding (stale and live sockets), peer authorization, bounded
//! frame reading and writing. Requests that pass go to the runtime actor as
//! `Msg::Control`; everything here answers without it (parse errors, hello, refusals).
//!
//! Each connection has two tasks. The reader parses frames of at most `MAX_FRAME` bytes. The
//! writer drains two bounded queues: `ctl` for terminal replies (the actor `try_send`s; a peer
//! that lets 256 replies pile up is not reading and is disconnected) and `bulk` for stream
//! items (events are `try_send`ed and counted when dropped, log lines wait for room). A write
//! that takes longer than `WRITE_TIMEOUT` closes the connection. So a stalled client costs
//! the actor nothing and never delays another client.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use dmuc_proto::{ErrorCode, ErrorReply, HelloResult, MAX_FRAME, Reply, Verb};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{Notify, mpsc};

use crate::conn::{Conn, Peer};
use crate::msg::Msg;

/// A write to a client that takes longer than this closes its connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are told so and closed.
const MAX_CONNS: usize = 512;
/// A connection must say `hello` this soon, in a frame this small: one that says nothing (or
/// sends a partial frame) holds neither a slot for long nor more than a few KiB of buffer.
const HELLO_DEADLINE: Duration = Duration::from_secs(10);
const HELLO_FRAME: usize = 4096;
/// The pause after a failed accept, doubled up to the maximum while it keeps failing.
const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);
/// Terminal replies queued for one connection before it counts as not reading.
const CTL_QUEUE: usize = 256;
/// Stream items queued for one connection.
const BULK_QUEUE: usize = 1024;

/// Who may write, decided once at start.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The daemon's euid.
    pub own_uid: u32,
    /// The configured group's gid, when it exists.
    pub gid: Option<u32>,
    /// Its name, for messages.
    pub group: Option<String>,
    /// Members of that group listed in /etc/group.
    pub members: Vec<String>,
    /// `public-status`.
    pub public_status: bool,
}

impl Policy {
    /// Looks up the configured group.
    pub fn new(group: Option<&str>, public_status: bool) -> Policy {
        let g = group.and_then(|name| nix::unistd::Group::from_name(name).ok().flatten());
        if let (Some(name), None) = (group, &g) {
            tracing::warn!(
                "group {name} does not exist: only root and the daemon's user may write"
            );
        }
        Policy {
            own_uid: nix::unistd::geteuid().as_raw(),
            gid: g.as_ref().map(|g| g.gid.as_raw()),
            group: group.map(str::to_string),
            members: g.map(|g| g.mem).unwrap_or_default(),
            public_status,
        }
    }

    fn peer(&self, uid: u32, gid: u32, pid: Option<i32>) -> Peer {
        let in_group = self.gid.is_some_and(|want| {
            gid == want
                || pid.is_some_and(|p| supplementary_groups(p).contains(&want))
                || nix::unistd::User::from_uid(uid.into())
                    .ok()
                    .flatten()
                    .is_some_and(|u| self.members.contains(&u.name))
        });
        let can_write = uid == 0 || uid == self.own_uid || in_group;
        Peer {
            uid,
            pid,
            can_write,
            can_read: can_write || self.public_status,
        }
    }

    /// Why a peer may not do `verb`, or None when it may.
    pub fn refusal(&self, peer: &Peer, verb: &Verb) -> Option<ErrorReply> {
        let allowed = if verb.read_only() {
            peer.can_read || matches!(verb, Verb::Hello { .. })
        } else {
            peer.can_write
        };
        if allowed {
            return None;
        }
        let who = match &self.group {
            Some(g) => format!("root, uid {} or members of group {g}", self.own_uid),
            None => format!("root or uid {}", self.own_uid),
        };
        let what = if peer.can_read {
            format!("uid {} may only read status", peer.uid)
        } else {
            format!("uid {} may not use this daemon", peer.uid)
        };
        Some(
            ErrorReply::new(
                ErrorCode::PermissionDenied,
                format!("{what}; `{}` needs {who}", verb.name()),
            )
            .hint("run dmucctl as root (sudo) or as a member of the daemon's group"),
        )
    }
}

/// The supplementary groups of a process, from /proc (what the peer really has, not what
/// /etc/group lists).
fn supplementary_groups(pid: i32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("Groups:")).map(|g| {
                g.split_whitespace()
                    .filter_map(|x| x.parse().ok())
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Binds the control socket: replaces a stale one, refuses when a daemon answers on it.
pub fn bind(
    path: &Path,
    group_gid: Option<u32>,
) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            anyhow::bail!(
                "{} exists and is not a socket; remove it or choose another path with --socket",
                path.display()
            );
        }
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(s) => {
                let pid =
                    nix::sys::socket::getsockopt(&s, nix::sys::socket::sockopt::PeerCredentials)
                        .map(|c| c.pid().to_string())
                        .unwrap_or_else(|_| "?".into());
                anyhow::bail!(
                    "another dmucd (pid {pid}) is listening on {}; stop it first (dmucctl --socket {} shutdown) or use --socket",
                    path.display(),
                    path.display()
                );
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                tracing::info!("replacing stale control socket {}", path.display());
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot remove stale socket {}", path.display()))?;
            }
            Err(e) => anyhow::bail!("cannot check {}: {e}", path.display()),
        }
    }
    if let Some(parent) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        // Not private: group members must reach the socket (its own mode guards it).
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    let l = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind the control socket {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("cannot chmod {}", path.display()))?;
    if let Some(gid) = group_gid
        && let Err(e) = nix::unistd::chown(path, None, Some(gid.into()))
    {
        tracing::warn!("cannot give {} to gid {gid}: {e}", path.display());
    }
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Accepts connections until the listener fails.
pub async fn serve(
    listener: std::os::unix::net::UnixListener,
    policy: Arc<Policy>,
    tx: mpsc::UnboundedSender<Msg>,
) -> anyhow::Result<()> {
    let listener = tokio::net::UnixListener::from_std(listener)?;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNS));
    // Out of descriptors (EMFILE, ENFILE, ENOBUFS): the pending connection stays in the
    // backlog and every accept fails again at once. Wait, doubling up to a second, and say
    // so once per run of failures rather than once per try.
    let mut pause = ACCEPT_PAUSE_MIN;
    let mut failures = 0u64;
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                if failures == 0 {
                    tracing::warn!("control socket accept: {e}; trying again, less often");
                }
                failures += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(ACCEPT_PAUSE_MAX);
                continue;
            }
        };
        if failures > 0 {
            tracing::warn!("control socket accept works again after {failures} failures");
            (failures, pause) = (0, ACCEPT_PAUSE_MIN);
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Told why, then closed (a client that does not read is not waited for).
            tokio::spawn(async move {
                let line = Reply::error(
                    None,
                    ErrorReply::new(
                        ErrorCode::TooManyConnections,
                        format!("dmucd serves {MAX_CONNS} connections at once"),
                    )
                    .hint("try again when one has closed"),
                )
                .to_line();
                let mut stream = stream;
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    stream.write_all(line.as_bytes()),
                )
                .await;
            });
            continue;
        };
        let cred = match stream.peer_cred() {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("control socket: no peer credentials: {e}");
                continue;
            }
        };
        let peer = policy.peer(cred.uid(), cred.gid(), cred.pid());
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(conn = id, uid = peer.uid, pid = ?peer.pid, write = peer.can_write, "client connected");
        connection(stream, id, peer, policy.clone(), tx.clone(), slot);
    }
}

fn connection(
    stream: UnixStream,
    id: u64,
    peer: Peer,
    policy: Arc<Policy>,
    tx: mpsc::UnboundedSender<Msg>,
    slot: tokio::sync::OwnedSemaphorePermit,
) {
    let (rd, mut wr) = stream.into_split();
    let (ctl_tx, mut ctl_rx) = mpsc::channel::<String>(CTL_QUEUE);
    let (bulk_tx, mut bulk_rx) = mpsc::channel::<String>(BULK_QUEUE);
    let close = Arc::new(Notify::new());
    let conn = Conn::new(id, peer, ctl_tx, bulk_tx, close.clone());
    let reader = tokio::spawn(read_loop(rd, conn, policy, tx.clone()));
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(4096);
        // The connection is done when every sender is gone (the reader ended, the actor
        // dropped its waits and streams): `close` never completes by itself, so a plain
        // `else` branch would never run and the socket would leak.
        let (mut ctl_open, mut bulk_open) = (true, true);
        while ctl_open || bulk_open {
            buf.clear();
            tokio::select! {
                biased;
                _ = close.notified() => break,
                f = ctl_rx.recv(), if ctl_open => match f {
                    Some(f) => buf.extend_from_slice(f.as_bytes()),
                    None => ctl_open = false,
                },
                f = bulk_rx.recv(), if bulk_open => match f {
                    Some(f) => buf.extend_from_slice(f.as_bytes()),
                    None => bulk_open = false,
                },
            }
            if buf.is_empty() {
                continue;
            }
            // Coalesce what is already queued into one write.
            while buf.len() < 64 * 1024 {
                match ctl_rx.try_recv().or_else(|_| bulk_rx.try_recv()) {
                    Ok(f) => buf.extend_from_slice(f.as_bytes()),
                    Err(_) => break,
                }
            }
            match tokio::time::timeout(WRITE_TIMEOUT, wr.write_all(&buf)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => break,
                Err(_) => {
                    tracing::warn!(
                        conn = id,
                        "client stalled for {WRITE_TIMEOUT:?}: disconnecting it"
                    );
                    break;
                }
            }
        }
        reader.abort();
        let _ = tx.send(Msg::ConnClosed { conn: id });
        drop(slot);
    });
}

async fn read_loop(
    rd: tokio::net::unix::OwnedReadHalf,
    conn: Conn,
    policy: Arc<Policy>,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let mut rd = BufReader::new(rd);
    let mut buf = Vec::new();
    let mut greeted = false;
    loop {
        buf.clear();
        let limit = if greeted { MAX_FRAME } else { HELLO_FRAME };
        let mut frame = (&mut rd).take(limit as u64);
        let read = frame.read_until(b'\n', &mut buf);
        let read = if greeted {
            read.await
        } else {
            match tokio::time::timeout(HELLO_DEADLINE, read).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::debug!(conn = conn.id, "no hello within {HELLO_DEADLINE:?}: closed");
                    break;
                }
            }
        };
        let n = match read {
            Ok(n) => n,
            Err(_) => break,
        };
        if n == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') && buf.len() >= limit {
            conn.reply(&Reply::error(
                None,
                ErrorReply::new(
                    ErrorCode::FrameTooLarge,
                    format!("frame exceeds {limit} bytes; it was discarded"),
                )
                .hint("send one request per line, each under 1 MiB"),
            ));
            if !skip_line(&mut rd).await {
                break;
            }
            continue;
        }
        let line = buf.trim_ascii();
        if line.is_empty() {
            continue;
        }
        let req = match dmuc_proto::parse_request(line) {
            Ok(r) => r,
            Err(reply) => {
                conn.reply(&reply);
                continue;
            }
        };
        if let Verb::Hello { version, client } = &req.verb {
            greeted = hello(&conn, req.id, version, client.as_deref());
            continue;
        }
        if !greeted {
            conn.reply(&Reply::error(
                Some(req.id),
                ErrorReply::new(
                    ErrorCode::HelloRequired,
                    "the first request must be `hello`",
                )
                .hint(format!(
                    r#"send {{"id":0,"verb":"hello","version":"{}"}} first"#,
                    dmuc_proto::VERSION
                )),
            ));
            continue;
        }
        if let Some(e) = policy.refusal(&conn.peer, &req.verb) {
            conn.reply(&Reply::error(Some(req.id), e));
            continue;
        }
        if tx
            .send(Msg::Control {
                conn: conn.clone(),
                req,
            })
            .is_err()
        {
            break;
        }
    }
    // The peer closed its side: streams and waits end; replies already queued still go out.
    let _ = tx.send(Msg::ConnClosed { conn: conn.id });
}

/// Discards input up to the next newline; false at EOF or error.
async fn skip_line(rd: &mut BufReader<tokio::net::unix::OwnedReadHalf>) -> bool {
    loop {
        let chunk = match rd.fill_buf().await {
            Ok([]) | Err(_) => return false,
            Ok(c) => c,
        };
        if let Some(i) = chunk.iter().position(|&b| b == b'\n') {
            rd.consume(i + 1);
            return true;
        }
        let n = chunk.len();
        rd.consume(n);
    }
}

fn hello(conn: &Conn, id: u64, version: &str, client: Option<&str>) -> bool {
    if !dmuc_proto::compatible(version) {
        conn.reply(&Reply::error(
            Some(id),
            ErrorReply::new(
                ErrorCode::VersionMismatch,
                format!(
                    "client speaks protocol {version}, this dmucd speaks {}",
                    dmuc_proto::VERSION
                ),
            )
            .hint("use the dmucctl that came with this dmucd"),
        ));
        return false;
    }
    tracing::debug!(conn = conn.id, client, "hello");
    conn.result(
        id,
        &HelloResult {
            version: dmuc_proto::VERSION.into(),
            server: format!("dmucd {}", env!("CARGO_PKG_VERSION")),
            pid: std::process::id(),
            uid: conn.peer.uid,
            can_write: conn.peer.can_write,
        },
    );
    true
}
