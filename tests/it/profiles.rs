//! The shipped profiles: they validate, and their graphs are what the tutorial and the
//! research notes say (edges, conditions, probes, stop scopes), so a typo fails CI.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use dmuc_config::{Check, Config, StopScope};

use crate::util::bin_dir;

fn profile(name: &str) -> (PathBuf, Config) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../config")
        .join(name);
    let cfg = dmuc_config::load_file(&path, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"));
    (path, cfg)
}

/// `(dependency, condition)` of a component, sorted.
fn after(cfg: &Config, name: &str) -> Vec<(String, &'static str)> {
    let c = cfg
        .graph
        .get(name)
        .unwrap_or_else(|| panic!("no component {name}"));
    let mut v: Vec<_> = c
        .after
        .iter()
        .map(|d| (d.component.clone(), d.condition.as_str()))
        .collect();
    v.sort();
    v
}

/// The component names, sorted.
fn names(cfg: &Config) -> Vec<&str> {
    let mut v: Vec<&str> = cfg
        .graph
        .components()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    v.sort();
    v
}

fn deps(list: &[(&str, &'static str)]) -> Vec<(String, &'static str)> {
    let mut v: Vec<_> = list.iter().map(|(n, c)| (n.to_string(), *c)).collect();
    v.sort();
    v
}

fn url(cfg: &Config, name: &str) -> (String, Option<PathBuf>, bool) {
    match &cfg.graph.get(name).unwrap().ready.as_ref().unwrap().check {
        Check::Http {
            url, ca, insecure, ..
        } => (url.clone(), ca.clone(), *insecure),
        c => panic!("{name}: ready probe is {}", c.kind()),
    }
}

#[test]
fn every_shipped_profile_passes_check() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let o = Command::new(bin_dir().join("dmucd"))
                .arg("--config")
                .arg(&path)
                .arg("--check")
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

#[test]
fn seed_2019_is_the_tutorial() {
    let (_, cfg) = profile("seed-2019.toml");
    assert_eq!(after(&cfg, "etcd"), deps(&[("workdir", "completed")]));
    assert_eq!(after(&cfg, "kube-apiserver"), deps(&[("etcd", "ready")]));
    for c in ["kube-controller-manager", "kube-scheduler", "kube-proxy"] {
        assert_eq!(after(&cfg, c), deps(&[("kube-apiserver", "ready")]), "{c}");
        let cmd = &cfg.graph.get(c).unwrap().command;
        assert_eq!(cmd[1..], ["--master", "http://localhost:8080"], "{c}");
    }
    assert_eq!(
        after(&cfg, "kubelet"),
        deps(&[
            ("dockerd", "ready"),
            ("kube-apiserver", "ready"),
            ("kubeconfig", "completed")
        ])
    );
    let api = &cfg.graph.get("kube-apiserver").unwrap().command;
    assert!(
        api.contains(&"--etcd-servers".to_string())
            && api.contains(&"http://localhost:2379".to_string())
    );
    assert!(api.contains(&"--disable-admission-plugins=ServiceAccount".to_string()));
    assert_eq!(
        url(&cfg, "kube-apiserver").0,
        "http://localhost:8080/healthz"
    );
    // The kubeconfig is written by the tutorial's three commands.
    let kc = cfg.graph.get("kubeconfig").unwrap();
    assert_eq!(kc.kind, dmuc_config::Kind::Oneshot);
    assert_eq!(
        kc.command
            .join(" ")
            .matches("kubectl --kubeconfig kubeconfig.kubelet config")
            .count(),
        3
    );
    assert_eq!(
        cfg.graph.get("dockerd").unwrap().stop.scope,
        StopScope::Process
    );
}

#[test]
fn cluster_is_the_modern_graph_with_real_probes() {
    let (_, cfg) = profile("cluster.toml");
    assert_eq!(cfg.graph.len(), 14);
    // The control plane as users of its own, made first; the node's parts stay root.
    assert_eq!(after(&cfg, "pki"), deps(&[("users", "completed")]));
    for (c, user) in [
        ("etcd", Some("dmuc-etcd")),
        ("kube-apiserver", Some("dmuc-apiserver")),
        ("kube-controller-manager", Some("dmuc-controller-manager")),
        ("kube-scheduler", Some("dmuc-scheduler")),
        ("containerd", None),
        ("kubelet", None),
        ("kube-proxy", None),
    ] {
        assert_eq!(cfg.graph.get(c).unwrap().user.as_deref(), user, "{c}");
    }
    assert_eq!(after(&cfg, "etcd"), deps(&[("pki", "completed")]));
    assert_eq!(
        after(&cfg, "kube-apiserver"),
        deps(&[("etcd", "ready"), ("pki", "completed")])
    );
    assert_eq!(
        after(&cfg, "kube-controller-manager"),
        deps(&[("kube-apiserver", "ready")])
    );
    assert_eq!(
        after(&cfg, "kube-scheduler"),
        deps(&[("kube-apiserver", "ready"), ("node-config", "completed")])
    );
    assert_eq!(
        after(&cfg, "containerd"),
        deps(&[("node-config", "completed")])
    );
    assert_eq!(
        after(&cfg, "kubelet"),
        deps(&[
            ("containerd", "ready"),
            ("images", "completed"),
            ("kube-apiserver", "ready"),
            ("node-config", "completed")
        ])
    );
    assert_eq!(
        after(&cfg, "kube-proxy"),
        deps(&[("kube-apiserver", "ready"), ("kubelet", "ready")])
    );
    assert_eq!(after(&cfg, "routes"), deps(&[("kube-apiserver", "ready")]));

    let pki = PathBuf::from("/var/lib/dmuc/pki");
    assert_eq!(
        url(&cfg, "etcd"),
        ("http://127.0.0.1:2381/health".into(), None, false)
    );
    assert_eq!(
        url(&cfg, "kube-apiserver"),
        (
            "https://127.0.0.1:6443/readyz".into(),
            Some(pki.join("ca.crt")),
            false
        )
    );
    assert_eq!(
        url(&cfg, "kube-controller-manager"),
        ("https://127.0.0.1:10257/healthz".into(), None, true)
    );
    assert_eq!(
        url(&cfg, "kube-scheduler"),
        ("https://127.0.0.1:10259/healthz".into(), None, true)
    );
    assert_eq!(url(&cfg, "kubelet").0, "http://127.0.0.1:10248/healthz");
    assert_eq!(url(&cfg, "kube-proxy").0, "http://127.0.0.1:10256/healthz");
    let containerd = cfg.graph.get("containerd").unwrap();
    assert!(matches!(&containerd.ready.as_ref().unwrap().check,
        Check::Unix { path } if path == &PathBuf::from("/run/containerd/containerd.sock")));
    assert_eq!(
        containerd.stop.scope,
        StopScope::Process,
        "containers must survive a containerd restart"
    );
    // Not the minute its graceful shutdown would wait for other nodes' watches (issue 29,
    // row 8): its own clients are stopped before it, its short requests end within seconds.
    assert_eq!(
        cfg.graph
            .get("kube-apiserver")
            .unwrap()
            .stop
            .timeout
            .as_secs(),
        15
    );

    // What the reference run needed (k8s-modern.md §7).
    let api = cfg.graph.get("kube-apiserver").unwrap().command.join(" ");
    for flag in [
        "--allow-privileged=true",
        "--kubelet-client-certificate=",
        "--kubelet-certificate-authority=",
        "--authorization-mode=Node,RBAC",
        "--service-account-issuer=",
        "--service-account-signing-key-file=",
        "--service-cluster-ip-range=10.96.0.0/12",
        "--bind-address=0.0.0.0",
    ] {
        assert!(api.contains(flag), "kube-apiserver lacks {flag}");
    }
    let kcm = cfg
        .graph
        .get("kube-controller-manager")
        .unwrap()
        .command
        .join(" ");
    for flag in [
        "--leader-elect=false",
        "--allocate-node-cidrs=true",
        "--use-service-account-credentials=true",
    ] {
        assert!(kcm.contains(flag), "kube-controller-manager lacks {flag}");
    }
    let script = cfg.graph.get("node-config").unwrap().command.join(" ");
    assert!(script.contains("restrict_oom_score_adj"));
    assert!(script.contains("failSwapOn: false"));
    assert!(script.contains("leaderElect: false"));
    // Every file a component names comes from pki init or node-config.
    for c in cfg.graph.components() {
        for arg in &c.command {
            let file = arg
                .split_once("=/var/lib/dmuc/pki/")
                .map(|(_, p)| p)
                .or_else(|| arg.strip_prefix("/var/lib/dmuc/pki/"));
            if let Some(path) = file {
                let stem = path.rsplit_once('.').map_or(path, |(s, _)| s);
                assert!(
                    [
                        "ca",
                        "apiserver",
                        "apiserver-kubelet-client",
                        "sa",
                        "kube-controller-manager",
                        "kube-scheduler",
                        "kubelet",
                        "kube-proxy",
                        "admin",
                        "etcd-ca",
                        "kubelet-ca",
                        "etcd-server",
                        "etcd-peer",
                        "apiserver-etcd-client",
                    ]
                    .contains(&stem),
                    "{}: {arg} is not a file pki init writes",
                    c.name
                );
            }
        }
    }
}

#[test]
fn worker_joins_without_a_control_plane_of_its_own() {
    let (_, cfg) = profile("worker.toml");
    let names = names(&cfg);
    assert_eq!(
        names,
        [
            "cni-config",
            "containerd",
            "images",
            "joined",
            "kube-proxy",
            "kubelet",
            "node-config",
            "routes"
        ]
    );
    assert_eq!(after(&cfg, "node-config"), deps(&[("joined", "completed")]));
    assert_eq!(
        after(&cfg, "kubelet"),
        deps(&[
            ("containerd", "ready"),
            ("images", "completed"),
            ("node-config", "completed")
        ])
    );
    assert_eq!(after(&cfg, "cni-config"), deps(&[("kubelet", "ready")]));
    assert_eq!(after(&cfg, "kube-proxy"), deps(&[("kubelet", "ready")]));
    assert_eq!(after(&cfg, "routes"), deps(&[("joined", "completed")]));
    let kubelet = cfg.graph.get("kubelet").unwrap().command.join(" ");
    for flag in [
        "--bootstrap-kubeconfig=/var/lib/dmuc/pki/bootstrap-kubelet.kubeconfig",
        "--kubeconfig=/var/lib/dmuc/pki/kubelet.kubeconfig",
        "--root-dir=/var/lib/kubelet",
    ] {
        assert!(kubelet.contains(flag), "{kubelet}");
    }
    assert_eq!(url(&cfg, "kubelet").0, "http://127.0.0.1:10248/healthz");
    let config = cfg.graph.get("node-config").unwrap().command.join(" ");
    assert!(
        config.contains("serverTLSBootstrap: true") && config.contains("rotateCertificates: true")
    );
}

#[test]
fn ha_member_joins_etcd_as_a_learner_and_elects_leaders() {
    let (_, cfg) = profile("ha.toml");
    let names = names(&cfg);
    // A member runs no pods: no kubelet, containerd or kube-proxy.
    assert_eq!(
        names,
        [
            "csr-approve",
            "etcd",
            "etcd-promote",
            "kube-apiserver",
            "kube-controller-manager",
            "kube-scheduler",
            "pki",
            "users"
        ]
    );
    assert_eq!(after(&cfg, "etcd"), deps(&[("pki", "completed")]));
    assert_eq!(after(&cfg, "etcd-promote"), deps(&[("etcd", "ready")]));
    // A learner serves no reads or writes: the API server waits for the vote.
    assert_eq!(
        after(&cfg, "kube-apiserver"),
        deps(&[("etcd", "ready"), ("etcd-promote", "completed")])
    );
    let cmd = |n: &str| cfg.graph.get(n).unwrap().command.join(" ");
    let etcd = cmd("etcd");
    for part in [
        "/usr/local/bin/etcd --name",
        "--peer-client-cert-auth=true",
        "--client-cert-auth=true",
    ] {
        assert!(etcd.contains(part), "{part}: {etcd}");
    }
    // The initial cluster comes from the env file only (a flag would shadow it).
    assert!(!etcd.contains("--initial-cluster "), "{etcd}");
    assert_eq!(
        cfg.graph.get("etcd").unwrap().env_file,
        Some(dmuc_config::EnvFile {
            path: "/var/lib/dmuc/etcd-cluster.env".into(),
            optional: false
        })
    );
    assert!(cmd("kube-controller-manager").contains("--leader-elect=true"));
    assert!(cmd("pki").contains("leaderElection: {leaderElect: true}"));
    assert!(cmd("pki").contains("ETCD_INITIAL_CLUSTER_STATE=new"));
    assert!(cmd("kube-apiserver").contains("--etcd-servers=https://127.0.0.1:2379"));
    for (c, user) in [
        ("etcd", "dmuc-etcd"),
        ("kube-apiserver", "dmuc-apiserver"),
        ("kube-controller-manager", "dmuc-controller-manager"),
        ("kube-scheduler", "dmuc-scheduler"),
    ] {
        assert_eq!(cfg.graph.get(c).unwrap().user.as_deref(), Some(user), "{c}");
    }
    assert_eq!(url(&cfg, "etcd").0, "http://127.0.0.1:2381/health");
    assert_eq!(
        url(&cfg, "kube-apiserver").0,
        "https://127.0.0.1:6443/readyz"
    );

    let (_, lb) = profile("balancer.toml");
    assert_eq!(
        after(&lb, "balancer"),
        deps(&[("balancer-config", "completed")])
    );
    assert_eq!(
        lb.graph.get("balancer").unwrap().command.join(" "),
        "/usr/sbin/haproxy -db -f /var/lib/dmuc-balancer/haproxy.cfg"
    );
    assert_eq!(url(&lb, "balancer").0, "http://127.0.0.1:6444/healthz");
    let config = lb.graph.get("balancer-config").unwrap().command.join(" ");
    for part in ["option httpchk GET /readyz", "haproxy -c -q -f"] {
        assert!(config.contains(part), "{part}");
    }
}

/// The demo runs beside a real node (a user trying it on the host of their cluster): none of
/// its stand-ins listens, and none of its probes looks, on a port a real node uses.
#[test]
fn the_demo_uses_no_port_of_a_real_node() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/demo.toml");
    let text = std::fs::read_to_string(path).unwrap();
    for port in [
        2379, 2380, 2381, 6443, 10248, 10249, 10250, 10256, 10257, 10259,
    ] {
        for form in [format!(":{port}"), format!("\"{port}\"")] {
            assert!(
                !text.contains(&form),
                "config/demo.toml uses {port}, a real node's port ({form})"
            );
        }
    }
}

/// `dmucctl reset` keeps the image archives an operator copied by hand (STATE/images) and
/// says so; `--remove-images` removes them too (issue 29, row 17). Under `--root`, so that
/// nothing of this machine is touched.
#[test]
fn reset_keeps_the_image_archives_unless_asked() {
    let root = tempfile::tempdir().unwrap();
    let state = root.path().join("var/lib/dmuc");
    for f in ["images/pause.tar", "pki/ca.crt", "etcd/member/db"] {
        let p = state.join(f);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, "x").unwrap();
    }
    let profile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/cluster.toml");
    let reset = |extra: &[&str]| {
        let o = Command::new(bin_dir().join("dmucctl"))
            .args(["reset", "--yes", "--config"])
            .arg(&profile)
            .args([
                "--var",
                "state=/var/lib/dmuc",
                "--var",
                "node-ip=198.18.0.9",
            ])
            .arg("--root")
            .arg(root.path())
            .arg("--socket")
            .arg(root.path().join("no-dmucd.sock"))
            .args(extra)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let (ok, said) = crate::util::said(&o);
        assert!(ok, "{said}");
        said
    };
    let said = reset(&[]);
    assert!(
        said.contains(
            "reset keeps /var/lib/dmuc/images (the image archives; --remove-images removes them)"
        ),
        "{said}"
    );
    assert!(state.join("images/pause.tar").exists(), "{said}");
    assert!(
        !state.join("pki").exists() && !state.join("etcd").exists(),
        "{said}"
    );
    let said = reset(&["--remove-images"]);
    assert!(!state.join("images").exists(), "{said}");
}

