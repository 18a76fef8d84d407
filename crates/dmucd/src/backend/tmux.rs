//! The tmux backend: our private server, its config, and creating or respawning a component's
//! window. All commands go over one control-mode connection (`dmuc_tmux::Client`).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dmuc_tmux::{Client, Notification};
use tokio::sync::mpsc;

use super::{Backend, FoundPane, Note, Pane, Reply};

/// Session the daemon's own control client attaches to, kept apart from the component
/// session so our client can never stall the panes (tmux.md §4).
pub const CTL_SESSION: &str = "_dmucctl";

/// The tmux server of one daemon.
pub struct Tmux {
    client: Arc<Client>,
    session: String,
    shim: PathBuf,
    /// The overview pane's terminal, where dmucd draws the status table. Held open: were it
    /// opened by name for each frame, a closed overview's number could by then belong to
    /// another window's terminal (the kernel hands out the lowest free one).
    overview_tty: Option<std::fs::File>,
    /// The server's notifications (its exit, and clients moving between windows).
    notes: mpsc::UnboundedReceiver<Notification>,
    /// A client moved since the Overview's watchers were last counted (kept across a
    /// cancelled `note`, so that a count cut short is taken again).
    recount: bool,
    /// Whether a client showed the Overview at the last count.
    watched: bool,
    /// What a replacement server is started with.
    paths: crate::Paths,
    history_limit: u32,
}

/// The pane helper: `dmuc-shim` beside the dmucd binary (how it is built and installed),
/// else on `PATH`.
pub fn find_shim(exe: &Path) -> anyhow::Result<PathBuf> {
    let beside = exe.parent().map(|d| d.join("dmuc-shim"));
    let on_path = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("dmuc-shim"))
            .find(|p| p.is_file())
    });
    beside
        .filter(|p| p.is_file())
        .or(on_path)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "dmuc-shim (the helper in each component's pane) is neither beside {} nor on PATH; \
                 install it with dmucd (cargo build builds both; cargo install --path crates/dmuc-shim)",
                exe.display()
            )
        })
}

/// The PID of the process listening on the Unix socket `path`, from /proc/net/unix and the
/// processes' descriptors (no cooperation from the server needed).
fn listener_pid(path: &Path) -> Option<i32> {
    let want = path.to_str()?;
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    // Num RefCount Protocol Flags Type St Inode Path; St 01 = listening.
    let inode = table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 8 && f[7] == want && f[5] == "01").then(|| f[6].to_string())
    })?;
    let target = format!("socket:[{inode}]");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|p| {
        let pid: i32 = p.file_name().to_str()?.parse().ok()?;
        std::fs::read_dir(p.path().join("fd"))
            .ok()?
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_str() == Some(&target)))
            .then_some(pid)
    })
}

/// Ends a tmux server we will not use (it runs on our private socket, so it is ours): asks
/// it to exit, then SIGKILLs it, so that none is ever left running without a path to reach
/// it (an exiting server waits for its clients, and an orphaned control client may never
/// leave). Its panes' shims outlive it; the running ones reconnect and are adopted.
async fn retire_server(socket: &Path) {
    let pid = listener_pid(socket);
    let ask = tokio::process::Command::new(dmuc_tmux::program())
        .arg("-S")
        .arg(socket)
        .arg("kill-server")
        .stderr(std::process::Stdio::null())
        .status();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), ask).await;
    if let Some(pid) = pid {
        let is_tmux = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim_start().starts_with("tmux"));
        if is_tmux {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = std::fs::remove_file(socket);
}

/// Kills the control sessions of daemons that are gone (they only hold an idle window).
async fn remove_stale_control_sessions(client: &Client, ours: &str) {
    let Ok(out) = client
        .run(&[vec![
            "list-sessions".into(),
            "-F".into(),
            "#{session_name}".into(),
        ]])
        .await
    else {
        return;
    };
    for name in out.into_iter().flatten() {
        let name = String::from_utf8_lossy(&name).into_owned();
        if name.starts_with(CTL_SESSION) && name != ours {
            let _ = client
                .run(&[vec!["kill-session".into(), "-t".into(), format!("={name}")]])
                .await;
        }
    }
}

