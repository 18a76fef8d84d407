//! Process exec and exit times from the kernel: the netlink process-events connector
//! (`NETLINK_CONNECTOR`, `CN_IDX_PROC`; needs root). Each event carries the kernel's own
//! timestamp (`ktime_get_ns`, the `CLOCK_MONOTONIC` clock), so measuring a supervisor adds no
//! polling delay of ours: a collector thread records every exec and exit as it arrives.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// What has been seen so far.
#[derive(Default)]
pub struct Seen {
    /// Exec timestamps (ns) of every process, in order.
    pub execs: HashMap<u32, Vec<u64>>,
    /// Exit timestamp (ns) of every process.
    pub exits: HashMap<u32, u64>,
    /// Processes whose executable was the tracked one when their exec was read, with the
    /// timestamp of their last exec (PIDs are reused: compare with `exits`).
    pub tracked: HashMap<u32, u64>,
    /// Events lost to a full socket buffer (should stay 0).
    pub overruns: u64,
}

/// The collector: a thread reading proc events into [`Seen`].
pub struct ProcEvents {
    shared: Arc<(Mutex<Seen>, Condvar)>,
}

/// `CLOCK_MONOTONIC` now, in ns (the clock of the events' timestamps).
pub fn mono_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes into our timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

impl Seen {
    /// Tracked processes running now that started (last exec) after `t0`: (pid, exec ts).
    pub fn live_since(&self, t0: u64) -> Vec<(u32, u64)> {
        self.tracked
            .iter()
            .filter(|(pid, ts)| **ts > t0 && self.exits.get(pid).is_none_or(|e| e < *ts))
            .map(|(p, t)| (*p, *t))
            .collect()
    }
}

impl ProcEvents {
    /// Subscribes and starts collecting; execs of `exe` are marked as tracked.
    pub fn start(exe: PathBuf) -> std::io::Result<ProcEvents> {
        let fd = subscribe()?;
        let shared: Arc<(Mutex<Seen>, Condvar)> = Arc::default();
        let s = shared.clone();
        std::thread::spawn(move || collect(&fd, &exe, &s));
        Ok(ProcEvents { shared })
    }

    /// Waits (until `deadline`) for `f` to give a value over what has been seen; re-checked
    /// at every event.
    pub fn wait<T>(&self, deadline: Instant, mut f: impl FnMut(&Seen) -> Option<T>) -> Option<T> {
        let (m, cv) = &*self.shared;
        let mut g = m.lock().unwrap();
        loop {
            if let Some(v) = f(&g) {
                return Some(v);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            g = cv.wait_timeout(g, left).unwrap().0;
        }
    }

    /// Makes sure every event generated before now has been read: starts a marker process
    /// and waits for its exec (the connector delivers in order).
    pub fn sync(&self) {
        let t = mono_ns();
        let child = std::process::Command::new("/bin/true").spawn().unwrap();
        let pid = child.id();
        let deadline = Instant::now() + Duration::from_secs(10);
        self.wait(deadline, |s| {
            s.exits.get(&pid).filter(|e| **e > t).map(|_| ())
        })
        .expect("proc events stopped arriving");
        let mut child = child;
        let _ = child.wait();
    }

    /// Runs `f` over what has been seen.
    pub fn with<T>(&self, f: impl FnOnce(&Seen) -> T) -> T {
        f(&self.shared.0.lock().unwrap())
    }
}

fn subscribe() -> std::io::Result<OwnedFd> {
    const NETLINK_CONNECTOR: i32 = 11;
    const CN_IDX_PROC: u32 = 1;
    const CN_VAL_PROC: u32 = 1;
    const PROC_CN_MCAST_LISTEN: u32 = 1;
    // SAFETY: plain socket calls on a fd we own; the structures are built byte by byte.
    unsafe {
        let fd = libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            NETLINK_CONNECTOR,
        );
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        // Bursts of 100 starts must not overflow the queue.
        let size: i32 = 16 << 20;
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const i32).cast(),
            4,
        );
        let mut addr: libc::sockaddr_nl = std::mem::zeroed();
        addr.nl_family = libc::AF_NETLINK as u16;
        addr.nl_groups = CN_IDX_PROC;
        if libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as u32,
        ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
        // nlmsghdr (16) + cn_msg (20) + the op (4).
        let mut msg = Vec::with_capacity(40);
        msg.extend_from_slice(&40u32.to_ne_bytes()); // nlmsg_len
        msg.extend_from_slice(&(libc::NLMSG_DONE as u16).to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&std::process::id().to_ne_bytes());
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&4u16.to_ne_bytes()); // len
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        if libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(fd)
    }
}

fn collect(fd: &OwnedFd, exe: &std::path::Path, shared: &(Mutex<Seen>, Condvar)) {
    const PROC_EVENT_EXEC: u32 = 0x2;
    const PROC_EVENT_EXIT: u32 = 0x8000_0000;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            if std::io::Error::last_os_error().raw_os_error() == Some(libc::ENOBUFS) {
                shared.0.lock().unwrap().overruns += 1;
                continue;
            }
            return;
        }
        let d = &buf[..n as usize];
        // nlmsghdr (16) + cn_msg (20), then proc_event: what, cpu, timestamp_ns, data.
        let u32_at = |o: usize| {
            d.get(o..o + 4)
                .map(|b| u32::from_ne_bytes(b.try_into().unwrap()))
        };
        let (Some(what), Some(ts)) = (u32_at(36), d.get(44..52)) else {
            continue;
        };
        let ts = u64::from_ne_bytes(ts.try_into().unwrap());
        let (Some(pid), Some(tgid)) = (u32_at(52), u32_at(56)) else {
            continue;
        };
        if pid != tgid {
            continue; // a thread, not a process
        }
        let (m, cv) = shared;
        match what {
            PROC_EVENT_EXEC => {
                // Read now, while the process runs (a shell's exec is followed by the
                // program's: the last exec of a tracked PID is the program's).
                let is_tracked =
                    std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|p| p == exe);
                let mut s = m.lock().unwrap();
                s.execs.entry(pid).or_default().push(ts);
                if is_tracked {
                    s.tracked.insert(pid, ts);
                }
            }
            PROC_EVENT_EXIT => {
                m.lock().unwrap().exits.insert(pid, ts);
            }
            _ => continue,
        }
        cv.notify_all();
    }
}
