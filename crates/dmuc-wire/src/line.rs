//! The shim link: one Unix stream connection per shim to the daemon's shim socket, a line
//! per message, both ways.
//!
//! Shim → daemon ([`Up`]): `hello NAME RUN SHIMPID` (at the start of each run, and again to a
//! daemon that reconnects), `start PID`, `spawn-failed MESSAGE`, `exit code N` or
//! `exit signal N core 0|1`, `log-error MESSAGE` / `log-ok` (the log file stopped / started
//! working again), `view-lost` (its terminal hung up), `view-ok` (it took the one handed over).
//!
//! Daemon → shim ([`Down`]): `run N` (start run N in place), `quit` (exit once no program
//! runs), `view` with a terminal passed alongside (`SCM_RIGHTS`, on the line's first byte),
//! `say TEXT` (a line for the component's window, such as why dmucd gave up on it).
//!
//! A line that does not parse is ignored by its reader (and logged by the daemon), so either
//! side may be newer than the other.

use crate::{parse_i64, parse_u64, put_i64, put_u64};

/// How a program ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal (and whether it dumped core).
    Signal {
        /// The signal's number.
        signal: i32,
        /// A core was dumped.
        core: bool,
    },
}

/// What a shim says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Up<'a> {
    /// It speaks for run `run` of component `name` from now on.
    Hello {
        /// Component name.
        name: &'a [u8],
        /// Run number.
        run: u64,
        /// The shim's own PID (absent from older shims).
        shim: Option<u32>,
    },
    /// The program runs with this PID.
    Start(u32),
    /// The program could not be started (why).
    SpawnFailed(&'a [u8]),
    /// The program ended.
    Exit(End),
    /// The log file cannot be written (why).
    LogError(&'a [u8]),
    /// The log file works again.
    LogOk,
    /// Its terminal hung up; the program runs on.
    ViewLost,
    /// It took the terminal it was handed.
    ViewOk,
}

/// What the daemon says to a shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Down<'a> {
    /// Start run N in place.
    Run(u64),
    /// Exit once no program runs.
    Quit,
    /// Show the output on the terminal passed with this line.
    View,
    /// Show this line in the component's window (not its log: the program did not say it).
    Say(&'a [u8]),
}

/// The words of a line, and what follows its first word.
fn words(line: &[u8]) -> (impl Iterator<Item = &[u8]>, &[u8]) {
    let rest = match line.iter().position(|&b| b == b' ') {
        Some(i) => &line[i + 1..],
        None => &[][..],
    };
    (line.split(|&b| b == b' '), rest)
}

/// Writes free text as the rest of one line: a newline in it would end the line early.
fn put_text(out: &mut impl FnMut(&[u8]), text: &[u8]) {
    for part in text.split_inclusive(|&b| b == b'\n' || b == b'\r') {
        match part.split_last() {
            Some((b'\n' | b'\r', head)) => {
                out(head);
                out(b" ");
            }
            _ => out(part),
        }
    }
}

impl<'a> Up<'a> {
    /// Reads one line (without its newline).
    pub fn parse(line: &'a [u8]) -> Option<Up<'a>> {
        let (mut w, rest) = words(line);
        let num = |w: Option<&[u8]>| w.and_then(parse_u64);
        Some(match w.next()? {
            b"hello" => {
                let name = w.next().filter(|n| !n.is_empty())?;
                let run = num(w.next())?;
                let shim = num(w.next()).and_then(|p| u32::try_from(p).ok());
                Up::Hello { name, run, shim }
            }
            b"start" => Up::Start(u32::try_from(num(w.next())?).ok()?),
            b"spawn-failed" => Up::SpawnFailed(rest.trim_ascii()),
            b"exit" => match w.next()? {
                b"code" => Up::Exit(End::Code(
                    i32::try_from(w.next().and_then(parse_i64)?).ok()?,
                )),
                b"signal" => {
                    let signal = i32::try_from(num(w.next())?).ok()?;
                    let core = w.nth(1) == Some(b"1");
                    Up::Exit(End::Signal { signal, core })
                }
                _ => return None,
            },
            b"log-error" => Up::LogError(rest.trim_ascii()),
            b"log-ok" => Up::LogOk,
            b"view-lost" => Up::ViewLost,
            b"view-ok" => Up::ViewOk,
            _ => return None,
        })
    }

    /// Writes the line, newline included.
    pub fn write(&self, out: &mut impl FnMut(&[u8])) {
        match *self {
            Up::Hello { name, run, shim } => {
                out(b"hello ");
                put_text(out, name);
                out(b" ");
                put_u64(out, run);
                if let Some(p) = shim {
                    out(b" ");
                    put_u64(out, p.into());
                }
            }
            Up::Start(pid) => {
                out(b"start ");
                put_u64(out, pid.into());
            }
            Up::SpawnFailed(why) => {
                out(b"spawn-failed ");
                put_text(out, why);
            }
            Up::Exit(End::Code(c)) => {
                out(b"exit code ");
                put_i64(out, c.into());
            }
            Up::Exit(End::Signal { signal, core }) => {
                out(b"exit signal ");
                put_i64(out, signal.into());
                out(if core { b" core 1" } else { b" core 0" });
            }
            Up::LogError(why) => {
                out(b"log-error ");
                put_text(out, why);
            }
            Up::LogOk => out(b"log-ok"),
            Up::ViewLost => out(b"view-lost"),
            Up::ViewOk => out(b"view-ok"),
        }
        out(b"\n");
    }
}

impl<'a> Down<'a> {
    /// Reads one line (without its newline).
    pub fn parse(line: &'a [u8]) -> Option<Down<'a>> {
        let (mut w, rest) = words(line.trim_ascii());
        Some(match w.next()? {
            b"run" => Down::Run(w.next().and_then(parse_u64)?),
            b"quit" => Down::Quit,
            b"view" => Down::View,
            b"say" => Down::Say(rest.trim_ascii()),
            _ => return None,
        })
    }

    /// Writes the line, newline included.
    pub fn write(&self, out: &mut impl FnMut(&[u8])) {
        match *self {
            Down::Run(n) => {
                out(b"run ");
                put_u64(out, n);
            }
            Down::Quit => out(b"quit"),
            Down::View => out(b"view"),
            Down::Say(text) => {
                out(b"say ");
                put_text(out, text);
            }
        }
        out(b"\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl FnOnce(&mut dyn FnMut(&[u8]))) -> Vec<u8> {
        let mut v = Vec::new();
        f(&mut |b| v.extend_from_slice(b));
        v
    }

    fn up(u: Up<'_>) -> Vec<u8> {
        written(|o| u.write(&mut |b| o(b)))
    }

    #[test]
    fn every_shim_line_reads_back_as_written() {
        let all = [
            Up::Hello {
                name: b"kube-apiserver",
                run: 12,
                shim: Some(4242),
            },
            Up::Hello {
                name: b"etcd",
                run: 1,
                shim: None,
            },
            Up::Start(31337),
            Up::SpawnFailed(b"cannot execute \"x\": No such file or directory (os error 2)"),
            Up::Exit(End::Code(0)),
            Up::Exit(End::Code(255)),
            Up::Exit(End::Signal {
                signal: 9,
                core: false,
            }),
            Up::Exit(End::Signal {
                signal: 11,
                core: true,
            }),
            Up::LogError(b"cannot open /x/a.log: Not a directory"),
            Up::LogOk,
            Up::ViewLost,
            Up::ViewOk,
        ];
        for u in all {
            let line = up(u);
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            assert_eq!(Up::parse(&line[..line.len() - 1]), Some(u), "{line:?}");
        }
        // The exact text, as older daemons and shims read and write it.
        assert_eq!(
            up(Up::Exit(End::Signal {
                signal: 9,
                core: false
            })),
            b"exit signal 9 core 0\n"
        );
        assert_eq!(
            up(Up::Hello {
                name: b"a",
                run: 3,
                shim: Some(7)
            }),
            b"hello a 3 7\n"
        );
    }

    #[test]
    fn free_text_stays_on_its_line() {
        let line = up(Up::SpawnFailed(b"two\nlines\r\n"));
        assert_eq!(line, b"spawn-failed two lines  \n");
        assert_eq!(
            Up::parse(&line[..line.len() - 1]),
            Some(Up::SpawnFailed(b"two lines"))
        );
    }

    #[test]
    fn what_is_not_a_line_of_ours_is_none() {
        for bad in [
            &b""[..],
            b"bogus",
            b"start",
            b"start x",
            b"start 99999999999",
            b"exit",
            b"exit code",
            b"exit maybe 3",
            b"hello",
            b"hello a",
            b"hello a x",
        ] {
            assert_eq!(Up::parse(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(Down::parse(b"run"), None);
        assert_eq!(Down::parse(b"run -1"), None);
        assert_eq!(Down::parse(b"walk"), None);
    }

    #[test]
    fn every_daemon_line_reads_back_as_written() {
        for d in [
            Down::Run(0),
            Down::Run(u64::MAX),
            Down::Quit,
            Down::View,
            Down::Say(b"kube-scheduler failed: start limit hit"),
        ] {
            let line = written(|o| d.write(&mut |b| o(b)));
            assert_eq!(Down::parse(&line[..line.len() - 1]), Some(d));
        }
        assert_eq!(Down::parse(b" run 3 "), Some(Down::Run(3)));
        // Free text stays on its line; an empty one is an empty line.
        let line = written(|o| Down::Say(b"two\nlines").write(&mut |b| o(b)));
        assert_eq!(line, b"say two lines\n");
        assert_eq!(Down::parse(b"say"), Some(Down::Say(b"")));
    }
}
