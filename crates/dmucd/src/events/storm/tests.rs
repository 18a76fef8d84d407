use super::*;

const LIM: Limits = Limits {
    exits: 10,
    window_ms: 10_000,
};

fn exit(code: i32) -> EventWhat {
    EventWhat::Exit {
        pid: Some(7),
        code: Some(code),
        signal: None,
        status: format!("exit status {code}"),
        tail: Vec::new(),
    }
}

fn moved(from: State, to: State) -> EventWhat {
    EventWhat::State {
        from,
        to,
        reason: None,
    }
}

/// One restart of a crash loop, as the runtime reports it: 4 events.
fn cycle(s: &mut Storms, comp: &str, now: u64, code: i32) -> Vec<EventWhat> {
    [
        moved(State::Backoff, State::Starting),
        moved(State::Starting, State::Running),
        exit(code),
        moved(State::Running, State::Backoff),
    ]
    .into_iter()
    .flat_map(|e| s.admit(comp, e, now, LIM))
    .collect()
}

fn phase(e: &EventWhat) -> Option<(LoopPhase, u32, u32)> {
    match e {
        EventWhat::CrashLoop {
            phase, exits, held, ..
        } => Some((*phase, *exits, *held)),
        _ => None,
    }
}

#[test]
fn a_crash_loop_is_a_line_per_hundred_exits_not_four_hundred() {
    let mut s = Storms::default();
    let mut logged = Vec::new();
    // 1000 restarts in 5 s (one each 5 ms): ~4000 events.
    for i in 0..1000 {
        logged.extend(cycle(&mut s, "a", i * 5, 1));
    }
    // The first ten restarts as they are (up to the tenth exit: 39 events), the loop's
    // beginning, then one record per 100 exits.
    assert_eq!(phase(&logged[39]), Some((LoopPhase::Begin, 10, 0)));
    assert!(logged[..39].iter().all(|e| phase(e).is_none()));
    let ongoing: Vec<_> = logged[40..].iter().map(phase).collect();
    assert_eq!(ongoing.len(), 9, "{logged:#?}");
    assert!(
        ongoing
            .iter()
            .all(|p| *p == Some((LoopPhase::Ongoing, 100, 400)))
    );
    assert!(
        logged.len() < 60,
        "{} lines for 1000 restarts",
        logged.len()
    );
    // It settles (its last run stays up): after a window without exits, the loop is over
    // and the log ends with the state it is in.
    let last = 999 * 5;
    // The open span (since the 900th loop exit, restart 910: index 909) gets its record a window on.
    assert_eq!(s.deadline(LIM), Some(909 * 5 + LIM.window_ms));
    let out = s.expire(909 * 5 + LIM.window_ms, LIM);
    assert_eq!(phase(&out[0].1[0]), Some((LoopPhase::Ongoing, 90, 361)));
    assert_eq!(s.deadline(LIM), Some(last + LIM.window_ms));
    assert!(s.expire(last + LIM.window_ms - 1, LIM).is_empty());
    let out = s.expire(last + LIM.window_ms, LIM);
    assert_eq!(out.len(), 1);
    let (name, records) = &out[0];
    assert_eq!(name, "a");
    assert_eq!(phase(&records[0]).map(|p| p.0), Some(LoopPhase::Over));
    assert_eq!(records[1], moved(State::Running, State::Backoff));
    assert_eq!(s.deadline(LIM), None);
    // After it, events are logged one by one again.
    assert_eq!(cycle(&mut s, "a", last + 20_000, 1).len(), 4);
}

#[test]
fn a_slow_loop_gets_a_record_per_window_and_a_move_elsewhere_ends_it() {
    let mut s = Storms::default();
    let mut logged = Vec::new();
    // One exit a second: the tenth makes a loop.
    for i in 0..10 {
        logged.extend(cycle(&mut s, "b", i * 1000, 2));
    }
    assert_eq!(
        phase(logged.last().unwrap()).map(|p| p.0),
        Some(LoopPhase::Begin)
    );
    // Five more exits: held (with the tenth restart's last move), the span's record due a
    // window after the loop began.
    for i in 10..15 {
        assert!(cycle(&mut s, "b", i * 1000, 2).is_empty());
    }
    assert_eq!(s.deadline(LIM), Some(9000 + LIM.window_ms));
    let out = s.expire(9000 + LIM.window_ms, LIM);
    match &out[0].1[..] {
        [
            EventWhat::CrashLoop {
                phase: LoopPhase::Ongoing,
                exits: 5,
                held: 21,
                span_ms: 10_000,
                last_exit,
            },
        ] => assert_eq!(last_exit, "exit status 2"),
        other => panic!("{other:?}"),
    }
    // Stopped by the operator: the loop is over, and the stop is logged.
    let stop = moved(State::Backoff, State::Stopped);
    let out = s.admit("b", stop.clone(), 20_000, LIM);
    assert_eq!(phase(&out[0]).map(|p| p.0), Some(LoopPhase::Over));
    assert_eq!(out[1], stop);
}

#[test]
fn other_components_and_other_events_are_not_held() {
    let mut s = Storms::default();
    for i in 0..20 {
        cycle(&mut s, "a", i * 5, 1);
    }
    // Another component's events pass; so does a looping one's log event, and its loop
    // goes on.
    assert_eq!(cycle(&mut s, "b", 200, 1).len(), 4);
    let log = EventWhat::Log {
        ok: false,
        detail: None,
    };
    assert_eq!(s.admit("a", log.clone(), 210, LIM), [log]);
    assert!(cycle(&mut s, "a", 215, 1).is_empty());
    // Ten exits spread over more than a window are no loop.
    let mut t = Storms::default();
    for i in 0..30 {
        assert_eq!(cycle(&mut t, "c", i * 1500, 1).len(), 4);
    }
    // Coalescing off (crash-loop-exits = 0): every event, and a loop in progress ends.
    let off = Limits { exits: 0, ..LIM };
    let mut u = Storms::default();
    for i in 0..20 {
        for e in [exit(1), moved(State::Running, State::Backoff)] {
            assert_eq!(u.admit("d", e, i, off).len(), 1);
        }
    }
    let out = s.admit("a", exit(1), 220, off);
    assert_eq!(phase(&out[0]).map(|p| p.0), Some(LoopPhase::Over));
}
