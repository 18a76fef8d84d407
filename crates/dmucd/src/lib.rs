//! dmucd: runs a component graph, one tmux window per component.
//!
//! # Theory of operation
//! `run` resolves the daemon's paths, takes the state-dir lock (one daemon per state dir),
//! starts a private tmux server with our own config, binds the shim socket and hands
//! everything to the [`runtime`] actor. Each component's pane runs `dmuc-shim` (its own crate),
//! which starts the real program, owns its log file and reports its PID and exact exit
//! status. The actor feeds those facts, probe verdicts and timer expiries into the pure state
//! machine (`dmuc_core`) and carries out the effects it returns.
//!
//! # Layout
//! - [`adopt`]: what lets a new dmucd take over the components of the previous one.
//! - [`backend`]: the `Backend` trait the actor acts through (windows, signals), its tmux
//!   implementation, and a fake for the runtime's tests.
//! - [`msg`]: what the edges tell the actor (they depend on it, not on the actor); [`conn`]
//!   and [`shimline`] hold the types it carries.
//! - the pane side (shim, launch spec, log files) is the `dmuc-shim` crate.
//! - [`shimlink`]: the daemon side of the shim socket.
//! - [`probe`]: tcp/http/exec/file probes.
//! - [`control`]: the control socket (binding, authorization, framing).
//! - [`events`]: the event log (file, ring, followers).
//! - [`logs`]: `logs` from the log files, with inotify following.
//! - [`filewatch`]: dmucd's one inotify instance, shared by every follower.
//! - [`notify`]: systemd readiness notification.
//! - [`runtime`]: the actor; its `requests` submodule answers the control protocol.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod adopt;
pub mod backend;
pub mod conn;
pub mod control;
pub mod events;
pub mod filewatch;
pub mod logs;
pub mod msg;
pub mod notify;
pub mod noutmp;
pub mod probe;
pub mod runtime;
pub mod shimline;
pub mod shimlink;
pub mod spec;
pub mod statefile;

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::Context;
use dmuc_config::Config;
pub use dmuc_config::paths::Paths;
use tokio::sync::mpsc;

