//! `dmucctl-tools`: runs `dmucctl pki|fetch|doctor|reset ...`, which dmucctl-full hands over
//! with the same command line (and `dmucctl` as the program name).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// dmucctl's operator tools.
#[derive(Parser, Debug)]
#[command(name = "dmucctl", version)]
struct Cli {
    /// The daemon's control socket (`reset` stops the daemon first).
    #[arg(long, global = true, env = "DMUC_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: dmucctl_tools::cli::ToolCmd,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let socket = cli.socket.unwrap_or_else(dmuc_client::default_socket);
    ExitCode::from(dmucctl_tools::cli::run(cli.cmd, &socket))
}
