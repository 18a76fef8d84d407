//! The host around the cluster: `dmucctl doctor` (is this machine ready for
//! config/cluster.toml?) and `dmucctl reset` (the teardown a learner needs between attempts,
//! as `kubeadm reset`). Both read the host under a root directory (`/` normally; a temp dir in
//! tests), so every check and every removal is testable without touching the real machine.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, Write};
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Fine.
    Ok,
    /// Works, but worth knowing.
    Warn,
    /// The cluster will not work until fixed.
    Fail,
}

/// One doctor check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked.
    pub what: String,
    /// Verdict.
    pub level: Level,
    /// What was found.
    pub found: String,
    /// How to fix it (for Warn/Fail).
    pub fix: Option<String>,
}

fn ok(what: &str, found: impl Into<String>) -> Check {
    Check {
        what: what.into(),
        level: Level::Ok,
        found: found.into(),
        fix: None,
    }
}

fn bad(level: Level, what: &str, found: impl Into<String>, fix: impl Into<String>) -> Check {
    Check {
        what: what.into(),
        level,
        found: found.into(),
        fix: Some(fix.into()),
    }
}

/// What `doctor` looks at.
#[derive(Debug, Clone)]
pub struct DoctorInput {
    /// The host root (`/`).
    pub root: PathBuf,
    /// Where the cluster's programs are.
    pub bin: PathBuf,
    /// Where the CNI plugins are.
    pub cni_bin: PathBuf,
    /// The node address the profile will use.
    pub node_ip: String,
    /// Running as root.
    pub is_root: bool,
    /// Probe the loopback ports (off in tests that must not depend on the machine).
    pub check_ports: bool,
    /// What `tmux -V` printed (`None`: no tmux to run).
    pub tmux_version: Option<String>,
    /// A worker's profile (no control plane, config/worker.toml): its state directory, whose
    /// `pki` must hold what `dmucctl join` writes. `None`: a control plane's.
    pub worker_state: Option<PathBuf>,
    /// A control-plane member's profile (config/ha.toml), with what was read of its peers.
    pub member: Option<MemberInput>,
    /// This node's components as its running dmucd reports them (name, PID of the
    /// program, which leads its process group): a port one of them holds is no problem.
    /// Empty when no dmucd answers.
    pub components: Vec<(String, u32)>,
    /// The profile's image archives directory and the pause image its kubelet's pods need
    /// (`images` and `pause-image`); `None` for a profile without a kubelet.
    pub pause: Option<(PathBuf, String)>,
}

/// Whether an image archive (a `ctr images import`/`docker save` tarball) names `image`: the
/// reference is in its index or manifest (`io.containerd.image.name`, `RepoTags`). Read in
/// chunks, overlapping by the reference's length, to the end of the file.
fn archive_names(path: &Path, image: &str) -> bool {
    use std::io::Read as _;
    let needle = image.as_bytes();
    let Ok(mut f) = std::fs::File::open(path) else {
        return false;
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut kept = 0;
    loop {
        let n = match f.read(&mut buf[kept..]) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let have = kept + n;
        if buf[..have].windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        kept = needle.len().saturating_sub(1).min(have);
        buf.copy_within(have - kept..have, 0);
    }
}

/// The pause image every pod starts with: in an archive of the images directory (imported by
/// the `images` component before the kubelet starts), else the first start pulls it from its
/// registry, which a node without one cannot: said before the first pod hangs in
/// ContainerCreating.
fn pause_check(dir: &Path, image: &str, running: bool) -> Check {
    let what = "pause image";
    if running {
        return ok(
            what,
            format!("{image}: this node runs (its `images` component saw to it at the start)"),
        );
    }
    let mut archives: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "tar"))
                .collect()
        })
        .unwrap_or_default();
    archives.sort();
    match archives.iter().find(|p| archive_names(p, image)) {
        Some(p) => ok(what, format!("{image} in {}", p.display())),
        None => bad(
            Level::Warn,
            what,
            format!(
                "no archive in {} holds {image}: the first start pulls it from its registry",
                dir.display()
            ),
            format!(
                "on a node without a registry, copy its archive there first (the control plane's \
                 {}/*.tar, or ../shared/k8s/images): without it every pod hangs in ContainerCreating",
                dir.display()
            ),
        ),
    }
}

/// The inodes of the sockets listening on TCP `port`, from /proc/net/tcp or tcp6's text.
pub fn listening_inodes(text: &str, port: u16) -> Vec<u64> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let local_port = u16::from_str_radix(f.get(1)?.rsplit_once(':')?.1, 16).ok()?;
            // st 0A: LISTEN.
            (local_port == port && *f.get(3)? == "0A").then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// Who holds a port, of the processes `(pid, process group)` listening on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortHolder {
    /// This node's component (its name and PID): every listener is in its process group.
    Ours(String, u32),
    /// Other processes (their PIDs), or none found (another namespace, no rights).
    Other(Vec<u32>),
}

/// Whether every listener belongs to one of this node's `components` (by process group:
/// the shim starts each program as the leader of a group of its own).
pub fn port_holder(listeners: &[(u32, u32)], components: &[(String, u32)]) -> PortHolder {
    let owner = |pgrp: u32| components.iter().find(|(_, pid)| *pid == pgrp);
    match listeners.first().and_then(|(_, g)| owner(*g)) {
        Some((name, pid)) if listeners.iter().all(|(_, g)| g == pid) => {
            PortHolder::Ours(name.clone(), *pid)
        }
        _ => PortHolder::Other(listeners.iter().map(|(p, _)| *p).collect()),
    }
}

/// For each of `ports`, the processes `(pid, process group)` with a socket listening on it,
/// read under `root`'s /proc (this network namespace's sockets): the socket tables once, and
/// one walk of the processes' descriptors for all the ports.
fn port_listeners(root: &Path, ports: &[u16]) -> BTreeMap<u16, Vec<(u32, u32)>> {
    let mut out: BTreeMap<u16, Vec<(u32, u32)>> = BTreeMap::new();
    let tables: Vec<String> = ["proc/net/tcp", "proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(root.join(f)).ok())
        .collect();
    // "socket:[INODE]", as /proc/PID/fd/N links read, to the port it listens on.
    let wanted: BTreeMap<String, u16> = ports
        .iter()
        .flat_map(|&port| {
            tables
                .iter()
                .flat_map(move |t| listening_inodes(t, port))
                .map(move |i| (format!("socket:[{i}]"), port))
        })
        .collect();
    if wanted.is_empty() {
        return out;
    }
    let Ok(procs) = std::fs::read_dir(root.join("proc")) else {
        return out;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let held: BTreeSet<u16> = std::fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| {
                let l = std::fs::read_link(fd.path()).ok()?;
                wanted.get(l.to_str()?).copied()
            })
            .collect();
        if held.is_empty() {
            continue;
        }
        if let Some(st) = std::fs::read_to_string(p.path().join("stat"))
            .ok()
            .and_then(|t| dmuc_procfs::parse_stat(&t))
        {
            for port in held {
                out.entry(port).or_default().push((pid, st.pgrp as u32));
            }
        }
    }
    out
}

/// What `doctor` checks of an HA member besides its programs and ports, read by the caller
/// (the network is the caller's): the balancer and the peers' clocks.
#[derive(Debug, Clone, Default)]
pub struct MemberInput {
    /// `apiserver-sans`: the balancer's address (and names).
    pub sans: Vec<String>,
    /// Each balancer address tried on :6443: reached, or why not.
    pub balancers: Vec<(String, Result<(), String>)>,
    /// Each peer (the other members, from etcd-cluster.env, and the balancer): its clock
    /// minus ours in seconds (from its API server's `Date`), or why there is no reading.
    pub clocks: Vec<(String, Result<i64, String>)>,
}

/// What a member's host need not have: it runs no pods.
fn node_only(what: &str) -> bool {
    what == "CNI plugins"
        || what == "cgroup version"
        || what == "swap"
        || what == "CAP_SYS_RESOURCE"
        || what == "conntrack tool"
        || what == "ipset tool"
        || what.starts_with("module ")
        || what.starts_with("sysctl ")
}

/// The largest clock difference etcd and the certificates live with: a `Date` header counts
/// whole seconds, so 1 s of it is rounding.
const MAX_SKEW_SECS: i64 = 1;