/// The component panes of `session`.
async fn list_panes(client: &Client, session: &str) -> anyhow::Result<Vec<FoundPane>> {
    let out = client
        .run(&[vec![
            "list-panes".into(),
            "-s".into(),
            "-t".into(),
            format!("={session}"),
            "-F".into(),
            "#{window_id} #{pane_id} #{pane_dead} #{@dmuc_component}".into(),
        ]])
        .await?;
    Ok(out
        .into_iter()
        .flatten()
        .filter_map(|l| {
            let l = String::from_utf8_lossy(&l).into_owned();
            let mut f = l.split(' ');
            let (w, p, dead, c) = (f.next()?, f.next()?, f.next()?, f.next()?);
            (!c.is_empty()).then(|| FoundPane {
                pane: Pane {
                    window: w.to_string(),
                    pane: p.to_string(),
                },
                component: c.to_string(),
                dead: dead == "1",
            })
        })
        .collect())
}

/// What `display-message -p -t TARGET FORMAT` prints (its first line).
async fn display(
    client: &Client,
    target: String,
    format: &str,
) -> Result<String, dmuc_tmux::Error> {
    let out = client
        .run(&[vec![
            "display-message".into(),
            "-p".into(),
            "-t".into(),
            target,
            format.into(),
        ]])
        .await?;
    Ok(out
        .first()
        .and_then(|o| o.first())
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_default())
}

/// The overview pane's terminal, opened for writing (`None` if tmux does not say, or it
/// cannot be opened).
async fn overview_tty(client: &Client, session: &str) -> Option<std::fs::File> {
    let line = display(client, format!("={session}:={OVERVIEW}"), "#{pane_tty}")
        .await
        .inspect_err(|e| tracing::warn!("no overview terminal: {e}"))
        .ok()?;
    let path = PathBuf::from(line.trim());
    if !path.is_absolute() {
        return None;
    }
    open_tty(&path)
        .inspect_err(|e| tracing::warn!(tty = %path.display(), "cannot open the overview: {e}"))
        .ok()
}

/// A pane's terminal, opened for writing: not as our controlling terminal, and non-blocking
/// (a full terminal drops output instead of stalling its writer).
fn open_tty(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(nix::libc::O_NOCTTY | nix::libc::O_NONBLOCK)
        .open(path)
}

/// Runs `argv` as `name`'s pane process: respawns `pane` when given, else (also when that
/// fails because an operator closed the window) opens a new window, tagged with the name.
async fn place(
    client: Arc<Client>,
    session: String,
    name: String,
    pane: Option<Pane>,
    argv: Vec<String>,
) -> Result<Pane, String> {
    if let Some(p) = pane {
        let mut c = vec![
            "respawn-pane".to_string(),
            "-k".into(),
            "-t".into(),
            p.pane.clone(),
            "--".into(),
        ];
        c.extend(argv.iter().cloned());
        match client.run(&[c]).await {
            Ok(_) => return Ok(p),
            Err(e) => {
                tracing::info!(component = %name, "respawn failed ({e}); opening a new window")
            }
        }
    }
    // `-n` is format-expanded; a component name is [a-z0-9-], so it holds no `#`.
    let mut new = vec![
        "new-window".to_string(),
        "-d".into(),
        "-n".into(),
        name.clone(),
        "-t".into(),
        format!("{session}:"),
        "-P".into(),
        "-F".into(),
        "#{window_id} #{pane_id}".into(),
        "--".into(),
    ];
    new.extend(argv);
    // Tag in the same batch (no extra round trip): `=NAME` is an exact window-name match,
    // and the new window is the only one with this name.
    let tag = vec![
        "set-option".to_string(),
        "-w".into(),
        "-t".into(),
        format!("{session}:={name}"),
        "@dmuc_component".into(),
        name.clone(),
    ];
    let replies = client
        .send(&[new, tag])
        .map_err(|e| e.to_string())?
        .await
        .map_err(|e| e.to_string())?;
    let mut replies = replies.into_iter();
    let out = replies
        .next()
        .ok_or("no reply from tmux")?
        .map_err(|e| e.to_string())?;
    let line = out
        .first()
        .map(|l| String::from_utf8_lossy(l).into_owned())
        .unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(window), Some(pane)) = (parts.next(), parts.next()) else {
        return Err(format!("unexpected new-window reply: {line:?}"));
    };
    if let Some(Err(e)) = replies.next() {
        tracing::warn!(component = %name, "cannot tag window {window}: {e}");
    }
    Ok(Pane {
        window: window.to_string(),
        pane: pane.to_string(),
    })
}

/// Name of the overview window. Component names are lowercase, so it cannot clash.
pub const OVERVIEW: &str = "Overview";

/// The filter that keeps dmucd's own control session out of the session and window trees
/// (`C-b w`, `C-b s`): 1 for every session but ours (`_dmucctl-PID`).
pub const HIDE_CTL: &str = "#{?#{m:_dmucctl*,#{session_name}},0,1}";

