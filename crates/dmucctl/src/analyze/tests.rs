use super::*;

/// Events built in order: times in ms from 0 (the wall clock starts at 1_000 s).
struct Log(Vec<EventRecord>);

impl Log {
    fn new() -> Log {
        Log(Vec::new())
    }

    fn push(&mut self, ms: u64, component: Option<&str>, what: EventWhat) -> &mut Log {
        let seq = self.0.len() as u64 + 1;
        self.0.push(EventRecord {
            seq,
            ts_us: 1_000_000_000 + ms * 1000,
            component: component.map(str::to_string),
            what,
        });
        self
    }

    fn to(&mut self, ms: u64, name: &str, from: State, to: State) -> &mut Log {
        self.push(
            ms,
            Some(name),
            EventWhat::State {
                from,
                to,
                reason: None,
            },
        )
    }

    fn daemon(&mut self, ms: u64, message: &str) -> &mut Log {
        self.push(
            ms,
            None,
            EventWhat::Daemon {
                message: message.into(),
            },
        )
    }
}

fn edge(from: &str, to: &str, condition: &str) -> GraphEdge {
    GraphEdge {
        from: from.into(),
        to: to.into(),
        condition: condition.into(),
    }
}

fn names(n: &[&str]) -> Vec<String> {
    n.iter().map(|s| s.to_string()).collect()
}

use State::*;

/// etcd → apiserver (ready) → kubelet (ready); setup (oneshot) → kubelet (completed); proxy
/// independent. The apiserver fails once before it is up.
fn boot(log: &mut Log) {
    log.daemon(0, "started the graph: dmucd pid 42")
        .to(1, "etcd", Pending, Starting)
        .to(2, "setup", Pending, Starting)
        .to(3, "proxy", Pending, Starting)
        .to(10, "proxy", Starting, Running)
        .to(300, "setup", Starting, Completed)
        .to(1200, "etcd", Starting, Ready)
        .to(1201, "apiserver", Pending, Starting)
        .to(1500, "apiserver", Starting, Backoff)
        .to(1600, "apiserver", Backoff, Starting)
        .to(4000, "apiserver", Starting, Ready)
        .to(4001, "kubelet", Pending, Starting)
        .to(4500, "kubelet", Starting, Ready);
}

fn graph() -> (Vec<String>, Vec<GraphEdge>) {
    (
        names(&["etcd", "apiserver", "setup", "kubelet", "proxy"]),
        vec![
            edge("apiserver", "etcd", "ready"),
            edge("kubelet", "apiserver", "ready"),
            edge("kubelet", "setup", "completed"),
        ],
    )
}

fn chain(a: &Analysis) -> Vec<(&str, Option<u64>, Option<u64>)> {
    a.chain
        .iter()
        .map(|c| (c.name.as_str(), c.launched_us, c.up_us))
        .collect()
}

#[test]
fn the_chain_follows_what_each_component_waited_for_last() {
    let mut log = Log::new();
    boot(&mut log);
    let (n, e) = graph();
    let a = analyze(&log.0, &n, &e, None, None, None).unwrap();
    assert_eq!(a.target.as_deref(), Some("kubelet"));
    // kubelet waited for the apiserver (ready at 4.0 s), not setup (completed at 0.3 s); the
    // apiserver's launch is its second (after the backoff), its wait etcd's readiness.
    assert_eq!(
        chain(&a),
        [
            ("kubelet", Some(4_001_000), Some(4_500_000)),
            ("apiserver", Some(1_600_000), Some(4_000_000)),
            ("etcd", Some(1000), Some(1_200_000)),
        ]
    );
    let api = &a.components[1];
    assert_eq!((api.launches, api.waited_for.as_deref()), (2, Some("etcd")));
    let setup = &a.components[2];
    assert_eq!(
        (setup.up_state, setup.waited_for.as_deref()),
        (Some(Completed), None)
    );
    let text = render(&a);
    assert!(
        text.contains("kubelet @4.500s +0.499s (ready)\n└─apiserver @4.000s +2.400s (ready)\n  └─etcd @1.200s +1.199s (ready)\n"),
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("setup ")
        && l.contains("@0.002s")
        && l.contains("@0.300s")
        && l.ends_with("  -")));
}

