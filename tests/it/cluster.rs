//! config/cluster.toml as shipped, run by dmucd with the Kubernetes binaries replaced by the
//! stand-in's personas (same ports, same paths, HTTPS with the generated certificates), the
//! real etcd from Debian when installed, and the real kubectl client. And real etcd on its
//! own: a oneshot writes a key, a dependent reads it, data survives a kill -9.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const T: Duration = Duration::from_secs(60);

fn real(prog: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/local/bin"]
        .iter()
        .map(|d| Path::new(d).join(prog))
        .find(|p| p.exists())
}

/// A bin dir where each Kubernetes program is the stand-in, and etcd the real one if any.
fn bin_dir_for(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for p in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
        "containerd",
        "ctr",
    ] {
        symlink(standin(), bin.join(p)).unwrap();
    }
    match real("etcd") {
        Some(etcd) => symlink(etcd, bin.join("etcd")).unwrap(),
        None => {
            eprintln!("etcd is not installed (apt-get install etcd-server): using the stand-in");
            symlink(standin(), bin.join("etcd")).unwrap();
        }
    }
    bin
}

/// A work directory (open to the control plane's users, who must reach their programs and
/// files in it) with the stand-ins' bin and a state directory, and config/cluster.toml.
fn standin_node() -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let work = tempfile::tempdir().unwrap();
    open_dir(work.path());
    let bin = bin_dir_for(work.path());
    let state = work.path().join("state");
    let toml = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/cluster.toml"),
    )
    .unwrap();
    (work, bin, state, toml)
}

/// dmucd's arguments for config/cluster.toml on the stand-ins' node: its `bin`, `state` and
/// containerd socket, a node name and the loopback address.
fn node_args(bin: &Path, state: &Path) -> Vec<String> {
    let var = |k: &str, v: &Path| format!("{k}={}", v.display());
    [
        var("bin", bin),
        var("state", state),
        var("containerd-socket", &state.join("containerd.sock")),
        "node=testnode".into(),
        "node-ip=127.0.0.1".into(),
    ]
    .into_iter()
    .flat_map(|v| ["--var".to_string(), v])
    .collect()
}