fn member_checks(m: &MemberInput, node_ip: &str) -> Vec<Check> {
    let mut out = Vec::new();
    if m.sans.is_empty() {
        out.push(bad(
            Level::Warn,
            "balancer",
            "no address in apiserver-sans",
            "give every member the balancer's address, --var apiserver-sans=ADDR: the API servers' certificates must name it",
        ));
    }
    for (addr, r) in &m.balancers {
        out.push(match r {
            Ok(()) => ok("balancer", format!("{addr}:6443 answers")),
            Err(e) => bad(
                Level::Warn,
                "balancer",
                format!("{addr}:6443: {e}"),
                format!(
                    "start config/balancer.toml there with {node_ip}:6443 among its servers (on the first member, once it runs)"
                ),
            ),
        });
    }
    for (peer, r) in &m.clocks {
        let what = format!("clock against {peer}");
        out.push(match r {
            Ok(d) if d.abs() <= MAX_SKEW_SECS => ok(&what, format!("{d:+} s")),
            Ok(d) => bad(
                Level::Fail,
                &what,
                format!("{d:+} s"),
                "synchronise the clocks of every member (systemd-timesyncd or chrony): etcd's leader leases and the certificates' validity depend on them",
            ),
            Err(e) => bad(
                Level::Warn,
                &what,
                format!("no reading: {e}"),
                "nothing to do if that member is not started yet; run doctor again once it is",
            ),
        });
    }
    out
}

/// What a worker runs and listens on, of [`PROGRAMS`] and [`PORTS`].
const WORKER_ONLY: &[&str] = &["kubelet", "kube-proxy", "containerd", "ctr", "runc"];
const WORKER_PORTS: &[u16] = &[10248, 10249, 10250, 10256];

/// The programs config/cluster.toml runs, with the flag that prints their version.
pub const PROGRAMS: &[(&str, &str)] = &[
    ("etcd", "--version"),
    ("kube-apiserver", "--version"),
    ("kube-controller-manager", "--version"),
    ("kube-scheduler", "--version"),
    ("kubelet", "--version"),
    ("kube-proxy", "--version"),
    ("containerd", "--version"),
    ("ctr", "--version"),
    ("runc", "--version"),
];

/// The ports a single node listens on.
pub const PORTS: &[(u16, &str)] = &[
    (2379, "etcd client"),
    (2380, "etcd peer"),
    (2381, "etcd metrics"),
    (6443, "kube-apiserver"),
    (10248, "kubelet healthz"),
    (10249, "kube-proxy metrics"),
    (10250, "kubelet API"),
    (10256, "kube-proxy healthz"),
    (10257, "kube-controller-manager"),
    (10259, "kube-scheduler"),
];

fn read(root: &Path, p: &str) -> Option<String> {
    std::fs::read_to_string(root.join(p.trim_start_matches('/'))).ok()
}

fn find_in(dir: &Path, prog: &str, root: &Path) -> Option<PathBuf> {
    let p = dir.join(prog);
    let under_root = root.join(p.strip_prefix("/").unwrap_or(&p));
    under_root.exists().then_some(under_root)
}

/// Every check; pure but for reading files under `root`, running `PROG --version` and
/// (optionally) binding loopback ports.
pub fn doctor(i: &DoctorInput) -> Vec<Check> {
    let r = &i.root;
    let mut out = Vec::new();
    out.push(if i.is_root {
        ok("root", "running as uid 0")
    } else {
        bad(
            Level::Fail,
            "root",
            "not uid 0",
            "containerd, the kubelet and kube-proxy need root: run as root (sudo)",
        )
    });
    out.push(tmux_check(i.tmux_version.as_deref()));
    let worker = i.worker_state.is_some();
    let member = i.member.is_some();
    for (prog, flag) in PROGRAMS
        .iter()
        .filter(|(p, _)| !worker || WORKER_ONLY.contains(p))
        .filter(|(p, _)| !member || !WORKER_ONLY.contains(p))
    {
        out.push(match find_in(&i.bin, prog, r) {
            Some(p) => {
                let version = Command::new(&p)
                    .arg(flag)
                    .output()
                    .ok()
                    .map(|o| {
                        let s = String::from_utf8_lossy(&o.stdout).into_owned()
                            + &String::from_utf8_lossy(&o.stderr);
                        s.lines().next().unwrap_or("").trim().to_string()
                    })
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| "version unknown".into());
                ok(
                    &format!("{prog} binary"),
                    format!("{} ({version})", p.display()),
                )
            }
            None => bad(
                Level::Fail,
                &format!("{prog} binary"),
                format!("not in {}", i.bin.display()),
                "dmucctl fetch --dir DIR ... (see docs/tutorial.md), or --var bin=DIR",
            ),
        });
    }
    let found = ["kubelet", "kube-apiserver"]
        .map(|p| find_in(&i.bin, p, r).map_or(Ok(None), |p| crate::release::cmd::version_of(&p)));
    if let Some(c) = release_check(found) {
        out.push(c);
    }
    let plugins = ["bridge", "host-local", "loopback", "portmap"];
    let missing: Vec<&str> = plugins
        .iter()
        .copied()
        .filter(|p| find_in(&i.cni_bin, p, r).is_none())
        .collect();
    out.push(if missing.is_empty() {
        ok("CNI plugins", format!("in {}", i.cni_bin.display()))
    } else {
        bad(
            Level::Fail,
            "CNI plugins",
            format!("{} missing in {}", missing.join(", "), i.cni_bin.display()),
            "dmucctl fetch --cni 1.7.1 --cni-dir DIR, or apt-get install containernetworking-plugins and --var cni-bin=/usr/lib/cni",
        )
    });
    // cgroup v2 has cgroup.controllers at the top of the hierarchy.
    out.push(if r.join("sys/fs/cgroup/cgroup.controllers").exists() {
        ok("cgroup version", "v2")
    } else {
        bad(
            Level::Warn,
            "cgroup version",
            "v1 (Kubernetes 1.35 and later refuse it by default)",
            "nothing to do: the profiles' node-config detects v1 and tells kubelets of 1.31 and later failCgroupV1: false (older ones run on v1 as they are); to move to v2, boot with systemd.unified_cgroup_hierarchy=1",
        )
    });
    out.extend(init_checks(i));
    let swaps = read(r, "/proc/swaps").map_or(0, |s| {
        s.lines().skip(1).filter(|l| !l.trim().is_empty()).count()
    });
    out.push(if swaps == 0 {
        ok("swap", "off")
    } else {
        bad(
            Level::Warn,
            "swap",
            format!("{swaps} swap area(s) on"),
            "the profile sets failSwapOn: false; for a production-like node: swapoff -a",
        )
    });
    let modules = read(r, "/proc/modules").unwrap_or_default();
    for m in ["overlay", "br_netfilter"] {
        // Built into the kernel, a module shows only through what it provides.
        let loaded = modules
            .lines()
            .any(|l| l.split_whitespace().next() == Some(m))
            || r.join("sys/module").join(m).exists()
            || (m == "br_netfilter" && r.join("proc/sys/net/bridge").exists());
        out.push(if loaded {
            ok(&format!("module {m}"), "loaded")
        } else {
            bad(
                Level::Fail,
                &format!("module {m}"),
                "not loaded",
                format!("modprobe {m} (and add it to /etc/modules-load.d/k8s.conf)"),
            )
        });
    }
    for (key, want) in [
        ("net/ipv4/ip_forward", "1"),
        ("net/bridge/bridge-nf-call-iptables", "1"),
    ] {
        let dotted = key.replace('/', ".");
        let got = read(r, &format!("/proc/sys/{key}")).map(|s| s.trim().to_string());
        out.push(match got.as_deref() {
            Some(v) if v == want => ok(&format!("sysctl {dotted}"), v),
            Some(v) => bad(
                Level::Fail,
                &format!("sysctl {dotted}"),
                v,
                format!("sysctl -w {dotted}={want} (and in /etc/sysctl.d/k8s.conf)"),
            ),
            None => bad(
                Level::Fail,
                &format!("sysctl {dotted}"),
                "absent",
                "modprobe br_netfilter first, then set it",
            ),
        });
    }
    // CAP_SYS_RESOURCE (bit 24) in the bounding set: without it runc cannot lower
    // oom_score_adj and the profile sets restrict_oom_score_adj.
    let capbnd = read(r, "/proc/self/status")
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapBnd:").map(|v| v.trim().to_string()))
        })
        .and_then(|h| u64::from_str_radix(&h, 16).ok());
    out.push(match capbnd {
        Some(c) if c >> 24 & 1 == 1 => ok("CAP_SYS_RESOURCE", "present"),
        Some(_) => bad(
            Level::Warn,
            "CAP_SYS_RESOURCE",
            "absent from the bounding set (a container or a restricted VM)",
            "nothing to do: the profile sets containerd's restrict_oom_score_adj = true",
        ),
        None => bad(
            Level::Warn,
            "CAP_SYS_RESOURCE",
            "unknown",
            "check /proc/self/status",
        ),
    });
    out.push(
        if i.node_ip.starts_with("127.") || i.node_ip.is_empty() {
            bad(
                Level::Fail,
                "node address",
                format!("{:?}", i.node_ip),
                "the API server and the kubelet refuse loopback: add a default route, or --var node-ip=ADDR",
            )
        } else {
            ok("node address", i.node_ip.clone())
        },
    );
    if let Some(state) = &i.worker_state {
        let pki = state.join("pki");
        let joined = ["ca.crt", "kube-proxy.kubeconfig"]
            .iter()
            .all(|f| find_in(&pki, f, r).is_some())
            && ["bootstrap-kubelet.kubeconfig", "kubelet.kubeconfig"]
                .iter()
                .any(|f| find_in(&pki, f, r).is_some());
        out.push(if joined {
            ok("joined", format!("{} holds the join's files", pki.display()))
        } else {
            bad(
                Level::Fail,
                "joined",
                format!("{} lacks the CA or the kubeconfigs of a join", pki.display()),
                format!(
                    "dmucctl token create on the control plane, then the join command it prints here (with --state {})",
                    state.display()
                ),
            )
        });
    }
    // ip: the routes component sets the other nodes' pod routes with it.
    // ipset: kube-proxy --cleanup (dmucctl reset) of the older releases (1.20) fails without it.
    for (tool, package, level, why) in [
        ("iptables", "iptables", Level::Fail, ""),
        ("conntrack", "conntrack", Level::Fail, ""),
        ("ip", "iproute2", Level::Fail, ""),
        (
            "ipset",
            "ipset",
            Level::Warn,
            " (kube-proxy --cleanup, which dmucctl reset runs, fails without it on Kubernetes 1.20)",
        ),
    ] {
        let found = ["usr/sbin", "sbin", "usr/bin", "bin"]
            .iter()
            .any(|d| r.join(d).join(tool).exists());
        out.push(if found {
            ok(&format!("{tool} tool"), "present")
        } else {
            bad(
                level,
                &format!("{tool} tool"),
                "missing",
                format!("apt-get install -y {package}{why}"),
            )
        });
    }
    if i.check_ports {
        let tried: Vec<(u16, &str, std::io::Result<std::net::TcpListener>)> = PORTS
            .iter()
            .filter(|(p, _)| !worker || WORKER_PORTS.contains(p))
            .filter(|(p, _)| !member || !WORKER_PORTS.contains(p))
            .map(|(p, what)| (*p, *what, std::net::TcpListener::bind(("127.0.0.1", *p))))
            .collect();
        let busy: Vec<u16> = tried
            .iter()
            .filter(|(_, _, b)| b.is_err())
            .map(|(p, _, _)| *p)
            .collect();
        let listeners = if busy.is_empty() {
            BTreeMap::new()
        } else {
            port_listeners(r, &busy)
        };
        for (port, what, bound) in tried {
            let found = listeners.get(&port).map_or(&[][..], Vec::as_slice);
            out.push(match bound {
                Ok(_) => ok(&format!("port {port}"), format!("free ({what})")),
                Err(e) => match port_holder(found, &i.components) {
                    PortHolder::Ours(name, pid) => ok(
                        &format!("port {port}"),
                        format!("held by this node's {name} (pid {pid}; {what})"),
                    ),
                    PortHolder::Other(pids) => bad(
                        Level::Fail,
                        &format!("port {port}"),
                        if pids.is_empty() {
                            format!("in use ({what}): {e}")
                        } else {
                            let who: Vec<String> = pids
                                .iter()
                                .map(|p| {
                                    let comm =
                                        read(r, &format!("/proc/{p}/comm")).unwrap_or_default();
                                    format!("pid {p} ({})", comm.trim())
                                })
                                .collect();
                            format!(
                                "in use ({what}) by {}, not this node's dmucd",
                                who.join(", ")
                            )
                        },
                        format!("stop what listens there: ss -ltnp 'sport = :{port}'"),
                    ),
                },
            });
        }
    }
    if let Some((dir, image)) = &i.pause {
        out.push(pause_check(dir, image, !i.components.is_empty()));
    }
    if let Some(m) = &i.member {
        out.retain(|c| !node_only(&c.what));
        out.extend(member_checks(m, &i.node_ip));
    }
    out
}

