//! The supervisor: `handle(input, now) -> effects`.
//!
//! This file: the types (inputs, effects, events) and the supervisor's interface;
//! `transitions` is what each input does to a unit, `reconcile` what follows every input.

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
}

fn libc_sigkill() -> i32 {
    9
}

mod reconcile;
mod transitions;

#[cfg(test)]
mod tests;
