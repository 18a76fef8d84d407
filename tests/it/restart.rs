//! Exit statuses, restarts, backoff, start limit, liveness.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn exact_exit_status_and_kill9_restarts_in_the_same_window() {
    let s = standin();
    let toml = format!(
        r#"
[component.three]
command = ["{s}", "--name", "three", "--exit", "--exit-code", "3"]
restart = "never"
[component.victim]
command = ["{s}", "--name", "victim"]
backoff = {{ initial = "0s" }}
"#
    );
    let mut d = Daemon::start(&toml);
    let three = d.wait_state("three", "failed", T);
    assert_eq!(three["last_exit"], "exit status 3");
    let ev = d
        .event(|e| e["component"] == "three" && e["event"] == "exit")
        .unwrap();
    assert_eq!(ev["code"], 3);

    d.wait_state("victim", "running", T);
    let deadline = std::time::Instant::now() + T;
    let v = loop {
        if let Some(c) = d.comp("victim").filter(|c| c["window"].is_string()) {
            break c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "victim has no window: {:?}\n{}",
            d.status(),
            d.stderr()
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let (pid, window) = (v["pid"].as_u64().unwrap() as u32, v["window"].clone());
    kill(Pid::from_raw(pid as i32), Signal::SIGKILL).unwrap();
    let v2 = wait_for("a new victim pid", T, || {
        let c = d.comp("victim")?;
        (c["state"] == "running" && c["pid"].as_u64()? as u32 != pid).then_some(c)
    });
    assert_eq!(v2["restarts"], 1);
    assert_eq!(v2["window"], window, "respawned in the same window");
    let ev = d
        .event(|e| e["component"] == "victim" && e["event"] == "exit")
        .unwrap();
    assert_eq!(ev["signal"], 9);
    assert_eq!(ev["pid"], pid);
    assert!(!alive(pid));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn backoff_is_honoured_and_start_limit_fails() {
    let s = standin();
    let toml = format!(
        r#"
[component.flappy]
command = ["{s}", "--name", "flappy", "--exit", "--exit-code", "1"]
backoff = {{ initial = "300ms", factor = 1.0 }}
start-limit = {{ burst = 4, interval = "1m" }}
"#
    );
    let mut d = Daemon::start(&toml);
    let f = d.wait_state("flappy", "failed", T);
    assert!(
        f["reason"]
            .as_str()
            .unwrap()
            .contains("start limit hit: 4 starts"),
        "{f}"
    );
    let starts: Vec<u64> = d
        .events()
        .iter()
        .filter(|e| e["component"] == "flappy" && e["event"] == "state" && e["to"] == "starting")
        .map(|e| e["ts_us"].as_u64().unwrap() / 1000)
        .collect();
    // Its window says why it stays down and what starts it again (README's demo scheduler).
    let said = "[dmuc] flappy failed: start limit hit: 4 starts within 60s; `dmucctl start flappy` tries again";
    wait_for("the give-up in flappy's window", T, || {
        d.tmux(&["capture-pane", "-p", "-J", "-t", "=dmuc:=flappy"])
            .contains(said)
            .then_some(())
    });
    assert_eq!(starts.len(), 4, "exactly burst starts: {starts:?}");
    for w in starts.windows(2) {
        assert!(
            w[1] - w[0] >= 290,
            "restart came {}ms after the previous start, backoff is 300ms",
            w[1] - w[0]
        );
    }
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn liveness_failure_restarts() {
    let s = standin();
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("alive");
    std::fs::write(&flag, "").unwrap();
    let toml = format!(
        r#"
[component.app]
command = ["{s}", "--name", "app"]
backoff = {{ initial = "0s" }}
liveness = {{ file = "{}", interval = "50ms", failure-threshold = 2 }}
"#,
        flag.display()
    );
    let mut d = Daemon::start(&toml);
    let a = d.wait_state("app", "running", T);
    let pid = a["pid"].as_u64().unwrap();
    std::fs::remove_file(&flag).unwrap();
    wait_for("a stop caused by the liveness probe", T, || {
        d.event(|e| {
            e["component"] == "app"
                && e["to"] == "stopping"
                && e["reason"] == "liveness probe failed"
        })
    });
    std::fs::write(&flag, "").unwrap();
    let a2 = wait_for("app restarted", T, || {
        let c = d.comp("app")?;
        (c["state"] == "running" && c["pid"].as_u64()? != pid).then_some(c)
    });
    assert_eq!(a2["restarts"], 1);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn start_and_restart_of_a_oneshot_return_when_it_has_completed_with_its_exit_status() {
    let work = tempfile::tempdir().unwrap();
    let count = work.path().join("count");
    // The oneshot takes a while on purpose (its work, not the test's synchronisation): a
    // restart that returned at `running` would read the old count.
    let toml = format!(
        r#"
[component.write]
kind = "oneshot"
command = ["sh", "-c", "n=$(cat {c} 2>/dev/null || echo 0); sleep 0.3; echo $((n+1)) > {c}"]
[component.bad]
kind = "oneshot"
restart = "never"
command = ["sh", "-c", "exit 3"]
"#,
        c = count.display()
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("write", "completed", T);
    d.wait_state("bad", "failed", T);
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "1");
    d.ctl_ok(&["restart", "write"]);
    assert_eq!(
        std::fs::read_to_string(&count).unwrap().trim(),
        "2",
        "restart returned before the oneshot completed"
    );
    d.ctl_ok(&["stop", "write"]);
    d.ctl_ok(&["start", "write"]);
    assert_eq!(std::fs::read_to_string(&count).unwrap().trim(), "3");
    for verb in ["restart", "start"] {
        let o = d.ctl(&[verb, "bad"]);
        assert!(!o.status.success(), "{verb} of a failing oneshot succeeded");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains("exit status 3"), "{verb}: {err}");
    }
    assert_eq!(d.stop(), Some(0));
}
