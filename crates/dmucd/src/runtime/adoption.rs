//! Taking over the components of a previous dmucd (crash, kill -9, upgrade, `systemctl
//! restart`): their shims reconnect to our shim socket and say where each run stands; what
//! the previous daemon recorded confirms it is the same process; then the machine adopts the
//! run instead of launching it.

use std::collections::{BTreeSet, HashMap};

use dmuc_core::Adopted;
use dmuc_proto::State as Kind;

use super::*;

#[derive(Default)]
struct Report {
    run: u64,
    link: Option<(u64, ShimTx)>,
    shim: Option<u32>,
    pid: Option<u32>,
    exit: Option<ExitStatus>,
}

impl<B: Backend> Runtime<B> {
    /// Gathers the reconnecting shims (until all expected have reported, or
    /// `ADOPT_DEADLINE`), adopts what is ours, boots the rest. Returns the messages that
    /// arrived meanwhile and are not about adoption.
    pub(super) async fn adopt_phase(&mut self, a: Adoption) -> Vec<Msg> {
        // Every live pane's shim, and every shim whose program the record says runs: a shim
        // outlives its window and its tmux server, and reconnects without either.
        let expect: BTreeSet<String> = a
            .panes
            .iter()
            .filter(|p| !p.dead)
            .map(|p| p.component.clone())
            .chain(a.record.iter().flat_map(|r| {
                r.components
                    .iter()
                    .filter(|c| c.still_running())
                    .map(|c| c.name.clone())
            }))
            .collect();
        let mut reports: HashMap<String, Report> = HashMap::new();
        let mut backlog = Vec::new();
        let deadline = Instant::now() + ADOPT_DEADLINE;
        loop {
            let complete = expect.iter().all(|n| {
                reports
                    .get(n)
                    .is_some_and(|r| r.pid.is_some() || r.exit.is_some())
            });
            if complete {
                break;
            }
            tokio::select! {
                m = self.rx.recv() => match m {
                    None => break,
                    Some(Msg::ShimLink { name, run, link, pid, tx }) => {
                        let r = reports.entry(name).or_default();
                        r.run = run;
                        r.link = Some((link, tx));
                        r.shim = pid;
                    }
                    Some(Msg::Shim { name, run, what: what @ (ShimWhat::ViewLost | ShimWhat::ViewOk) }) => {
                        // After adoption: it decides whether a window is opened for it.
                        backlog.push(Msg::Shim { name, run, what });
                    }
                    Some(Msg::Shim { name, run, what }) => {
                        let r = reports.entry(name).or_default();
                        r.run = run;
                        match what {
                            ShimWhat::Start(pid) => r.pid = Some(pid),
                            ShimWhat::Exit(st) => r.exit = Some(st),
                            ShimWhat::SpawnFailed(m) => r.exit = Some(ExitStatus::Lost(m)),
                            ShimWhat::Gone => {
                                r.exit = Some(ExitStatus::Lost("the shim died".into()))
                            }
                            ShimWhat::LogError(_)
                            | ShimWhat::LogOk
                            | ShimWhat::ViewLost
                            | ShimWhat::ViewOk => {}
                        }
                    }
                    Some(Msg::ShimClosed { .. }) => {}
                    Some(other) => backlog.push(other),
                },
                _ = tokio::time::sleep_until(deadline) => {
                    let missing: Vec<&String> = expect.iter().filter(|n| !reports.contains_key(*n)).collect();
                    tracing::warn!(?missing, "not every shim reconnected in {ADOPT_DEADLINE:?}: those components start anew");
                    break;
                }
            }
        }

        let now = Instant::now().into_std();
        let mut adopted = Vec::new();
        let mut ended = Vec::new();
        let mut restart = Vec::new();
        // Each component found: in a pane, or only by its shim (its window went away).
        let mut found: Vec<(String, Option<Pane>)> = a
            .panes
            .iter()
            .map(|p| (p.component.clone(), Some(p.pane.clone())))
            .collect();
        let mut windowless: Vec<&String> = reports
            .keys()
            .filter(|n| !a.panes.iter().any(|p| p.component == **n))
            .collect();
        windowless.sort();
        found.extend(windowless.into_iter().map(|n| (n.clone(), None)));
        let mut views = Vec::new();
        // Whose shim answered: the others' run, restarts and last exit come from the record.
        let seen: BTreeSet<String> = reports.keys().cloned().collect();
        for (component, pane) in found {
            let Some(comp) = self.comp_of(&component) else {
                // No longer in the config: stop it and close its window.
                if let Some(r) = reports.get(&component) {
                    if let Some(pid) = r.pid.filter(|_| r.exit.is_none()) {
                        let _ = self.backend.signal(-(pid as i32), Signal::SIGTERM);
                    }
                    if let Some((_, tx)) = &r.link {
                        let _ = tx.send(ToShim::Quit);
                    }
                }
                if let Some(p) = &pane {
                    self.backend.close_window(p);
                }
                self.events.push(
                    None,
                    EventWhat::Daemon {
                        message: format!(
                            "stopped {component}, which the config no longer has, and closed its window"
                        ),
                    },
                );
                continue;
            };
            if pane.is_none() {
                views.push(comp);
            }
            self.slots[comp].pane = pane;
            let Some(r) = reports.remove(&component) else {
                continue; // no shim answered: launched anew in this pane (history: below)
            };
            let Some(link) = r.link else { continue };
            self.slots[comp].shim = Some(link);
            self.slots[comp].shim_pid = r.shim;
            let rec = a.record.as_ref().and_then(|rec| rec.get(&component));
            let name = component.clone();
            // Same process: the PID the shim (its parent) reports, recorded by the previous
            // daemon with the same kernel start time, for the same run.
            let start = r.pid.and_then(crate::adopt::start_ticks);
            let same = match (r.pid, rec) {
                (Some(pid), Some(rec)) if rec.pid.is_some() => {
                    rec.pid == Some(pid)
                        && rec.start.is_some()
                        && rec.start == start
                        && rec.run == r.run
                }
                // Launched, PID not recorded yet (the daemon died in between): the run is the
                // one it launched, and the shim, its parent, vouches for the PID.
                (Some(_), Some(rec)) => rec.run == r.run && rec.state == Kind::Starting,
                (None, Some(rec)) => rec.run == r.run,
                (_, None) => false,
            };
            let known = Adopted {
                run: r.run,
                pid: if r.exit.is_some() { None } else { r.pid },
                restarts: rec.map_or(0, |rec| rec.restarts),
                // Uptime and STARTED from the kernel's start time, not from this adoption.
                launched_at: start
                    .and_then(|t| crate::adopt::launched_at(t, now))
                    .unwrap_or(now),
                last_exit: rec.and_then(|rec| rec.last_exit.clone()).map(Into::into),
            };
            // Its run had ended and the previous daemon knew it: carry it over, no new event.
            if r.exit.is_some()
                && let Some(rec) = rec.filter(|rec| rec.run == r.run && rec.pid.is_none())
            {
                self.slots[comp].shim_idle = true;
                self.sup
                    .restore(comp, known, rec.state == Kind::Completed, now);
                adopted.push(name);
                continue;
            }
            let fx = self.sup.adopt(comp, known, now);
            for e in fx {
                self.apply(e);
            }
            self.slots[comp].start = start;
            adopted.push(name.clone());
            let def = &self.sup.graph().components()[comp];
            // What it was launched with, as far as we know (a mismatch restarts it below).
            self.slots[comp].hash = rec.map_or_else(
                || crate::adopt::definition_hash(def),
                |rec| rec.hash.clone(),
            );
            match r.exit {
                Some(st) => {
                    self.slots[comp].shim_idle = true;
                    ended.push((comp, r.run, st));
                }
                None if !same => {
                    tracing::warn!(component = %name, "not the process the previous dmucd recorded: restarting it");
                    restart.push(comp);
                }
                None if rec.is_none_or(|rec| rec.hash != crate::adopt::definition_hash(def)) => {
                    tracing::info!(component = %name, "its definition changed while no dmucd ran: restarting it");
                    restart.push(comp);
                }
                None => {}
            }
        }
        // Components whose shim did not answer (no pane and no shim: a shim between runs with
        // neither a window nor a daemon exits; or a pane whose shim is gone): their run number,
        // restarts and last exit carry over from the record, and a oneshot that completed with
        // the same definition is not run again.
        for rec in a.record.iter().flat_map(|r| &r.components) {
            if seen.contains(&rec.name) {
                continue;
            }
            let Some(comp) = self.comp_of(&rec.name) else {
                continue;
            };
            let def = &self.sup.graph().components()[comp];
            let completed =
                rec.state == Kind::Completed && rec.hash == crate::adopt::definition_hash(def);
            let known = Adopted {
                run: rec.run,
                pid: None,
                restarts: rec.restarts,
                launched_at: now,
                last_exit: rec.last_exit.clone().map(Into::into),
            };
            self.sup.restore(comp, known, completed, now);
            if completed {
                adopted.push(rec.name.clone());
            }
        }
        let message = format!(
            "adopted {} components from the previous dmucd{}: {}",
            adopted.len(),
            a.record
                .as_ref()
                .map_or(String::new(), |r| format!(" (pid {})", r.daemon_pid)),
            adopted.join(", ")
        );
        tracing::info!("{message}");
        self.events.push(None, EventWhat::Daemon { message });
        if adopted.is_empty() {
            self.mark_boot(); // nothing carried over: the graph starts anew
        }
        self.feed(Input::Boot);
        // Shims that reconnected without a window get one (and keep their programs).
        for comp in views {
            if self.slots[comp].shim.is_some() {
                self.open_view(comp);
            }
        }
        for (comp, run, status) in ended {
            self.feed(Input::Exited { comp, run, status });
        }
        if !restart.is_empty() {
            self.feed(Input::Request(Request::Restart(restart)));
        }
        backlog
    }
}
