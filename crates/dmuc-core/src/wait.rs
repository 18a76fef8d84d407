//! When is an operator's `start`/`stop`/`restart` done? A [`Wait`] is taken just before the
//! request is fed to the machine and asked after every change; it needs no I/O, so each rule
//! is a table test.

use dmuc_config::Kind;

use crate::machine::Supervisor;
use crate::state::State;

/// The operation waited for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitKind {
    /// Targets and their dependencies up.
    Start,
    /// Targets and their dependents down.
    Stop,
    /// Targets on a new run and up, their dependencies up.
    Restart,
}

/// How the operation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Still going.
    Pending,
    /// Done.
    Done,
    /// Will not get done by itself (the reason names the component).
    Failed(String),
}

/// An operation in progress, over the components it touches.
#[derive(Debug, Clone)]
pub struct Wait {
    kind: WaitKind,
    /// Touched components with their run number before the request, and whether each is a
    /// target (a restart needs a new run of targets only).
    watched: Vec<(usize, u64, bool)>,
}

impl Wait {
    /// Snapshot before feeding the request for `targets`.
    pub fn new(kind: WaitKind, targets: &[usize], sup: &Supervisor) -> Wait {
        let g = sup.graph();
        let mut all: Vec<usize> = targets.to_vec();
        for &t in targets {
            match kind {
                WaitKind::Stop => all.extend(g.closure_dependents(t)),
                WaitKind::Start | WaitKind::Restart => all.extend(g.closure_deps(t)),
            }
        }
        all.sort_unstable();
        all.dedup();
        let watched = all
            .into_iter()
            .map(|c| (c, sup.unit(c).run, targets.contains(&c)))
            .collect();
        Wait { kind, watched }
    }

    /// Follows a reconfiguration (`remap[old] = new`, `usize::MAX` for a component gone).
    pub fn remap(&mut self, remap: &[usize]) {
        self.watched = self
            .watched
            .iter()
            .filter_map(|&(c, run, t)| {
                remap
                    .get(c)
                    .copied()
                    .filter(|&n| n != usize::MAX)
                    .map(|n| (n, run, t))
            })
            .collect();
    }

    /// Whether `comp` is one of the components this operation touches.
    pub fn watches(&self, comp: usize) -> bool {
        self.watched.iter().any(|&(c, _, _)| c == comp)
    }

    /// Where the operation stands now.
    pub fn verdict(&self, sup: &Supervisor) -> Verdict {
        let mut pending = false;
        for &(comp, run0, target) in &self.watched {
            let u = sup.unit(comp);
            let c = &sup.graph().components()[comp];
            let name = &c.name;
            // A oneshot asked for is done when it has completed, as `systemctl start` of a
            // oneshot: its exit status is the verdict.
            let up = if target && c.kind == Kind::Oneshot {
                u.state == State::Completed
            } else {
                matches!(
                    u.state,
                    State::Running | State::Ready | State::Completed | State::Exited
                )
            };
            match self.kind {
                WaitKind::Stop => {
                    if u.state.is_active()
                        || matches!(
                            u.state,
                            State::Pending { .. } | State::Backoff { .. } | State::Starting
                        )
                    {
                        pending = true;
                    }
                }
                WaitKind::Start | WaitKind::Restart => {
                    let fresh = self.kind == WaitKind::Start || !target || u.run > run0;
                    match &u.state {
                        State::Failed { reason } => {
                            return Verdict::Failed(format!("{name} failed: {reason}"));
                        }
                        State::Backoff { .. } if u.run > run0 => {
                            let last = u
                                .last_exit
                                .as_ref()
                                .map_or_else(|| "ended".to_string(), |e| e.to_string());
                            let what = match c.kind {
                                Kind::Oneshot => "did not complete",
                                Kind::Service => "did not stay up",
                            };
                            return Verdict::Failed(format!(
                                "{name} {what} ({last}); it will be retried"
                            ));
                        }
                        State::Stopped if !u.want_up => {
                            return Verdict::Failed(format!("{name} was stopped meanwhile"));
                        }
                        _ if up && fresh => {}
                        _ => pending = true,
                    }
                }
            }
        }
        if pending {
            Verdict::Pending
        } else {
            Verdict::Done
        }
    }
}

#[cfg(test)]
mod tests;
