//! CPU and memory per component (`dmucctl status --wide`, `dmucctl top`), read from /proc
//! by dmucctl itself when someone asks: dmucd never samples, so its idle wakeups stay at 0 when
//! nobody looks. A component's processes are its main process's process group (the shim starts
//! each program in a group of its own; `stop.scope = "group"` stops the same set).
//!
//! Parsing and arithmetic are pure (unit-tested); `snapshot` is the one place that reads.

use std::collections::HashMap;

use dmuc_proto::ComponentStatus;

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

/// "12.3M", "1.2G", "640K".
pub fn bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let b = b as f64;
    if b >= K * K * K {
        format!("{:.1}G", b / (K * K * K))
    } else if b >= K * K {
        format!("{:.1}M", b / (K * K))
    } else {
        format!("{:.0}K", b / K)
    }
}

/// One row of the resource table.
pub struct Row<'a> {
    /// The component.
    pub c: &'a ComponentStatus,
    /// Its group's use, when it has a live main process.
    pub usage: Option<Usage>,
    /// CPU % (lifetime or interval).
    pub cpu: Option<f64>,
}

/// The table of `status --wide` and `top`: NAME STATE PID UPTIME CPU% MEM PROCS RESTARTS
/// LAST EXIT (REASON and READY are in the plain table).
pub fn table(rows: &[Row<'_>]) -> String {
    let cells: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            [
                r.c.name.clone(),
                r.c.state.name().to_string(),
                r.c.pid.map_or("-".into(), |p| p.to_string()),
                r.c.uptime_ms
                    .map_or("-".into(), dmuc_proto::render::duration),
                r.cpu.map_or("-".into(), |c| format!("{c:.1}")),
                r.usage.map_or("-".into(), |u| bytes(u.rss)),
                r.usage.map_or("-".into(), |u| u.procs.to_string()),
                r.c.restarts.to_string(),
                r.c.last_exit.clone().unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let head = [
        "NAME",
        "STATE",
        "PID",
        "UPTIME",
        "CPU%",
        "MEM",
        "PROCS",
        "RESTARTS",
        "LAST EXIT",
    ];
    // Numbers right-aligned, words left.
    let right = [false, false, true, true, true, true, true, true, false];
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[&str]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let pad = " ".repeat(w[i] - c.chars().count());
            if right[i] {
                l.push_str(&pad);
                l.push_str(c);
            } else {
                l.push_str(c);
                l.push_str(&pad);
            }
            l.push_str("  ");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&head);
    for r in &cells {
        let refs: Vec<&str> = r.iter().map(String::as_str).collect();
        line(&refs);
    }
    out
}

/// Rows for `comps` from one snapshot, CPU averaged over each main process's life.
pub fn lifetime_rows<'a>(comps: &'a [ComponentStatus], snap: &Snapshot) -> Vec<Row<'a>> {
    comps
        .iter()
        .map(|c| {
            let usage = c.pid.and_then(|p| snap.group(p));
            Row {
                c,
                usage,
                cpu: usage.map(|u| snap.lifetime_cpu(&u)),
            }
        })
        .collect()
}

/// Rows for `comps` from this snapshot and the previous one (`before`, by main PID, taken
/// `secs` earlier), sorted by CPU, highest first.
pub fn interval_rows<'a>(
    comps: &'a [ComponentStatus],
    snap: &Snapshot,
    before: &HashMap<u32, Usage>,
    secs: f64,
) -> Vec<Row<'a>> {
    let mut rows: Vec<Row<'a>> = comps
        .iter()
        .map(|c| {
            let usage = c.pid.and_then(|p| snap.group(p));
            let cpu = c.pid.zip(usage).map(|(p, u)| match before.get(&p) {
                Some(b) => interval_cpu(b, &u, snap.hz, secs),
                None => snap.lifetime_cpu(&u),
            });
            Row { c, usage, cpu }
        })
        .collect();
    rows.sort_by(|a, b| b.cpu.unwrap_or(-1.0).total_cmp(&a.cpu.unwrap_or(-1.0)));
    rows
}

#[cfg(test)]
mod tests;
