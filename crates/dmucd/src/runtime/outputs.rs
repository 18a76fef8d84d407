//! What people and systemd see: the adoption record, status.json, the tmux marks and
//! summary, the overview table, sd_notify; paced so that a start-up's hundreds of changes
//! cost a few writes.

use super::*;

impl<B: Backend> Runtime<B> {
    /// Tells systemd: `READY=1` once (when the socket listens, or when the graph has settled
    /// or `notify-ready-timeout` passed), and `STATUS=` whenever the summary changes.
    pub(super) fn notify_state(&mut self) {
        if !self.notify.active() || self.stopping {
            return;
        }
        let status = self.summary_now();
        let status = status.trim_start_matches("dmuc ").to_string();
        let settled = self.sup.settled();
        let ready_now = !self.notified.0
            && (self.cfg.daemon.notify_ready == dmuc_config::NotifyReady::Socket
                || settled
                || self.ready_overdue);
        if ready_now {
            if !settled && self.cfg.daemon.notify_ready == dmuc_config::NotifyReady::Settled {
                // The node may well be usable without it (kube-proxy 1.20 is never "ready"):
                // the unit goes active, and says what is not up.
                let message = format!(
                    "told systemd READY=1 after notify-ready-timeout ({:?}) with the graph not settled: {status}",
                    self.cfg.daemon.notify_ready_timeout
                );
                tracing::warn!("{message}");
                self.events.push(None, EventWhat::Daemon { message });
            }
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
    pub(super) fn show_states(&mut self) {
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
    pub(super) fn summary_now(&self) -> String {
        let states: Vec<Kind> = (0..self.slots.len())
            .map(|c| self.sup.unit(c).state.kind())
            .collect();
        summary_line(&states, |i| self.statuses(&[i]).pop())
    }

    pub(super) fn write_status(&mut self) {
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
    pub(super) fn paced_outputs(&mut self) {
        self.show_states();
        let comps = self.statuses(&[]);
        self.draw_overview(&comps);
        self.write_status_file_of(comps);
        if std::mem::take(&mut self.trim_due) {
            trim_heap();
        }
    }

    /// A client started or stopped showing the Overview: its resource columns are read from
    /// /proc every USAGE_EVERY while one does, and never otherwise (no wakeups when nobody
    /// looks).
    pub(super) fn overview_watched(&mut self, watched: bool) {
        tracing::debug!(watched, "overview watchers changed");
        self.usage.watched = watched;
        if watched {
            self.sample_usage();
        } else {
            self.timers.retain(|(_, k)| *k != TimerKey::Usage);
            self.usage.last = None;
            self.usage.shown.clear();
            let comps = self.statuses(&[]);
            self.draw_overview(&comps);
        }
    }

    /// Reads /proc on a blocking thread (a few ms for a thousand processes), if watched.
    pub(super) fn sample_usage(&mut self) {
        if !self.usage.watched || self.usage.sampling {
            return;
        }
        self.usage.sampling = true;
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let _ = tx.send(Msg::Usage(dmuc_procfs::snapshot()));
        });
    }

    /// A sample arrived: each component's group, CPU % since the previous sample (over its
    /// life for the first), the Overview redrawn, the next sample scheduled.
    pub(super) fn usage_sampled(&mut self, snap: &dmuc_procfs::Snapshot) {
        self.usage.sampling = false;
        if !self.usage.watched {
            return;
        }
        let mut groups = HashMap::new();
        let mut shown = HashMap::new();
        for comp in 0..self.slots.len() {
            let Some(pid) = self.sup.unit(comp).pid else {
                continue;
            };
            let Some(u) = snap.group(pid) else {
                continue;
            };
            let before = self
                .usage
                .last
                .as_ref()
                .and_then(|(at, g)| Some((*at, g.get(&pid)?)));
            let cpu = match before {
                Some((at, b)) => dmuc_procfs::interval_cpu(b, &u, snap.hz, snap.uptime - at),
                None => snap.lifetime_cpu(&u),
            };
            groups.insert(pid, u);
            shown.insert(pid, (cpu, u.rss));
        }
        self.usage.last = Some((snap.uptime, groups));
        self.usage.shown = shown;
        let comps = self.statuses(&[]);
        self.draw_overview(&comps);
        self.timers
            .insert((Instant::now() + USAGE_EVERY, TimerKey::Usage));
    }

    /// Redraws the overview window's table if it changed. Start times instead of uptimes,
    /// so a frame never goes stale and nothing needs redrawing while nothing happens.
    pub(super) fn draw_overview(&mut self, comps: &[dmuc_proto::ComponentStatus]) {
        use dmuc_proto::render::{Style, Times, clock, status_table_using, status_table_with};
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
            if self.usage.watched {
                let usage: Vec<_> = comps
                    .iter()
                    .map(|c| c.pid.and_then(|p| self.usage.shown.get(&p).copied()))
                    .collect();
                status_table_using(
                    comps,
                    Style { color: true },
                    Times::StartedAt { now_us },
                    &usage,
                )
            } else {
                status_table_with(comps, Style { color: true }, Times::StartedAt { now_us })
            },
        );
        if text != self.overview {
            self.backend.draw_overview(&text);
            self.overview = text;
        }
    }

    /// Hands status.json's content to its writer now.
    pub(super) fn write_status_file(&mut self) {
        let comps = self.statuses(&[]);
        self.write_status_file_of(comps);
    }

    pub(super) fn write_status_file_of(&mut self, comps: Vec<dmuc_proto::ComponentStatus>) {
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
