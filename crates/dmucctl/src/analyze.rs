//! `dmucctl analyze`: when each component was launched and up, what it waited for, and the
//! critical chain that decided when the graph was up, as `systemd-analyze critical-chain`
//! prints it. Computed from the event log alone (no I/O here), so it works after an adoption
//! (the launches are in the previous dmucd's events) and for one component's restart.
//!
//! The window is the graph's last start: from dmucd's last `daemon` event saying it started
//! the graph ([`BOOT`]), or from `--since SEQ`; to the event saying that start settled
//! ([`SETTLED`]: later restarts and exits are another story), or to `--until SEQ`. With a
//! component named, it runs to the last event (its last start is what is asked about). A component is *up* when it reaches `running`
//! (no ready probe), `ready` or `completed`; its launch is its last `starting` before that;
//! it was *running* when its PID was known: `running` itself, or, with a ready probe, the
//! `spawned` event between launch and ready.
//! What it waited for is the dependency whose condition was met last before its launch.

use std::collections::HashMap;
use std::fmt::Write as _;

use dmuc_proto::{EventRecord, EventWhat, GraphEdge, State};
use serde::Serialize;

use dmuc_proto::BOOT_EVENT as BOOT;
use dmuc_proto::SETTLED_EVENT as SETTLED;

/// One component in the window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comp {
    /// Name.
    pub name: String,
    /// Its launch that led to `up`, in µs from the window's start.
    pub launched_us: Option<u64>,
    /// When that launch's program was running (its PID known).
    pub running_us: Option<u64>,
    /// When it was up (the first time in the window; for the component asked about, the last).
    pub up_us: Option<u64>,
    /// The state it was up in (`running`, `ready` or `completed`).
    pub up_state: Option<State>,
    /// The dependency whose condition was met last before its launch.
    pub waited_for: Option<String>,
    /// Launches in the window (more than 1: it failed and was started again).
    pub launches: usize,
    /// Every state it entered in the window: (µs from the start, state), in order.
    pub moves: Vec<(u64, State)>,
}

/// The whole answer (`--json` prints it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    /// The window holds the events after this sequence number.
    pub since_seq: u64,
    /// The window's last event: the graph settled there, or `--until` said so.
    pub until_seq: u64,
    /// Events after the window, not analysed (the log's newer history).
    pub later: usize,
    /// The window ends where the graph's start settled.
    pub settled: bool,
    /// The wall-clock time of its first event (µs since the epoch): the times are from there.
    pub t0_us: u64,
    /// The component the chain ends at (the last one up, or the one asked about).
    pub target: Option<String>,
    /// From the target back to the first component it waited for.
    pub chain: Vec<Comp>,
    /// Every component, in config order.
    pub components: Vec<Comp>,
}

/// A component's transitions in the window: (µs from the start, new state).
type Moves = Vec<(u64, State)>;

fn is_up(s: State) -> bool {
    matches!(s, State::Running | State::Ready | State::Completed)
}

/// The latest time in `moves` at or before `t` whose state `pick` accepts.
fn last_before(moves: &Moves, t: u64, pick: impl Fn(State) -> bool) -> Option<(u64, State)> {
    moves
        .iter()
        .filter(|(ts, s)| *ts <= t && pick(*s))
        .last()
        .copied()
}

/// Where the window starts: after `since`, or at dmucd's last start of the graph.
fn window(events: &[EventRecord], since: Option<u64>) -> &[EventRecord] {
    let start = match since {
        Some(s) => events
            .iter()
            .position(|e| e.seq > s)
            .unwrap_or(events.len()),
        None => events
            .iter()
            .rposition(
                |e| matches!(&e.what, EventWhat::Daemon { message } if message.starts_with(BOOT)),
            )
            .unwrap_or(0),
    };
    &events[start..]
}

