//! Another architecture's dmuc-shim and dmucctl front, run under qemu-user inside the real
//! stack (this machine's dmucd and tmux): programs start, their exact exit status comes back,
//! a signal to the shim reaches the program, the log file is written, and the front answers
//! `status` as the native one does.
//!
//! Needs `DMUC_CROSS_DIR`, which names the other target's build directory (for instance
//! `target/aarch64-unknown-linux-gnu/debug`) and `DMUC_CROSS_RUNNER` the emulator
//! (`qemu-aarch64`); `.ci/run` builds for aarch64 and sets both. Without them the test is
//! skipped (said and counted), and under CI=true it fails.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::*;

/// The other architecture's build directory and its emulator, when the run asks for them.
fn cross() -> Option<(PathBuf, String)> {
    let Some(dir) = std::env::var_os("DMUC_CROSS_DIR") else {
        dmuc_tests::skip_unless(
            "cross::the_other_architectures_shim_and_front_work_under_emulation",
            &[
                "DMUC_CROSS_DIR (the aarch64 build directory: .ci/run builds it and sets it)"
                    .into(),
            ],
        );
        return None;
    };
    let runner = std::env::var("DMUC_CROSS_RUNNER").unwrap_or_else(|_| "qemu-aarch64".into());
    let dir = std::fs::canonicalize(&dir)
        .unwrap_or_else(|e| panic!("DMUC_CROSS_DIR {}: {e}", PathBuf::from(&dir).display()));
    for b in ["dmuc-shim", "dmucctl"] {
        assert!(
            dir.join(b).is_file(),
            "{} is not built",
            dir.join(b).display()
        );
    }
    Some((dir, runner))
}

/// The parent of `pid` (from /proc).
fn parent_of(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = stat.rsplit(')').next().unwrap();
    after.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn the_other_architectures_shim_and_front_work_under_emulation() {
    let Some((cross, runner)) = cross() else {
        return;
    };
    // A dmucd whose `dmuc-shim` (found beside it) is the other architecture's, emulated.
    let bin = tempfile::tempdir().unwrap();
    let dmucd = bin.path().join("dmucd");
    std::fs::copy(bin_dir().join("dmucd"), &dmucd).unwrap();
    let shim = bin.path().join("dmuc-shim");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\nexec {runner} {} \"$@\"\n",
            cross.join("dmuc-shim").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Once the copy has run, no child forked meanwhile by another test holds it open for
    // writing any more: the daemon's exec of it cannot meet ETXTBSY.
    dmuc_tests::output_of_fresh(Command::new(&dmucd).arg("--version"));
    let mut d = Daemon::start_exe(
        dmucd,
        r#"
[component.once]
kind = "oneshot"
command = ["sh", "-c", "echo from the emulated shim; exit 3"]

[component.svc]
command = ["sh", "-c", "trap 'echo got TERM; exit 7' TERM; echo ready; sleep 1000 & wait"]
restart = "never"
ready = { log = "^ready$" }
"#,
    );
    let t = Duration::from_secs(60);
    let once = d.wait_state("once", "failed", t);
    assert_eq!(once["last_exit"], "exit status 3", "{once}");
    assert!(d.log("once").contains("from the emulated shim"));

    let svc = d.wait_state("svc", "ready", t);
    let pid = svc["pid"].as_u64().unwrap() as u32;
    d.track(pid);
    // The program's parent is the shim, and the shim is the emulated one.
    let parent = parent_of(pid);
    let exe = std::fs::read_link(format!("/proc/{parent}/exe")).unwrap();
    assert!(
        exe.display().to_string().contains(&runner),
        "the shim runs as {}",
        exe.display()
    );
    // A signal to the shim is forwarded to the program, whose exact end is reported.
    kill(Pid::from_raw(parent as i32), Signal::SIGTERM).unwrap();
    let svc = d.wait_state("svc", "failed", t);
    assert_eq!(svc["last_exit"], "exit status 7", "{svc}");
    let log = d.log("svc");
    assert!(log.contains("ready") && log.contains("got TERM"), "{log}");

    // The emulated front answers `status` itself, as the native front does.
    let front = |prog: &mut Command| {
        prog.arg("--socket")
            .arg(d.socket())
            .arg("status")
            .env("NO_COLOR", "1")
            .env_remove("DMUC_SOCKET")
            .output()
            .unwrap()
    };
    let emulated = front(Command::new(&runner).arg(cross.join("dmucctl")));
    let native = front(&mut Command::new(bin_dir().join("dmucctl")));
    let text = String::from_utf8_lossy(&emulated.stdout);
    assert_eq!(emulated.status.code(), native.status.code(), "{text}");
    let first = |o: &[u8]| {
        String::from_utf8_lossy(o)
            .lines()
            .next()
            .map(str::to_string)
    };
    assert_eq!(first(&emulated.stdout), first(&native.stdout));
    for (name, state) in [("once", "failed"), ("svc", "failed")] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([name, state])),
            "{text}"
        );
    }
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
}
