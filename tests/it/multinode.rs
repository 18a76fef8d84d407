//! More nodes, for real: config/cluster.toml as the control plane on a test bridge
//! (198.18.0.1), and two config/worker.toml nodes, each a dmucd in network, mount and UTS
//! namespaces of its own (a veth on the bridge, 198.18.0.11 and .12; its own /run, kubelet
//! root, containerd root, CNI state and pod logs by bind mounts; its own cgroup root), joined
//! with `dmucctl token create` / `dmucctl join`. The checks: three nodes Ready, a Deployment
//! spread over them, pod to pod across nodes by pod IP (the routes components), a ClusterIP
//! Service from every node and from a pod, logs and exec on a worker's pod (its serving
//! certificate approved by csr-approve), a worker's dmucd killed and started again adopting
//! its components, a worker drained, reset and deleted leaving the others (and their pods)
//! alone, a join with a wrong CA pin refused. Then everything is removed: the nodes, the
//! namespaces, the veths, the bridge, the routes.
//!
//! The namespaces are entered with nsenter, not `ip netns exec`: that remounts /sys and so
//! hides the cgroup hierarchies the kubelet needs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::realcluster::{
    Kubectl, T, all_ready, http_get, missing, node_files, start_control_plane, web_manifest,
};
use crate::util::*;

const BRIDGE: &str = "dmucbr0";
const CP_IP: &str = "198.18.0.1";

/// The test's bridge, deleted at the end (with whatever veths are still on it).
struct Bridge;