/// Where the window ends: at `until`, or (without a component asked about) at the event that
/// says the start settled; otherwise at the log's end. The window, the events after it, and
/// whether it ends at the settling.
fn end(win: &[EventRecord], until: Option<u64>, whole: bool) -> (&[EventRecord], usize, bool) {
    let cut = match until {
        Some(u) => win.iter().position(|e| e.seq > u),
        None if whole => None,
        None => win
            .iter()
            .position(|e| {
                e.component.is_none()
                    && matches!(&e.what, EventWhat::Daemon { message } if message.starts_with(SETTLED))
            })
            .map(|i| i + 1),
    };
    let n = cut.unwrap_or(win.len());
    let settled = win[..n].last().is_some_and(
        |e| matches!(&e.what, EventWhat::Daemon { message } if message.starts_with(SETTLED)),
    );
    (&win[..n], win.len() - n, settled)
}

/// Analyses `events` (in order) for the components `names` (config order) and their
/// dependencies `edges`, from `since` (or the graph's last start) to `until` (or where that
/// start settled); the chain ends at `target` (its last time up, the window then running to
/// the log's end unless `until`) or, without one, at the component that came up last.
pub fn analyze(
    events: &[EventRecord],
    names: &[String],
    edges: &[GraphEdge],
    since: Option<u64>,
    until: Option<u64>,
    target: Option<&str>,
) -> Result<Analysis, String> {
    if let Some(t) = target
        && !names.iter().any(|n| n == t)
    {
        return Err(format!("no component named {t:?}"));
    }
    if let (Some(s), Some(u)) = (since, until)
        && u <= s
    {
        return Err(format!(
            "--until {u} is not after --since {s}: the window would be empty"
        ));
    }
    let (win, later, settled) = end(window(events, since), until, target.is_some());
    let Some(first) = win.first() else {
        return Err("no events in the window: nothing was started since".into());
    };
    let until_seq = win.last().map_or(first.seq, |e| e.seq);
    let t0 = first.ts_us;
    let mut moves: HashMap<&str, Moves> = HashMap::new();
    let mut spawns: HashMap<&str, Vec<u64>> = HashMap::new();
    for e in win {
        let ts = e.ts_us.saturating_sub(t0);
        match (&e.component, &e.what) {
            (Some(c), EventWhat::State { to, .. }) => {
                moves.entry(c.as_str()).or_default().push((ts, *to));
            }
            (Some(c), EventWhat::Spawned { .. }) => spawns.entry(c.as_str()).or_default().push(ts),
            _ => {}
        }
    }
    let none = Moves::new();
    let moves_of = |n: &str| moves.get(n).unwrap_or(&none);
    // When `dep`'s condition for a launch at `t` was met.
    let met = |edge: &GraphEdge, t: u64| -> Option<u64> {
        let m = moves_of(&edge.to);
        if edge.condition == "started" {
            last_before(m, t, |s| s == State::Starting || is_up(s)).map(|(ts, _)| ts)
        } else {
            last_before(m, t, is_up).map(|(ts, _)| ts)
        }
    };
    // One component, up at `up` (the up it had then).
    let describe = |name: &str, up: Option<(u64, State)>| -> Comp {
        let m = moves_of(name);
        let launched =
            up.and_then(|(t, _)| last_before(m, t, |s| s == State::Starting).map(|(ts, _)| ts));
        // Its PID's report for that launch (before the next launch); a probe can pass
        // before the report is read, and it was running by then.
        let running = launched.zip(up).and_then(|(l, (t, state))| match state {
            State::Running => Some(t),
            _ => {
                let next = m
                    .iter()
                    .find(|(ts, s)| *ts > l && *s == State::Starting)
                    .map_or(u64::MAX, |(ts, _)| *ts);
                spawns
                    .get(name)
                    .and_then(|s| s.iter().copied().find(|&ts| ts >= l && ts < next))
                    .map(|ts| ts.min(t))
            }
        });
        let waited_for = launched.and_then(|l| {
            edges
                .iter()
                .filter(|e| e.from == name)
                .filter_map(|e| Some((met(e, l)?, e.to.clone())))
                .max()
                .map(|(_, n)| n)
        });
        Comp {
            name: name.to_string(),
            launched_us: launched,
            running_us: running,
            up_us: up.map(|(t, _)| t),
            up_state: up.map(|(_, s)| s),
            waited_for,
            launches: m.iter().filter(|(_, s)| *s == State::Starting).count(),
            moves: m.clone(),
        }
    };
    let first_up = |n: &str| moves_of(n).iter().find(|(_, s)| is_up(*s)).copied();
    let components: Vec<Comp> = names.iter().map(|n| describe(n, first_up(n))).collect();
    let top = match target {
        Some(t) => moves_of(t)
            .iter()
            .rfind(|(_, s)| is_up(*s))
            .map(|&up| describe(t, Some(up))),
        None => components
            .iter()
            .filter(|c| c.up_us.is_some())
            .max_by_key(|c| c.up_us)
            .cloned(),
    };
    let mut chain = Vec::new();
    let mut cur = top.clone();
    while let Some(c) = cur.take() {
        if chain.len() > names.len() {
            break; // a cycle cannot happen (the graph is checked), but never loop forever
        }
        let next = match (&c.waited_for, c.launched_us) {
            (Some(dep), Some(launched)) => {
                let up = last_before(moves_of(dep), launched, is_up);
                Some(describe(dep, up))
            }
            _ => None,
        };
        chain.push(c);
        cur = next;
    }
    Ok(Analysis {
        since_seq: first.seq.saturating_sub(1),
        until_seq,
        later,
        settled,
        t0_us: t0,
        target: top.map(|c| c.name),
        chain,
        components,
    })
}

