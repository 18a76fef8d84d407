//! Table-style tests of the state machine against recorded effects (the "fake backend").

use super::*;
use crate::testkit::H;

const CLUSTER: &str = r#"
[component.etcd]
command = ["etcd"]
ready = { tcp = "127.0.0.1:2379" }
[component.certs]
kind = "oneshot"
command = ["mkcerts"]
[component.api]
command = ["api"]
after = ["etcd", { component = "certs", condition = "completed" }]
ready = { tcp = "127.0.0.1:6443" }
[component.sched]
command = ["sched"]
after = ["api"]
[component.ctrl]
command = ["ctrl"]
after = [{ component = "api", condition = "started" }]
"#;

#[test]
fn boot_starts_roots_concurrently_then_follows_conditions() {
    let mut h = H::new(CLUSTER);
    let fx = h.feed(Input::Boot);
    assert_eq!(h.launched(&fx), vec!["etcd", "certs"]);
    assert!(fx.contains(&Effect::StartProbe {
        comp: 0,
        run: 1,
        role: ProbeRole::Ready
    }));
    assert_eq!(h.state("api"), "pending");
    assert!(
        h.reason("api").contains("waiting for etcd to be ready"),
        "{}",
        h.reason("api")
    );

    // etcd has a PID but is not ready: api still waits.
    let fx = h.started("etcd", 100);
    assert!(h.launched(&fx).is_empty());
    assert_eq!(h.state("etcd"), "starting");
    // etcd ready, certs not completed: api waits for certs.
    let fx = h.probe("etcd", ProbeRole::Ready, true);
    assert!(h.launched(&fx).is_empty());
    assert_eq!(h.state("etcd"), "ready");
    assert!(
        h.reason("api")
            .contains("waiting for certs to be completed"),
        "{}",
        h.reason("api")
    );
    // certs running (started) does not satisfy completed.
    h.started("certs", 101);
    assert_eq!(h.state("certs"), "running");
    assert_eq!(h.state("api"), "pending");
    let fx = h.exited("certs", ExitStatus::Code(0));
    assert_eq!(h.state("certs"), "completed");
    assert_eq!(h.launched(&fx), vec!["api"]);
    // ctrl needs api started (PID known), sched needs api ready.
    let fx = h.started("api", 102);
    assert!(h.launched(&fx).contains(&"ctrl".to_string()));
    assert_eq!(h.state("sched"), "pending");
    let fx = h.probe("api", ProbeRole::Ready, true);
    assert_eq!(h.launched(&fx), vec!["sched"]);
}

#[test]
fn no_probe_means_running_after_pid() {
    let mut h =
        H::new("[component.a]\ncommand=[\"a\"]\n[component.b]\ncommand=[\"b\"]\nafter=[\"a\"]\n");
    let fx = h.feed(Input::Boot);
    assert_eq!(h.launched(&fx), vec!["a"]);
    assert_eq!(h.state("a"), "starting");
    let fx = h.started("a", 10);
    assert_eq!(h.state("a"), "running");
    assert_eq!(h.launched(&fx), vec!["b"]);
}

#[test]
fn exit_status_and_policies() {
    // (restart policy, kind, exit status, expected state)
    let cases = [
        ("always", "service", ExitStatus::Code(0), "backoff"),
        ("always", "service", ExitStatus::Code(3), "backoff"),
        ("on-failure", "service", ExitStatus::Code(0), "exited"),
        (
            "on-failure",
            "service",
            ExitStatus::Signal {
                signal: 9,
                core: false,
            },
            "backoff",
        ),
        ("never", "service", ExitStatus::Code(3), "failed"),
        ("never", "service", ExitStatus::Code(0), "exited"),
        ("never", "oneshot", ExitStatus::Code(0), "completed"),
        ("never", "oneshot", ExitStatus::Code(1), "failed"),
        ("on-failure", "oneshot", ExitStatus::Code(1), "backoff"),
        ("always", "oneshot", ExitStatus::Code(0), "completed"),
    ];
    for (restart, kind, status, want) in cases {
        let mut h = H::new(&format!(
            "[component.a]\ncommand=[\"a\"]\nkind=\"{kind}\"\nrestart=\"{restart}\"\n"
        ));
        h.feed(Input::Boot);
        h.started("a", 1);
        h.exited("a", status.clone());
        assert_eq!(
            h.state("a"),
            want,
            "restart={restart} kind={kind} status={status}"
        );
        assert_eq!(h.s.unit(0).last_exit, Some(status));
    }
}