/// Path overrides from the command line (they win over the config file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--socket`.
    pub socket: Option<PathBuf>,
    /// `--tmux-socket`.
    pub tmux_socket: Option<PathBuf>,
    /// `--log-dir`.
    pub log_dir: Option<PathBuf>,
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--var KEY=VALUE`: replace `[vars]` values (kept for `reload`).
    pub vars: std::collections::BTreeMap<String, String>,
    /// `--hold`: start nothing; components start on `dmucctl start`.
    pub hold: bool,
}

/// Resolves the daemon's paths: flags, then `[daemon]`, then the defaults for this user.
pub fn resolve_paths(cfg: &Config, o: &Overrides) -> Paths {
    let env = dmuc_config::paths::PathEnv {
        is_root: nix::unistd::geteuid().is_root(),
        uid: nix::unistd::geteuid().as_raw(),
        xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        xdg_state_home: std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        home: std::env::var_os("HOME").map(PathBuf::from),
    };
    let mut p = Paths::defaults(&env);
    let d = &cfg.daemon;
    if let Some(s) = o.socket.clone().or_else(|| d.socket.clone()) {
        p.socket = s;
    }
    if let Some(s) = o.tmux_socket.clone().or_else(|| d.tmux_socket.clone()) {
        p.tmux_socket = s;
    }
    if let Some(s) = o.log_dir.clone().or_else(|| d.log_dir.clone()) {
        p.log_dir = s;
    }
    if let Some(s) = o.state_dir.clone().or_else(|| d.state_dir.clone()) {
        p.state_dir = s;
    }
    // The shim socket and launch specs live next to the tmux socket, in a private directory.
    p.runtime_dir = p
        .tmux_socket
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| p.runtime_dir.clone())
        .join("dmucd.run");
    p
}

/// Makes `p` (mode 0700) when missing, then checks it is dmucd's own: a directory, not a
/// link, owned by this user and never writable by others (what another user made first at a
/// guessable path such as /tmp/dmuc-UID could hold their links and specs). Refused otherwise.
fn private_dir(p: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("cannot create {}", p.display()))?;
    let m = own_dir(p, false)?;
    if m.mode() & 0o077 != 0 {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("cannot make {} private", p.display()))?;
    }
    Ok(())
}

/// The log directory: mode 2750 (setgid: the logs take its group), group `gid` when set.
fn share_dir(dir: &Path, gid: Option<u32>) {
    if let Some(gid) = gid
        && let Err(e) = nix::unistd::chown(dir, None, Some(gid.into()))
    {
        tracing::warn!("cannot give {} to gid {gid}: {e}", dir.display());
    }
    if let Err(e) = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o2750)) {
        tracing::warn!("cannot make {} 2750: {e}", dir.display());
    }
}

/// The checks of a directory dmucd keeps its sockets or files in: a directory (not a link),
/// owned by this user (or, with `root_ok`, by root: /run, or /tmp with its sticky bit), and
/// not writable by others unless sticky and root's.
fn own_dir(p: &Path, root_ok: bool) -> anyhow::Result<std::fs::Metadata> {
    let m = std::fs::symlink_metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
    let me = nix::unistd::geteuid().as_raw();
    let fix = "remove it, or choose another place (XDG_RUNTIME_DIR, --socket)";
    if m.file_type().is_symlink() || !m.is_dir() {
        anyhow::bail!(
            "{} is not a directory but a link or a file: {fix}",
            p.display()
        );
    }
    if m.uid() != me && !(root_ok && m.uid() == 0) {
        anyhow::bail!(
            "{} belongs to uid {}, not to this user (uid {me}): another user made it first; {fix}",
            p.display(),
            m.uid()
        );
    }
    let sticky_root = m.mode() & 0o1000 != 0 && m.uid() == 0;
    if m.mode() & 0o022 != 0 && !sticky_root {
        anyhow::bail!(
            "{} is writable by others (mode {:04o}): they could put their own files in it; {fix}",
            p.display(),
            m.mode() & 0o7777
        );
    }
    Ok(m)
}

/// Holds the state-dir lock for the daemon's lifetime.
pub struct Lock(#[allow(dead_code)] nix::fcntl::Flock<std::fs::File>);

fn lock(state_dir: &Path) -> anyhow::Result<Lock> {
    let path = state_dir.join("dmucd.lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(mut l) => {
            use std::io::{Seek, Write};
            let _ = l.set_len(0);
            let _ = l.seek(std::io::SeekFrom::Start(0));
            let _ = write!(l, "{}", std::process::id());
            Ok(Lock(l))
        }
        Err((_, _)) => {
            let pid = std::fs::read_to_string(&path).unwrap_or_default();
            anyhow::bail!(
                "another dmucd (pid {}) is running with state dir {}; stop it first or use --state-dir",
                pid.trim(),
                state_dir.display()
            )
        }
    }
}

/// Runs the graph until `stop` delivers a message (a second one forces the stop).
pub async fn run(
    cfg: Config,
    config_path: PathBuf,
    overrides: Overrides,
    mut stop: mpsc::UnboundedReceiver<()>,
) -> anyhow::Result<()> {
    let paths = resolve_paths(&cfg, &overrides);
    // The log directory is made private to dmucd and its group when it is dmuc's own: made
    // now, or named `dmuc` or `log` under a `dmuc` directory (the defaults); a directory the
    // operator pointed at (/var/log itself, say) is left as it is.
    let own_logs = !paths.log_dir.exists()
        || paths.log_dir.file_name() == Some(std::ffi::OsStr::new("dmuc"))
        || paths.log_dir.parent().and_then(Path::file_name) == Some(std::ffi::OsStr::new("dmuc"));
    for d in [&paths.state_dir, &paths.log_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    // The socket checks come first: "another dmucd is listening" is the clearest refusal.
    let policy = std::sync::Arc::new(control::Policy::new(
        cfg.daemon.group.as_deref(),
        cfg.daemon.public_status,
    ));
    let listener = control::bind(&paths.socket, policy.gid)?;
    // Logs, events and status files: readable by dmucd's user and the socket's group only,
    // as the socket's `logs` and `events` are. New log files take the directory's group
    // (setgid), the shims make them 0640.
    statefile::set_group(policy.gid);
    if own_logs {
        share_dir(&paths.log_dir, policy.gid);
    }
    if let Some(parent) = paths.tmux_socket.parent() {
        // Not private: it may also hold the control socket. tmux's socket and dmucd.run/
        // are private themselves.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        own_dir(parent, true)?;
    }
    private_dir(&paths.runtime_dir)?;
    private_dir(&paths.runtime_dir.join("spec"))?;
    let _lock = lock(&paths.state_dir)?;

    let (tx, rx) = mpsc::unbounded_channel();
    shimlink::listen(&paths.runtime_dir.join("shim.sock"), tx.clone())
        .context("cannot bind the shim socket")?;
    let (tmux, found) =
        backend::Tmux::start(&paths, &cfg.daemon.session, cfg.daemon.history_limit, true)
            .await
            .context("cannot start tmux")?;
    // In the runtime dir (beside the tmux socket it pairs with); earlier dmucds wrote it in
    // the state dir.
    let record = adopt::read(&paths.runtime_dir.join("adopt.json"))
        .or_else(|| adopt::read(&paths.state_dir.join("adopt.json")));
    let adoption = match found {
        Some(panes) => {
            tracing::info!(
                panes = panes.len(),
                "found the tmux server of a previous dmucd: adopting its components"
            );
            Some(runtime::Adoption { panes, record })
        }
        // No server left, but components may be: their shims outlive tmux.
        None => record
            .filter(|r| r.components.iter().any(adopt::CompRecord::still_running))
            .map(|record| {
                tracing::info!("components of a previous dmucd still run without their tmux server: adopting them");
                runtime::Adoption {
                    panes: Vec::new(),
                    record: Some(record),
                }
            }),
    };
    tracing::info!(tmux = %paths.tmux_socket.display(), session = %cfg.daemon.session, "tmux server up; attach with: tmux -S {} attach -t {}", paths.tmux_socket.display(), cfg.daemon.session);

    let stop_tx = tx.clone();
    tokio::spawn(async move {
        while stop.recv().await.is_some() {
            if stop_tx.send(msg::Msg::Stop).is_err() {
                break;
            }
        }
    });
    let server = tokio::spawn(control::serve(listener, policy, tx.clone()));
    let hup_tx = tx.clone();
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            if hup_tx.send(msg::Msg::Reload).is_err() {
                break;
            }
        }
    });
    tracing::info!(socket = %paths.socket.display(), "control socket listening");
    let rt = runtime::Runtime::new(
        cfg,
        config_path,
        overrides.clone(),
        paths.clone(),
        tmux,
        (tx, rx),
        adoption,
    );
    let result = rt.run().await;
    server.abort();
    let _ = std::fs::remove_file(&paths.socket);
    let _ = std::fs::remove_file(paths.runtime_dir.join("shim.sock"));
    let _ = std::fs::remove_dir_all(paths.runtime_dir.join("spec"));
    result
}

/// Reads and validates a config file, defining `${dmucd-dir}` (the directory of this binary).
pub fn load_config(
    path: &Path,
    vars: &std::collections::BTreeMap<String, String>,
) -> Result<Config, String> {
    dmuc_config::load_file(path, vars)
}

/// Prints the `--check` summary of a valid config: components in start order, by level.
pub fn check_summary(cfg: &Config) -> String {
    dmuc_config::summary(cfg)
}

#[cfg(test)]
mod dir_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What another user made first at dmucd's paths is refused, with the way out.
    #[test]
    fn directories_others_made_or_may_write_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mine = t.path().join("mine");
        private_dir(&mine.join("spec")).unwrap();
        assert_eq!(std::fs::metadata(&mine).unwrap().mode() & 0o777, 0o700);
        // Ours but opened to the group: made private again.
        std::fs::set_permissions(&mine, std::fs::Permissions::from_mode(0o750)).unwrap();
        private_dir(&mine).unwrap();
        assert_eq!(std::fs::metadata(&mine).unwrap().mode() & 0o777, 0o700);
        // Writable by others: they may have put links in it.
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&open).unwrap_err().to_string();
        assert!(e.contains("writable by others (mode 0777)"), "{e}");
        // A link in its place.
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        let e = private_dir(&link).unwrap_err().to_string();
        assert!(e.contains("not a directory but a link"), "{e}");
        // /tmp itself is root's and sticky: a fine parent for a socket, not a private dir.
        own_dir(Path::new("/tmp"), true).unwrap();
        // Another user's.
        if dmuc_tests::skip_unless_root("dir_tests (chown to another user)") {
            return;
        }
        let theirs = t.path().join("dmuc-1000");
        std::fs::create_dir(&theirs).unwrap();
        std::fs::set_permissions(&theirs, std::fs::Permissions::from_mode(0o700)).unwrap();
        nix::unistd::chown(&theirs, Some(nix::unistd::Uid::from_raw(65534)), None).unwrap();
        for root_ok in [false, true] {
            let e = own_dir(&theirs, root_ok).unwrap_err().to_string();
            assert!(
                e.contains("belongs to uid 65534") && e.contains("XDG_RUNTIME_DIR"),
                "{e}"
            );
        }
        assert!(private_dir(&theirs).is_err());
    }
}
