//! The tools' command line, as `dmucctl` shows it (dmucctl-full flattens [`ToolCmd`] into its
//! own, for one help and one set of completions) and as `dmucctl-tools` runs it.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use dmuc_client::{Client, FAILED, OK, report, tmux_program};
use dmuc_proto::Verb;

use crate::{backup, csr, fetch, host, join, pki, routes};

/// The operator's tools.
#[derive(Subcommand, Debug)]
pub enum ToolCmd {
    /// Certificates, keys and kubeconfigs for config/cluster.toml.
    Pki {
        #[command(subcommand)]
        cmd: PkiCmd,
    },
    /// Download the official binaries, verify their checksums, install them (all or nothing).
    Fetch(FetchArgs),
    /// Check this host for config/cluster.toml (or a worker's profile, as config/worker.toml:
    /// its programs and ports, and the join's files): binaries and versions, ports, swap,
    /// kernel modules, sysctls, cgroups, capabilities, node address; each problem says how to
    /// fix it.
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
    /// Take a snapshot of the cluster's etcd through the running etcd (its client URL and
    /// certificates from its component's flags) into FILE, with FILE.sha256 beside it.
    Backup(backup::BackupArgs),
    /// Restore etcd from a snapshot: check its checksum and that it restores, stop what
    /// depends on etcd (in order) and etcd, swap the data directory (the old one is kept),
    /// start them again.
    Restore(backup::RestoreArgs),
    /// Bootstrap tokens for nodes joining the cluster.
    Token {
        #[command(subcommand)]
        cmd: TokenCmd,
    },
    /// Join this node to a cluster, with the command `dmucctl token create` printed.
    ///
    /// Discovery with the bootstrap token (cluster-info signed with the token, its CA checked
    /// against the pin), then STATE/pki/ca.crt and the kubelet's bootstrap and kube-proxy's
    /// kubeconfigs for config/worker.toml. A wrong pin or an unknown token is refused and
    /// nothing is written. With --control-plane (config/ha.toml): the CAs and the
    /// service-account key from the sealed Secret, and this member added to etcd as a learner.
    Join(join::JoinArgs),
    /// etcd membership of a control-plane member (config/ha.toml).
    Etcd {
        #[command(subcommand)]
        cmd: EtcdCmd,
    },
    /// Approve the kubelets' serving certificate requests that name only their node's own
    /// names and addresses (once, or as they come with --watch: the csr-approve component).
    CsrApprove(csr::CsrArgs),
    /// Route each other node's pod subnet via its InternalIP, from the Node objects (once,
    /// or kept in sync with --watch: the routes component of the profiles).
    Routes(routes::RoutesArgs),
    /// Find the Kubernetes release of the kubelet and the API server in --bin, check that the
    /// profiles support it (1.20 to 1.36), and write the flags and configuration lines that
    /// release takes (the node-config components run it; docs/kubernetes-versions.md).
    K8sRelease(crate::release::ReleaseArgs),
    /// Wait until this node has its pod subnet from the controller manager, and print it (for
    /// the CNI bridge's configuration).
    PodCidr(routes::PodCidrArgs),
    /// Tear the node down between attempts (as kubeadm reset): stop dmucd, then remove the
    /// state directory and what the components leave elsewhere, the CNI bridge, the
    /// kube-proxy and CNI iptables chains and the pod cgroups. Asks first.
    Reset {
        #[command(flatten)]
        profile: ProfileArgs,
        /// Keep the certificates and kubeconfigs (STATE/pki).
        #[arg(long)]
        keep_pki: bool,
        /// Remove the image archives too (the profile's `images` directory, STATE/images:
        /// what an operator put there by hand is kept otherwise).
        #[arg(long)]
        remove_images: bool,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Work under this directory instead of / (host networking is then left alone).
        #[arg(long, value_name = "DIR", default_value = "/")]
        root: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCmd {
    /// Make a bootstrap token (and, once, the RBAC and the signed cluster-info that joining
    /// needs); print the join command for the new node, with the CA's public key hash.
    Create(join::TokenArgs),
    /// The bootstrap tokens, with their expiry and usages.
    List(join::AdminArgs),
    /// Delete tokens (`ID` or `ID.SECRET`): no node can join with them any more (the nodes
    /// that did keep their certificates).
    Delete {
        #[command(flatten)]
        admin: join::AdminArgs,
        /// The tokens.
        #[arg(required = true, value_name = "TOKEN")]
        tokens: Vec<String>,
    },
}

#[derive(Subcommand, Debug)]
pub enum EtcdCmd {
    /// Make this member a voter once its etcd has caught up as a learner (nothing to do for a
    /// voter): the etcd-promote component of config/ha.toml.
    Promote(crate::members::PromoteArgs),
    /// etcd's members: name, ID, voter or learner, peer and client URLs.
    Members(crate::members::EtcdArgs),
    /// Remove a member (by name or ID) from etcd: a member that is gone for good, before its
    /// host is reset and joins again. The last voter is refused.
    Remove {
        #[command(flatten)]
        etcd: crate::members::EtcdArgs,
        /// The member's name or ID.
        #[arg(value_name = "NAME|ID")]
        member: String,
    },
}

#[derive(clap::Args, Debug)]
pub struct ProfileArgs {
    /// The cluster profile whose [vars] (bin, cni-bin, state, node-ip) to use.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Replace a `[vars]` value of the profile (repeatable).
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = dmuc_config::parse_var)]
    vars: Vec<(String, String)>,
}

