//! CPU and memory of a component's processes, from /proc: its main process's process group
//! (the shim starts each program in a group of its own; `stop.scope = "group"` stops the same
//! set). Read only when someone looks: `dmucctl status --wide` and `top` read it themselves,
//! and dmucd only while a client shows the Overview window, so nothing samples when nobody
//! watches.
//!
//! Parsing and arithmetic are pure (unit-tested); [`snapshot`] is the one place that reads.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

/// What /proc/PID/stat says of one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Its PID.
    pub pid: i32,
    /// Its process group.
    pub pgrp: i32,
    /// CPU time in clock ticks: its own (user + system) and its reaped children's.
    pub ticks: u64,
    /// When it started, in clock ticks after boot.
    pub start: u64,
    /// Resident pages.
    pub rss_pages: u64,
}

/// Parses one /proc/PID/stat line (the command name, in parentheses, may hold anything).
pub fn parse_stat(text: &str) -> Option<Proc> {
    let (pid, rest) = text.split_once(" (")?;
    let after = &rest[rest.rfind(") ")? + 2..];
    // Fields from the 3rd (state) on: f[0] is field 3.
    let f: Vec<&str> = after.split(' ').collect();
    let num = |n: usize| -> Option<u64> { f.get(n - 3)?.parse().ok() };
    Some(Proc {
        pid: pid.trim().parse().ok()?,
        pgrp: f.get(5 - 3)?.parse().ok()?,
        ticks: num(14)? + num(15)? + num(16)? + num(17)?,
        start: num(22)?,
        rss_pages: num(24)?,
    })
}

/// The machine's processes and the moment they were read.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Every process.
    pub procs: Vec<Proc>,
    /// Seconds since boot when read (/proc/uptime).
    pub uptime: f64,
    /// Clock ticks per second.
    pub hz: u64,
    /// Bytes per page.
    pub page: u64,
}

/// One component's processes, summed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Usage {
    /// CPU ticks of the group.
    pub ticks: u64,
    /// Resident bytes of the group.
    pub rss: u64,
    /// Processes in the group.
    pub procs: usize,
    /// The main process's start (ticks after boot): tells it from a later one with its PID.
    pub start: u64,
}

impl Snapshot {
    /// The group led by `leader`, if that process exists.
    pub fn group(&self, leader: u32) -> Option<Usage> {
        let leader = i32::try_from(leader).ok()?;
        let main = self.procs.iter().find(|p| p.pid == leader)?;
        let mut u = Usage {
            ticks: 0,
            rss: 0,
            procs: 0,
            start: main.start,
        };
        // The program may have left its group (a daemon's setsid); its main process counts.
        for p in self
            .procs
            .iter()
            .filter(|p| p.pgrp == leader || p.pid == leader)
        {
            u.ticks += p.ticks;
            u.rss += p.rss_pages * self.page;
            u.procs += 1;
        }
        Some(u)
    }

    /// CPU % of `u` averaged since its main process started (as ps(1) reports it).
    pub fn lifetime_cpu(&self, u: &Usage) -> f64 {
        let hz = self.hz.max(1) as f64;
        let age = self.uptime - u.start as f64 / hz;
        if age <= 0.0 {
            return 0.0;
        }
        u.ticks as f64 / hz / age * 100.0
    }
}

/// CPU % between two samples of the same group taken `secs` apart.
pub fn interval_cpu(before: &Usage, after: &Usage, hz: u64, secs: f64) -> f64 {
    if secs <= 0.0 || before.start != after.start {
        return 0.0;
    }
    after.ticks.saturating_sub(before.ticks) as f64 / hz.max(1) as f64 / secs * 100.0
}

/// Reads every /proc/PID/stat once (processes that end meanwhile are skipped).
pub fn snapshot() -> Snapshot {
    let procs = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            e.file_name().to_str()?.parse::<u32>().ok()?;
            parse_stat(&std::fs::read_to_string(e.path().join("stat")).ok()?)
        })
        .collect();
    let uptime = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .map_or(100, |v| v as u64);
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096, |v| v as u64);
    Snapshot {
        procs,
        uptime,
        hz,
        page,
    }
}

#[cfg(test)]
mod tests;
