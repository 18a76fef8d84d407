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
//! - [`notify`]: systemd readiness notification.
//! - [`runtime`]: the actor; its `requests` submodule answers the control protocol.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod adopt;
pub mod backend;
pub mod conn;
pub mod control;
pub mod events;
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

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
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

fn private_dir(p: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(p)
        .with_context(|| format!("cannot create {}", p.display()))
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
    for d in [&paths.state_dir, &paths.log_dir] {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    // The socket checks come first: "another dmucd is listening" is the clearest refusal.
    let policy = std::sync::Arc::new(control::Policy::new(
        cfg.daemon.group.as_deref(),
        cfg.daemon.public_status,
    ));
    let listener = control::bind(&paths.socket, policy.gid)?;
    if let Some(parent) = paths.tmux_socket.parent() {
        // Not private: it may also hold the control socket. tmux's socket and dmucd.run/
        // are private themselves.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    private_dir(&paths.runtime_dir)?;
    private_dir(&paths.runtime_dir.join("spec"))?;
    let _ = std::fs::set_permissions(&paths.runtime_dir, std::fs::Permissions::from_mode(0o700));
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
