//! The actor's side of the control protocol: answers requests from the state it owns, and
//! keeps `start`/`stop`/`restart` waiting until their [`Wait`] says done.

use std::time::Duration;

use dmuc_core::{Verdict, WaitKind};
use dmuc_proto::{
    Action, ActionResult, ComponentSpec, ComponentStatus, DaemonInfo, ErrorCode, ErrorReply,
    GraphEdge, GraphNode, GraphResult, ReloadResult, Reply, ShowResult, StatusResult, StreamItem,
    Verb,
};

use super::*;

/// Log lines sent by `logs` when the client names no count.
const DEFAULT_LOG_LINES: usize = 10;
/// Events sent by `events` without `since`.
const DEFAULT_EVENTS: usize = 100;

fn kind_name(k: dmuc_config::Kind) -> &'static str {
    match k {
        dmuc_config::Kind::Service => "service",
        dmuc_config::Kind::Oneshot => "oneshot",
    }
}

impl<B: Backend> Runtime<B> {
    /// Status of `comps` (all when empty), in config order.
    pub(super) fn statuses(&self, comps: &[usize]) -> Vec<ComponentStatus> {
        let now = Instant::now().into_std();
        let all: Vec<usize> = (0..self.slots.len()).collect();
        let comps = if comps.is_empty() { &all[..] } else { comps };
        comps
            .iter()
            .map(|&comp| {
                let u = self.sup.unit(comp);
                let c = &self.sup.graph().components()[comp];
                let reason = match &u.state {
                    State::Pending { reason } | State::Failed { reason } => Some(reason.clone()),
                    State::Starting | State::Backoff { .. } => self.slots[comp].note.clone(),
                    _ => None,
                };
                let ms =
                    |t: std::time::Instant| now.saturating_duration_since(t).as_millis() as u64;
                ComponentStatus {
                    name: c.name.clone(),
                    kind: kind_name(c.kind).into(),
                    state: u.state.kind(),
                    pid: u.pid,
                    run: u.run,
                    restarts: u.restarts,
                    uptime_ms: u.launched_at.filter(|_| u.state.is_active()).map(ms),
                    since_ms: u.since.map(ms),
                    ready: c.ready.as_ref().map(|_| u.state == State::Ready),
                    last_exit: u.last_exit.as_ref().map(|e| e.to_string()),
                    reason,
                    window: self.slots[comp].pane.as_ref().map(|p| p.window.clone()),
                    log_error: self.slots[comp].log_error.clone(),
                }
            })
            .collect()
    }

    fn comps_of(&self, names: &[String]) -> Result<Vec<usize>, ErrorReply> {
        let mut out = Vec::new();
        for n in names {
            match self.comp_of(n) {
                Some(c) => {
                    if !out.contains(&c) {
                        out.push(c);
                    }
                }
                None => {
                    let all: Vec<&str> = self
                        .sup
                        .graph()
                        .components()
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect();
                    let hint = match dmuc_config::diag::did_you_mean(n, &all) {
                        Some(m) => format!("did you mean `{m}`?"),
                        None => format!("components: {}", all.join(", ")),
                    };
                    return Err(ErrorReply::new(
                        ErrorCode::UnknownComponent,
                        format!("no component named `{n}`"),
                    )
                    .hint(hint));
                }
            }
        }
        Ok(out)
    }

    /// Answers one authorized request.
    pub(super) fn request(&mut self, conn: Conn, req: dmuc_proto::Request) {
        let id = req.id;
        if let Err(e) = self.answer(&conn, req) {
            conn.reply(&Reply::error(Some(id), e));
        }
    }

