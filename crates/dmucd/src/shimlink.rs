//! The daemon's end of the shim socket: one connection per shim, lines parsed into messages;
//! lines to the shim, and a window's terminal passed over the same connection.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::msg::Msg;
use crate::shimline::{ShimWhat, ToShim, parse_line};

/// Binds the shim socket (replacing a stale file) and serves it until the runtime drops `tx`.
pub fn listen(path: &Path, tx: mpsc::UnboundedSender<Msg>) -> std::io::Result<()> {
    // Shims of a previous daemon wait (inotify) for this path to appear, then connect: it
    // must appear only once it accepts, so bind and listen under another name, then rename.
    let tmp = path.with_extension("sock.new");
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    std::fs::rename(&tmp, path)?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((s, _)) => {
                    tokio::spawn(serve(s, tx.clone()));
                }
                Err(e) => tracing::warn!("shim socket accept: {e}"),
            }
            if tx.is_closed() {
                break;
            }
        }
    });
    Ok(())
}

static NEXT_LINK: AtomicU64 = AtomicU64::new(1);

/// Writes `line` with `fd` passed alongside (`SCM_RIGHTS`): the descriptor travels with the
/// line's first byte, so the shim receives it with the line.
async fn send_with_fd(s: &UnixStream, line: &[u8], fd: &OwnedFd) -> std::io::Result<()> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    let fds = [fd.as_raw_fd()];
    let sent = loop {
        s.writable().await?;
        match s.try_io(tokio::io::Interest::WRITABLE, || {
            sendmsg::<()>(
                s.as_raw_fd(),
                &[std::io::IoSlice::new(line)],
                &[ControlMessage::ScmRights(&fds)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            )
            .map_err(std::io::Error::from)
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    // A short write (a full socket buffer) sends the rest without the descriptor.
    let mut rest = &line[sent..];
    while !rest.is_empty() {
        s.writable().await?;
        match s.try_write(rest) {
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

async fn serve(s: UnixStream, tx: mpsc::UnboundedSender<Msg>) {
    let (rd, mut wr) = s.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<ToShim>();
    tokio::spawn(async move {
        while let Some(m) = out_rx.recv().await {
            use dmuc_wire::line::Down;
            let mut line = Vec::with_capacity(24);
            let mut put = |b: &[u8]| line.extend_from_slice(b);
            let sent = match m {
                ToShim::Run(n) => {
                    Down::Run(n).write(&mut put);
                    wr.write_all(&line).await
                }
                ToShim::Quit => {
                    Down::Quit.write(&mut put);
                    wr.write_all(&line).await
                }
                ToShim::View(tty) => {
                    Down::View.write(&mut put);
                    send_with_fd(wr.as_ref(), &line, &tty).await
                }
                ToShim::Say(text) => {
                    Down::Say(text.as_bytes()).write(&mut put);
                    wr.write_all(&line).await
                }
            };
            if sent.is_err() {
                break;
            }
        }
    });
    let link = NEXT_LINK.fetch_add(1, Ordering::Relaxed);
    // A shim's lines are a few dozen bytes; one link per component, so not 8 KB each.
    let mut lines = BufReader::with_capacity(256, rd).lines();
    // The run this connection currently speaks for, and whether its end was reported.
    let mut current: Option<(String, u64)> = None;
    let mut ended = true;
    while let Ok(Some(line)) = lines.next_line().await {
        if line.starts_with("hello") {
            let Some(dmuc_wire::line::Up::Hello { name, run, shim }) =
                dmuc_wire::line::Up::parse(line.as_bytes())
            else {
                tracing::warn!("bad shim hello: {line:?}");
                return;
            };
            let name = String::from_utf8_lossy(name);
            let name = name.as_ref();
            tracing::debug!(component = name, run, link, "shim hello");
            current = Some((name.to_string(), run));
            ended = false;
            let _ = tx.send(Msg::ShimLink {
                name: name.to_string(),
                run,
                link,
                pid: shim,
                tx: out_tx.clone(),
            });
            continue;
        }
        let Some((name, run)) = current.clone() else {
            tracing::warn!("shim spoke before hello: {line:?}");
            return;
        };
        match parse_line(&line) {
            Some(what) => {
                ended |= matches!(what, ShimWhat::Exit(_) | ShimWhat::SpawnFailed(_));
                let _ = tx.send(Msg::Shim { name, run, what });
            }
            None => tracing::warn!(component = %name, "bad shim line: {line:?}"),
        }
    }
    if let Some((name, run)) = current {
        if !ended {
            let _ = tx.send(Msg::Shim {
                name: name.clone(),
                run,
                what: ShimWhat::Gone,
            });
        }
        let _ = tx.send(Msg::ShimClosed { name, link });
    }
}
