//! systemd's readiness protocol (sd_notify(3)), by hand: one datagram per message to
//! `$NOTIFY_SOCKET` (a path, or `@name` in the abstract namespace). Without that variable
//! every call is a no-op, so running in a terminal costs nothing.
//!
//! Also: whether the SIGTERM dmucd got means "stop the cluster" (`systemctl stop`) or "the
//! daemon restarts" (`systemctl restart`): systemd sends the same signal for both, but during a
//! restart the unit's job is of type `restart` (see [`restart_job_pending`]).

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The notification socket, when systemd gave one.
pub struct Notifier {
    target: Option<(UnixDatagram, SocketAddr)>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `$NOTIFY_SOCKET` and `$WATCHDOG_USEC`/`$WATCHDOG_PID`.
    pub fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET").ok().and_then(|p| {
            let addr = match p.strip_prefix('@') {
                Some(name) => SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
                None => SocketAddr::from_pathname(&p).ok()?,
            };
            let sock = UnixDatagram::unbound().ok()?;
            Some((sock, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .ok()
            .is_none_or(|p| p.parse::<u32>().ok() == Some(std::process::id()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(Duration::from_micros);
        Notifier { target, watchdog }
    }

    /// Whether systemd listens.
    pub fn active(&self) -> bool {
        self.target.is_some()
    }

    /// How often to send `WATCHDOG=1`: half the interval systemd expects, as sd_notify(3)
    /// recommends.
    pub fn watchdog_every(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    /// Sends one message (`KEY=VALUE` lines); failures are logged, never fatal.
    pub fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.target
            && let Err(e) = sock.send_to_addr(msg.as_bytes(), addr)
        {
            tracing::debug!("sd_notify: {e}");
        }
    }
}

/// Our systemd unit, from our cgroup (`0::/system.slice/dmucd.service` → `dmucd.service`).
fn own_unit() -> Option<String> {
    let cg = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    cg.lines()
        .filter_map(|l| l.rsplit('/').next())
        .find(|u| u.ends_with(".service"))
        .map(str::to_string)
}

/// True when systemd is restarting our unit (its job is of type `restart`): the components
/// then stay up for the next dmucd to adopt. Outside systemd, false.
pub fn restart_job_pending() -> bool {
    if std::env::var_os("INVOCATION_ID").is_none() {
        return false;
    }
    let Some(unit) = own_unit() else {
        return false;
    };
    let Ok(out) = std::process::Command::new("systemctl")
        .args(["list-jobs", "--no-legend", "--plain"])
        .output()
    else {
        return false;
    };
    jobs_say_restart(&String::from_utf8_lossy(&out.stdout), &unit)
}

/// `systemctl list-jobs --no-legend --plain` lines are `ID UNIT TYPE STATE`.
fn jobs_say_restart(list: &str, unit: &str) -> bool {
    list.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.len() >= 3 && f[1] == unit && f[2] == "restart"
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_jobs_are_told_from_stop_jobs() {
        let list = "123 dmucd.service restart running\n124 other.service start waiting\n";
        assert!(jobs_say_restart(list, "dmucd.service"));
        assert!(!jobs_say_restart(
            "123 dmucd.service stop running\n",
            "dmucd.service"
        ));
        assert!(!jobs_say_restart(list, "other2.service"));
    }

    #[test]
    fn messages_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        let n = Notifier {
            target: Some((
                UnixDatagram::unbound().unwrap(),
                SocketAddr::from_pathname(&path).unwrap(),
            )),
            watchdog: Some(Duration::from_secs(10)),
        };
        n.send("READY=1\nSTATUS=up");
        let mut buf = [0u8; 64];
        let len = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=up");
        assert_eq!(n.watchdog_every(), Some(Duration::from_secs(5)));
        let off = Notifier {
            target: None,
            watchdog: None,
        };
        off.send("READY=1");
        assert!(!off.active());
    }
}