    fn answer(&mut self, conn: &Conn, req: dmuc_proto::Request) -> Result<(), ErrorReply> {
        let id = req.id;
        match req.verb {
            Verb::Hello { .. } => Ok(()), // answered by the connection
            Verb::Status { names, text } => {
                let comps = self.comps_of(&names)?;
                let result = StatusResult {
                    daemon: self.daemon_info(),
                    components: self.statuses(&comps),
                };
                match text {
                    None => conn.result(id, &result),
                    Some(o) => conn.result(
                        id,
                        &dmuc_proto::TextResult {
                            text: dmuc_proto::render::status_text(
                                &result,
                                dmuc_proto::render::Style { color: o.color },
                            ),
                        },
                    ),
                }
                Ok(())
            }
            Verb::Start(a) => self.action(conn, id, WaitKind::Start, a),
            Verb::Stop(a) => self.action(conn, id, WaitKind::Stop, a),
            Verb::Restart(a) => self.action(conn, id, WaitKind::Restart, a),
            Verb::Signal {
                name,
                signal,
                group,
            } => {
                let comp = self.comps_of(std::slice::from_ref(&name))?[0];
                let signo = dmuc_config::signal::parse_signal(&signal).map_err(|e| {
                    ErrorReply::new(ErrorCode::BadRequest, e)
                        .hint("a name like SIGHUP or HUP, or a number")
                })?;
                let Some(pid) = self.sup.unit(comp).pid else {
                    return Err(ErrorReply::new(
                        ErrorCode::NotRunning,
                        format!(
                            "{name} has no process to signal (it is {})",
                            self.sup.unit(comp).state.name()
                        ),
                    ));
                };
                let sig = Signal::try_from(signo)
                    .map_err(|e| ErrorReply::new(ErrorCode::BadRequest, e.to_string()))?;
                let target = if group { -(pid as i32) } else { pid as i32 };
                self.backend.signal(target, sig).map_err(|e| {
                    ErrorReply::new(ErrorCode::Failed, format!("kill {target} {sig}: {e}"))
                })?;
                tracing::info!(component = %name, pid, signal = %sig, group, uid = conn.peer.uid, "signal sent on request");
                conn.result(
                    id,
                    &serde_json::json!({"pid": pid, "signal": sig.as_str(), "group": group}),
                );
                Ok(())
            }
            Verb::Logs {
                name,
                lines,
                follow,
            } => {
                self.comps_of(std::slice::from_ref(&name))?;
                let path = self.paths.log_dir.join(format!("{name}.log"));
                let n = lines.unwrap_or(DEFAULT_LOG_LINES);
                let task = tokio::spawn(crate::logs::serve(conn.clone(), id, path, n, follow));
                if follow {
                    self.streams.insert((conn.id, id), task.abort_handle());
                }
                Ok(())
            }
            Verb::Events { since, follow } => {
                self.events_request(conn, id, since, follow);
                Ok(())
            }
            Verb::Graph {} => {
                let g = self.sup.graph();
                let nodes = (0..g.len())
                    .map(|i| GraphNode {
                        name: g.components()[i].name.clone(),
                        level: g.level(i),
                        state: self.sup.unit(i).state.kind(),
                    })
                    .collect();
                let edges = g
                    .components()
                    .iter()
                    .flat_map(|c| {
                        c.after.iter().map(|d| GraphEdge {
                            from: c.name.clone(),
                            to: d.component.clone(),
                            condition: d.condition.as_str().into(),
                        })
                    })
                    .collect();
                conn.result(id, &GraphResult { nodes, edges });
                Ok(())
            }
            Verb::Show { names } => {
                let comps = self.comps_of(&names)?;
                let all: Vec<usize> = (0..self.slots.len()).collect();
                let comps = if comps.is_empty() { all } else { comps };
                let here = std::env::current_dir().unwrap_or_else(|_| "/".into());
                let components = comps
                    .into_iter()
                    .map(|i| {
                        let c = &self.sup.graph().components()[i];
                        ComponentSpec {
                            name: c.name.clone(),
                            kind: kind_name(c.kind).into(),
                            command: c.command.clone(),
                            env: c.env.clone(),
                            env_file: c.env_file.as_ref().map(file_arg),
                            args_file: c.args_file.as_ref().map(file_arg),
                            cwd: c.cwd.as_ref().unwrap_or(&here).display().to_string(),
                            user: c.user.clone(),
                            group: c.group.clone(),
                            after: c
                                .after
                                .iter()
                                .map(|d| GraphEdge {
                                    from: c.name.clone(),
                                    to: d.component.clone(),
                                    condition: d.condition.as_str().into(),
                                })
                                .collect(),
                            wanted_by: c.wanted_by.clone(),
                            log: self
                                .paths
                                .log_dir
                                .join(format!("{}.log", c.name))
                                .display()
                                .to_string(),
                        }
                    })
                    .collect();
                conn.result(id, &ShowResult { components });
                Ok(())
            }
            Verb::Reload { dry_run } => self.reload(conn, id, dry_run),
            Verb::Shutdown {} => {
                tracing::info!(uid = conn.peer.uid, "shutdown requested");
                conn.result(id, &serde_json::json!({"stopping": true}));
                self.shutdown();
                Ok(())
            }
            Verb::Cancel { stream } => {
                let handle = self
                    .streams
                    .remove(&(conn.id, stream))
                    .filter(|h| !h.is_finished())
                    .ok_or_else(|| {
                        ErrorReply::new(
                            ErrorCode::UnknownStream,
                            format!("no stream with id {stream} on this connection"),
                        )
                    })?;
                handle.abort();
                conn.end_stream(&Reply::result(
                    stream,
                    serde_json::json!({"cancelled": true}),
                ));
                conn.result(id, &serde_json::json!({}));
                Ok(())
            }
        }
    }

