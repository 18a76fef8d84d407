//! Real hosts (issue 28): dmuc installed from its Debian package on Debian 12 guests with
//! systemd as PID 1 and cgroup v2 (tests/it/vm.rs), set up as docs/operations.md
//! ("Installing") says, then left to the machine: the control plane comes up at boot with
//! no command typed, survives `systemctl restart dmucd` and a frozen dmucd (the watchdog) by
//! adoption; a second guest joins it as "More nodes" says (pods spread over both, pod to pod,
//! host to pod and Service traffic across them); the control plane is powered off with the
//! worker joined (dmucd's ordered stop runs to its end) and on again with its data; the
//! worker keeps its node across `apt remove` and a new install, then leaves ("Leaving"), and
//! `dmucctl reset` plus `apt purge` leave it as it was before the package, the control plane
//! untouched. Kubernetes v1.20.2 from ../shared/k8s inside, Debian's etcd, containerd, runc
//! and CNI plugins.
//!
//! Emulated (TCG): about 10× slower than this host, so two guests share every step (the
//! worker prepared while the control plane reboots), and the time each step took is printed
//! as `hosts: ...` lines.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::vm::{Guest, Net};

/// The package under test: target/debian/dmuc_*.deb (crates/dmucd/deb/build.sh; .ci/run
/// builds it), or DMUC_DEB.
fn package() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DMUC_DEB") {
        return Some(PathBuf::from(p));
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("dmuc_"))
        })
}

const ADMIN: &str = "/usr/local/bin/kubectl --kubeconfig /var/lib/dmuc/pki/admin.kubeconfig";

