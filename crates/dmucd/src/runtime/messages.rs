//! Messages from the edges and due timers, turned into the machine's inputs (and the
//! bookkeeping of slots: links, launches answered, views).

use super::*;

impl<B: Backend> Runtime<B> {
    pub(super) fn on_msg(&mut self, msg: Msg) {
        // Status shows more than the machine's state (window, probe notes): refresh after any
        // fact. Control requests refresh only through what they feed to the machine, so
        // a `status` costs no status-file write.
        if !matches!(
            msg,
            Msg::Control { .. } | Msg::ConnClosed { .. } | Msg::Reload | Msg::Usage(_)
        ) {
            self.dirty = true;
        }
        match msg {
            Msg::ShimLink {
                name,
                link,
                tx,
                pid,
                ..
            } => match self.comp_of(&name) {
                Some(comp) => {
                    let slot = &mut self.slots[comp];
                    if slot.shim.as_ref().is_none_or(|(l, _)| *l != link) && !slot.opening {
                        slot.view = View::Shown; // a new shim, with a terminal unless it says not
                    }
                    slot.shim = Some((link, tx));
                    slot.shim_pid = pid;
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
                        self.feed(Input::Started { comp, run, pid });
                        // With a ready probe no state says when it ran (it stays `starting`; a
                        // quick probe may even pass before the shim's report is read): this does.
                        let u = self.sup.unit(comp);
                        let probed = self.sup.graph().components()[comp].ready.is_some();
                        if probed && u.run == run && u.pid == Some(pid) {
                            self.log_event(comp, EventWhat::Spawned { pid }, false);
                        }
                        return;
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
                    self.log_event(
                        comp,
                        EventWhat::Probe {
                            role: role_name.into(),
                            ok,
                            detail: detail.clone(),
                        },
                        true,
                    );
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
            Msg::LaunchFailed { comp, run, error } => {
                let Some(comp) = self.comp_of(&comp) else {
                    return;
                };
                tracing::error!(component = %self.name(comp), "{error}");
                self.feed(Input::Exited {
                    comp,
                    run,
                    status: ExitStatus::Lost(error),
                });
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
            Msg::Usage(snap) => self.usage_sampled(&snap),
            Msg::Stop => {}
        }
    }

    pub(super) fn fire_timers(&mut self) {
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
                TimerKey::Usage => self.sample_usage(),
                TimerKey::Storm => self.storms_due(),
                TimerKey::ReadyOverdue => {
                    self.ready_overdue = true;
                    self.dirty = true;
                }
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
}
