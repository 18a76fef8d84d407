//! The daemon's end of the shim socket: one connection per run, lines parsed into messages.

use std::path::Path;

use dmuc_core::ExitStatus;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;

use crate::runtime::Msg;

/// What a shim said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShimWhat {
    /// The program runs with this PID.
    Start(u32),
    /// A line matched the `log` ready probe.
    Match,
    /// The program could not be started.
    SpawnFailed(String),
    /// The program ended.
    Exit(ExitStatus),
    /// The connection closed before an exit was reported (the shim died).
    Gone,
}

/// Parses one line after `hello`.
pub fn parse_line(line: &str) -> Option<ShimWhat> {
    let mut w = line.split(' ');
    match w.next()? {
        "start" => w.next()?.parse().ok().map(ShimWhat::Start),
        "match" => Some(ShimWhat::Match),
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
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
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

async fn serve(s: UnixStream, tx: mpsc::UnboundedSender<Msg>) {
    let mut lines = BufReader::new(s).lines();
    let Ok(Some(hello)) = lines.next_line().await else {
        return;
    };
    let mut h = hello.split(' ');
    let (Some("hello"), Some(name), Some(run)) = (
        h.next(),
        h.next(),
        h.next().and_then(|r| r.parse::<u64>().ok()),
    ) else {
        tracing::warn!("bad shim hello: {hello:?}");
        return;
    };
    let name = name.to_string();
    let mut ended = false;
    while let Ok(Some(line)) = lines.next_line().await {
        match parse_line(&line) {
            Some(what) => {
                ended |= matches!(what, ShimWhat::Exit(_) | ShimWhat::SpawnFailed(_));
                let _ = tx.send(Msg::Shim {
                    name: name.clone(),
                    run,
                    what,
                });
            }
            None => tracing::warn!(component = %name, "bad shim line: {line:?}"),
        }
    }
    if !ended {
        let _ = tx.send(Msg::Shim {
            name,
            run,
            what: ShimWhat::Gone,
        });
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
        assert_eq!(parse_line("bogus"), None);
        assert_eq!(parse_line("start x"), None);
    }
}