#[test]
fn the_window_is_the_last_start_of_the_graph_and_adoption_keeps_it() {
    let mut log = Log::new();
    // An earlier boot, then the current one, then an adoption by a new dmucd: the launches
    // are the current boot's, as before the adoption.
    log.daemon(0, "started the graph: dmucd pid 1")
        .to(1, "etcd", Pending, Starting)
        .to(2, "etcd", Starting, Ready);
    let earlier = log.0.len();
    boot(&mut log);
    log.daemon(
        9000,
        "adopted 5 components from the previous dmucd (pid 42): ...",
    );
    let (n, e) = graph();
    let a = analyze(&log.0, &n, &e, None, None, None).unwrap();
    assert_eq!(a.since_seq, earlier as u64);
    assert_eq!(a.chain[2].launched_us, Some(1000));
    assert_eq!(a.components[0].launches, 1);
    // --since: the window the operator asks for.
    let a = analyze(&log.0, &n, &e, Some(1), None, None).unwrap();
    assert_eq!(a.since_seq, 1);
    assert_eq!(
        a.components[0].up_us,
        Some(1000),
        "etcd's first up after #1"
    );
}

#[test]
fn one_component_is_told_at_its_last_start() {
    let mut log = Log::new();
    boot(&mut log);
    // Much later, an operator restarts the apiserver: the analysis of it is that restart.
    log.to(60_000, "apiserver", Ready, Stopping)
        .to(60_100, "apiserver", Stopping, Starting)
        .to(62_100, "apiserver", Starting, Ready);
    let (n, e) = graph();
    let a = analyze(&log.0, &n, &e, None, None, Some("apiserver")).unwrap();
    assert_eq!(
        chain(&a),
        [
            ("apiserver", Some(60_100_000), Some(62_100_000)),
            ("etcd", Some(1000), Some(1_200_000)),
        ]
    );
    assert!(render(&a).starts_with("apiserver was up @62.100s"));
    // The graph as a whole still came up when it did.
    let a = analyze(&log.0, &n, &e, None, None, None).unwrap();
    assert_eq!(a.chain[0].up_us, Some(4_500_000));
}

#[test]
fn what_never_came_up_is_said_and_a_bad_name_is_an_error() {
    let mut log = Log::new();
    log.daemon(0, "started the graph: dmucd pid 7")
        .to(5, "etcd", Pending, Starting)
        .to(900, "etcd", Starting, Failed);
    let (n, e) = graph();
    let a = analyze(&log.0, &n, &e, None, None, None).unwrap();
    assert!(a.chain.is_empty() && a.target.is_none());
    let text = render(&a);
    assert!(text.starts_with("Nothing came up"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("etcd ") && l.contains("not up")),
        "{text}"
    );
    assert_eq!(
        analyze(&log.0, &n, &e, None, None, Some("etcdd")).unwrap_err(),
        "no component named \"etcdd\""
    );
    assert!(analyze(&[], &n, &e, None, None, None).is_err());
}

#[test]
fn a_started_condition_is_met_at_the_dependency_s_launch() {
    let mut log = Log::new();
    log.daemon(0, "started the graph: dmucd pid 7")
        .to(1, "runtime", Pending, Starting)
        .to(2, "agent", Pending, Starting)
        .to(50, "agent", Starting, Running)
        .to(3000, "runtime", Starting, Ready);
    let n = names(&["runtime", "agent"]);
    let e = vec![edge("agent", "runtime", "started")];
    let a = analyze(&log.0, &n, &e, None, None, None).unwrap();
    // The runtime came up last; the agent waited for its start only.
    assert_eq!(a.target.as_deref(), Some("runtime"));
    assert_eq!(a.components[1].waited_for.as_deref(), Some("runtime"));
}