/// The server's config. `ld_preload` is dmucd's own `LD_PRELOAD`: what the windows' programs
/// should see, not the stand-in library the server was started with.
fn conf_text(history_limit: u32, ld_preload: Option<std::ffi::OsString>) -> String {
    let preload = match ld_preload
        .as_ref()
        .and_then(|v| v.to_str())
        .map(dmuc_tmux::quote)
    {
        Some(Ok(v)) => format!("set-environment -g LD_PRELOAD {v}\n"),
        _ => "set-environment -gu LD_PRELOAD\n".into(),
    };
    format!(
        "# Written by dmucd; the server never reads ~/.tmux.conf or /etc/tmux.conf.\n\
         set -g exit-empty off\n\
         set -g destroy-unattached off\n\
         set -g history-limit {history_limit}\n\
         set -g default-size 200x50\n\
         set -g default-shell /bin/sh\n\
         set -g allow-rename off\n\
         set -g base-index 0\n\
         set -g status-left '[dmuc] '\n\
         set -g status-left-length 20\n\
         set -g status-right '#{{@dmuc_summary}}'\n\
         set -g status-right-length 120\n\
         set -g status-interval 0\n\
         set -wg window-status-format '#I:#W#{{?@dmuc_mark, #{{@dmuc_mark}},}}#{{?window_flags,#{{window_flags}}, }}'\n\
         set -wg window-status-current-format '#I:#W#{{?@dmuc_mark, #{{@dmuc_mark}},}}#{{?window_flags,#{{window_flags}}, }}'\n\
         set -wg remain-on-exit on\n\
         set -wg automatic-rename off\n\
         bind-key w choose-tree -Zw -f '{HIDE_CTL}'\n\
         bind-key s choose-tree -Zs -f '{HIDE_CTL}'\n"
    ) + &preload
}

/// A started server, and the panes found when adopting.
type Started = (Tmux, Option<Vec<FoundPane>>);

impl Tmux {
    /// Starts a private server with the session holding an overview window, or, when a
    /// previous dmucd left its server running and `adopt` is set, attaches to it and returns
    /// the component panes found there (`None`: a fresh server).
    pub async fn start(
        paths: &crate::Paths,
        session: &str,
        history_limit: u32,
        adopt: bool,
    ) -> anyhow::Result<Started> {
        match Tmux::start_once(paths, session, history_limit, adopt).await {
            Ok(t) => Ok(t),
            // The previous server went away while we attached (its daemon was killing it):
            // start a fresh one.
            Err(e) if adopt => {
                tracing::warn!(
                    "cannot attach to the previous tmux server ({e:#}); starting a fresh one"
                );
                Tmux::start_once(paths, session, history_limit, false).await
            }
            Err(e) => Err(e),
        }
    }

