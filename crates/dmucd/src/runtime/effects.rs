//! The machine's effects carried out: launches (the spec, the shim deadline, restart in
//! place or a new shim), signals, timers, probes, and events for the log and waiters.

use super::*;
use crate::events::storm::Limits;

/// The longest `say` text sent to a shim, in bytes (its link buffer is 512).
const SAY_MAX: usize = 240;

impl<B: Backend> Runtime<B> {
    pub(super) fn apply(&mut self, e: Effect) {
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

    pub(super) fn launch(&mut self, comp: usize, run: u64) {
        // Armed first: a shim that never reports cannot leave the component starting forever
        // (a stop would wait for a PID that never comes).
        let deadline = Instant::now() + SHIM_DEADLINE;
        self.slots[comp].deadline = deadline;
        self.timers
            .insert((deadline, TimerKey::ShimDeadline { comp, run }));
        let c = &self.sup.graph().components()[comp];
        let mut env = self.base_env.clone();
        for (k, v) in &c.env {
            env.retain(|(ek, _)| ek != k);
            env.push((k.clone(), v.clone()));
        }
        // Read at each start, as systemd's EnvironmentFile=: another component may have
        // written them just before (config/ha.toml's pki writes etcd's environment,
        // node-config the kubelet's flags for the Kubernetes release it finds).
        let read = || -> Result<_, String> {
            let vars = match (start_file("env-file", c.env_file.as_ref())?, &c.env_file) {
                (Some(text), Some(f)) => dmuc_config::parse_env_file(&text)
                    .map_err(|e| format!("env-file {}: {e}", f.path.display()))?,
                _ => Vec::new(),
            };
            let args = start_file("args-file", c.args_file.as_ref())?
                .map_or_else(Vec::new, |text| dmuc_config::parse_args_file(&text));
            Ok((vars, args))
        };
        let mut argv = c.command.clone();
        match read() {
            Ok((vars, args)) => {
                for (k, v) in vars {
                    env.retain(|(ek, _)| *ek != k);
                    env.push((k, v));
                }
                argv.extend(args);
            }
            Err(e) => {
                let name = c.name.clone();
                self.launch_failed(name, run, e);
                return;
            }
        }
        env.push(("DMUC_COMPONENT".into(), c.name.clone()));
        env.push(("DMUC_RUN".into(), run.to_string()));
        let log = self.log_path(comp);
        let socket = self.paths.runtime_dir.join("shim.sock");
        let spec = crate::spec::encode(&crate::spec::Launch {
            name: &c.name,
            argv: &argv,
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
        let name = c.name.clone();
        let path = self
            .paths
            .runtime_dir
            .join("spec")
            .join(format!("{}.spec", c.name));
        if let Err(e) = std::fs::write(&path, spec) {
            self.launch_failed(
                name,
                run,
                format!("cannot write launch spec {}: {e}", path.display()),
            );
            return;
        }
        // Restart in place: the shim is alive and waiting, so one line is enough (no fork of
        // a new shim, and its window stays).
        let slot = &mut self.slots[comp];
        if slot.shim_idle
            && let Some((_, tx)) = &slot.shim
            && tx.send(ToShim::Run(run)).is_ok()
        {
            tracing::debug!(comp, run, "restart in place through the idle shim");
            slot.shim_idle = false;
            self.told_shims = true;
            return;
        }
        // A new shim, started here rather than in a new tmux window: tmux creates windows one
        // at a time, forking its ever larger server for each, which made a start of hundreds
        // of components wait on tmux (docs/performance.md). The window follows: the shim says
        // it has none and `open_view` gives it one, while the program already runs.
        match self.backend.launch(&path, run) {
            Ok(()) => {
                tracing::debug!(comp, run, "shim started");
                self.slots[comp].fresh = true;
            }
            Err(e) => self.launch_failed(name, run, format!("cannot start its shim: {e}")),
        }
    }

    /// Delivered as a message, so the state machine is not re-entered from inside apply().
    fn launch_failed(&self, comp: String, run: u64, error: String) {
        let _ = self.tx.send(Msg::LaunchFailed { comp, run, error });
    }

    /// Waits for a backend's answer off the actor (many are in flight at once) and sends it
    /// back as the message `wrap` makes of it.
    pub(super) fn when_answered<T: Send + 'static>(
        &self,
        answer: crate::backend::Reply<T>,
        wrap: impl FnOnce(Result<T, String>) -> Msg + Send + 'static,
    ) {
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(wrap(answer.await));
        });
    }

