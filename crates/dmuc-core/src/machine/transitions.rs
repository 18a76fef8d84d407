//! What each input does to a unit: a PID, a probe verdict, a timer, an exit (restart policy,
//! backoff, start limit), an operator's request; and a launch.

use super::*;

impl Supervisor {
    pub(super) fn on_started(
        &mut self,
        comp: usize,
        run: u64,
        pid: u32,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let u = &mut self.units[comp];
        if u.run != run || !u.state.is_active() {
            return;
        }
        u.pid = Some(pid);
        let c = &self.graph.components()[comp];
        let (has_ready, has_liveness, stop) = (c.ready.is_some(), c.liveness.is_some(), c.stop);
        match u.state {
            State::Starting if !has_ready => {
                self.set(comp, State::Running, None, now, fx);
                if has_liveness {
                    fx.push(Effect::StartProbe {
                        comp,
                        run,
                        role: ProbeRole::Liveness,
                    });
                }
            }
            // A stop was asked before we knew whom to signal.
            State::Stopping => {
                fx.push(Effect::Signal {
                    comp,
                    pid,
                    signal: stop.signal,
                    scope: stop.scope,
                });
            }
            _ => {}
        }
    }

    pub(super) fn on_probe(
        &mut self,
        comp: usize,
        run: u64,
        role: ProbeRole,
        ok: bool,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let u = &self.units[comp];
        if u.run != run {
            return;
        }
        let has_liveness = self.graph.components()[comp].liveness.is_some();
        match (role, ok, &u.state) {
            (ProbeRole::Ready, true, State::Starting) => {
                self.set(comp, State::Ready, None, now, fx);
                fx.push(Effect::StopProbes { comp });
                if has_liveness {
                    fx.push(Effect::StartProbe {
                        comp,
                        run,
                        role: ProbeRole::Liveness,
                    });
                }
            }
            (ProbeRole::Liveness, false, State::Running | State::Ready) => {
                self.units[comp].killed_by_liveness = true;
                self.begin_stop(comp, Some("liveness probe failed".into()), now, fx);
            }
            _ => {}
        }
    }

