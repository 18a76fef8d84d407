//! Nodes on one machine for the multi-node and HA tests: a bridge on the host (198.18.0.1)
//! and nodes, each a dmucd in network, mount and UTS namespaces of its own (a veth on the
//! bridge; its own /run, kubelet root, containerd root, CNI state and pod logs by bind mounts),
//! made and entered by config/one-machine.sh, the script docs/operations.md gives users.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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
        // The script's own `up`, as the docs' recipe starts.
        let (ok, said) = one_machine_sh(Path::new("/nonexistent"), &["up"]);
        assert!(ok && said.contains(BRIDGE), "one-machine.sh up: {said}");
        Bridge
    }
}

impl Drop for Bridge {
    /// `one-machine.sh down`, which refuses while a node is left (said, and the bridge
    /// deleted all the same).
    fn drop(&mut self) {
        let (ok, said) = one_machine_sh(Path::new("/nonexistent"), &["down"]);
        if !ok {
            eprintln!("cleanup: one-machine.sh down: {said}");
            let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
        }
    }
}

/// The script users run for the same (docs/operations.md, "On one machine").
pub fn one_machine() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/one-machine.sh")
}

/// `config/one-machine.sh ARGS` with the nodes' directories under `work`: success, and what
/// it said.
fn one_machine_sh(work: &Path, args: &[&str]) -> (bool, String) {
    let o = Command::new("sh")
        .arg(one_machine())
        .args(args)
        .env("DMUC_NODES", work)
        .env("DMUC_BRIDGE", BRIDGE)
        .env("DMUC_BRIDGE_IP", format!("{CP_IP}/24"))
        .output()
        .unwrap();
    said(&o)
}

/// A node made by `config/one-machine.sh add`: its namespaces, its directories (under the
/// test's `work`), and its dmucd.
pub struct Worker {
    pub name: String,
    pub ip: String,
    pub dir: PathBuf,
    work: PathBuf,
    d: Option<Daemon>,
    vars: Vec<String>,
}

impl Worker {
    pub fn new(name: &str, ip: &str, work: &Path) -> Worker {
        // One left by a killed run of this test (refused while it runs processes).
        let _ = one_machine_sh(work, &["del", name, "--purge"]);
        let (ok, out) = one_machine_sh(work, &["add", name, ip]);
        assert!(ok, "one-machine.sh add {name} {ip}: {out}");
        Worker {
            name: name.into(),
            ip: ip.into(),
            vars: Vec::new(),
            dir: work.join(name),
            work: work.to_path_buf(),
            d: None,
        }
    }

    /// The node's network namespace (`ip netns`'s file).
    pub fn netns(&self) -> PathBuf {
        PathBuf::from(format!("/run/netns/dmuc-{}", self.name))
    }

