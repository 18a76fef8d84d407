//! The tools' program on its own: `reset` and `doctor` on a private root.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn ctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dmucctl-tools"))
        .args(args)
        .env_remove("DMUC_SOCKET")
        .output()
        .unwrap()
}

#[test]
fn reset_asks_first_and_says_what_it_removed() {
    use std::io::Write;
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    for p in [
        "var/lib/dmuc/etcd/db",
        "var/lib/dmuc/pki/ca.crt",
        "var/lib/kubelet/x",
        "run/containerd/s",
    ] {
        std::fs::create_dir_all(r.join(p).parent().unwrap()).unwrap();
        std::fs::write(r.join(p), "x").unwrap();
    }
    let sock = r.join("no.sock");
    let run = |answer: &str, extra: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_dmucctl-tools"))
            .args([
                "--socket",
                sock.to_str().unwrap(),
                "reset",
                "--root",
                r.to_str().unwrap(),
            ])
            .args(extra)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(answer.as_bytes())
            .unwrap();
        c.wait_with_output().unwrap()
    };
    let o = run("n\n", &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("var/lib/kubelet"),
        "{o:?}"
    );
    assert!(
        r.join("var/lib/kubelet/x").exists(),
        "removed without a yes"
    );
    let o = run("y\n", &["--keep-pki"]);
    assert!(o.status.success(), "{o:?}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("removed") && out.contains("var/lib/dmuc/etcd"),
        "{out}"
    );
    assert!(!r.join("var/lib/kubelet").exists() && !r.join("run/containerd").exists());
    assert!(r.join("var/lib/dmuc/pki/ca.crt").exists(), "--keep-pki");
    let o = run("", &["--yes"]);
    assert!(o.status.success());
    assert!(!r.join("var/lib/dmuc/pki").exists());
    assert!(String::from_utf8_lossy(&run("", &["--yes"]).stdout).contains("nothing to remove"));
}

#[test]
fn doctor_fails_with_fixes_on_an_empty_host() {
    let root = tempfile::tempdir().unwrap();
    let o = ctl(&[
        "doctor",
        "--root",
        root.path().to_str().unwrap(),
        "--no-ports",
        "--var",
        "node-ip=10.0.0.5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("FAIL  kube-apiserver binary"), "{out}");
    assert!(out.contains("fix: modprobe br_netfilter"), "{out}");
    assert!(out.contains("ok    node address"), "{out}");
}
