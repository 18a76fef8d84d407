//! `dmuc-bench boot K8S_BIN IMAGES [RUNS]`: the real cluster (config/cluster.toml), booted by
//! dmucd and, in the same run with the same binaries, by a plain script that starts every
//! service at once (the tutorial without waiting: the certificates and config files first,
//! then everything in the background, the images imported once containerd answers).
//!
//! For each: the time from the start to each component ready (dmucd's event timestamps; for
//! the script, an independent poller running each ready probe every 10 ms), to the node
//! Ready and to the first pod Running (`kubectl wait`, a watch). For dmucd, its gating
//! overhead on the critical path: between a dependency's condition and its dependent's launch,
//! and between a component being ready (the poller's first success) and dmucd's probe saying
//! so. Needs root; leaves nothing (dmucctl reset after each run).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dmuc_config::{Condition, Config, Kind};
use serde_json::Value;

use crate::{bin, now_us};

const DEADLINE: Duration = Duration::from_secs(180);

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: web, image: docker.io/library/busybox-httpd:local, imagePullPolicy: Never}
"#;

fn profile() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/cluster.toml")
}

/// One prepared node: its vars and work dir.
struct Node {
    work: tempfile::TempDir,
    vars: Vec<String>,
    kubectl: PathBuf,
}

impl Node {
    fn new(k8s_bin: &Path, images: &Path) -> Node {
        let work = tempfile::tempdir().unwrap();
        let img = work.path().join("images");
        std::fs::create_dir_all(&img).unwrap();
        for e in std::fs::read_dir(images).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "tar") {
                std::os::unix::fs::symlink(e.path(), img.join(e.file_name())).unwrap();
            }
        }
        let vars = vec![
            format!("bin={}", k8s_bin.display()),
            "cni-bin=/usr/lib/cni".into(),
            format!("state={}", work.path().join("state").display()),
            format!("images={}", img.display()),
        ];
        Node {
            work,
            vars,
            kubectl: k8s_bin.join("kubectl"),
        }
    }

    fn config(&self) -> Config {
        let over: BTreeMap<String, String> = self
            .vars
            .iter()
            .filter_map(|v| v.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        dmuc_config::load_file(&profile(), &over).unwrap()
    }

    fn kubectl(&self, args: &[&str]) -> bool {
        Command::new(&self.kubectl)
            .arg("--kubeconfig")
            .arg(self.work.path().join("state/pki/admin.kubeconfig"))
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Retries `args` until it succeeds (paced, bounded): each try is one kubectl process.
    fn kubectl_until(&self, args: &[&str]) {
        let deadline = Instant::now() + DEADLINE;
        while !self.kubectl(args) {
            assert!(
                Instant::now() < deadline,
                "kubectl {args:?} never succeeded"
            );
            std::thread::sleep(Duration::from_millis(50)); // retry pace, bounded by the deadline
        }
    }

    /// From the start: node Ready, first pod Running (µs since `t0`).
    fn node_and_pod(&self, t0: u64) -> (u64, u64) {
        let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim()
            .to_lowercase();
        let pod = self.work.path().join("pod.yaml");
        std::fs::write(&pod, POD).unwrap();
        // Created as soon as the API server takes it (its service account exists).
        self.kubectl_until(&["apply", "-f", pod.to_str().unwrap()]);
        self.kubectl_until(&[
            "wait",
            "--for=condition=Ready",
            &format!("node/{node}"),
            "--timeout=180s",
        ]);
        let t_node = now_us() - t0;
        self.kubectl_until(&[
            "wait",
            "--for=jsonpath={.status.phase}=Running",
            "pod/web",
            "--timeout=180s",
        ]);
        (t_node, now_us() - t0)
    }

    fn reset(&self, socket: &Path) {
        let o = Command::new(bin("dmucctl"))
            .args(["reset", "--yes", "--config"])
            .arg(profile())
            .args(self.vars.iter().flat_map(|v| ["--var", v.as_str()]))
            .arg("--socket")
            .arg(socket)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "reset: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

/// Runs every component's ready probe every 10 ms from the start and records the first
/// success of each (µs since the epoch): when it really was ready.
struct Poller {
    first: Arc<Mutex<BTreeMap<String, u64>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Poller {
    fn start(cfg: &Config) -> Poller {
        let probes: Vec<(String, dmuc_config::Check)> = cfg
            .graph
            .components()
            .iter()
            .filter_map(|c| Some((c.name.clone(), c.ready.as_ref()?.check.clone())))
            .collect();
        let first = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (first.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let mut tick = tokio::time::interval(Duration::from_millis(10));
                while !s.load(Ordering::Relaxed) {
                    tick.tick().await;
                    for (name, check) in &probes {
                        if f.lock().unwrap().contains_key(name) {
                            continue;
                        }
                        let ok = tokio::time::timeout(
                            Duration::from_millis(200),
                            dmucd::probe::check(check),
                        )
                        .await
                        .is_ok_and(|r| r.is_ok());
                        if ok {
                            f.lock().unwrap().insert(name.clone(), now_us());
                        }
                    }
                }
            });
        });
        Poller {
            first,
            stop,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.first.lock().unwrap().clone()
    }
}

/// One boot's figures (ms since the start).
#[derive(Default)]
struct Boot {
    ready: BTreeMap<String, f64>,
    node: f64,
    pod: f64,
    /// dmucd only: gate (dependency's condition → launch) and probe lag (really ready →
    /// probe says so), summed over the critical chain, and the chain itself.
    gate: f64,
    lag: f64,
    chain: Vec<String>,
    /// The script only: services its loops started again after they exited.
    respawns: u32,
}

/// Starts a component's command as a plain script would, its output to `logs/NAME.log`.
fn spawn_in(logs: &Path, c: &dmuc_config::Component) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{}.log", c.name)))
        .unwrap();
    // The release's flags node-config wrote (the kubelet's args-file), as dmucd adds them.
    let more = c
        .args_file
        .as_ref()
        .and_then(|f| std::fs::read_to_string(&f.path).ok())
        .map(|t| dmuc_config::parse_args_file(&t))
        .unwrap_or_default();
    Command::new(&c.command[0])
        .args(&c.command[1..])
        .args(more)
        .envs(c.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap()
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn boot_dmucd(k8s_bin: &Path, images: &Path) -> Boot {
    let node = Node::new(k8s_bin, images);
    let cfg = node.config();
    let dir = node.work.path().join("d");
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("dmucd.sock");
    let t0 = now_us();
    let poller = Poller::start(&cfg);
    let mut child = Command::new(bin("dmucd"))
        .arg("--config")
        .arg(profile())
        .args(node.vars.iter().flat_map(|v| ["--var", v.as_str()]))
        .arg("--tmux-socket")
        .arg(dir.join("tmux.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--log-dir")
        .arg(dir.join("log"))
        .arg("--socket")
        .arg(&socket)
        .env("DMUC_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (node_us, pod_us) = node.node_and_pod(t0);
    let really = poller.finish();
    let events: Vec<Value> = std::fs::read_to_string(dir.join("state/events.jsonl"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let at = |n: &str, to: &str| {
        events
            .iter()
            .find(|e| e["component"] == n && e["event"] == "state" && e["to"] == to)
            .and_then(|e| e["ts_us"].as_u64())
    };
    let mut b = Boot {
        node: ms(node_us),
        pod: ms(pod_us),
        ..Boot::default()
    };
    let reached = |c: &dmuc_config::Component| match c.kind {
        Kind::Oneshot => at(&c.name, "completed"),
        Kind::Service if c.ready.is_some() => at(&c.name, "ready"),
        Kind::Service => at(&c.name, "running"),
    };
    for c in cfg.graph.components() {
        if let Some(t) = reached(c) {
            b.ready.insert(c.name.clone(), ms(t - t0));
        }
    }
    // The critical chain: from the component that was up last, back through the dependency
    // that was satisfied last, to the start.
    let comps = cfg.graph.components();
    let mut cur = comps
        .iter()
        .filter(|c| c.kind == Kind::Service)
        .max_by_key(|c| reached(c).unwrap_or(0))
        .unwrap();
    loop {
        b.chain.push(cur.name.clone());
        if let (Some(r), Some(t)) = (really.get(&cur.name), at(&cur.name, "ready")) {
            b.lag += ms(t.saturating_sub(*r));
        }
        let cond_at = |d: &dmuc_config::Dependency| match d.condition {
            Condition::Completed => at(&d.component, "completed"),
            Condition::Ready => at(&d.component, "ready"),
            _ => at(&d.component, "running"),
        };
        let Some(dep) = cur.after.iter().max_by_key(|d| cond_at(d).unwrap_or(0)) else {
            break;
        };
        if let (Some(c), Some(l)) = (cond_at(dep), at(&cur.name, "starting")) {
            b.gate += ms(l.saturating_sub(c));
        }
        cur = cfg.graph.get(&dep.component).unwrap();
    }
    b.chain.reverse();
    let _ = Command::new(bin("dmucctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("shutdown")
        .output();
    let _ = child.wait();
    node.reset(&socket);
    b
}

fn boot_script(k8s_bin: &Path, images: &Path) -> Boot {
    let node = Node::new(k8s_bin, images);
    let cfg = node.config();
    let logs = node.work.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let spawn = |c: &dmuc_config::Component| spawn_in(&logs, c);
    let t0 = now_us();
    let poller = Poller::start(&cfg);
    let comps = cfg.graph.components();
    // What the tutorial does by hand first: certificates and config files.
    for c in comps
        .iter()
        .filter(|c| c.kind == Kind::Oneshot && c.after.is_empty())
    {
        assert!(spawn(c).wait().unwrap().success(), "{} failed", c.name);
    }
    // Then every service at once, each in a `while :; do CMD; done` loop: started before what
    // it needs, a service may exit (the controller manager does, before RBAC is bootstrapped).
    let stopping = Arc::new(AtomicBool::new(false));
    let current: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
    let respawns = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let loops: Vec<std::thread::JoinHandle<()>> = comps
        .iter()
        .filter(|c| c.kind == Kind::Service)
        .map(|c| {
            let (c, stopping, current, respawns) = (
                c.clone(),
                stopping.clone(),
                current.clone(),
                respawns.clone(),
            );
            let logs = logs.clone();
            std::thread::spawn(move || {
                let mut first = true;
                while !stopping.load(Ordering::Relaxed) {
                    if !first {
                        respawns.fetch_add(1, Ordering::Relaxed);
                    }
                    first = false;
                    let mut ch = spawn_in(&logs, &c);
                    current.lock().unwrap().insert(c.name.clone(), ch.id());
                    let _ = ch.wait();
                }
            })
        })
        .collect();
    // The images, once containerd answers (a script's `until [ -S sock ]`).
    let ctr = comps.iter().find(|c| c.name == "containerd").unwrap();
    let sock = match &ctr.ready.as_ref().unwrap().check {
        dmuc_config::Check::Unix { path } => path.clone(),
        _ => unreachable!("containerd's probe is its socket"),
    };
    let deadline = Instant::now() + DEADLINE;
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(Instant::now() < deadline, "containerd never answered");
        std::thread::sleep(Duration::from_millis(10)); // poll with a deadline
    }
    for c in comps
        .iter()
        .filter(|c| c.kind == Kind::Oneshot && !c.after.is_empty())
    {
        assert!(spawn(c).wait().unwrap().success(), "{} failed", c.name);
    }
    let (node_us, pod_us) = node.node_and_pod(t0);
    let really = poller.finish();
    // The script's teardown is not measured: SIGKILL (an API server whose etcd went first
    // can take minutes over SIGTERM).
    stopping.store(true, Ordering::Relaxed);
    for pid in current.lock().unwrap().values() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(*pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for l in loops {
        let _ = l.join();
    }
    node.reset(&node.work.path().join("no-daemon.sock"));
    Boot {
        respawns: respawns.load(Ordering::Relaxed),
        ready: really
            .into_iter()
            .map(|(k, v)| (k, ms(v.saturating_sub(t0))))
            .collect(),
        node: ms(node_us),
        pod: ms(pod_us),
        ..Boot::default()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn boot(k8s_bin: &Path, images: &Path, runs: usize) {
    let mut dm = Vec::new();
    let mut sc = Vec::new();
    for i in 0..runs {
        // Alternated, so that neither always runs on a warmer page cache.
        if i % 2 == 0 {
            dm.push(boot_dmucd(k8s_bin, images));
            sc.push(boot_script(k8s_bin, images));
        } else {
            sc.push(boot_script(k8s_bin, images));
            dm.push(boot_dmucd(k8s_bin, images));
        }
    }
    let names: Vec<String> = dm[0].ready.keys().cloned().collect();
    println!("boot of config/cluster.toml, median of {runs} runs (ms from the start):");
    println!("| milestone | dmucd | plain script (all at once) |");
    println!("|---|---|---|");
    let row = |label: &str, f: &dyn Fn(&Boot) -> Option<f64>| {
        let cell = |v: &[Boot]| {
            let xs: Vec<f64> = v.iter().filter_map(f).collect();
            if xs.is_empty() {
                "-".to_string()
            } else {
                let all: Vec<String> = xs.iter().map(|x| format!("{x:.0}")).collect();
                format!("{:.0} ({})", median(xs.clone()), all.join(", "))
            }
        };
        println!("| {label} | {} | {} |", cell(&dm), cell(&sc));
    };
    for n in &names {
        row(&format!("{n} ready"), &|b| b.ready.get(n).copied());
    }
    row("node Ready", &|b| Some(b.node));
    row("first pod Running", &|b| Some(b.pod));
    println!(
        "plain script: services started again by its loops after they exited: {:?}",
        sc.iter().map(|b| b.respawns).collect::<Vec<_>>()
    );
    println!("dmucd's critical chain: {}", dm[0].chain.join(" -> "));
    let gates: Vec<f64> = dm.iter().map(|b| b.gate).collect();
    let lags: Vec<f64> = dm.iter().map(|b| b.lag).collect();
    println!(
        "gating overhead on it: dependency -> launch {:.1} ms (runs {:?}), really ready -> probe says so {:.0} ms (runs {:?})",
        median(gates.clone()),
        gates.iter().map(|g| format!("{g:.1}")).collect::<Vec<_>>(),
        median(lags.clone()),
        lags.iter().map(|g| format!("{g:.0}")).collect::<Vec<_>>(),
    );
}
