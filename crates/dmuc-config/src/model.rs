//! The validated configuration. Every value here has passed validation; defaults are filled.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::graph::Graph;

/// A whole validated config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[vars]`, expanded.
    pub vars: BTreeMap<String, String>,
    /// The components and their dependencies.
    pub graph: Graph,
}

/// `[daemon]`: where the daemon keeps its things. `None` means "the default for this user"
/// (see [`crate::paths`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DaemonConfig {
    /// Control socket (`socket`).
    pub socket: Option<PathBuf>,
    /// tmux server socket (`tmux-socket`).
    pub tmux_socket: Option<PathBuf>,
    /// tmux session that holds the component windows (`session`, default `dmuc`).
    pub session: String,
    /// Log directory (`log-dir`).
    pub log_dir: Option<PathBuf>,
    /// State directory (`state-dir`).
    pub state_dir: Option<PathBuf>,
    /// Rotate a component's log when it reaches this size (`log-max-size`, bytes).
    pub log_max_size: u64,
    /// Rotated log files kept (`log-keep`).
    pub log_keep: u32,
    /// tmux scrollback lines per window (`history-limit`); the log files hold the rest.
    pub history_limit: u32,
    /// Exits within `crash_loop_window` that make a crash loop, whose events are then
    /// coalesced (`crash-loop-exits`; 0: never).
    pub crash_loop_exits: u32,
    /// The crash loop's window (`crash-loop-window`).
    pub crash_loop_window: Duration,
    /// Group allowed to use the control socket (`group`), used by the control protocol.
    pub group: Option<String>,
    /// Peers without write access may still read status (`public-status`, default true).
    pub public_status: bool,
    /// Start nothing at boot (`hold`): components start on `dmucctl start`.
    pub hold: bool,
    /// When to tell systemd the service is ready (`notify-ready`).
    pub notify_ready: NotifyReady,
    /// With `settled`: how long to wait for it before `READY=1` goes anyway, naming what is
    /// not up in `STATUS=` (`notify-ready-timeout`): one component that never gets ready
    /// does not fail the unit.
    pub notify_ready_timeout: Duration,
}

impl DaemonConfig {
    /// Defaults used when `[daemon]` says nothing.
    pub fn with_defaults() -> Self {
        DaemonConfig {
            session: "dmuc".into(),
            log_max_size: 10 * 1024 * 1024,
            log_keep: 5,
            history_limit: 2000,
            crash_loop_exits: 10,
            crash_loop_window: Duration::from_secs(10),
            notify_ready_timeout: Duration::from_secs(300),
            public_status: true,
            ..Default::default()
        }
    }
}

/// `notify-ready`: when `READY=1` goes to systemd.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotifyReady {
    /// As soon as the control socket listens.
    Socket,
    /// When every component that should run is up (or has failed): the graph has settled.
    #[default]
    Settled,
}

/// `kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Runs until stopped.
    Service,
    /// Runs to completion; success is `completed`.
    Oneshot,
}

/// The condition on one dependency edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Condition {
    /// The dependency's process has been started.
    Started,
    /// The dependency passed its ready probe (or is running, if it has none).
    Ready,
    /// The dependency is a oneshot that finished with success.
    Completed,
}

impl Condition {
    /// The TOML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Started => "started",
            Condition::Ready => "ready",
            Condition::Completed => "completed",
        }
    }
}

/// One `after` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The component depended on.
    pub component: String,
    /// What it must have reached.
    pub condition: Condition,
}

/// `restart`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// Restart whatever the exit.
    Always,
    /// Restart unless the exit was status 0.
    OnFailure,
    /// Never restart.
    Never,
}

/// `backoff`: the delay before restart `n` (1-based) is `min(initial * factor^(n-1), max)`;
/// the count goes back to zero once a run stayed up for `reset-after`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Upper bound.
    pub max: Duration,
    /// Growth factor (>= 1).
    pub factor: f64,
    /// A run that lasted this long resets the count.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
            factor: 2.0,
            reset_after: Duration::from_secs(60),
        }
    }
}

impl Backoff {
    /// Delay before restart number `n` (1-based). Pure arithmetic, saturating at `max`.
    pub fn delay(&self, n: u32) -> Duration {
        if n == 0 {
            return Duration::ZERO;
        }
        let exp = self.factor.powi((n - 1).min(1000) as i32);
        let secs = self.initial.as_secs_f64() * exp;
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }
}

/// `start-limit`: more than `burst` starts within `interval` puts the component in `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartLimit {
    /// Starts allowed within `interval`.
    pub burst: u32,
    /// The sliding window.
    pub interval: Duration,
}

impl Default for StartLimit {
    fn default() -> Self {
        StartLimit {
            burst: 5,
            interval: Duration::from_secs(10),
        }
    }
}

