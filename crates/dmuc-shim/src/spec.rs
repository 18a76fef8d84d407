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
//! Unknown tags are skipped, so an older shim can read a newer daemon's spec.

use core::ffi::CStr;

use crate::text::parse_u64;

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
        for (tag, v) in records(raw) {
            match tag {
                b'n' => name = Some(v.to_bytes()),
                b'c' => spec.cwd = Some(v),
                b'u' => spec.uid = Some(num(v).ok_or("bad uid")? as u32),
                b'g' => spec.gid = Some(num(v).ok_or("bad gid")? as u32),
                b'x' => spec.error = Some(v.to_bytes()),
                b'l' => log = Some(v),
                b'm' => spec.log_max = num(v).ok_or("bad log size")?.max(1),
                b'k' => spec.log_keep = num(v).ok_or("bad log keep")? as u32,
                b'p' => spec.kill_group = v.to_bytes() == b"1",
                b's' => socket = Some(v),
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
        records(self.raw).filter_map(|(t, v)| (t == b'a').then_some(v))
    }

    /// The program's environment entries.
    pub fn env(&self) -> impl Iterator<Item = &'a CStr> + use<'a> {
        records(self.raw).filter_map(|(t, v)| (t == b'e').then_some(v))
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
