//! The one actor that owns the state machine: it turns messages from the edges (shims,
//! probes, tmux, signals) into `Input`s, and carries out the `Effect`s that come back.
//! Waiting is event-driven: a `select!` over the message channel, tmux notifications and the
//! earliest timer; nothing wakes up when nothing is due.

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
use crate::backend::{Backend, Pane};
use crate::conn::Conn;
use crate::events::EventLog;
pub use crate::msg::Msg;
use crate::shimline::{ShimTx, ShimWhat, ToShim};

/// Lines of output carried by an exit event.
const EXIT_TAIL_LINES: usize = 5;

/// How long a launched shim has to report its program's PID.
const SHIM_DEADLINE: Duration = Duration::from_secs(10);
/// The least time between two status.json snapshots and tmux status-line updates (READY=1
/// and exit write the file at once): each is O(N), and a start-up changes states hundreds of
/// times; the file is also replaced by rename, ~0.6 ms of ext4 work each, and each mark is a
/// tmux command. The adoption record is not paced.
const STATUS_INTERVAL: Duration = Duration::from_millis(50);

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
    /// A tmux launch (or a view window) is in flight; a relaunch waits for it so it reuses
    /// the same pane instead of opening a second window.
    launching: bool,
    /// The run to launch once the in-flight launch has answered.
    queued: Option<u64>,
    /// The connected shim of this component (connection id, lines to it).
    shim: Option<(u64, ShimTx)>,
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
            launching: false,
            queued: None,
            shim: None,
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
    /// Its terminal hung up and a window for it is being opened (`launching` is set).
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
    dirty: bool,
    /// Shutdown under way.
    stopping: bool,
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
    /// The graph had settled at the last turn, and it has settled since the heap was last
    /// trimmed (see `trim_heap`).
    settled: bool,
    trim_due: bool,
    /// The overview window's last frame.
    overview: String,
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
        let events = EventLog::open(&paths.state_dir.join("events.jsonl"));
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
            dirty: true,
            stopping: false,
            config_path,
            overrides,
            started: Instant::now(),
            waiters: BTreeMap::new(),
            next_waiter: 0,
            streams: HashMap::new(),
            shown: (vec![String::new(); n], String::new()),
            notify: crate::notify::Notifier::from_env(),
            notified: (false, String::new()),
            settled: false,
            trim_due: false,
            overview: String::new(),
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
        loop {
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
            }
            if self.stopping && self.sup.all_down() {
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
                () = self.backend.lost() => {
                    // Also while stopping: the components outlive tmux, and are stopped in
                    // order all the same.
                    self.tmux_lost().await?;
                }
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    self.fire_timers();
                }
            }
        }
        self.write_status();
        self.write_status_file();
        self.adopt_file.flush();
        self.state_files.flush();
        self.backend.kill_server().await;
        Ok(())
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

    fn on_msg(&mut self, msg: Msg) {
        // Status shows more than the machine's state (window, probe notes): refresh after any
        // fact. Control requests refresh only through what they feed to the machine, so
        // a `status` costs no status-file write.
        if !matches!(
            msg,
            Msg::Control { .. } | Msg::ConnClosed { .. } | Msg::Reload
        ) {
            self.dirty = true;
        }
        match msg {
            Msg::ShimLink { name, link, tx, .. } => match self.comp_of(&name) {
                Some(comp) => {
                    let slot = &mut self.slots[comp];
                    if slot.shim.as_ref().is_none_or(|(l, _)| *l != link) && !slot.launching {
                        slot.view = View::Shown; // a new shim, in its pane (or it says not)
                    }
                    slot.shim = Some((link, tx));
                    slot.shim_idle = false;
                }
                // A component the config no longer has: once its program ends, it goes.
                None => {
                    let _ = tx.send(ToShim::Quit);
                }
            },
            Msg::ShimClosed { name, link } => {
                if let Some(comp) = self.comp_of(&name)
                    && self.slots[comp]
                        .shim
                        .as_ref()
                        .is_some_and(|(l, _)| *l == link)
                {
                    self.slots[comp].shim = None;
                }
            }
            Msg::Shim { name, run, what } => {
                let Some(comp) = self.comp_of(&name) else {
                    return;
                };
                if let ShimWhat::LogError(_) | ShimWhat::LogOk = what {
                    let (ok, detail) = match what {
                        ShimWhat::LogError(e) => (false, Some(e)),
                        _ => (true, None),
                    };
                    if ok {
                        tracing::info!(component = %name, "the log file works again");
                    } else {
                        tracing::warn!(component = %name, "cannot write the log: {}", detail.as_deref().unwrap_or(""));
                    }
                    self.slots[comp].log_error = detail.clone();
                    self.events.push(Some(&name), EventWhat::Log { ok, detail });
                    return;
                }
                if let ShimWhat::ViewLost | ShimWhat::ViewOk = what {
                    self.on_view(comp, run, what == ShimWhat::ViewLost);
                    return;
                }
                if matches!(what, ShimWhat::Exit(_) | ShimWhat::SpawnFailed(_)) {
                    // Set before feeding: the machine may relaunch at once, through this shim.
                    self.slots[comp].shim_idle = true;
                }
                let input = match what {
                    ShimWhat::Start(pid) => {
                        self.slots[comp].start = crate::adopt::start_ticks(pid);
                        // The shim answered: its deadline must not wake us up later.
                        self.timers.remove(&(
                            self.slots[comp].deadline,
                            TimerKey::ShimDeadline { comp, run },
                        ));
                        Input::Started { comp, run, pid }
                    }
                    ShimWhat::SpawnFailed(m) => Input::Exited {
                        comp,
                        run,
                        status: ExitStatus::Lost(m),
                    },
                    ShimWhat::Exit(status) => Input::Exited { comp, run, status },
                    // Handled above.
                    ShimWhat::LogError(_)
                    | ShimWhat::LogOk
                    | ShimWhat::ViewLost
                    | ShimWhat::ViewOk => return,
                    ShimWhat::Gone => Input::Exited {
                        comp,
                        run,
                        status: ExitStatus::Lost("the shim died before reporting an exit".into()),
                    },
                };
                self.feed(input);
            }
            Msg::Probe {
                comp,
                run,
                role,
                ok,
                detail,
            } => {
                let Some(comp) = self.comp_of(&comp) else {
                    return;
                };
                if self.sup.unit(comp).run == run {
                    let role_name = if role == ProbeRole::Ready {
                        "ready"
                    } else {
                        "liveness"
                    };
                    let name = self.name(comp).to_string();
                    let rec = self.events.push(
                        Some(&name),
                        EventWhat::Probe {
                            role: role_name.into(),
                            ok,
                            detail: detail.clone(),
                        },
                    );
                    self.record_for_waiters(comp, &rec);
                    self.slots[comp].note = detail.map(|d| {
                        format!(
                            "{} probe: {d}",
                            if role == ProbeRole::Ready {
                                "ready"
                            } else {
                                "liveness"
                            }
                        )
                    });
                }
                self.feed(Input::Probe {
                    comp,
                    run,
                    role,
                    ok,
                });
            }
            Msg::Launched {
                comp,
                run,
                server,
                result,
            } => {
                let Some(comp) = self.comp_of(&comp) else {
                    return;
                };
                if server != self.server {
                    // Sent to a tmux server that died since: if its shim started all the
                    // same, it reports; if not, the shim deadline decides.
                    return;
                }
                self.slots[comp].launching = false;
                match result {
                    Ok(p) => {
                        if self.slots[comp].pane.as_ref() != Some(&p) {
                            self.shown.0[comp].clear(); // a new window has no mark yet
                        }
                        self.slots[comp].pane = Some(p);
                    }
                    Err(e) => {
                        tracing::error!(component = %self.name(comp), "tmux could not start the window: {e}");
                        self.feed(Input::Exited {
                            comp,
                            run,
                            status: ExitStatus::Lost(format!("tmux: {e}")),
                        });
                    }
                }
                self.launch_queued(comp);
            }
            Msg::ViewOpened {
                comp,
                server,
                result,
            } => {
                if let Some(comp) = self.comp_of(&comp)
                    && server == self.server
                {
                    self.view_opened(comp, result);
                }
            }
            Msg::Control { conn, req } => self.request(conn, req),
            Msg::ConnClosed { conn } => self.conn_closed(conn),
            Msg::Reload => match self.reload_from_file(false) {
                Ok(r) if r.applied => tracing::info!("SIGHUP: reloaded"),
                Ok(_) => tracing::info!("SIGHUP: the config is unchanged"),
                Err(e) => tracing::error!("SIGHUP: reload refused, nothing changed: {}", e.message),
            },
            Msg::Stop => {}
        }
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(&(t, key)) = self.timers.first() {
            if t > now {
                break;
            }
            self.timers.pop_first();
            match key {
                TimerKey::Core { comp, token } => self.feed(Input::Timer { comp, token }),
                TimerKey::Wait { id } => self.wait_timed_out(id),
                TimerKey::StatusFile => self.paced_outputs(),
                TimerKey::Watchdog => {
                    self.notify.send("WATCHDOG=1");
                    if let Some(every) = self.notify.watchdog_every() {
                        self.timers.insert((now + every, TimerKey::Watchdog));
                    }
                }
                TimerKey::ShimDeadline { comp, run } => {
                    let u = self.sup.unit(comp);
                    if u.run == run && u.pid.is_none() && u.state.is_active() {
                        let why = format!("the shim did not report a PID within {SHIM_DEADLINE:?}");
                        self.feed(Input::Exited {
                            comp,
                            run,
                            status: ExitStatus::Lost(why),
                        });
                    }
                }
            }
        }
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

    fn apply(&mut self, e: Effect) {
        match e {
            Effect::Launch { comp, run } => self.launch(comp, run),
            Effect::Signal {
                comp,
                pid,
                signal,
                scope,
            } => {
                let target = if scope == StopScope::Group {
                    -(pid as i32)
                } else {
                    pid as i32
                };
                let sig = Signal::try_from(signal).unwrap_or(Signal::SIGTERM);
                tracing::info!(component = %self.name(comp), pid, signal = %sig, ?scope, "signal");
                if let Err(e) = self.backend.signal(target, sig)
                    && e != nix::errno::Errno::ESRCH
                {
                    tracing::warn!(component = %self.name(comp), "kill: {e}");
                }
            }
            Effect::SetTimer { comp, token, at } => {
                self.timers
                    .insert((Instant::from_std(at), TimerKey::Core { comp, token }));
            }
            Effect::StartProbe { comp, run, role } => {
                let c = &self.sup.graph().components()[comp];
                let probe = if role == ProbeRole::Ready {
                    c.ready.clone()
                } else {
                    c.liveness.clone()
                };
                if let Some(p) = probe {
                    let name = c.name.clone();
                    let (offset, ino) = self.slots[comp].log_from;
                    let log = (self.log_path(comp), offset, ino);
                    let h =
                        tokio::spawn(crate::probe::run(p, name, run, role, self.tx.clone(), log));
                    self.slots[comp].probes.push(h.abort_handle());
                }
            }
            Effect::StopProbes { comp } => {
                for h in self.slots[comp].probes.drain(..) {
                    h.abort();
                }
            }
            Effect::Event(ev) => self.event(ev),
        }
    }

    fn launch(&mut self, comp: usize, run: u64) {
        // Armed first, so even a launch queued behind a stuck one cannot leave the component
        // starting forever (a stop would wait for a PID that never comes).
        let deadline = Instant::now() + SHIM_DEADLINE;
        self.slots[comp].deadline = deadline;
        self.timers
            .insert((deadline, TimerKey::ShimDeadline { comp, run }));
        if self.slots[comp].launching {
            tracing::debug!(comp, run, "launch queued behind an in-flight tmux launch");
            self.slots[comp].queued = Some(run);
            return;
        }
        let c = &self.sup.graph().components()[comp];
        let mut env = self.base_env.clone();
        for (k, v) in &c.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        env.push(("DMUC_COMPONENT".into(), c.name.clone()));
        env.push(("DMUC_RUN".into(), run.to_string()));
        let log = self.log_path(comp);
        let socket = self.paths.runtime_dir.join("shim.sock");
        let spec = crate::spec::encode(&crate::spec::Launch {
            name: &c.name,
            argv: &c.command,
            env: &env,
            cwd: c.cwd.as_deref(),
            user: c.user.as_deref(),
            group: c.group.as_deref(),
            log: &log,
            log_max: self.cfg.daemon.log_max_size,
            log_keep: self.cfg.daemon.log_keep,
            kill_group: c.stop.scope == StopScope::Group,
            socket: &socket,
        });
        self.slots[comp].hash = crate::adopt::definition_hash(c);
        // Where this run's output will start: a `log` ready probe reads from there.
        let meta = std::fs::metadata(&log).ok();
        self.slots[comp].log_from = (
            meta.as_ref().map_or(0, |m| m.len()),
            meta.map(|m| std::os::unix::fs::MetadataExt::ino(&m)),
        );
        let c = &self.sup.graph().components()[comp];
        let path = self
            .paths
            .runtime_dir
            .join("spec")
            .join(format!("{}.spec", c.name));
        let written = std::fs::write(&path, spec).map_err(|e| e.to_string());
        if let Err(e) = written {
            let status =
                ExitStatus::Lost(format!("cannot write launch spec {}: {e}", path.display()));
            // Deliver as a message so the state machine is not re-entered from inside apply().
            let _ = self.tx.send(Msg::Launched {
                comp: c.name.clone(),
                run,
                server: self.server,
                result: Err(status.to_string()),
            });
            return;
        }
        // Restart in place: the pane's shim is alive and waiting, so one line is enough and
        // tmux is not involved (no pty, no fork of a new shim).
        let slot = &mut self.slots[comp];
        if slot.shim_idle
            && let Some((_, tx)) = &slot.shim
            && tx.send(ToShim::Run(run)).is_ok()
        {
            tracing::debug!(comp, run, "restart in place through the idle shim");
            slot.shim_idle = false;
            return;
        }
        tracing::debug!(
            comp,
            run,
            shim = slot.shim.is_some(),
            idle = slot.shim_idle,
            "launch through tmux"
        );
        let name = c.name.clone();
        let fut = self
            .backend
            .launch(&c.name, self.slots[comp].pane.as_ref(), &path, run);
        self.slots[comp].launching = true;
        let tx = self.tx.clone();
        let server = self.server;
        tokio::spawn(async move {
            let result = fut.await;
            let _ = tx.send(Msg::Launched {
                comp: name,
                run,
                server,
                result,
            });
        });
    }

    fn event(&mut self, ev: Event) {
        let (comp, what) = match ev {
            Event::State {
                comp,
                from,
                to,
                reason,
            } => {
                let name = self.name(comp);
                match &reason {
                    Some(r) => tracing::info!(component = %name, "{from} -> {to}: {r}"),
                    None => tracing::info!(component = %name, "{from} -> {to}"),
                }
                (comp, EventWhat::State { from, to, reason })
            }
            Event::Exit { comp, pid, status } => {
                tracing::info!(component = %self.name(comp), pid, "{status}");
                let (code, signal) = match status {
                    ExitStatus::Code(c) => (Some(c), None),
                    ExitStatus::Signal { signal, .. } => (None, Some(signal)),
                    ExitStatus::Lost(_) => (None, None),
                };
                let log = self.log_path(comp);
                (
                    comp,
                    EventWhat::Exit {
                        pid,
                        code,
                        signal,
                        status: status.to_string(),
                        tail: crate::logs::tail(&log, EXIT_TAIL_LINES).0,
                    },
                )
            }
        };
        let name = self.name(comp).to_string();
        let rec = self.events.push(Some(&name), what);
        self.record_for_waiters(comp, &rec);
    }

    /// Follows a reconfiguration of the machine (`remap[old] = new`, `usize::MAX`: gone):
    /// slots, timers, waiters and marks move with their components; a gone component's
    /// probes end and its window closes.
    fn remap(&mut self, remap: &[usize]) {
        let n = self.sup.graph().len();
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::default()).collect();
        let mut marks = vec![String::new(); n];
        for (old, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            match remap.get(old).copied().filter(|&i| i != usize::MAX) {
                Some(new) => {
                    slots[new] = slot;
                    marks[new] = std::mem::take(&mut self.shown.0[old]);
                }
                None => {
                    for h in &slot.probes {
                        h.abort();
                    }
                    if let Some((_, tx)) = &slot.shim {
                        let _ = tx.send(ToShim::Quit); // it has stopped: its shim goes too
                    }
                    if let Some(p) = &slot.pane {
                        self.backend.close_window(p);
                    }
                }
            }
        }
        self.slots = slots;
        self.shown.0 = marks;
        let at = |c: usize| remap.get(c).copied().filter(|&i| i != usize::MAX);
        self.timers = std::mem::take(&mut self.timers)
            .into_iter()
            .filter_map(|(t, key)| {
                let key = match key {
                    TimerKey::Core { comp, token } => TimerKey::Core {
                        comp: at(comp)?,
                        token,
                    },
                    TimerKey::ShimDeadline { comp, run } => TimerKey::ShimDeadline {
                        comp: at(comp)?,
                        run,
                    },
                    k => k,
                };
                Some((t, key))
            })
            .collect();
        for w in self.waiters.values_mut() {
            w.wait.remap(remap);
        }
    }

    /// Tells systemd: `READY=1` once (when the socket listens, or when the graph has settled),
    /// and `STATUS=` whenever the summary changes.
    fn notify_state(&mut self) {
        if !self.notify.active() || self.stopping {
            return;
        }
        let status = self.summary_now();
        let status = status.trim_start_matches("dmuc ").to_string();
        let ready_now = !self.notified.0
            && (self.cfg.daemon.notify_ready == dmuc_config::NotifyReady::Socket
                || self.sup.settled());
        if ready_now {
            self.notified.0 = true;
            // Whoever READY=1 wakes finds the same state in status.json.
            self.write_status_file();
            self.adopt_file.flush();
            self.state_files.flush();
            self.notify.send(&format!("READY=1\nSTATUS={status}"));
            self.notified.1 = status;
        } else if status != self.notified.1 {
            self.notify.send(&format!("STATUS={status}"));
            self.notified.1 = status;
        }
    }

    /// Updates the tmux status line with what changed since it was last shown.
    fn show_states(&mut self) {
        let mut marks = Vec::new();
        for comp in 0..self.slots.len() {
            let Some(pane) = &self.slots[comp].pane else {
                continue;
            };
            let mark = mark_of(self.sup.unit(comp).state.kind());
            if self.shown.0[comp] != mark {
                marks.push((pane.window.clone(), mark.to_string()));
                self.shown.0[comp] = mark.to_string();
            }
        }
        let summary = self.summary_now();
        let summary = (summary != self.shown.1).then(|| {
            self.shown.1 = summary.clone();
            summary
        });
        self.backend.show(&marks, summary.as_deref());
    }

    /// The status-line summary, from the units' states.
    fn summary_now(&self) -> String {
        let states: Vec<Kind> = (0..self.slots.len())
            .map(|c| self.sup.unit(c).state.kind())
            .collect();
        summary_line(&states, |i| self.statuses(&[i]).pop())
    }

    fn write_status(&mut self) {
        self.dirty = false;
        let record = crate::adopt::Record {
            daemon_pid: std::process::id(),
            components: (0..self.slots.len())
                .map(|comp| {
                    let u = self.sup.unit(comp);
                    let c = &self.sup.graph().components()[comp];
                    crate::adopt::CompRecord {
                        name: c.name.clone(),
                        run: u.run,
                        pid: u.pid,
                        start: u.pid.and(self.slots[comp].start),
                        hash: if self.slots[comp].hash.is_empty() {
                            crate::adopt::definition_hash(c)
                        } else {
                            self.slots[comp].hash.clone()
                        },
                        restarts: u.restarts,
                        state: u.state.kind(),
                        last_exit: u.last_exit.as_ref().map(Into::into),
                    }
                })
                .collect(),
        };
        // The adoption record at once (a crash must not find it behind the PIDs); the status
        // file, for people and tools, at a bounded rate.
        self.adopt_file.submit(Box::new(move || {
            serde_json::to_vec(&record)
                .map(|b| vec![("adopt.json", b)])
                .unwrap_or_default()
        }));
        let now = Instant::now();
        match self.status_file {
            // Written recently: once more when the interval is over (one timer at a time).
            Some(last) if now < last + STATUS_INTERVAL => {
                if !self.timers.iter().any(|(_, k)| *k == TimerKey::StatusFile) {
                    self.timers
                        .insert((last + STATUS_INTERVAL, TimerKey::StatusFile));
                }
            }
            _ => self.paced_outputs(),
        }
    }

    /// What people look at, at most every STATUS_INTERVAL: status.json and the tmux status
    /// line (a component going pending → starting → running within it costs one mark).
    fn paced_outputs(&mut self) {
        self.show_states();
        let comps = self.statuses(&[]);
        self.draw_overview(&comps);
        self.write_status_file_of(comps);
        if std::mem::take(&mut self.trim_due) {
            trim_heap();
        }
    }

    /// Redraws the overview window's table if it changed. Start times instead of uptimes,
    /// so a frame never goes stale and nothing needs redrawing while nothing happens.
    fn draw_overview(&mut self, comps: &[dmuc_proto::ComponentStatus]) {
        use dmuc_proto::render::{Style, Times, clock, status_table_with};
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let info = self.daemon_info();
        let up = comps.iter().filter(|c| c.state.is_up()).count();
        let since = clock(now_us.saturating_sub(info.uptime_ms * 1000));
        let text = format!(
            "dmuc: {up}/{} up · dmucd pid {} · since {} UTC{}\n\n{}\n\
             C-b w: windows · C-b n/p: next/previous · dmucctl logs -f NAME · dmucctl events -f\n",
            comps.len(),
            info.pid,
            &since[..8],
            if info.stopping {
                " · shutting down"
            } else {
                ""
            },
            status_table_with(comps, Style { color: true }, Times::StartedAt { now_us }),
        );
        if text != self.overview {
            self.backend.draw_overview(&text);
            self.overview = text;
        }
    }

    /// Hands status.json's content to its writer now.
    fn write_status_file(&mut self) {
        let comps = self.statuses(&[]);
        self.write_status_file_of(comps);
    }

    fn write_status_file_of(&mut self, comps: Vec<dmuc_proto::ComponentStatus>) {
        self.status_file = Some(Instant::now());
        self.state_files.submit(Box::new(move || {
            let doc = serde_json::json!({"pid": std::process::id(), "components": comps});
            vec![("status.json", doc.to_string().into_bytes())]
        }));
    }
}

