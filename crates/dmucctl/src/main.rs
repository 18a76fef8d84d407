//! `dmucctl`: the thin client of dmucd. It parses arguments, sends one request, prints the
//! reply; all logic lives in the daemon. The offline tools of a cluster operator live here
//! too: `check` (config validation), `pki` (certificates and kubeconfigs).
//!
//! Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 daemon not reachable.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod client;
mod fetch;
mod host;
mod pki;
mod render;

use std::io::{IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};
use dmuc_proto::{
    Action, ActionResult, ErrorCode, EventRecord, GraphResult, StatusResult, StreamItem, Verb,
};
use serde_json::Value;

use client::{CallError, Client};
use render::Style;

/// Control dmucd, the dmuc supervisor: status, start/stop/restart, logs, events, attach.
#[derive(Parser, Debug)]
#[command(name = "dmucctl", version, propagate_version = true)]
struct Cli {
    /// The daemon's control socket [default: /run/dmuc/dmucd.sock for root,
    /// $XDG_RUNTIME_DIR/dmuc/dmucd.sock otherwise].
    #[arg(long, global = true, env = "DMUC_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Show components: state, PID, uptime, restarts, readiness, last exit, reason.
    Status {
        /// Only these components.
        names: Vec<String>,
        /// Print the daemon's JSON reply (for scripts).
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Keep the table on screen, redrawn on every event (the tmux overview window).
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Start components (and what they depend on first); waits until they are up.
    Start(ActionArgs),
    /// Stop components (and what depends on them first); waits until they are down.
    Stop(ActionArgs),
    /// Restart components; waits until their new run is up.
    Restart(ActionArgs),
    /// Send a signal to a component's main process.
    Signal {
        /// Component.
        name: String,
        /// Signal: SIGHUP, HUP or 1.
        signal: String,
        /// Signal the whole process group.
        #[arg(long)]
        group: bool,
    },
    /// Print a component's log (from its log files, so it spans restarts).
    Logs {
        /// Component.
        name: String,
        /// Lines to print from the end.
        #[arg(short = 'n', long, default_value_t = 10)]
        lines: usize,
        /// Keep printing what it writes next.
        #[arg(short = 'f', long)]
        follow: bool,
    },
    /// Print the event log: state changes, exits, probe verdicts.
    Events {
        /// Keep printing new events.
        #[arg(short = 'f', long)]
        follow: bool,
        /// Only events after this sequence number (resume where you left off).
        #[arg(long, value_name = "SEQ")]
        since: Option<u64>,
        /// One JSON record per line.
        #[arg(long)]
        json: bool,
    },
    /// Show the dependency graph with live states.
    Graph {
        /// Graphviz dot output.
        #[arg(long)]
        dot: bool,
    },
    /// Re-read the config file and apply the difference: new components start, removed ones
    /// stop, changed ones restart, the others keep running untouched.
    Reload {
        /// Print the plan without acting.
        #[arg(long)]
        dry_run: bool,
    },
    /// Stop every component in reverse dependency order; dmucd then exits.
    Shutdown {
        /// Return once the shutdown has begun.
        #[arg(long)]
        no_wait: bool,
    },
    /// Attach to dmuc's tmux session, on NAME's window (the overview without NAME).
    Attach {
        /// Component.
        name: Option<String>,
    },
    /// Validate a config file offline (same output as `dmucd --config FILE --check`).
    Check {
        /// The config file.
        file: PathBuf,
        /// Replace a `[vars]` value, as `dmucd --var` does (repeatable).
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = dmuc_config::parse_var)]
        vars: Vec<(String, String)>,
    },
    /// Certificates, keys and kubeconfigs for config/cluster.toml.
    Pki {
        #[command(subcommand)]
        cmd: PkiCmd,
    },
    /// Download the official binaries, verify their checksums, install them (all or nothing).
    Fetch(FetchArgs),
    /// Check this host for config/cluster.toml: binaries and versions, ports, swap, kernel
    /// modules, sysctls, cgroups, capabilities, node address; each problem says how to fix it.
    Doctor {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Read the host under this directory instead of / (for tests and chroots).
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
        /// Do not try to bind the cluster's ports.
        #[arg(long)]
        no_ports: bool,
    },
    /// Tear the node down between attempts (as kubeadm reset): stop dmucd, then remove the
    /// state directory and what the components leave elsewhere, the CNI bridge, the
    /// kube-proxy and CNI iptables chains and the pod cgroups. Asks first.
    Reset {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Keep the certificates and kubeconfigs (STATE/pki).
        #[arg(long)]
        keep_pki: bool,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Work under this directory instead of / (host networking is then left alone).
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
    },
    /// Print dmucctl's version and the daemon's.
    Version,
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff) on stdout.
    #[command(hide = true)]
    Man,
}

