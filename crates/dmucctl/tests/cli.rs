//! dmucctl without a daemon: usage errors, an unreachable socket, the offline commands.
//! (Having this file also makes `cargo test --workspace` build the dmucctl binary that the
//! end-to-end tests in tests/ drive.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn ctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dmucctl-full"))
        .args(args)
        .env_remove("DMUC_SOCKET")
        .output()
        .unwrap()
}

#[test]
fn usage_errors_exit_2() {
    assert_eq!(ctl(&["frobnicate"]).status.code(), Some(2));
    assert_eq!(ctl(&["start"]).status.code(), Some(2), "start needs a name");
    assert_eq!(
        ctl(&["restart", "a", "--timeout", "soon"]).status.code(),
        Some(2)
    );
}

#[test]
fn an_unreachable_daemon_exits_3_naming_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("none.sock");
    let o = ctl(&["--socket", sock.to_str().unwrap(), "status"]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(sock.to_str().unwrap()) && err.contains("hint:"),
        "{err}"
    );
    // DMUC_SOCKET works the same way.
    let o = Command::new(env!("CARGO_BIN_EXE_dmucctl-full"))
        .arg("status")
        .env("DMUC_SOCKET", &sock)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&o.stderr).contains(sock.to_str().unwrap()));
    // version still answers for the client.
    let o = ctl(&["--socket", sock.to_str().unwrap(), "version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).contains("not reachable"));
}

#[test]
fn completions_and_man_page_come_from_the_cli_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let o = ctl(&["completions", shell]);
        assert!(o.status.success(), "{shell}");
        let text = String::from_utf8_lossy(&o.stdout);
        assert!(
            text.contains("restart") && text.contains("attach"),
            "{shell}"
        );
    }
    let man = String::from_utf8_lossy(&ctl(&["man"]).stdout).into_owned();
    assert!(
        man.contains(".TH dmucctl") && man.contains("shutdown"),
        "{man}"
    );
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
        let mut c = Command::new(env!("CARGO_BIN_EXE_dmucctl-full"))
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
