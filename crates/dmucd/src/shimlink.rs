//! The daemon's end of the shim socket: one connection per run, lines parsed into messages.

use std::path::Path;

use dmuc_core::ExitStatus;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::runtime::Msg;

/// What a shim said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimWhat {
    /// The program runs with this PID.
    Start(u32),
    /// The program could not be started.
    SpawnFailed(String),
    /// The program ended.
    Exit(ExitStatus),
    /// The connection closed before an exit was reported (the shim died).
    Gone,
    /// The log file cannot be written (why).
    LogError(String),
    /// The log file works again.
    LogOk,
}

/// Parses one line after `hello`.
pub fn parse_line(line: &str) -> Option<ShimWhat> {
    let mut w = line.split(' ');
    match w.next()? {
        "start" => w.next()?.parse().ok().map(ShimWhat::Start),
        "log-error" => Some(ShimWhat::LogError(
            line["log-error".len()..].trim().to_string(),
        )),
        "log-ok" => Some(ShimWhat::LogOk),
        "spawn-failed" => Some(ShimWhat::SpawnFailed(
            line["spawn-failed".len()..].trim().to_string(),
        )),
        "exit" => match w.next()? {
            "code" => w
                .next()?
                .parse()
                .ok()
                .map(|c| ShimWhat::Exit(ExitStatus::Code(c))),
            "signal" => {
                let signal = w.next()?.parse().ok()?;
                let core = w.nth(1) == Some("1");
                Some(ShimWhat::Exit(ExitStatus::Signal { signal, core }))
            }
            _ => None,
        },
        _ => None,
    }
}

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

async fn serve(s: UnixStream, tx: mpsc::UnboundedSender<Msg>) {
    let (rd, mut wr) = s.into_split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Some(line) = out_rx.recv().await {
            if wr.write_all(line.as_bytes()).await.is_err() {
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
        if let Some(rest) = line.strip_prefix("hello ") {
            let mut h = rest.split(' ');
            let (Some(name), Some(run)) = (h.next(), h.next().and_then(|r| r.parse::<u64>().ok()))
            else {
                tracing::warn!("bad shim hello: {line:?}");
                return;
            };
            tracing::debug!(component = name, run, link, "shim hello");
            current = Some((name.to_string(), run));
            ended = false;
            let _ = tx.send(Msg::ShimLink {
                name: name.to_string(),
                run,
                link,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(parse_line("start 42"), Some(ShimWhat::Start(42)));
        assert_eq!(
            parse_line("exit code 3"),
            Some(ShimWhat::Exit(ExitStatus::Code(3)))
        );
        assert_eq!(
            parse_line("exit signal 9 core 0"),
            Some(ShimWhat::Exit(ExitStatus::Signal {
                signal: 9,
                core: false
            }))
        );
        assert_eq!(
            parse_line("exit signal 11 core 1"),
            Some(ShimWhat::Exit(ExitStatus::Signal {
                signal: 11,
                core: true
            }))
        );
        assert_eq!(
            parse_line("spawn-failed cannot execute \"x\": nope"),
            Some(ShimWhat::SpawnFailed("cannot execute \"x\": nope".into()))
        );
        assert_eq!(
            parse_line("log-error cannot open /x/a.log: Not a directory"),
            Some(ShimWhat::LogError(
                "cannot open /x/a.log: Not a directory".into()
            ))
        );
        assert_eq!(parse_line("log-ok"), Some(ShimWhat::LogOk));
        assert_eq!(parse_line("bogus"), None);
        assert_eq!(parse_line("start x"), None);
    }
}
