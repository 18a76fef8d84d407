//! The event log: every state change, exit and probe verdict gets the next sequence number,
//! is appended to `state_dir/events.jsonl`, kept in a bounded in-memory ring for `events
//! --since`, and broadcast to followers. The sequence continues across daemon restarts (it
//! resumes after the last record of the file), so a client can resume from any number it saw.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use dmuc_proto::{EventRecord, EventWhat};
use tokio::sync::broadcast;

pub mod storm;

/// Events kept in memory.
const RING: usize = 4096;
/// Events a follower may fall behind before it is told it missed some.
const FOLLOW_LAG: usize = 1024;
/// The most of one log line an exit event carries (cut, and marked, beyond): a program that
/// prints megabyte lines must not make every record, the file and each reader's frame that big.
pub const TAIL_LINE_BYTES: usize = 1024;

/// Cuts an exit event's log lines to [`TAIL_LINE_BYTES`] each (records written by an older
/// dmucd are cut when read back too).
pub fn cap(what: &mut EventWhat) {
    if let EventWhat::Exit { tail, .. } = what {
        for l in tail.iter_mut().filter(|l| l.len() > TAIL_LINE_BYTES) {
            let mut cut = TAIL_LINE_BYTES;
            while !l.is_char_boundary(cut) {
                cut -= 1;
            }
            let more = l.len() - cut;
            l.truncate(cut);
            l.push_str(&format!(" [dmuc: {more} more bytes in the log file]"));
        }
    }
}

/// The log.
pub struct EventLog {
    path: PathBuf,
    file: Option<File>,
    ring: VecDeque<EventRecord>,
    seq: u64,
    tx: broadcast::Sender<EventRecord>,
    /// Bytes in the current file, and the size and number of files past which it rotates
    /// (`events.jsonl.1` newest … `.keep`); `max` 0: never.
    size: u64,
    max: u64,
    keep: u32,
}

impl EventLog {
    /// Opens (or creates) `path` and resumes its sequence.
    pub fn open(path: &Path) -> EventLog {
        // A file just rotated is empty: the sequence goes on from the newest rotated one.
        let seq = last_seq(path)
            .or_else(|| last_seq(&rotated(path, 1)))
            .unwrap_or(0);
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let file = open_shared(path);
        EventLog {
            path: path.to_path_buf(),
            file,
            ring: VecDeque::new(),
            seq,
            tx: broadcast::channel(FOLLOW_LAG).0,
            size,
            max: 0,
            keep: 0,
        }
    }

    /// Rotates the file when it reaches `max` bytes, keeping `keep` old ones.
    pub fn rotating(mut self, max: u64, keep: u32) -> EventLog {
        (self.max, self.keep) = (max, keep);
        self
    }

    /// `events.jsonl` → `.1` → … → `.keep` (the oldest dropped), and a new empty file.
    fn rotate(&mut self) {
        let _ = std::fs::remove_file(rotated(&self.path, self.keep));
        for n in (1..self.keep).rev() {
            let _ = std::fs::rename(rotated(&self.path, n), rotated(&self.path, n + 1));
        }
        if self.keep == 0 {
            let _ = std::fs::remove_file(&self.path);
        } else {
            let _ = std::fs::rename(&self.path, rotated(&self.path, 1));
        }
        self.file = open_shared(&self.path);
        self.size = 0;
    }

    /// Records an event and returns it.
    pub fn push(&mut self, component: Option<&str>, mut what: EventWhat) -> EventRecord {
        cap(&mut what);
        self.seq += 1;
        let rec = EventRecord {
            seq: self.seq,
            ts_us: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or(0),
            component: component.map(str::to_string),
            what,
        };
        if let Some(f) = self.file.as_mut()
            && let Ok(mut line) = serde_json::to_string(&rec)
        {
            line.push('\n');
            // One write per record, so a reader never sees half a line from us.
            let _ = f.write_all(line.as_bytes());
            self.size += line.len() as u64;
            if self.max > 0 && self.size >= self.max {
                self.rotate();
            }
        }
        if self.ring.len() == RING {
            self.ring.pop_front();
        }
        self.ring.push_back(rec.clone());
        let _ = self.tx.send(rec.clone());
        rec
    }