/// The tmux dmucd will run, and how dmucd will be its client.
/// The Kubernetes release of the kubelet and the API server (what `--version` said of each,
/// where there is one) against the range the profiles support; `None` when neither is there
/// (their binary checks say so).
fn release_check(found: [Result<Option<crate::release::Version>, String>; 2]) -> Option<Check> {
    use crate::release::{Found, NEWEST, OLDEST};
    let what = "Kubernetes release";
    let [kubelet, apiserver] = found;
    let (kubelet, apiserver) = match (kubelet, apiserver) {
        (Ok(k), Ok(a)) => (k, a),
        (Err(e), _) | (_, Err(e)) => {
            return Some(bad(
                Level::Fail,
                what,
                e,
                "install the release's own binaries (dmucctl fetch --kubernetes VERSION)",
            ));
        }
    };
    let f = Found { kubelet, apiserver };
    let v = f.kubelet.or(f.apiserver)?;
    let node = crate::release::Node {
        socket: String::new(),
        pause_image: String::new(),
        pod_logs: None,
        cgroup_v2: false,
        cgroup_driver: crate::release::Driver::Cgroupfs,
    };
    Some(match crate::release::settings(f, &node) {
        Ok(_) => ok(
            what,
            format!("{v}: supported (1.{OLDEST} to 1.{NEWEST}; docs/kubernetes-versions.md)"),
        ),
        Err(e) => bad(
            Level::Fail,
            what,
            e,
            format!(
                "dmucctl fetch --kubernetes 1.{NEWEST} --dir DIR (any release 1.{OLDEST} to 1.{NEWEST})"
            ),
        ),
    })
}

fn tmux_check(version: Option<&str>) -> Check {
    let Some(text) = version.map(str::trim) else {
        return bad(
            Level::Fail,
            "tmux",
            "not found (DMUC_TMUX or tmux on PATH)",
            "apt-get install -y tmux, or DMUC_TMUX=/path/to/tmux",
        );
    };
    let v = dmuc_config::tmux::parse_version(text);
    match v {
        _ if dmuc_config::tmux::native_speaks(v) => ok(
            "tmux",
            format!("{text}: dmucd is its own control client (in-process)"),
        ),
        Some(v) if v >= (3, 2) => ok(
            "tmux",
            format!(
                "{text}: dmucd attaches through a `tmux -C` process (3.6 changed tmux's client messages)"
            ),
        ),
        Some(_) => bad(
            Level::Warn,
            "tmux",
            format!("{text}: older than the versions tested (3.3a and 3.5a)"),
            "install tmux 3.2 or later, or point DMUC_TMUX at one",
        ),
        None => bad(
            Level::Warn,
            "tmux",
            format!(
                "{text}: not a release dmuc knows; dmucd will attach through a `tmux -C` process"
            ),
            "a tagged release behaves as tested (3.3a and 3.5a, with both of dmucd's ways to attach)",
        ),
    }
}

/// What runs the host (systemd or not), and whether the distribution's own etcd and
/// containerd services would start at boot: they take the ports and the database dmuc's own
/// need (etcd: "bind: address already in use"; containerd: the boltdb lock, while its socket
/// answers).
fn init_checks(i: &DoctorInput) -> Vec<Check> {
    let r = &i.root;
    let mut out = Vec::new();
    if !systemd_booted(r) {
        let pid1 = read(r, "/proc/1/comm").unwrap_or_default();
        out.push(ok(
            "init system",
            format!(
                "not systemd (PID 1 is {}): start dmucd from a shell or your supervisor; pods' cgroups: the cgroupfs driver",
                pid1.trim()
            ),
        ));
        return out;
    }
    let enabled = |unit: &str| {
        [
            "etc/systemd/system",
            "lib/systemd/system",
            "usr/lib/systemd/system",
        ]
        .iter()
        .any(|d| {
            let dir = r.join(d);
            std::fs::read_dir(&dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    e.file_name().to_string_lossy().ends_with(".wants")
                        && e.path().join(unit).exists()
                })
        })
    };
    out.push(ok(
        "init system",
        if enabled(UNIT) {
            format!("systemd; {UNIT} is enabled: the cluster starts at boot; pods' cgroups: the systemd driver")
        } else {
            format!("systemd; {UNIT} is not enabled (`systemctl enable {UNIT}` starts the cluster at boot); pods' cgroups: the systemd driver")
        },
    ));
    // The profiles that run them: every one runs etcd but a worker; every one runs
    // containerd but a control-plane member.
    for (unit, ours) in [
        ("etcd.service", i.worker_state.is_none()),
        ("containerd.service", i.member.is_none()),
    ] {
        if !ours {
            continue;
        }
        let what = format!("distribution's {unit}");
        out.push(if enabled(unit) {
            bad(
                Level::Fail,
                &what,
                "enabled: it starts at boot and takes what dmuc's own needs (ports, database)",
                format!("systemctl disable --now {unit} (dmuc runs its own: docs/operations.md, \"Installing\")"),
            )
        } else {
            ok(&what, "not enabled")
        });
    }
    out
}

