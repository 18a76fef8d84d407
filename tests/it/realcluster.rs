//! The real thing: config/cluster.toml as shipped, run by dmucd with real Kubernetes v1.20.2
//! built from Debian's source (../shared/k8s, unpacked to a temp dir; its own kubectl), Debian's etcd, containerd, runc and CNI plugins,
//! and the real kubectl. One cluster, shared by every check that can share it (CI time): node
//! Ready, a Deployment serving through a ClusterIP Service, `kubectl logs` and `exec`,
//! scaling, kill -9 of the kubelet and of the API server, adoption after kill -9 of dmucd,
//! then `dmucctl shutdown`, `dmucctl reset --yes` and a host with nothing of the cluster left.
//!
//! Needs root and the Debian packages (.ci/run installs them). Outside CI it is skipped, loudly,
//! when something is missing; under CI=true it fails instead.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

pub(crate) const T: Duration = Duration::from_secs(240);

/// Where the shared Kubernetes binaries and images are (`DMUC_K8S_DIR` overrides).
pub(crate) fn shared_k8s() -> PathBuf {
    std::env::var_os("DMUC_K8S_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/k8s"),
        PathBuf::from,
    )
}

/// The one Kubernetes these machines can have (../shared/k8s/README.md); the profiles write
/// what its release takes (docs/kubernetes-versions.md).
pub(crate) const TARBALL: &str = "kubernetes-v1.20.2-linux-amd64.tar.xz";
/// What Debian provides, and where (etcd-server, containerd, runc, containernetworking-plugins).
const DEBIAN: &[&str] = &[
    "/usr/bin/etcd",
    "/usr/bin/containerd",
    "/usr/bin/ctr",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/sbin/runc",
    "/usr/lib/cni/bridge",
    "/usr/sbin/iptables",
    "/usr/sbin/conntrack",
    "/usr/bin/etcdctl",
];

/// What this test needs that a fresh machine may lack.
pub(crate) fn missing() -> Vec<String> {
    let mut why = Vec::new();
    if !nix::unistd::geteuid().is_root() {
        why.push("root".to_string());
    }
    if !shared_k8s().join(TARBALL).exists() {
        why.push(format!(
            "{} (set DMUC_K8S_DIR)",
            shared_k8s().join(TARBALL).display()
        ));
    }
    why.extend(
        DEBIAN
            .iter()
            .filter(|p| !Path::new(p).exists())
            .map(|p| p.to_string()),
    );
    why
}

/// The node's programs in one directory: Kubernetes unpacked, Debian's linked beside it.
pub(crate) fn unpack(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let st = Command::new("tar")
        .arg("-xJf")
        .arg(shared_k8s().join(TARBALL))
        .arg("-C")
        .arg(&bin)
        .status()
        .unwrap();
    assert!(st.success(), "tar failed");
    for p in &DEBIAN[..5] {
        let name = Path::new(p).file_name().unwrap();
        std::os::unix::fs::symlink(p, bin.join(name)).unwrap();
    }
    bin
}

pub(crate) struct Kubectl {
    pub(crate) prog: PathBuf,
    pub(crate) kubeconfig: PathBuf,
}

impl Kubectl {
    pub(crate) fn run(&self, args: &[&str]) -> (bool, String) {
        let o = Command::new(&self.prog)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .unwrap();
        said(&o)
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let (ok, out) = self.run(args);
        assert!(ok, "kubectl {args:?}: {out}");
        out
    }

    /// One line per web pod, `fields` (a jsonpath) filled in, sorted.
    pub(crate) fn web_pods(&self, fields: &str) -> Vec<String> {
        let out = self.ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            &format!("jsonpath={{range .items[*]}}{fields}{{\"\\n\"}}{{end}}"),
        ]);
        let mut v: Vec<String> = out.lines().map(str::to_string).collect();
        v.sort();
        v
    }

    /// Each web pod's uid, container id and restart count, sorted: equal snapshots mean
    /// no pod was recreated and no container restarted.
    pub(crate) fn pods(&self) -> Vec<String> {
        self.web_pods(
            "{.metadata.uid} {.status.containerStatuses[0].containerID} {.status.containerStatuses[0].restartCount}",
        )
    }

    /// The web pods' names, sorted; not those being deleted.
    fn pod_names(&self) -> Vec<String> {
        self.web_pods("{.metadata.name} {.metadata.deletionTimestamp}")
            .into_iter()
            .filter_map(|l| {
                let (name, deleting) = l.split_once(' ').unwrap_or((&l, ""));
                deleting.trim().is_empty().then(|| name.to_string())
            })
            .collect()
    }

    /// Whether the bootstrap signer has signed cluster-info with token `id`.
    pub(crate) fn signed_by(&self, id: &str) -> bool {
        let data = self.ok(&[
            "-n",
            "kube-public",
            "get",
            "configmap",
            "cluster-info",
            "-o",
            "jsonpath={.data}",
        ]);
        data.contains(&format!("jws-kubeconfig-{id}"))
    }

    /// Who the API server takes the bearer token of `kubeconfig` for: `USER [GROUPS]`, from a
    /// TokenReview made with this (admin) client (`kubectl auth whoami` is 1.26 and later).
    pub(crate) fn identity_of(&self, kubeconfig: &Path) -> String {
        let o = Command::new(&self.prog)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "config",
                "view",
                "--raw",
                "-o",
                "jsonpath={.users[0].user.token}",
            ])
            .output()
            .unwrap();
        let (ok, token) = said(&o);
        assert!(
            ok && !token.trim().is_empty(),
            "no token in {}: {token}",
            kubeconfig.display()
        );
        let review = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            review.path(),
            format!(
                "{{\"apiVersion\": \"authentication.k8s.io/v1\", \"kind\": \"TokenReview\", \"spec\": {{\"token\": \"{}\"}}}}",
                token.trim()
            ),
        )
        .unwrap();
        self.ok(&[
            "create",
            "-f",
            review.path().to_str().unwrap(),
            "-o",
            "jsonpath={.status.authenticated} {.status.user.username} {.status.user.groups}",
        ])
        .strip_prefix("true ")
        .unwrap_or_else(|| panic!("the token of {} is not authenticated", kubeconfig.display()))
        .to_string()
    }

    pub(crate) fn node_ready(&self, node: &str) -> bool {
        let (_, s) = self.run(&[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]);
        s.trim() == "True"
    }
}

