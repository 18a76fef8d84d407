//! The pane side of dmuc: [`shim`] (the process in each component's tmux pane), the
//! [`spec`] the daemon hands it, and the [`logfile`] it writes.
//!
//! A crate and a binary of its own, apart from `dmucd`, because one shim runs per component
//! for the cluster's lifetime: it uses no standard library and no libc ([`sys`] makes the
//! system calls, on rustix: any architecture), so each costs a few KB of private memory and
//! execs without a dynamic loader (docs/performance.md). Unit tests build it with std.

#![cfg_attr(not(test), no_std)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod logfile;
pub mod shim;
pub use dmuc_rt::{sys, text};
pub use dmuc_wire::spec;