#[derive(clap::Args, Debug)]
struct ProfileArgs {
    /// The cluster profile whose [vars] (bin, cni-bin, state, node-ip) to use.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Replace a `[vars]` value of the profile (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = dmuc_config::parse_var)]
    vars: Vec<(String, String)>,
}

impl ProfileArgs {
    /// The profile's variables (or the built-in ones and the --var values without a profile).
    fn vars(&self) -> Result<std::collections::BTreeMap<String, String>, String> {
        let over: std::collections::BTreeMap<String, String> = self.vars.iter().cloned().collect();
        match &self.config {
            Some(f) => dmuc_config::load_file(f, &over).map(|c| c.vars),
            None => {
                let mut v = dmuc_config::host_builtins();
                v.extend(over);
                Ok(v)
            }
        }
    }
}

#[derive(clap::Args, Debug)]
struct FetchArgs {
    /// Kubernetes: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
    /// kubectl (`v1.34.2`; `1.34` or `v1.34.x` means the latest 1.34 patch release).
    #[arg(long, value_name = "VERSION")]
    kubernetes: Option<String>,
    /// etcd and etcdctl (`v3.6.5`).
    #[arg(long, value_name = "VERSION")]
    etcd: Option<String>,
    /// containerd, containerd-shim-runc-v2, ctr (`2.1.4`).
    #[arg(long, value_name = "VERSION")]
    containerd: Option<String>,
    /// runc (`1.3.1`).
    #[arg(long, value_name = "VERSION")]
    runc: Option<String>,
    /// CNI plugins bridge, host-local, loopback, portmap (`1.7.1`), into --cni-dir.
    #[arg(long, value_name = "VERSION")]
    cni: Option<String>,
    /// Where the programs go.
    #[arg(long, value_name = "DIR", default_value = "/usr/local/bin")]
    dir: PathBuf,
    /// Where the CNI plugins go.
    #[arg(long, value_name = "DIR", default_value = "/opt/cni/bin")]
    cni_dir: PathBuf,
    /// Base URL of the Kubernetes releases (a mirror, or an air-gapped host).
    #[arg(long, value_name = "URL", default_value = "https://dl.k8s.io")]
    kubernetes_url: String,
    /// Base URL of the GitHub releases of etcd, containerd, runc and the CNI plugins.
    #[arg(long, value_name = "URL", default_value = "https://github.com")]
    github_url: String,
    /// Architecture [default: this machine's].
    #[arg(long, value_name = "ARCH")]
    arch: Option<String>,
}

#[derive(Subcommand, Debug)]
enum PkiCmd {
    /// Generate what is missing: CA, apiserver and kubelet serving certs, client certs
    /// (admin, controller-manager, scheduler, kubelet, kube-proxy, apiserver→kubelet), the
    /// service-account key pair, and a kubeconfig per client. Existing files are kept.
    Init {
        #[command(flatten)]
        pki: PkiArgs,
        /// Replace existing files (a new CA and everything signed by it).
        #[arg(long)]
        force: bool,
    },
    /// Report expiry, chain, identity and SAN problems of the files in DIR (exit 1 if any).
    Check {
        #[command(flatten)]
        pki: PkiArgs,
    },
}

#[derive(clap::Args, Debug)]
struct PkiArgs {
    /// Where the files are.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The node's name [default: this host's name, lowercased].
    #[arg(long, value_name = "NAME")]
    node_name: Option<String>,
    /// The node's IPv4 address [default: the default route's source address].
    #[arg(long, value_name = "IP")]
    node_ip: Option<std::net::Ipv4Addr>,
    /// Cluster name in the kubeconfigs.
    #[arg(long, default_value = "dmuc")]
    cluster_name: String,
    /// Service CIDR (its first address, the `kubernetes` Service, goes in the apiserver's SANs).
    #[arg(long, default_value = "10.96.0.0/12")]
    service_cidr: String,
    /// Validity of the certificates, days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Validity of the CA, days.
    #[arg(long, default_value_t = 3650)]
    ca_days: u32,
}

