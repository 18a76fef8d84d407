//! The supervisor: `handle(input, now) -> effects`.

use std::time::{Duration, Instant};

use dmuc_config::{Condition, Graph, Kind, Restart, StopScope};

use crate::state::{Adopted, ExitStatus, State, Unit};

/// Which probe a result or effect is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeRole {
    /// Gates readiness.
    Ready,
    /// Restarts the component when it fails.
    Liveness,
}

/// An operator request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Want these up (and what they need).
    Start(Vec<usize>),
    /// Want these down (and what needs them).
    Stop(Vec<usize>),
    /// Stop then start these, or start them now if they are not running.
    Restart(Vec<usize>),
    /// Want everything down.
    Shutdown,
}

/// Something that happened, fed to the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The initial start of the whole graph.
    Boot,
    /// Run `run` of `comp` has its main process `pid`.
    Started {
        /// Component index.
        comp: usize,
        /// Run number.
        run: u64,
        /// Main process PID.
        pid: u32,
    },
    /// Run `run` of `comp` ended.
    Exited {
        /// Component index.
        comp: usize,
        /// Run number.
        run: u64,
        /// How it ended.
        status: ExitStatus,
    },
    /// A probe's verdict changed (thresholds are applied by the caller, see `ProbeCounter`).
    Probe {
        /// Component index.
        comp: usize,
        /// Run number.
        run: u64,
        /// Which probe.
        role: ProbeRole,
        /// Passed or failed.
        ok: bool,
    },
    /// A timer armed by [`Effect::SetTimer`] fired.
    Timer {
        /// Component index.
        comp: usize,
        /// The token it was armed with.
        token: u64,
    },
    /// An operator request.
    Request(Request),
}

/// Something the runtime must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Start run `run` of `comp` (respawning its window).
    Launch {
        /// Component index.
        comp: usize,
        /// Run number to report facts with.
        run: u64,
    },
    /// Send `signal` to the process (or its group).
    Signal {
        /// Component index.
        comp: usize,
        /// Target PID (the group leader when `scope` is `Group`).
        pid: u32,
        /// Signal number.
        signal: i32,
        /// Whom.
        scope: StopScope,
    },
    /// Feed back `Input::Timer { comp, token }` at `at`.
    SetTimer {
        /// Component index.
        comp: usize,
        /// Token.
        token: u64,
        /// Deadline.
        at: Instant,
    },
    /// Start probing.
    StartProbe {
        /// Component index.
        comp: usize,
        /// Run number to report with.
        run: u64,
        /// Which probe.
        role: ProbeRole,
    },
    /// Stop every probe of `comp`.
    StopProbes {
        /// Component index.
        comp: usize,
    },
    /// Tell the world.
    Event(Event),
}

/// A notable change, for logs, status and the event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `comp` went from one state to another.
    State {
        /// Component index.
        comp: usize,
        /// Previous state name.
        from: dmuc_proto::State,
        /// New state name.
        to: dmuc_proto::State,
        /// Why, when there is something to say.
        reason: Option<String>,
    },
    /// A run ended.
    Exit {
        /// Component index.
        comp: usize,
        /// PID, if it was known.
        pid: Option<u32>,
        /// How.
        status: ExitStatus,
    },
}

/// The state machine over a whole graph.
#[derive(Debug, Clone)]
pub struct Supervisor {
    graph: Graph,
    units: Vec<Unit>,
    /// Components removed by a reload, still in the graph until they have stopped.
    leaving: Vec<String>,
}

impl Supervisor {
    /// A supervisor with every component pending and wanted up; feed it `Input::Boot`.
    pub fn new(graph: Graph) -> Self {
        let units = (0..graph.len()).map(|_| Unit::new()).collect();
        Supervisor {
            graph,
            units,
            leaving: Vec::new(),
        }
    }

    /// Components a reload removed that have not stopped yet.
    pub fn leaving(&self) -> &[String] {
        &self.leaving
    }

    pub(crate) fn take_units(&mut self) -> Vec<Unit> {
        std::mem::take(&mut self.units)
    }

    pub(crate) fn replace(&mut self, graph: Graph, units: Vec<Unit>, leaving: Vec<String>) {
        debug_assert_eq!(graph.len(), units.len());
        self.graph = graph;
        self.units = units;
        self.leaving = leaving;
    }

    /// Reconciles without an input (after a reconfiguration).
    pub(crate) fn settle(&mut self, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        self.reconcile(now, &mut fx);
        fx
    }

    /// Takes over a run of `comp` started by a previous daemon: `a.pid` is its main process
    /// (`None` when it has ended since; its `Exited` follows). It is wanted up, starting (its
    /// ready probe runs again) or running, with the start time, restarts and last exit the
    /// previous daemon knew. Call before `Boot`.
    pub fn adopt(&mut self, comp: usize, a: Adopted, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        let c = &self.graph.components()[comp];
        let (has_ready, has_liveness) = (c.ready.is_some(), c.liveness.is_some());
        let (run, pid) = (a.run, a.pid);
        let u = &mut self.units[comp];
        u.want_up = true;
        u.run = run;
        u.pid = pid;
        u.restarts = a.restarts;
        u.launched_at = Some(a.launched_at.min(now));
        u.last_exit = a.last_exit;
        let reason = Some(match pid {
            Some(p) => format!("adopted from the previous dmucd (pid {p}, run {run})"),
            None => format!("adopted from the previous dmucd (run {run}, ended meanwhile)"),
        });
        if has_ready && pid.is_some() {
            self.set(comp, State::Starting, reason, now, &mut fx);
            fx.push(Effect::StartProbe {
                comp,
                run,
                role: ProbeRole::Ready,
            });
        } else {
            self.set(comp, State::Running, reason, now, &mut fx);
            if has_liveness && pid.is_some() {
                fx.push(Effect::StartProbe {
                    comp,
                    run,
                    role: ProbeRole::Liveness,
                });
            }
        }
        fx
    }

