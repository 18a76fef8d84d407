//! systemd integration without systemd: the readiness protocol against a datagram socket the
//! test reads, and the shipped unit file through `systemd-analyze verify`.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::*;

const T: Duration = Duration::from_secs(20);

fn next(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = sock
        .recv(&mut buf)
        .expect("a notification within the read timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_after_the_graph_settled_status_watchdog_and_stopping() {
    let s = standin();
    let toml = format!(
        r#"
[component.db]
command = ["{s}", "--name", "db", "--ready-after", "300ms", "--port", "{port}"]
ready = {{ http = "http://127.0.0.1:{port}/health", interval = "50ms" }}
[component.app]
command = ["sh", "-c", "echo NOTIFY=$${{NOTIFY_SOCKET:-unset}} WATCHDOG=$${{WATCHDOG_USEC:-unset}}; exec sleep 3600"]
after = ["db"]
"#,
        port = free_port()
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let p = path.display().to_string();
    let mut d = Daemon::start_env(
        tempfile::tempdir().unwrap(),
        &toml,
        &[],
        &[("NOTIFY_SOCKET", &p), ("WATCHDOG_USEC", "400000")],
    );
    // Messages until READY=1: STATUS lines on the way; READY only when both are up.
    let mut seen = Vec::new();
    let ready = loop {
        let m = next(&sock);
        if m.contains("READY=1") {
            break m;
        }
        seen.push(m);
    };
    assert!(ready.contains("STATUS=2/2 up"), "{ready} after {seen:?}");
    assert!(
        seen.iter()
            .any(|m| m.starts_with("STATUS=") && m.contains("db")),
        "{seen:?}"
    );
    assert_eq!(d.comp("app").unwrap()["state"], "running");
    // Watchdog pings, at about half the interval.
    let t0 = Instant::now();
    let mut pings = 0;
    while pings < 3 {
        if next(&sock) == "WATCHDOG=1" {
            pings += 1;
        }
    }
    assert!(t0.elapsed() < Duration::from_secs(5));
    // The components did not inherit systemd's variables.
    assert!(
        d.log("app").contains("NOTIFY=unset WATCHDOG=unset"),
        "{}",
        d.log("app")
    );
    // SIGTERM: STOPPING=1 first.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let stopping = loop {
        let m = next(&sock);
        if m.contains("STOPPING=1") {
            break m;
        }
    };
    assert!(stopping.contains("STATUS=stopping"), "{stopping}");
    assert_eq!(d.wait_exit(T), Some(0));
}

#[test]
fn notify_ready_socket_is_sent_at_once() {
    let toml = "[daemon]\nnotify-ready = \"socket\"\n[component.slow]\ncommand = [\"sleep\", \"3600\"]\nready = { file = \"/nonexistent/never\" }\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let p = path.display().to_string();
    let mut d = Daemon::start_env(
        tempfile::tempdir().unwrap(),
        toml,
        &[],
        &[("NOTIFY_SOCKET", &p)],
    );
    let first = loop {
        let m = next(&sock);
        if m.contains("READY=1") {
            break m;
        }
    };
    assert!(
        first.contains("0/1 up"),
        "ready before the component: {first}"
    );
    assert_eq!(d.stop(), Some(0));
}

/// A component whose ready probe never passes (kube-proxy 1.20's, on a real node) does not
/// keep the unit activating until systemd fails it: after notify-ready-timeout READY=1 goes,
/// STATUS= names what is not up, and the event log says so.
#[test]
fn ready_goes_after_the_timeout_naming_what_is_not_up() {
    let toml = "[daemon]\nnotify-ready-timeout = \"1500ms\"\n[component.up]\ncommand = [\"sleep\", \"3600\"]\n[component.never]\ncommand = [\"sleep\", \"3600\"]\nready = { file = \"/nonexistent/never\", interval = \"100ms\" }\n";
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(T)).unwrap();
    let p = path.display().to_string();
    let t0 = Instant::now();
    let mut d = Daemon::start_env(
        tempfile::tempdir().unwrap(),
        toml,
        &[],
        &[("NOTIFY_SOCKET", &p)],
    );
    let ready = loop {
        let m = next(&sock);
        if m.contains("READY=1") {
            break m;
        }
    };
    assert!(
        t0.elapsed() >= Duration::from_millis(1500),
        "READY=1 before the timeout"
    );
    assert!(
        ready.contains("STATUS=1/2 up") && ready.contains("never"),
        "{ready}"
    );
    let said = wait_for("the event saying so", T, || {
        d.event(|e| {
            e["event"] == "daemon"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("notify-ready-timeout"))
        })
    });
    assert!(
        said["message"].as_str().unwrap().contains("never"),
        "{said}"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../systemd/dmucd.service");
    // verify checks that ExecStart programs exist: point them at this build.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("/usr/bin/", &format!("{}/", bin_dir().display()));
    let copy = dir.path().join("dmucd.service");
    std::fs::write(&copy, text).unwrap();
    let o = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&copy)
        .output()
        .expect("systemd-analyze (package systemd) is needed");
    let err = String::from_utf8_lossy(&o.stderr);
    // Outside a booted systemd, verify still parses the unit and reports problems in it.
    let ours: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("dmucd.service"))
        .collect();
    assert!(o.status.success() && ours.is_empty(), "{err}");
}
