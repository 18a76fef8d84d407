//! The launch spec: everything the shim needs to start one run of a component. The daemon
//! writes it to a file and the pane runs `dmuc-shim --spec FILE --run N`, which keeps the
//! tmux command line short and free of quoting problems (env values may hold newlines).
//!
//! The format is read without an allocator, and its strings are used in place as the
//! `execve(2)` arguments: a sequence of records, each a tag byte, the value, and a NUL
//! (values never hold a NUL: argv, environment and paths cannot).
//!
//! | tag | value | |
//! |-----|-------|-|
//! | `n` | component name | once |
//! | `a` | an argv item, in order | at least one |
//! | `e` | an environment entry `KEY=VALUE`, the complete environment | any |
//! | `c` | working directory | optional |
//! | `u`, `g` | uid, gid to switch to (decimal; resolved by the daemon) | optional |
//! | `x` | why the program cannot be started (reported instead of starting it) | optional |
//! | `l`, `m`, `k` | log path, rotate at this size, rotated files kept | `l` once |
//! | `p` | `1`: kill the program's whole process group when it exits | optional |
//! | `s` | the daemon's shim socket | once |
//!
//! Unknown tags are skipped, so an older shim can read a newer daemon's spec. The daemon
//! writes it with [`Writer`], the shim reads it with [`Spec::parse`].

use core::ffi::CStr;

use crate::{parse_u64, put_u64};

/// The record tags (the table above).
pub mod tag {
    #![allow(missing_docs)]
    pub const NAME: u8 = b'n';
    pub const ARG: u8 = b'a';
    pub const ENV: u8 = b'e';
    pub const CWD: u8 = b'c';
    pub const UID: u8 = b'u';
    pub const GID: u8 = b'g';
    pub const ERROR: u8 = b'x';
    pub const LOG: u8 = b'l';
    pub const LOG_MAX: u8 = b'm';
    pub const LOG_KEEP: u8 = b'k';
    pub const KILL_GROUP: u8 = b'p';
    pub const SOCKET: u8 = b's';
}

/// Writes a spec into a sink, one record per call.
pub struct Writer<F: FnMut(&[u8])> {
    out: F,
}

impl<F: FnMut(&[u8])> Writer<F> {
    /// A writer into `out`.
    pub fn new(out: F) -> Self {
        Writer { out }
    }

    /// One record of `parts` put together. A NUL in a value would end the record early and
    /// make a new one of the rest, so it is written as a space: a caller with such a value
    /// reports it through [`Writer::error`] rather than rely on it.
    pub fn record(&mut self, tag: u8, parts: &[&[u8]]) {
        (self.out)(&[tag]);
        for part in parts {
            for piece in part.split_inclusive(|&b| b == 0) {
                match piece.split_last() {
                    Some((0, head)) => {
                        (self.out)(head);
                        (self.out)(b" ");
                    }
                    _ => (self.out)(piece),
                }
            }
        }
        (self.out)(&[0]);
    }

    fn number(&mut self, tag: u8, n: u64) {
        let mut digits = [0u8; 20];
        let mut len = 0;
        put_u64(
            &mut |d: &[u8]| {
                digits[len..len + d.len()].copy_from_slice(d);
                len += d.len();
            },
            n,
        );
        self.record(tag, &[&digits[..len]]);
    }

    /// The component's name.
    pub fn name(&mut self, name: &[u8]) {
        self.record(tag::NAME, &[name]);
    }

    /// The next argv item.
    pub fn arg(&mut self, a: &[u8]) {
        self.record(tag::ARG, &[a]);
    }

    /// An environment entry.
    pub fn env(&mut self, key: &[u8], value: &[u8]) {
        self.record(tag::ENV, &[key, b"=", value]);
    }

    /// The working directory.
    pub fn cwd(&mut self, dir: &[u8]) {
        self.record(tag::CWD, &[dir]);
    }

    /// The uid to run as.
    pub fn uid(&mut self, uid: u32) {
        self.number(tag::UID, uid.into());
    }

    /// The gid to run as.
    pub fn gid(&mut self, gid: u32) {
        self.number(tag::GID, gid.into());
    }

