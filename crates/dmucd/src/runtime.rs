//! The one actor that owns the state machine: it turns messages from the edges (shims,
//! probes, tmux, signals) into `Input`s, and carries out the `Effect`s that come back.
//! Waiting is event-driven: a `select!` over the message channel, the backend's loss and the
//! earliest timer; nothing wakes up when nothing is due.
//!
//! This file: the actor's state and its loop. `messages` turns messages and timers into
//! inputs, `effects` carries out what the machine returns, `outputs` writes what people and
//! systemd see, `requests` answers the control protocol, `remap` follows a reload,
//! `adoption` takes over a previous dmucd's components, `views` gives shims windows again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use dmuc_config::{Config, StopScope};
use dmuc_core::{Effect, Event, ExitStatus, Input, ProbeRole, Request, State, Supervisor, Wait};
use dmuc_proto::{EventRecord, EventWhat, State as Kind};
use nix::sys::signal::Signal;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use crate::Paths;
use crate::backend::{Backend, Note, Pane};
use crate::conn::Conn;
use crate::events::EventLog;
pub use crate::msg::Msg;
use crate::shimline::{ShimTx, ShimWhat, ToShim};

/// Lines of output carried by an exit event.
const EXIT_TAIL_LINES: usize = 5;

/// How long a launched shim has to report its program's PID.
const SHIM_DEADLINE: Duration = Duration::from_secs(10);
/// How long a shutdown waits for the shims to go once told to.
const SHIMS_GONE: Duration = Duration::from_secs(2);
/// The least time between two status.json snapshots and tmux status-line updates (READY=1
/// and exit write the file at once): each is O(N), and a start-up changes states hundreds of
/// times; the file is also replaced by rename, ~0.6 ms of ext4 work each, and each mark is a
/// tmux command. The adoption record is not paced.
const STATUS_INTERVAL: Duration = Duration::from_millis(50);

/// How often the Overview's CPU and memory are read while a client shows it (top(1)'s
/// default is 3 s; 2 s keeps a restart's new PID from showing "-" long).
const USAGE_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKey {
    Core {
        comp: usize,
        token: u64,
    },
    ShimDeadline {
        comp: usize,
        run: u64,
    },
    Wait {
        id: u64,
    },
    Watchdog,
    /// status.json and the tmux marks are due (at most every STATUS_INTERVAL).
    StatusFile,
    /// The watched Overview's CPU and memory are due (every USAGE_EVERY).
    Usage,
    /// A crash loop's record is due, or its loop settled (events::storm).
    Storm,
    /// `notify-ready-timeout` after the start: READY=1 goes even if the graph has not settled.
    ReadyOverdue,
}

/// The Overview's CPU and memory columns.
#[derive(Default)]
struct Usage {
    /// A client shows the Overview.
    watched: bool,
    /// A sample is being read off the actor.
    sampling: bool,
    /// The last sample's groups by main PID, and its time (seconds since boot): the next
    /// CPU % is over the interval between the two.
    last: Option<(f64, HashMap<u32, dmuc_procfs::Usage>)>,
    /// CPU % and resident bytes by main PID, as drawn.
    shown: HashMap<u32, (f64, u64)>,
}

/// An operator request waiting to be done before it is answered.
struct Waiter {
    conn: Conn,
    req: u64,
    wait: Wait,
    changes: Vec<EventRecord>,
    deadline: Option<Instant>,
}

struct Slot {
    pane: Option<Pane>,
    /// A view window is being opened (one at a time, so it reuses the same pane).
    opening: bool,
    /// The connected shim of this component (connection id, lines to it).
    shim: Option<(u64, ShimTx)>,
    /// That shim's PID, from its `hello` (the view window passes Ctrl-C to it).
    shim_pid: Option<u32>,
    /// The shim a view window is being opened for (a newer one gets a window of its own).
    view_for: Option<u32>,
    /// A shim we started has not had a window yet: it shows its output so far itself.
    fresh: bool,
    /// That shim reported its program's end and waits for `run N`.
    shim_idle: bool,
    /// Whether that shim's output is shown in a window.
    view: View,
    /// When the current launch's shim must have reported a PID (its timer's key).
    deadline: Instant,
    probes: Vec<AbortHandle>,
    note: Option<String>,
    /// The main process's start time (clock ticks), to recognise it after a daemon restart.
    start: Option<u64>,
    /// Why the shim cannot write the log, while it cannot.
    log_error: Option<String>,
    /// The log's size and inode when the current run was launched.
    log_from: (u64, Option<u64>),
    /// The definition hash of the current run (computed once per launch, not per status
    /// write: 100 components × every state change added up to tens of ms at start-up).
    hash: String,
}

