//! The shim link as the actor sees it: what a shim said and what to say to it. The lines
//! themselves (both ways) are `dmuc_wire::line`.

use std::os::fd::OwnedFd;

use dmuc_core::ExitStatus;
use tokio::sync::mpsc;

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
    /// Its terminal hung up (the tmux server died or the window was closed); the program
    /// runs on.
    ViewLost,
    /// It took the terminal it was handed.
    ViewOk,
}

/// What the daemon sends a shim.
#[derive(Debug)]
pub enum ToShim {
    /// `run N`: start run N in place.
    Run(u64),
    /// `quit`: exit once no program runs.
    Quit,
    /// `view`, with this terminal passed alongside: show the output there from now on.
    View(OwnedFd),
    /// `say TEXT`: a line of dmucd's for the component's window.
    Say(String),
}

/// The sending side of one shim's connection.
pub type ShimTx = mpsc::UnboundedSender<ToShim>;

/// Parses one line after `hello` (format: `dmuc_wire::line`).
pub fn parse_line(line: &str) -> Option<ShimWhat> {
    use dmuc_wire::line::{End, Up};
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    Some(match Up::parse(line.as_bytes())? {
        Up::Start(pid) => ShimWhat::Start(pid),
        Up::SpawnFailed(why) => ShimWhat::SpawnFailed(text(why)),
        Up::Exit(End::Code(c)) => ShimWhat::Exit(ExitStatus::Code(c)),
        Up::Exit(End::Signal { signal, core }) => {
            ShimWhat::Exit(ExitStatus::Signal { signal, core })
        }
        Up::LogError(why) => ShimWhat::LogError(text(why)),
        Up::LogOk => ShimWhat::LogOk,
        Up::ViewLost => ShimWhat::ViewLost,
        Up::ViewOk => ShimWhat::ViewOk,
        Up::Hello { .. } => return None, // a connection's first line, read by shimlink
    })
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
        assert_eq!(parse_line("view-lost"), Some(ShimWhat::ViewLost));
        assert_eq!(parse_line("view-ok"), Some(ShimWhat::ViewOk));
        assert_eq!(parse_line("bogus"), None);
        assert_eq!(parse_line("start x"), None);
    }
}
