//! The operator's tools of `dmucctl`: what a from-binaries node needs besides the daemon.
//! - [`pki`]: certificates, keys and kubeconfigs for config/cluster.toml (`dmucctl pki`);
//! - [`fetch`]: the official binaries, checksummed and installed (`dmucctl fetch`);
//! - [`host`]: `dmucctl doctor` (is this host ready) and `dmucctl reset` (tear the node down);
//! - [`etcd`] and [`backup`]: `dmucctl backup` and `dmucctl restore` of the cluster's etcd;
//! - [`release`]: what differs between Kubernetes releases (`dmucctl k8s-release`);
//! - [`cli`]: their command line, which dmucctl-full also shows.
//!
//! A program of its own, `dmucctl-tools`, that dmucctl-full execs for these commands: they
//! link TLS, HTTP, tar and gzip, which `dmucctl status`, `logs` or `restart` never need.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backup;
pub mod cli;
pub mod csr;
pub mod etcd;
pub mod fetch;
pub mod host;
pub mod join;
pub mod kube;
pub mod members;
pub mod pki;
pub mod release;
pub mod routes;
