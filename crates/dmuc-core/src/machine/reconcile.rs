//! After every input: what should run and may (its dependencies' conditions hold) is
//! launched, what should stop and may (nothing active needs it) is stopped.

use super::*;

impl Supervisor {
    /// Whether dependency edge `dep` of some component is satisfied, and if it never will be
    /// without operator action, why.
    pub(super) fn dep_status(&self, dep: usize, cond: Condition) -> Result<(), (bool, String)> {
        let u = &self.units[dep];
        let name = &self.graph.components()[dep].name;
        let is_oneshot = self.graph.components()[dep].kind == Kind::Oneshot;
        let ok = match cond {
            Condition::Started => {
                matches!(u.state, State::Running | State::Ready | State::Completed)
                    || (u.state == State::Starting && u.pid.is_some())
            }
            Condition::Ready => {
                matches!(u.state, State::Ready | State::Completed)
                    || (u.state == State::Running && !is_oneshot)
            }
            Condition::Completed => u.state == State::Completed,
        };
        if ok {
            return Ok(());
        }
        let dead = match &u.state {
            State::Failed { reason } => Some(format!("dependency {name} failed: {reason}")),
            State::Exited => Some(format!("dependency {name} exited and will not restart")),
            State::Stopped | State::Pending { .. } if !u.want_up => {
                Some(format!("dependency {name} is stopped"))
            }
            _ => None,
        };
        match dead {
            Some(r) => Err((true, r)),
            None => Err((
                false,
                format!(
                    "waiting for {name} to be {} (now {})",
                    cond.as_str(),
                    u.state.name()
                ),
            )),
        }
    }

    pub(super) fn reconcile(&mut self, now: Instant, fx: &mut Vec<Effect>) {
        // A launch can satisfy nothing synchronously (a PID or probe verdict must come back
        // first), but a stop can unblock another stop, so loop until nothing changes.
        loop {
            let mut progressed = false;
            for comp in 0..self.units.len() {
                let u = &self.units[comp];
                if u.want_up {
                    if let State::Pending { reason } = &u.state {
                        let old = reason.clone();
                        let mut blocked: Option<String> = None;
                        let deps: Vec<(usize, Condition)> = self.graph.components()[comp]
                            .after
                            .iter()
                            .filter_map(|d| {
                                self.graph.index_of(&d.component).map(|i| (i, d.condition))
                            })
                            .collect();
                        for (d, cond) in deps {
                            if let Err((_, why)) = self.dep_status(d, cond) {
                                blocked = Some(why);
                                break;
                            }
                        }
                        match blocked {
                            None => {
                                self.launch(comp, now, fx);
                                progressed = true;
                            }
                            Some(why) if why != old => {
                                self.set(
                                    comp,
                                    State::Pending {
                                        reason: why.clone(),
                                    },
                                    Some(why),
                                    now,
                                    fx,
                                );
                            }
                            Some(_) => {}
                        }
                    }
                } else {
                    let dependents_active = self
                        .graph
                        .dependents_of(comp)
                        .iter()
                        .any(|&d| self.units[d].state.is_active());
                    match u.state {
                        State::Starting | State::Running | State::Ready if !dependents_active => {
                            self.begin_stop(comp, Some("stop requested".into()), now, fx);
                            progressed = true;
                        }
                        State::Pending { .. } | State::Backoff { .. } => {
                            self.units[comp].timer += 1;
                            self.set(comp, State::Stopped, None, now, fx);
                            progressed = true;
                        }
                        _ => {}
                    }
                }
            }
            if !progressed {
                break;
            }
        }
    }
}
