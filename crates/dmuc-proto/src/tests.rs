use super::*;

fn err_of(line: &str) -> ErrorReply {
    match parse_request(line.as_bytes()) {
        Ok(r) => panic!("{line} parsed as {r:?}"),
        Err(reply) => match reply.body {
            Body::Error(e) => e,
            b => panic!("not an error: {b:?}"),
        },
    }
}

#[test]
fn parses_every_verb() {
    let cases = [
        (
            r#"{"id":1,"verb":"hello","version":"1.0"}"#,
            Verb::Hello {
                version: "1.0".into(),
                client: None,
            },
        ),
        (
            r#"{"id":1,"verb":"status"}"#,
            Verb::Status {
                names: vec![],
                text: None,
            },
        ),
        (
            r#"{"id":1,"verb":"status","names":["a"],"text":{"color":true}}"#,
            Verb::Status {
                names: vec!["a".into()],
                text: Some(TextOptions { color: true }),
            },
        ),
        (
            r#"{"id":1,"verb":"start","names":["a"]}"#,
            Verb::Start(Action {
                names: vec!["a".into()],
                wait: true,
                timeout_ms: None,
            }),
        ),
        (
            r#"{"id":1,"verb":"stop","names":["a"],"wait":false}"#,
            Verb::Stop(Action {
                names: vec!["a".into()],
                wait: false,
                timeout_ms: None,
            }),
        ),
        (
            r#"{"id":1,"verb":"restart","names":["a"],"timeout_ms":5}"#,
            Verb::Restart(Action {
                names: vec!["a".into()],
                wait: true,
                timeout_ms: Some(5),
            }),
        ),
        (
            r#"{"id":1,"verb":"signal","name":"a","signal":"HUP"}"#,
            Verb::Signal {
                name: "a".into(),
                signal: "HUP".into(),
                group: false,
            },
        ),
        (
            r#"{"id":1,"verb":"logs","name":"a","lines":3,"follow":true}"#,
            Verb::Logs {
                name: "a".into(),
                lines: Some(3),
                follow: true,
            },
        ),
        (
            r#"{"id":1,"verb":"events","since":7}"#,
            Verb::Events {
                since: Some(7),
                follow: false,
            },
        ),
        (r#"{"id":1,"verb":"graph"}"#, Verb::Graph {}),
        (
            r#"{"id":1,"verb":"show","names":["etcd"]}"#,
            Verb::Show {
                names: vec!["etcd".into()],
            },
        ),
        (
            r#"{"id":1,"verb":"reload","dry_run":true}"#,
            Verb::Reload { dry_run: true },
        ),
        (r#"{"id":1,"verb":"shutdown"}"#, Verb::Shutdown {}),
        (
            r#"{"id":1,"verb":"cancel","stream":4}"#,
            Verb::Cancel { stream: 4 },
        ),
    ];
    // (status has two cases: records, and text)
    assert_eq!(cases.len(), VERBS.len() + 1, "a verb without a parse test");
    for (line, verb) in cases {
        let r = parse_request(line.as_bytes()).unwrap();
        assert_eq!(r.verb, verb, "{line}");
        assert_eq!(r.verb.name(), r.verb.name());
        // What we send, we parse back.
        let again = serde_json::to_string(&r).unwrap();
        assert_eq!(parse_request(again.as_bytes()).unwrap(), r, "{again}");
    }
}

#[test]
fn bad_frames_get_typed_errors() {
    assert_eq!(err_of("{nope").code, ErrorCode::ParseError);
    assert_eq!(err_of("[1,2]").code, ErrorCode::ParseError);
    assert_eq!(err_of(r#"{"verb":"status"}"#).code, ErrorCode::BadRequest);
    assert_eq!(
        err_of(r#"{"id":-1,"verb":"status"}"#).code,
        ErrorCode::BadRequest
    );
    let e = err_of(r#"{"id":2,"verb":"statuz"}"#);
    assert_eq!(e.code, ErrorCode::UnknownVerb);
    assert!(e.hint.unwrap().contains("status"));
    let e = err_of(r#"{"id":2,"verb":"signal","name":"a"}"#);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("signal"), "{}", e.message);
    let e = err_of(r#"{"id":2,"verb":"status","nmes":["a"]}"#);
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("nmes"), "{}", e.message);
    let e = err_of(r#"{"id":2,"verb":"start","names":["a"],"wiat":false}"#);
    assert_eq!(e.code, ErrorCode::BadRequest, "{}", e.message);
    // The id is echoed when it could be read.
    let r = parse_request(br#"{"id":9,"verb":"x"}"#).unwrap_err();
    assert_eq!(r.id, Some(9));
}

#[test]
fn replies_round_trip() {
    let ev = EventRecord {
        seq: 3,
        ts_us: 10,
        component: Some("etcd".into()),
        what: EventWhat::Exit {
            pid: Some(4),
            code: None,
            signal: Some(9),
            status: "killed by SIGKILL".into(),
            tail: vec!["bye".into()],
        },
    };
    for r in [
        Reply::result(
            1,
            HelloResult {
                version: VERSION.into(),
                server: "dmucd".into(),
                pid: 1,
                uid: 0,
                can_write: true,
            },
        ),
        Reply::error(
            None,
            ErrorReply::new(ErrorCode::FrameTooLarge, "x").hint("y"),
        ),
        Reply::stream(2, StreamItem::Event(ev.clone())),
        Reply::stream(2, StreamItem::Dropped(5)),
        Reply::stream(2, StreamItem::Lines(vec!["a".into()])),
    ] {
        let line = r.to_line();
        assert!(line.ends_with('\n') && !line[..line.len() - 1].contains('\n'));
        let back: Reply = serde_json::from_str(&line).unwrap();
        assert_eq!(back, r);
    }
    let line = Reply::stream(2, StreamItem::Event(ev)).to_line();
    assert!(line.contains(r#""event":"exit""#), "{line}");
}

#[test]
fn versions() {
    assert!(compatible("1.0"));
    assert!(compatible("1.7"));
    assert!(!compatible("2.0"));
    assert!(!compatible("x"));
}

#[test]
fn a_result_line_is_the_frame_result_would_build() {
    let v = StatusResult {
        daemon: DaemonInfo {
            pid: 7,
            version: "0.1.0".into(),
            uptime_ms: 12,
            config: "/etc/dmuc/a \"b\".toml".into(),
            tmux_socket: "/run/t".into(),
            session: "dmuc".into(),
            log_dir: "/var/log/dmuc".into(),
            stopping: false,
            vars: [("node-ip".to_string(), "198.18.0.9".to_string())].into(),
        },
        components: vec![ComponentStatus {
            name: "etcd".into(),
            kind: "service".into(),
            state: State::Running,
            pid: Some(42),
            run: 1,
            restarts: 0,
            uptime_ms: Some(5),
            since_ms: None,
            ready: Some(true),
            last_exit: None,
            reason: Some("line\nbreak".into()),
            window: Some("@1".into()),
            log_error: None,
        }],
    };
    let line = Reply::result_line(3, &v);
    assert!(
        line.ends_with('\n') && line.matches('\n').count() == 1,
        "{line}"
    );
    // The same JSON (keys in declaration order instead of sorted).
    let same = |l: &str| serde_json::from_str::<Value>(l).unwrap();
    assert_eq!(same(&line), same(&Reply::result(3, &v).to_line()));
    let back: Reply = serde_json::from_str(&line).unwrap();
    assert_eq!(back, Reply::result(3, &v));
}

#[test]
fn states_travel_as_their_names_and_unknown_ones_do_not_break_a_reply() {
    for s in State::ALL {
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, format!("\"{}\"", s.name()));
        assert_eq!(serde_json::from_str::<State>(&json).unwrap(), s);
    }
    // A newer daemon's state: an older client still reads the reply.
    assert_eq!(
        serde_json::from_str::<State>("\"hibernating\"").unwrap(),
        State::Unknown
    );
    let up: Vec<&str> = State::ALL
        .iter()
        .filter(|s| s.is_up())
        .map(|s| s.name())
        .collect();
    assert_eq!(up, ["running", "ready", "completed"]);
}
