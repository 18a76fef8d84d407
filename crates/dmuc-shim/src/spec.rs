//! The launch spec: everything the shim needs to start one run of a component. The daemon
//! writes it to a file and the pane runs `dmucd shim --spec FILE --run N`, which keeps the
//! tmux command line short and free of quoting problems (env values may hold newlines).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One component's launch parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LaunchSpec {
    /// Component name.
    pub name: String,
    /// argv of the real program.
    pub argv: Vec<String>,
    /// The complete environment of the program.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// User to run as.
    pub user: Option<String>,
    /// Group to run as.
    pub group: Option<String>,
    /// Log file.
    pub log_path: PathBuf,
    /// Rotate at this size.
    pub log_max_size: u64,
    /// Rotated files kept.
    pub log_keep: u32,
    /// Kill the program's whole process group when it exits (stop scope `group`).
    pub kill_group: bool,
    /// The daemon's shim socket.
    pub shim_socket: PathBuf,
    /// Report the first output line matching this regex (a `log` ready probe).
    pub ready_log: Option<String>,
}