impl ProfileArgs {
    /// The profile's variables (or the built-in ones and the --var values without a
    /// profile), and what the profile runs.
    fn load(&self) -> Result<(std::collections::BTreeMap<String, String>, Role), String> {
        let over: std::collections::BTreeMap<String, String> = self.vars.iter().cloned().collect();
        match &self.config {
            Some(f) => dmuc_config::load_file(f, &over).map(|c| {
                let has = |n: &str| c.graph.get(n).is_some();
                let role = match (has("kube-apiserver"), has("kubelet") || has("containerd")) {
                    (true, true) => Role::Node,
                    (false, true) => Role::Worker,
                    (true, false) => Role::Member,
                    (false, false) => Role::Other,
                };
                (c.vars, role)
            }),
            None => {
                let mut v = dmuc_config::host_builtins();
                v.extend(over);
                Ok((v, Role::Node))
            }
        }
    }
}

/// What a profile runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// A control plane and a node (config/cluster.toml), or no profile given.
    Node,
    /// A kubelet and no API server (config/worker.toml).
    Worker,
    /// An API server and no pods: one member of an HA control plane (config/ha.toml).
    Member,
    /// Neither (config/balancer.toml).
    Other,
}

impl ProfileArgs {}

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Kubernetes: kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kube-proxy,
    /// kubectl (`v1.36.2`; `1.36` or `v1.36.x` means the latest 1.36 patch release).
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
pub enum PkiCmd {
    /// Generate what is missing: CA, apiserver and kubelet serving certs, client certs
    /// (admin, controller-manager, scheduler, kubelet, kube-proxy, apiserver→kubelet), etcd's
    /// own CA with its serving, peer and apiserver client certs, the kubelets' serving CA (the
    /// node's serving cert; no API client trusts it), the service-account key pair,
    /// and a kubeconfig per client. Existing files are kept.
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
pub struct PkiArgs {
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
    /// Another name or address of the API server for its certificate (a load balancer, a
    /// DNS name; repeatable).
    #[arg(long = "san", value_name = "IP|NAME")]
    sans: Vec<String>,
    /// The control plane's user for ROLE (etcd, apiserver, controller-manager, scheduler):
    /// `init` gives it the private keys that role reads, `check` checks it owns them
    /// (repeatable).
    #[arg(long = "user", value_name = "ROLE=USER", value_parser = pki::parse_role_user)]
    users: Vec<(String, String)>,
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
            sans: self.sans,
            users: self.users,
        }
    }
}

