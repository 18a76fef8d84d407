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

/// Events kept in memory.
const RING: usize = 4096;
/// Events a follower may fall behind before it is told it missed some.
const FOLLOW_LAG: usize = 1024;

/// The log.
pub struct EventLog {
    path: PathBuf,
    file: Option<File>,
    ring: VecDeque<EventRecord>,
    seq: u64,
    tx: broadcast::Sender<EventRecord>,
}

impl EventLog {
    /// Opens (or creates) `path` and resumes its sequence.
    pub fn open(path: &Path) -> EventLog {
        let seq = last_seq(path).unwrap_or(0);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| tracing::warn!("cannot open {}: {e}", path.display()))
            .ok();
        EventLog {
            path: path.to_path_buf(),
            file,
            ring: VecDeque::new(),
            seq,
            tx: broadcast::channel(FOLLOW_LAG).0,
        }
    }

    /// Records an event and returns it.
    pub fn push(&mut self, component: Option<&str>, what: EventWhat) -> EventRecord {
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

/// Events of the file with `since < seq < before` (blocking: call off the actor).
pub fn read_file(path: &Path, since: u64, before: u64) -> Vec<EventRecord> {
    let Ok(f) = File::open(path) else {
        return Vec::new();
    };
    std::io::BufReader::new(f)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str::<EventRecord>(&l).ok())
        .filter(|e| e.seq > since && e.seq < before)
        .collect()
}

/// The sequence number of the file's last complete record.
fn last_seq(path: &Path) -> Option<u64> {
    let mut f = File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut tail = String::new();
    f.read_to_string(&mut tail).ok()?;
    tail.lines()
        .rev()
        .find_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["seq"].as_u64())
}

#[cfg(test)]
mod tests {
    use super::*;

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