    pub(super) fn daemon_info(&self) -> DaemonInfo {
        DaemonInfo {
            pid: std::process::id(),
            version: env!("CARGO_PKG_VERSION").into(),
            uptime_ms: self.started.elapsed().as_millis() as u64,
            config: self.config_path.display().to_string(),
            tmux_socket: self.paths.tmux_socket.display().to_string(),
            session: self.cfg.daemon.session.clone(),
            log_dir: self.paths.log_dir.display().to_string(),
            stopping: self.stopping,
            vars: self.overrides.vars.clone(),
        }
    }

    fn action(
        &mut self,
        conn: &Conn,
        id: u64,
        kind: WaitKind,
        a: Action,
    ) -> Result<(), ErrorReply> {
        if self.stopping {
            return Err(ErrorReply::new(
                ErrorCode::ShuttingDown,
                "dmucd is shutting down; it accepts no start, stop or restart",
            ));
        }
        if a.names.is_empty() {
            return Err(ErrorReply::new(ErrorCode::BadRequest, "no component named")
                .hint("name at least one component"));
        }
        let comps = self.comps_of(&a.names)?;
        let wait = Wait::new(kind, &comps, &self.sup);
        let wid = self.next_waiter;
        self.next_waiter += 1;
        let deadline = a
            .timeout_ms
            .map(|ms| Instant::now() + Duration::from_millis(ms));
        if a.wait {
            // Registered before feeding, so the changes the request causes are recorded.
            self.waiters.insert(
                wid,
                Waiter {
                    conn: conn.clone(),
                    req: id,
                    wait,
                    changes: Vec::new(),
                    deadline,
                },
            );
            if let Some(d) = deadline {
                self.timers.insert((d, TimerKey::Wait { id: wid }));
            }
        }
        tracing::info!(uid = conn.peer.uid, names = ?a.names, ?kind, "operator request");
        let request = match kind {
            WaitKind::Start => Request::Start(comps),
            WaitKind::Stop => Request::Stop(comps),
            WaitKind::Restart => Request::Restart(comps),
        };
        self.feed(Input::Request(request));
        if !a.wait {
            conn.result(
                id,
                &ActionResult {
                    done: false,
                    changes: Vec::new(),
                },
            );
        }
        Ok(())
    }

    /// Records an event for the waiters that watch `comp`.
    pub(super) fn record_for_waiters(&mut self, comp: usize, rec: &EventRecord) {
        for w in self.waiters.values_mut() {
            if w.wait.watches(comp) {
                w.changes.push(rec.clone());
            }
        }
    }