/// GET / from `addr`, the body when it answers with 200.
pub(crate) fn http_get(addr: &str) -> Option<String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    let status = reply.lines().next()?;
    (status.starts_with("HTTP/1.") && status.split_whitespace().nth(1) == Some("200"))
        .then_some(reply)
}

/// A Deployment of the imported web image, `replicas` of it spread over the nodes, and its
/// Service.
pub(crate) fn web_manifest(replicas: u32) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 2
      # One per node while there are enough nodes.
      topologySpreadConstraints:
      - {{maxSkew: 1, topologyKey: kubernetes.io/hostname, whenUnsatisfiable: DoNotSchedule,
         labelSelector: {{matchLabels: {{app: web}}}}}}
      containers:
      - name: web
        image: docker.io/library/busybox-httpd:local
        imagePullPolicy: Never
        ports: [{{containerPort: 80}}]
        readinessProbe: {{httpGet: {{path: /healthz, port: 80}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 80}}]
"#
    )
}

/// The `dmucctl reset --yes` of this test's node (also run if the test fails half-way, so
/// that a red run leaves nothing either).
pub(crate) struct Reset {
    pub(crate) args: Vec<String>,
    pub(crate) done: bool,
}

impl Reset {
    pub(crate) fn run(&mut self) -> std::process::Output {
        self.done = true;
        Command::new(bin_dir().join("dmucctl"))
            .arg("reset")
            .arg("--yes")
            .args(&self.args)
            .output()
            .unwrap()
    }
}

impl Drop for Reset {
    fn drop(&mut self) {
        if !self.done {
            let o = self.run();
            eprintln!(
                "cleanup: dmucctl reset: {}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            );
        }
    }
}

/// What of a node is still on the host, one line each (../shared/k8s/README.md's list).
pub(crate) fn leftovers(bin: &Path, state: &Path, containerd_socket: &str) -> Vec<String> {
    let mut left = Vec::new();
    let bin_s = bin.display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || !alive(pid) {
            continue;
        }
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        if cmd.contains(&bin_s) || cmd.contains(containerd_socket) || cgroup.contains("kubepods") {
            left.push(format!("process {pid}: {cmd}"));
        }
    }
    for prog in ["iptables-save", "ip6tables-save"] {
        let o = Command::new(prog).output().unwrap();
        for l in String::from_utf8_lossy(&o.stdout).lines() {
            if l.contains("KUBE-") || l.contains("CNI-") {
                left.push(format!("{prog}: {l}"));
            }
        }
    }
    if Path::new("/sys/class/net/cni0").exists() {
        left.push("the cni0 bridge".into());
    }
    if let Ok(o) = Command::new("ip")
        .args(["-4", "route", "show", "proto", "211"])
        .output()
        && !o.stdout.is_empty()
    {
        left.push(format!("routes: {}", String::from_utf8_lossy(&o.stdout)));
    }
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        for name in ["kubepods", "kubepods.slice", "k8s.io"] {
            if h.path().join(name).exists() {
                left.push(format!("cgroup {}", h.path().join(name).display()));
            }
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dirs = [
        "/var/lib/kubelet",
        "/var/lib/containerd",
        "/run/containerd",
        "/var/lib/cni",
        "/var/log/pods",
        "/var/log/containers",
        "/run/netns",
    ];
    for m in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        if dirs.iter().any(|d| m.starts_with(d)) || m.starts_with(&state.display().to_string()) {
            left.push(format!("mount {m}"));
        }
    }
    for d in dirs {
        if Path::new(d).exists() {
            left.push(format!("directory {d}"));
        }
    }
    if std::fs::read_dir(state).is_ok_and(|mut r| r.next().is_some()) {
        left.push(format!("{} is not empty", state.display()));
    }
    left
}