    async fn start_once(
        paths: &crate::Paths,
        session: &str,
        history_limit: u32,
        adopt: bool,
    ) -> anyhow::Result<Started> {
        let (socket, runtime_dir) = (&paths.tmux_socket, &paths.runtime_dir);
        let exe = std::env::current_exe()?;
        let conf = runtime_dir.join("tmux.conf");
        std::fs::write(
            &conf,
            conf_text(history_limit, std::env::var_os("LD_PRELOAD")),
        )?;
        // A server left by an earlier daemon on our socket holds the components it ran: attach
        // and adopt them (or, when not adopting, replace it rather than run two copies).
        // A server listens on the socket (with or without sessions: `exit-empty off` keeps an
        // empty one running), and whether it holds sessions worth adopting.
        let listening = std::os::unix::net::UnixStream::connect(socket).is_ok();
        let alive = listening
            && tokio::process::Command::new(dmuc_tmux::program())
                .arg("-S")
                .arg(socket)
                .args(["has-session"])
                .stderr(std::process::Stdio::null())
                .status()
                .await
                .map(|s| s.success())
                .unwrap_or(false);
        // Any server we do not adopt is told to exit before its socket path is reused, so
        // none is ever left running without a path to reach it.
        if listening && (!adopt || !alive) {
            tracing::warn!(socket = %socket.display(), "replacing a tmux server left by an earlier dmucd");
            retire_server(socket).await;
        } else if !adopt {
            let _ = std::fs::remove_file(socket);
        }
        // Windows that only need to stay open run the shim idle (a few KB, not a dmucd).
        let shim = find_shim(&exe)?;
        let idle = vec![shim.display().to_string(), "--idle".into()];
        // Our own control session: a previous daemon's (left when it died) must not be
        // attached to, and is removed once we are in.
        let ctl_session = format!("{CTL_SESSION}-{}", std::process::id());
        // Only matters when this connection starts the server; without it tmux works as usual.
        let preload = crate::noutmp::Preload::new()
            .inspect_err(|e| tracing::warn!("tmux will register every window in utmp: cannot prepare the stand-in library: {e}"))
            .ok();
        let preload_fd = preload.as_ref().map(|p| p.fd().as_fd());
        // Bounded: a server that is exiting (killed by a daemon that then died) may accept our
        // client and never answer; then it is replaced by a fresh one.
        let connect = Client::connect(socket, &conf, &ctl_session, &idle, preload_fd);
        let (client, notes, alive) =
            match tokio::time::timeout(std::time::Duration::from_secs(5), connect).await {
                Ok(Ok((c, n))) => (c, n, alive),
                Ok(Err(e)) if !alive => return Err(e.into()),
                failed => {
                    tracing::warn!(
                        "the tmux server on {} does not answer ({}); starting a fresh one",
                        socket.display(),
                        match failed {
                            Ok(Err(e)) => e.to_string(),
                            _ => "timed out".into(),
                        }
                    );
                    retire_server(socket).await;
                    let (c, n) =
                        Client::connect(socket, &conf, &ctl_session, &idle, preload_fd).await?;
                    (c, n, false)
                }
            };
        if alive {
            remove_stale_control_sessions(&client, &ctl_session).await;
        }
        let found = if alive && adopt {
            Some(list_panes(&client, session).await.unwrap_or_default())
        } else {
            None
        };
        let overview_exists = found.is_some()
            && client
                .run(&[vec![
                    "has-session".into(),
                    "-t".into(),
                    format!("={session}"),
                ]])
                .await
                .is_ok();
        let mut args: Vec<String> = [
            "new-session",
            "-d",
            "-s",
            session,
            "-n",
            OVERVIEW,
            "-x",
            "200",
            "-y",
            "50",
            "--",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // The overview: an idle shim holds the pane, and dmucd draws the status table on its
        // terminal whenever the table changes (`draw_overview`). A watching client would be
        // a second process (2.5 MB) redrawing every second for the uptimes.
        args.extend(idle.iter().cloned());
        if overview_exists {
            // The old overview lost its daemon: run a fresh one in the same window.
            args.splice(
                0..args.iter().position(|a| a == "--").unwrap_or(0),
                [
                    "respawn-pane".to_string(),
                    "-k".into(),
                    "-t".into(),
                    format!("={session}:={OVERVIEW}"),
                ],
            );
            if let Err(e) = client.run(&[args]).await {
                tracing::warn!("cannot restart the overview window: {e}");
            }
        } else {
            client.run(&[args]).await?;
        }
        Ok((
            Tmux {
                overview_tty: overview_tty(&client, session).await,
                client: Arc::new(client),
                session: session.to_string(),
                shim,
                notes,
                // Someone may be attached already (a server that outlived its dmucd).
                recount: true,
                watched: false,
                paths: paths.clone(),
                history_limit,
            },
            found,
        ))
    }
}

impl Tmux {
    /// Whether a client's current window is our session's Overview. A server that cannot be
    /// asked shows nothing to anyone.
    async fn overview_watched(&self) -> bool {
        let out = self
            .client
            .run(&[vec![
                "list-clients".into(),
                "-F".into(),
                "#{session_name}\t#{window_name}".into(),
            ]])
            .await;
        let want = format!("{}\t{OVERVIEW}", self.session);
        out.map(|o| o.iter().flatten().any(|l| l[..] == *want.as_bytes()))
            .unwrap_or(false)
    }
}

impl Backend for Tmux {
    /// Draws `text` on the overview pane's terminal, replacing what was there. Non-blocking:
    /// a terminal that cannot take it all now gets what fits (the next frame starts over).
    fn draw_overview(&mut self, text: &str) {
        use std::io::Write;
        let Some(tty) = &mut self.overview_tty else {
            return;
        };
        let drawn = tty
            .write_all(b"\x1b[H\x1b[2J")
            .and_then(|()| tty.write_all(text.as_bytes()));
        match drawn {
            Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => {
                // The window was closed (its terminal hung up): let the number go.
                tracing::info!("the overview window is gone ({e}); it is no longer drawn");
                self.overview_tty = None;
            }
            _ => {}
        }
    }

    fn launch(&self, spec: &Path, run: u64) -> Result<(), String> {
        super::shims::start(&self.shim, spec, run)
    }