#[test]
fn backoff_grows_and_timer_relaunches() {
    let mut h = H::new(
        "[component.a]\ncommand=[\"a\"]\nbackoff={initial=\"100ms\", max=\"350ms\", factor=2.0}\nstart-limit={burst=100, interval=\"1s\"}\n",
    );
    h.feed(Input::Boot);
    let mut delays = Vec::new();
    for _ in 0..4 {
        h.started("a", 1);
        let fx = h.exited("a", ExitStatus::Code(1));
        let (comp, token, at) = H::timer(&fx).expect("a timer");
        delays.push(at - h.now);
        assert_eq!(h.state("a"), "backoff");
        // A stale token does nothing.
        assert!(
            h.feed(Input::Timer {
                comp,
                token: token - 1
            })
            .is_empty()
        );
        h.now = at;
        let fx = h.feed(Input::Timer { comp, token });
        assert_eq!(h.launched(&fx), vec!["a"]);
    }
    let ms: Vec<u128> = delays.iter().map(|d| d.as_millis()).collect();
    assert_eq!(ms, vec![100, 200, 350, 350]);
    assert_eq!(h.s.unit(0).restarts, 4);
}

#[test]
fn backoff_resets_after_a_stable_run() {
    let mut h = H::new(
        "[component.a]\ncommand=[\"a\"]\nbackoff={initial=\"1s\", max=\"1m\", reset-after=\"10s\"}\n",
    );
    h.feed(Input::Boot);
    h.started("a", 1);
    let fx = h.exited("a", ExitStatus::Code(1));
    let (comp, token, at) = H::timer(&fx).unwrap();
    h.now = at;
    h.feed(Input::Timer { comp, token });
    h.started("a", 2);
    h.now = at + Duration::from_secs(11);
    let fx = h.exited("a", ExitStatus::Code(1));
    let (_, _, at2) = H::timer(&fx).unwrap();
    assert_eq!(
        at2 - h.now,
        Duration::from_secs(1),
        "a stable run resets the delay"
    );
}

#[test]
fn zero_backoff_relaunches_at_once_and_start_limit_fails() {
    let mut h = H::new(
        "[component.a]\ncommand=[\"a\"]\nbackoff={initial=\"0s\"}\nstart-limit={burst=3, interval=\"10s\"}\n[component.b]\ncommand=[\"b\"]\nafter=[\"a\"]\n",
    );
    h.feed(Input::Boot); // start 1
    h.started("a", 1);
    h.started("b", 2);
    for n in 2..=3 {
        h.at(n * 10);
        let fx = h.exited(
            "a",
            ExitStatus::Signal {
                signal: 9,
                core: false,
            },
        );
        assert_eq!(h.launched(&fx), vec!["a"], "start {n} is immediate");
        h.started("a", n as u32);
    }
    h.at(40);
    h.exited("a", ExitStatus::Code(1));
    assert_eq!(h.state("a"), "failed");
    assert!(
        h.reason("a")
            .contains("start limit hit: 3 starts within 10s"),
        "{}",
        h.reason("a")
    );
    // b keeps running (it already started); a start request clears the limit.
    assert_eq!(h.state("b"), "running");
    let fx = h.feed(Input::Request(Request::Start(vec![0])));
    assert_eq!(h.launched(&fx), vec!["a"]);
}

#[test]
fn starts_outside_the_window_do_not_count() {
    let mut h = H::new(
        "[component.a]\ncommand=[\"a\"]\nbackoff={initial=\"0s\"}\nstart-limit={burst=2, interval=\"1s\"}\n",
    );
    h.feed(Input::Boot);
    for n in 1..=5u64 {
        h.at(n * 1000);
        let fx = h.exited("a", ExitStatus::Code(1));
        assert_eq!(h.launched(&fx), vec!["a"], "restart {n}");
    }
}

#[test]
fn failed_dependency_leaves_dependents_pending_with_reason() {
    let mut h = H::new(
        "[component.a]\ncommand=[\"a\"]\nrestart=\"never\"\n[component.b]\ncommand=[\"b\"]\nafter=[\"a\"]\n",
    );
    h.feed(Input::Boot);
    h.exited("a", ExitStatus::Code(2));
    assert_eq!(h.state("a"), "failed");
    assert_eq!(h.state("b"), "pending");
    assert!(
        h.reason("b").contains("dependency a failed: exit status 2"),
        "{}",
        h.reason("b")
    );
}