/// The systemd unit the package installs.
pub const UNIT: &str = "dmucd.service";

/// Whether systemd runs this host (sd_booted(3): `/run/systemd/system` is a directory).
pub fn systemd_booted(root: &Path) -> bool {
    root.join("run/systemd/system").is_dir()
}

/// The state of `unit` when systemd runs this host and the unit is running or on its way
/// (`active`, `activating`, `reloading`, `deactivating`): what `reset` must stop first.
pub fn unit_state(unit: &str) -> Option<String> {
    if !systemd_booted(Path::new("/")) {
        return None;
    }
    let o = Command::new("systemctl")
        .args(["is-active", unit])
        .output()
        .ok()?;
    unit_running(&String::from_utf8_lossy(&o.stdout)).map(str::to_string)
}

/// `systemctl is-active`'s answer, when it means the unit runs (or is about to).
pub fn unit_running(is_active: &str) -> Option<&str> {
    let s = is_active.trim();
    matches!(s, "active" | "activating" | "reloading" | "deactivating").then_some(s)
}

/// What `reset` removes, under `root`.
#[derive(Debug, Clone)]
pub struct ResetPlan {
    /// Directories and files to delete (absolute, under root).
    pub paths: Vec<PathBuf>,
    /// Mount points to unmount first (deepest first).
    pub mounts: Vec<PathBuf>,
    /// Pod cgroups (`kubepods*`) and containerd's (`k8s.io`), deepest first.
    pub cgroups: Vec<PathBuf>,
    /// The containerd shims of this node's containerd (their `-address` is its socket): they
    /// outlive containerd and hold each pod's task until killed.
    pub shims: Vec<u32>,
    /// kube-proxy, to run `kube-proxy --cleanup` (it removes its own rules, in every mode).
    pub kube_proxy: Option<PathBuf>,
    /// Whether to touch host networking (bridge, iptables): only when root is `/`.
    pub network: bool,
    /// The host root whose mount table is read again before deleting (nothing is deleted
    /// across a mount that is still there).
    pub root: PathBuf,
}

impl ResetPlan {
    /// This plan without what `shown` does not have: what reset does after its question is
    /// what it asked (a pod or a path that appeared meanwhile is left alone).
    pub fn within(mut self, shown: &ResetPlan) -> ResetPlan {
        self.paths.retain(|p| shown.paths.contains(p));
        self.mounts.retain(|p| shown.mounts.contains(p));
        self.cgroups.retain(|p| shown.cgroups.contains(p));
        self.shims.retain(|p| shown.shims.contains(p));
        self.network &= shown.network;
        if shown.kube_proxy.is_none() {
            self.kube_proxy = None;
        }
        self
    }

    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
            && self.mounts.is_empty()
            && self.cgroups.is_empty()
            && self.shims.is_empty()
            && !self.network
    }
}

/// Where the node's parts are, from the profile's [vars].
#[derive(Debug, Clone)]
pub struct ResetInput<'a> {
    /// The host root (`/`; a temp dir in tests).
    pub root: &'a Path,
    /// The profile's state directory.
    pub state: &'a Path,
    /// Entries of `state` to keep (such as `pki`).
    pub keep: &'a [&'a str],
    /// The profile's containerd socket (identifies this node's shims).
    pub containerd_socket: &'a Path,
    /// Where the profile's programs are (kube-proxy for its cleanup).
    pub bin: &'a Path,
    /// The profile's cgroup root for pods (`cgroup-root`, `/` by default): only the pods
    /// under it are this node's (other nodes on the machine have their own).
    pub cgroup_root: &'a Path,
    /// Directories of the node that the profile moved out of the usual places
    /// (`kubelet-root`, `containerd-root`, `pod-logs`, ...): removed too.
    pub dirs: &'a [PathBuf],
    /// Whether the profile runs pods (a kubelet or containerd). A control-plane member
    /// (config/ha.toml) or a balancer does not: only its state directory is its own, and what a kubelet,
    /// containerd or kube-proxy leaves belongs to another profile on the host, if anyone's.
    pub pods: bool,
}

/// The state a node leaves outside its data dir (k8s-modern.md §7, ../shared/k8s/README.md),
/// plus the profile's state directory.
pub fn reset_plan(i: &ResetInput) -> ResetPlan {
    let root = i.root;
    let under = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let mut paths = Vec::new();
    if let Ok(rd) = std::fs::read_dir(under(i.state)) {
        let mut v: Vec<PathBuf> = rd
            .flatten()
            .filter(|e| !i.keep.iter().any(|k| e.file_name() == *k))
            .map(|e| e.path())
            .collect();
        v.sort();
        paths.extend(v);
    }
    let node_paths: &[&str] = if i.pods {
        &[
            "/run/containerd",
            "/var/run/netns",
            "/run/netns",
            "/var/lib/cni",
            "/var/log/containers",
            "/var/log/pods",
            "/var/lib/kubelet",
            "/var/lib/containerd",
            "/etc/cni/net.d/10-dmuc.conflist",
        ]
    } else {
        &[]
    };
    for p in node_paths
        .iter()
        .map(Path::new)
        .chain(i.dirs.iter().map(PathBuf::as_path))
    {
        let q = under(p);
        // /var/run is usually a link to /run: the real name, which /proc's mounts use.
        let q = q.canonicalize().unwrap_or(q);
        if q.exists() && !paths.contains(&q) {
            paths.push(q);
        }
    }
    // The socket itself, when the profile moved it out of what is removed anyway.
    let sock = under(i.containerd_socket);
    if i.pods && sock.exists() && !paths.iter().any(|p| sock.starts_with(p)) {
        paths.push(sock);
    }
    // A directory that is a mount the node did not make (a partition, a test's bind mount
    // giving one of several nodes its own /var/lib/kubelet) is emptied, not unmounted: what
    // is beneath it is not this node's. The kubelet's bind of its root onto itself is its own.
    let points = mount_points(root);
    let mut kept = Vec::new();
    paths = paths
        .into_iter()
        .flat_map(|p| {
            if !points.contains(&p) || self_bind(&p) {
                return vec![p];
            }
            let mut inside: Vec<PathBuf> = std::fs::read_dir(&p)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            inside.sort();
            kept.push(p);
            inside
        })
        .collect();
    // Mounts under what we delete (pod volumes, netns, rootfs), from /proc/self/mountinfo.
    let mut mounts: Vec<PathBuf> = points
        .into_iter()
        .filter(|m| !kept.contains(m))
        .filter(|m| paths.iter().any(|p| m.starts_with(p)))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    mounts.dedup();
    if !i.pods {
        return ResetPlan {
            paths,
            mounts,
            cgroups: vec![],
            shims: vec![],
            kube_proxy: None,
            network: false,
            root: root.to_path_buf(),
        };
    }
    let kube_proxy = find_in(i.bin, "kube-proxy", root);
    ResetPlan {
        paths,
        mounts,
        cgroups: node_cgroups(&under(Path::new("/sys/fs/cgroup")), i.cgroup_root),
        shims: shims_of(root, i.containerd_socket),
        kube_proxy,
        network: root == Path::new("/"),
        root: root.to_path_buf(),
    }
}

