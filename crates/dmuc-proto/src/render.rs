//! Wire types as text for people: the status table, durations, clock times. Pure; shared by
//! `dmucctl` and the overview window dmucd draws.

use std::borrow::Cow;
use std::fmt::Write;

use crate::{ComponentStatus, State};

/// Colours on, or off (NO_COLOR, a pipe).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Use ANSI colours.
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }

    /// A state name in its colour.
    pub fn state(&self, state: State) -> String {
        self.paint(state_color(state), state.name())
    }
}

/// The ANSI colour of a state: green up, yellow on the way, red given up, dim down.
pub fn state_color(state: State) -> &'static str {
    match state {
        s if s.is_up() => "32",
        State::Starting | State::Pending | State::Stopping | State::Backoff => "33",
        State::Failed => "31",
        _ => "2",
    }
}

/// "450ms", "12s", "3m04s", "2h05m", "3d04h".
pub fn duration(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms}ms"),
        1..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// The status table, with uptimes.
pub fn status_table(comps: &[ComponentStatus], style: Style) -> String {
    status_table_with(comps, style, Times::Uptime)
}

/// What `dmucctl status` prints: the table, and a line when dmucd is shutting down.
pub fn status_text(s: &crate::StatusResult, style: Style) -> String {
    let mut t = status_table(&s.components, style);
    if s.daemon.stopping {
        t.push_str("(dmucd is shutting down)\n");
    }
    t
}

/// What the time column shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Times {
    /// UPTIME: how long each run has been up (right for a table printed once).
    Uptime,
    /// STARTED: the wall-clock time each run started, for a table that is redrawn only when
    /// something changes (it never goes stale); `now_us` is the time the statuses were taken.
    StartedAt {
        /// Microseconds since the Unix epoch.
        now_us: u64,
    },
}

/// The status table, with the time column chosen.
pub fn status_table_with(comps: &[ComponentStatus], style: Style, times: Times) -> String {
    table(comps, style, times, None)
}

/// One component's resources for the table: CPU % and resident bytes, when its processes
/// were read.
pub type Resources = Option<(f64, u64)>;

/// The status table with CPU % and memory columns after the time (the Overview window's,
/// while a client shows it); `usage` is by position in `comps`.
pub fn status_table_using(
    comps: &[ComponentStatus],
    style: Style,
    times: Times,
    usage: &[Resources],
) -> String {
    table(comps, style, times, Some(usage))
}

/// Columns of the table: the last two only with resources.
const COLUMNS: usize = 10;