#[test]
fn shutdown_stops_in_reverse_order_and_escalates() {
    let mut h = H::new(
        "[component.a]\ncommand=[\"a\"]\n[component.b]\ncommand=[\"b\"]\nafter=[\"a\"]\nstop={signal=\"SIGINT\", timeout=\"2s\"}\n[component.c]\ncommand=[\"c\"]\nafter=[\"b\"]\n",
    );
    h.feed(Input::Boot);
    h.started("a", 1);
    h.started("b", 2);
    h.started("c", 3);
    let fx = h.feed(Input::Request(Request::Shutdown));
    assert_eq!(
        h.signals(&fx),
        vec![("c".into(), 3, 15)],
        "only the leaf first"
    );
    let fx = h.exited(
        "c",
        ExitStatus::Signal {
            signal: 15,
            core: false,
        },
    );
    assert_eq!(h.state("c"), "stopped");
    assert_eq!(
        h.signals(&fx),
        vec![("b".into(), 2, 2)],
        "then b, with its own signal"
    );
    let (comp, token, at) = H::timer(&fx).unwrap();
    assert_eq!(at - h.now, Duration::from_secs(2));
    h.now = at;
    let fx = h.feed(Input::Timer { comp, token });
    assert_eq!(
        h.signals(&fx),
        vec![("b".into(), 2, 9)],
        "escalation to SIGKILL"
    );
    assert!(!h.s.all_down());
    let fx = h.exited(
        "b",
        ExitStatus::Signal {
            signal: 9,
            core: false,
        },
    );
    assert_eq!(h.signals(&fx), vec![("a".into(), 1, 15)]);
    h.exited("a", ExitStatus::Code(0));
    assert!(h.s.all_down());
    assert_eq!(h.state("a"), "stopped");
}

#[test]
fn stop_before_pid_is_known_signals_when_it_arrives() {
    let mut h = H::new("[component.a]\ncommand=[\"a\"]\n");
    h.feed(Input::Boot);
    let fx = h.feed(Input::Request(Request::Shutdown));
    assert!(h.signals(&fx).is_empty());
    assert_eq!(h.state("a"), "stopping");
    let fx = h.started("a", 77);
    assert_eq!(h.signals(&fx), vec![("a".into(), 77, 15)]);
}

#[test]
fn stop_takes_dependents_and_start_takes_dependencies() {
    let mut h =
        H::new("[component.a]\ncommand=[\"a\"]\n[component.b]\ncommand=[\"b\"]\nafter=[\"a\"]\n");
    h.feed(Input::Boot);
    h.started("a", 1);
    h.started("b", 2);
    let fx = h.feed(Input::Request(Request::Stop(vec![0])));
    assert_eq!(h.signals(&fx), vec![("b".into(), 2, 15)]);
    h.exited(
        "b",
        ExitStatus::Signal {
            signal: 15,
            core: false,
        },
    );
    h.exited(
        "a",
        ExitStatus::Signal {
            signal: 15,
            core: false,
        },
    );
    assert_eq!((h.state("a"), h.state("b")), ("stopped", "stopped"));
    let fx = h.feed(Input::Request(Request::Start(vec![1])));
    assert_eq!(h.launched(&fx), vec!["a"], "b's dependency first");
    assert_eq!(h.state("b"), "pending");
    let fx = h.started("a", 3);
    assert_eq!(h.launched(&fx), vec!["b"]);
}

#[test]
fn start_keeps_a_completed_oneshot_dependency_but_reruns_a_named_one() {
    let mut h = H::new(CLUSTER);
    h.feed(Input::Boot);
    h.exited("certs", ExitStatus::Code(0));
    assert_eq!(h.state("certs"), "completed");
    h.feed(Input::Request(Request::Stop(vec![h.i("api")])));
    let fx = h.feed(Input::Request(Request::Start(vec![h.i("api")])));
    assert!(!h.launched(&fx).contains(&"certs".to_string()));
    assert_eq!(h.state("certs"), "completed");
    let fx = h.feed(Input::Request(Request::Start(vec![h.i("certs")])));
    assert_eq!(
        h.launched(&fx),
        vec!["certs"],
        "asked for by name: run again"
    );
}

#[test]
fn operator_restarts_do_not_hit_the_start_limit() {
    let mut h =
        H::new("[component.a]\ncommand=[\"a\"]\nstart-limit = { burst = 2, interval = \"1m\" }\n");
    h.feed(Input::Boot);
    for pid in 1..10 {
        h.started("a", pid);
        h.feed(Input::Request(Request::Restart(vec![0])));
        h.exited(
            "a",
            ExitStatus::Signal {
                signal: 15,
                core: false,
            },
        );
        assert_eq!(h.state("a"), "starting", "restart {pid}");
    }
}