/// The mount points of the host under `root` (/proc/self/mountinfo's fifth field, its octal
/// escapes decoded: a path with a space is `\040` there).
fn mount_points(root: &Path) -> Vec<PathBuf> {
    read(root, "/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4))
        .map(|m| {
            let m = PathBuf::from(std::ffi::OsString::from_vec(unescape_mount(m)));
            root.join(m.strip_prefix("/").unwrap_or(&m))
        })
        .collect()
}

/// A mountinfo field's bytes: `\NNN` (three octal digits) is the byte NNN, as the kernel
/// writes space, tab, newline and backslash.
fn unescape_mount(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], oct) {
            (b'\\', Some(d)) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Removes the tree at `p` without crossing into a mount: a directory in `points` or on
/// another device than `p`'s is left with what is in it, and named in the answer.
fn remove_tree(p: &Path, points: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    use std::os::unix::fs::MetadataExt as _;
    let top = std::fs::symlink_metadata(p)?;
    if !top.is_dir() {
        std::fs::remove_file(p)?;
        return Ok(vec![]);
    }
    let mut kept = Vec::new();
    let mut stack = vec![(p.to_path_buf(), false)];
    // Depth first: a directory is visited, its children pushed, then removed once they are.
    while let Some((dir, visited)) = stack.pop() {
        if visited {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                // Not empty: it holds a kept mount.
                Err(_) if kept.iter().any(|k: &PathBuf| k.starts_with(&dir)) => {}
                Err(e) => return Err(e),
            }
            continue;
        }
        stack.push((dir.clone(), true));
        for e in std::fs::read_dir(&dir)? {
            let path = e?.path();
            let m = std::fs::symlink_metadata(&path)?;
            if m.is_dir() {
                if m.dev() != top.dev() || points.contains(&path) {
                    kept.push(path);
                } else {
                    stack.push((path, false));
                }
            } else {
                std::fs::remove_file(&path)?;
            }
        }
    }
    Ok(kept)
}

/// Whether the mount on `p` is `p` bound onto itself (what the kubelet does with its root
/// directory): its root is the directory it covers, which the parent's entry names.
fn self_bind(p: &Path) -> bool {
    use std::os::unix::fs::{DirEntryExt as _, MetadataExt as _};
    let (Some(parent), Some(name), Ok(top)) = (p.parent(), p.file_name(), std::fs::metadata(p))
    else {
        return false;
    };
    let Ok(pm) = std::fs::metadata(parent) else {
        return false;
    };
    // readdir gives the inode of the covered directory, stat the mounted one's.
    pm.dev() == top.dev()
        && std::fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| e.file_name() == name && e.ino() == top.ino())
}

/// Every `kubepods*` cgroup (the kubelet's) and `k8s.io` one (containerd's, for containers
/// without a pod parent) with everything below them, deepest first: directly under
/// `cgroup_root` in every hierarchy, so that another node's pods on this machine (under
/// another root) are left alone.
fn node_cgroups(top: &Path, cgroup_root: &Path) -> Vec<PathBuf> {
    let sub = cgroup_root.strip_prefix("/").unwrap_or(cgroup_root);
    let at_top = sub.as_os_str().is_empty();
    let ours = |n: &str| n.starts_with("kubepods") || (at_top && n == "k8s.io");
    let mut cgroups = Vec::new();
    // cgroup v2: the root itself; v1: one level down in each hierarchy (cpu/kubepods, ...).
    let mut bases = vec![top.join(sub)];
    if let Ok(rd) = std::fs::read_dir(top) {
        bases.extend(
            rd.flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path().join(sub)),
        );
    }
    for d in bases {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        // The node's own root (node-config made it) goes last, once emptied.
        if !at_top {
            cgroups.push(d.clone());
        }
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let p = e.path();
            if ours(&e.file_name().to_string_lossy()) {
                let mut sub = vec![p.clone()];
                while let Some(s) = sub.pop() {
                    if let Ok(rd) = std::fs::read_dir(&s) {
                        sub.extend(
                            rd.flatten()
                                .filter(|x| x.file_type().is_ok_and(|t| t.is_dir()))
                                .map(|x| x.path()),
                        );
                    }
                    cgroups.push(s);
                }
            }
        }
    }
    cgroups.dedup();
    cgroups.sort_by_key(|c| std::cmp::Reverse(c.components().count()));
    cgroups
}