impl PkiArgs {
    fn options(self, force: bool) -> pki::Options {
        let host = dmuc_config::host_builtins();
        pki::Options {
            dir: self.dir,
            node_name: self
                .node_name
                .unwrap_or_else(|| host.get("hostname").cloned().unwrap_or_default()),
            node_ip: self.node_ip.unwrap_or_else(|| {
                host.get("host-ip")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(std::net::Ipv4Addr::LOCALHOST)
            }),
            cluster_name: self.cluster_name,
            service_cidr: self.service_cidr,
            days: self.days,
            ca_days: self.ca_days,
            force,
        }
    }
}

#[derive(clap::Args, Debug)]
struct ActionArgs {
    /// Components.
    #[arg(required = true)]
    names: Vec<String>,
    /// Return at once instead of waiting until done.
    #[arg(long)]
    no_wait: bool,
    /// Stop waiting after this long ("30s", "2m"); the operation goes on.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_duration)]
    timeout: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    dmuc_config::duration::parse_duration(s)
}

const OK: u8 = 0;
const FAILED: u8 = 1;
const UNREACHABLE: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let socket = cli.socket.clone().unwrap_or_else(default_socket);
    let code = match run(cli.cmd, &socket, style) {
        Ok(c) => c,
        Err(e) => report(&e),
    };
    ExitCode::from(code)
}

fn default_socket() -> PathBuf {
    let uid = nix::unistd::geteuid();
    let env = dmuc_config::paths::PathEnv {
        is_root: uid.is_root(),
        uid: uid.as_raw(),
        xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from),
        xdg_state_home: None,
        home: None,
    };
    dmuc_config::paths::Paths::defaults(&env).socket
}