    /// A receiver of events pushed from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<EventRecord> {
        self.tx.subscribe()
    }

    /// The last sequence number given.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Events after `since` that the ring still holds, and whether older ones must come from
    /// the file (the ring starts after `since + 1`).
    pub fn since(&self, since: u64) -> (Vec<EventRecord>, bool) {
        let from_ring: Vec<_> = self
            .ring
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect();
        let first = self.ring.front().map_or(self.seq + 1, |e| e.seq);
        (from_ring, first > since + 1)
    }

    /// The most recent `n` events.
    pub fn last(&self, n: usize) -> Vec<EventRecord> {
        self.ring
            .iter()
            .skip(self.ring.len().saturating_sub(n))
            .cloned()
            .collect()
    }

    /// The file, for reading old events.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The event log for appending, mode 0640 and the group of the state files (as status.json):
/// the control socket refuses `events` to others, so does the file.
fn open_shared(path: &Path) -> Option<File> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .map_err(|e| tracing::warn!("cannot open {}: {e}", path.display()))
        .ok()?;
    // An older dmucd's file was 0644.
    let _ = f.set_permissions(std::fs::Permissions::from_mode(0o640));
    if let Some(gid) = crate::statefile::group() {
        let _ = nix::unistd::fchown(&f, None, Some(gid.into()));
    }
    Some(f)
}

/// `events.jsonl.N`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{n}"));
    PathBuf::from(p)
}

/// Events with `since < seq < before` from the file and its rotated ones, oldest first
/// (blocking: call off the actor). A record that does not parse (a torn or foreign line,
/// bytes that are not UTF-8) is skipped, and an old record's long lines are cut as new ones
/// are: any file can be read back.
pub fn read_file(path: &Path, since: u64, before: u64) -> Vec<EventRecord> {
    // The rotated files that exist, oldest (highest number) first, then the current one.
    let mut files: Vec<PathBuf> = (1..)
        .map(|n| rotated(path, n))
        .take_while(|p| p.exists())
        .collect();
    files.reverse();
    files.push(path.to_path_buf());
    let mut out = Vec::new();
    for p in files {
        // A file wholly before `since` is skipped by its last record.
        if p != path && last_seq(&p).is_some_and(|s| s <= since) {
            continue;
        }
        out.extend(read_one(&p, since, before));
    }
    out
}

fn read_one(path: &Path, since: u64, before: u64) -> Vec<EventRecord> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .split(b'\n')
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_slice::<EventRecord>(&l).ok())
        .filter(|e| e.seq > since && e.seq < before)
        .map(|mut e| {
            cap(&mut e.what);
            e
        })
        .collect()
}

