//! A component's log file: terminal control sequences stripped, size-based rotation, and
//! graceful degradation when the file cannot be written (the component keeps running; we try
//! again at most once a second).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Removes ANSI escape sequences, carriage returns and other control bytes (keeps `\n`, `\t`).
/// Stateful, so a sequence split across two reads is still removed.
#[derive(Debug, Default)]
pub struct Stripper {
    state: u8, // 0 text, 1 after ESC, 2 in CSI, 3 in OSC/DCS string, 4 ESC inside string
}

impl Stripper {
    /// Appends the cleaned form of `input` to `out`.
    pub fn strip(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            match self.state {
                0 => match b {
                    0x1b => self.state = 1,
                    b'\n' | b'\t' => out.push(b),
                    0..=0x1f | 0x7f => {}
                    _ => out.push(b),
                },
                1 => {
                    self.state = match b {
                        b'[' => 2,
                        b']' | b'P' | b'X' | b'^' | b'_' => 3,
                        _ => 0,
                    }
                }
                2 => {
                    if (0x40..=0x7e).contains(&b) {
                        self.state = 0;
                    }
                }
                3 => match b {
                    0x07 => self.state = 0,
                    0x1b => self.state = 4,
                    _ => {}
                },
                _ => self.state = if b == b'\\' { 0 } else { 3 },
            }
        }
    }
}

/// Writes a component's output to `<dir>/<name>.log`, rotating to `.1`, `.2`, ...
#[derive(Debug)]
pub struct LogWriter {
    path: PathBuf,
    file: Option<File>,
    size: u64,
    max: u64,
    keep: u32,
    strip: Stripper,
    buf: Vec<u8>,
    retry_at: Option<Instant>,
    /// The last byte written ended a line (rotation waits for this).
    line_start: bool,
    /// The last error, if writing is failing now.
    pub error: Option<String>,
}

impl LogWriter {
    /// Opens (appending) the log at `path`.
    pub fn new(path: &Path, max: u64, keep: u32) -> LogWriter {
        let mut w = LogWriter {
            path: path.to_path_buf(),
            file: None,
            size: 0,
            max: max.max(1),
            keep,
            strip: Stripper::default(),
            buf: Vec::new(),
            retry_at: None,
            line_start: true,
            error: None,
        };
        w.open();
        w
    }

    fn open(&mut self) {
        match OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
        {
            Ok(f) => {
                self.size = f.metadata().map(|m| m.len()).unwrap_or(0);
                self.file = Some(f);
                self.error = None;
            }
            Err(e) => self.fail(format!("cannot open {}: {e}", self.path.display())),
        }
    }

    fn fail(&mut self, msg: String) {
        self.file = None;
        self.error = Some(msg);
        self.retry_at = Some(Instant::now() + Duration::from_secs(1));
    }

    /// Writes output bytes (raw, as the program wrote them).
    pub fn write(&mut self, data: &[u8]) {
        let mut clean = std::mem::take(&mut self.buf);
        clean.clear();
        self.strip.strip(data, &mut clean);
        if self.file.is_none() {
            if self.retry_at.is_some_and(|t| Instant::now() < t) {
                self.buf = clean;
                return; // dropped while the log is unwritable; reported via `error`
            }
            self.open();
        }
        // Fill the file up to `max`, finish the line that crosses it, rotate, go on: files stay
        // near `max` even when one read brings megabytes, and never split a line.
        let mut rest: &[u8] = &clean;
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
            if self.file.is_none() {
                break; // failing now; the rest of this chunk is dropped (and reported)
            }
            rest = later;
        }
        self.buf = clean;
    }

    fn put(&mut self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        if let Some(f) = self.file.as_mut() {
            match f.write_all(data) {
                Ok(()) => {
                    self.size += data.len() as u64;
                    self.line_start = data.last() == Some(&b'\n');
                }
                Err(e) => self.fail(format!("cannot write {}: {e}", self.path.display())),
            }
        }
    }

    fn rotate(&mut self) {
        self.file = None;
        let name = |n: u32| PathBuf::from(format!("{}.{n}", self.path.display()));
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::remove_file(name(self.keep));
            for n in (1..self.keep).rev() {
                let _ = std::fs::rename(name(n), name(n + 1));
            }
            let _ = std::fs::rename(&self.path, name(1));
        }
        self.open();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strip_all(parts: &[&[u8]]) -> Vec<u8> {
        let mut s = Stripper::default();
        let mut out = Vec::new();
        for p in parts {
            s.strip(p, &mut out);
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
        let mut w = LogWriter::new(&p, 10, 2);
        for i in 0..6 {
            w.write(format!("line-{i}-xxxx\n").as_bytes());
        }
        let read = |s: &str| std::fs::read_to_string(dir.path().join(s)).unwrap_or_default();
        // Rotation happens when the next line comes, so the live file holds the newest line.
        assert_eq!(read("c.log"), "line-5-xxxx\n");
        assert_eq!(read("c.log.1"), "line-4-xxxx\n");
        assert_eq!(read("c.log.2"), "line-3-xxxx\n");
        assert!(!dir.path().join("c.log.3").exists());
        w.write(b"partial");
        w.write(b" line\n");
        assert_eq!(read("c.log"), "partial line\n");
        assert_eq!(read("c.log.1"), "line-5-xxxx\n");
        // One read bringing many lines is still spread over files of about max bytes.
        w.write(b"aaaaaaaa\nbbbbbbbb\ncccccccc\n");
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
        let mut w = LogWriter::new(Path::new("/nonexistent-dir/x.log"), 100, 1);
        w.write(b"hello\n");
        assert!(w.error.as_deref().unwrap_or("").contains("cannot open"));
    }
}