/// Every component's status once all of `services` are ready (from the running daemon, not
/// the status.json an earlier one left).
pub(crate) fn all_ready(d: &Daemon, services: &[&str], what: &str) -> Vec<serde_json::Value> {
    wait_for(what, T, || {
        let o = d.ctl(&["status", "--json"]);
        let s: serde_json::Value = serde_json::from_slice(&o.stdout).ok()?;
        let c = s["components"].as_array()?.clone();
        services
            .iter()
            .all(|n| c.iter().any(|x| x["name"] == *n && x["state"] == "ready"))
            .then_some(c)
    })
}

/// The node's programs unpacked (Kubernetes, Debian's beside them) and the images linked, in
/// `work`, opened to the control plane's users: (bin, images).
pub(crate) fn node_files(work: &Path) -> (PathBuf, PathBuf) {
    // The control plane's users must reach their programs and files in it.
    open_dir(work);
    let bin = unpack(work);
    let images = work.join("images");
    std::fs::create_dir_all(&images).unwrap();
    for img in ["pause-3.10.tar", "busybox-httpd-local.tar"] {
        std::os::unix::fs::symlink(shared_k8s().join("images").join(img), images.join(img))
            .unwrap();
    }
    (bin, images)
}

/// config/cluster.toml as shipped, run by a dmucd with its state in `state` and `extra`
/// `[vars]` values; with the reset that cleans the node up. Bind them in this order
/// (`let (reset, d) = ...`): the daemon goes first, then the reset runs.
pub(crate) fn start_control_plane(
    bin: &Path,
    images: &Path,
    state: &Path,
    extra: &[&str],
) -> (Reset, Daemon) {
    let profile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/cluster.toml");
    let mut vars = vec![
        format!("bin={}", bin.display()),
        "cni-bin=/usr/lib/cni".to_string(),
        format!("state={}", state.display()),
        format!("images={}", images.display()),
    ];
    vars.extend(extra.iter().map(|v| v.to_string()));
    let dir = tempfile::tempdir().unwrap();
    let reset = Reset {
        args: ["--config".to_string(), profile.display().to_string()]
            .into_iter()
            .chain(vars.iter().flat_map(|v| ["--var".to_string(), v.clone()]))
            .chain([
                "--socket".to_string(),
                dir.path().join("run/dmucd.sock").display().to_string(),
            ])
            .collect(),
        done: false,
    };
    let args: Vec<&str> = vars.iter().flat_map(|v| ["--var", v.as_str()]).collect();
    let toml = std::fs::read_to_string(&profile).unwrap();
    (reset, Daemon::start_with(dir, &toml, &args))
}