impl Default for Slot {
    fn default() -> Slot {
        Slot {
            pane: None,
            opening: false,
            shim: None,
            shim_pid: None,
            view_for: None,
            fresh: false,
            shim_idle: false,
            view: View::Shown,
            deadline: Instant::now(),
            probes: Vec::new(),
            note: None,
            start: None,
            log_error: None,
            log_from: (0, None),
            hash: String::new(),
        }
    }
}

/// Where a component's shim shows its output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// In its window, as far as we know.
    Shown,
    /// It has no terminal (started without one, or it hung up) and a window for it is being
    /// opened (`opening` is set).
    Opening,
    /// The new window's terminal was sent; the shim has not said `view-ok` yet.
    Handed,
}

/// The actor's state.
pub struct Runtime<B: Backend> {
    /// Writes adopt.json (at once, runtime dir) and status.json (at most every 50 ms, state
    /// dir) off the actor.
    adopt_file: crate::statefile::StateWriter,
    state_files: crate::statefile::StateWriter,
    /// When status.json's snapshot was last handed to its writer.
    status_file: Option<Instant>,
    sup: Supervisor,
    cfg: Config,
    paths: Paths,
    /// Windows and processes (tmux and kill(2); a fake in tests).
    backend: B,
    slots: Vec<Slot>,
    timers: BTreeSet<(Instant, TimerKey)>,
    tx: mpsc::UnboundedSender<Msg>,
    rx: mpsc::UnboundedReceiver<Msg>,
    base_env: Vec<(String, String)>,
    events: EventLog,
    /// Crash loops, whose events are coalesced, and when their next record is due.
    storms: crate::events::storm::Storms,
    storm_at: Option<Instant>,
    dirty: bool,
    /// Shutdown under way.
    stopping: bool,
    /// A shim was told to start a run since the loop last yielded.
    told_shims: bool,
    config_path: PathBuf,
    /// The command line's overrides (`--var` values are applied again on `reload`).
    overrides: crate::Overrides,
    started: Instant,
    waiters: BTreeMap<u64, Waiter>,
    next_waiter: u64,
    /// Streaming replies in progress, by (connection, request id).
    streams: HashMap<(u64, u64), AbortHandle>,
    /// What the tmux status line shows now: each window's mark and the summary.
    shown: (Vec<String>, String),
    /// systemd's notification socket (a no-op outside systemd).
    notify: crate::notify::Notifier,
    /// `READY=1` sent; the last `STATUS=` sent.
    notified: (bool, String),
    /// `notify-ready-timeout` passed: READY=1 no longer waits for the graph to settle.
    ready_overdue: bool,
    /// The graph had settled at the last turn, and it has settled since the heap was last
    /// trimmed (see `trim_heap`).
    settled: bool,
    /// The graph was started ([`Runtime::mark_boot`]) and has not settled since: its
    /// [`dmuc_proto::SETTLED_EVENT`] is still to be written.
    settle_unsaid: bool,
    trim_due: bool,
    /// The overview window's last frame.
    overview: String,
    /// The Overview's resource columns, sampled only while a client shows it.
    usage: Usage,
    /// What a previous dmucd left running, until it is adopted.
    adoption: Option<Adoption>,
    /// Which tmux server this is (counts replacements): replies from an earlier one are void.
    server: u64,
}

/// A previous dmucd's tmux server and record, found at start.
pub struct Adoption {
    /// Component panes in its session.
    pub panes: Vec<crate::backend::FoundPane>,
    /// Its `adopt.json`.
    pub record: Option<crate::adopt::Record>,
}

/// How long shims have to reconnect to a new daemon before it decides without them.
const ADOPT_DEADLINE: Duration = Duration::from_secs(5);

mod adoption;
mod effects;
mod messages;
mod outputs;
mod remap;
mod requests;
#[cfg(test)]
mod sim;
mod views;

