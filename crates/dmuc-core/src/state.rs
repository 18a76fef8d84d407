//! Component states and the bookkeeping that goes with them.

use std::collections::VecDeque;
use std::fmt;
use std::time::Instant;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitStatus {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal.
    Signal {
        /// Signal number.
        signal: i32,
        /// A core was dumped.
        core: bool,
    },
    /// The run could not be started, or its end could not be observed (why).
    Lost(String),
}

impl ExitStatus {
    /// Exit status 0.
    pub fn success(&self) -> bool {
        *self == ExitStatus::Code(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExitStatus::Code(c) => write!(f, "exit status {c}"),
            ExitStatus::Signal { signal, core } => {
                write!(f, "killed by {}", dmuc_config::signal::signal_name(*signal))?;
                if *core {
                    write!(f, " (core dumped)")?;
                }
                Ok(())
            }
            ExitStatus::Lost(why) => write!(f, "lost: {why}"),
        }
    }
}

/// Where a component is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Wanted, waiting for dependencies (the reason says which).
    Pending {
        /// Human-readable reason.
        reason: String,
    },
    /// Launched; waiting for its PID, or for its ready probe.
    Starting,
    /// Up, without a ready probe.
    Running,
    /// Up, and its ready probe passed.
    Ready,
    /// Stop signal sent; waiting for the exit.
    Stopping,
    /// Stopped on request (or never started because it is not wanted).
    Stopped,
    /// Ended with success and the policy does not restart it.
    Exited,
    /// Waiting to restart.
    Backoff {
        /// When the restart is due.
        until: Instant,
    },
    /// Given up: start limit hit, or failed with no restart (the reason says which).
    Failed {
        /// Human-readable reason.
        reason: String,
    },
    /// A oneshot that finished with success.
    Completed,
}

impl State {
    /// Lowercase name, as shown by `status`.
    pub fn name(&self) -> &'static str {
        self.kind().name()
    }

    /// The state without its details, as the protocol and dmucctl know it.
    pub fn kind(&self) -> dmuc_proto::State {
        use dmuc_proto::State as K;
        match self {
            State::Pending { .. } => K::Pending,
            State::Starting => K::Starting,
            State::Running => K::Running,
            State::Ready => K::Ready,
            State::Stopping => K::Stopping,
            State::Stopped => K::Stopped,
            State::Exited => K::Exited,
            State::Backoff { .. } => K::Backoff,
            State::Failed { .. } => K::Failed,
            State::Completed => K::Completed,
        }
    }

    /// A process of this component may exist (launched and not yet seen to exit).
    pub fn is_active(&self) -> bool {
        matches!(
            self,
            State::Starting | State::Running | State::Ready | State::Stopping
        )
    }
}

/// One component's supervision record.
#[derive(Debug, Clone)]
pub struct Unit {
    /// Current state.
    pub state: State,
    /// The operator (or the initial start) wants it up.
    pub want_up: bool,
    /// Number of the current (or last) run; 0 before the first launch.
    pub run: u64,
    /// PID of the current run's main process, once known.
    pub pid: Option<u32>,
    /// When the current state was entered.
    pub since: Option<Instant>,
    /// When the current run was launched.
    pub launched_at: Option<Instant>,
    /// Restarts done by policy since the daemon started (not operator restarts).
    pub restarts: u32,
    /// Consecutive failed runs, for backoff; reset after a stable run.
    pub failures_in_row: u32,
    /// Launch times within the start-limit window.
    pub starts: VecDeque<Instant>,
    /// How the last run ended.
    pub last_exit: Option<ExitStatus>,
    /// Relaunch as soon as the stop completes (operator restart).
    pub(crate) relaunch: bool,
    /// The stop was ours because the liveness probe failed.
    pub(crate) killed_by_liveness: bool,
    /// Token of the armed timer; older tokens are stale.
    pub(crate) timer: u64,
}

impl Unit {
    pub(crate) fn new() -> Self {
        Unit {
            state: State::Pending {
                reason: "not started yet".into(),
            },
            want_up: true,
            run: 0,
            pid: None,
            since: None,
            launched_at: None,
            restarts: 0,
            failures_in_row: 0,
            starts: VecDeque::new(),
            last_exit: None,
            relaunch: false,
            killed_by_liveness: false,
            timer: 0,
        }
    }
}

/// What a previous daemon knew of a run that this one takes over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Adopted {
    /// The run number.
    pub run: u64,
    /// Its main process, while it runs.
    pub pid: Option<u32>,
    /// Restarts by policy so far.
    pub restarts: u32,
    /// When the run was launched (from the process's start time in the kernel).
    pub launched_at: Instant,
    /// How the run before it ended.
    pub last_exit: Option<ExitStatus>,
}