/// A state's mark on the tmux status line, with its colour.
fn mark_of(state: Kind) -> &'static str {
    match state {
        Kind::Ready | Kind::Completed => "#[fg=green]✓#[default]",
        Kind::Running => "#[fg=green]●#[default]",
        Kind::Starting => "#[fg=yellow]…#[default]",
        Kind::Pending => "#[fg=yellow]·#[default]",
        Kind::Backoff => "#[fg=yellow]↻#[default]",
        Kind::Stopping => "#[fg=yellow]■#[default]",
        Kind::Failed => "#[fg=red,bold]✗#[default]",
        Kind::Stopped | Kind::Exited | Kind::Unknown => "#[dim]○#[default]",
    }
}

/// "dmuc 6/7 up · kubelet: waiting for containerd": how many components are up, and the
/// most pressing one that is not (failed first, then waiting or starting).
#[cfg(test)]
fn summary_of(comps: &[dmuc_proto::ComponentStatus]) -> String {
    let states: Vec<Kind> = comps.iter().map(|c| c.state).collect();
    summary_line(&states, |i| comps.get(i).cloned())
}

/// The summary from each component's state, asking `status_of` only for the one it names
/// (building every status per state change was O(N) per turn: O(N²) per start-up).
fn summary_line(
    states: &[Kind],
    status_of: impl FnOnce(usize) -> Option<dmuc_proto::ComponentStatus>,
) -> String {
    let n_up = states.iter().filter(|s| s.is_up()).count();
    let mut s = format!("dmuc {n_up}/{} up", states.len());
    let worst = states.iter().position(|s| *s == Kind::Failed).or_else(|| {
        states
            .iter()
            .position(|s| !s.is_up() && !s.is_settled_down())
    });
    if let Some(c) = worst.and_then(status_of) {
        let why = c.reason.as_deref().unwrap_or(c.state.name());
        // The value is drawn as a format: `#` must not start a style or a format.
        let why: String = why.replace('#', "##").chars().take(80).collect();
        s.push_str(&format!(" · {}: {why}", c.name));
    }
    s
}