/// Runs a tool; its exit code. `socket`: the daemon's, which `reset` stops first.
pub fn run(cmd: ToolCmd, socket: &Path) -> u8 {
    match cmd {
        ToolCmd::Pki { cmd } => pki_cmd(cmd),
        ToolCmd::Fetch(args) => fetch_cmd(args),
        ToolCmd::Doctor {
            profile,
            root,
            no_ports,
        } => doctor_cmd(&profile, root, !no_ports, socket),
        ToolCmd::Backup(a) => backup::backup(socket, a),
        ToolCmd::Token {
            cmd: TokenCmd::Create(a),
        } => join::create(a),
        ToolCmd::Token {
            cmd: TokenCmd::List(a),
        } => join::list(a),
        ToolCmd::Token {
            cmd: TokenCmd::Delete { admin, tokens },
        } => join::delete(admin, &tokens),
        ToolCmd::Join(a) => join::join(a),
        ToolCmd::Etcd {
            cmd: EtcdCmd::Promote(a),
        } => crate::members::promote(a),
        ToolCmd::Etcd {
            cmd: EtcdCmd::Members(a),
        } => crate::members::members_cmd(a),
        ToolCmd::Etcd {
            cmd: EtcdCmd::Remove { etcd, member },
        } => crate::members::remove_cmd(etcd, &member),
        ToolCmd::Routes(a) => routes::run(a),
        ToolCmd::PodCidr(a) => routes::pod_cidr(a),
        ToolCmd::K8sRelease(a) => crate::release::run(a),
        ToolCmd::CsrApprove(a) => csr::run(a),
        ToolCmd::Restore(a) => backup::restore(socket, a),
        ToolCmd::Reset {
            profile,
            keep_pki,
            remove_images,
            yes,
            root,
        } => reset_cmd(
            &profile,
            Keep {
                pki: keep_pki,
                images: !remove_images,
            },
            yes,
            root,
            socket,
        ),
    }
}

/// This node's components and their PIDs, from its dmucd (none when it does not answer).
fn running_components(socket: &Path) -> Vec<(String, u32)> {
    let Ok(mut c) = Client::connect(socket) else {
        return Vec::new();
    };
    let status: Result<dmuc_proto::StatusResult, _> = c.call_as(Verb::Status {
        names: vec![],
        text: None,
    });
    status
        .map(|s| {
            s.components
                .into_iter()
                .filter_map(|c| Some((c.name, c.pid?)))
                .collect()
        })
        .unwrap_or_default()
}

