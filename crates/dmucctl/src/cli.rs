//! dmucctl's command line: every verb and its arguments (the operator's tools' are
//! dmucctl-tools', flattened in), so that `--help`, completions and the man page come from
//! one definition.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Control dmucd, the dmuc supervisor: status, start/stop/restart, logs, events, attach.
#[derive(Parser, Debug)]
#[command(name = "dmucctl", version, propagate_version = true)]
pub struct Cli {
    /// The daemon's control socket [default: /run/dmuc/dmucd.sock for root,
    /// $XDG_RUNTIME_DIR/dmuc/dmucd.sock otherwise].
    #[arg(long, global = true, env = "DMUC_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Show components: state, PID, uptime, restarts, readiness, last exit, reason.
    Status {
        /// Only these components.
        names: Vec<String>,
        /// Print the daemon's JSON reply (for scripts).
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Keep the table on screen, redrawn on every event (the tmux overview window).
        #[arg(short = 'w', long)]
        watch: bool,
        /// CPU % (since each main process started) and memory of each component's process
        /// group, read from /proc by dmucctl.
        #[arg(long, conflicts_with_all = ["json", "watch"])]
        wide: bool,
    },
    /// CPU and memory of each component's processes, refreshed like top(1) (highest CPU
    /// first; CPU % over the last interval).
    Top {
        /// Seconds between refreshes.
        #[arg(short = 'd', long, default_value_t = 2.0, value_name = "SECS")]
        delay: f64,
        /// Stop after this many refreshes (default: until interrupted).
        #[arg(short = 'n', long, value_name = "N")]
        iterations: Option<u64>,
    },
    /// Start components (and what they depend on first); waits until they are up.
    Start(ActionArgs),
    /// Stop components (and what depends on them first); waits until they are down.
    Stop(ActionArgs),
    /// Restart components; waits until their new run is up.
    Restart(ActionArgs),
    /// Send a signal to a component's main process.
    Signal {
        /// Component.
        name: String,
        /// Signal: SIGHUP, HUP or 1.
        signal: String,
        /// Signal the whole process group.
        #[arg(long)]
        group: bool,
    },
    /// Print a component's log (from its log files, so it spans restarts).
    Logs {
        /// Component.
        name: String,
        /// Lines to print from the end.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing what it writes next.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Print the event log: state changes, exits, probe verdicts.
    Events {
        /// Keep printing new events.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only events after this sequence number (resume where you left off).
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
    /// Show the dependency graph with live states.
    Graph {
        /// Graphviz dot output.
        #[arg(long)]
        dot: bool,
    },
    /// Components' definitions as dmucd runs them, variables expanded, as TOML (all without
    /// NAME).
    Show {
        /// Components.
        names: Vec<String>,
        /// The definitions as JSON (the protocol's `show` result).
        #[arg(long)]
        json: bool,
    },
    /// When each component was launched and up, what it waited for, and the critical chain
    /// that decided when the graph (or NAME) was up, from the event log.
    Analyze {
        /// End the chain at this component's last start (default: the last one up).
        name: Option<String>,
        /// Only events after this sequence number (default: since dmucd last started the
        /// graph; an adoption keeps that start).
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// Up to this sequence number (default: where that start settled; with NAME, the last
        /// event).
        #[arg(long, value_name = "SEQ")]
        until: Option<u64>,
        /// The analysis as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// The same analysis as a Gantt chart: an SVG document on stdout (`dmucctl plot > boot.svg`).
    Plot {
        /// End the chain at this component's last start (default: the last one up).
        name: Option<String>,
        /// Only events after this sequence number (default: since dmucd last started the graph).
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// Up to this sequence number (default: where that start settled; with NAME, the last
        /// event).
        #[arg(long, value_name = "SEQ")]
        until: Option<u64>,
    },
    /// Re-read the config file and apply the difference: new components start, removed ones
    /// stop, changed ones restart, the others keep running untouched.
    Reload {
        /// Print the plan without acting.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop every component in reverse dependency order; dmucd then exits.
    Shutdown {
        /// Return once the shutdown has begun.
        #[arg(long)]
        no_wait: bool,
    },
    /// Attach to dmuc's tmux session, on NAME's window (the overview without NAME).
    Attach {
        /// Component.
        name: Option<String>,
    },
    /// Validate a config file offline (same output as `dmucd --config FILE --check`).
    Check {
        /// The config file.
        file: PathBuf,
        /// Replace a `[vars]` value, as `dmucd --var` does (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = dmuc_config::parse_var)]
        vars: Vec<(String, String)>,
    },
    /// The operator's tools (certificates, binaries, host checks, reset), run by
    /// `dmucctl-tools` (they link TLS, HTTP and tar, which the daemon verbs do not need).
    #[command(flatten)]
    Tool(dmucctl_tools::cli::ToolCmd),
    /// Print dmucctl's version and the daemon's.
    Version,
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    #[command(hide = true)]
    Man,
}

#[derive(clap::Args, Debug)]
pub struct ActionArgs {
    /// Components.
    #[arg(required = true)]
    pub names: Vec<String>,
    /// Return at once instead of waiting until done.
    #[arg(long)]
    pub no_wait: bool,
    /// Stop waiting after this long ("30s", "2m"); the operation goes on.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    dmuc_config::duration::parse_duration(s)
}
