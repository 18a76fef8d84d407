//! End-to-end tests: the real `dmucd` binary, a real tmux server on a private socket in a
//! temp dir, real processes (the `dmuc-standin` program and `sh`). Each test cleans up what
//! it started, by PID and by its own tmux socket. Waiting is polling with a deadline.

#![allow(clippy::unwrap_used)]

mod util;

mod adoption;
mod backup;
mod cluster;
mod control;
mod cross;
mod docs;
mod faults;
mod ha;
mod hosts;
mod lifecycle;
mod logs;
mod multinode;
mod nodes;
mod ordering;
mod profiles;
mod realcluster;
mod reload;
mod restart;
mod systemd;
mod vm;
