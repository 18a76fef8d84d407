//! Ordered stop, SIGKILL escalation, process-group stop, nothing left behind.

use std::time::Duration;

use crate::util::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn shutdown_in_reverse_order_escalates_and_leaves_nothing() {
    let s = standin();
    let toml = format!(
        r#"
[component.base]
command = ["{s}", "--name", "base"]
[component.stubborn]
command = ["{s}", "--name", "stubborn", "--ignore-term"]
after = ["base"]
stop = {{ timeout = "500ms" }}
[component.forker]
command = ["{s}", "--name", "forker", "--fork-child"]
after = ["base"]
"#
    );
    let mut d = Daemon::start(&toml);
    let base = d.wait_state("base", "running", T);
    let stubborn = d.wait_state("stubborn", "running", T);
    let forker = d.wait_state("forker", "running", T);
    let grandchild: u32 = wait_for("the grandchild's pid in forker's log", T, || {
        let log = d.log("forker");
        let line = log
            .lines()
            .find(|l| l.contains("grandchild pid"))?
            .to_string();
        line.rsplit(' ').next()?.parse().ok()
    });
    d.track(grandchild);
    assert!(alive(grandchild));
    let pids: Vec<u32> = [&base, &stubborn, &forker]
        .iter()
        .map(|c| c["pid"].as_u64().unwrap() as u32)
        .collect();

    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    let ev = d.events();
    let stop_of = |n: &str| {
        ev.iter()
            .position(|e| e["component"] == n && e["to"] == "stopping")
            .unwrap()
    };
    let exit_of = |n: &str| {
        ev.iter()
            .position(|e| e["component"] == n && e["event"] == "exit")
            .unwrap()
    };
    assert!(
        stop_of("base") > exit_of("stubborn"),
        "base stopped before its dependent stubborn had exited"
    );
    assert!(
        stop_of("base") > exit_of("forker"),
        "base stopped before its dependent forker had exited"
    );
    let e = &ev[exit_of("stubborn")];
    assert_eq!(e["signal"], 9, "SIGTERM was ignored, so SIGKILL: {e}");
    assert!(ev.iter().any(|e| e["component"] == "stubborn"
        && e["reason"].as_str().is_some_and(|r| r.contains("SIGKILL"))));
    for pid in pids {
        assert!(
            !alive(pid),
            "component pid {pid} still alive after shutdown"
        );
    }
    assert!(
        !alive(grandchild),
        "the grandchild {grandchild} survived the process-group stop"
    );
    assert!(
        !d.tmux_alive(),
        "the tmux server is still running after shutdown"
    );
}

#[test]
fn process_scope_stop_spares_the_group() {
    let s = standin();
    let toml = format!(
        r#"
[component.runtime]
command = ["{s}", "--name", "runtime", "--fork-child"]
stop = {{ scope = "process" }}
"#
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("runtime", "running", T);
    let grandchild: u32 = wait_for("the grandchild's pid", T, || {
        let log = d.log("runtime");
        log.lines()
            .find(|l| l.contains("grandchild pid"))?
            .rsplit(' ')
            .next()?
            .parse()
            .ok()
    });
    d.track(grandchild);
    assert_eq!(d.stop(), Some(0));
    assert!(
        alive(grandchild),
        "scope = process must not signal the rest of the group (containerd's shims)"
    );
}
