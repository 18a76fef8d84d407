use super::*;
use crate::machine::{Input, ProbeRole, Request};
use crate::state::ExitStatus;
use crate::testkit::H;

const G: &str = r#"
[component.db]
command = ["db"]
ready = { tcp = "127.0.0.1:1" }
[component.api]
command = ["api"]
after = ["db"]
[component.web]
command = ["web"]
after = ["api"]
"#;

/// Boots and brings every component up (db ready, api and web running).
fn up() -> H {
    let mut h = H::new(G);
    h.feed(Input::Boot);
    h.started("db", 10);
    h.probe("db", ProbeRole::Ready, true);
    h.started("api", 11);
    h.started("web", 12);
    assert_eq!(h.state("web"), "running");
    h
}

fn wait(h: &H, kind: WaitKind, names: &[&str]) -> (Wait, Vec<usize>) {
    let comps: Vec<usize> = names.iter().map(|n| h.i(n)).collect();
    (Wait::new(kind, &comps, &h.s), comps)
}

#[test]
fn stop_waits_for_dependents_too() {
    let mut h = up();
    let (w, comps) = wait(&h, WaitKind::Stop, &["api"]);
    assert!(w.watches(h.i("web")) && w.watches(h.i("api")) && !w.watches(h.i("db")));
    h.feed(Input::Request(Request::Stop(comps)));
    assert_eq!(w.verdict(&h.s), Verdict::Pending);
    h.exited(
        "web",
        ExitStatus::Signal {
            signal: 15,
            core: false,
        },
    );
    assert_eq!(w.verdict(&h.s), Verdict::Pending, "api still stopping");
    h.exited("api", ExitStatus::Code(0));
    assert_eq!(w.verdict(&h.s), Verdict::Done);
}

#[test]
fn start_waits_for_dependencies_ready() {
    let mut h = up();
    h.feed(Input::Request(Request::Stop(vec![h.i("db")])));
    h.exited("web", ExitStatus::Code(0));
    h.exited("api", ExitStatus::Code(0));
    h.exited("db", ExitStatus::Code(0));
    let (w, comps) = wait(&h, WaitKind::Start, &["api"]);
    assert!(!w.watches(h.i("web")));
    h.feed(Input::Request(Request::Start(comps)));
    assert_eq!(w.verdict(&h.s), Verdict::Pending);
    h.started("db", 20);
    assert_eq!(w.verdict(&h.s), Verdict::Pending, "db not ready yet");
    h.probe("db", ProbeRole::Ready, true);
    h.started("api", 21);
    assert_eq!(w.verdict(&h.s), Verdict::Done);
}

#[test]
fn start_of_a_running_component_is_done_at_once() {
    let h = up();
    let (w, _) = wait(&h, WaitKind::Start, &["web"]);
    assert_eq!(w.verdict(&h.s), Verdict::Done);
}

#[test]
fn restart_needs_a_new_run() {
    let mut h = up();
    let (w, comps) = wait(&h, WaitKind::Restart, &["web"]);
    h.feed(Input::Request(Request::Restart(comps)));
    assert_eq!(w.verdict(&h.s), Verdict::Pending, "web is stopping");
    h.exited(
        "web",
        ExitStatus::Signal {
            signal: 15,
            core: false,
        },
    );
    assert_eq!(
        w.verdict(&h.s),
        Verdict::Pending,
        "new run launched, no PID yet"
    );
    h.started("web", 30);
    assert_eq!(w.verdict(&h.s), Verdict::Done);
}

#[test]
fn a_crash_of_the_new_run_fails_the_wait() {
    let mut h = up();
    let (w, comps) = wait(&h, WaitKind::Restart, &["web"]);
    h.feed(Input::Request(Request::Restart(comps)));
    h.exited("web", ExitStatus::Code(0));
    h.exited("web", ExitStatus::Code(3));
    match w.verdict(&h.s) {
        Verdict::Failed(m) => assert!(m.contains("web") && m.contains("exit status 3"), "{m}"),
        v => panic!("{v:?} in state {}", h.state("web")),
    }
}

#[test]
fn a_stop_during_a_start_fails_the_wait() {
    let mut h = up();
    h.feed(Input::Request(Request::Stop(vec![h.i("web")])));
    h.exited("web", ExitStatus::Code(0));
    let (w, comps) = wait(&h, WaitKind::Start, &["web"]);
    h.feed(Input::Request(Request::Start(comps)));
    h.feed(Input::Request(Request::Stop(vec![h.i("web")])));
    h.exited("web", ExitStatus::Code(0));
    match w.verdict(&h.s) {
        Verdict::Failed(m) => assert!(m.contains("stopped"), "{m}"),
        v => panic!("{v:?} in state {}", h.state("web")),
    }
}

const ONESHOT: &str = r#"
[component.cfg]
kind = "oneshot"
command = ["write"]
"#;

#[test]
fn start_and_restart_of_a_oneshot_wait_for_its_completion() {
    for kind in [WaitKind::Start, WaitKind::Restart] {
        let mut h = H::new(ONESHOT);
        if kind == WaitKind::Start {
            h.s.hold(); // as `dmucd --hold`: nothing started yet
            h.feed(Input::Boot);
        } else {
            h.feed(Input::Boot);
            h.started("cfg", 10);
            h.exited("cfg", ExitStatus::Code(0));
        }
        let (w, comps) = wait(&h, kind, &["cfg"]);
        let req = match kind {
            WaitKind::Start => Request::Start(comps),
            _ => Request::Restart(comps),
        };
        h.feed(Input::Request(req));
        assert_eq!(w.verdict(&h.s), Verdict::Pending, "{kind:?}: launched");
        h.started("cfg", 11);
        assert_eq!(h.state("cfg"), "running");
        assert_eq!(
            w.verdict(&h.s),
            Verdict::Pending,
            "{kind:?}: running is not done"
        );
        h.exited("cfg", ExitStatus::Code(0));
        assert_eq!(w.verdict(&h.s), Verdict::Done, "{kind:?}");
    }
}

#[test]
fn a_oneshot_that_fails_fails_the_start_with_its_exit_status() {
    let mut h = H::new(ONESHOT);
    h.feed(Input::Boot);
    h.started("cfg", 10);
    h.exited("cfg", ExitStatus::Code(0));
    let (w, comps) = wait(&h, WaitKind::Restart, &["cfg"]);
    h.feed(Input::Request(Request::Restart(comps)));
    h.started("cfg", 11);
    h.exited("cfg", ExitStatus::Code(3));
    match w.verdict(&h.s) {
        Verdict::Failed(why) => assert!(why.contains("exit status 3"), "{why}"),
        v => panic!("{v:?}"),
    }
}