/// What a probe checks.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// A TCP connect to `host:port` succeeds.
    Tcp {
        /// `host:port`.
        address: String,
    },
    /// An HTTP(S) GET answers with the expected status.
    Http {
        /// `http://` or `https://` URL.
        url: String,
        /// Expected status; `None` means any 2xx or 3xx.
        status: Option<u16>,
        /// CA bundle (PEM) to verify the server with.
        ca: Option<PathBuf>,
        /// Client certificate (PEM).
        cert: Option<PathBuf>,
        /// Client key (PEM).
        key: Option<PathBuf>,
        /// Skip server certificate verification.
        insecure: bool,
    },
    /// A command exits 0.
    Exec {
        /// argv.
        command: Vec<String>,
    },
    /// A Unix stream socket accepts a connection (containerd's socket).
    Unix {
        /// The socket's path.
        path: PathBuf,
    },
    /// A path exists.
    File {
        /// The path.
        path: PathBuf,
    },
    /// A line of the component's output matches.
    Log {
        /// The regex, as written (validated).
        regex: String,
    },
}

impl Check {
    /// Short kind name: `tcp`, `http`, `exec`, `unix`, `file`, `log`.
    pub fn kind(&self) -> &'static str {
        match self {
            Check::Tcp { .. } => "tcp",
            Check::Http { .. } => "http",
            Check::Exec { .. } => "exec",
            Check::Unix { .. } => "unix",
            Check::File { .. } => "file",
            Check::Log { .. } => "log",
        }
    }
}

/// A ready or liveness probe.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// What is checked.
    pub check: Check,
    /// Time between attempts.
    pub interval: Duration,
    /// Time allowed for one attempt.
    pub timeout: Duration,
    /// Wait before the first attempt.
    pub initial_delay: Duration,
    /// Consecutive successes needed to pass.
    pub success_threshold: u32,
    /// Consecutive failures needed to fail.
    pub failure_threshold: u32,
}

/// Whom the stop signal goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopScope {
    /// The component's whole process group (default).
    Group,
    /// The main process only (containerd: its shims must survive).
    Process,
}

/// `stop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop {
    /// Signal number sent first.
    pub signal: i32,
    /// Time before SIGKILL.
    pub timeout: Duration,
    /// Whom to signal.
    pub scope: StopScope,
}

impl Default for Stop {
    fn default() -> Self {
        Stop {
            signal: libc::SIGTERM,
            timeout: Duration::from_secs(10),
            scope: StopScope::Group,
        }
    }
}

/// One `[component.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Component {
    /// Name: lowercase letters, digits and `-`.
    pub name: String,
    /// argv (never run through a shell unless the user wrote one).
    pub command: Vec<String>,
    /// Extra environment, in file order.
    pub env: Vec<(String, String)>,
    /// `env-file`: more environment read from a file at each start (as systemd's
    /// `EnvironmentFile=`); its values override `env`'s.
    pub env_file: Option<EnvFile>,
    /// `args-file`: more arguments read from a file at each start, after `command`'s (the
    /// flags a tool writes for the release at hand, as kubeadm's kubeadm-flags.env).
    pub args_file: Option<EnvFile>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// User to run as.
    pub user: Option<String>,
    /// Group to run as.
    pub group: Option<String>,
    /// Service or oneshot.
    pub kind: Kind,
    /// Dependencies.
    pub after: Vec<Dependency>,
    /// `wanted-by`: a start of any of these (by name, or as what a named start needs) starts
    /// this component too, as systemd's `WantedBy=`. Under `--hold`, the helpers of a step
    /// (the CNI config after the kubelet) come with it; a whole-graph start starts it anyway.
    pub wanted_by: Vec<String>,
    /// Restart policy.
    pub restart: Restart,
    /// Restart delays.
    pub backoff: Backoff,
    /// Crash-loop limit.
    pub start_limit: StartLimit,
    /// Ready probe.
    pub ready: Option<Probe>,
    /// Liveness probe.
    pub liveness: Option<Probe>,
    /// How to stop it.
    pub stop: Stop,
}

/// `env-file = "PATH"` or `args-file = "PATH"` (or `"-PATH"`: a missing file is no error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFile {
    /// The file.
    pub path: PathBuf,
    /// Whether a missing file is fine (the leading `-`, as in systemd).
    pub optional: bool,
}

/// The arguments of an arguments file: one per line, taken whole (spaces and quotes are part
/// of it: nothing is split or expanded); blank lines and lines starting with `#` skipped,
/// leading and trailing blanks trimmed.
pub fn parse_args_file(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

/// The variables of an environment file: `KEY=VALUE` lines, `#` comments and blank lines
/// ignored, an `export ` prefix allowed, a value in single or double quotes unquoted (no
/// escapes or expansion: the file is data, not a script). A bad line is an error naming it.
pub fn parse_env_file(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let l = l.strip_prefix("export ").map_or(l, str::trim_start);
        let Some((k, v)) = l.split_once('=') else {
            return Err(format!("line {}: {line:?} is not KEY=VALUE", n + 1));
        };
        let k = k.trim();
        let ok = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !ok {
            return Err(format!(
                "line {}: {k:?} is not a variable name (letters, digits and _)",
                n + 1
            ));
        }
        let v = v.trim();
        let v = match (v.chars().next(), v.chars().last()) {
            (Some(q @ ('"' | '\'')), Some(e)) if v.len() >= 2 && q == e => &v[1..v.len() - 1],
            _ => v,
        };
        out.retain(|(ek, _)| ek != k);
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}