/// "12.345s" of a duration in µs.
pub(crate) fn secs(us: u64) -> String {
    format!("{}.{:03}s", us / 1_000_000, (us % 1_000_000) / 1000)
}

fn at(us: Option<u64>) -> String {
    us.map_or_else(|| "-".into(), |t| format!("@{}", secs(t)))
}

fn took(c: &Comp) -> Option<u64> {
    Some(c.up_us?.saturating_sub(c.launched_us?))
}

/// Where the window ended and what it left out.
pub(crate) fn window_note(a: &Analysis) -> String {
    let mut note = if a.settled {
        format!("The start settled at #{}", a.until_seq)
    } else {
        format!("The window ends at #{}", a.until_seq)
    };
    if a.later > 0 {
        let _ = write!(
            note,
            "; {} later event{} not shown (--until SEQ to include them)",
            a.later,
            if a.later == 1 { "" } else { "s" }
        );
    }
    note.push('.');
    note
}

/// The text `dmucctl analyze` prints.
pub fn render(a: &Analysis) -> String {
    let mut out = String::new();
    match (&a.target, a.chain.first()) {
        (Some(t), Some(c)) => {
            let _ = writeln!(
                out,
                "{t} was up {} (events after #{}; @ is time since then, + the time from launch to up).",
                at(c.up_us),
                a.since_seq
            );
        }
        _ => {
            let _ = writeln!(
                out,
                "Nothing came up in the window (events after #{}).",
                a.since_seq
            );
        }
    }
    let _ = writeln!(out, "{}\n", window_note(a));
    for (depth, c) in a.chain.iter().enumerate() {
        let lead = if depth == 0 {
            String::new()
        } else {
            format!("{}└─", "  ".repeat(depth - 1))
        };
        let state = c
            .up_state
            .map(|s| format!(" ({})", s.name()))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{lead}{} {} +{}{state}",
            c.name,
            at(c.up_us),
            took(c).map_or_else(|| "?".into(), secs)
        );
    }
    let width = a
        .components
        .iter()
        .map(|c| c.name.len())
        .max()
        .unwrap_or(0)
        .max("COMPONENT".len());
    let _ = writeln!(
        out,
        "\n{:width$}  {:>10}  {:>10}  {:>10}  {:>9}  {:>8}  WAITED FOR",
        "COMPONENT", "LAUNCHED", "RUNNING", "UP", "TOOK", "LAUNCHES"
    );
    for c in &a.components {
        let _ = writeln!(
            out,
            "{:width$}  {:>10}  {:>10}  {:>10}  {:>9}  {:>8}  {}",
            c.name,
            at(c.launched_us),
            at(c.running_us),
            if c.up_us.is_some() {
                at(c.up_us)
            } else {
                "not up".into()
            },
            took(c).map_or_else(|| "-".into(), |t| format!("+{}", secs(t))),
            c.launches,
            c.waited_for.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests;
