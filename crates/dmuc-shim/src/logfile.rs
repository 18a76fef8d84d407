//! A component's log file: terminal control sequences stripped, size-based rotation, and
//! graceful degradation when the file cannot be written (the component keeps running; we try
//! again at most once a second).

use core::ffi::CStr;
use core::fmt::Write;

use crate::sys::{self, Fd};
use crate::text::{Buf, Lossy};

/// Removes ANSI escape sequences, carriage returns and other control bytes (keeps `\n`, `\t`).
/// Stateful, so a sequence split across two reads is still removed.
#[derive(Debug, Default)]
pub struct Stripper {
    state: u8, // 0 text, 1 after ESC, 2 in CSI, 3 in OSC/DCS string, 4 ESC inside string
}

impl Stripper {
    /// Cleans `buf` in place (the result is never longer); returns the cleaned length.
    pub fn strip(&mut self, buf: &mut [u8]) -> usize {
        let mut w = 0;
        for r in 0..buf.len() {
            let b = buf[r];
            let keep = match self.state {
                0 => match b {
                    0x1b => {
                        self.state = 1;
                        false
                    }
                    b'\n' | b'\t' => true,
                    0..=0x1f | 0x7f => false,
                    _ => true,
                },
                1 => {
                    self.state = match b {
                        b'[' => 2,
                        b']' | b'P' | b'X' | b'^' | b'_' => 3,
                        _ => 0,
                    };
                    false
                }
                2 => {
                    if (0x40..=0x7e).contains(&b) {
                        self.state = 0;
                    }
                    false
                }
                3 => {
                    match b {
                        0x07 => self.state = 0,
                        0x1b => self.state = 4,
                        _ => {}
                    }
                    false
                }
                _ => {
                    self.state = if b == b'\\' { 0 } else { 3 };
                    false
                }
            };
            if keep {
                buf[w] = b;
                w += 1;
            }
        }
        w
    }
}

/// An error message about the log, as told to the daemon.
pub type Message = Buf<512>;

/// Writes a component's output to its log path, rotating to `.1`, `.2`, ...
pub struct LogWriter<'a> {
    path: &'a CStr,
    fd: Option<Fd>,
    size: u64,
    max: u64,
    keep: u32,
    strip: Stripper,
    /// Monotonic ms before which a failed log is not tried again.
    retry_at: Option<u64>,
    /// The last byte written ended a line (rotation waits for this).
    line_start: bool,
    /// The last error, if writing is failing now.
    pub error: Option<Message>,
}

