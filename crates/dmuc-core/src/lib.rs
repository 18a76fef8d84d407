//! The supervisor's brain: a pure state machine over the component graph.
//!
//! # Theory of operation
//! [`Supervisor`] holds one [`Unit`] per component: its [`State`], whether the operator wants
//! it up, its run number and its restart bookkeeping. The runtime feeds it [`Input`]s (facts
//! such as "run 3 of etcd exited with status 1", timer expiries, probe verdicts, operator
//! requests) together with the current time, and gets back [`Effect`]s to carry out (launch,
//! signal, arm a timer, start a probe, publish an event). It never reads a clock or touches a
//! process, so every ordering, restart and backoff rule is a table test.
//!
//! After each input the machine *reconciles*: components wanted up whose dependencies meet
//! their conditions are launched (all of them at once, so independent components start
//! concurrently); components wanted down are stopped once nothing that depends on them is
//! still active, which gives reverse-dependency stop order for free.
//!
//! Facts carry the run number they belong to; a fact about an older run (a late exit report,
//! a probe verdict from before a restart) is ignored. Timers carry a token for the same reason.
//!
//! # Layout
//! - [`state`]: `State`, `ExitStatus`, `Unit`.
//! - [`machine`]: `Supervisor`, `Input`, `Effect`, `Event`.
//! - [`probe`]: threshold counting for probe results.
//! - [`wait`]: when an operator request is done.
//! - [`reload`]: reload by diff.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod machine;
pub mod probe;
pub mod reload;
pub mod state;
#[cfg(test)]
pub(crate) mod testkit;
pub mod wait;

pub use machine::{Effect, Event, Input, ProbeRole, Request, Supervisor};
pub use probe::ProbeCounter;
pub use state::{Adopted, ExitStatus, State, Unit};
pub use wait::{Verdict, Wait, WaitKind};