/// The sequence number of the file's last complete record: read backwards in growing
/// windows, so that a last record longer than a window (an older dmucd's uncut exit lines) is
/// still found rather than the sequence starting over.
fn last_seq(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let mut window = 64 * 1024u64;
    loop {
        let start = len.saturating_sub(window);
        f.seek(SeekFrom::Start(start)).ok()?;
        let mut tail = Vec::new();
        f.read_to_end(&mut tail).ok()?;
        let found = tail
            .split(|b| *b == b'\n')
            .rev()
            .find_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok()?["seq"].as_u64());
        if found.is_some() || start == 0 {
            return found;
        }
        window *= 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Three 3 MB lines before an exit: the record stays small; an old file holding such a
    /// record, a torn line and bytes that are not UTF-8 is read back whole, cut, and its
    /// sequence resumed.
    #[test]
    fn exit_tails_are_cut_and_any_file_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let big = "é".repeat(1_500_000);
        let exit = |tail: Vec<String>| EventWhat::Exit {
            pid: Some(7),
            code: Some(1),
            signal: None,
            status: "exit status 1".into(),
            tail,
        };
        let mut log = EventLog::open(&p);
        let rec = log.push(
            Some("a"),
            exit(vec![big.clone(), big.clone(), "last".into()]),
        );
        let EventWhat::Exit { tail, .. } = &rec.what else {
            panic!()
        };
        assert!(tail[0].len() < TAIL_LINE_BYTES + 64, "{}", tail[0].len());
        assert!(
            tail[0].ends_with("more bytes in the log file]"),
            "{}",
            &tail[0][1000..]
        );
        assert_eq!(tail[2], "last");
        assert!(std::fs::metadata(&p).unwrap().len() < 4096);
        drop(log);
        // An older dmucd's uncut record, then garbage, then a torn line.
        let old = EventRecord {
            seq: 2,
            ts_us: 1,
            component: Some("a".into()),
            what: exit(vec![big.clone(); 3]),
        };
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(serde_json::to_string(&old).unwrap().as_bytes())
            .unwrap();
        f.write_all(b"\n\xff\xfe not json\n{\"seq\": 9, \"torn")
            .unwrap();
        drop(f);
        let back = read_file(&p, 0, u64::MAX);
        assert_eq!(back.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let EventWhat::Exit { tail, .. } = &back[1].what else {
            panic!()
        };
        assert!(tail.iter().all(|l| l.len() < TAIL_LINE_BYTES + 64));
        // The 9 MB record is the last complete one: its number is found past 64 KiB.
        assert_eq!(EventLog::open(&p).seq(), 2);
    }

    /// A crash loop's events rotate like the logs: the file stays under its size, `since`
    /// reads across the rotated files in order, and the sequence goes on after a restart.
    #[test]
    fn the_file_rotates_and_reads_back_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let ev = || EventWhat::Daemon {
            message: "x".repeat(100),
        };
        let mut log = EventLog::open(&p).rotating(4096, 2);
        for _ in 0..200 {
            log.push(Some("a"), ev());
        }
        for f in [p.clone(), rotated(&p, 1), rotated(&p, 2)] {
            assert!(
                std::fs::metadata(&f).unwrap().len() < 4096 + 512,
                "{}",
                f.display()
            );
        }
        assert!(!rotated(&p, 3).exists());
        let all = read_file(&p, 0, u64::MAX);
        let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, no gap: {seqs:?}"
        );
        assert_eq!(*seqs.last().unwrap(), 200);
        let later = read_file(&p, 190, u64::MAX);
        assert_eq!(later.first().map(|e| e.seq), Some(191));
        drop(log);
        // Right after a rotation the current file is empty: the sequence still goes on.
        let mut log = EventLog::open(&p).rotating(4096, 2);
        log.rotate();
        drop(log);
        assert_eq!(EventLog::open(&p).seq(), 200);
    }

    #[test]
    fn sequence_resumes_after_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let mut log = EventLog::open(&p);
        for _ in 0..3 {
            log.push(
                Some("a"),
                EventWhat::Daemon {
                    message: "x".into(),
                },
            );
        }
        drop(log);
        let mut log = EventLog::open(&p);
        assert_eq!(log.seq(), 3);
        let e = log.push(
            None,
            EventWhat::Daemon {
                message: "y".into(),
            },
        );
        assert_eq!(e.seq, 4);
        let (ring, need_file) = log.since(1);
        assert_eq!(ring.len(), 1);
        assert!(need_file, "2 and 3 are only in the file");
        let old = read_file(&p, 1, ring[0].seq);
        assert_eq!(old.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![2, 3]);
        let (ring, need_file) = log.since(3);
        assert_eq!((ring.len(), need_file), (1, false));
        assert_eq!(log.last(1)[0].seq, 4);
    }
}