    /// Why the program cannot be started (the shim reports it instead of starting it).
    pub fn error(&mut self, why: &[u8]) {
        self.record(tag::ERROR, &[why]);
    }

    /// The log file, its rotation size and the rotated files kept.
    pub fn log(&mut self, path: &[u8], max: u64, keep: u32) {
        self.record(tag::LOG, &[path]);
        self.number(tag::LOG_MAX, max);
        self.number(tag::LOG_KEEP, keep.into());
    }

    /// Whether the program's whole process group is killed when it exits.
    pub fn kill_group(&mut self, yes: bool) {
        self.record(tag::KILL_GROUP, &[if yes { b"1" } else { b"0" }]);
    }

    /// The daemon's shim socket.
    pub fn socket(&mut self, path: &[u8]) {
        self.record(tag::SOCKET, &[path]);
    }
}

/// A parsed spec, borrowing the file's bytes.
#[derive(Debug)]
pub struct Spec<'a> {
    raw: &'a [u8],
    /// Component name.
    pub name: &'a [u8],
    /// Working directory.
    pub cwd: Option<&'a CStr>,
    /// User id to run as.
    pub uid: Option<u32>,
    /// Group id to run as.
    pub gid: Option<u32>,
    /// Why the program cannot be started.
    pub error: Option<&'a [u8]>,
    /// Log file.
    pub log: &'a CStr,
    /// Rotate at this size.
    pub log_max: u64,
    /// Rotated files kept.
    pub log_keep: u32,
    /// Kill the program's whole process group when it exits (stop scope `group`).
    pub kill_group: bool,
    /// The daemon's shim socket.
    pub socket: &'a CStr,
}

/// The records of `raw`: (tag, value with its NUL).
pub fn records(raw: &[u8]) -> impl Iterator<Item = (u8, &CStr)> {
    let mut rest = raw;
    core::iter::from_fn(move || {
        while !rest.is_empty() {
            let end = rest.iter().position(|b| *b == 0)?;
            let (rec, after) = rest.split_at(end + 1);
            rest = after;
            if rec.len() >= 2 {
                let value = CStr::from_bytes_with_nul(&rec[1..]).ok()?;
                return Some((rec[0], value));
            }
        }
        None
    })
}

impl<'a> Spec<'a> {
    /// Parses a spec; the error names what is missing or malformed.
    pub fn parse(raw: &'a [u8]) -> Result<Spec<'a>, &'static str> {
        let (mut name, mut log, mut socket) = (None, None, None);
        let mut spec = Spec {
            raw,
            name: b"",
            cwd: None,
            uid: None,
            gid: None,
            error: None,
            log: c"",
            log_max: 10 << 20,
            log_keep: 5,
            kill_group: false,
            socket: c"",
        };
        let num = |v: &CStr| parse_u64(v.to_bytes());
        for (t, v) in records(raw) {
            match t {
                tag::NAME => name = Some(v.to_bytes()),
                tag::CWD => spec.cwd = Some(v),
                tag::UID => spec.uid = Some(num(v).ok_or("bad uid")? as u32),
                tag::GID => spec.gid = Some(num(v).ok_or("bad gid")? as u32),
                tag::ERROR => spec.error = Some(v.to_bytes()),
                tag::LOG => log = Some(v),
                tag::LOG_MAX => spec.log_max = num(v).ok_or("bad log size")?.max(1),
                tag::LOG_KEEP => spec.log_keep = num(v).ok_or("bad log keep")? as u32,
                tag::KILL_GROUP => spec.kill_group = v.to_bytes() == b"1",
                tag::SOCKET => socket = Some(v),
                _ => {}
            }
        }
        spec.name = name.ok_or("no name")?;
        spec.log = log.ok_or("no log path")?;
        spec.socket = socket.ok_or("no shim socket")?;
        if spec.args().next().is_none() {
            return Err("no command");
        }
        Ok(spec)
    }

    /// The program's argv.
    pub fn args(&self) -> impl Iterator<Item = &'a CStr> + use<'a> {
        records(self.raw).filter_map(|(t, v)| (t == tag::ARG).then_some(v))
    }