fn report(e: &CallError) -> u8 {
    match e {
        CallError::Unreachable { path, err } => {
            eprintln!("dmucctl: cannot reach dmucd at {}: {err}", path.display());
            eprintln!(
                "hint: is dmucd running? Start it with `dmucd --config FILE`, or point at its socket with --socket or DMUC_SOCKET"
            );
            UNREACHABLE
        }
        CallError::Remote(r) => {
            eprintln!("dmucctl: {}", r.message);
            if let Some(h) = &r.hint {
                eprintln!("hint: {h}");
            }
            FAILED
        }
        CallError::Broken(m) => {
            eprintln!("dmucctl: {m}");
            FAILED
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CallError> {
    serde_json::from_value(v).map_err(|e| CallError::Broken(format!("unexpected reply: {e}")))
}

fn run(cmd: Cmd, socket: &Path, style: Style) -> Result<u8, CallError> {
    let mut out = std::io::stdout().lock();
    match cmd {
        Cmd::Check { file, vars } => {
            let vars = vars.into_iter().collect();
            return Ok(match dmuc_config::load_file(&file, &vars) {
                Ok(cfg) => {
                    print!("{}", dmuc_config::summary(&cfg));
                    OK
                }
                Err(e) => {
                    eprintln!("{e}");
                    FAILED
                }
            });
        }
        Cmd::Pki { cmd } => return Ok(pki_cmd(cmd)),
        Cmd::Fetch(args) => return Ok(fetch_cmd(args)),
        Cmd::Doctor {
            profile,
            root,
            no_ports,
        } => return Ok(doctor_cmd(&profile, root, !no_ports)),
        Cmd::Reset {
            profile,
            keep_pki,
            yes,
            root,
        } => return Ok(reset_cmd(&profile, keep_pki, yes, root, socket)),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "dmucctl", &mut out);
            return Ok(OK);
        }
        Cmd::Man => {
            let _ = clap_mangen::Man::new(Cli::command()).render(&mut out);
            return Ok(OK);
        }
        Cmd::Version => {
            println!(
                "dmucctl {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                dmuc_proto::VERSION
            );
            match Client::connect(socket).and_then(|mut c| c.hello().cloned()) {
                Ok(h) => println!("{} (protocol {}, pid {})", h.server, h.version, h.pid),
                Err(CallError::Unreachable { .. }) => {
                    println!("dmucd: not reachable at {}", socket.display())
                }
                Err(e) => return Err(e),
            }
            return Ok(OK);
        }
        _ => {}
    }
    let mut c = Client::connect(socket)?;
    match cmd {
        Cmd::Status { names, watch, .. } if watch => return watch_status(c, socket, names, style),
        Cmd::Status { names, json, .. } => {
            if json {
                let v = c.call(Verb::Status { names, text: None })?;
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                );
            } else {
                let s: StatusResult = c.call_as(Verb::Status { names, text: None })?;
                let _ = write!(out, "{}", dmuc_proto::render::status_text(&s, style));
            }
        }
        Cmd::Start(a) => return action(&mut c, Verb::Start, a, style),
        Cmd::Stop(a) => return action(&mut c, Verb::Stop, a, style),
        Cmd::Restart(a) => return action(&mut c, Verb::Restart, a, style),
        Cmd::Signal {
            name,
            signal,
            group,
        } => {
            let v = c.call(Verb::Signal {
                name: name.clone(),
                signal,
                group,
            })?;
            let _ = writeln!(
                out,
                "{name}: sent {} to {}{}",
                v["signal"].as_str().unwrap_or("?"),
                if group { "process group " } else { "pid " },
                v["pid"]
            );
        }
        Cmd::Logs {
            name,
            lines,
            follow,
        } => {
            let verb = Verb::Logs {
                name,
                lines: Some(lines),
                follow,
            };
            let v = c.stream(verb, |item| {
                if let StreamItem::Lines(ls) = item {
                    for l in ls {
                        if writeln!(out, "{l}").is_err() {
                            return false; // stdout closed (| head)
                        }
                    }
                    let _ = out.flush();
                }
                true
            })?;
            if let Some(n) = v["truncated"].as_u64().filter(|&n| n > 0) {
                eprintln!(
                    "dmucctl: {n} older lines left out (one reply holds about 700 KiB); the log files have them all"
                );
            }
            for l in v["lines"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "{}", l.as_str().unwrap_or_default());
            }
        }
        Cmd::Events {
            follow,
            since,
            json,
        } => {
            let mut print = |e: &EventRecord| -> bool {
                let line = if json {
                    serde_json::to_string(e).unwrap_or_default()
                } else {
                    render::event_line(e, style)
                };
                let ok = writeln!(out, "{line}").is_ok();
                let _ = out.flush();
                ok
            };
            let v = c.stream(Verb::Events { since, follow }, |item| match item {
                StreamItem::Event(e) => print(&e),
                StreamItem::Dropped(n) => {
                    eprintln!("dmucctl: {n} events dropped (this terminal read too slowly); `dmucctl events --since SEQ` has them");
                    true
                }
                StreamItem::Lines(_) => true,
            })?;
            let events: Vec<EventRecord> =
                parse(v.get("events").cloned().unwrap_or(Value::Array(vec![])))?;
            for e in &events {
                print(e);
            }
        }
        Cmd::Graph { dot } => {
            let g: GraphResult = parse(c.call(Verb::Graph {})?)?;
            let text = if dot {
                render::graph_dot(&g)
            } else {
                render::graph_text(&g, style)
            };
            let _ = write!(out, "{text}");
        }
        Cmd::Reload { dry_run } => {
            let r: dmuc_proto::ReloadResult = parse(c.call(Verb::Reload { dry_run })?)?;
            let _ = write!(out, "{}", render::reload_plan(&r, dry_run));
        }
        Cmd::Shutdown { no_wait } => {
            c.call(Verb::Shutdown {})?;
            let pid = c.hello()?.pid;
            if no_wait {
                let _ = writeln!(out, "dmucd (pid {pid}) is shutting down");
            } else {
                let _ = writeln!(out, "dmucd (pid {pid}) is stopping every component...");
                let _ = out.flush();
                c.wait_closed();
                let _ = writeln!(out, "dmucd stopped");
            }
        }
        Cmd::Attach { name } => {
            let s: StatusResult = parse(c.call(Verb::Status {
                names: name.iter().cloned().collect(),
                text: None,
            })?)?;
            let target = match &name {
                Some(n) => format!("={}:={n}", s.daemon.session),
                None => format!("={}:=Overview", s.daemon.session),
            };
            drop(c);
            let err = std::process::Command::new(tmux_program())
                .arg("-S")
                .arg(&s.daemon.tmux_socket)
                .args(["attach-session", "-t", &target])
                // Inside another tmux, attaching to ours is what the operator asked for.
                .env_remove("TMUX")
                .exec();
            eprintln!("dmucctl: cannot run tmux: {err}");
            return Ok(FAILED);
        }
        Cmd::Check { .. }
        | Cmd::Pki { .. }
        | Cmd::Fetch(_)
        | Cmd::Doctor { .. }
        | Cmd::Reset { .. }
        | Cmd::Completions { .. }
        | Cmd::Man
        | Cmd::Version => {}
    }
    Ok(OK)
}

