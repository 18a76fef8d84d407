//! dmucctl without a daemon: usage errors, an unreachable socket, the offline commands.
//! (Having this file also makes `cargo test --workspace` build the dmucctl binary that the
//! end-to-end tests in tests/ drive.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

use dmuc_tests::output_of_fresh;

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

/// Copies dmucctl-full into `dir` (alone, or beside a stand-in `dmucctl-tools`).
fn full_in(dir: &std::path::Path) -> std::path::PathBuf {
    let full = dir.join("dmucctl-full");
    std::fs::copy(env!("CARGO_BIN_EXE_dmucctl-full"), &full).unwrap();
    full
}

#[test]
fn the_tools_are_handed_to_dmucctl_tools_with_the_same_command_line() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let full = full_in(dir.path());
    let tools = dir.path().join("dmucctl-tools");
    std::fs::write(&tools, "#!/bin/sh\necho \"$0|$*\"\nexit 5\n").unwrap();
    std::fs::set_permissions(&tools, std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [
        &["pki", "check", "--dir", "/x y"][..],
        &["--socket", "/s", "reset", "--yes"],
        &["doctor", "--no-ports"],
        &["fetch", "--etcd", "v3.6.5"],
    ] {
        let o = output_of_fresh(Command::new(&full).args(args).env("PATH", "/nonexistent"));
        assert_eq!(o.status.code(), Some(5), "{args:?}: the tools' exit code");
        let out = String::from_utf8_lossy(&o.stdout);
        let (argv0, rest) = out.trim_end().split_once('|').unwrap();
        // sh's $0 is the script; what matters is that the arguments arrive as they were.
        assert!(argv0.ends_with("dmucctl-tools"), "{argv0}");
        assert_eq!(rest, args.join(" "));
    }
    // The daemon verbs are not handed over.
    let o = output_of_fresh(
        Command::new(&full)
            .args(["--socket", "/nonexistent.sock", "status"])
            .env("PATH", "/nonexistent"),
    );
    assert_eq!(o.status.code(), Some(3), "status is dmucctl-full's own");
}

#[test]
fn without_dmucctl_tools_the_tools_say_what_to_install() {
    let dir = tempfile::tempdir().unwrap();
    let full = full_in(dir.path());
    let o = output_of_fresh(
        Command::new(&full)
            .args(["pki", "check", "--dir", "/x"])
            .env("PATH", "/nonexistent"),
    );
    assert_eq!(o.status.code(), Some(127));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("dmucctl-tools") && err.contains("hint:"),
        "{err}"
    );
}
