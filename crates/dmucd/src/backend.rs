//! The edge the runtime acts on: shims to start, windows to show components in, and
//! processes to signal. [`Tmux`] is the real one; tests drive the runtime with a fake (`fake`).

use std::future::Future;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::pin::Pin;

use nix::sys::signal::Signal;

mod shims;
mod tmux;

#[cfg(test)]
pub(crate) mod fake;

pub use tmux::{CTL_SESSION, OVERVIEW, Tmux, find_shim};

/// A backend's answer, `'static` so that many can be in flight at once.
pub type Reply<T> = Pin<Box<dyn Future<Output = Result<T, String>> + Send>>;

/// What the runtime needs of the world outside its state: one call per effect.
pub trait Backend: Send + 'static {
    /// Starts run `run` of a component from its launch spec: its shim, in a session of its
    /// own and without a window (it asks for one: `open_view`).
    fn launch(&self, spec: &Path, run: u64) -> Result<(), String>;

    /// Opens a window for `name` whose shim (PID `shim`, when known) runs without one,
    /// reusing `pane` if it still exists; returns its pane and its terminal, for the shim to
    /// show the output on.
    fn open_view(
        &self,
        name: &str,
        pane: Option<&Pane>,
        shim: Option<u32>,
    ) -> Reply<(Pane, OwnedFd)>;

    /// Shows `(window, mark)` state marks and, when it changed, the summary line.
    fn show(&self, marks: &[(String, String)], summary: Option<&str>);

    /// Draws the overview window's table.
    fn draw_overview(&mut self, text: &str);

    /// Closes a window (of a component a reload removed).
    fn close_window(&self, pane: &Pane);

    /// Resolves with the next thing the windows' server tells: it has gone, or the Overview
    /// window started or stopped being shown to someone (cancel-safe: it is awaited in a
    /// select).
    fn note(&mut self) -> impl Future<Output = Note> + Send;

    /// Starts a new server in place of a lost one (no windows yet).
    fn replace(&mut self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Stops the server and every window (the components are stopped already).
    fn kill_server(&mut self) -> impl Future<Output = ()> + Send;

    /// Sends `signal` to process `pid` (negative: its process group).
    fn signal(&self, pid: i32, signal: Signal) -> nix::Result<()>;
}

/// What [`Backend::note`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// The server has gone.
    Lost,
    /// Whether a client now shows the Overview window: dmucd reads the components' CPU and
    /// memory for it only while one does.
    Watched(bool),
}

/// Where a component lives in tmux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pane {
    /// `@N`.
    pub window: String,
    /// `%N`.
    pub pane: String,
}

/// A component pane found in a server left by a previous dmucd.
#[derive(Debug, Clone)]
pub struct FoundPane {
    /// The pane (window and pane ids).
    pub pane: Pane,
    /// Its `@dmuc_component`.
    pub component: String,
    /// Its process has exited (remain-on-exit keeps the pane).
    pub dead: bool,
}