/// The tmux dmucd runs: `DMUC_TMUX`, else `tmux` on PATH (as `dmuc_tmux::program`).
fn tmux_program() -> std::ffi::OsString {
    std::env::var_os("DMUC_TMUX")
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "tmux".into())
}

fn doctor_cmd(profile: &ProfileArgs, root: PathBuf, ports: bool) -> u8 {
    let vars = match profile.vars() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return FAILED;
        }
    };
    let var = |k: &str, d: &str| vars.get(k).cloned().unwrap_or_else(|| d.to_string());
    let input = host::DoctorInput {
        root,
        bin: var("bin", "/usr/local/bin").into(),
        cni_bin: var("cni-bin", "/opt/cni/bin").into(),
        node_ip: var("node-ip", &var("host-ip", "")),
        is_root: nix::unistd::geteuid().is_root(),
        check_ports: ports,
        tmux_version: std::process::Command::new(tmux_program())
            .arg("-V")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned()),
    };
    let checks = host::doctor(&input);
    let mut fails = 0;
    for c in &checks {
        let mark = match c.level {
            host::Level::Ok => "ok  ",
            host::Level::Warn => "warn",
            host::Level::Fail => {
                fails += 1;
                "FAIL"
            }
        };
        println!("{mark}  {:<42} {}", c.what, c.found);
        if let Some(f) = &c.fix
            && c.level != host::Level::Ok
        {
            println!("      fix: {f}");
        }
    }
    if fails > 0 {
        eprintln!("dmucctl: doctor: {fails} problems to fix before the cluster can run");
        FAILED
    } else {
        OK
    }
}

fn reset_cmd(profile: &ProfileArgs, keep_pki: bool, yes: bool, root: PathBuf, socket: &Path) -> u8 {
    let vars = match profile.vars() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return FAILED;
        }
    };
    let state = PathBuf::from(vars.get("state").map_or("/var/lib/dmuc", String::as_str));
    // A running daemon would restart what we remove: stop it (and the cluster) first.
    if let Ok(mut c) = Client::connect(socket) {
        let pid = c.hello().map_or(0, |h| h.pid);
        let q = format!("dmucd (pid {pid}) is running: stop it and every component?");
        if !yes && !host::confirm(&q) {
            eprintln!("dmucctl: reset: nothing done");
            return FAILED;
        }
        if let Err(e) = c.call(Verb::Shutdown {}) {
            return report(&e);
        }
        c.wait_closed();
        println!("stopped dmucd and every component");
    }
    let keep: &[&str] = if keep_pki { &["pki"] } else { &[] };
    let var = |k: &str, d: &str| PathBuf::from(vars.get(k).map_or(d, String::as_str));
    let (socket, bin) = (
        var("containerd-socket", "/run/containerd/containerd.sock"),
        var("bin", "/usr/local/bin"),
    );
    let plan = host::reset_plan(&host::ResetInput {
        root: &root,
        state: &state,
        keep,
        containerd_socket: &socket,
        bin: &bin,
    });
    if plan.is_empty() {
        println!("nothing to remove");
        return OK;
    }
    println!("reset will remove:");
    for p in &plan.paths {
        println!("  {}", p.display());
    }
    if !plan.shims.is_empty() {
        println!(
            "  {} containerd shims of {} (and their containers)",
            plan.shims.len(),
            socket.display()
        );
    }
    if !plan.cgroups.is_empty() {
        println!(
            "  {} pod cgroups (their processes are killed)",
            plan.cgroups.len()
        );
    }
    if plan.network {
        println!("  the cni0 bridge and the KUBE-*/CNI-* iptables and ip6tables chains");
    }
    if !yes && !host::confirm("Remove all this?") {
        eprintln!("dmucctl: reset: nothing removed");
        return FAILED;
    }
    let mut failed = 0;
    for step in host::reset(&plan) {
        match step {
            Ok(line) => println!("{line}"),
            Err(line) => {
                failed += 1;
                eprintln!("dmucctl: reset: {line}");
            }
        }
    }
    if failed > 0 {
        eprintln!("dmucctl: reset: {failed} steps failed (above); run it again once fixed");
        return FAILED;
    }
    OK
}