    pub(super) fn on_timer(&mut self, comp: usize, token: u64, now: Instant, fx: &mut Vec<Effect>) {
        let u = &self.units[comp];
        if u.timer != token {
            return;
        }
        match u.state {
            State::Backoff { .. } if u.want_up => self.launch(comp, now, fx),
            State::Stopping => {
                let stop = self.graph.components()[comp].stop;
                if let Some(pid) = u.pid {
                    let (scope, timeout) = (stop.scope, stop.timeout);
                    fx.push(Effect::Event(Event::State {
                        comp,
                        from: dmuc_proto::State::Stopping,
                        to: dmuc_proto::State::Stopping,
                        reason: Some(format!("did not stop within {timeout:?}; sending SIGKILL")),
                    }));
                    fx.push(Effect::Signal {
                        comp,
                        pid,
                        signal: libc_sigkill(),
                        scope,
                    });
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_request(&mut self, r: Request, now: Instant, fx: &mut Vec<Effect>) {
        match r {
            Request::Start(comps) => {
                // With what they need, and what their start wants (`wanted-by`).
                for c in self.graph.start_set(&comps) {
                    if comps.contains(&c) {
                        self.want_up(c);
                    } else {
                        self.want_dep_up(c);
                    }
                }
            }
            Request::Stop(comps) => {
                for c in self.with_dependents(&comps) {
                    self.units[c].want_up = false;
                }
            }
            Request::Shutdown => {
                for u in &mut self.units {
                    u.want_up = false;
                }
            }
            Request::Restart(comps) => {
                for c in self.with_deps(&comps) {
                    if !comps.contains(&c) {
                        self.want_dep_up(c);
                    }
                }
                for c in comps {
                    self.want_up(c);
                    // The start limit stops crash loops, not operators: an asked-for
                    // restart starts a fresh window.
                    self.units[c].starts.clear();
                    self.units[c].failures_in_row = 0;
                    if self.units[c].state.is_active() {
                        if self.units[c].state != State::Stopping {
                            self.units[c].relaunch = true;
                            self.begin_stop(c, Some("restart requested".into()), now, fx);
                        } else {
                            self.units[c].relaunch = true;
                        }
                    } else {
                        // Not running: make it start now rather than after a backoff.
                        let reason = "restart requested".to_string();
                        self.set(
                            c,
                            State::Pending {
                                reason: reason.clone(),
                            },
                            Some(reason),
                            now,
                            fx,
                        );
                    }
                }
            }
        }
    }

    /// Marks a component wanted up and clears a give-up state so it is tried again.
    pub(super) fn want_up(&mut self, c: usize) {
        let u = &mut self.units[c];
        u.want_up = true;
        if matches!(
            u.state,
            State::Failed { .. }
                | State::Stopped
                | State::Exited
                | State::Completed
                | State::Backoff { .. }
        ) {
            u.starts.clear();
            u.failures_in_row = 0;
            u.state = State::Pending {
                reason: "start requested".into(),
            };
        }
    }

    /// A dependency of what was asked for: like `want_up`, except that a oneshot that already
    /// completed stays completed (its work is done; running it again is not what was asked).
    pub(super) fn want_dep_up(&mut self, c: usize) {
        if self.units[c].state == State::Completed {
            self.units[c].want_up = true;
        } else {
            self.want_up(c);
        }
    }

    pub(super) fn with_deps(&self, comps: &[usize]) -> Vec<usize> {
        let mut v: Vec<usize> = comps
            .iter()
            .flat_map(|&c| self.graph.closure_deps(c))
            .chain(comps.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub(super) fn with_dependents(&self, comps: &[usize]) -> Vec<usize> {
        let mut v: Vec<usize> = comps
            .iter()
            .flat_map(|&c| self.graph.closure_dependents(c))
            .chain(comps.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    pub(super) fn begin_stop(
        &mut self,
        comp: usize,
        reason: Option<String>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let c = &self.graph.components()[comp];
        let stop = c.stop;
        let u = &mut self.units[comp];
        u.timer += 1;
        let token = u.timer;
        let pid = u.pid;
        fx.push(Effect::StopProbes { comp });
        self.set(comp, State::Stopping, reason, now, fx);
        if let Some(pid) = pid {
            fx.push(Effect::Signal {
                comp,
                pid,
                signal: stop.signal,
                scope: stop.scope,
            });
        }
        fx.push(Effect::SetTimer {
            comp,
            token,
            at: now + stop.timeout,
        });
    }

    pub(super) fn on_exit(
        &mut self,
        comp: usize,
        run: u64,
        status: ExitStatus,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let c = &self.graph.components()[comp];
        let (kind, policy, backoff) = (c.kind, c.restart, c.backoff);
        let u = &mut self.units[comp];
        if u.run != run || !u.state.is_active() {
            return;
        }
        let pid = u.pid.take();
        u.timer += 1; // cancels a pending stop timeout
        u.last_exit = Some(status.clone());
        let ran_for = u
            .launched_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let was_stopping = u.state == State::Stopping;
        let by_liveness = std::mem::take(&mut u.killed_by_liveness);
        let relaunch = std::mem::take(&mut u.relaunch);
        fx.push(Effect::StopProbes { comp });
        fx.push(Effect::Event(Event::Exit {
            comp,
            pid,
            status: status.clone(),
        }));

        let want_up = u.want_up;
        if relaunch && want_up {
            u.failures_in_row = 0;
            self.set(
                comp,
                State::Pending {
                    reason: "restarting".into(),
                },
                None,
                now,
                fx,
            );
            return;
        }
        if was_stopping && !by_liveness {
            self.set(comp, State::Stopped, None, now, fx);
            return;
        }
        if !want_up {
            self.set(comp, State::Stopped, Some(format!("{status}")), now, fx);
            return;
        }
        let success = status.success() && !by_liveness;
        if kind == Kind::Oneshot && success {
            self.units[comp].failures_in_row = 0;
            self.set(comp, State::Completed, None, now, fx);
            return;
        }
        let restart = match policy {
            Restart::Always => true,
            Restart::OnFailure => !success,
            Restart::Never => false,
        };
        let why = if by_liveness {
            format!("liveness probe failed, then {status}")
        } else {
            status.to_string()
        };
        if !restart {
            if success {
                self.set(comp, State::Exited, Some(why), now, fx);
            } else {
                self.set(
                    comp,
                    State::Failed {
                        reason: why.clone(),
                    },
                    Some(why),
                    now,
                    fx,
                );
            }
            return;
        }
        let u = &mut self.units[comp];
        if ran_for >= backoff.reset_after {
            u.failures_in_row = 0;
        }
        u.failures_in_row += 1;
        u.restarts += 1;
        let delay = backoff.delay(u.failures_in_row);
        if delay.is_zero() {
            self.launch(comp, now, fx);
        } else {
            u.timer += 1;
            let token = u.timer;
            let until = now + delay;
            self.set(
                comp,
                State::Backoff { until },
                Some(format!("{why}; restarting in {delay:?}")),
                now,
                fx,
            );
            fx.push(Effect::SetTimer {
                comp,
                token,
                at: until,
            });
        }
    }

    /// Launches a run, unless the start limit says no.
    pub(super) fn launch(&mut self, comp: usize, now: Instant, fx: &mut Vec<Effect>) {
        let c = &self.graph.components()[comp];
        let (limit, has_ready, name) = (c.start_limit, c.ready.is_some(), c.name.clone());
        let u = &mut self.units[comp];
        while u
            .starts
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= limit.interval)
        {
            u.starts.pop_front();
        }
        if u.starts.len() >= limit.burst as usize {
            let reason = format!(
                "start limit hit: {} starts within {:?}; `dmucctl start {}` tries again",
                limit.burst, limit.interval, name
            );
            self.set(
                comp,
                State::Failed {
                    reason: reason.clone(),
                },
                Some(reason),
                now,
                fx,
            );
            return;
        }
        u.starts.push_back(now);
        u.run += 1;
        u.pid = None;
        u.launched_at = Some(now);
        let run = u.run;
        self.set(comp, State::Starting, None, now, fx);
        fx.push(Effect::Launch { comp, run });
        if has_ready {
            fx.push(Effect::StartProbe {
                comp,
                run,
                role: ProbeRole::Ready,
            });
        }
    }
}
