//! Taking over the components of a previous dmucd (crash, kill -9, upgrade, `systemctl
//! restart`): their shims reconnect to our shim socket and say where each run stands; what
//! the previous daemon recorded confirms it is the same process; then the machine adopts the
//! run instead of launching it.

use std::collections::{BTreeSet, HashMap};

use dmuc_core::Adopted;

use super::*;

#[derive(Default)]
struct Report {
    run: u64,
    link: Option<(u64, mpsc::UnboundedSender<String>)>,
    pid: Option<u32>,
    exit: Option<ExitStatus>,
}

impl Runtime {
    /// Gathers the reconnecting shims (until all expected have reported, or
    /// `ADOPT_DEADLINE`), adopts what is ours, boots the rest. Returns the messages that
    /// arrived meanwhile and are not about adoption.
    pub(super) async fn adopt_phase(&mut self, a: Adoption) -> Vec<Msg> {
        let expect: BTreeSet<String> = a
            .panes
            .iter()
            .filter(|p| !p.dead)
            .map(|p| p.component.clone())
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
                    Some(Msg::ShimLink { name, run, link, tx }) => {
                        let r = reports.entry(name).or_default();
                        r.run = run;
                        r.link = Some((link, tx));
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
                            ShimWhat::LogError(_) | ShimWhat::LogOk => {}
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
        for p in &a.panes {
            let Some(comp) = self.comp_of(&p.component) else {
                // No longer in the config: stop it and close its window.
                if let Some(pid) = reports.get(&p.component).and_then(|r| r.pid) {
                    let _ = kill(Pid::from_raw(-(pid as i32)), Signal::SIGTERM);
                }
                self.tmux.close_window(&p.pane);
                self.events.push(
                    None,
                    EventWhat::Daemon {
                        message: format!(
                            "closed the window of {}, which the config no longer has",
                            p.component
                        ),
                    },
                );
                continue;
            };
            self.slots[comp].pane = Some(p.pane.clone());
            let Some(r) = reports.remove(&p.component) else {
                continue; // no shim answered: it is launched anew, in this pane
            };
            let Some(link) = r.link else { continue };
            self.slots[comp].shim = Some(link);
            let rec = a.record.as_ref().and_then(|rec| rec.get(&p.component));
            let name = p.component.clone();
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
                (Some(_), Some(rec)) => rec.run == r.run && rec.state == "starting",
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
                self.sup.restore(comp, known, rec.state == "completed", now);
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
        self.feed(Input::Boot);
        for (comp, run, status) in ended {
            self.feed(Input::Exited { comp, run, status });
        }
        if !restart.is_empty() {
            self.feed(Input::Request(Request::Restart(restart)));
        }
        backlog
    }
}