    pub(super) fn event(&mut self, ev: Event) {
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
                // Its window says so too, where the operator is looking (the shim holds the
                // window with the last run's output): a crash loop given up on, a start that
                // could not be made.
                if to == dmuc_proto::State::Failed
                    && let Some((_, tx)) = &self.slots[comp].shim
                {
                    let why = reason.as_deref().unwrap_or("no reason given");
                    let mut text = format!("{name} failed: {why}");
                    // The shim reads its link into 512 bytes: a line of ours stays well under.
                    crate::logs::cut_at(&mut text, SAY_MAX, "...");
                    let _ = tx.send(ToShim::Say(text));
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
                let (offset, ino) = self.slots[comp].log_from;
                (
                    comp,
                    EventWhat::Exit {
                        pid,
                        code,
                        signal,
                        status: status.to_string(),
                        tail: crate::logs::tail_since(&log, EXIT_TAIL_LINES, offset, ino),
                    },
                )
            }
        };
        self.log_event(comp, what, true);
    }

    /// Logs a component's event, unless a crash loop coalesces it (events::storm); with
    /// `waiters`, what is logged goes to the requests waiting on that component too.
    pub(super) fn log_event(&mut self, comp: usize, what: EventWhat, waiters: bool) {
        let name = self.name(comp).to_string();
        let now = self.storm_clock();
        let lim = self.storm_limits();
        for what in self.storms.admit(&name, what, now, lim) {
            let rec = self.events.push(Some(&name), what);
            if waiters {
                self.record_for_waiters(comp, &rec);
            }
        }
        self.arm_storm_timer();
    }

    /// Logs the records of crash loops whose span or loop ended (the `Storm` timer).
    pub(super) fn storms_due(&mut self) {
        self.storm_at = None;
        let (now, lim) = (self.storm_clock(), self.storm_limits());
        for (name, records) in self.storms.expire(now, lim) {
            let comp = self.sup.graph().index_of(&name);
            for what in records {
                let rec = self.events.push(Some(&name), what);
                if let Some(comp) = comp {
                    self.record_for_waiters(comp, &rec);
                }
            }
        }
        self.arm_storm_timer();
    }

    fn storm_clock(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn storm_limits(&self) -> Limits {
        Limits {
            exits: self.cfg.daemon.crash_loop_exits,
            window_ms: u64::try_from(self.cfg.daemon.crash_loop_window.as_millis())
                .unwrap_or(u64::MAX),
        }
    }

    /// One `Storm` timer, at the earliest loop's due time.
    fn arm_storm_timer(&mut self) {
        let at = self
            .storms
            .deadline(self.storm_limits())
            .map(|ms| self.started + Duration::from_millis(ms));
        if at != self.storm_at {
            if let Some(old) = self.storm_at.take() {
                self.timers.remove(&(old, TimerKey::Storm));
            }
            if let Some(at) = at {
                self.timers.insert((at, TimerKey::Storm));
            }
            self.storm_at = at;
        }
    }
}

/// The text of a component's `env-file` or `args-file` (`key`), read at its start: `None`
/// without one, or when an optional one (`-PATH`) is missing; an error that names the file.
fn start_file(key: &str, f: Option<&dmuc_config::EnvFile>) -> Result<Option<String>, String> {
    let Some(f) = f else { return Ok(None) };
    match std::fs::read_to_string(&f.path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if f.optional && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => {
            let hint = if f.optional {
                String::new()
            } else {
                format!(" (a leading '-' in {key} makes a missing file no error)")
            };
            Err(format!("{key} {}: {e}{hint}", f.path.display()))
        }
    }
}