#[test]
fn real_cluster_serves_survives_kills_and_adoption_then_reset_leaves_the_host_clean() {
    if skip_unless("the real-cluster test", &missing()) {
        return;
    }
    let _ports = fixed_ports();
    let work = tempfile::tempdir().unwrap();
    let (bin, images) = node_files(work.path());
    let state = work.path().join("state");
    let containerd_socket = "/run/containerd/containerd.sock";
    // A name for a balancer in front of the API server, in its certificate.
    let (mut reset, mut d) = start_control_plane(
        &bin,
        &images,
        &state,
        &["apiserver-sans=api.dmuc.test 198.18.0.100"],
    );
    let services = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "containerd",
        "kubelet",
        "kube-proxy",
    ];
    for name in services {
        d.wait_state(name, "ready", T);
    }
    let k = Kubectl {
        prog: bin.join("kubectl"),
        kubeconfig: state.join("pki/admin.kubeconfig"),
    };
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_lowercase();
    wait_for("the node to be Ready", T, || {
        k.node_ready(&node).then_some(())
    });

    // doctor on the running node: the ports its own components hold are no problem.
    let o = Command::new(bin_dir().join("dmucctl"))
        .arg("doctor")
        .args(&reset.args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&o.stdout);
    for (port, name) in [
        (6443, "kube-apiserver"),
        (2379, "etcd"),
        (10250, "kubelet"),
        (10256, "kube-proxy"),
    ] {
        let line = said
            .lines()
            .find(|l| l.contains(&format!("port {port} ")))
            .unwrap_or_else(|| panic!("no port {port} in {said}"));
        assert!(
            line.starts_with("ok") && line.contains(&format!("held by this node's {name} (pid")),
            "{said}"
        );
    }

    // The control plane is not root: each part runs as its own user and reads only its own
    // keys; containerd, the kubelet and kube-proxy stay root.
    let uid_of = |pid: u64| -> u32 {
        let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = st.lines().find(|l| l.starts_with("Uid:")).unwrap();
        line.split_whitespace().nth(2).unwrap().parse().unwrap()
    };
    let user_uid = |u: &str| -> u32 {
        let o = Command::new("id").args(["-u", u]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    for (c, user) in [
        ("etcd", "dmuc-etcd"),
        ("kube-apiserver", "dmuc-apiserver"),
        ("kube-controller-manager", "dmuc-controller-manager"),
        ("kube-scheduler", "dmuc-scheduler"),
        ("containerd", "root"),
        ("kubelet", "root"),
        ("kube-proxy", "root"),
    ] {
        let pid = d.comp(c).unwrap()["pid"].as_u64().unwrap();
        assert_eq!(uid_of(pid), user_uid(user), "{c} does not run as {user}");
    }
    let reads = |user: &str, file: &str| {
        Command::new("runuser")
            .args(["-u", user, "--", "cat"])
            .arg(state.join("pki").join(file))
            .output()
            .unwrap()
            .status
            .success()
    };
    for (user, file, can) in [
        ("dmuc-etcd", "etcd-server.key", true),
        ("dmuc-scheduler", "etcd-server.key", false),
        ("dmuc-apiserver", "apiserver-etcd-client.key", true),
        ("dmuc-etcd", "apiserver-etcd-client.key", false),
        ("dmuc-controller-manager", "ca.key", true),
        ("dmuc-apiserver", "ca.key", false),
        ("dmuc-apiserver", "sa.key", true),
        ("dmuc-controller-manager", "sa.key", true),
        ("dmuc-scheduler", "sa.key", false),
        ("dmuc-scheduler", "kube-scheduler.kubeconfig", true),
        ("dmuc-scheduler", "admin.kubeconfig", false),
    ] {
        assert_eq!(reads(user, file), can, "{user} reading {file}");
    }
    let sans = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(state.join("pki/apiserver.crt"))
        .output()
        .unwrap();
    let sans = String::from_utf8_lossy(&sans.stdout).into_owned();
    assert!(
        sans.contains("DNS:api.dmuc.test") && sans.contains("IP Address:198.18.0.100"),
        "{sans}"
    );
    // pki check: chains, identities, SANs, no key that others may read, each key its user's.
    let o = Command::new(bin_dir().join("dmucctl"))
        .args(["pki", "check", "--dir"])
        .arg(state.join("pki"))
        .args([
            "--user",
            "etcd=dmuc-etcd",
            "--user",
            "apiserver=dmuc-apiserver",
        ])
        .args(["--user", "controller-manager=dmuc-controller-manager"])
        .args(["--user", "scheduler=dmuc-scheduler"])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    // etcd answers only certificates of its own CA: the API server's etcd client, not a
    // client certificate of the cluster CA.
    let etcd_health = |cert: &str| {
        let pki = state.join("pki");
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .args([
                "--endpoints",
                "https://127.0.0.1:2379",
                "--dial-timeout",
                "3s",
            ])
            .arg("--cacert")
            .arg(pki.join("etcd-ca.crt"))
            .arg("--cert")
            .arg(pki.join(format!("{cert}.crt")))
            .arg("--key")
            .arg(pki.join(format!("{cert}.key")))
            .args(["endpoint", "health"])
            .output()
            .unwrap()
            .status
            .success()
    };
    assert!(etcd_health("apiserver-etcd-client"));
    assert!(!etcd_health("apiserver-kubelet-client"));

    // A Deployment of the imported web image, Running and serving through its Service.
    let web = work.path().join("web.yaml");
    std::fs::write(&web, web_manifest(2)).unwrap();
    k.ok(&["apply", "-f", web.to_str().unwrap()]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    let ip = k.ok(&["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let svc = format!("{}:80", ip.trim());
    let body = wait_for("the Service to answer through kube-proxy", T, || {
        http_get(&svc)
    });
    assert!(body.contains("hello from busybox-httpd"), "{body}");

    // kubectl logs (the API server reaches the kubelet) and exec (from inside a pod, the
    // Service again).
    let pod = k.ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[0].metadata.name}",
    ]);
    let pod = pod.trim().to_string();
    let from_pod = k.ok(&[
        "exec",
        &pod,
        "--",
        "wget",
        "-qO-",
        &format!("http://{svc}/"),
    ]);
    assert!(from_pod.contains("hello from busybox-httpd"), "{from_pod}");
    let logs = wait_for("the pod's access log in kubectl logs", T, || {
        let (ok, l) = k.run(&["logs", &pod]);
        (ok && l.contains("response:200")).then_some(l)
    });
    assert!(logs.contains("response:200"), "{logs}");

    // A bootstrap token for a joining node: its Secret, cluster-info signed with it by the
    // controller manager, a join command naming the node's address (not loopback) and the
    // CA's pin; and the token authenticates as a bootstrapper.
    let o = Command::new(bin_dir().join("dmucctl"))
        .args(["token", "create", "--ttl", "10m", "--kubeconfig"])
        .arg(&k.kubeconfig)
        .output()
        .unwrap();
    let join = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(
        o.status.success(),
        "token create: {join}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let words: Vec<&str> = join.split_whitespace().collect();
    assert_eq!(&words[..3], ["dmucctl", "join", "--server"], "{join}");
    assert!(!words[3].contains("127.0.0.1"), "{join}");
    let token = words[5];
    let (id, _) = token.split_once('.').unwrap();
    assert!(
        words[7].starts_with("sha256:") && words[7].len() == 71,
        "{join}"
    );
    k.ok(&[
        "-n",
        "kube-system",
        "get",
        "secret",
        &format!("bootstrap-token-{id}"),
    ]);
    assert!(
        k.signed_by(id),
        "cluster-info is not signed with token {id}"
    );

    // dmucctl join on a new node's state: a wrong pin is refused and writes nothing...
    let joined = work.path().join("joined");
    let join = |token: &str, hash: &str, extra: &[&str]| {
        let o = Command::new(bin_dir().join("dmucctl"))
            .args([
                "join",
                "--server",
                words[3],
                "--token",
                token,
                "--ca-cert-hash",
                hash,
            ])
            .arg("--state")
            .arg(&joined)
            .args(extra)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    let wrong = format!("sha256:{}", "0".repeat(64));
    let (ok, said) = join(token, &wrong, &[]);
    assert!(
        !ok && said.contains(&wrong) && said.contains(words[7]),
        "{said}"
    );
    assert!(
        said.contains("nothing was written") && !joined.exists(),
        "{said}"
    );
    // ... the pinned CA gives the CA and two kubeconfigs: the kubelet's bootstrap one logs
    // in as the bootstrapper, kube-proxy's as its service account, which may watch Nodes.
    let (ok, said) = join(token, words[7], &[]);
    assert!(ok, "{said}");
    assert_eq!(
        std::fs::read(joined.join("pki/ca.crt")).unwrap(),
        std::fs::read(state.join("pki/ca.crt")).unwrap()
    );
    let as_bootstrapper = Kubectl {
        prog: k.prog.clone(),
        kubeconfig: joined.join("pki/bootstrap-kubelet.kubeconfig"),
    };
    let who = k.identity_of(&as_bootstrapper.kubeconfig);
    assert!(
        who.contains(&format!("system:bootstrap:{id}"))
            && who.contains("system:bootstrappers:dmuc:default-node-token"),
        "{who}"
    );
    let as_proxy = Kubectl {
        prog: k.prog.clone(),
        kubeconfig: joined.join("pki/kube-proxy.kubeconfig"),
    };
    let who = k.identity_of(&as_proxy.kubeconfig);
    assert!(
        who.starts_with("system:serviceaccount:kube-system:kube-proxy "),
        "{who}"
    );
    assert!(as_proxy.ok(&["get", "nodes", "-o", "name"]).contains(&node));
    // Joined already: refused without --force.
    let (ok, said) = join(token, words[7], &[]);
    assert!(!ok && said.contains("joined already"), "{said}");
    // token list shows the token; token delete takes it away, and a join with it is refused.
    let tool = |args: &[&str]| {
        let o = Command::new(bin_dir().join("dmucctl"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&k.kubeconfig)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let listed = tool(&["token", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&format!("{id}  ")) && l.contains("authentication,signing")),
        "{listed}"
    );
    assert!(tool(&["token", "delete", token]).contains(&format!("deleted token {id}")));
    assert!(!tool(&["token", "list"]).contains(id));
    wait_for(
        "the signer to drop the deleted token's signature",
        T,
        || (!k.signed_by(id)).then_some(()),
    );
    let (ok, said) = join(token, words[7], &["--force"]);
    assert!(
        !ok && said.contains(&format!("does not know token {id}")),
        "{said}"
    );

    // An expired token: once the token cleaner has removed it (and the signer its
    // signature), a join with it is refused and writes nothing.
    let short = tool(&["token", "create", "--ttl", "5s"])
        .split_whitespace()
        .nth(5)
        .unwrap()
        .to_string();
    let short_id = short.split_once('.').unwrap().0.to_string();
    wait_for("the token cleaner to remove the expired token", T, || {
        let (gone, _) = k.run(&[
            "-n",
            "kube-system",
            "get",
            "secret",
            &format!("bootstrap-token-{short_id}"),
        ]);
        (!gone && !k.signed_by(&short_id)).then_some(())
    });
    std::fs::remove_dir_all(&joined).unwrap();
    let (ok, said) = join(&short, words[7], &[]);
    assert!(
        !ok && said.contains(&format!("does not know token {short_id}")),
        "{said}"
    );
    assert!(!joined.exists(), "{said}");

    // The routes component: a Node that comes gets a route to its pod subnet via its
    // InternalIP (here the default gateway: an on-link address), and loses it when it goes.
    let gw = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-4", "route", "show", "default"])
            .output()
            .unwrap()
            .stdout,
    )
    .split_whitespace()
    .nth(2)
    .unwrap_or_else(|| panic!("the real-cluster test needs a default route"))
    .to_string();
    let ghost = work.path().join("ghost.yaml");
    std::fs::write(
        &ghost,
        format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: dmuc-ghost}}\nstatus:\n  addresses: [{{type: InternalIP, address: {gw}}}]\n"
        ),
    )
    .unwrap();
    k.ok(&["create", "-f", ghost.to_str().unwrap()]);
    let cidr = wait_for("the ghost node's pod subnet", T, || {
        let c = k.ok(&[
            "get",
            "node",
            "dmuc-ghost",
            "-o",
            "jsonpath={.spec.podCIDR}",
        ]);
        (!c.trim().is_empty()).then(|| c.trim().to_string())
    });
    let ours = || {
        let o = Command::new("ip")
            .args(["-4", "route", "show", "proto", "211"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    wait_for("the route to the ghost's pod subnet", T, || {
        ours().contains(&format!("{cidr} via {gw} ")).then_some(())
    });
    let window = d.ctl_ok(&["logs", "routes"]);
    assert!(
        window.contains(&format!("{cidr} via {gw} (node dmuc-ghost)")),
        "{window}"
    );
    k.ok(&["delete", "node", "dmuc-ghost"]);
    wait_for("the ghost's route to go", T, || {
        (!ours().contains(&cidr)).then_some(())
    });

    // csr-approve: a serving certificate request by the node for its own name and address
    // is approved (and signed); one for an address the node does not have stays pending.
    let node_ip = k.ok(&[
        "get",
        "node",
        &node,
        "-o",
        "jsonpath={.status.addresses[?(@.type==\"InternalIP\")].address}",
    ]);
    let as_node = Kubectl {
        prog: k.prog.clone(),
        kubeconfig: state.join("pki/kubelet.kubeconfig"),
    };
    for (name, ip) in [
        ("dmuc-own", node_ip.trim()),
        ("dmuc-foreign", "198.18.0.99"),
    ] {
        let (key, req) = (
            work.path().join(format!("{name}.key")),
            work.path().join(format!("{name}.csr")),
        );
        let o = Command::new("openssl")
            .args([
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
            ])
            .args(["-subj", &format!("/O=system:nodes/CN=system:node:{node}")])
            .args(["-addext", &format!("subjectAltName=IP:{ip},DNS:{node}")])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&req)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let b64 = base64_of(&std::fs::read(&req).unwrap());
        let obj = work.path().join(format!("{name}.yaml"));
        std::fs::write(
            &obj,
            format!(
                "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {{name: {name}}}\nspec:\n  request: {b64}\n  signerName: kubernetes.io/kubelet-serving\n  usages: [digital signature, key encipherment, server auth]\n"
            ),
        )
        .unwrap();
        as_node.ok(&["create", "-f", obj.to_str().unwrap()]);
    }
    wait_for("the node's own serving certificate to be signed", T, || {
        let c = k.ok(&[
            "get",
            "csr",
            "dmuc-own",
            "-o",
            "jsonpath={.status.certificate}",
        ]);
        (!c.trim().is_empty()).then_some(())
    });
    let window = wait_for("csr-approve to leave the foreign request", T, || {
        let w = d.ctl_ok(&["logs", "csr-approve"]);
        w.contains("left dmuc-foreign pending: 198.18.0.99 is not an address")
            .then_some(w)
    });
    assert!(
        window.contains(&format!(
            "approved dmuc-own: node {node}'s serving certificate"
        )),
        "{window}"
    );
    let cond = k.ok(&[
        "get",
        "csr",
        "dmuc-foreign",
        "-o",
        "jsonpath={.status.conditions}",
    ]);
    assert!(cond.trim().is_empty(), "{cond}");
    k.ok(&["delete", "csr", "dmuc-own", "dmuc-foreign"]);

    // Scaling to 4: the tutorial's probability chain (1/4, 1/3, 1/2, then the last).
    k.ok(&["scale", "deployment/web", "--replicas=4"]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    assert_eq!(k.pods().len(), 4);
    wait_for("kube-proxy's 4-endpoint chain", T, || {
        let o = Command::new("iptables-save")
            .args(["-t", "nat"])
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&o.stdout).into_owned();
        (s.contains("--probability 0.25000000000")
            && s.contains("--probability 0.33333333349")
            && s.contains("--probability 0.50000000000"))
        .then_some(())
    });
    let pods = k.pods();

    // kill -9 of the kubelet, then of the API server: dmucd starts each again in its
    // window, and no pod is recreated or restarted.
    for name in ["kubelet", "kube-apiserver"] {
        let before = d.comp(name).unwrap();
        let pid = before["pid"].as_u64().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let after = wait_for(&format!("{name} to be back"), T, || {
            let c = d.comp(name)?;
            (c["state"] == "ready" && c["pid"].as_u64()? != pid).then_some(c)
        });
        assert_eq!(after["restarts"], 1, "{name}: {after}");
        assert_eq!(after["window"], before["window"], "{name} changed windows");
        assert_eq!(after["last_exit"], "killed by SIGKILL", "{after}");
        wait_for("the node to be Ready again", T, || {
            k.node_ready(&node).then_some(())
        });
        assert_eq!(k.pods(), pods, "pods changed after kill -9 of {name}");
        wait_for("the Service to answer again", T, || http_get(&svc));
    }

    // An edit of the kubelet's section of node-config, then reload: node-config runs again
    // and the kubelet (and what else reads its files) starts again after it, on the new file;
    // the pods are untouched.
    let graph = d.path("graph.toml");
    let edited = std::fs::read_to_string(&graph).unwrap().replace(
        "clusterDomain: cluster.local\n",
        "clusterDomain: cluster.local\nmaxPods: 42\n",
    );
    std::fs::write(&graph, edited).unwrap();
    let kubelet_pid = d.comp("kubelet").unwrap()["pid"].as_u64().unwrap();
    let seq = d.last_seq().unwrap();
    let plan = d.ctl_ok(&["reload"]);
    assert!(
        plan.contains("~ node-config") && plan.contains("~ kubelet"),
        "{plan}"
    );
    wait_for("the kubelet to start again", T, || {
        let c = d.comp("kubelet")?;
        (c["state"] == "ready" && c["pid"].as_u64()? != kubelet_pid).then_some(())
    });
    let ev: Vec<serde_json::Value> = d
        .events()
        .into_iter()
        .filter(|e| e["seq"].as_u64() > Some(seq))
        .collect();
    assert!(
        seq_of(&ev, "kubelet", "starting") > seq_of(&ev, "node-config", "completed"),
        "the kubelet started again before node-config completed"
    );
    let yaml = std::fs::read_to_string(state.join("config/kubelet.yaml")).unwrap();
    assert!(yaml.contains("maxPods: 42"), "{yaml}");
    wait_for("the node to report the new capacity", T, || {
        let (_, p) = k.run(&[
            "get",
            "node",
            &node,
            "-o",
            "jsonpath={.status.capacity.pods}",
        ]);
        (p.trim() == "42").then_some(())
    });
    wait_for("the node to be Ready after the reload", T, || {
        k.node_ready(&node).then_some(())
    });
    assert_eq!(k.pods(), pods, "pods changed across the reload");

    // kill -9 of dmucd: the next one adopts every component with its PID, and keeps what it
    // knew of each: start time, restarts, last exit.
    let before: Vec<serde_json::Value> = d.status().unwrap()["components"]
        .as_array()
        .unwrap()
        .clone();
    d.crash();
    d.restart();
    let adopted = all_ready(&d, &services, "every service adopted and ready");
    for name in services {
        let was = before.iter().find(|c| c["name"] == name).unwrap();
        let now = adopted.iter().find(|c| c["name"] == name).unwrap();
        assert_eq!(now["pid"], was["pid"], "{name} was not adopted: {now}");
        assert_eq!(now["restarts"], was["restarts"], "{name}'s restarts: {now}");
        assert_eq!(
            now["last_exit"], was["last_exit"],
            "{name}'s last exit: {now}"
        );
        let (was_up, now_up) = (
            was["uptime_ms"].as_u64().unwrap(),
            now["uptime_ms"].as_u64().unwrap(),
        );
        // Within the precision of the two clocks: the kernel's start time is in 10 ms ticks,
        // and a run's uptime counts from dmucd's launch, a few ms before the exec.
        assert!(
            now_up + 100 >= was_up,
            "{name}'s uptime went back from {was_up} ms to {now_up} ms"
        );
    }
    assert_eq!(k.pods(), pods, "pods changed across the adoption");
    assert!(http_get(&svc).is_some(), "the Service stopped answering");

    // kill -9 of dmucd's tmux server, then of dmucd and its tmux server together: tmux is
    // the view, not the parent. No component restarts, each gets a window again that shows
    // its live output, and the logs go on meanwhile without a gap.
    let kubelet_log = d.path("log/kubelet.log");
    for with_dmucd in [false, true] {
        let what = if with_dmucd {
            "dmucd and its tmux server"
        } else {
            "the tmux server"
        };
        let before = all_ready(&d, &services, "every service ready");
        let logs: Vec<Vec<u8>> = services
            .iter()
            .map(|n| std::fs::read(d.path(&format!("log/{n}.log"))).unwrap())
            .collect();
        let (victim, others) = {
            let p = k.pod_names();
            (p[0].clone(), p[1..].to_vec())
        };
        if with_dmucd {
            d.crash();
        }
        d.kill_tmux_server();
        // Something for the kubelet to log while no window exists.
        k.ok(&["delete", "pod", &victim, "--wait=false"]);
        if with_dmucd {
            d.restart();
        }
        for name in services {
            wait_for(
                &format!("{name}'s window back after kill -9 of {what}"),
                T,
                || {
                    // With its history: the log's last lines may scroll the banner off.
                    let target = format!("=dmuc:={name}");
                    let text = d.tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", &target]);
                    text.contains("kept running").then_some(())
                },
            );
        }
        let after = all_ready(&d, &services, "every service ready again");
        for name in services {
            let was = before.iter().find(|c| c["name"] == name).unwrap();
            let now = after.iter().find(|c| c["name"] == name).unwrap();
            assert_eq!(
                now["pid"], was["pid"],
                "{name} restarted after kill -9 of {what}: {now}"
            );
            assert_eq!(now["restarts"], was["restarts"], "{name}: {now}");
        }
        k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
        let pods_now = k.pod_names();
        assert!(
            others.iter().all(|p| pods_now.contains(p)),
            "pods changed after kill -9 of {what}: {others:?} -> {pods_now:?}"
        );
        wait_for("the Service to answer", T, || http_get(&svc));
        // The kubelet's window shows what it logs from now on.
        let at = std::fs::metadata(&kubelet_log).unwrap().len() as usize;
        let second = pods_now[0].clone();
        k.ok(&["delete", "pod", &second, "--wait=false"]);
        wait_for("the kubelet's window to show its live output", T, || {
            let text = d.tmux(&[
                "capture-pane",
                "-p",
                "-J",
                "-S",
                "-",
                "-t",
                "=dmuc:=kubelet",
            ]);
            let live = text
                .split("live output continues here:")
                .nth(1)?
                .to_string();
            let log = std::fs::read(&kubelet_log).ok()?;
            let new = String::from_utf8_lossy(log.get(at..)?).into_owned();
            new.lines()
                .filter(|l| l.len() > 40)
                .any(|l| live.contains(&l[..40]))
                .then_some(())
        });
        k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
        for p in [&victim, &second] {
            k.run(&[
                "wait",
                "--for=delete",
                &format!("pod/{p}"),
                "--timeout=120s",
            ]);
        }
        // No gap: each log is what it was, and more (the same file, written on throughout).
        for (name, old) in services.iter().zip(&logs) {
            let now = std::fs::read(d.path(&format!("log/{name}.log"))).unwrap();
            assert!(
                now.len() >= old.len() && now[..old.len()] == old[..],
                "{name}'s log lost what it had across kill -9 of {what}"
            );
        }
        let kubelet_before = &logs[services.iter().position(|n| *n == "kubelet").unwrap()];
        let kubelet_now = std::fs::read(&kubelet_log).unwrap();
        assert!(
            String::from_utf8_lossy(&kubelet_now[kubelet_before.len()..]).contains(&victim),
            "the kubelet's log has nothing of the pod deleted after kill -9 of {what}"
        );
    }
    all_ready(&d, &services, "every service ready");

    // etcd backup and restore: the Deployment deleted after the backup is back and serves
    // again, the one created after it is gone; containerd, which does not use etcd, runs on.
    let snap = work.path().join("backups/etcd.db");
    let said = d.ctl_ok(&["backup", snap.to_str().unwrap()]);
    assert!(said.contains("saved"), "{said}");
    k.ok(&["delete", "deployment", "web", "--wait=false"]);
    k.ok(&[
        "create",
        "deployment",
        "later",
        "--image=docker.io/library/busybox-httpd:local",
    ]);
    k.ok(&["rollout", "status", "deployment/later", "--timeout=180s"]);
    // Whatever answers for `web` after the restore is the restored Deployment's.
    wait_for("the deleted Deployment's pods to be gone", T, || {
        k.web_pods("{.metadata.name}").is_empty().then_some(())
    });
    let containerd = d.comp("containerd").unwrap()["pid"].clone();
    let plan = d.ctl_ok(&["restore", "--dry-run", snap.to_str().unwrap()]);
    assert!(
        plan.contains(
            "stop, in order:  kube-proxy, cni-config, csr-approve, routes, kubelet, \
             kube-scheduler, kube-controller-manager, kube-apiserver, etcd"
        ),
        "{plan}"
    );
    assert!(
        k.run(&["get", "deployment", "later"]).0,
        "the dry run restored"
    );
    let done = d.ctl_ok(&["restore", "--yes", snap.to_str().unwrap()]);
    assert!(done.contains("started etcd, kube-apiserver"), "{done}");
    all_ready(&d, &services, "every service ready after the restore");
    assert_eq!(d.comp("containerd").unwrap()["pid"], containerd);
    wait_for("the Deployment of after the backup to be gone", T, || {
        let (found, _) = k.run(&["get", "deployment", "later"]);
        (!found).then_some(())
    });
    k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    wait_for("the node to be Ready after the restore", T, || {
        k.node_ready(&node).then_some(())
    });
    wait_for("the restored Deployment's Service to answer", T, || {
        http_get(&svc)
    });
    let adopted = all_ready(&d, &services, "every service ready");

    // Ordered shutdown, then reset: nothing of the cluster stays on the host.
    let pids: Vec<u32> = adopted
        .iter()
        .filter_map(|c| c["pid"].as_u64().map(|p| p as u32))
        .collect();
    d.ctl_ok(&["shutdown"]);
    assert_eq!(
        d.wait_exit(Duration::from_secs(120)),
        Some(0),
        "{}",
        d.stderr()
    );
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived the shutdown");
    }
    let o = reset.run();
    assert!(
        o.status.success(),
        "dmucctl reset: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let left = leftovers(&bin, &state, containerd_socket);
    assert!(left.is_empty(), "the cluster left:\n{}", left.join("\n"));
}

/// Standard base64 (for the objects the test writes).
fn base64_of(b: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &x)| n | u32::from(x) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= c.len() {
                A[(n >> (18 - 6 * i)) as usize & 63] as char
            } else {
                '='
            });
        }
    }
    out
}
