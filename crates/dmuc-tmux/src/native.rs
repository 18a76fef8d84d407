//! A control client without a `tmux` process: dmucd speaks the client side of tmux's
//! handshake itself (tmux 3.x, client protocol 8) and then the usual control-mode lines.
//!
//! Why: the `tmux -C` process was 1.2 MB PSS for the daemon's lifetime, doing nothing but
//! copy lines between a pipe and the server (docs/performance.md). In tmux 3.x a control
//! client's lines do not even pass through the client: the client hands the server its stdin
//! and stdout descriptors (`MSG_IDENTIFY_STDIN`/`STDOUT`), and the server reads commands from
//! and writes replies to them directly. So we hand it one end of a socket pair and keep the
//! other; what remains of the client is this handshake and a few messages on the server
//! socket (exit, detach, ready), below.
//!
//! The messages are tmux's `imsg`s: a 16-byte header (type, length, flags, peer id carrying
//! the protocol version, pid) and the data; descriptors ride along as SCM_RIGHTS. This is the
//! header of tmux up to 3.5a: 3.6 widened the length to 32 bits without changing the protocol
//! number, so the caller uses this client only for the versions it speaks, decided from the
//! server's version before connecting (`native_speaks`); a server of another protocol version
//! answers `MSG_VERSION` and drops us, and the caller falls back to a `tmux -C` process. The
//! sizes sent are exactly tmux's (an `int`, a `uint64_t`, a `pid_t`): tmux treats a wrong size
//! as fatal.

use std::io::{IoSlice, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{
    AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair,
};

/// tmux's client protocol version (tmux-protocol.h, tmux 3.x).
pub const PROTOCOL_VERSION: u32 = 8;

/// Message types (tmux-protocol.h, `enum msgtype`).
mod msg {
    pub const VERSION: u32 = 12;
    pub const IDENTIFY_FLAGS: u32 = 100;
    pub const IDENTIFY_TERM: u32 = 101;
    pub const IDENTIFY_TTYNAME: u32 = 102;
    pub const IDENTIFY_STDIN: u32 = 104;
    pub const IDENTIFY_ENVIRON: u32 = 105;
    pub const IDENTIFY_DONE: u32 = 106;
    pub const IDENTIFY_CLIENTPID: u32 = 107;
    pub const IDENTIFY_CWD: u32 = 108;
    pub const IDENTIFY_FEATURES: u32 = 109;
    pub const IDENTIFY_STDOUT: u32 = 110;
    pub const IDENTIFY_LONGFLAGS: u32 = 111;
    pub const COMMAND: u32 = 200;
    pub const DETACH: u32 = 201;
    pub const DETACHKILL: u32 = 202;
    pub const EXIT: u32 = 203;
    pub const EXITED: u32 = 204;
    pub const EXITING: u32 = 205;
    pub const READY: u32 = 207;
    pub const RESIZE: u32 = 208;
    pub const SHUTDOWN: u32 = 210;
    pub const READ_OPEN: u32 = 300;
    pub const READ_DONE: u32 = 302;
    pub const WRITE_OPEN: u32 = 303;
    pub const WRITE_READY: u32 = 305;
}

/// `CLIENT_CONTROL | CLIENT_UTF8` (tmux.h): a single `-C`, UTF-8 names.
const FLAGS: u64 = 0x2000 | 0x10000;
/// tmux's limit for one message, header included (`MAX_IMSGSIZE`).
const MAX_IMSG: usize = 16384;
const HEADER: usize = 16;

/// One message: header and data.
fn imsg(kind: u32, data: &[u8]) -> Vec<u8> {
    with_flags(kind, data, 0)
}

/// `IMSGF_HASFD`: the receiver takes a descriptor for this message from the ones that came
/// with the bytes (without the flag it gets none: tmux would read its control client's
/// commands from descriptor -1, and answer nothing).
const HASFD: u16 = 1;

fn with_flags(kind: u32, data: &[u8], flags: u16) -> Vec<u8> {
    let len = HEADER + data.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&(len as u16).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&PROTOCOL_VERSION.to_ne_bytes());
    m.extend_from_slice(&std::process::id().to_ne_bytes());
    m.extend_from_slice(data);
    m
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// The `MSG_COMMAND` data: argc, then the arguments, each NUL-terminated.
fn command(argv: &[String]) -> Option<Vec<u8>> {
    let mut d = (argv.len() as i32).to_ne_bytes().to_vec();
    for a in argv {
        if a.contains('\0') {
            return None;
        }
        d.extend_from_slice(&cstr(a));
    }
    (HEADER + d.len() <= MAX_IMSG).then_some(d)
}

/// The handshake as tmux's own client sends it (client.c, `client_send_identify`), minus
/// the terminal description a control client does not use; `fd` goes as stdin and stdout.
fn identify(sock: &UnixStream, fd: &OwnedFd, argv: &[String]) -> std::io::Result<()> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    let mut out: Vec<u8> = Vec::new();
    let mut put = |kind, data: &[u8]| out.extend_from_slice(&imsg(kind, data));
    put(msg::IDENTIFY_FLAGS, &(FLAGS as i32).to_ne_bytes());
    put(msg::IDENTIFY_LONGFLAGS, &FLAGS.to_ne_bytes());
    let term = std::env::var("TERM").unwrap_or_default();
    put(msg::IDENTIFY_TERM, &cstr(&term));
    put(msg::IDENTIFY_FEATURES, &0i32.to_ne_bytes());
    put(msg::IDENTIFY_TTYNAME, &cstr(""));
    let cwd = std::env::current_dir()
        .ok()
        .and_then(|d| d.to_str().map(str::to_string))
        .unwrap_or_else(|| "/".into());
    put(msg::IDENTIFY_CWD, &cstr(&cwd));
    send(sock, &out, None)?;
    // Each descriptor in a message of its own, as imsg sends them.
    send(sock, &with_flags(msg::IDENTIFY_STDIN, &[], HASFD), Some(fd))?;
    send(
        sock,
        &with_flags(msg::IDENTIFY_STDOUT, &[], HASFD),
        Some(fd),
    )?;
    let mut out: Vec<u8> = Vec::new();
    let mut put = |kind, data: &[u8]| out.extend_from_slice(&imsg(kind, data));
    put(
        msg::IDENTIFY_CLIENTPID,
        &(std::process::id() as i32).to_ne_bytes(),
    );
    for (k, v) in std::env::vars_os() {
        let (Some(k), Some(v)) = (k.to_str(), v.to_str()) else {
            continue;
        };
        let e = cstr(&format!("{k}={v}"));
        if HEADER + e.len() <= MAX_IMSG {
            put(msg::IDENTIFY_ENVIRON, &e);
        }
    }
    put(msg::IDENTIFY_DONE, &[]);
    put(
        msg::COMMAND,
        &command(argv).ok_or_else(|| bad("command too long for tmux"))?,
    );
    send(sock, &out, None)
}

