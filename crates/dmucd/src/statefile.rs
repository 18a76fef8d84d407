//! Writes `adopt.json` and `status.json` off the runtime actor. Replacing a file by rename
//! makes ext4 flush the new file's data first (`auto_da_alloc`): ~0.3 ms of I/O wait per file
//! on this machine, paid on each turn of the actor that changed a state — 250 renames while
//! 100 components start (measured with strace; docs/performance.md). A writer thread takes
//! the newest snapshot whenever it is free, so the actor never waits on the disk and a burst
//! of changes costs a few writes. (The actor also paces status.json: see `STATUS_INTERVAL`
//! in runtime.rs.) [`StateWriter::flush`] waits until the newest snapshot is on disk
//! (before READY=1 and at exit).

use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};

/// One snapshot: (file name, bytes), written in this order.
pub type Snapshot = Vec<(&'static str, Vec<u8>)>;

/// Makes a snapshot's bytes, on the writer thread (serializing is most of the cost, and a
/// snapshot replaced before its turn is never serialized at all).
pub type Render = Box<dyn FnOnce() -> Snapshot + Send>;

#[derive(Default)]
struct Shared {
    newest: Option<Render>,
    /// Snapshots handed in / written so far.
    submitted: u64,
    written: u64,
    closed: bool,
}

/// The writer thread's handle.
pub struct StateWriter {
    shared: Arc<(Mutex<Shared>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl StateWriter {
    /// Starts the writer for files in `dir` (if no thread can be made, `submit` writes
    /// synchronously).
    pub fn start(dir: PathBuf) -> StateWriter {
        let shared: Arc<(Mutex<Shared>, Condvar)> = Arc::default();
        let s = shared.clone();
        let d = dir.clone();
        let thread = std::thread::Builder::new()
            .name("dmucd-statefile".into())
            .spawn(move || run(&d, &s));
        if let Err(e) = &thread {
            tracing::warn!("no state-file thread ({e}); writing state files inline");
        }
        StateWriter {
            shared,
            thread: thread.ok(),
            dir,
        }
    }

    /// Hands in a snapshot; an older one not yet written is dropped.
    pub fn submit(&self, render: Render) {
        if self.thread.is_none() {
            for (name, bytes) in &render() {
                replace(&self.dir, name, bytes);
            }
            return;
        }
        let (m, cv) = &*self.shared;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        s.newest = Some(render);
        s.submitted += 1;
        cv.notify_all();
    }

    /// Waits until the newest snapshot handed in is written.
    pub fn flush(&self) {
        let (m, cv) = &*self.shared;
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        let target = s.submitted;
        while s.written < target && !s.closed && self.thread.is_some() {
            s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for StateWriter {
    fn drop(&mut self) {
        self.flush();
        {
            let (m, cv) = &*self.shared;
            m.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
            cv.notify_all();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(dir: &std::path::Path, shared: &(Mutex<Shared>, Condvar)) {
    let (m, cv) = shared;
    loop {
        let (render, generation) = {
            let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
            while s.newest.is_none() && !s.closed {
                s = cv.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            match s.newest.take() {
                Some(f) => (f, s.submitted),
                None => return, // closed and nothing left
            }
        };
        for (name, bytes) in &render() {
            replace(dir, name, bytes);
        }
        let mut s = m.lock().unwrap_or_else(|e| e.into_inner());
        s.written = generation;
        cv.notify_all();
    }
}

/// Replaces a file atomically (readers never see half of it), mode 0640: dmucd's user and
/// the group of `[daemon] group` (set with [`set_group`]) may read it, nobody else; the
/// control socket's policy says the same.
fn replace(dir: &std::path::Path, name: &str, bytes: &[u8]) {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let r = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)
        .and_then(|mut f| {
            if let Some(gid) = group() {
                let _ = nix::unistd::fchown(&f, None, Some(gid.into()));
            }
            f.write_all(bytes)
        })
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = r {
        tracing::debug!("cannot write {}: {e}", path.display());
    }
}

/// The gid of `[daemon] group`, which may read the state files and logs.
static GROUP: std::sync::OnceLock<Option<u32>> = std::sync::OnceLock::new();

/// Sets the group of the state files (once, at start).
pub fn set_group(gid: Option<u32>) {
    let _ = GROUP.set(gid);
}

/// The group of the state files.
pub fn group() -> Option<u32> {
    GROUP.get().copied().flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_snapshot_wins_and_flush_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let w = StateWriter::start(dir.path().to_path_buf());
        for i in 0..50 {
            w.submit(Box::new(move || {
                vec![
                    ("adopt.json", format!("a{i}").into_bytes()),
                    ("status.json", format!("s{i}").into_bytes()),
                ]
            }));
        }
        w.flush();
        let read = |n: &str| std::fs::read_to_string(dir.path().join(n)).unwrap();
        assert_eq!(
            (read("adopt.json"), read("status.json")),
            ("a49".into(), "s49".into())
        );
        w.submit(Box::new(|| vec![("status.json", b"last".to_vec())]));
        drop(w); // dropping writes what is pending
        assert_eq!(read("status.json"), "last");
    }
}