impl<B: Backend> Runtime<B> {
    /// Builds the actor around a started backend and the message channel the edges send to.
    pub fn new(
        cfg: Config,
        config_path: PathBuf,
        overrides: crate::Overrides,
        paths: Paths,
        backend: B,
        (tx, rx): (mpsc::UnboundedSender<Msg>, mpsc::UnboundedReceiver<Msg>),
        adoption: Option<Adoption>,
    ) -> Runtime<B> {
        let n = cfg.graph.len();
        // Not for the components: they are not our tmux clients, and systemd's notification
        // variables are ours (a kubelet or containerd would otherwise notify for our unit).
        let base_env = std::env::vars()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "TMUX" | "TMUX_PANE" | "NOTIFY_SOCKET" | "WATCHDOG_USEC" | "WATCHDOG_PID"
                )
            })
            .collect();
        // Rotated as the components' logs are (log-max-size, log-keep): a crash loop does not
        // fill the state disk.
        let events = EventLog::open(&paths.state_dir.join("events.jsonl"))
            .rotating(cfg.daemon.log_max_size, cfg.daemon.log_keep);
        use crate::statefile::StateWriter;
        let adopt_file = StateWriter::start(paths.runtime_dir.clone());
        // The actor paces status.json itself (it builds the snapshot only when due).
        let state_files = StateWriter::start(paths.state_dir.clone());
        Runtime {
            adopt_file,
            state_files,
            status_file: None,
            sup: Supervisor::new(cfg.graph.clone()),
            cfg,
            paths,
            backend,
            slots: (0..n).map(|_| Slot::default()).collect(),
            timers: BTreeSet::new(),
            tx,
            rx,
            base_env,
            events,
            storms: Default::default(),
            storm_at: None,
            dirty: true,
            stopping: false,
            told_shims: false,
            config_path,
            overrides,
            started: Instant::now(),
            waiters: BTreeMap::new(),
            next_waiter: 0,
            streams: HashMap::new(),
            shown: (vec![String::new(); n], String::new()),
            notify: crate::notify::Notifier::from_env(),
            notified: (false, String::new()),
            ready_overdue: false,
            settled: false,
            settle_unsaid: false,
            trim_due: false,
            overview: String::new(),
            usage: Usage::default(),
            adoption,
            server: 0,
        }
    }

    /// Runs the graph until a stop request has stopped everything.
    pub async fn run(mut self) -> anyhow::Result<()> {
        if self.overrides.hold || self.cfg.daemon.hold {
            tracing::info!("holding: nothing starts until `dmucctl start NAME`");
            self.sup.hold();
        }
        let backlog = match self.adoption.take() {
            Some(a) => self.adopt_phase(a).await,
            None => {
                self.mark_boot();
                self.feed(Input::Boot);
                Vec::new()
            }
        };
        for m in backlog {
            self.on_msg(m);
        }
        if let Some(every) = self.notify.watchdog_every() {
            self.timers
                .insert((Instant::now() + every, TimerKey::Watchdog));
        }
        if self.notify.active() && self.cfg.daemon.notify_ready == dmuc_config::NotifyReady::Settled
        {
            let at = self.started + self.cfg.daemon.notify_ready_timeout;
            self.timers.insert((at, TimerKey::ReadyOverdue));
        }
        loop {
            // A restart without backoff is a timer due now: launch before the outputs below
            // (O(N) each), not after them.
            if self
                .timers
                .first()
                .is_some_and(|(t, _)| *t <= Instant::now())
            {
                self.fire_timers();
            }
            if std::mem::take(&mut self.told_shims) {
                // Let the link writers put `run N` on the wire first (one thread: they run
                // only when the actor waits).
                tokio::task::yield_now().await;
            }
            if self.dirty {
                // Components a reload removed leave the graph once they have stopped.
                if let Some(remap) = self.sup.prune() {
                    self.remap(&remap);
                }
                self.check_waiters();
                // After the status file: whoever READY=1 wakes sees the same state there.
                self.write_status();
                self.notify_state();
                let settled = self.sup.settled();
                // Trimmed after the next paced outputs, the start-up's last allocations.
                self.trim_due |= settled && !self.settled;
                self.settled = settled;
                if settled && self.settle_unsaid && !self.stopping {
                    self.settle_unsaid = false;
                    self.mark_settled();
                }
            }
            if self.stopping && self.sup.all_down() {
                // The line an operator (and the VM tests) read in the journal of a shutdown.
                tracing::info!("every component has stopped");
                break;
            }
            let next = self.timers.first().map(|(t, _)| *t);
            tokio::select! {
                msg = self.rx.recv() => {
                    let Some(msg) = msg else { break };
                    if let Msg::Stop = msg {
                        if !self.stopping && crate::notify::restart_job_pending() {
                            // `systemctl restart`: the next dmucd adopts the components.
                            tracing::info!("systemd is restarting dmucd: leaving the components running for the next one");
                            self.notify.send("STOPPING=1\nSTATUS=restarting: the components keep running");
                            return Ok(());
                        }
                        if self.stopping {
                            tracing::warn!("second stop request: killing every component now");
                            self.force_kill();
                            break;
                        }
                        self.shutdown();
                    } else {
                        self.on_msg(msg);
                        // Take what else is already queued before writing status once: at
                        // start-up, hundreds of shim reports arrive together.
                        for _ in 0..1024 {
                            match self.rx.try_recv() {
                                Ok(Msg::Stop) => {
                                    let _ = self.tx.send(Msg::Stop);
                                    break;
                                }
                                Ok(m) => self.on_msg(m),
                                Err(_) => break,
                            }
                        }
                    }
                }
                note = self.backend.note() => match note {
                    // Also while stopping: the components outlive tmux, and are stopped in
                    // order all the same.
                    Note::Lost => self.tmux_lost().await?,
                    Note::Watched(w) => self.overview_watched(w),
                },
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.fire_timers();
                }
            }
        }
        self.write_status();
        self.write_status_file();
        self.adopt_file.flush();
        self.state_files.flush();
        self.release_shims().await;
        self.backend.kill_server().await;
        Ok(())
    }

    /// Tells every shim to go (its program has stopped) and waits, a little, for their links
    /// to close: the shims are not tmux's children, and dmucd's exit leaves none behind.
    async fn release_shims(&mut self) {
        for slot in &self.slots {
            if let Some((_, tx)) = &slot.shim {
                let _ = tx.send(ToShim::Quit);
            }
        }
        let deadline = Instant::now() + SHIMS_GONE;
        while self.slots.iter().any(|s| s.shim.is_some()) {
            tokio::select! {
                msg = self.rx.recv() => match msg {
                    Some(Msg::ShimClosed { name, link }) => {
                        if let Some(comp) = self.comp_of(&name)
                            && self.slots[comp].shim.as_ref().is_some_and(|(l, _)| *l == link)
                        {
                            self.slots[comp].shim = None;
                        }
                    }
                    Some(_) => {} // the daemon is leaving: nothing else is acted on
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let left: Vec<&str> = (0..self.slots.len())
                        .filter(|&c| self.slots[c].shim.is_some())
                        .map(|c| self.name(c))
                        .collect();
                    tracing::warn!(?left, "shims still connected after {SHIMS_GONE:?}; leaving without them");
                    break;
                }
            }
        }
    }

    /// The event that says the graph starts here (where `dmucctl analyze` looks from).
    fn mark_boot(&mut self) {
        let message = format!(
            "{} of {}: dmucd pid {}, {} components",
            dmuc_proto::BOOT_EVENT,
            self.config_path.display(),
            std::process::id(),
            self.slots.len()
        );
        self.events.push(None, EventWhat::Daemon { message });
        self.settle_unsaid = true;
    }

    /// The event that says the graph started at [`Runtime::mark_boot`] has settled (where
    /// `dmucctl analyze` ends its window), with how it settled.
    fn mark_settled(&mut self) {
        let states: Vec<_> = (0..self.slots.len())
            .map(|c| self.sup.unit(c).state.kind())
            .collect();
        let up = states.iter().filter(|s| s.is_up()).count();
        let failed: Vec<&str> = (0..self.slots.len())
            .filter(|&c| states[c] == dmuc_proto::State::Failed)
            .map(|c| self.name(c))
            .collect();
        let mut message = format!(
            "{}: {up}/{} up, {:.1?} after its start",
            dmuc_proto::SETTLED_EVENT,
            states.len(),
            self.started.elapsed()
        );
        if !failed.is_empty() {
            message.push_str(&format!("; failed: {}", failed.join(", ")));
        }
        self.events.push(None, EventWhat::Daemon { message });
    }

    fn shutdown(&mut self) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.notify
            .send("STOPPING=1\nSTATUS=stopping every component in reverse dependency order");
        tracing::info!("stopping all components in reverse dependency order");
        self.events.push(
            None,
            EventWhat::Daemon {
                message: "shutdown: stopping every component".into(),
            },
        );
        self.feed(Input::Request(Request::Shutdown));
    }

    fn feed(&mut self, input: Input) {
        let fx = self.sup.handle(input, Instant::now().into_std());
        self.dirty = true;
        for e in fx {
            self.apply(e);
        }
    }

    fn comp_of(&self, name: &str) -> Option<usize> {
        self.sup.graph().index_of(name)
    }

    fn force_kill(&mut self) {
        for comp in 0..self.slots.len() {
            if let Some(pid) = self.sup.unit(comp).pid {
                let _ = self.backend.signal(-(pid as i32), Signal::SIGKILL);
                let _ = self.backend.signal(pid as i32, Signal::SIGKILL);
            }
        }
    }

    fn name(&self, comp: usize) -> &str {
        &self.sup.graph().components()[comp].name
    }

    fn log_path(&self, comp: usize) -> PathBuf {
        self.paths.log_dir.join(format!("{}.log", self.name(comp)))
    }
}
