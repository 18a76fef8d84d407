//! Nodes on one machine for the multi-node and HA tests: a bridge on the host (198.18.0.1)
//! and nodes, each a dmucd in network, mount and UTS namespaces of its own (a veth on the
//! bridge; its own /run, kubelet root, containerd root, CNI state and pod logs by bind mounts).
//!
//! The namespaces are entered with nsenter, not `ip netns exec`: that remounts /sys and so
//! hides the cgroup hierarchies the kubelet needs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::realcluster::{T, http_get};
use crate::util::*;

pub const BRIDGE: &str = "dmucbr0";
/// The host's address on the bridge.
pub const CP_IP: &str = "198.18.0.1";

/// The test's bridge, deleted at the end (with whatever veths are still on it).
pub struct Bridge;

impl Bridge {
    pub fn new() -> Bridge {
        // One left by a killed run of this test: nothing else uses the name.
        let _ = Command::new("ip")
            .args(["link", "del", BRIDGE])
            .stderr(Stdio::null())
            .status();
        for args in [
            vec!["link", "add", BRIDGE, "type", "bridge"],
            vec!["addr", "add", &format!("{CP_IP}/24"), "dev", BRIDGE][..].to_vec(),
            vec!["link", "set", BRIDGE, "up"],
        ] {
            let st = Command::new("ip").args(&args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        }
        Bridge
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    }
}

/// A node: the namespaces (held by a `cat` the test started, until its stdin closes), its
/// directories, and its dmucd.
pub struct Worker {
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
    pub holder: Child,
    d: Option<Daemon>,
    vars: Vec<String>,
}

impl Worker {
    pub fn new(name: &str, ip: &str, work: &Path) -> Worker {
        let dir = work.join(name);
        let holder = Command::new("unshare")
            .args([
                "--net",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "--",
                "cat",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = holder.id().to_string();
        // The namespaces exist once unshare has exec'd cat.
        wait_for("the node's namespaces", T, || {
            let me = std::fs::read_link("/proc/self/ns/net").ok()?;
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let ns = std::fs::read_link(format!("/proc/{pid}/ns/net")).ok()?;
            (cmd.starts_with(b"cat\0") && ns != me).then_some(())
        });
        let veth = format!("veth-{name}");
        let peer = format!("vp-{name}");
        for args in [
            vec![
                "link", "add", &veth, "type", "veth", "peer", "name", &peer, "netns", &pid,
            ],
            vec!["link", "set", &veth, "master", BRIDGE, "up"],
        ] {
            let st = Command::new("ip").args(&args).status().unwrap();
            assert!(st.success(), "ip {args:?}");
        }
        let mut binds = String::new();
        for (sub, at) in [
            ("kubelet", "/var/lib/kubelet"),
            ("containerd", "/var/lib/containerd"),
            ("cni", "/var/lib/cni"),
            ("pods", "/var/log/pods"),
            ("containers", "/var/log/containers"),
        ] {
            let from = dir.join("root").join(sub);
            std::fs::create_dir_all(&from).unwrap();
            binds += &format!("mkdir -p {at} && mount --bind {} {at}\n", from.display());
        }
        let setup = format!(
            "set -e\nhostname {name}\nip link set {peer} name eth0\nip link set lo up\n\
             ip addr add {ip}/24 dev eth0\nip link set eth0 up\nip route add default via {CP_IP}\n\
             mount -t tmpfs tmpfs /run\n{binds}"
        );
        let o = Command::new("nsenter")
            .args(["-t", &pid, "-n", "-m", "-u", "--", "sh", "-c", &setup])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Worker {
            name: name.into(),
            ip: ip.into(),
            vars: Vec::new(),
            dir,
            holder,
            d: None,
        }
    }

    /// `nsenter` into the node's namespaces, then `args`.
    pub fn enter(&self) -> Vec<String> {
        [
            "nsenter",
            "-t",
            &self.holder.id().to_string(),
            "-n",
            "-m",
            "-u",
            "--",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// A dmucctl command on this node: success, and what it said.
    pub fn dmucctl(&self, args: &[&str]) -> (bool, String) {
        let e = self.enter();
        let o = Command::new(&e[0])
            .args(&e[1..])
            .arg(bin_dir().join("dmucctl"))
            .args(args)
            .output()
            .unwrap();
        said(&o)
    }

    /// `dmucctl join` on this node, into `state`.
    pub fn join(&self, server: &str, token: &str, pin: &str, state: &Path) -> (bool, String) {
        let st = state.display().to_string();
        self.dmucctl(&[
            "join",
            "--server",
            server,
            "--token",
            token,
            "--ca-cert-hash",
            pin,
            "--state",
            &st,
        ])
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Starts config/worker.toml on this node.
    pub fn start(&mut self, bin: &Path, images: &Path) {
        let vars = vec![
            format!("bin={}", bin.display()),
            "cni-bin=/usr/lib/cni".into(),
            format!("state={}", self.state().display()),
            format!("images={}", images.display()),
            format!("node={}", self.name),
            format!("node-ip={}", self.ip),
            format!("cgroup-root=/{}", self.name),
        ];
        self.start_profile("worker.toml", vars);
    }

    /// Starts a dmucd on the shipped profile `name` with `vars` (`KEY=VALUE`) on this node.
    pub fn start_profile(&mut self, name: &str, vars: Vec<String>) {
        let profile = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../config")
            .join(name);
        self.vars = vars;
        let mut args: Vec<&str> = Vec::new();
        for v in &self.vars {
            args.extend(["--var", v.as_str()]);
        }
        let e = self.enter();
        let wrap: Vec<&str> = e.iter().map(String::as_str).collect();
        let dir = tempfile::tempdir_in(&self.dir).unwrap();
        self.d = Some(Daemon::start_wrapped(
            dir,
            &std::fs::read_to_string(profile).unwrap(),
            &args,
            &wrap,
        ));
    }

    /// kill -9 of every process in the node's network namespace but the holder: its dmucd,
    /// tmux server and components, as a power cut would. Returns how many.
    pub fn kill_all(&mut self) -> usize {
        let holder = self.holder.id();
        let ns = std::fs::read_link(format!("/proc/{holder}/ns/net")).unwrap();
        let mut killed = std::collections::BTreeSet::new();
        // Until none is left: a dying process's parent may still fork.
        wait_for("every process of the node to die", T, || {
            let mut left = 0;
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                    continue;
                };
                if pid == holder
                    || std::fs::read_link(format!("/proc/{pid}/ns/net"))
                        .ok()
                        .as_ref()
                        != Some(&ns)
                {
                    continue;
                }
                // A zombie waits for its parent (the test, for dmucd): not alive any more.
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z'))
                {
                    continue;
                }
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                killed.insert(pid);
                left += 1;
            }
            (left == 0).then_some(())
        });
        if let Some(d) = self.d.as_mut() {
            d.crash();
        }
        killed.len()
    }

    /// The processes in the node's network namespace (not the holder): PID and program name.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let holder = self.holder.id();
        let Ok(ns) = std::fs::read_link(format!("/proc/{holder}/ns/net")) else {
            return vec![];
        };
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != holder
                && std::fs::read_link(format!("/proc/{pid}/ns/net"))
                    .ok()
                    .as_ref()
                    == Some(&ns)
            {
                let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                v.push((pid, comm.trim().to_string()));
            }
        }
        v
    }

    /// Proportional set size of the node's processes in kB, summed by program name, largest
    /// first (for the test's output and docs/performance.md; never asserted).
    pub fn pss(&self) -> Vec<(String, u64)> {
        let mut by: std::collections::BTreeMap<String, u64> = Default::default();
        for (pid, comm) in self.processes() {
            let kb = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| l.strip_prefix("Pss:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            *by.entry(comm).or_default() += kb;
        }
        let mut v: Vec<(String, u64)> = by.into_iter().collect();
        v.sort_by_key(|(_, kb)| std::cmp::Reverse(*kb));
        v
    }

    /// A new dmucd on the same directory and profile (after [`Worker::kill_all`]).
    pub fn restart(&mut self) {
        self.daemon().restart();
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.d.as_mut().unwrap()
    }

    /// `dmucctl reset --yes` of this node (it stops its dmucd first).
    pub fn reset(&mut self) -> (bool, String) {
        let Some(d) = &self.d else {
            return (true, String::new());
        };
        let mut args: Vec<String> = vec!["reset".into(), "--yes".into(), "--config".into()];
        args.push(d.path("graph.toml").display().to_string());
        for v in &self.vars {
            args.extend(["--var".to_string(), v.clone()]);
        }
        args.extend(["--socket".to_string(), d.socket().display().to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = self.dmucctl(&args);
        if let Some(mut d) = self.d.take() {
            d.wait_exit(T);
        }
        r
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        let (ok, said) = self.reset();
        if !ok {
            eprintln!("cleanup: reset of {}: {said}", self.name);
        }
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

/// GET / from `addr` inside the network namespace of `pid` (a thread of ours enters it).
pub fn http_get_in(pid: u32, addr: &str) -> Option<String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).ok()?;
    let addr = addr.to_string();
    std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        http_get(&addr)
    })
    .join()
    .ok()?
}

pub fn routes_in(w: Option<&Worker>) -> String {
    let mut c = match w {
        Some(w) => {
            let e = w.enter();
            let mut c = Command::new(&e[0]);
            c.args(&e[1..]).arg("ip");
            c
        }
        None => Command::new("ip"),
    };
    let o = c
        .args(["-4", "route", "show", "proto", "211"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}