#[test]
fn the_cluster_profile_comes_up_in_order_with_its_real_probes() {
    if skip_without("the stand-in cluster test", &["kubectl"]) {
        return;
    }
    let _ports = fixed_ports();
    let (_work, bin, state, toml) = standin_node();
    let args = node_args(&bin, &state);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut d = Daemon::start_with(tempfile::tempdir().unwrap(), &toml, &args);
    for (name, state) in [
        ("pki", "completed"),
        ("node-config", "completed"),
        ("images", "completed"),
        ("etcd", "ready"),
        ("kube-apiserver", "ready"),
        ("kube-controller-manager", "ready"),
        ("kube-scheduler", "ready"),
        ("containerd", "ready"),
        ("kubelet", "ready"),
        ("kube-proxy", "ready"),
    ] {
        d.wait_state(name, state, T);
    }
    // The stand-ins say they are v1.36.0: node-config wrote what 1.36 takes (the CRI endpoint
    // in the configuration file, no kubelet flags; the v1 scheduler configuration).
    let release = std::fs::read_to_string(state.join("config/release.env")).unwrap();
    assert!(release.contains("KUBE_VERSION='v1.36.0'"), "{release}");
    let args = std::fs::read_to_string(state.join("config/kubelet.args")).unwrap();
    assert_eq!(dmuc_config::parse_args_file(&args), Vec::<String>::new());
    let sched = std::fs::read_to_string(state.join("config/kube-scheduler.yaml")).unwrap();
    assert!(
        sched.starts_with("apiVersion: kubescheduler.config.k8s.io/v1\n"),
        "{sched}"
    );
    // Kubernetes 1.35+ refuses cgroup v1 unless told: node-config tells it on a v1 host.
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let kubelet = std::fs::read_to_string(state.join("config/kubelet.yaml")).unwrap();
    assert!(
        kubelet.contains(&format!("failCgroupV1: {v2}\n")),
        "cgroup v{}: {kubelet}",
        if v2 { 2 } else { 1 }
    );

    // Order: each component launched only after what it waits for reached its condition.
    let ev = d.events();
    let at = |n: &str, to: &str| seq_of(&ev, n, to).unwrap_or_else(|| panic!("{n} never {to}"));
    for (dependent, dep, cond) in [
        ("kube-apiserver", "etcd", "ready"),
        ("kube-apiserver", "pki", "completed"),
        ("kube-controller-manager", "kube-apiserver", "ready"),
        ("kube-scheduler", "kube-apiserver", "ready"),
        ("containerd", "node-config", "completed"),
        ("images", "containerd", "ready"),
        ("kubelet", "containerd", "ready"),
        ("kubelet", "images", "completed"),
        ("kubelet", "kube-apiserver", "ready"),
        ("kube-proxy", "kubelet", "ready"),
    ] {
        assert!(
            at(dependent, "starting") > at(dep, cond),
            "{dependent} started before {dep} was {cond}"
        );
    }

    // The real kubectl, with the generated admin kubeconfig, through TLS verified against the
    // generated CA, reaches the API server's /readyz.
    let kubeconfig = state.join("pki/admin.kubeconfig");
    let o = Command::new("kubectl")
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "get",
            "--raw",
            "/readyz",
        ])
        .output()
        .expect("kubectl is needed (it ships with google-cloud-cli on this image)");
    assert!(
        o.status.success(),
        "kubectl: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok");

    // kill -9 of the API server: a new PID in the same window, ready again.
    let api = d.comp("kube-apiserver").unwrap();
    let pid = api["pid"].as_u64().unwrap() as u32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("the API server to be back", T, || {
        let c = d.comp("kube-apiserver")?;
        (c["state"] == "ready" && c["pid"].as_u64()? != pid as u64).then_some(c)
    });
    assert_eq!(d.comp("kube-apiserver").unwrap()["restarts"], 1);
    assert_eq!(d.comp("kube-apiserver").unwrap()["window"], api["window"]);

    // containerd is stopped alone (scope = process), then everything in reverse order.
    let pids: Vec<u32> = d.status().unwrap()["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["pid"].as_u64().map(|p| p as u32))
        .collect();
    // The seven services, and routes, csr-approve and cni-config, which watch what the
    // stand-in API server does not have (Nodes, CSRs) and keep waiting.
    assert_eq!(pids.len(), 10, "ten components running");
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    let ev = d.events();
    let stop_at = |n: &str| seq_of(&ev, n, "stopped").unwrap_or_else(|| panic!("{n} not stopped"));
    assert!(stop_at("kube-proxy") < stop_at("kubelet"));
    assert!(stop_at("kubelet") < stop_at("containerd"));
    assert!(stop_at("kube-controller-manager") < stop_at("kube-apiserver"));
    assert!(stop_at("kube-apiserver") < stop_at("etcd"));
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the shutdown");
    }
}

#[test]
fn real_etcd_gates_a_writer_and_a_reader_and_keeps_its_data_across_kill_9() {
    let (Some(etcd), Some(etcdctl)) = (real("etcd"), real("etcdctl")) else {
        let why = "etcd and etcdctl (apt-get install -y etcd-server etcd-client)".to_string();
        skip_unless("the real etcd test", &[why]);
        return;
    };
    let _ports = fixed_ports();
    let data = tempfile::tempdir().unwrap();
    let (e, ctl) = (etcd.display().to_string(), etcdctl.display().to_string());
    let toml = format!(
        r#"
[component.etcd]
command = ["{e}", "--data-dir", "{data}/etcd",
           "--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
           "--listen-peer-urls", "http://127.0.0.1:2380"]
ready = {{ http = "http://127.0.0.1:2379/health" }}
backoff = {{ initial = "100ms" }}
[component.writer]
kind = "oneshot"
command = ["{ctl}", "--endpoints", "http://127.0.0.1:2379", "put", "/dmuc/hello", "world"]
env = {{ ETCDCTL_API = "3" }}
after = ["etcd"]
[component.reader]
kind = "oneshot"
command = ["{ctl}", "--endpoints", "http://127.0.0.1:2379", "get", "/dmuc/hello", "--print-value-only"]
env = {{ ETCDCTL_API = "3" }}
after = [{{ component = "writer", condition = "completed" }}]
"#,
        data = data.path().display()
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("reader", "completed", T);
    assert!(d.log("writer").contains("OK"), "{}", d.log("writer"));
    assert_eq!(d.log("reader").trim(), "world");
    let ev = d.events();
    assert!(seq_of(&ev, "reader", "starting") > seq_of(&ev, "writer", "completed"));

    let pid = d.comp("etcd").unwrap()["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = wait_for("etcd's exit event", T, || {
        d.events()
            .into_iter()
            .find(|e| e["component"] == "etcd" && e["event"] == "exit")
    });
    assert_eq!(exit["signal"], 9);
    wait_for("etcd to be ready again", T, || {
        let c = d.comp("etcd")?;
        (c["state"] == "ready" && c["pid"].as_u64()? != pid).then_some(())
    });
    let o = Command::new(&etcdctl)
        .args([
            "--endpoints",
            "http://127.0.0.1:2379",
            "get",
            "/dmuc/hello",
            "--print-value-only",
        ])
        .env("ETCDCTL_API", "3")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        "world",
        "data lost across kill -9"
    );
    assert_eq!(d.stop(), Some(0));
}

