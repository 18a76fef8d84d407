//! Crash-loop coalescing, pure: which of a component's events go to the event log as they
//! are, and which a crash loop folds into one `crash_loop` record. A component that exited
//! `exits` times within `window` is in a crash loop: the event that made it one is logged,
//! followed by a `begin` record; from then on its loop's events (exits, spawns, probe
//! verdicts, its moves among starting, running, ready and backoff) are counted, not logged,
//! and an `ongoing` record says what was held back each [`SUMMARY_EVERY`] exits or each
//! window. It is over when the component moves elsewhere (stopping, failed, ...: an `over`
//! record, then that event) or stays up a whole window (an `over` record, then the state it
//! is in, so the log ends with the truth). Times are monotonic milliseconds.

use std::collections::{HashMap, VecDeque};

use dmuc_proto::{EventWhat, LoopPhase, State};

/// Exits per `ongoing` record at most.
pub const SUMMARY_EVERY: u32 = 100;

/// `[daemon] crash-loop-exits` and `crash-loop-window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Exits within the window that make a loop; 0: never.
    pub exits: u32,
    /// The window, in ms.
    pub window_ms: u64,
}

/// A component's loop in progress.
#[derive(Debug)]
struct Loop {
    /// When the current span began, and its last exit.
    span_from: u64,
    last_exit_at: u64,
    /// In the current span: exits and events held back.
    exits: u32,
    held: u32,
    last_exit: String,
    /// The last move held back: the state the component is in.
    last_state: Option<EventWhat>,
}

impl Loop {
    fn record(&mut self, phase: LoopPhase, now: u64) -> EventWhat {
        let r = EventWhat::CrashLoop {
            phase,
            exits: self.exits,
            held: self.held,
            span_ms: now.saturating_sub(self.span_from),
            last_exit: std::mem::take(&mut self.last_exit),
        };
        (self.span_from, self.exits, self.held) = (now, 0, 0);
        r
    }
}

#[derive(Debug, Default)]
struct Comp {
    /// Its recent exits (within the window).
    exits: VecDeque<u64>,
    looping: Option<Loop>,
}

/// Every component's recent exits and loop.
#[derive(Debug, Default)]
pub struct Storms {
    comps: HashMap<String, Comp>,
}

/// Whether `what` is part of a restart loop.
fn in_loop(what: &EventWhat) -> bool {
    match what {
        EventWhat::Exit { .. } | EventWhat::Spawned { .. } | EventWhat::Probe { .. } => true,
        EventWhat::State { to, .. } => matches!(
            to,
            State::Starting | State::Running | State::Ready | State::Backoff
        ),
        _ => false,
    }
}

impl Storms {
    /// What to log for `comp`'s event `what` at `now`: nothing (held back), the event, or a
    /// crash-loop record and the event in the order to log them.
    pub fn admit(&mut self, comp: &str, what: EventWhat, now: u64, lim: Limits) -> Vec<EventWhat> {
        let c = self.comps.entry(comp.to_string()).or_default();
        let is_exit = matches!(what, EventWhat::Exit { .. });
        if is_exit {
            c.exits.push_back(now);
        }
        while c
            .exits
            .front()
            .is_some_and(|&t| now.saturating_sub(t) > lim.window_ms)
        {
            c.exits.pop_front();
        }
        let Some(l) = c.looping.as_mut() else {
            if lim.exits > 0 && is_exit && c.exits.len() >= lim.exits as usize {
                let from = c.exits.front().copied().unwrap_or(now);
                let begin = EventWhat::CrashLoop {
                    phase: LoopPhase::Begin,
                    exits: c.exits.len() as u32,
                    held: 0,
                    span_ms: now.saturating_sub(from),
                    last_exit: String::new(),
                };
                c.looping = Some(Loop {
                    span_from: now,
                    last_exit_at: now,
                    exits: 0,
                    held: 0,
                    last_exit: String::new(),
                    last_state: None,
                });
                return vec![what, begin];
            }
            return vec![what];
        };
        if lim.exits > 0 && !in_loop(&what) && !matches!(what, EventWhat::State { .. }) {
            // Not the loop's (its log file, say): logged, and the loop goes on.
            return vec![what];
        }
        if lim.exits == 0 || !in_loop(&what) {
            // Over (or coalescing turned off by a reload): what was held, then the event.
            let over = l.record(LoopPhase::Over, now);
            c.looping = None;
            c.exits.clear();
            return vec![over, what];
        }
        l.held += 1;
        match &what {
            EventWhat::Exit { status, .. } => {
                l.exits += 1;
                l.last_exit_at = now;
                l.last_exit = status.clone();
            }
            EventWhat::State { .. } => l.last_state = Some(what),
            _ => {}
        }
        if l.exits >= SUMMARY_EVERY || now.saturating_sub(l.span_from) >= lim.window_ms {
            return vec![l.record(LoopPhase::Ongoing, now)];
        }
        Vec::new()
    }

    /// When [`Storms::expire`] has something to do: a loop's window without exits ends, or
    /// a span with events held back is a window old.
    pub fn deadline(&self, lim: Limits) -> Option<u64> {
        self.comps
            .values()
            .filter_map(|c| c.looping.as_ref())
            .map(|l| {
                let settled = l.last_exit_at + lim.window_ms;
                if l.held > 0 {
                    settled.min(l.span_from + lim.window_ms)
                } else {
                    settled
                }
            })
            .min()
    }

    /// At `now`: the records of loops that settled (no exit for a window: `over`, then the
    /// state held back last) or whose span is a window old (`ongoing`), by component.
    pub fn expire(&mut self, now: u64, lim: Limits) -> Vec<(String, Vec<EventWhat>)> {
        let mut out = Vec::new();
        for (name, c) in &mut self.comps {
            let Some(l) = c.looping.as_mut() else {
                continue;
            };
            if now.saturating_sub(l.last_exit_at) >= lim.window_ms {
                let mut records = vec![l.record(LoopPhase::Over, now)];
                records.extend(l.last_state.take());
                c.looping = None;
                c.exits.clear();
                out.push((name.clone(), records));
            } else if l.held > 0 && now.saturating_sub(l.span_from) >= lim.window_ms {
                out.push((name.clone(), vec![l.record(LoopPhase::Ongoing, now)]));
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Forgets a component (removed by a reload).
    pub fn forget(&mut self, comp: &str) {
        self.comps.remove(comp);
    }
}

#[cfg(test)]
mod tests;