fn fetch_cmd(a: FetchArgs) -> u8 {
    let mut versions = fetch::Versions {
        kubernetes: a.kubernetes,
        etcd: a.etcd,
        containerd: a.containerd,
        runc: a.runc,
        cni: a.cni,
    };
    if versions.kubernetes.is_none()
        && versions.etcd.is_none()
        && versions.containerd.is_none()
        && versions.runc.is_none()
        && versions.cni.is_none()
    {
        eprintln!(
            "dmucctl: fetch: name at least one of --kubernetes, --etcd, --containerd, --runc, --cni"
        );
        eprintln!(
            "hint: e.g. dmucctl fetch --kubernetes 1.34 --etcd v3.6.5 --containerd 2.1.4 --runc 1.3.1 --cni 1.7.1"
        );
        return 2;
    }
    if let Some(k) = &versions.kubernetes {
        match fetch::resolve_kubernetes(&a.kubernetes_url, k) {
            Ok(v) => versions.kubernetes = Some(v),
            Err(e) => {
                eprintln!("dmucctl: fetch: {e}");
                return FAILED;
            }
        }
    }
    let bases = fetch::Bases {
        kubernetes: a.kubernetes_url,
        github: a.github_url,
    };
    let arch = a.arch.unwrap_or_else(|| fetch::host_arch().to_string());
    let plan = fetch::plan(&versions, &bases, &arch, &a.dir, &a.cni_dir);
    let staging = a.dir.join(".dmuc-fetch");
    match fetch::run(&plan, &staging, &fetch::Progress::new()) {
        Ok(installed) => {
            for p in &installed {
                println!("installed {}", p.display());
            }
            println!("{} files installed", installed.len());
            OK
        }
        Err(e) => {
            eprintln!("dmucctl: fetch: {e}");
            FAILED
        }
    }
}

fn pki_cmd(cmd: PkiCmd) -> u8 {
    match cmd {
        PkiCmd::Init { pki: args, force } => {
            let o = args.options(force);
            match pki::init(&o) {
                Ok(done) => {
                    let created = done
                        .iter()
                        .filter(|(_, how)| *how == pki::Outcome::Created)
                        .count();
                    for (file, how) in &done {
                        let how = match how {
                            pki::Outcome::Created => "created",
                            pki::Outcome::Kept => "kept (exists; --force replaces it)",
                        };
                        println!("{:<40} {how}", o.dir.join(file).display());
                    }
                    println!(
                        "{created} files created, {} kept, for node {} ({})",
                        done.len() - created,
                        o.node_name,
                        o.node_ip
                    );
                    OK
                }
                Err(e) => {
                    eprintln!("dmucctl: pki init: {e}");
                    FAILED
                }
            }
        }
        PkiCmd::Check { pki: args } => {
            let o = args.options(false);
            match pki::check(&o) {
                Ok(findings) => {
                    let mut bad = 0;
                    for f in &findings {
                        let left = f.days_left.map_or("-".to_string(), |d| format!("{d} days"));
                        let status = if f.problems.is_empty() {
                            "ok".to_string()
                        } else {
                            bad += 1;
                            f.problems.join("; ")
                        };
                        println!("{:<34} {left:>10}  {status}", f.file);
                    }
                    if bad > 0 {
                        eprintln!("dmucctl: {bad} files with problems in {}", o.dir.display());
                        FAILED
                    } else {
                        OK
                    }
                }
                Err(e) => {
                    eprintln!("dmucctl: pki check: {e}");
                    FAILED
                }
            }
        }
    }
}