    /// Answers the waiters whose operation is over.
    pub(super) fn check_waiters(&mut self) {
        let over: Vec<(u64, Verdict)> = self
            .waiters
            .iter()
            .filter_map(|(&k, w)| match w.wait.verdict(&self.sup) {
                Verdict::Pending => None,
                v => Some((k, v)),
            })
            .collect();
        for (k, verdict) in over {
            let Some(w) = self.waiters.remove(&k) else {
                continue;
            };
            if let Some(d) = w.deadline {
                self.timers.remove(&(d, TimerKey::Wait { id: k }));
            }
            let reply = match verdict {
                Verdict::Failed(why) => Reply::error(
                    Some(w.req),
                    ErrorReply {
                        code: ErrorCode::Failed,
                        message: why,
                        hint: Some("see `dmucctl status` and `dmucctl logs NAME`".into()),
                        data: serde_json::to_value(&w.changes).ok(),
                    },
                ),
                _ => Reply::result(
                    w.req,
                    ActionResult {
                        done: true,
                        changes: w.changes,
                    },
                ),
            };
            w.conn.reply(&reply);
        }
    }

    pub(super) fn wait_timed_out(&mut self, id: u64) {
        if let Some(w) = self.waiters.remove(&id) {
            let pending: Vec<String> = self
                .statuses(&[])
                .into_iter()
                .enumerate()
                .filter(|(i, _)| w.wait.watches(*i))
                .map(|(_, s)| format!("{} is {}", s.name, s.state))
                .collect();
            w.conn.reply(&Reply::error(
                Some(w.req),
                ErrorReply {
                    code: ErrorCode::Timeout,
                    message: format!("not done in time: {}", pending.join(", ")),
                    hint: Some("the operation goes on; follow it with `dmucctl events -f`".into()),
                    data: serde_json::to_value(&w.changes).ok(),
                },
            ));
        }
    }

    pub(super) fn conn_closed(&mut self, conn: u64) {
        self.waiters.retain(|_, w| w.conn.id != conn);
        self.streams.retain(|(c, _), h| {
            if *c == conn {
                h.abort();
            }
            *c != conn
        });
    }

    fn events_request(&mut self, conn: &Conn, id: u64, since: Option<u64>, follow: bool) {
        let (backlog, older) = match since {
            Some(s) => {
                let (ring, need_file) = self.events.since(s);
                (ring, need_file.then_some(s))
            }
            None if follow => (Vec::new(), None),
            None => (self.events.last(DEFAULT_EVENTS), None),
        };
        let before = backlog.first().map_or(self.events.seq() + 1, |e| e.seq);
        let path = self.events.path().to_path_buf();
        let rx = follow.then(|| self.events.subscribe());
        let last = self.events.seq();
        let conn2 = conn.clone();
        let task = tokio::spawn(async move {
            let mut old = match older {
                Some(s) => {
                    tokio::task::spawn_blocking(move || crate::events::read_file(&path, s, before))
                        .await
                        .unwrap_or_default()
                }
                None => Vec::new(),
            };
            old.extend(backlog);
            let Some(mut rx) = rx else {
                conn2.result(id, &serde_json::json!({ "events": old }));
                return;
            };
            for e in old {
                if !conn2.stream(&Reply::stream(id, StreamItem::Event(e))).await {
                    return;
                }
            }
            let mut last = last;
            loop {
                use tokio::sync::broadcast::error::RecvError;
                let item = match rx.recv().await {
                    Ok(e) if e.seq <= last => continue,
                    Ok(e) => {
                        last = e.seq;
                        StreamItem::Event(e)
                    }
                    Err(RecvError::Lagged(n)) => StreamItem::Dropped(n),
                    Err(RecvError::Closed) => return,
                };
                if !conn2.stream(&Reply::stream(id, item)).await {
                    return;
                }
            }
        });
        if follow {
            self.streams.insert((conn.id, id), task.abort_handle());
        }
    }