    /// Carries over a run that had ended under the previous daemon, which knew it: its run
    /// number, restarts and last exit, and `completed` for a oneshot that completed. No event.
    pub fn restore(&mut self, comp: usize, a: Adopted, completed: bool, now: Instant) {
        let u = &mut self.units[comp];
        u.run = a.run;
        u.restarts = a.restarts;
        u.last_exit = a.last_exit;
        if completed && u.want_up {
            u.state = State::Completed;
            u.since = Some(now);
        }
    }

    /// Wants nothing up: components start only on request (`--hold`). Call before `Boot`.
    pub fn hold(&mut self) {
        for u in &mut self.units {
            u.want_up = false;
            u.state = State::Stopped;
        }
    }

    /// The graph.
    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// A component's record.
    pub fn unit(&self, comp: usize) -> &Unit {
        &self.units[comp]
    }

    /// True when nothing is active and nothing will start by itself: shutdown may finish.
    pub fn all_down(&self) -> bool {
        self.units.iter().all(|u| {
            let waiting_restart = u.want_up && matches!(u.state, State::Backoff { .. });
            !u.state.is_active() && !waiting_restart
        })
    }

    /// True when nothing is on its way: every component wanted up is up (running, ready,
    /// completed, exited) or has given up (failed), and none wanted down is still active. What
    /// `READY=1` to systemd waits for.
    pub fn settled(&self) -> bool {
        self.units.iter().all(|u| {
            if u.want_up {
                matches!(
                    u.state,
                    State::Running
                        | State::Ready
                        | State::Completed
                        | State::Exited
                        | State::Failed { .. }
                )
            } else {
                !u.state.is_active()
            }
        })
    }

    /// Applies one input at time `now`.
    pub fn handle(&mut self, input: Input, now: Instant) -> Vec<Effect> {
        let mut fx = Vec::new();
        match input {
            Input::Boot => {}
            Input::Started { comp, run, pid } => self.on_started(comp, run, pid, now, &mut fx),
            Input::Exited { comp, run, status } => self.on_exit(comp, run, status, now, &mut fx),
            Input::Probe {
                comp,
                run,
                role,
                ok,
            } => self.on_probe(comp, run, role, ok, now, &mut fx),
            Input::Timer { comp, token } => self.on_timer(comp, token, now, &mut fx),
            Input::Request(r) => self.on_request(r, now, &mut fx),
        }
        self.reconcile(now, &mut fx);
        fx
    }

    fn set(
        &mut self,
        comp: usize,
        state: State,
        reason: Option<String>,
        now: Instant,
        fx: &mut Vec<Effect>,
    ) {
        let u = &mut self.units[comp];
        let from = u.state.kind();
        let changed = u.state != state;
        u.state = state;
        if changed {
            u.since = Some(now);
            fx.push(Effect::Event(Event::State {
                comp,
                from,
                to: u.state.kind(),
                reason,
            }));
        }
    }

    fn on_started(&mut self, comp: usize, run: u64, pid: u32, now: Instant, fx: &mut Vec<Effect>) {
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

    fn on_probe(
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

    fn on_timer(&mut self, comp: usize, token: u64, now: Instant, fx: &mut Vec<Effect>) {
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

    fn on_request(&mut self, r: Request, now: Instant, fx: &mut Vec<Effect>) {
        match r {
            Request::Start(comps) => {
                for c in self.with_deps(&comps) {
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
    fn want_up(&mut self, c: usize) {
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
    fn want_dep_up(&mut self, c: usize) {
        if self.units[c].state == State::Completed {
            self.units[c].want_up = true;
        } else {
            self.want_up(c);
        }
    }

    fn with_deps(&self, comps: &[usize]) -> Vec<usize> {
        let mut v: Vec<usize> = comps
            .iter()
            .flat_map(|&c| self.graph.closure_deps(c))
            .chain(comps.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn with_dependents(&self, comps: &[usize]) -> Vec<usize> {
        let mut v: Vec<usize> = comps
            .iter()
            .flat_map(|&c| self.graph.closure_dependents(c))
            .chain(comps.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    fn begin_stop(
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

    fn on_exit(
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
    fn launch(&mut self, comp: usize, now: Instant, fx: &mut Vec<Effect>) {
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

    /// Whether dependency edge `dep` of some component is satisfied, and if it never will be
    /// without operator action, why.
    fn dep_status(&self, dep: usize, cond: Condition) -> Result<(), (bool, String)> {
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

    fn reconcile(&mut self, now: Instant, fx: &mut Vec<Effect>) {
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

fn libc_sigkill() -> i32 {
    9
}

#[cfg(test)]
mod tests;
