//! The resource table of `dmucctl status --wide` and `dmucctl top`, from [`dmuc_procfs`]'s
//! samples, which dmucctl takes itself when someone asks. Pure (unit-tested).

use std::collections::HashMap;

pub use dmuc_procfs::{Snapshot, Usage, interval_cpu, snapshot};
use dmuc_proto::ComponentStatus;
pub use dmuc_proto::render::bytes;

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
