//! What the edges (shims, probes, tmux, the control socket, signals) tell the runtime actor:
//! the one type they all share, so that none of them depends on the actor.

use dmuc_core::ProbeRole;

use crate::backend::Pane;
use crate::conn::Conn;
use crate::shimline::{ShimTx, ShimWhat};

/// Messages from the edges to the actor.
#[derive(Debug)]
pub enum Msg {
    /// A shim said something.
    Shim {
        /// Component name.
        name: String,
        /// Run number.
        run: u64,
        /// What.
        what: ShimWhat,
    },
    /// A probe's verdict changed.
    Probe {
        /// Component name.
        comp: String,
        /// Run number.
        run: u64,
        /// Which probe.
        role: ProbeRole,
        /// The verdict.
        ok: bool,
        /// The last failure, if any.
        detail: Option<String>,
    },
    /// A launch failed before its shim could run (the spec not written, no fork).
    LaunchFailed {
        /// Component name (a reload may renumber components meanwhile).
        comp: String,
        /// Run number.
        run: u64,
        /// Why.
        error: String,
    },
    /// A window to show a running component's output again is open (or not).
    ViewOpened {
        /// Component name.
        comp: String,
        /// Which tmux server it was opened on.
        server: u64,
        /// Its pane and terminal, or why not.
        result: Result<(Pane, std::os::fd::OwnedFd), String>,
    },
    /// A shim connected (or started a new run on its connection).
    ShimLink {
        /// Component name.
        name: String,
        /// Run number.
        run: u64,
        /// Connection id.
        link: u64,
        /// The shim's PID (its `hello` says it).
        pid: Option<u32>,
        /// Lines to the shim.
        tx: ShimTx,
    },
    /// A shim's connection closed.
    ShimClosed {
        /// Component name.
        name: String,
        /// Connection id.
        link: u64,
    },
    /// SIGTERM/SIGINT: the first stops in order, the second forces.
    Stop,
    /// A request from the control socket, already authorized.
    Control {
        /// Where to answer.
        conn: Conn,
        /// The request.
        req: dmuc_proto::Request,
    },
    /// SIGHUP: reload the config (as `dmucctl reload`; the outcome goes to the log).
    Reload,
    /// A control connection ended: its waits and streams end too.
    ConnClosed {
        /// Connection id.
        conn: u64,
    },
    /// The machine's processes, read off the actor for the watched Overview.
    Usage(dmuc_procfs::Snapshot),
}