fn table(
    comps: &[ComponentStatus],
    style: Style,
    times: Times,
    usage: Option<&[Resources]>,
) -> String {
    // Borrowed where the status has the text already.
    let rows: Vec<([Cow<'_, str>; COLUMNS], State)> = comps
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let res = usage.and_then(|u| u.get(i).copied().flatten());
            let cells = [
                Cow::Borrowed(c.name.as_str()),
                Cow::Borrowed(c.state.name()),
                c.pid
                    .map_or(Cow::Borrowed("-"), |p| Cow::Owned(p.to_string())),
                c.uptime_ms.map_or(Cow::Borrowed("-"), |up| {
                    Cow::Owned(match times {
                        Times::Uptime => duration(up),
                        Times::StartedAt { now_us } => {
                            clock(now_us.saturating_sub(up * 1000))[..8].to_string()
                        }
                    })
                }),
                res.map_or(Cow::Borrowed("-"), |(cpu, _)| {
                    Cow::Owned(format!("{cpu:.1}"))
                }),
                res.map_or(Cow::Borrowed("-"), |(_, rss)| Cow::Owned(bytes(rss))),
                Cow::Owned(c.restarts.to_string()),
                Cow::Borrowed(match c.ready {
                    None => "-",
                    Some(true) => "yes",
                    Some(false) => "no",
                }),
                Cow::Borrowed(c.last_exit.as_deref().unwrap_or("-")),
                Cow::Borrowed(c.reason.as_deref().unwrap_or_default()),
            ];
            (cells, c.state)
        })
        .collect();
    let head = [
        "NAME",
        "STATE",
        "PID",
        match times {
            Times::Uptime => "UPTIME",
            Times::StartedAt { .. } => "STARTED",
        },
        "CPU%",
        "MEM",
        "RESTARTS",
        "READY",
        "LAST EXIT",
        "REASON",
    ];
    // Which columns show, in order.
    let shown: &[usize] = if usage.is_some() {
        &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    } else {
        &[0, 1, 2, 3, 6, 7, 8, 9]
    };
    // Numbers are right-aligned in the resource columns, where they line up to compare.
    let right = |i: usize| i == 4 || i == 5;
    let mut w: Vec<usize> = head.iter().map(|h| h.len()).collect();
    for (r, _) in &rows {
        for (i, cell) in r.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    // One pass into one string: per-cell strings, padding and colour each allocated was 10k
    // instructions a row (callgrind, `dmucctl status` of 500 components).
    let mut out = String::with_capacity((rows.len() + 1) * (w.iter().sum::<usize>() + 24));
    let mut line = |cells: &[&str; COLUMNS], state: Option<&str>| {
        let start = out.len();
        for (k, &i) in shown.iter().enumerate() {
            let c = cells[i];
            let pad = w[i] - c.chars().count();
            if right(i) {
                out.extend(std::iter::repeat_n(' ', pad));
            }
            match (i, state) {
                (1, Some(code)) if style.color => {
                    let _ = write!(out, "\x1b[{code}m{c}\x1b[0m");
                }
                _ => out.push_str(c),
            }
            if k + 1 < shown.len() {
                // Pad by the visible width (colour codes take no room).
                let after = if right(i) { 2 } else { pad + 2 };
                out.extend(std::iter::repeat_n(' ', after));
            }
        }
        let kept = out[start..].trim_end_matches(' ').len();
        out.truncate(start + kept);
        out.push('\n');
    };
    line(&head, None);
    for (r, state) in &rows {
        let cells: [&str; COLUMNS] = std::array::from_fn(|i| r[i].as_ref());
        line(&cells, Some(state_color(*state)));
    }
    out
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

/// "HH:MM:SS.mmm" (UTC) of a microsecond timestamp.
pub fn clock(ts_us: u64) -> String {
    let ms = ts_us / 1000;
    let s = ms / 1000;
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comp(name: &str, uptime_ms: Option<u64>) -> ComponentStatus {
        ComponentStatus {
            name: name.into(),
            kind: "service".into(),
            state: State::Running,
            pid: Some(7),
            run: 1,
            restarts: 0,
            uptime_ms,
            since_ms: None,
            ready: None,
            last_exit: None,
            reason: None,
            window: None,
            log_error: None,
        }
    }

    #[test]
    fn the_overview_s_resource_columns_line_up_to_the_right() {
        let comps = [
            comp("etcd", Some(65_000)),
            comp("kubelet", Some(1_000)),
            comp("gone", None),
        ];
        let plain = Style { color: false };
        let usage = [Some((12.34, 300 << 20)), Some((0.0, 512 << 10)), None];
        let t = status_table_using(&comps, plain, Times::Uptime, &usage);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("NAME     STATE    PID  UPTIME  CPU%     MEM  RESTARTS"),
            "{t}"
        );
        assert!(lines[1].contains(" 1m05s   12.3  300.0M  0 "), "{t}");
        assert!(lines[2].contains(" 1s       0.0    512K  0 "), "{t}");
        assert!(lines[3].contains(" -          -       -  0 "), "{t}");
        // Without resources, the table of dmucctl status.
        let plain_table = status_table_with(&comps, plain, Times::Uptime);
        assert!(!plain_table.contains("CPU%"), "{plain_table}");
    }

    #[test]
    fn the_time_column_is_an_uptime_or_a_start_time() {
        let comps = [comp("etcd", Some(65_000)), comp("kubelet", None)];
        let plain = Style { color: false };
        let up = status_table_with(&comps, plain, Times::Uptime);
        assert!(up.starts_with("NAME     STATE    PID  UPTIME"), "{up}");
        assert!(up.contains("etcd     running  7    1m05s"), "{up}");
        // 12:00:00 UTC on some day, 65 s after the start.
        let now_us = (19_000 * 86_400 + 12 * 3600) * 1_000_000;
        let at = status_table_with(&comps, plain, Times::StartedAt { now_us });
        assert!(at.starts_with("NAME     STATE    PID  STARTED"), "{at}");
        assert!(at.contains("etcd     running  7    11:58:55"), "{at}");
        assert!(at.contains("kubelet  running  7    -"), "{at}");
    }
}
