//! dmuc's component graph: TOML text in, a validated [`Config`] out.
//!
//! # Layout
//! - [`diag`]: positioned diagnostics (`file:line:col: message` plus a hint).
//! - [`model`]: the validated types (`Component`, `Probe`, `Dependency`, ...).
//! - [`parse`]: walks the TOML document, collecting *every* problem with its position.
//! - [`graph`]: dependency graph: cycle detection (with the cycle's path), levels, order.
//! - [`duration`], [`signal`], [`expand`]: small value parsers used by `parse`.
//! - [`paths`]: default daemon paths for root and non-root users.
//! - [`tmux`]: which tmux releases dmucd's in-process tmux client speaks to.
//!
//! Nothing here touches the file system, the environment or the clock: the caller passes
//! the text, the file name and an environment lookup. That keeps every rule a unit test.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod diag;
pub mod duration;
pub mod expand;
pub mod file;
pub mod graph;
pub mod model;
pub mod parse;
pub mod paths;
pub mod signal;
pub mod tmux;

pub use diag::{ConfigError, Diagnostic};
pub use file::{host_builtins, load_file, parse_var, summary};
pub use graph::Graph;
pub use model::*;
pub use parse::{parse_config, parse_config_full, parse_config_with};