/// `dmucctl reset` of a node whose dmucd runs resets what that dmucd was started with: its
/// profile and its `--var`s. A worker sharing the machine with a control plane, reset as the
/// docs wrote it (no `--var`s), fell back to the cgroup root `/` and offered to kill the
/// control plane's pods (issue 29, row 3). A reset that contradicts the daemon is refused
/// before anything is done; the one question names the cgroup root and comes before dmucd
/// is stopped. Under `--root`, so that nothing of this machine is touched.
#[test]
fn reset_of_a_running_node_uses_what_its_dmucd_was_started_with() {
    use crate::util::Daemon;
    const T: std::time::Duration = std::time::Duration::from_secs(30);
    let root = tempfile::tempdir().unwrap();
    let cg = root.path().join("sys/fs/cgroup");
    // The host's own pods (the control plane's, under /) and the worker's (under /dmuc-w1).
    for d in ["kubepods/pod-cp", "dmuc-w1/kubepods/pod-w1"] {
        std::fs::create_dir_all(cg.join(d)).unwrap();
    }
    let toml = "[vars]\nstate = \"/var/lib/dmuc-w1\"\ncgroup-root = \"/\"\n\
                [component.kubelet]\ncommand = [\"sleep\", \"600\"]\n";
    let mut d = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        toml,
        &["--var", "cgroup-root=/dmuc-w1"],
    );
    d.wait_state("kubelet", "running", T);
    let config = d.dir.path().join("graph.toml");
    let reset = |extra: &[&str]| {
        let o = Command::new(bin_dir().join("dmucctl"))
            .args(["reset", "--yes", "--root"])
            .arg(root.path())
            .arg("--socket")
            .arg(d.socket())
            .args(extra)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        crate::util::said(&o)
    };
    // What contradicts the running node: refused, nothing done, dmucd still running.
    let cfg = config.to_str().unwrap();
    let (ok, said) = reset(&["--config", cfg, "--var", "cgroup-root=/"]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("runs with --var cgroup-root=/dmuc-w1, and this reset says cgroup-root=/")
            && said.contains("nothing done"),
        "{said}"
    );
    let other = d.dir.path().join("other.toml");
    std::fs::write(&other, format!("# another node's\n{toml}")).unwrap();
    let (ok, said) = reset(&["--config", other.to_str().unwrap()]);
    assert!(
        !ok && said.contains(&format!("not {}", other.display())),
        "{said}"
    );
    assert!(d.ctl_ok(&["status"]).contains("kubelet"));
    assert!(cg.join("dmuc-w1/kubepods/pod-w1").exists());
    // As the docs write it: the daemon's cgroup root, said in the one question, before dmucd
    // is stopped; only the worker's pods removed.
    let (ok, said) = reset(&["--config", cfg]);
    assert!(ok, "{said}");
    let question = said
        .find("pod cgroups under the cgroup root /dmuc-w1")
        .unwrap_or_else(|| panic!("{said}"));
    let stopped = said
        .find("stopped dmucd")
        .unwrap_or_else(|| panic!("{said}"));
    assert!(
        said.contains("reset will stop dmucd (pid") && question < stopped,
        "{said}"
    );
    assert_eq!(d.wait_exit(T), Some(0));
    assert!(!cg.join("dmuc-w1").exists(), "{said}");
    assert!(
        cg.join("kubepods/pod-cp").exists(),
        "the other node's pods: {said}"
    );
}