fn send(sock: &UnixStream, bytes: &[u8], fd: Option<&OwnedFd>) -> std::io::Result<()> {
    match fd {
        None => (&*sock).write_all(bytes),
        Some(fd) => {
            let fds = [fd.as_raw_fd()];
            let cmsg = [ControlMessage::ScmRights(&fds)];
            let n = sendmsg::<()>(
                sock.as_raw_fd(),
                &[IoSlice::new(bytes)],
                &cmsg,
                MsgFlags::empty(),
                None,
            )?;
            // A 16-byte message on a fresh socket goes in one piece.
            if n == bytes.len() {
                Ok(())
            } else {
                Err(std::io::Error::other("short write of a tmux message"))
            }
        }
    }
}

/// A connected control client: the control-mode stream and the server socket.
pub struct Native {
    /// Lines both ways, as with a `tmux -C` process's stdin and stdout.
    pub control: UnixStream,
    /// The server socket, for [`serve`].
    pub server: UnixStream,
}

/// Connects to the running server on `socket` and sends `argv` (the attaching command).
pub fn attach(socket: &Path, argv: &[String]) -> std::io::Result<Native> {
    let server = UnixStream::connect(socket)?;
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    identify(&server, &theirs, argv)?;
    // The server has its own copies now: ours must go, so that its exit is our EOF.
    drop(theirs);
    Ok(Native {
        control: UnixStream::from(ours),
        server,
    })
}

/// Answers the server's messages until it lets the client go (or dies): what tmux's client
/// does for a control client (client.c, `client_dispatch_*`).
pub async fn serve(server: UnixStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut server) = server
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(server))
    else {
        return;
    };
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        while buf.len() >= HEADER {
            let kind = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
            let len = usize::from(u16::from_ne_bytes([buf[4], buf[5]]));
            if len < HEADER {
                return; // not tmux's protocol
            }
            if buf.len() < len {
                break;
            }
            let data: Vec<u8> = buf.drain(..len).skip(HEADER).collect();
            let reply = match kind {
                msg::READY => Some(imsg(msg::RESIZE, &[])),
                msg::DETACH | msg::DETACHKILL | msg::EXIT | msg::SHUTDOWN => {
                    Some(imsg(msg::EXITING, &[]))
                }
                msg::EXITED | msg::VERSION => return,
                // The server wants a file of ours (a command like `save-buffer -`): none.
                msg::READ_OPEN | msg::WRITE_OPEN if data.len() >= 4 => {
                    let mut d = data[..4].to_vec(); // the stream number
                    d.extend_from_slice(&9i32.to_ne_bytes()); // EBADF
                    let answer = if kind == msg::READ_OPEN {
                        msg::READ_DONE
                    } else {
                        msg::WRITE_READY
                    };
                    Some(imsg(answer, &d))
                }
                _ => None,
            };
            if let Some(r) = reply
                && server.write_all(&r).await.is_err()
            {
                return;
            }
        }
        match server.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_laid_out_as_imsg() {
        let m = imsg(msg::IDENTIFY_FLAGS, &[1, 2, 3, 4]);
        assert_eq!(m.len(), 20);
        assert_eq!(&m[..4], &100u32.to_ne_bytes());
        assert_eq!(&m[4..6], &20u16.to_ne_bytes());
        assert_eq!(&m[8..12], &8u32.to_ne_bytes());
        assert_eq!(&m[16..], &[1, 2, 3, 4]);
        let c = command(&["attach".into(), "-t".into(), "x".into()]).unwrap();
        assert_eq!(&c[..4], &3i32.to_ne_bytes());
        assert_eq!(&c[4..], b"attach\0-t\0x\0");
        assert!(command(&["a\0b".into()]).is_none());
        assert!(command(&["x".repeat(MAX_IMSG)]).is_none());
    }
}