/// `status --watch`: redraws the table whenever an event arrives (and every second, for
/// the uptimes), until the daemon goes away.
fn watch_status(
    mut c: Client,
    socket: &Path,
    names: Vec<String>,
    style: Style,
) -> Result<u8, CallError> {
    let mut follow = Client::connect(socket)?;
    follow.hello()?; // its reply must not count as an event below
    follow.send(Verb::Events {
        since: None,
        follow: true,
    })?;
    let mut out = std::io::stdout().lock();
    let mut fetch = true;
    let mut s: Option<(StatusResult, std::time::Instant)> = None;
    loop {
        if fetch || s.is_none() {
            let reply = c.call(Verb::Status {
                names: names.clone(),
                text: None,
            });
            // A shutdown sends events and then closes both connections: the status asked
            // for after the last event may meet a closed socket. That is the daemon going
            // away (the normal end) when the event stream ends too.
            if let Err(CallError::Broken(_)) = &reply
                && follow_ends(&mut follow)?
            {
                return Ok(OK);
            }
            let st: StatusResult = parse(reply?)?;
            s = Some((st, std::time::Instant::now()));
        }
        let Some((st, at)) = &s else { continue };
        // Between events only the clock moves: age the uptimes here rather than ask dmucd
        // again, so a watching overview costs the daemon no wakeups.
        let age = at.elapsed().as_millis() as u64;
        let mut comps = st.components.clone();
        for c in &mut comps {
            c.uptime_ms = c.uptime_ms.map(|u| u + age);
        }
        let up = comps.iter().filter(|c| c.state.is_up()).count();
        let _ = write!(out, "\x1b[H\x1b[2J");
        let _ = writeln!(
            out,
            "dmuc: {up}/{} up · dmucd pid {} · up {}{}\n",
            comps.len(),
            st.daemon.pid,
            render::duration(st.daemon.uptime_ms + age),
            if st.daemon.stopping {
                " · shutting down"
            } else {
                ""
            }
        );
        let _ = write!(out, "{}", render::status_table(&comps, style));
        let _ = writeln!(
            out,
            "\nC-b w: windows · C-b n/p: next/previous · dmucctl logs -f NAME · dmucctl events -f"
        );
        let _ = out.flush();
        // Wait for an event, then take whatever else is queued before fetching again.
        fetch = false;
        let mut timeout = Duration::from_secs(1);
        loop {
            match follow.frame_within(Some(timeout))? {
                None => break,
                Some(None) => return Ok(OK),
                Some(Some(_)) => {
                    fetch = true;
                    timeout = Duration::from_millis(20);
                }
            }
        }
    }
}

/// Whether the event stream ends (the daemon closed it) within a short deadline.
fn follow_ends(follow: &mut Client) -> Result<bool, CallError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        match follow.frame_within(Some(left)) {
            Ok(None) => return Ok(false),
            Ok(Some(None)) | Err(CallError::Broken(_)) => return Ok(true),
            Ok(Some(Some(_))) => {}
            Err(e) => return Err(e),
        }
    }
}

fn action(
    c: &mut Client,
    make: fn(Action) -> Verb,
    a: ActionArgs,
    style: Style,
) -> Result<u8, CallError> {
    let verb = make(Action {
        names: a.names,
        wait: !a.no_wait,
        timeout_ms: Some(a.timeout.as_millis() as u64),
    });
    let print_changes = |v: &Value| {
        let changes: Vec<EventRecord> = serde_json::from_value(v.clone()).unwrap_or_default();
        for e in &changes {
            println!("{}", render::event_line(e, style));
        }
    };
    match c.call(verb) {
        Ok(v) => {
            let r: ActionResult = parse(v)?;
            if r.done {
                for e in &r.changes {
                    println!("{}", render::event_line(e, style));
                }
                println!("done");
            } else {
                println!("requested");
            }
            Ok(OK)
        }
        Err(CallError::Remote(e)) if matches!(e.code, ErrorCode::Failed | ErrorCode::Timeout) => {
            if let Some(d) = &e.data {
                print_changes(d);
            }
            Err(CallError::Remote(e))
        }
        Err(e) => Err(e),
    }
}