fn doctor_cmd(profile: &ProfileArgs, root: PathBuf, ports: bool, socket: &Path) -> u8 {
    let (vars, role) = match profile.load() {
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
        worker_state: (role == Role::Worker).then(|| var("state", "/var/lib/dmuc").into()),
        member: (role == Role::Member).then(|| member_readings(&vars)),
        components: running_components(socket),
        pause: vars
            .get("pause-image")
            .map(|p| (var("images", "/var/lib/dmuc/images").into(), p.clone())),
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

/// What doctor checks of an HA member's network: the balancer (each IP of
/// `apiserver-sans`) reached on :6443, and the clocks of the other members (from
/// etcd-cluster.env) and of the balancer.
fn member_readings(vars: &std::collections::BTreeMap<String, String>) -> host::MemberInput {
    use crate::members;
    let var = |k: &str| vars.get(k).cloned().unwrap_or_default();
    let sans: Vec<String> = var("apiserver-sans")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let ips: Vec<std::net::IpAddr> = sans.iter().filter_map(|s| s.parse().ok()).collect();
    let balancers = ips
        .iter()
        .map(|ip| {
            let r = std::net::TcpStream::connect_timeout(
                &(*ip, 6443).into(),
                std::time::Duration::from_secs(2),
            )
            .map(drop)
            .map_err(|e| e.to_string());
            (ip.to_string(), r)
        })
        .collect();
    // The members as etcd knows them now, when it runs here; else as this member joined.
    let state = PathBuf::from(var("state"));
    let pki = vars
        .get("pki")
        .map_or_else(|| state.join("pki"), PathBuf::from);
    let peers = match members::local_members(&pki) {
        Ok(ms) => members::peers_of(&ms, &var("node-ip")),
        Err(_) => {
            let env = std::fs::read_to_string(state.join(members::ETCD_ENV)).unwrap_or_default();
            let initial = members::env_value(&env, "ETCD_INITIAL_CLUSTER").unwrap_or_default();
            members::peers(&initial, &var("node-ip"))
        }
    };
    let mut clocks: Vec<(String, Result<i64, String>)> = peers
        .into_iter()
        .map(|(name, host)| (name, members::clock_skew(&host)))
        .collect();
    clocks.extend(
        ips.iter()
            .map(|ip| (ip.to_string(), members::clock_skew(&ip.to_string()))),
    );
    host::MemberInput {
        sans,
        balancers,
        clocks,
    }
}

impl ProfileArgs {
    /// The profile of the dmucd that runs this node, `d`: its config file and its `--var`s,
    /// with this command's. A different config (not that file, nor a copy of it), or a
    /// `--var` that says otherwise than the daemon's, is refused: reset must remove what the
    /// running node is made of, not what a default or a guess would name (a worker's
    /// `cgroup-root` missing, and reset would offer to kill the pods of the control plane
    /// sharing the machine).
    fn as_run_by(&self, d: &dmuc_proto::DaemonInfo) -> Result<ProfileArgs, String> {
        let theirs = PathBuf::from(&d.config);
        if let Some(mine) = &self.config {
            // The same file, or a copy of it (the same profile).
            let same = match (mine.canonicalize(), theirs.canonicalize()) {
                (Ok(a), Ok(b)) => a == b,
                _ => *mine == theirs,
            } || matches!((std::fs::read(mine), std::fs::read(&theirs)), (Ok(a), Ok(b)) if a == b);
            if !same {
                return Err(format!(
                    "dmucd (pid {}) runs {}, not {}: reset the node it runs with --config {} (or stop it first)",
                    d.pid,
                    theirs.display(),
                    mine.display(),
                    theirs.display()
                ));
            }
        }
        let mut vars: Vec<(String, String)> = d.vars.clone().into_iter().collect();
        for (k, v) in &self.vars {
            match d.vars.get(k) {
                Some(run) if run != v => {
                    return Err(format!(
                        "dmucd (pid {}) runs with --var {k}={run}, and this reset says {k}={v}: leave it out (reset uses the daemon's) or stop dmucd first",
                        d.pid
                    ));
                }
                Some(_) => {}
                None => vars.push((k.clone(), v.clone())),
            }
        }
        Ok(ProfileArgs {
            config: Some(theirs),
            vars,
        })
    }
}

/// What `reset` keeps of the state directory.
struct Keep {
    pki: bool,
    images: bool,
}

fn reset_cmd(profile: &ProfileArgs, keep: Keep, yes: bool, root: PathBuf, socket: &Path) -> u8 {
    // The dmucd running this node, if one answers: the node is what it was started with.
    let mut daemon = match Client::connect(socket) {
        Err(_) => None,
        Ok(mut c) => match c.call_as::<dmuc_proto::StatusResult>(Verb::Status {
            names: vec![],
            text: None,
        }) {
            Ok(s) => Some((c, s.daemon)),
            Err(e) => {
                let why = match e {
                    dmuc_client::CallError::Remote(r) => r.message,
                    dmuc_client::CallError::Broken(b) => b,
                    dmuc_client::CallError::Unreachable { err, .. } => err.to_string(),
                };
                eprintln!(
                    "dmucctl: reset: a dmucd answers on {} but not with its status ({why}): stop it first; nothing done",
                    socket.display()
                );
                return FAILED;
            }
        },
    };
    let run_by = match &daemon {
        Some((_, d)) => match profile.as_run_by(d) {
            Ok(p) => Some(p),
            Err(e) => {
                eprintln!("dmucctl: reset: {e}; nothing done");
                return FAILED;
            }
        },
        None => None,
    };
    let profile = run_by.as_ref().unwrap_or(profile);
    let (vars, role) = match profile.load() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("{e}");
            return FAILED;
        }
    };
    let state = PathBuf::from(vars.get("state").map_or("/var/lib/dmuc", String::as_str));
    let var = |k: &str, d: &str| PathBuf::from(vars.get(k).map_or(d, String::as_str));
    // The image archives are the operator's (copied by hand for an air-gapped node): kept
    // unless asked, when they are an entry of the state directory (elsewhere reset never
    // touches them).
    let images = var("images", &format!("{}/images", state.display()));
    let images_entry = (keep.images && images.parent() == Some(state.as_path()))
        .then(|| images.file_name().map(|n| n.to_string_lossy().into_owned()))
        .flatten();
    let mut kept: Vec<&str> = Vec::new();
    if keep.pki {
        kept.push("pki");
    }
    if let Some(n) = &images_entry {
        kept.push(n);
    }
    let keep: &[&str] = &kept;
    let (containerd, bin) = (
        var("containerd-socket", "/run/containerd/containerd.sock"),
        var("bin", "/usr/local/bin"),
    );
    let cgroup_root = var("cgroup-root", "/");
    // What config/worker.toml lets a node move out of the usual places.
    let dirs: Vec<PathBuf> = [
        "kubelet-root",
        "containerd-root",
        "containerd-state",
        "pod-logs",
        "cni-data",
    ]
    .iter()
    .filter_map(|k| vars.get(*k).map(PathBuf::from))
    .collect();
    let input = host::ResetInput {
        root: &root,
        state: &state,
        keep,
        containerd_socket: &containerd,
        bin: &bin,
        cgroup_root: &cgroup_root,
        dirs: &dirs,
        pods: matches!(role, Role::Node | Role::Worker),
    };
    // Everything reset will do, said before anything is done, and asked once.
    let shown = host::reset_plan(&input);
    // Under systemd the unit would start dmucd again (Restart=, or a dependency) while we
    // remove what it runs: stop the unit, which stops dmucd and the cluster in order.
    let unit = if root == Path::new("/") {
        host::unit_state(host::UNIT)
    } else {
        None
    };
    if unit.is_none() && daemon.is_none() && shown.is_empty() {
        println!("nothing to remove");
        return OK;
    }
    match (&unit, &daemon) {
        (Some(state), _) => println!(
            "reset will stop the systemd unit {} ({state}: dmucd and every component, in order; it stays enabled)",
            host::UNIT
        ),
        (None, Some((_, d))) => println!(
            "reset will stop dmucd (pid {}, {}) and every component, in order",
            d.pid, d.config
        ),
        (None, None) => {}
    }
    if let Some(p) = &profile.config {
        let given: Vec<String> = profile
            .vars
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!(
            "the node of {}{}{}",
            p.display(),
            if given.is_empty() { "" } else { " with --var " },
            given.join(" --var ")
        );
    }
    if images_entry.is_some()
        && root
            .join(images.strip_prefix("/").unwrap_or(&images))
            .exists()
    {
        println!(
            "reset keeps {} (the image archives; --remove-images removes them)",
            images.display()
        );
    }
    if !shown.is_empty() {
        println!("reset will remove:");
    }
    for p in &shown.paths {
        println!("  {}", p.display());
    }
    if !shown.shims.is_empty() {
        println!(
            "  {} containerd shims of {} (and their containers)",
            shown.shims.len(),
            containerd.display()
        );
    }
    if !shown.cgroups.is_empty() {
        println!(
            "  {} pod cgroups under the cgroup root {}{} (their processes are killed)",
            shown.cgroups.len(),
            cgroup_root.display(),
            if cgroup_root == Path::new("/") {
                ": every kubepods cgroup of this host"
            } else {
                ""
            }
        );
    }
    if shown.network {
        println!(
            "  the routes to other nodes' pod subnets, the cni0 bridge and the KUBE-*/CNI-* iptables and ip6tables chains"
        );
    }
    if !yes && !host::confirm("Do all this?") {
        eprintln!("dmucctl: reset: nothing done");
        return FAILED;
    }
    if unit.is_some() {
        // Not the daemon's connection: systemd stops it.
        daemon = None;
        let o = std::process::Command::new("systemctl")
            .args(["stop", host::UNIT])
            .output();
        match o {
            Ok(o) if o.status.success() => println!(
                "stopped {} (it stays enabled: the next boot starts the cluster again; \
                 `systemctl disable {}` keeps it down)",
                host::UNIT,
                host::UNIT
            ),
            Ok(o) => {
                eprintln!(
                    "dmucctl: reset: systemctl stop {} failed: {}; nothing removed",
                    host::UNIT,
                    String::from_utf8_lossy(&o.stderr).trim()
                );
                return FAILED;
            }
            Err(e) => {
                eprintln!("dmucctl: reset: systemctl: {e}; nothing removed");
                return FAILED;
            }
        }
    }
    // A running daemon would restart what we remove: stop it (and the cluster) first.
    if let Some((mut c, _)) = daemon {
        if let Err(e) = c.call(Verb::Shutdown {}) {
            return report(&e);
        }
        c.wait_closed();
        println!("stopped dmucd and every component");
    }
    // What is there now, but only what was shown.
    let plan = host::reset_plan(&input).within(&shown);
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
            "hint: e.g. dmucctl fetch {} (what dmuc is tested with)",
            fetch::tested_flags()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(config: &str, vars: &[(&str, &str)]) -> dmuc_proto::DaemonInfo {
        dmuc_proto::DaemonInfo {
            pid: 42,
            version: "0".into(),
            uptime_ms: 0,
            config: config.into(),
            tmux_socket: String::new(),
            session: "dmuc".into(),
            log_dir: String::new(),
            stopping: false,
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    fn args(config: Option<&str>, vars: &[(&str, &str)]) -> ProfileArgs {
        ProfileArgs {
            config: config.map(PathBuf::from),
            vars: vars
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// issue 29, row 3: a worker's reset without the run's --vars fell back to the host's
    /// cgroup root, where the control plane's pods are.
    #[test]
    fn reset_takes_the_running_daemon_s_profile_and_refuses_what_contradicts_it() {
        let d = daemon(
            "/etc/dmuc/worker.toml",
            &[("cgroup-root", "/dmuc-w1"), ("state", "/srv/w1")],
        );
        // Nothing said: the daemon's config and vars.
        let p = args(None, &[]).as_run_by(&d).unwrap();
        assert_eq!(p.config, Some(PathBuf::from("/etc/dmuc/worker.toml")));
        let mut vars = p.vars.clone();
        vars.sort();
        assert_eq!(
            vars,
            vec![
                ("cgroup-root".to_string(), "/dmuc-w1".to_string()),
                ("state".to_string(), "/srv/w1".to_string())
            ]
        );
        // The same config and a var it agrees with, or one the daemon did not set: kept.
        let p = args(
            Some("/etc/dmuc/worker.toml"),
            &[("state", "/srv/w1"), ("bin", "/opt/k8s")],
        )
        .as_run_by(&d)
        .unwrap();
        assert_eq!(p.vars.len(), 3, "{:?}", p.vars);
        // A var that says otherwise: refused, naming both values.
        let e = args(None, &[("cgroup-root", "/")])
            .as_run_by(&d)
            .unwrap_err();
        assert!(
            e.contains("--var cgroup-root=/dmuc-w1") && e.contains("cgroup-root=/:"),
            "{e}"
        );
        // Another profile than the one running: refused, naming it.
        let e = args(Some("/etc/dmuc/cluster.toml"), &[])
            .as_run_by(&d)
            .unwrap_err();
        assert!(
            e.contains("runs /etc/dmuc/worker.toml, not /etc/dmuc/cluster.toml"),
            "{e}"
        );
    }
}