/// The PIDs of `containerd-shim*` processes started for the containerd on `socket` (their
/// command line says `-address SOCKET`) in this mount namespace: this node's, not another
/// containerd's.
fn shims_of(root: &Path, socket: &Path) -> Vec<u32> {
    let Ok(rd) = std::fs::read_dir(root.join("proc")) else {
        return Vec::new();
    };
    let want = socket.as_os_str().as_encoded_bytes();
    let own_ns = std::fs::read_link(root.join("proc/self/ns/mnt")).ok();
    let mut pids: Vec<u32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(cmd) = std::fs::read(root.join(format!("proc/{pid}/cmdline"))) else {
                return false;
            };
            let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
            let is_shim = args.first().is_some_and(|a0| {
                a0.rsplit(|&b| b == b'/')
                    .next()
                    .is_some_and(|n| n.starts_with(b"containerd-shim"))
            });
            // Nodes in their own mount namespaces use the same socket path: a shim is this
            // node's only in this mount namespace.
            is_shim
                && args.windows(2).any(|w| w[0] == b"-address" && w[1] == want)
                && std::fs::read_link(root.join(format!("proc/{pid}/ns/mnt"))).ok() == own_ns
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// What one step of a reset did: `Ok` done, `Err` failed (the reset then exits non-zero).
pub type Step = Result<String, String>;

fn kill9(pid: u32) -> nix::Result<()> {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
}

fn procs_of(cg: &Path) -> Vec<u32> {
    std::fs::read_to_string(cg.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Carries out a plan; returns what was done, one step each (failures included).
pub fn reset(plan: &ResetPlan) -> Vec<Step> {
    let mut done = Vec::new();
    // The systemd cgroup driver's pods are systemd units (kubepods.slice, a slice per pod, a
    // scope per container): stopping the top slice kills them and removes their cgroups, and
    // leaves no unit behind that the next kubelet could not make again (an rmdir behind
    // systemd's back would). What it leaves, the steps below take.
    if plan.root == Path::new("/")
        && plan
            .cgroups
            .iter()
            .any(|c| c.file_name().is_some_and(|n| n == "kubepods.slice"))
        && Path::new("/run/systemd/system").is_dir()
    {
        done.push(
            run("systemctl", &["stop", "kubepods.slice"])
                .map(|_| "stopped kubepods.slice (systemd)".to_string())
                .map_err(|e| format!("systemctl stop kubepods.slice: {e}")),
        );
    }
    // Containers first (their processes are in the pod cgroups), then the shims that wait on
    // them: both outlive a containerd and a kubelet that were stopped alone.
    let mut killed = std::collections::BTreeSet::new();
    for cg in &plan.cgroups {
        for pid in procs_of(cg) {
            // The same process is in every v1 hierarchy: once is enough.
            if killed.insert(pid) && kill9(pid).is_ok() {
                done.push(Ok(format!("killed pid {pid} (in {})", cg.display())));
            }
        }
    }
    for &pid in &plan.shims {
        match kill9(pid) {
            Ok(()) => done.push(Ok(format!("killed containerd shim pid {pid}"))),
            Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => done.push(Err(format!("cannot kill containerd shim pid {pid}: {e}"))),
        }
    }
    for m in &plan.mounts {
        match nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => done.push(Ok(format!("unmounted {}", m.display()))),
            // Already gone with a parent mount that was detached before it.
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => {}
            Err(e) => done.push(Err(format!("cannot unmount {}: {e}", m.display()))),
        }
    }
    // What is still mounted now (a mount that would not go): never deleted through.
    let points = mount_points(&plan.root);
    for p in &plan.paths {
        match remove_tree(p, &points) {
            Ok(kept) if kept.is_empty() => done.push(Ok(format!("removed {}", p.display()))),
            Ok(kept) => {
                for k in kept {
                    done.push(Err(format!(
                        "left {}: a mount (unmount it, then reset again)",
                        k.display()
                    )));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => done.push(Err(format!("cannot remove {}: {e}", p.display()))),
        }
    }
    // A killed process leaves its cgroup when it has exited: wait for that (bounded), then
    // rmdir, deepest first (never a recursive delete in cgroupfs).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    for cg in &plan.cgroups {
        while !procs_of(cg).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10)); // poll with a deadline
        }
        match std::fs::remove_dir(cg) {
            Ok(()) => done.push(Ok(format!("removed cgroup {}", cg.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => done.push(Err(format!("cannot remove cgroup {}: {e}", cg.display()))),
        }
    }
    if plan.network {
        if let Some(kp) = &plan.kube_proxy {
            done.push(
                run(&kp.display().to_string(), &["--cleanup"])
                    .map(|_| format!("{} --cleanup", kp.display()))
                    .map_err(|e| format!("{} --cleanup failed: {e}", kp.display())),
            );
        }
        done.extend(reset_network());
    }
    done
}

fn run(prog: &str, args: &[&str]) -> Result<String, String> {
    let o = Command::new(prog)
        .args(args)
        .output()
        .map_err(|e| format!("{prog}: {e}"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

/// Whether a chain is one a node adds: kube-proxy's and the kubelet's (KUBE-*), the bridge
/// plugin's (CNI-*).
fn our_chain(c: &str) -> bool {
    c.starts_with("KUBE-") || c.starts_with("CNI-")
}

/// The `iptables -D` arguments that undo each rule of `rules` (`iptables -S` output) that
/// jumps from a chain not ours into one of ours: the jumps into what we then delete.
pub fn jumps_into_ours(rules: &str) -> Vec<Vec<String>> {
    rules
        .lines()
        .filter_map(|line| {
            // -S quotes comments as a shell would ("kubernetes service portals").
            let f = shell_words::split(line).ok()?;
            let from_builtin =
                f.first().is_some_and(|a| a == "-A") && f.get(1).is_some_and(|c| !our_chain(c));
            let into_ours = f.windows(2).any(|w| w[0] == "-j" && our_chain(&w[1]));
            (from_builtin && into_ours).then(|| {
                let mut d = vec!["-D".to_string()];
                d.extend(f[1..].iter().cloned());
                d
            })
        })
        .collect()
}

/// The routes to other nodes' pod subnets, the CNI bridge, and the chains kube-proxy, the kubelet and the bridge plugin add, in
/// IPv4 and IPv6, with the jump rules into them.
fn reset_network() -> Vec<Step> {
    let mut done = Vec::new();
    // The routes to other nodes' pod subnets (dmucctl routes), by their protocol number.
    match crate::routes::remove_all() {
        Ok(0) => {}
        Ok(n) => done.push(Ok(format!(
            "removed {n} routes to other nodes' pod subnets (proto {})",
            crate::routes::PROTO
        ))),
        Err(e) => done.push(Err(format!("cannot remove the pod subnet routes: {e}"))),
    }
    // Asked of netlink, not /sys: /sys shows the network namespace that mounted it, which a
    // node in a namespace of its own does not have.
    if run("ip", &["link", "show", "cni0"]).is_ok() {
        done.push(
            run("ip", &["link", "delete", "cni0"])
                .map(|_| "deleted the cni0 bridge".to_string())
                .map_err(|e| format!("cannot delete cni0: {e}")),
        );
    }
    for prog in ["iptables", "ip6tables"] {
        for table in ["nat", "filter", "mangle", "raw"] {
            let Ok(rules) = run(prog, &["-t", table, "-S"]) else {
                continue;
            };
            for d in jumps_into_ours(&rules) {
                let mut args = vec!["-t", table];
                args.extend(d.iter().map(String::as_str));
                done.push(
                    run(prog, &args)
                        .map(|_| format!("{prog} -t {table} {}", shell_words::join(&d)))
                        .map_err(|e| format!("cannot {prog} {}: {e}", shell_words::join(&args))),
                );
            }
            let chains: Vec<&str> = rules
                .lines()
                .filter_map(|l| l.strip_prefix("-N "))
                .filter(|c| our_chain(c))
                .collect();
            // Flush all first: our chains jump into each other.
            for c in &chains {
                let _ = run(prog, &["-t", table, "-F", c]);
            }
            for c in &chains {
                done.push(
                    run(prog, &["-t", table, "-X", c])
                        .map(|_| format!("{prog} -t {table} -X {c}"))
                        .map_err(|e| format!("cannot {prog} -t {table} -X {c}: {e}")),
                );
            }
        }
    }
    done
}

/// Asks on stdin; true only for y/yes.
pub fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, p: &str, s: &str) {
        let f = root.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, s).unwrap();
    }

    #[test]
    fn doctor_reads_the_host_under_its_root() {
        let r = tempfile::tempdir().unwrap();
        let root = r.path();
        write(
            root,
            "proc/swaps",
            "Filename Type Size Used Priority\n/swapfile file 1 0 -2\n",
        );
        write(root, "proc/modules", "overlay 151552 0 - Live 0x0\n");
        write(root, "proc/sys/net/ipv4/ip_forward", "0\n");
        write(
            root,
            "proc/self/status",
            "Name: x\nCapBnd:\t000001fffeffffff\n",
        );
        write(root, "sys/fs/cgroup/cgroup.controllers", "cpu memory\n");
        write(root, "usr/sbin/iptables", "");
        write(root, "opt/bin/etcd", "");
        let i = DoctorInput {
            root: root.to_path_buf(),
            bin: "/opt/bin".into(),
            cni_bin: "/opt/cni/bin".into(),
            node_ip: "127.0.0.1".into(),
            is_root: true,
            check_ports: false,
            tmux_version: Some("tmux 3.3a\n".into()),
            worker_state: None,
            member: None,
            components: vec![],
            pause: None,
        };
        let checks = doctor(&i);
        let get = |w: &str| {
            checks
                .iter()
                .find(|c| c.what == w)
                .unwrap_or_else(|| panic!("{w}"))
        };
        assert_eq!(get("etcd binary").level, Level::Ok);
        assert_eq!(get("kubelet binary").level, Level::Fail);
        // No kubelet or API server: their binary checks say so, no release to tell.
        assert!(checks.iter().all(|c| c.what != "Kubernetes release"));
        assert_eq!(get("swap").level, Level::Warn);
        assert_eq!(get("module overlay").level, Level::Ok);
        assert_eq!(get("module br_netfilter").level, Level::Fail);
        assert!(
            get("module br_netfilter")
                .fix
                .as_ref()
                .unwrap()
                .contains("modprobe br_netfilter")
        );
        let fwd = get("sysctl net.ipv4.ip_forward");
        assert_eq!((fwd.level, fwd.found.as_str()), (Level::Fail, "0"));
        assert_eq!(
            get("sysctl net.bridge.bridge-nf-call-iptables").found,
            "absent"
        );
        assert_eq!(get("cgroup version").found, "v2");
        // bit 24 of 0x1fffeffffff is 0.
        assert_eq!(get("CAP_SYS_RESOURCE").level, Level::Warn);
        assert_eq!(get("node address").level, Level::Fail);
        assert_eq!(get("iptables tool").level, Level::Ok);
        assert_eq!(get("conntrack tool").level, Level::Fail);
        assert_eq!(get("ipset tool").level, Level::Warn);
        assert!(
            get("ipset tool")
                .fix
                .as_ref()
                .unwrap()
                .contains("kube-proxy --cleanup")
        );
        assert_eq!(get("CNI plugins").level, Level::Fail);
        assert_eq!(
            get("ip tool").fix.as_deref(),
            Some("apt-get install -y iproute2")
        );
        assert!(checks.iter().all(|c| c.what != "joined"));
        // Not systemd: said, nothing else about services.
        write(root, "proc/1/comm", "sh\n");
        let plain = doctor(&i);
        let init = plain.iter().find(|c| c.what == "init system").unwrap();
        assert!(init.found.contains("PID 1 is sh"), "{}", init.found);
        assert!(init.found.contains("the cgroupfs driver"), "{}", init.found);
        assert!(plain.iter().all(|c| !c.what.starts_with("distribution's")));
        // systemd, Debian's etcd enabled (as installing etcd-server leaves it), containerd
        // not, dmucd enabled.
        std::fs::create_dir_all(root.join("run/systemd/system")).unwrap();
        let wants = "etc/systemd/system/multi-user.target.wants";
        write(root, &format!("{wants}/etcd.service"), "");
        write(root, &format!("{wants}/dmucd.service"), "");
        let sd = doctor(&i);
        let get = |w: &str| {
            sd.iter()
                .find(|c| c.what == w)
                .unwrap_or_else(|| panic!("{w}"))
        };
        assert!(
            get("init system")
                .found
                .contains("dmucd.service is enabled")
        );
        assert!(get("init system").found.contains("the systemd driver"));
        let etcd = get("distribution's etcd.service");
        assert_eq!(etcd.level, Level::Fail);
        assert!(
            etcd.fix
                .as_ref()
                .unwrap()
                .contains("systemctl disable --now etcd.service")
        );
        assert_eq!(get("distribution's containerd.service").level, Level::Ok);
        // A worker runs no etcd: Debian's may stay.
        let worker = doctor(&DoctorInput {
            worker_state: Some(root.join("state")),
            ..i.clone()
        });
        assert!(
            worker
                .iter()
                .all(|c| c.what != "distribution's etcd.service")
        );
        std::fs::remove_dir_all(root.join("run/systemd")).unwrap();

        // An HA member: no node programs or kernel settings; the balancer and the clocks.
        let member = DoctorInput {
            member: Some(MemberInput {
                sans: vec!["198.18.0.100".into()],
                balancers: vec![("198.18.0.100".into(), Err("connection refused".into()))],
                clocks: vec![
                    ("dmuc-m2".into(), Ok(1)),
                    ("dmuc-m3".into(), Ok(-7)),
                    ("198.18.0.100".into(), Err("timed out".into())),
                ],
            }),
            node_ip: "198.18.0.21".into(),
            ..i.clone()
        };
        let m = doctor(&member);
        let names: Vec<&str> = m.iter().map(|c| c.what.as_str()).collect();
        for gone in [
            "kubelet binary",
            "CNI plugins",
            "module br_netfilter",
            "sysctl net.ipv4.ip_forward",
            "conntrack tool",
            "ipset tool",
        ] {
            assert!(!names.contains(&gone), "{gone}: {names:?}");
        }
        assert!(names.contains(&"etcd binary") && names.contains(&"ip tool"));
        let get = |w: &str| {
            m.iter()
                .find(|c| c.what == w)
                .unwrap_or_else(|| panic!("{w}"))
        };
        let lb = get("balancer");
        assert_eq!(lb.level, Level::Warn);
        assert!(lb.fix.as_ref().unwrap().contains("198.18.0.21:6443"));
        assert_eq!(get("clock against dmuc-m2").level, Level::Ok);
        let skew = get("clock against dmuc-m3");
        assert_eq!((skew.level, skew.found.as_str()), (Level::Fail, "-7 s"));
        assert!(skew.fix.as_ref().unwrap().contains("chrony"));
        assert_eq!(get("clock against 198.18.0.100").level, Level::Warn);
        let none = doctor(&DoctorInput {
            member: Some(MemberInput::default()),
            ..i.clone()
        });
        let lb = none.iter().find(|c| c.what == "balancer").unwrap();
        assert!(lb.fix.as_ref().unwrap().contains("apiserver-sans"));

        // A worker: its programs only, and the join's files.
        let worker = DoctorInput {
            worker_state: Some("/var/lib/dmuc".into()),
            ..i.clone()
        };
        let w = doctor(&worker);
        let names: Vec<&str> = w.iter().map(|c| c.what.as_str()).collect();
        assert!(
            !names.contains(&"etcd binary") && names.contains(&"kubelet binary"),
            "{names:?}"
        );
        let joined = w.iter().find(|c| c.what == "joined").unwrap();
        assert_eq!(joined.level, Level::Fail);
        assert!(
            joined
                .fix
                .as_ref()
                .unwrap()
                .contains("dmucctl token create")
        );
        for f in [
            "ca.crt",
            "kube-proxy.kubeconfig",
            "bootstrap-kubelet.kubeconfig",
        ] {
            write(root, &format!("var/lib/dmuc/pki/{f}"), "x");
        }
        let w = doctor(&worker);
        assert_eq!(
            w.iter().find(|c| c.what == "joined").unwrap().level,
            Level::Ok
        );
        assert!(
            get("tmux").found.contains("in-process"),
            "{:?}",
            get("tmux")
        );
        for (text, level, says) in [
            (Some("tmux 3.6b"), Level::Ok, "`tmux -C` process"),
            (Some("tmux 3.7c"), Level::Ok, "`tmux -C` process"),
            (Some("tmux 2.9"), Level::Warn, "older"),
            (Some("tmux master"), Level::Warn, "`tmux -C` process"),
            (None, Level::Fail, "not found"),
        ] {
            let c = tmux_check(text);
            assert_eq!(c.level, level, "{text:?}");
            assert!(c.found.contains(says), "{text:?}: {}", c.found);
        }
        // cgroup v1: a warning whose fix is the profile's own, not a reboot.
        std::fs::remove_file(root.join("sys/fs/cgroup/cgroup.controllers")).unwrap();
        let v1 = doctor(&i)
            .into_iter()
            .find(|c| c.what == "cgroup version")
            .unwrap();
        assert_eq!(v1.level, Level::Warn);
        assert!(v1.fix.unwrap().contains("failCgroupV1: false"));
    }

    #[test]
    fn reset_removes_what_a_node_leaves_and_keeps_what_is_asked() {
        let r = tempfile::tempdir().unwrap();
        let root = r.path();
        write(root, "var/lib/dmuc/etcd/member/snap", "x");
        write(root, "var/lib/dmuc/pki/ca.crt", "x");
        write(root, "var/lib/dmuc/config/kubelet.yaml", "x");
        write(root, "var/lib/kubelet/pods/a/volumes/x", "x");
        write(root, "run/containerd/containerd.sock", "");
        write(root, "var/lib/cni/networks/dmuc/10.244.0.2", "x");
        write(root, "etc/cni/net.d/10-dmuc.conflist", "{}");
        write(root, "etc/cni/net.d/99-other.conf", "{}");
        std::fs::create_dir_all(root.join("sys/fs/cgroup/kubepods/besteffort/pod1")).unwrap();
        std::fs::create_dir_all(root.join("sys/fs/cgroup/system.slice")).unwrap();
        write(root, "var/log/unrelated.log", "x");
        std::fs::create_dir_all(root.join("sys/fs/cgroup/memory/k8s.io/abc")).unwrap();
        // Another node's pods on this machine, under its own cgroup root.
        std::fs::create_dir_all(root.join("sys/fs/cgroup/memory/dmuc-w1/kubepods/pod2")).unwrap();
        write(root, "srv/kubelet/pods/b", "x");
        // Two shims: this node's (its -address is the profile's socket) and another
        // containerd's; and a process that only names the socket.
        write(
            root,
            "proc/4242/cmdline",
            "/usr/bin/containerd-shim-runc-v2\0-namespace\0k8s.io\0-id\0abc\0-address\0/run/containerd/containerd.sock\0",
        );
        write(
            root,
            "proc/4343/cmdline",
            "/usr/bin/containerd-shim-runc-v2\0-namespace\0moby\0-address\0/run/docker/containerd/containerd.sock\0",
        );
        write(
            root,
            "proc/4444/cmdline",
            "tail\0-address\0/run/containerd/containerd.sock\0",
        );
        write(root, "opt/bin/kube-proxy", "");
        let node = ResetInput {
            root,
            state: Path::new("/var/lib/dmuc"),
            keep: &["pki"],
            containerd_socket: Path::new("/run/containerd/containerd.sock"),
            bin: Path::new("/opt/bin"),
            cgroup_root: Path::new("/"),
            dirs: &[PathBuf::from("/srv/kubelet")],
            pods: true,
        };
        let plan = reset_plan(&node);
        // A control-plane member's reset on the same host: its state only.
        let member = reset_plan(&ResetInput {
            dirs: &[],
            pods: false,
            ..node
        });
        assert_eq!(
            member.paths,
            vec![
                root.join("var/lib/dmuc/config"),
                root.join("var/lib/dmuc/etcd")
            ]
        );
        assert!(member.cgroups.is_empty() && member.shims.is_empty() && !member.network);
        assert_eq!(member.kube_proxy, None);
        assert_eq!(plan.shims, vec![4242], "only this node's shims");
        assert_eq!(plan.kube_proxy, Some(root.join("opt/bin/kube-proxy")));
        // The fake shim PIDs must not be signalled on the real machine.
        let plan = ResetPlan {
            shims: Vec::new(),
            ..plan
        };
        assert!(
            !plan.network,
            "a temp root must not touch the host's network"
        );
        let done: Vec<String> = reset(&plan)
            .into_iter()
            .map(|s| s.unwrap_or_else(|e| format!("FAILED {e}")))
            .collect();
        for gone in [
            "var/lib/dmuc/etcd",
            "var/lib/dmuc/config",
            "var/lib/kubelet",
            "run/containerd",
            "var/lib/cni",
            "etc/cni/net.d/10-dmuc.conflist",
            "sys/fs/cgroup/kubepods",
            "sys/fs/cgroup/memory/k8s.io",
            "srv/kubelet",
        ] {
            assert!(!root.join(gone).exists(), "{gone} left: {done:#?}");
        }
        for kept in [
            "var/lib/dmuc/pki/ca.crt",
            "etc/cni/net.d/99-other.conf",
            "var/log/unrelated.log",
            "sys/fs/cgroup/system.slice",
            "sys/fs/cgroup/memory/dmuc-w1/kubepods/pod2",
        ] {
            assert!(root.join(kept).exists(), "{kept} removed");
        }
        assert!(
            done.iter()
                .any(|l| l.starts_with("removed") && l.ends_with("var/lib/kubelet"))
        );
        assert_eq!(
            done.iter()
                .filter(|l| l.starts_with("removed cgroup"))
                .count(),
            5,
            "deepest first: {done:#?}"
        );
    }

    #[test]
    fn the_jumps_into_our_chains_are_undone_with_their_quoted_comments() {
        let rules = r#"-P INPUT ACCEPT
-N KUBE-SERVICES
-N CNI-717aa827590f35226fc1a10b
-N DOCKER
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A POSTROUTING -s 10.244.0.2/32 -m comment --comment "name: \"dmuc\" id: \"4765\"" -j CNI-717aa827590f35226fc1a10b
-A KUBE-SERVICES -j KUBE-NODEPORTS
-A FORWARD -j DOCKER
-A OUTPUT -j KUBE-FIREWALL
"#;
        let d = jumps_into_ours(rules);
        assert_eq!(d.len(), 3, "{d:?}");
        assert_eq!(
            d[0],
            [
                "-D",
                "INPUT",
                "-m",
                "conntrack",
                "--ctstate",
                "NEW",
                "-m",
                "comment",
                "--comment",
                "kubernetes load balancer firewall",
                "-j",
                "KUBE-PROXY-FIREWALL"
            ]
        );
        assert_eq!(d[1][7], r#"name: "dmuc" id: "4765""#);
        assert_eq!(d[2], ["-D", "OUTPUT", "-j", "KUBE-FIREWALL"]);
    }
}

#[cfg(test)]
mod release_tests {
    use super::*;
    use crate::release::Version;

    #[test]
    fn doctor_says_which_release_it_found_and_whether_it_is_supported() {
        let v = |minor| Ok(Some(Version { minor, patch: 2 }));
        let c = release_check([v(20), v(20)]).unwrap();
        assert_eq!(c.level, Level::Ok);
        assert!(
            c.found.starts_with("v1.20.2: supported (1.20 to 1.36"),
            "{}",
            c.found
        );
        // A worker: its kubelet only.
        let c = release_check([v(36), Ok(None)]).unwrap();
        assert!(c.found.starts_with("v1.36.2"), "{}", c.found);
        let c = release_check([v(37), Ok(None)]).unwrap();
        assert_eq!(c.level, Level::Fail);
        assert!(c.found.contains("1.20 to 1.36"), "{}", c.found);
        assert!(c.fix.unwrap().contains("dmucctl fetch --kubernetes"));
        let c = release_check([v(30), v(28)]).unwrap();
        assert!(c.found.contains("newer than the API server"), "{}", c.found);
        let c = release_check([
            Err("kubelet --version printed no Kubernetes version".into()),
            Ok(None),
        ])
        .unwrap();
        assert_eq!(c.level, Level::Fail);
        assert!(release_check([Ok(None), Ok(None)]).is_none());
    }
}

#[cfg(test)]
mod mount_tests {
    use super::*;

    #[test]
    fn reset_stops_a_running_unit_only() {
        for (answer, want) in [
            ("active\n", Some("active")),
            ("activating", Some("activating")),
            ("deactivating\n", Some("deactivating")),
            ("inactive\n", None),
            ("failed\n", None),
            ("unknown\n", None),
            ("", None),
        ] {
            assert_eq!(unit_running(answer), want, "{answer:?}");
        }
        let root = tempfile::tempdir().unwrap();
        assert!(!systemd_booted(root.path()));
        std::fs::create_dir_all(root.path().join("run/systemd/system")).unwrap();
        assert!(systemd_booted(root.path()));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mount(r"/var/lib/a\040b"), b"/var/lib/a b");
        assert_eq!(unescape_mount(r"/x\011\012\134y"), b"/x\t\n\\y");
        // Not an escape: left as it is.
        assert_eq!(unescape_mount(r"/x\09"), br"/x\09");
        assert_eq!(unescape_mount(r"/x\"), br"/x\");
    }

    /// A bind mount whose path has a space (`\040` in mountinfo) inside what reset removes:
    /// found, and never deleted through while it is still mounted.
    #[test]
    fn reset_does_not_delete_through_a_mount_with_a_space_in_its_path() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let vol = "var/lib/kubelet/pods/p1/volumes/my vol";
        std::fs::create_dir_all(r.join(vol)).unwrap();
        std::fs::write(r.join(vol).join("precious"), "x").unwrap();
        std::fs::write(r.join("var/lib/kubelet/pods/p1/other"), "x").unwrap();
        std::fs::create_dir_all(r.join("proc/self")).unwrap();
        std::fs::write(
            r.join("proc/self/mountinfo"),
            "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n\
             99 22 8:1 /data /var/lib/kubelet/pods/p1/volumes/my\\040vol rw - ext4 /dev/sda1 rw\n",
        )
        .unwrap();
        assert_eq!(
            mount_points(r)[1],
            r.join("var/lib/kubelet/pods/p1/volumes/my vol")
        );
        let kept = remove_tree(&r.join("var/lib/kubelet"), &mount_points(r)).unwrap();
        assert_eq!(kept, [r.join(vol)]);
        assert!(r.join(vol).join("precious").exists());
        assert!(!r.join("var/lib/kubelet/pods/p1/other").exists());
        // Without the mount, the tree goes.
        assert!(
            remove_tree(&r.join("var/lib/kubelet"), &[])
                .unwrap()
                .is_empty()
        );
        assert!(!r.join("var/lib/kubelet").exists());
    }

    #[test]
    fn a_port_held_by_this_node_s_component_is_told_from_another_process() {
        // /proc/net/tcp as the kernel writes it: 6443 (0x192B) listening, and a connection
        // from it; 2379 (0x094B) listening on ::.
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 0100007F:192B 00000000:0000 0A 00000000:00000000 00:00000000 00000000   999        0 4242 1 0000000000000000 100 0 0 10 0\n\
   1: 0100007F:192B 0100007F:D0A2 01 00000000:00000000 00:00000000 00000000   999        0 4343 1 0000000000000000 20 4 30 10 -1\n";
        assert_eq!(listening_inodes(tcp, 6443), vec![4242]);
        assert!(listening_inodes(tcp, 2379).is_empty());
        let tcp6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000000000000000000000000000:094B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0\n";
        assert_eq!(listening_inodes(tcp6, 2379), vec![77]);

        let comps = vec![
            ("etcd".to_string(), 100),
            ("kube-apiserver".to_string(), 200),
        ];
        // The API server, and a child in its group.
        assert_eq!(
            port_holder(&[(200, 200), (201, 200)], &comps),
            PortHolder::Ours("kube-apiserver".into(), 200)
        );
        // Not ours: another process, or ours and another together, or nobody found.
        assert_eq!(
            port_holder(&[(300, 300)], &comps),
            PortHolder::Other(vec![300])
        );
        assert_eq!(
            port_holder(&[(200, 200), (300, 300)], &comps),
            PortHolder::Other(vec![200, 300])
        );
        assert_eq!(port_holder(&[], &comps), PortHolder::Other(vec![]));
        // No dmucd answered: nothing is ours.
        assert_eq!(
            port_holder(&[(200, 200)], &[]),
            PortHolder::Other(vec![200])
        );
    }

    #[test]
    fn the_pause_image_is_in_an_archive_or_doctor_says_the_first_start_needs_a_registry() {
        let dir = tempfile::tempdir().unwrap();
        let image = "registry.k8s.io/pause:3.10";
        // No archive: a warning that names the directory, the image and the fix.
        let c = pause_check(dir.path(), image, false);
        assert_eq!(c.level, Level::Warn, "{c:?}");
        assert!(
            c.found.contains("no archive in") && c.found.contains(image),
            "{c:?}"
        );
        assert!(
            c.fix.as_deref().unwrap().contains("ContainerCreating"),
            "{c:?}"
        );
        // Another image's archive does not count; the name across a read boundary does.
        std::fs::write(dir.path().join("web.tar"), b"RepoTags: busybox-httpd:local").unwrap();
        assert_eq!(pause_check(dir.path(), image, false).level, Level::Warn);
        let mut tar = vec![0u8; (1 << 20) - 10];
        tar.extend_from_slice(format!("{{\"io.containerd.image.name\":\"{image}\"}}").as_bytes());
        tar.extend_from_slice(&[0u8; 4096]);
        std::fs::write(dir.path().join("pause-3.10.tar"), &tar).unwrap();
        let c = pause_check(dir.path(), image, false);
        assert_eq!(c.level, Level::Ok, "{c:?}");
        assert!(c.found.contains("pause-3.10.tar"), "{c:?}");
        // Not a `.tar`: not what `images` imports.
        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join("pause.tar.gz"), image).unwrap();
        assert_eq!(pause_check(other.path(), image, false).level, Level::Warn);
        // A running node: its `images` component saw to it.
        assert_eq!(pause_check(other.path(), image, true).level, Level::Ok);
    }
}