impl<'a> LogWriter<'a> {
    /// Opens (appending) the log at `path`.
    pub fn new(path: &'a CStr, max: u64, keep: u32) -> LogWriter<'a> {
        let mut w = LogWriter {
            path,
            fd: None,
            size: 0,
            max: max.max(1),
            keep,
            strip: Stripper::default(),
            retry_at: None,
            line_start: true,
            error: None,
        };
        w.open();
        w
    }

    // Rare, with path-sized buffers: out of line so `write`'s frame stays small (every
    // stack page a shim ever touches stays resident; docs/performance.md).
    #[cold]
    #[inline(never)]
    fn open(&mut self) {
        let flags = sys::O_WRONLY | sys::O_CREAT | sys::O_APPEND | sys::O_CLOEXEC;
        // Readable by dmucd's user and the log directory's group only (docs/security.md).
        match sys::open(self.path, flags, 0o640) {
            Ok(fd) => {
                self.size = sys::fstat(fd).map(|s| s.size).unwrap_or(0);
                self.fd = Some(fd);
                self.error = None;
            }
            Err(e) => self.fail("open", e),
        }
    }

    fn fail(&mut self, what: &str, e: sys::Errno) {
        if let Some(fd) = self.fd.take() {
            sys::close(fd);
        }
        let mut m = Message::new();
        let _ = write!(m, "cannot {what} {}: {e}", Lossy(self.path.to_bytes()));
        self.error = Some(m);
        self.retry_at = Some(sys::now_ms() + 1000);
    }

    /// Writes output bytes; `data` is cleaned in place first (its content is spent).
    pub fn write(&mut self, data: &mut [u8]) {
        let n = self.strip.strip(data);
        let clean = &data[..n];
        if self.fd.is_none() {
            if self.retry_at.is_some_and(|t| sys::now_ms() < t) {
                return; // dropped while the log is unwritable; reported via `error`
            }
            self.open();
        }
        // Fill the file up to `max`, finish the line that crosses it, rotate, go on: files stay
        // near `max` even when one read brings megabytes, and never split a line.
        let mut rest: &[u8] = clean;
        while !rest.is_empty() {
            if self.size >= self.max && self.line_start {
                self.rotate();
            }
            let room = (self.max.saturating_sub(self.size) as usize).max(1);
            let cut = if rest.len() <= room {
                rest.len()
            } else {
                rest[room - 1..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map_or(rest.len(), |i| room + i)
            };
            let (now, later) = rest.split_at(cut);
            self.put(now);
            if self.fd.is_none() {
                break; // failing now; the rest of this chunk is dropped (and reported)
            }
            rest = later;
        }
    }

    fn put(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(fd) = self.fd {
            match sys::write_all(fd, data) {
                Ok(()) => {
                    self.size += data.len() as u64;
                    self.line_start = data.last() == Some(&b'\n');
                }
                Err(e) => self.fail("write", e),
            }
        }
    }

    // Rare, with path-sized buffers: out of line so `write`'s frame stays small (every
    // stack page a shim ever touches stays resident; docs/performance.md).
    #[cold]
    #[inline(never)]
    fn rotate(&mut self) {
        if let Some(fd) = self.fd.take() {
            sys::close(fd);
        }
        let base = self.path.to_bytes();
        let name = |n: u32| {
            let mut b = Buf::<4200>::new();
            b.push(base);
            let _ = write!(b, ".{n}");
            b
        };
        if self.keep == 0 {
            let _ = sys::unlink(self.path);
        } else {
            if let Some(p) = name(self.keep).c_str() {
                let _ = sys::unlink(p);
            }
            for n in (1..self.keep).rev() {
                let (mut from, mut to) = (name(n), name(n + 1));
                if let (Some(f), Some(t)) = (from.c_str(), to.c_str()) {
                    let _ = sys::rename(f, t);
                }
            }
            if let Some(to) = name(1).c_str() {
                let _ = sys::rename(self.path, to);
            }
        }
        self.open();
    }
}

impl Drop for LogWriter<'_> {
    fn drop(&mut self) {
        if let Some(fd) = self.fd.take() {
            sys::close(fd);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_all(parts: &[&[u8]]) -> Vec<u8> {
        let mut s = Stripper::default();
        let mut out = Vec::new();
        for p in parts {
            let mut b = p.to_vec();
            let n = s.strip(&mut b);
            out.extend_from_slice(&b[..n]);
        }
        out
    }

    #[test]
    fn strips_sequences_even_when_split() {
        assert_eq!(strip_all(&[b"\x1b[31mred\x1b[0m\r\n"]), b"red\n");
        assert_eq!(strip_all(&[b"a\x1b[3", b"8;5;1mb\n"]), b"ab\n");
        assert_eq!(strip_all(&[b"\x1b]0;title\x07x\x1b]2;t\x1b\\y\n"]), b"xy\n");
        assert_eq!(strip_all(&[b"tab\there\x08\n"]), b"tab\there\n");
    }

    #[test]
    fn rotates_at_line_boundaries_and_keeps_n() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        let mut w = LogWriter::new(&c, 10, 2);
        let mut put = |s: &str| w.write(&mut s.as_bytes().to_vec());
        for i in 0..6 {
            put(&format!("line-{i}-xxxx\n"));
        }
        let read = |s: &str| std::fs::read_to_string(dir.path().join(s)).unwrap_or_default();
        // Rotation happens when the next line comes, so the live file holds the newest line.
        assert_eq!(read("c.log"), "line-5-xxxx\n");
        assert_eq!(read("c.log.1"), "line-4-xxxx\n");
        assert_eq!(read("c.log.2"), "line-3-xxxx\n");
        assert!(!dir.path().join("c.log.3").exists());
        put("partial");
        put(" line\n");
        assert_eq!(read("c.log"), "partial line\n");
        assert_eq!(read("c.log.1"), "line-5-xxxx\n");
        // One read bringing many lines is still spread over files of about max bytes.
        put("aaaaaaaa\nbbbbbbbb\ncccccccc\n");
        assert_eq!(read("c.log"), "cccccccc\n");
        assert_eq!(
            read("c.log.1"),
            "aaaaaaaa\nbbbbbbbb\n",
            "the line crossing max is finished"
        );
        assert_eq!(read("c.log.2"), "partial line\n");
    }

    #[test]
    fn unwritable_log_does_not_panic_and_reports() {
        let mut w = LogWriter::new(c"/nonexistent-dir/x.log", 100, 1);
        w.write(&mut b"hello\n".to_vec());
        let e = w
            .error
            .as_ref()
            .map(|m| String::from_utf8_lossy(m.bytes()).into_owned());
        assert_eq!(
            e.as_deref(),
            Some("cannot open /nonexistent-dir/x.log: No such file or directory (os error 2)")
        );
    }
}
