//! dmucctl without a daemon: usage errors, an unreachable socket, the offline commands.
//! (Having this file also makes `cargo test --workspace` build the dmucctl binary that the
//! end-to-end tests in tests/ drive.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn ctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dmucctl"))
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
    let o = Command::new(env!("CARGO_BIN_EXE_dmucctl"))
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