/// Returns the heap's free pages to the system. Starting a graph allocates and frees a lot
/// (launch specs, tmux replies, snapshots) and glibc keeps what was freed below the top of the
/// heap: once the graph has settled, the daemon idles for hours, so give it back
/// (~270 KB of 100 components' start-up; docs/performance.md).
fn trim_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks the allocator's own free lists, under its lock.
    unsafe {
        nix::libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(name: &str, state: Kind, reason: Option<&str>) -> dmuc_proto::ComponentStatus {
        dmuc_proto::ComponentStatus {
            name: name.into(),
            kind: "service".into(),
            state,
            pid: None,
            run: 0,
            restarts: 0,
            uptime_ms: None,
            since_ms: None,
            ready: None,
            last_exit: None,
            reason: reason.map(str::to_string),
            window: None,
            log_error: None,
        }
    }

    #[test]
    fn up_is_decided_by_the_protocol_for_every_state_the_machine_has() {
        use std::time::Instant;
        let states = [
            (State::Pending { reason: "x".into() }, false),
            (State::Starting, false),
            (State::Running, true),
            (State::Ready, true),
            (State::Stopping, false),
            (State::Stopped, false),
            (State::Exited, false),
            (
                State::Backoff {
                    until: Instant::now(),
                },
                false,
            ),
            (State::Failed { reason: "x".into() }, false),
            (State::Completed, true),
        ];
        for (s, up) in &states {
            assert_eq!(s.kind().is_up(), *up, "{}", s.name());
        }
        // Every state the machine has is one the protocol names, and the other way round.
        let kinds: Vec<Kind> = states.iter().map(|(s, _)| s.kind()).collect();
        assert_eq!(kinds, Kind::ALL);
    }

    #[test]
    fn summary_names_the_most_pressing_component() {
        let comps = [
            c("etcd", Kind::Ready, None),
            c(
                "kubelet",
                Kind::Pending,
                Some("waiting for containerd to be ready"),
            ),
            c("proxy", Kind::Failed, Some("start limit hit #[x]")),
        ];
        assert_eq!(
            summary_of(&comps),
            "dmuc 1/3 up · proxy: start limit hit ##[x]"
        );
        assert_eq!(
            summary_of(&comps[..2]),
            "dmuc 1/2 up · kubelet: waiting for containerd to be ready"
        );
        assert_eq!(summary_of(&comps[..1]), "dmuc 1/1 up");
        assert_ne!(mark_of(Kind::Ready), mark_of(Kind::Failed));
    }
}