/// A Kubernetes release the profiles are not written for stops node-config with the range
/// (no crash loop): the kubelet and containerd wait on it, and say so.
#[test]
fn an_unsupported_kubernetes_release_stops_node_config_with_the_supported_range() {
    let _ports = fixed_ports();
    let (_work, bin, state, toml) = standin_node();
    let var = |k: &str, v: &Path| format!("{k}={}", v.display());
    let (b, s) = (var("bin", &bin), var("state", &state));
    let mut d = Daemon::start_env(
        tempfile::tempdir().unwrap(),
        &toml,
        &["--var", &b, "--var", &s, "--hold"],
        &[("DMUC_STANDIN_K8S", "v1.19.16")],
    );
    d.ctl_ok(&["start", "--no-wait", "node-config"]);
    let failed = d.wait_state("node-config", "failed", T);
    let log = d.log("node-config");
    assert!(
        log.contains("Kubernetes v1.19.16 is not supported")
            && log.contains("1.20 to 1.36")
            && log.contains("docs/kubernetes-versions.md"),
        "{log}\n{failed}"
    );
    assert_eq!(failed["restarts"].as_u64(), Some(0), "{failed}");
    // What needs its files waits, naming it, and nothing was written for the kubelet.
    assert!(!state.join("config/kubelet.args").exists());
    assert!(!state.join("config/kubelet.yaml").exists());
    // Starting the kubelet runs node-config again, which fails again; containerd waits on
    // node-config alone (the kubelet on containerd, among others), and says why.
    d.ctl_ok(&["start", "--no-wait", "kubelet"]);
    wait_for("containerd to wait on a failed node-config", T, || {
        let st = d.comp("containerd")?;
        let r = st["reason"].as_str().unwrap_or("");
        (st["state"] == "pending" && r.contains("node-config") && r.contains("failed"))
            .then_some(())
    });
    assert_eq!(d.comp("kubelet").unwrap()["state"], "pending");
    assert!(!state.join("config/kubelet.args").exists());
}

/// The tutorial's step-by-step path (docs/tutorial.md §2, `--hold`, then one `dmucctl start`
/// per step, as the page writes them) ends in the same graph as a boot: every component of
/// the profile started, none left `stopped` (never asked for), the steps' helpers included
/// (`wanted-by`: cni-config with the kubelet, routes and csr-approve with the API server).
#[test]
fn the_tutorial_s_step_by_step_starts_end_in_the_whole_graph() {
    let _ports = fixed_ports();
    let (_work, bin, state, toml) = standin_node();
    let tutorial = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/tutorial.md"),
    )
    .unwrap();
    let steps: Vec<&str> = tutorial
        .lines()
        .filter_map(|l| l.strip_prefix("# dmucctl start "))
        .map(str::trim)
        .collect();
    assert!(
        steps.contains(&"kubelet") && steps.contains(&"kube-apiserver"),
        "{steps:?}"
    );
    let mut args = node_args(&bin, &state);
    args.push("--hold".into());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut d = Daemon::start_with(tempfile::tempdir().unwrap(), &toml, &args);
    wait_for("the daemon to answer", T, || {
        d.ctl(&["status"]).status.success().then_some(())
    });
    let stopped = |d: &Daemon| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_str(&d.ctl_ok(&["status", "--json"])).unwrap();
        v["components"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["state"] == "stopped")
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(stopped(&d).contains(&"cni-config".to_string()), "held");
    for step in &steps {
        d.ctl_ok(&["start", "--no-wait", step]);
    }
    assert_eq!(
        stopped(&d),
        Vec::<String>::new(),
        "after the tutorial's steps {steps:?}, what was never started"
    );
    assert_eq!(d.stop(), Some(0));
}
