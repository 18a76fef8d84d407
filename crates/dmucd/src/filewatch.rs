//! One inotify instance for all of dmucd's file watches (log followers, log probes), read by
//! one thread. A follower costs a watch on its file (shared with any other follower of the
//! same file) and its directory's (shared with every follower in that directory), never an
//! inotify instance of its own: those are few (128 per user by default, shared with every
//! other program of dmucd's user, root's in production).
//!
//! A [`Watch`] is a counter bumped at each event on what it watches; waiting on it is
//! waiting for the next event, and a bump that came while nobody waited is not lost.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::sync::watch;

/// The instance and who waits on which of its watches.
struct Shared {
    ino: Inotify,
    /// A watch descriptor: how many [`Watch`]es hold it, and their counter.
    watches: Mutex<HashMap<WatchDescriptor, (usize, watch::Sender<u64>)>>,
}

/// inotify(7)'s IN_MASK_ADD (linux/inotify.h), which nix does not name.
const IN_MASK_ADD: u32 = 0x2000_0000;

static SHARED: OnceLock<Result<Arc<Shared>, String>> = OnceLock::new();

/// The instance, made with its reading thread at first use.
fn shared() -> std::io::Result<Arc<Shared>> {
    SHARED
        .get_or_init(|| {
            let ino = Inotify::init(InitFlags::IN_CLOEXEC).map_err(|e| e.to_string())?;
            let s = Arc::new(Shared {
                ino,
                watches: Mutex::new(HashMap::new()),
            });
            let reader = s.clone();
            std::thread::Builder::new()
                .name("dmucd-inotify".into())
                .spawn(move || read_events(&reader))
                .map_err(|e| e.to_string())?;
            Ok(s)
        })
        .clone()
        .map_err(std::io::Error::other)
}

/// The reading thread: blocks on the instance, bumps the counters of the watches each
/// event names (all of them when the kernel's queue overflowed and events were lost).
fn read_events(s: &Shared) {
    loop {
        let events = match s.ino.read_events() {
            Ok(e) => e,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                // Followers then wait for nothing new; they end with their clients.
                tracing::error!("inotify: {e}: log following stops");
                return;
            }
        };
        let watches = s.watches.lock().unwrap_or_else(|p| p.into_inner());
        for ev in events {
            if ev.mask.contains(AddWatchFlags::IN_Q_OVERFLOW) {
                for (_, tx) in watches.values() {
                    tx.send_modify(|n| *n += 1);
                }
            } else if let Some((_, tx)) = watches.get(&ev.wd) {
                tx.send_modify(|n| *n += 1);
            }
        }
    }
}

/// A watch on a path of the shared instance; removed when its last holder drops it.
pub struct Watch {
    shared: Arc<Shared>,
    wd: WatchDescriptor,
    rx: watch::Receiver<u64>,
}

impl Watch {
    /// Watches `path` for `mask` (added to what others watch it for: a spurious wake-up
    /// costs a re-read, a missed one a stuck follower).
    pub fn new(path: &Path, mask: AddWatchFlags) -> std::io::Result<Watch> {
        let shared = shared()?;
        let mut watches = shared.watches.lock().unwrap_or_else(|p| p.into_inner());
        let wd = shared
            .ino
            .add_watch(path, mask | AddWatchFlags::from_bits_retain(IN_MASK_ADD))?;
        let (count, tx) = watches
            .entry(wd)
            .or_insert_with(|| (0, watch::channel(0).0));
        *count += 1;
        let rx = tx.subscribe();
        drop(watches);
        Ok(Watch { shared, wd, rx })
    }

    /// Until an event on the path since the last call (or since the watch was made).
    pub async fn changed(&mut self) {
        // The sender lives while this watch holds its entry: an error cannot happen, and
        // would only mean a re-read.
        let _ = self.rx.changed().await;
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut watches = self
            .shared
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((count, _)) = watches.get_mut(&self.wd) {
            *count -= 1;
            if *count == 0 {
                watches.remove(&self.wd);
                // Gone already when the file was (IN_IGNORED): nothing to remove then.
                let _ = self.shared.ino.rm_watch(self.wd);
            }
        }
    }
}