#[test]
fn restart_request_relaunches_without_counting_a_failure() {
    let mut h = H::new("[component.a]\ncommand=[\"a\"]\n");
    h.feed(Input::Boot);
    h.started("a", 1);
    let fx = h.feed(Input::Request(Request::Restart(vec![0])));
    assert_eq!(h.signals(&fx), vec![("a".into(), 1, 15)]);
    let fx = h.exited(
        "a",
        ExitStatus::Signal {
            signal: 15,
            core: false,
        },
    );
    assert_eq!(h.launched(&fx), vec!["a"]);
    assert_eq!(h.run("a"), 2);
    assert_eq!(h.s.unit(0).restarts, 0);
}

#[test]
fn liveness_failure_restarts() {
    let mut h = H::new(
        "[component.a]\ncommand=[\"a\"]\nbackoff={initial=\"0s\"}\nliveness={exec=[\"check\"]}\n",
    );
    h.feed(Input::Boot);
    let fx = h.started("a", 5);
    assert!(fx.contains(&Effect::StartProbe {
        comp: 0,
        run: 1,
        role: ProbeRole::Liveness
    }));
    let fx = h.probe("a", ProbeRole::Liveness, false);
    assert_eq!(h.signals(&fx), vec![("a".into(), 5, 15)]);
    let fx = h.exited(
        "a",
        ExitStatus::Signal {
            signal: 15,
            core: false,
        },
    );
    assert_eq!(h.launched(&fx), vec!["a"]);
    assert_eq!(h.s.unit(0).restarts, 1);
}

#[test]
fn stale_facts_are_ignored() {
    let mut h = H::new("[component.a]\ncommand=[\"a\"]\nbackoff={initial=\"0s\"}\n");
    h.feed(Input::Boot);
    h.started("a", 5);
    h.exited("a", ExitStatus::Code(1)); // run 2 launched
    let fx = h.feed(Input::Exited {
        comp: 0,
        run: 1,
        status: ExitStatus::Code(1),
    });
    assert!(fx.is_empty());
    assert!(
        h.feed(Input::Probe {
            comp: 0,
            run: 1,
            role: ProbeRole::Ready,
            ok: true
        })
        .is_empty()
    );
    assert_eq!(h.state("a"), "starting");
}

#[test]
fn every_transition_emits_an_event() {
    let mut h = H::new("[component.a]\ncommand=[\"a\"]\nready={tcp=\"h:1\"}\n");
    let fx = h.feed(Input::Boot);
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Event(Event::State {
            from: dmuc_proto::State::Pending,
            to: dmuc_proto::State::Starting,
            ..
        })
    )));
    let fx = h.probe("a", ProbeRole::Ready, true);
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Event(Event::State {
            from: dmuc_proto::State::Starting,
            to: dmuc_proto::State::Ready,
            ..
        })
    )));
    let fx = h.exited("a", ExitStatus::Code(4));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Event(Event::Exit {
            status: ExitStatus::Code(4),
            ..
        })
    )));
    assert!(fx.iter().any(|e| matches!(
        e,
        Effect::Event(Event::State {
            from: dmuc_proto::State::Ready,
            to: dmuc_proto::State::Backoff,
            ..
        })
    )));
}

#[test]
fn hold_starts_nothing_until_asked_then_brings_dependencies() {
    let mut h = H::new(CLUSTER);
    h.s.hold();
    let fx = h.feed(Input::Boot);
    assert!(h.launched(&fx).is_empty());
    assert_eq!(h.state("etcd"), "stopped");
    assert!(h.s.all_down());
    let fx = h.feed(Input::Request(Request::Start(vec![h.i("api")])));
    assert_eq!(
        h.launched(&fx),
        vec!["etcd", "certs"],
        "api's dependencies first"
    );
    assert_eq!(h.state("sched"), "stopped", "not asked for");
}

