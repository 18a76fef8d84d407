//! Opt-in: a real single-node cluster from the Kubernetes binaries the user fetched. Ignored by
//! default (the binaries cannot be downloaded where CI runs); docs/tutorial.md §5 says how to
//! run it: `DMUC_K8S_BIN=/usr/local/bin cargo test -p dmuc-tests real_cluster -- --ignored`.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const T: Duration = Duration::from_secs(240);

fn kubectl(kubeconfig: &str, args: &[&str]) -> (bool, String) {
    let o = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

#[test]
#[ignore = "needs the Kubernetes server binaries: set DMUC_K8S_BIN (docs/tutorial.md §5)"]
fn real_cluster_node_ready_pod_running_service_answering_then_reset_leaves_it_clean() {
    let bin = std::env::var("DMUC_K8S_BIN").expect(
        "DMUC_K8S_BIN: the directory with kube-apiserver, kubelet, etcd, containerd, runc ...",
    );
    let cni = std::env::var("DMUC_CNI_BIN").unwrap_or_else(|_| "/opt/cni/bin".into());
    let image = std::env::var("DMUC_TEST_IMAGE")
        .unwrap_or_else(|_| "docker.io/library/nginx:latest".into());
    let _ports = fixed_ports();
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let images =
        std::env::var("DMUC_IMAGES").unwrap_or_else(|_| state.join("images").display().to_string());
    let profile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/cluster.toml");
    let toml = std::fs::read_to_string(&profile).unwrap();
    let vars = [
        format!("bin={bin}"),
        format!("cni-bin={cni}"),
        format!("state={}", state.display()),
        format!("images={images}"),
    ];
    let mut args: Vec<&str> = Vec::new();
    for v in &vars {
        args.extend(["--var", v.as_str()]);
    }
    let mut d = Daemon::start_with(tempfile::tempdir().unwrap(), &toml, &args);
    for name in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
    ] {
        d.wait_state(name, "ready", T);
    }
    let kc = state.join("pki/admin.kubeconfig").display().to_string();
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_lowercase();
    wait_for("the node to be Ready", T, || {
        let (_, s) = kubectl(
            &kc,
            &[
                "get",
                "node",
                &node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        );
        (s.trim() == "True").then_some(())
    });
    let (ok, out) = kubectl(
        &kc,
        &[
            "run",
            "web",
            "--image",
            &image,
            "--image-pull-policy=Never",
            "--port=80",
        ],
    );
    assert!(ok, "{out}");
    wait_for("the pod to run", T, || {
        let (_, s) = kubectl(
            &kc,
            &["get", "pod", "web", "-o", "jsonpath={.status.phase}"],
        );
        (s.trim() == "Running").then_some(())
    });
    let (ok, out) = kubectl(&kc, &["expose", "pod", "web", "--port=80"]);
    assert!(ok, "{out}");
    let (_, ip) = kubectl(
        &kc,
        &["get", "svc", "web", "-o", "jsonpath={.spec.clusterIP}"],
    );
    let ip = ip.trim().to_string();
    wait_for("the Service to answer", T, || {
        let mut s = std::net::TcpStream::connect_timeout(
            &format!("{ip}:80").parse().ok()?,
            Duration::from_secs(2),
        )
        .ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
        let mut reply = String::new();
        let _ = s.read_to_string(&mut reply);
        reply.starts_with("HTTP/1.").then_some(())
    });
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());

    let o = Command::new(bin_dir().join("dmucctl"))
        .args(["reset", "--yes", "--config", profile.to_str().unwrap()])
        .args(["--var", &vars[2], "--socket", d.socket().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!state.exists() || std::fs::read_dir(&state).unwrap().next().is_none());
    assert!(
        !std::path::Path::new("/sys/class/net/cni0").exists(),
        "cni0 left"
    );
    assert!(
        !std::path::Path::new("/var/lib/kubelet").exists(),
        "/var/lib/kubelet left"
    );
    let nat = Command::new("iptables")
        .args(["-t", "nat", "-S"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&nat.stdout).contains("KUBE-"),
        "KUBE- chains left"
    );
}