#[test]
fn running_is_the_pid_of_the_launch_that_came_up_or_running_itself() {
    let mut log = Log::new();
    log.daemon(0, "started the graph of g.toml: dmucd pid 1, 2 components")
        .to(0, "db", Pending, Starting)
        // A first run that ran and failed before its probe passed.
        .push(10, Some("db"), EventWhat::Spawned { pid: 7 })
        .to(50, "db", Starting, Backoff)
        .to(150, "db", Backoff, Starting)
        .push(170, Some("db"), EventWhat::Spawned { pid: 8 })
        .to(900, "db", Starting, Ready)
        .to(900, "app", Pending, Starting)
        .to(905, "app", Starting, Running)
        // A probe that passed before the shim's report was read: running by ready.
        .to(0, "quick", Pending, Starting)
        .to(20, "quick", Starting, Ready)
        .push(25, Some("quick"), EventWhat::Spawned { pid: 9 })
        // A newer daemon's event this client does not know.
        .push(950, None, EventWhat::Other);
    let a = analyze(
        &log.0,
        &names(&["db", "app", "quick"]),
        &[edge("app", "db", "ready")],
        None,
        None,
        Some("app"),
    )
    .unwrap();
    let quick = &a.components[2];
    assert_eq!(
        (quick.running_us, quick.up_us),
        (Some(20_000), Some(20_000))
    );
    let db = &a.components[0];
    assert_eq!(
        (db.launched_us, db.running_us, db.up_us),
        (Some(150_000), Some(170_000), Some(900_000))
    );
    let app = &a.components[1];
    assert_eq!((app.running_us, app.up_us), (Some(905_000), Some(905_000)));
    let text = render(&a);
    assert!(
        text.lines()
            .any(|l| l.starts_with("db ") && l.contains("@0.150s     @0.170s     @0.900s")),
        "{text}"
    );
    // An event of a newer daemon parses, as `Other`.
    let e: EventRecord =
        serde_json::from_str(r#"{"seq":9,"ts_us":1,"component":"db","event":"resized","cols":80}"#)
            .unwrap();
    assert_eq!(e.what, EventWhat::Other);
}

#[test]
fn the_window_ends_where_the_start_settled_or_at_until() {
    let mut log = Log::new();
    boot(&mut log);
    log.daemon(4600, "the graph settled: 5/5 up, 4.6s after its start");
    let settled_at = log.0.len() as u64;
    // Five minutes of a crash loop afterwards: not the start's story.
    for i in 0..10 {
        let t = 20_000 * (i + 1);
        log.to(t, "proxy", Running, Backoff)
            .to(t + 100, "proxy", Backoff, Starting)
            .to(t + 200, "proxy", Starting, Running);
    }
    let (n, e) = graph();
    let a = analyze(&log.0, &n, &e, None, None, None).unwrap();
    assert_eq!((a.until_seq, a.later, a.settled), (settled_at, 30, true));
    assert_eq!(a.chain[0].up_us, Some(4_500_000));
    let proxy = &a.components[4];
    assert_eq!(proxy.launches, 1, "{proxy:?}");
    assert!(proxy.moves.iter().all(|(t, _)| *t <= 4_600_000));
    let text = render(&a);
    assert!(
        text.contains(&format!(
            "The start settled at #{settled_at}; 30 later events not shown (--until SEQ to include them)."
        )),
        "{text}"
    );

    // --until: up to that event, whatever settled.
    let a = analyze(&log.0, &n, &e, None, Some(settled_at + 3), None).unwrap();
    assert_eq!(
        (a.until_seq, a.later, a.settled),
        (settled_at + 3, 27, false)
    );
    assert_eq!(a.components[4].launches, 2);
    assert!(render(&a).contains(&format!("The window ends at #{}; 27 later", settled_at + 3)));
    // Up to the log's end: nothing left out, nothing said about it.
    let last = log.0.len() as u64;
    let a = analyze(&log.0, &n, &e, None, Some(last), None).unwrap();
    assert_eq!((a.until_seq, a.later), (last, 0));
    assert!(render(&a).contains(&format!("The window ends at #{last}.\n")));
    // An empty window is an error that says why.
    let err = analyze(&log.0, &n, &e, Some(5), Some(5), None).unwrap_err();
    assert!(err.contains("--until 5 is not after --since 5"), "{err}");

    // A component asked about: its last start, however late (the window runs to the end).
    let a = analyze(&log.0, &n, &e, None, None, Some("proxy")).unwrap();
    assert_eq!(a.later, 0);
    assert_eq!(a.chain[0].launches, 11);

    // A log without the settled event (an older dmucd, or a start that never settled): to
    // the end, as before.
    let mut old = Log::new();
    boot(&mut old);
    old.to(30_000, "proxy", Running, Backoff);
    let a = analyze(&old.0, &n, &e, None, None, None).unwrap();
    assert_eq!((a.later, a.settled), (0, false));
}