    /// `net:[INODE]`, as /proc/PID/ns/net names the node's network namespace.
    fn netns_id(&self) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(self.netns()).ok()?.ino();
        Some(PathBuf::from(format!("net:[{ino}]")))
    }

    /// Into the node's namespaces, then `args` (`one-machine.sh run NAME -- ...`).
    pub fn enter(&self) -> Vec<String> {
        [
            "sh",
            &one_machine().display().to_string(),
            "run",
            &self.name,
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

    /// kill -9 of every process in the node's network namespace: its dmucd,
    /// tmux server and components, as a power cut would. Returns how many.
    pub fn kill_all(&mut self) -> usize {
        let ns = self.netns_id().expect("the node's network namespace");
        let mut killed = std::collections::BTreeSet::new();
        // Until none is left: a dying process's parent may still fork.
        wait_for("every process of the node to die", T, || {
            let mut left = 0;
            for e in std::fs::read_dir("/proc").unwrap().flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                    continue;
                };
                if std::fs::read_link(format!("/proc/{pid}/ns/net"))
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

    /// The processes in the node's network namespace: PID and program name.
    pub fn processes(&self) -> Vec<(u32, String)> {
        let Some(ns) = self.netns_id() else {
            return vec![];
        };
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if std::fs::read_link(format!("/proc/{pid}/ns/net"))
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
        let (ok, said) = one_machine_sh(&self.work, &["del", &self.name, "--purge"]);
        if !ok {
            eprintln!("cleanup: one-machine.sh del {}: {said}", self.name);
        }
    }
}

/// GET / from `addr` inside the network namespace `netns` (a thread of ours enters it).
pub fn http_get_in(netns: &Path, addr: &str) -> Option<String> {
    let ns = std::fs::File::open(netns).ok()?;
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

/// `config/one-machine.sh` on its own (no cluster): a node with its address, name and own
/// /run; none of the host's mounts under /run copied into it (a copy would keep the host's
/// pods' network namespaces alive); what it refuses; and nothing left after `del --purge` and
/// `down`.
#[test]
fn one_machine_makes_a_node_without_the_host_s_mounts_and_refuses_what_would_lose_work() {
    if dmuc_tests::skip_unless(
        "nodes::one_machine_makes_a_node",
        &dmuc_tests::missing_programs(&["unshare", "nsenter", "ip", "findmnt"]),
    ) {
        return;
    }
    // The bridge and the 198.18.0.0/24 addresses are the multi-node tests' too.
    let _ports = fixed_ports();
    let work = tempfile::tempdir().unwrap();
    let sh = |args: &[&str]| one_machine_sh(work.path(), args);
    // A mount of the host's under /run, as a pod's network namespace is.
    let host_mount = tempfile::tempdir_in("/run").unwrap();
    let hm = host_mount.path().display().to_string();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs", &hm])
        .status()
        .unwrap();
    assert!(st.success());
    let _bridge = Bridge::new();
    for bad in ["", "W1", "a_b", "-x", "abcdefghijk"] {
        let (ok, out) = sh(&["add", bad, "198.18.0.31"]);
        assert!(!ok && out.contains("node name"), "{bad:?}: {out}");
    }
    let w = Worker::new("dmuc-t1", "198.18.0.31", work.path());
    let run = |cmd: &str| {
        let e = w.enter();
        let o = Command::new(&e[0])
            .args(&e[1..])
            .args(["sh", "-c", cmd])
            .output()
            .unwrap();
        said(&o)
    };
    let (ok, out) = run("hostname; ip -4 -o addr show dev eth0; findmnt -rn -o TARGET");
    assert!(ok, "{out}");
    assert!(out.starts_with("dmuc-t1\n"), "{out}");
    assert!(out.contains("198.18.0.31/24"), "{out}");
    assert!(
        !out.contains(&hm),
        "the host's {hm} copied into the node:\n{out}"
    );
    for at in [
        "/run",
        "/etc/dmuc",
        "/var/lib/dmuc",
        "/var/lib/kubelet",
        "/var/log/pods",
    ] {
        assert!(
            out.lines().any(|l| l == at),
            "{at} not the node's own:\n{out}"
        );
    }
    // Its /etc/dmuc is the node's directory.
    let (ok, out) = run("echo mine > /etc/dmuc/probe");
    assert!(ok, "{out}");
    assert_eq!(
        std::fs::read_to_string(w.dir.join("etc-dmuc/probe")).unwrap(),
        "mine\n"
    );
    // It reaches the host on the bridge.
    let host = std::net::TcpListener::bind((CP_IP, 0)).unwrap();
    let at = host.local_addr().unwrap().to_string();
    let serve = std::thread::spawn(move || {
        use std::io::Write;
        let (mut c, _) = host.accept().unwrap();
        c.write_all(b"HTTP/1.0 200 OK\r\n\r\nfrom the host")
            .unwrap();
    });
    let got = http_get_in(&w.netns(), &at).unwrap_or_default();
    assert!(
        got.ends_with("from the host"),
        "{at} from the node: {got:?}"
    );
    serve.join().unwrap();
    let (ok, out) = sh(&["add", "dmuc-t1", "198.18.0.32"]);
    assert!(!ok && out.contains("exists"), "{out}");
    let (ok, out) = sh(&["list"]);
    assert!(
        ok && out.contains("dmuc-t1 198.18.0.31/24 0 processes"),
        "{out}"
    );
    // A process in the node: del refuses, naming it; down refuses while the node is there.
    let e = w.enter();
    let mut child = Command::new(&e[0])
        .args(&e[1..])
        .arg("cat")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id().to_string();
    wait_for("cat in the node", T, || {
        sh(&["list"])
            .1
            .contains("dmuc-t1 198.18.0.31/24 1 processes")
            .then_some(())
    });
    let (ok, out) = sh(&["del", "dmuc-t1"]);
    assert!(!ok && out.contains(&pid), "{out}");
    let (ok, out) = sh(&["down"]);
    assert!(!ok && out.contains("nodes left: dmuc-t1"), "{out}");
    drop(child.stdin.take());
    child.wait().unwrap();
    let netns = w.netns();
    let dir = w.dir.clone();
    drop(w); // del --purge
    assert!(!netns.exists(), "{} left", netns.display());
    assert!(!dir.exists(), "{} left", dir.display());
    let links = Command::new("ip").args(["-br", "link"]).output().unwrap();
    assert!(!String::from_utf8_lossy(&links.stdout).contains("veth-dmuc-t1"));
    let (ok, out) = sh(&["down"]);
    assert!(ok, "{out}");
    let st = Command::new("umount").arg(&hm).status().unwrap();
    assert!(st.success());
}