    /// The program's environment entries.
    pub fn env(&self) -> impl Iterator<Item = &'a CStr> + use<'a> {
        records(self.raw).filter_map(|(t, v)| (t == tag::ENV).then_some(v))
    }

    /// The value of variable `key` in the program's environment.
    pub fn var(&self, key: &[u8]) -> Option<&'a [u8]> {
        self.env().find_map(|e| {
            let e = e.to_bytes();
            (e.len() > key.len() && e.starts_with(key) && e[key.len()] == b'=')
                .then(|| &e[key.len() + 1..])
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW: &[u8] = b"nweb\0a/bin/echo\0ahello world\0ePATH=/bin\0eMULTI=a\nb\0\
        u1000\0g100\0l/tmp/web.log\0m4096\0k2\0p1\0s/run/dmuc/shim.sock\0zfuture\0";

    #[test]
    fn parses_every_field() {
        let s = Spec::parse(RAW).unwrap();
        assert_eq!(s.name, b"web");
        let argv: Vec<_> = s.args().map(|a| a.to_bytes()).collect();
        assert_eq!(argv, [&b"/bin/echo"[..], b"hello world"]);
        assert_eq!(s.env().count(), 2);
        assert_eq!(s.var(b"MULTI"), Some(&b"a\nb"[..]));
        assert_eq!(s.var(b"PAT"), None);
        assert_eq!((s.uid, s.gid), (Some(1000), Some(100)));
        assert_eq!(s.log.to_bytes(), b"/tmp/web.log");
        assert_eq!((s.log_max, s.log_keep, s.kill_group), (4096, 2, true));
        assert_eq!(s.socket.to_bytes(), b"/run/dmuc/shim.sock");
        assert!(s.cwd.is_none() && s.error.is_none());
    }

    #[test]
    fn what_the_writer_writes_the_reader_reads() {
        let mut raw = Vec::new();
        let mut w = Writer::new(|b: &[u8]| raw.extend_from_slice(b));
        w.name(b"web");
        w.arg(b"/bin/echo");
        w.arg(b"with\0nul");
        w.env(b"MULTI", b"a\nb=c");
        w.cwd(b"/srv");
        w.uid(1000);
        w.gid(0);
        w.error(b"no such user: bob");
        w.log(b"/tmp/web.log", 4096, 2);
        w.kill_group(true);
        w.socket(b"/run/dmuc/shim.sock");
        let s = Spec::parse(&raw).unwrap();
        assert_eq!(s.name, b"web");
        let argv: Vec<_> = s.args().map(|a| a.to_bytes()).collect();
        // A NUL cannot be passed: it becomes a space (and the caller reports an error).
        assert_eq!(argv, [&b"/bin/echo"[..], b"with nul"]);
        assert_eq!(s.var(b"MULTI"), Some(&b"a\nb=c"[..]));
        assert_eq!(s.cwd.map(CStr::to_bytes), Some(&b"/srv"[..]));
        assert_eq!((s.uid, s.gid), (Some(1000), Some(0)));
        assert_eq!(s.error, Some(&b"no such user: bob"[..]));
        assert_eq!(s.log.to_bytes(), b"/tmp/web.log");
        assert_eq!((s.log_max, s.log_keep, s.kill_group), (4096, 2, true));
        assert_eq!(s.socket.to_bytes(), b"/run/dmuc/shim.sock");
    }

    #[test]
    fn missing_or_bad_fields_are_errors() {
        assert_eq!(Spec::parse(b"nx\0l/l\0s/s\0").err(), Some("no command"));
        assert_eq!(
            Spec::parse(b"a/bin/true\0l/l\0s/s\0").err(),
            Some("no name")
        );
        assert_eq!(
            Spec::parse(b"nx\0a/t\0l/l\0s/s\0uroot\0").err(),
            Some("bad uid")
        );
        // A truncated file (no final NUL) loses only its last record.
        assert_eq!(
            Spec::parse(b"nx\0a/t\0l/l\0s/s").err(),
            Some("no shim socket")
        );
    }
}