impl Bridge {
    fn new() -> Bridge {
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

/// A worker node: the namespaces (held by a `cat` the test started, until its stdin
/// closes), its directories, and its dmucd.
struct Worker {
    name: String,
    ip: String,
    dir: PathBuf,
    holder: Child,
    d: Option<Daemon>,
    vars: Vec<String>,
}

impl Worker {
    fn new(name: &str, ip: &str, work: &Path) -> Worker {
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
    fn enter(&self) -> Vec<String> {
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
    fn dmucctl(&self, args: &[&str]) -> (bool, String) {
        let e = self.enter();
        let o = Command::new(&e[0])
            .args(&e[1..])
            .arg(bin_dir().join("dmucctl"))
            .args(args)
            .output()
            .unwrap();
        let said =
            String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
        (o.status.success(), said)
    }

    /// `dmucctl join` on this node, into `state`.
    fn join(&self, server: &str, token: &str, pin: &str, state: &Path) -> (bool, String) {
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

    fn state(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn start(&mut self, bin: &Path, images: &Path) {
        let profile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/worker.toml");
        self.vars = vec![
            format!("bin={}", bin.display()),
            "cni-bin=/usr/lib/cni".into(),
            format!("state={}", self.state().display()),
            format!("images={}", images.display()),
            format!("node={}", self.name),
            format!("node-ip={}", self.ip),
            format!("cgroup-root=/{}", self.name),
        ];
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

    fn daemon(&mut self) -> &mut Daemon {
        self.d.as_mut().unwrap()
    }

    /// `dmucctl reset --yes` of this node (it stops its dmucd first).
    fn reset(&mut self) -> (bool, String) {
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
fn http_get_in(pid: u32, addr: &str) -> Option<String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).ok()?;
    let addr = addr.to_string();
    std::thread::spawn(move || {
        nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
        http_get(&addr)
    })
    .join()
    .ok()?
}

fn routes_in(w: Option<&Worker>) -> String {
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

#[test]
fn workers_join_share_pods_and_services_and_leave_the_others_alone() {
    let mut why = missing();
    why.extend(dmuc_tests::missing_programs(&["unshare", "nsenter"]));
    if skip_unless("the multi-node test", &why) {
        return;
    }
    let _ports = fixed_ports();
    let work = tempfile::tempdir().unwrap();
    let (bin, images) = node_files(work.path());
    let _bridge = Bridge::new();

    // The control plane, on the bridge's address.
    let state = work.path().join("cp");
    let (mut reset, cp) = start_control_plane(
        &bin,
        &images,
        &state,
        &[&format!("node-ip={CP_IP}"), "node=dmuc-cp"],
    );
    all_ready(
        &cp,
        &["kube-apiserver", "kube-controller-manager", "kubelet"],
        "the control plane",
    );
    let k = Kubectl {
        prog: bin.join("kubectl"),
        kubeconfig: state.join("pki/admin.kubeconfig"),
    };
    wait_for("the control-plane node to be Ready", T, || {
        k.node_ready("dmuc-cp").then_some(())
    });
    let o = Command::new(bin_dir().join("dmucctl"))
        .args(["token", "create", "--kubeconfig"])
        .arg(&k.kubeconfig)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let join = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let words: Vec<&str> = join.split_whitespace().collect();
    assert_eq!(words[3], format!("https://{CP_IP}:6443"), "{join}");

    // A token that expires soon, for a join refused later on.
    let o = Command::new(bin_dir().join("dmucctl"))
        .args(["token", "create", "--ttl", "10s", "--kubeconfig"])
        .arg(&k.kubeconfig)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expired = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .nth(5)
        .unwrap()
        .to_string();

    // Two workers: each joins (a wrong pin first: refused, nothing written) and starts.
    let mut workers = vec![
        Worker::new("dmuc-w1", "198.18.0.11", work.path()),
        Worker::new("dmuc-w2", "198.18.0.12", work.path()),
    ];
    for w in &mut workers {
        let st = w.state().display().to_string();
        let wrong = format!("sha256:{}", "0".repeat(64));
        let (ok, said) = w.join(words[3], words[5], &wrong, &w.state());
        assert!(!ok && said.contains("nothing was written"), "{said}");
        assert!(!w.state().exists(), "a refused join wrote {st}");
        let (ok, said) = w.join(words[3], words[5], words[7], &w.state());
        assert!(ok, "{said}");
        // doctor knows a worker's profile: the join's files are there.
        let worker_profile =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/worker.toml");
        let (_, said) = w.dmucctl(&[
            "doctor",
            "--no-ports",
            "--config",
            worker_profile.to_str().unwrap(),
            "--var",
            &format!("state={st}"),
        ]);
        assert!(
            said.lines()
                .any(|l| l.starts_with("ok") && l.contains(" joined ")),
            "{said}"
        );
        assert!(!said.contains("etcd binary"), "{said}");
        w.start(&bin, &images);
    }
    for w in &mut workers {
        for c in ["containerd", "kubelet", "kube-proxy"] {
            w.daemon().wait_state(c, "ready", T);
        }
    }
    for n in ["dmuc-cp", "dmuc-w1", "dmuc-w2"] {
        wait_for(&format!("{n} to be Ready"), T, || {
            k.node_ready(n).then_some(())
        });
    }

    // The routes: each node routes the two others' pod subnets via their addresses.
    let cidr = |n: &str| {
        k.ok(&["get", "node", n, "-o", "jsonpath={.spec.podCIDR}"])
            .trim()
            .to_string()
    };
    let (c0, c1, c2) = (cidr("dmuc-cp"), cidr("dmuc-w1"), cidr("dmuc-w2"));
    wait_for("the control plane's routes to the workers", T, || {
        let r = routes_in(None);
        (r.contains(&format!("{c1} via 198.18.0.11 "))
            && r.contains(&format!("{c2} via 198.18.0.12 ")))
        .then_some(())
    });
    wait_for("worker 1's routes", T, || {
        let r = routes_in(Some(&workers[0]));
        (r.contains(&format!("{c0} via {CP_IP} ")) && r.contains(&format!("{c2} via 198.18.0.12 ")))
            .then_some(())
    });

    // One pod per node.
    let web = work.path().join("web.yaml");
    std::fs::write(&web, web_manifest(3)).unwrap();
    k.ok(&["apply", "-f", web.to_str().unwrap()]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    let placed = k.web_pods("{.spec.nodeName} {.metadata.name} {.status.podIP}");
    let on = |n: &str| -> (String, String) {
        let l = placed
            .iter()
            .find(|l| l.starts_with(&format!("{n} ")))
            .unwrap_or_else(|| panic!("no pod on {n}: {placed:?}"));
        let w: Vec<&str> = l.split_whitespace().collect();
        (w[1].to_string(), w[2].to_string())
    };
    let ((p0, _), (p1, ip1), (p2, ip2)) = (on("dmuc-cp"), on("dmuc-w1"), on("dmuc-w2"));

    // Pod to pod across nodes, by pod IP, both ways; then the Service from inside a pod.
    for (from, to) in [(&p1, &ip2), (&p2, &ip1), (&p0, &ip2)] {
        let got = k.ok(&["exec", from, "--", "wget", "-qO-", &format!("http://{to}/")]);
        assert!(
            got.contains("hello from busybox-httpd"),
            "{from} → {to}: {got}"
        );
    }
    let svc = format!(
        "{}:80",
        k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"])
            .trim()
    );
    let got = k.ok(&["exec", &p2, "--", "wget", "-qO-", &format!("http://{svc}/")]);
    assert!(got.contains("hello from busybox-httpd"), "{got}");
    // The Service from every node: each answers from all three pods in turn.
    let body = wait_for("the Service from the control plane", T, || http_get(&svc));
    assert!(body.contains("hello from busybox-httpd"), "{body}");
    for w in &workers {
        let pid = w.holder.id();
        wait_for(&format!("the Service from {}", w.name), T, || {
            http_get_in(pid, &svc)
        });
    }
    // Logs and exec on a worker's pod: the API server reaches that kubelet, whose serving
    // certificate csr-approve approved.
    let logs = wait_for("a worker pod's access log", T, || {
        let (ok, l) = k.run(&["logs", &p1]);
        (ok && l.contains("response:200")).then_some(l)
    });
    assert!(logs.contains("response:200"), "{logs}");
    let approved = cp.ctl_ok(&["logs", "csr-approve"]);
    assert!(
        approved.contains("node dmuc-w1's serving certificate"),
        "{approved}"
    );

    // The expired token, once the token cleaner has removed it: refused, nothing written.
    let (expired_id, _) = expired.split_once('.').unwrap();
    wait_for("the token cleaner to remove the expired token", T, || {
        let (there, _) = k.run(&[
            "-n",
            "kube-system",
            "get",
            "secret",
            &format!("bootstrap-token-{expired_id}"),
        ]);
        (!there).then_some(())
    });
    let elsewhere = workers[0].dir.join("again");
    let (ok, said) = workers[0].join(words[3], &expired, words[7], &elsewhere);
    // The signer may not have dropped its signature yet: then the API server refuses the
    // expired token at login.
    assert!(!ok && said.contains("nothing was written"), "{said}");
    assert!(!elsewhere.exists());

    // kill -9 of worker 1's dmucd; a new one adopts its components (same PIDs).
    let pids = |d: &mut Daemon| -> Vec<String> {
        let o = d.ctl(&["status", "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        s["components"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{} {}", c["name"], c["pid"]))
            .collect()
    };
    let before = pids(workers[0].daemon());
    workers[0].daemon().crash();
    workers[0].daemon().restart();
    let after = wait_for("worker 1's components adopted", T, || {
        let o = workers[0].daemon().ctl(&["status", "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        let ready = s["components"]
            .as_array()?
            .iter()
            .any(|c| c["name"] == "kubelet" && c["state"] == "ready");
        ready.then(|| pids(workers[0].daemon()))
    });
    assert_eq!(after, before, "worker 1's components were not adopted");
    assert!(k.node_ready("dmuc-w1"));

    // Worker 2 leaves: drained, deleted, reset. The others stay Ready, their pods are not
    // restarted, and their routes to worker 2's subnet go.
    let others = |k: &Kubectl| -> Vec<String> {
        k.web_pods("{.spec.nodeName} {.metadata.uid} {.status.containerStatuses[0].restartCount}")
            .into_iter()
            .filter(|l| !l.starts_with("dmuc-w2 "))
            .collect()
    };
    let kept = others(&k);
    k.ok(&[
        "drain",
        "dmuc-w2",
        "--ignore-daemonsets",
        "--force",
        "--timeout=120s",
    ]);
    k.ok(&["delete", "node", "dmuc-w2"]);
    let w2 = workers.pop().unwrap();
    let w2_pid = w2.holder.id();
    let mut w2 = w2;
    let (ok, said) = w2.reset();
    assert!(ok, "{said}");
    assert!(said.contains("removed 2 routes"), "{said}");
    assert!(routes_in(Some(&w2)).is_empty());
    drop(w2);
    assert!(!alive(w2_pid));
    wait_for("the routes to worker 2 to go", T, || {
        (!routes_in(None).contains(&c2) && !routes_in(Some(&workers[0])).contains(&c2))
            .then_some(())
    });
    for n in ["dmuc-cp", "dmuc-w1"] {
        assert!(k.node_ready(n), "{n} is not Ready after worker 2 left");
    }
    let now: Vec<String> = others(&k)
        .into_iter()
        .filter(|l| kept.contains(l))
        .collect();
    assert_eq!(
        now, kept,
        "pods on the other nodes were restarted or recreated"
    );
    assert!(
        !Path::new("/sys/fs/cgroup/memory/dmuc-w2").exists(),
        "worker 2's cgroups left"
    );

    // The end: worker 1, then the control plane; nothing of them is left.
    let (ok, said) = workers[0].reset();
    assert!(ok, "{said}");
    drop(workers);
    let o = reset.run();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    drop(cp);
    assert!(routes_in(None).is_empty());
    let veths = Command::new("ip").args(["-br", "link"]).output().unwrap();
    let veths = String::from_utf8_lossy(&veths.stdout).into_owned();
    assert!(!veths.contains("veth-dmuc-"), "{veths}");
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for n in ["dmuc-w1", "dmuc-w2", "kubepods"] {
            assert!(
                !h.path().join(n).exists(),
                "cgroup {} left",
                h.path().join(n).display()
            );
        }
    }
}