#[test]
fn a_start_brings_what_is_wanted_by_it_after_it_and_nothing_else() {
    // The tutorial's step by step: `start kubelet` brings the CNI config that follows it
    // (wanted-by), which waits for the kubelet as its `after` says; `start api` its helper.
    let mut h = H::new(
        r#"
[component.api]
command = ["api"]
ready = { tcp = "127.0.0.1:6443" }
[component.approver]
command = ["approve"]
after = ["api"]
wanted-by = ["api"]
[component.kubelet]
command = ["kubelet"]
after = ["api"]
ready = { tcp = "127.0.0.1:10248" }
[component.cni]
kind = "oneshot"
command = ["cni"]
after = ["kubelet"]
wanted-by = ["kubelet"]
[component.proxy]
command = ["proxy"]
after = ["kubelet"]
"#,
    );
    h.s.hold();
    h.feed(Input::Boot);
    let fx = h.feed(Input::Request(Request::Start(vec![h.i("api")])));
    assert_eq!(h.launched(&fx), vec!["api"]);
    assert_eq!(h.state("approver"), "pending", "wanted by api's start");
    assert_eq!(h.state("kubelet"), "stopped", "not asked for");
    h.started("api", 1);
    let fx = h.probe("api", ProbeRole::Ready, true);
    assert_eq!(h.launched(&fx), vec!["approver"]);
    let fx = h.feed(Input::Request(Request::Start(vec![h.i("kubelet")])));
    assert_eq!(h.launched(&fx), vec!["kubelet"]);
    assert_eq!(h.state("cni"), "pending");
    h.started("kubelet", 2);
    let fx = h.probe("kubelet", ProbeRole::Ready, true);
    assert_eq!(
        h.launched(&fx),
        vec!["cni"],
        "after the kubelet, as its after says"
    );
    assert_eq!(h.state("proxy"), "stopped", "wants nothing: still held");
    // Its start set, as the graph computes it: named, needed, wanted (and what that needs).
    let g = h.s.graph();
    let names = |v: Vec<usize>| -> Vec<String> {
        v.into_iter()
            .map(|i| g.components()[i].name.clone())
            .collect()
    };
    assert_eq!(
        names(g.start_set(&[g.index_of("cni").unwrap()])),
        ["api", "approver", "kubelet", "cni"]
    );
}

#[test]
fn settled_when_everything_wanted_is_up_or_failed() {
    let mut h = H::new(CLUSTER);
    assert!(!h.s.settled(), "nothing started yet");
    h.feed(Input::Boot);
    h.started("etcd", 1);
    h.exited("certs", ExitStatus::Code(0));
    assert!(!h.s.settled(), "etcd not ready");
    h.probe("etcd", ProbeRole::Ready, true);
    h.started("api", 2);
    h.probe("api", ProbeRole::Ready, true);
    h.started("ctrl", 3);
    assert!(!h.s.settled(), "sched still starting");
    h.started("sched", 4);
    assert!(h.s.settled());
    h.feed(Input::Request(Request::Stop(vec![h.i("sched")])));
    assert!(!h.s.settled(), "sched stopping");
    h.exited("sched", ExitStatus::Code(0));
    assert!(h.s.settled());
}

#[test]
fn adopted_runs_continue_and_their_later_exits_count() {
    let mut h = H::new(CLUSTER);
    let now = h.now;
    let started = now - Duration::from_secs(300);
    let killed = ExitStatus::Signal {
        signal: 9,
        core: false,
    };
    let fx = h.s.adopt(
        h.i("etcd"),
        Adopted {
            run: 4,
            pid: Some(100),
            restarts: 2,
            launched_at: started,
            last_exit: Some(killed.clone()),
        },
        now,
    );
    // What the previous daemon knew stays true: the process's start, the last exit.
    let etcd = h.s.unit(h.i("etcd"));
    assert_eq!(
        etcd.launched_at,
        Some(started),
        "uptime from the real start"
    );
    assert_eq!(etcd.last_exit, Some(killed));
    assert_eq!(h.state("etcd"), "starting");
    assert!(fx.contains(&Effect::StartProbe {
        comp: 0,
        run: 4,
        role: ProbeRole::Ready
    }));
    h.s.adopt(
        h.i("sched"),
        Adopted {
            run: 1,
            pid: None,
            restarts: 0,
            launched_at: now,
            last_exit: None,
        },
        now,
    );
    let fx = h.feed(Input::Boot);
    assert!(
        !h.launched(&fx).contains(&"etcd".to_string()),
        "adopted, not launched"
    );
    assert!(!h.launched(&fx).contains(&"sched".to_string()));
    h.probe("etcd", ProbeRole::Ready, true);
    assert_eq!(h.state("etcd"), "ready");
    // sched ended while no daemon watched: the policy restarts it, as a new run.
    h.exited("sched", ExitStatus::Code(1));
    assert_eq!(h.state("sched"), "backoff");
    assert_eq!(
        h.s.unit(h.i("etcd")).restarts,
        2,
        "restart count carried over"
    );
    assert_eq!(h.run("etcd"), 4);
}