    /// Opens a window for `name` whose shim runs without one (it was started so, the tmux
    /// server died, or the window was closed): an idle shim holds the pane (passing Ctrl-C
    /// on to the component's shim, and ending with it), and its terminal, opened here, is
    /// what the component's shim will copy the output to. Reuses `pane` if it still exists.
    fn open_view(
        &self,
        name: &str,
        pane: Option<&Pane>,
        shim: Option<u32>,
    ) -> Reply<(Pane, std::os::fd::OwnedFd)> {
        let mut argv = vec![self.shim.display().to_string(), "--idle".into()];
        if let Some(pid) = shim {
            argv.extend(["--view".to_string(), pid.to_string()]);
        }
        let client = self.client.clone();
        let placed = place(
            client.clone(),
            self.session.clone(),
            name.to_string(),
            pane.cloned(),
            argv,
        );
        Box::pin(async move {
            let pane = placed.await?;
            let tty_of = |pane: &Pane| {
                let (client, target) = (client.clone(), pane.pane.clone());
                async move {
                    display(&client, target, "#{pane_dead} #{pane_tty}")
                        .await
                        .map_err(|e| e.to_string())
                }
            };
            let before = tty_of(&pane).await?;
            let Some(path) = before.strip_prefix("0 ").filter(|p| p.starts_with('/')) else {
                return Err(format!("the new pane has no live terminal ({before:?})"));
            };
            let tty = open_tty(std::path::Path::new(path)).map_err(|e| format!("{path}: {e}"))?;
            // Terminal numbers are reused as soon as a pane closes: only if the pane is still
            // alive with the same terminal now has it been this pane's all along.
            let after = tty_of(&pane).await?;
            if after != before {
                return Err(format!(
                    "the new pane went away while its terminal was opened ({after:?})"
                ));
            }
            Ok((pane, tty.into()))
        })
    }

    /// Shows component states on the status line: a mark after each window's name (the
    /// name itself stays the component's) and a summary on the right. Fire and forget: a
    /// failure costs only the display.
    fn show(&self, marks: &[(String, String)], summary: Option<&str>) {
        let mut cmds: Vec<Vec<String>> = marks
            .iter()
            .map(|(window, mark)| {
                ["set-option", "-w", "-t", window, "@dmuc_mark", mark]
                    .map(str::to_string)
                    .to_vec()
            })
            .collect();
        if let Some(s) = summary {
            cmds.push(
                ["set-option", "-g", "@dmuc_summary", s]
                    .map(str::to_string)
                    .to_vec(),
            );
        }
        if !cmds.is_empty() {
            let _ = self.client.send(&cmds);
        }
    }

    /// Closes a window (a component a reload removed). Fire and forget.
    fn close_window(&self, pane: &Pane) {
        let _ = self
            .client
            .send(&[vec!["kill-window".into(), "-t".into(), pane.window.clone()]]);
    }

    /// Stops the server (and with it every pane), and removes its socket file, which tmux
    /// leaves behind.
    async fn kill_server(&mut self) {
        let _ = self.client.send(&[vec!["kill-server".into()]]);
        self.client.detach().await;
        let _ = std::fs::remove_file(self.client.socket());
    }

    async fn note(&mut self) -> Note {
        loop {
            if self.recount {
                let watched = self.overview_watched().await;
                self.recount = false;
                if watched != self.watched {
                    self.watched = watched;
                    return Note::Watched(watched);
                }
            }
            let Some(n) = self.notes.recv().await else {
                return Note::Lost;
            };
            match n.name() {
                b"exit" => return Note::Lost,
                // A client attached (its session changed), left, or a session's current
                // window changed: the same in tmux 3.2 to 3.7 (control-notify.c).
                b"client-session-changed" | b"client-detached" | b"session-window-changed" => {
                    self.recount = true;
                }
                _ => {}
            }
        }
    }

    async fn replace(&mut self) -> anyhow::Result<()> {
        let (tmux, _) = Tmux::start(&self.paths, &self.session, self.history_limit, false).await?;
        *self = tmux;
        Ok(())
    }

    fn signal(&self, pid: i32, signal: nix::sys::signal::Signal) -> nix::Result<()> {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_config_keeps_the_stand_in_library_out_of_the_windows() {
        let last = |c: String| c.lines().last().unwrap_or_default().to_string();
        // dmucd had no LD_PRELOAD: the windows get none.
        assert_eq!(
            last(conf_text(2000, None)),
            "set-environment -gu LD_PRELOAD"
        );
        // dmucd had one: the windows get it back, quoted for tmux.
        assert_eq!(
            last(conf_text(2000, Some("/opt/it's/lib.so".into()))),
            r"set-environment -g LD_PRELOAD '/opt/it'\''s/lib.so'"
        );
        // One tmux cannot take on a line: the windows get none rather than a broken config.
        assert_eq!(
            last(conf_text(2000, Some("/a\nb".into()))),
            "set-environment -gu LD_PRELOAD"
        );
    }
}