    fn reload(&mut self, conn: &Conn, id: u64, dry_run: bool) -> Result<(), ErrorReply> {
        let result = self.reload_from_file(dry_run)?;
        conn.result(id, &result);
        Ok(())
    }

    /// Re-reads the config and applies the difference (or only computes it). Errors leave
    /// everything as it was.
    pub(super) fn reload_from_file(&mut self, dry_run: bool) -> Result<ReloadResult, ErrorReply> {
        let new = crate::load_config(&self.config_path, &self.overrides.vars).map_err(|e| {
            ErrorReply::new(ErrorCode::ConfigInvalid, e)
                .hint("fix the file and reload again; the running graph is unchanged")
        })?;
        if self.stopping {
            return Err(ErrorReply::new(
                ErrorCode::ShuttingDown,
                "dmucd is shutting down; nothing was reloaded",
            ));
        }
        if new.daemon != self.cfg.daemon {
            return Err(ErrorReply::new(
                ErrorCode::ReloadRejected,
                "[daemon] changed (sockets, directories, session...); it cannot change under a running daemon, so nothing changed",
            )
            .hint("restart dmucd to apply [daemon] changes (the components are adopted, not restarted)"));
        }
        if !self.sup.leaving().is_empty() {
            return Err(ErrorReply::new(
                ErrorCode::ReloadRejected,
                format!(
                    "the previous reload is still stopping {}; nothing changed",
                    self.sup.leaving().join(", ")
                ),
            )
            .hint("reload again once they have stopped (dmucctl status)"));
        }
        let plan = dmuc_core::reload::plan(self.sup.graph(), &new.graph);
        // Computed once, before the switch: what the reply says is what is done.
        let restarts = self.sup.reload_restarts(&plan, &new.graph);
        let result = ReloadResult {
            applied: !dry_run && !plan.is_empty(),
            add: plan.add.clone(),
            remove: plan.remove.clone(),
            change: plan.change.clone(),
            keep: plan.keep.clone(),
            restart: restarts.changed.clone(),
            follow: restarts.followers.clone(),
        };
        if dry_run || plan.is_empty() {
            self.cfg.vars = new.vars;
            return Ok(result);
        }
        self.apply_reload(new, &plan, &restarts);
        Ok(result)
    }

    fn apply_reload(
        &mut self,
        new: Config,
        plan: &dmuc_core::reload::Plan,
        restarts: &dmuc_core::reload::Restarts,
    ) {
        self.notify.send("RELOADING=1\nSTATUS=reloading the graph");
        let summary = format!(
            "reload: {} new, {} removed, {} changed, {} unchanged",
            plan.add.len(),
            plan.remove.len(),
            plan.change.len(),
            plan.keep.len()
        );
        tracing::info!(add = ?plan.add, remove = ?plan.remove, change = ?plan.change, "{summary}");
        self.events
            .push(None, EventWhat::Daemon { message: summary });
        let (fx, remap) = self.sup.reconfigure(&new.graph, Instant::now().into_std());
        self.remap(&remap);
        self.cfg = new;
        self.dirty = true;
        for e in fx {
            self.apply(e);
        }
        // A changed component runs its new definition from its next launch on: the running
        // ones and the completed oneshots now, with what reads the oneshots' work after them
        // (their dependency on `completed` holds them until the new run has completed).
        let comps: Vec<usize> = restarts.all().filter_map(|n| self.comp_of(n)).collect();
        if !comps.is_empty() {
            self.feed(Input::Request(Request::Restart(comps)));
        }
        if self.notified.0 {
            self.notify.send("READY=1");
        }
    }
}

/// An `env-file` or `args-file` as written in the graph (`-PATH` when a missing file is fine).
fn file_arg(f: &dmuc_config::EnvFile) -> String {
    format!("{}{}", if f.optional { "-" } else { "" }, f.path.display())
}