fn m(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// The first ```sh block after the line of docs/operations.md that contains `after`.
fn doc_block(after: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md");
    let text = std::fs::read_to_string(path).unwrap();
    let from = text.find(after).expect("the docs' install steps");
    let rest = &text[from..];
    let start = rest.find("```sh\n").expect("a ```sh block") + "```sh\n".len();
    let end = rest[start..].find("```").unwrap();
    rest[start..start + end].to_string()
}

/// docs/operations.md's install steps as written, but for the download: the binaries come
/// from ../shared/k8s (no network here), with the images for an air-gapped node. The last
/// step, `systemctl start dmucd`, is its "or reboot": left to the caller. `graph`: with
/// step 3 (the control plane's graph and doctor), or only steps 1 and 2 (a worker's, whose
/// graph is "More nodes"').
fn install_steps(graph: bool) -> String {
    let steps = doc_block("node needs three things first");
    assert!(steps.contains("dmucctl fetch --kubernetes"), "{steps}");
    let until = if graph {
        steps.len()
    } else {
        steps.find("\n# 3.").expect("the docs' step 3") + 1
    };
    steps[..until]
        .lines()
        .filter(|l| !l.starts_with("systemctl start dmucd"))
        .map(|l| {
            if l.starts_with("dmucctl fetch ") {
                "cp /mnt/host/k8s-bin/* /usr/local/bin/\n\
                 mkdir -p /var/lib/dmuc/images && cp /mnt/k8s/images/*.tar /var/lib/dmuc/images/\n"
                    .to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// What the guest installs from its /mnt/host: the package under test, and Kubernetes'
/// binaries unpacked here (xz under emulation took 40 s a guest).
fn stage(g: &Guest, deb: &std::path::Path) {
    std::fs::copy(deb, g.share.join("dmuc.deb")).unwrap();
    let bin = g.share.join("k8s-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xJf")
        .arg(crate::realcluster::shared_k8s().join(crate::realcluster::TARBALL))
        .arg("-C")
        .arg(&bin)
        .status()
        .unwrap();
    assert!(st.success(), "tar -xJf {}", crate::realcluster::TARBALL);
    g.mount_shares();
}

/// Runs `steps` in the guest under `set -e` (doctor failing fails them).
fn run_steps(g: &Guest, what: &str, steps: &str) {
    let (code, out, err) = g.sh(&format!("set -e\n{steps}"), m(600));
    assert_eq!(code, 0, "{what}:\n{steps}\nstdout: {out}\nstderr: {err}");
}

/// Polls `script` in the guest until it prints `want` (a substring), or panics at `wait`
/// with what it printed last.
fn until(g: &Guest, what: &str, script: &str, want: &str, wait: Duration) -> String {
    let deadline = Instant::now() + wait;
    let mut last = String::new();
    while Instant::now() < deadline {
        let (_, out, err) = g.sh(script, m(120));
        if out.contains(want) {
            return out;
        }
        last = format!("{out}{err}");
        std::thread::sleep(m(2)); // the cluster coming up in the guest, under the deadline
    }
    let status = g.sh(
        "systemctl status dmucd --no-pager; dmucctl status; tail -n 30 /var/log/dmuc/kube-proxy.log",
        m(60),
    );
    panic!("{what}: not within {wait:?}; last: {last}\nstatus: {status:?}");
}

/// What the package and the cluster may leave on a host; `dmucctl reset` and `apt purge`
/// must bring it back to what it was before the install. (The control plane's system users
/// stay, as Debian's packages leave theirs: docs/operations.md.)
const FOOTPRINT: &str = r#"
for p in /etc/dmuc /var/lib/dmuc /var/log/dmuc /run/dmuc /var/lib/kubelet /var/lib/cni \
  /usr/bin/dmucd /usr/bin/dmucctl /usr/share/dmuc \
  /lib/systemd/system/dmucd.service /etc/systemd/system/multi-user.target.wants/dmucd.service; do
  [ -e "$p" ] && echo "exists $p"
done
ip -o link show | awk -F': ' '{print "link " $2}' | sed 's/@.*//' | sort
iptables-save | grep -E '^:(KUBE|CNI)' | cut -d' ' -f1 | sort
findmnt -rn -o TARGET | grep -E 'kubelet|/run/containerd|netns' | sort
ls /sys/fs/cgroup | grep -E '^(kubepods|k8s.io)' | sed 's/^/cgroup /'
systemctl list-units --all --plain --no-legend 'kubepods*' | awk '{print "unit " $1}'
ps -e -o comm= | grep -E '^(dmuc|kube|tmux|containerd-shim|pause|httpd)' | sort -u
dpkg-query -W -f='package ${Status}\n' dmuc 2>/dev/null || true
"#;

/// `kubectl apply` (the admin kubeconfig) of a Deployment `name` of the web image
/// (../shared/k8s/images, pulled from nowhere) and its Service; `spread`: its pods one per
/// node while there are two (a topology spread over hostnames).
fn web_app(name: &str, replicas: u32, spread: bool) -> String {
    let spread = if spread {
        format!(
            "
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector: {{matchLabels: {{app: {name}}}}}"
        )
    } else {
        String::new()
    };
    format!(
        "cat <<'EOF' | {ADMIN} apply -f -
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      terminationGracePeriodSeconds: 2{spread}
      containers:
      - name: web
        image: docker.io/library/busybox-httpd:local
        imagePullPolicy: Never
        ports: [{{containerPort: 80}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 80}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80}}]
EOF"
    )
}

/// Until the web Service answers through kube-proxy from the guest.
fn web_serves(g: &Guest, what: &str) {
    let ip = g.ok(
        &format!("{ADMIN} get service web -o jsonpath='{{.spec.clusterIP}}'"),
        m(120),
    );
    until(
        g,
        what,
        &format!("curl -s --max-time 5 http://{}/", ip.trim()),
        "hello from busybox-httpd",
        m(600),
    );
}

/// A second guest on the control plane's link (198.18.0.12, `worker`), with the package
/// installed as "Installing" says (steps 1 and 2: the graph is "More nodes"'), and what it
/// was before the package ([`FOOTPRINT`]).
fn prepare_worker(link: &std::path::Path, deb: &std::path::Path) -> (Guest, String) {
    let w = Guest::boot(
        2048,
        1,
        &Net {
            link,
            n: 2,
            peer: 1,
            name: "worker",
        },
    );
    stage(&w, deb);
    let before = w.ok(FOOTPRINT, m(60));
    w.ok("apt-get install -y /mnt/host/dmuc.deb", m(600));
    run_steps(&w, "the docs' install steps 1 and 2", &install_steps(false));
    (w, before)
}

/// The worker joins the control plane `g` as docs/operations.md's "More nodes" says: the
/// worker's graph, the join command `dmucctl token create` printed on the control plane,
/// doctor, the unit started. Returns once the Node is Ready.
fn worker_joins(g: &Guest, w: &Guest) {
    let block = doc_block("A second machine joins the cluster");
    let (on_cp, on_node) = block
        .split_once("# on the new node")
        .expect("the docs' two sides");
    // The control plane's side prints the join command (and nothing else on stdout). Its
    // requests time out at 30 s, which the emulated API server has missed under load: a
    // timeout is tried again (a token more), and said.
    let mut tries = 0;
    let join = loop {
        tries += 1;
        let (code, out, err) = g.sh(on_cp, m(300));
        if code == 0 {
            break out;
        }
        assert!(
            tries < 3 && err.contains("timeout"),
            "{on_cp}\nstdout: {out}\nstderr: {err}"
        );
        eprintln!("hosts: token create, try {tries}: {}", err.trim());
    };
    let join = join.trim();
    assert!(
        join.starts_with("dmucctl join --server https://198.18.0.11:6443 --token "),
        "token create printed: {join}"
    );
    // The new node's side, the placeholder join replaced by the one printed.
    let on_node = on_node.replace("\\\n", " ");
    assert!(on_node.contains("\ndmucctl join "), "{on_node}");
    let steps: String = on_node
        .lines()
        .skip(1) // the rest of the "# on the new node" comment line
        .map(|l| {
            if l.starts_with("dmucctl join ") {
                format!("{join}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    assert!(steps.contains("systemctl start dmucd"), "{steps}");
    run_steps(w, "the docs' steps on a new node", &steps);
    node_ready(g, "worker", "the worker Ready");
}

/// Until the spread Deployment has one ready pod on each VM, then traffic across them: from
/// each host to both pods, from each pod to the other (kubectl exec: the API server reaching
/// each kubelet), and through the Service from each host, every try answered. Returns the
/// pods' IPs (control plane's, worker's).
fn spread_between(g: &Guest, w: &Guest, what: &str) -> (String, String) {
    let eps = until(
        g,
        what,
        &format!(
            "{ADMIN} get endpoints spread -o jsonpath='{{range .subsets[*].addresses[*]}}{{.nodeName}} {{.ip}} {{.targetRef.name}}{{\"\\n\"}}{{end}}' | sort"
        ),
        "\nworker ",
        m(600),
    );
    let find = |node: &str| -> (String, String) {
        let l = eps
            .lines()
            .find(|l| l.starts_with(&format!("{node} ")))
            .unwrap_or_else(|| panic!("{what}: no pod on {node}: {eps}"));
        let f: Vec<&str> = l.split_whitespace().collect();
        (f[1].to_string(), f[2].to_string())
    };
    let ((cp_ip, cp_pod), (w_ip, w_pod)) = (find("cp"), find("worker"));
    for (host, name) in [(g, "cp"), (w, "worker")] {
        for ip in [&cp_ip, &w_ip] {
            let (code, out, err) = host.sh(&format!("curl -s --max-time 10 http://{ip}/"), m(60));
            assert!(
                code == 0 && out.contains("hello from busybox-httpd"),
                "{what}: from {name} to the pod {ip}: {code} {out}{err}"
            );
        }
    }
    for (pod, ip) in [(&cp_pod, &w_ip), (&w_pod, &cp_ip)] {
        let out = g.ok(
            &format!("{ADMIN} exec {pod} -- wget -q -T 10 -O - http://{ip}/"),
            m(120),
        );
        assert!(
            out.contains("hello from busybox-httpd"),
            "{what}: {pod} → {ip}: {out}"
        );
    }
    let svc = g.ok(
        &format!("{ADMIN} get service spread -o jsonpath='{{.spec.clusterIP}}'"),
        m(60),
    );
    for (host, name) in [(g, "cp"), (w, "worker")] {
        // kube-proxy picks an endpoint at random: 12 tries all answered means both ways work
        // (a broken one fails half of them).
        host.ok(
            &format!(
                "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do curl -sf --max-time 10 http://{}/ >/dev/null || \
                   {{ echo \"try $i failed from {name}\" >&2; exit 1; }}; done",
                svc.trim()
            ),
            m(300),
        );
    }
    (cp_ip, w_ip)
}

/// docs/operations.md's "Leaving" as written: drain and delete on the control plane (its
/// admin kubeconfig), reset on the worker (`--yes`: no terminal here).
fn worker_leaves(g: &Guest, w: &Guest) {
    let block = doc_block("### Leaving");
    let env = "export KUBECONFIG=/var/lib/dmuc/pki/admin.kubeconfig PATH=/usr/local/bin:$PATH\n";
    let mut on_cp = String::from(env);
    let mut on_node = String::new();
    for l in block.lines() {
        let l = l.replace("NODE", "worker");
        if l.starts_with("kubectl ") {
            on_cp.push_str(&format!("{l}\n"));
        } else if l.starts_with("dmucctl reset") {
            let (cmd, _) = l.split_once('#').unwrap_or((&l, ""));
            on_node.push_str(&format!("{} --yes\n", cmd.trim()));
        }
    }
    assert!(on_cp.contains("kubectl delete node worker"), "{block}");
    assert!(
        on_node.contains("--config /etc/dmuc/cluster.toml"),
        "{block}"
    );
    run_steps(g, "the docs' leave on the control plane", &on_cp);
    run_steps(w, "the docs' reset on the node", &on_node);
}

/// Until the Node `name` is Ready, asked on `g` (the control plane).
fn node_ready(g: &Guest, name: &str, what: &str) {
    until(
        g,
        what,
        &format!(
            "{ADMIN} get node {name} -o jsonpath='{{.status.conditions[?(@.type==\"Ready\")].status}}'"
        ),
        "True",
        m(600),
    );
}

/// Every component's PID, by name (`dmucctl status --json`).
fn pids(g: &Guest) -> Vec<(String, u64)> {
    let json = g.ok("dmucctl status --json", m(60));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let mut p: Vec<(String, u64)> = v["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["pid"].as_u64()?)))
        .collect();
    p.sort();
    p
}

fn main_pid(g: &Guest) -> String {
    g.ok("systemctl show dmucd -p MainPID --value", m(30))
        .trim()
        .to_string()
}

/// Until systemd runs a dmucd other than `old` and the unit is active.
fn new_dmucd(g: &Guest, what: &str, old: &str, wait: Duration) {
    let deadline = Instant::now() + wait;
    loop {
        let show = g.ok(
            "systemctl show dmucd -p ActiveState -p MainPID --value",
            m(30),
        );
        let mut it = show.lines();
        let (pid, state) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
        if state == "active" && pid != old && pid != "0" {
            return;
        }
        if Instant::now() > deadline {
            let (_, status, _) = g.sh(
                "systemctl status dmucd --no-pager; dmucctl status; dmucctl events | tail -n 40",
                m(60),
            );
            panic!("{what}: {show}\n{status}");
        }
        std::thread::sleep(m(2)); // systemd restarting dmucd, under the deadline
    }
}

#[test]
fn the_package_brings_the_node_up_at_boot_and_keeps_it_across_restarts_and_reboots() {
    let mut why = crate::vm::missing();
    let shared = crate::realcluster::shared_k8s();
    if !shared.join(crate::realcluster::TARBALL).exists() {
        why.push(format!("{} (DMUC_K8S_DIR)", shared.display()));
    }
    let deb = package();
    if deb.is_none() {
        why.push("target/debian/dmuc_*.deb (crates/dmucd/deb/build.sh, or DMUC_DEB)".into());
    }
    if dmuc_tests::skip_unless("hosts::the_package_brings_the_node_up_at_boot", &why) {
        return;
    }
    let t0 = Instant::now();
    let step = std::cell::Cell::new(Instant::now());
    let took = |what: &str| {
        eprintln!("hosts: {what} in {:.0?}", step.get().elapsed());
        step.set(Instant::now());
    };
    // The control plane, on a link it will share with a worker's guest (below).
    let link = tempfile::tempdir().unwrap();
    let cp = Net {
        link: link.path(),
        n: 1,
        peer: 2,
        name: "cp",
    };
    let mut g = Guest::boot(3072, 2, &cp);
    took("the guest booted");
    let deb = deb.unwrap();
    stage(&g, &deb);
    // The host as its user finds it: systemd as PID 1, cgroup v2, Debian's etcd and
    // containerd services enabled by their packages.
    assert_eq!(g.ok("cat /proc/1/comm", m(30)).trim(), "systemd");
    assert_eq!(
        g.ok("stat -f -c %T /sys/fs/cgroup", m(30)).trim(),
        "cgroup2fs"
    );

    // Installed as the docs say: enabled, not started.
    g.ok("apt-get install -y /mnt/host/dmuc.deb", m(600));
    assert_eq!(
        g.sh("systemctl is-enabled dmucd", m(30)).1.trim(),
        "enabled"
    );
    assert_eq!(
        g.sh("systemctl is-active dmucd", m(30)).1.trim(),
        "inactive"
    );
    for p in [
        "dmucd",
        "dmucctl",
        "dmucctl-full",
        "dmucctl-tools",
        "dmuc-shim",
    ] {
        g.ok(&format!("test -x /usr/bin/{p}"), m(30));
    }
    g.ok(
        "test -e /usr/share/man/man8/dmucd.8.gz && test -e /usr/share/man/man1/dmucctl.1.gz && \
         test -e /usr/share/bash-completion/completions/dmucctl && \
         test -e /usr/share/dmuc/config/worker.toml",
        m(30),
    );
    took("installed the package");
    // doctor names what is in the way: Debian's own etcd and containerd services.
    let (code, out, _) = g.sh("dmucctl doctor --config /etc/dmuc/cluster.toml", m(120));
    assert_ne!(code, 0, "{out}");
    for line in [
        "init system",
        "distribution's etcd.service",
        "distribution's containerd.service",
        "dmucd.service is enabled",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(
        out.contains("cgroup version") && out.contains("v2"),
        "{out}"
    );

    // docs/operations.md's steps as written, but for the download: the binaries come from
    // ../shared/k8s (no network here), with the images for an air-gapped node. The last
    // step, `systemctl start dmucd`, is its "or reboot": the power cycle below.
    run_steps(&g, "the docs' install steps", &install_steps(true));
    took("followed the docs (doctor ok)");

    // Power cycle: the node comes up with no command typed. Meanwhile a second guest on its
    // link gets the package and the node's first two steps, to join it later.
    let t1 = Instant::now();
    let (w, w_before) = std::thread::scope(|s| {
        let worker = s.spawn(|| prepare_worker(link.path(), &deb));
        g.reboot();
        let booted = t1.elapsed();
        node_ready(&g, "cp", "the node Ready after boot");
        eprintln!(
            "hosts: reboot → guest agent in {booted:.0?}, → node Ready in {:.0?}",
            t1.elapsed()
        );
        worker.join().unwrap()
    });
    // The unit is active (READY=1 from Type=notify) and says how the graph is.
    let show = until(
        &g,
        "dmucd.service active",
        "systemctl show dmucd -p ActiveState -p StatusText -p Type",
        "ActiveState=active",
        m(420),
    );
    eprintln!(
        "hosts: → dmucd.service active in {:.0?}: {}",
        t1.elapsed(),
        show.replace('\n', " ")
    );
    assert!(
        show.contains("Type=notify") && show.contains("up"),
        "{show}"
    );
    let journal = g.ok("journalctl -u dmucd -b --no-pager | tail -n 50", m(60));
    assert!(journal.contains("dmucd"), "{journal}");
    // systemd and dmucd agree on the boot: the unit was activating from dmucd's exec to
    // READY=1, which went when the graph had settled, i.e. when the last component was up
    // (`dmucctl analyze`, timed from dmucd's start of the graph).
    let chain = g.ok(
        "systemd-analyze critical-chain dmucd.service --no-pager",
        m(120),
    );
    assert!(chain.contains("dmucd.service +"), "{chain}");
    for l in chain.lines().filter(|l| l.contains('@') || l.contains('+')) {
        eprintln!(
            "hosts: critical-chain: {}",
            l.trim_start_matches(['└', '─', ' '])
        );
    }
    let mono = g.ok(
        "systemctl show dmucd -p ExecMainStartTimestampMonotonic -p ActiveEnterTimestampMonotonic --value",
        m(30),
    );
    let mono: Vec<u64> = mono.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let activating_us = mono[1] - mono[0];
    let analyze: serde_json::Value =
        serde_json::from_str(&g.ok("dmucctl analyze --json", m(60))).unwrap();
    let up_us = analyze["chain"][0]["up_us"].as_u64().unwrap();
    eprintln!(
        "hosts: dmucd.service activating {:.1} s, the graph up @{:.1} s ({})",
        activating_us as f64 / 1e6,
        up_us as f64 / 1e6,
        analyze["target"]
    );
    assert!(
        up_us <= activating_us && activating_us - up_us < 20_000_000,
        "systemd: activating for {activating_us} µs; dmucctl analyze: the graph up @{up_us} µs\n{chain}"
    );
    took("checked the boot");

    // A Deployment served through its Service (kube-proxy), before the reboot below.
    g.ok(&web_app("web", 1, false), m(120));
    web_serves(&g, "the web Service answering");
    // systemd runs this host: containerd's runc and the kubelet use its cgroup driver, and
    // the pod is a systemd unit.
    g.ok(
        "grep -qx 'cgroupDriver: systemd' /var/lib/dmuc/config/kubelet.yaml && \
         grep -q 'SystemdCgroup = true' /var/lib/dmuc/config/containerd.toml && \
         systemctl is-active kubepods.slice && \
         systemctl list-units --plain --no-legend 'cri-containerd-*.scope' | grep -q running",
        m(60),
    );
    took("web served");

    // `systemctl restart dmucd`: the new dmucd adopts every component (same PIDs), and the
    // pods are untouched (the same pod, its container never restarted).
    let pod = format!(
        "{ADMIN} get pods -l app=web -o jsonpath='{{range .items[*]}}{{.metadata.uid}} {{.status.containerStatuses[0].restartCount}} {{.status.containerStatuses[0].containerID}}{{\"\\n\"}}{{end}}'"
    );
    let pod_before = g.ok(&pod, m(120));
    assert!(pod_before.contains(" 0 containerd://"), "{pod_before}");
    let before_pids = pids(&g);
    assert!(
        before_pids.iter().any(|(n, _)| n == "kube-apiserver"),
        "{before_pids:?}"
    );
    let daemon = main_pid(&g);
    // The watchdog's minute made shorter for the test below (systemd's drop-in, taken at
    // this restart: dmucd pings at half the WATCHDOG_USEC it is started with).
    g.ok(
        "mkdir -p /etc/systemd/system/dmucd.service.d && \
         printf '[Service]\\nWatchdogSec=20s\\n' >/etc/systemd/system/dmucd.service.d/test-watchdog.conf && \
         systemctl daemon-reload",
        m(60),
    );
    g.ok("systemctl restart dmucd", m(300));
    new_dmucd(&g, "dmucd back after restart", &daemon, m(300));
    assert_eq!(
        pids(&g),
        before_pids,
        "every component adopted, none restarted"
    );
    took("restart adopted");

    // The watchdog: a frozen dmucd sends no WATCHDOG=1; systemd aborts it (WatchdogSec, 20 s
    // here) and starts one that adopts the components.
    let daemon = main_pid(&g);
    g.ok(&format!("kill -STOP {daemon}"), m(30));
    new_dmucd(&g, "dmucd restarted by the watchdog", &daemon, m(420));
    let journal = g.ok("journalctl -u dmucd -b --no-pager", m(60));
    assert!(journal.contains("Watchdog timeout"), "{journal}");
    assert_eq!(
        pids(&g),
        before_pids,
        "every component adopted after the watchdog"
    );
    assert_eq!(g.ok(&pod, m(120)), pod_before, "the pod untouched");
    g.ok(
        "rm -r /etc/systemd/system/dmucd.service.d && systemctl daemon-reload",
        m(60),
    );
    took("watchdog restart adopted");

    // A second VM joins as docs/operations.md's "More nodes" says: pods spread over both,
    // traffic between them.
    worker_joins(&g, &w);
    took("a worker VM joined");
    g.ok(&web_app("spread", 2, true), m(120));
    let (_, w_pod) = spread_between(&g, &w, "the pods spread over both VMs");
    took("pods and Services across the VMs");

    // `systemctl poweroff` with the worker joined: dmucd's ordered stop runs to its end
    // within the unit's timeout, before systemd's final kill; powered on, the cluster is back
    // with its data (the Deployment serves again), and the worker with it.
    let t2 = Instant::now();
    g.poweroff(m(900));
    let down = t2.elapsed();
    g.power_on();
    let journal = g.ok("journalctl -u dmucd -b -1 --no-pager -o cat", m(120));
    // From the shutdown's stop on (the watchdog's kill above is in the same boot).
    let last = &journal[journal
        .rfind("Stopping dmucd.service")
        .unwrap_or_else(|| panic!("no stop at shutdown:\n{journal}"))..];
    assert!(
        last.contains("stopping all components in reverse dependency order")
            && last.contains("every component has stopped"),
        "the ordered stop at shutdown:\n{last}"
    );
    assert!(
        !last.contains("timed out") && !last.contains("Killing process"),
        "{last}"
    );
    let stop = g.ok(
        "journalctl -b -1 --no-pager -o short-monotonic -u dmucd | grep -E 'Stopping dmucd|Stopped dmucd|Deactivated' | tail -n 3",
        m(60),
    );
    eprintln!("hosts: poweroff with a worker joined: qemu gone in {down:.0?}; {stop}");
    node_ready(&g, "cp", "the node Ready after the power cycle");
    web_serves(&g, "the web Service answering after the power cycle");
    node_ready(&g, "worker", "the worker Ready again");
    // The worker's pod untouched by the control plane's power cycle, served again.
    until(
        &g,
        "the worker's pod an endpoint again",
        &format!(
            "{ADMIN} get endpoints spread -o jsonpath='{{range .subsets[*].addresses[*]}}{{.nodeName}} {{.ip}}{{\"\\n\"}}{{end}}'"
        ),
        &format!("worker {w_pod}"),
        m(300),
    );
    eprintln!(
        "hosts: systemctl poweroff, power on → both nodes Ready and the Deployments serving in {:.0?}",
        t2.elapsed()
    );
    took("power cycle kept the data");

    // The worker's `apt remove`: its unit stopped (the ordered stop), its state kept;
    // installed again and started, the same node (no new join) Ready again.
    w.ok("apt-get remove -y dmuc", m(900));
    let left = w.ok(FOOTPRINT, m(60));
    assert!(
        !left.contains("\ndmucd") && !left.contains("kubelet\n"),
        "{left}"
    );
    assert!(
        left.contains("exists /var/lib/dmuc") && left.contains("exists /etc/dmuc"),
        "{left}"
    );
    w.ok("apt-get install -y /mnt/host/dmuc.deb", m(600));
    assert_eq!(
        w.sh("systemctl is-enabled dmucd", m(30)).1.trim(),
        "enabled"
    );
    w.ok("systemctl start dmucd", m(600));
    node_ready(&g, "worker", "the worker Ready after a new install");
    took("the worker's remove and install kept its node");

    // The worker leaves ("Leaving"): drained and deleted on the control plane, reset on
    // itself, then purged: the worker as it was before the package; the control plane
    // untouched (no component restarted, its pods served, no route left to the worker).
    let cp_pids = pids(&g);
    worker_leaves(&g, &w);
    // "Purge": reset with the image archives too, then the package.
    w.ok(
        "dmucctl reset --config /etc/dmuc/cluster.toml --yes --remove-images && apt-get purge -y dmuc",
        m(900),
    );
    let after = w.ok(FOOTPRINT, m(60));
    assert_eq!(
        after, w_before,
        "what reset and purge left on the worker (before the package: left)"
    );
    drop(w);
    assert_eq!(
        pids(&g),
        cp_pids,
        "the control plane untouched by the worker's leave"
    );
    web_serves(&g, "the web Service answering after the worker left");
    until(
        &g,
        "both spread pods on the control plane",
        &format!(
            "{ADMIN} get endpoints spread -o jsonpath='{{range .subsets[*].addresses[*]}}{{.nodeName}}{{\"\\n\"}}{{end}}'"
        ),
        "cp\ncp",
        m(300),
    );
    assert_eq!(g.ok("ip route show proto 211", m(30)), "", "a route left");
    took("the worker left, reset and purged");
    eprintln!("hosts: the whole test took {:.0?}", t0.elapsed());
}
