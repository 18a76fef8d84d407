//! `dmucd`: parse flags, set up logging, run. Hidden subcommands `shim` and `idle` are what
//! the tmux panes run (the daemon's own binary, so versions always match).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// dmuc's daemon: runs a TOML component graph, one tmux window per component.
#[derive(Parser, Debug)]
#[command(version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// The component graph.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config, print the start order and exit (0 valid, 1 invalid).
    #[arg(long)]
    check: bool,
    /// Control socket path.
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// tmux server socket path.
    #[arg(long, value_name = "PATH")]
    tmux_socket: Option<PathBuf>,
    /// Log directory.
    #[arg(long, value_name = "DIR")]
    log_dir: Option<PathBuf>,
    /// State directory.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Replace a `[vars]` value (repeatable), e.g. --var node-ip=10.0.0.5.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = dmuc_config::parse_var)]
    vars: Vec<(String, String)>,
    /// Start nothing: components start when asked (`dmucctl start NAME`), as in the tutorial.
    #[arg(long)]
    hold: bool,
    /// Print the man page (roff) on stdout (what the package installs as dmucd(8)).
    #[arg(long, hide = true)]
    man: bool,
}

fn main() -> ExitCode {
    one_malloc_arena();
    let cli = Cli::parse();
    if cli.man {
        use clap::CommandFactory as _;
        let man = clap_mangen::Man::new(Cli::command()).section("8");
        return match man.render(&mut std::io::stdout()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::from(1),
        };
    }
    let Some(path) = cli.config else {
        eprintln!("dmucd: --config FILE is required (try config/demo.toml)");
        return ExitCode::from(2);
    };
    let vars: std::collections::BTreeMap<String, String> = cli.vars.into_iter().collect();
    let cfg = match dmucd::load_config(&path, &vars) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    if cli.check {
        print!("{}", dmucd::check_summary(&cfg));
        return ExitCode::SUCCESS;
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("DMUC_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none(),
        )
        .init();
    let overrides = dmucd::Overrides {
        socket: cli.socket,
        tmux_socket: cli.tmux_socket,
        log_dir: cli.log_dir,
        state_dir: cli.state_dir,
        vars,
        hold: cli.hold,
    };
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("dmucd: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async move {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                if tx.send(()).is_err() {
                    break;
                }
            }
        });
        dmucd::run(cfg, path, overrides, rx).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmucd: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// One malloc arena for the whole daemon. glibc gives each thread that allocates its own
/// arena, which keeps what it once held: the state-file writer's arena, 18 KB in use, held
/// 300 KB resident at 100 components (`malloc_stats`). The daemon's work is one thread (the
/// runtime actor); the writer threads allocate rarely, so sharing the lock costs nothing.
fn one_malloc_arena() {
    #[cfg(target_env = "gnu")]
    // SAFETY: called first thing in main, before any other thread exists.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 1);
    }
}
