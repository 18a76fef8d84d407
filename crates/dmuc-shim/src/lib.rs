//! The pane side of dmuc: [`shim`] (the process in each component's tmux pane), the
//! [`spec`] the daemon hands it, and the [`logfile`] it writes.
//!
//! A crate and a binary of its own, apart from `dmucd`, because one shim runs per component:
//! a small binary has few relocated pages to dirty and execs faster (docs/performance.md).

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod logfile;
pub mod shim;
pub mod spec;
