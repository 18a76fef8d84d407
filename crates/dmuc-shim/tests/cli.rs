//! The shim's command line (and this makes `cargo test` build the binary the end-to-end
//! tests use).

#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn usage_errors_exit_2() {
    let st = Command::new(env!("CARGO_BIN_EXE_dmuc-shim"))
        .arg("--bogus")
        .status();
    assert_eq!(st.ok().and_then(|s| s.code()), Some(2));
}

#[test]
fn unreadable_spec_exits_127() {
    let st = Command::new(env!("CARGO_BIN_EXE_dmuc-shim"))
        .args(["--spec", "/nonexistent/spec.json", "--run", "1"])
        .status();
    assert_eq!(st.ok().and_then(|s| s.code()), Some(127));
}

#[test]
fn idle_holds_until_a_terminating_signal() {
    use std::os::unix::process::ExitStatusExt;
    let mut c = Command::new(env!("CARGO_BIN_EXE_dmuc-shim"))
        .args(["--idle", "--banner"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The banner is written before it waits: reading it is the sign it is idle.
    let mut first = [0u8; 5];
    std::io::Read::read_exact(c.stderr.as_mut().unwrap(), &mut first).unwrap();
    assert_eq!(&first, b"dmuc:");
    assert!(c.try_wait().unwrap().is_none(), "still holding the window");
    nix_kill(c.id(), 15);
    assert_eq!(c.wait().unwrap().signal(), Some(15));
    let st = Command::new(env!("CARGO_BIN_EXE_dmuc-shim"))
        .args(["--idle", "--bogus"])
        .status();
    assert_eq!(st.ok().and_then(|s| s.code()), Some(2));
}

fn nix_kill(pid: u32, sig: i32) {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn idle_ends_when_its_output_goes_away() {
    // A pipe stands in for the pane's tty: closing the reading end is its hangup.
    let mut c = Command::new(env!("CARGO_BIN_EXE_dmuc-shim"))
        .arg("--idle")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(c.stdout.take());
    // Bounded: a shim that missed the hangup would wait forever.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(st) = c.try_wait().unwrap() {
            break Some(st);
        }
        if std::time::Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(5)); // poll interval, bounded above
    };
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "still idle after its tty went away"
    );
}
