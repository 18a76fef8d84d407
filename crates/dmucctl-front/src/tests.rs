use super::*;

fn args(s: &[&'static str]) -> impl Iterator<Item = &'static [u8]> {
    s.iter().copied().map(str::as_bytes)
}

fn root() -> Env<'static> {
    Env {
        euid: 0,
        ..Env::default()
    }
}

fn lines(p: &Plan) -> Vec<dmuc_proto::Request> {
    let text = std::str::from_utf8(p.request.bytes()).unwrap();
    assert!(text.ends_with('\n'), "{text}");
    text.lines()
        .map(|l| dmuc_proto::parse_request(l.as_bytes()).unwrap())
        .collect()
}

#[test]
fn the_protocol_version_is_dmucds() {
    assert_eq!(PROTOCOL, dmuc_proto::VERSION);
}

#[test]
fn status_with_names_and_a_socket_is_answered_by_the_front() {
    for argv in [
        &["--socket", "/s/d.sock", "status", "etcd", "web"][..],
        &["status", "--socket", "/s/d.sock", "etcd", "web"],
        &["status", "etcd", "--socket=/s/d.sock", "web"],
    ] {
        let p = plan(args(argv), &root(), true).unwrap();
        assert_eq!(p.socket.bytes(), b"/s/d.sock", "{argv:?}");
        let reqs = lines(&p);
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].id, 1);
        assert!(
            matches!(&reqs[0].verb, dmuc_proto::Verb::Hello { version, .. } if version == "1.0")
        );
        assert_eq!(reqs[1].id, 2);
        assert_eq!(
            reqs[1].verb,
            dmuc_proto::Verb::Status {
                names: vec!["etcd".into(), "web".into()],
                text: Some(dmuc_proto::TextOptions { color: true }),
            }
        );
    }
}

#[test]
fn every_other_command_line_is_dmucctl_fulls() {
    for argv in [
        &[][..],
        &["status", "--json"],
        &["status", "-w"],
        &["status", "--watch"],
        &["status", "--help"],
        &["--help"],
        &["-V"],
        &["version"],
        &["restart", "web"],
        &["logs", "-f", "status"],
        &["stat"],
        &["status", "--", "web"],
        &["status", "--socket"],
        &["status", "--socket", "--json"],
        &["status", "--socket="],
        &["web", "status"],
    ] {
        assert!(plan(args(argv), &root(), false).is_none(), "{argv:?}");
    }
}

#[test]
fn names_are_escaped_and_non_utf8_goes_to_dmucctl_full() {
    let odd = "a\"b\\c\nd\u{1}é";
    let argv = ["status", odd];
    let p = plan(args(&argv), &root(), false).unwrap();
    assert_eq!(
        lines(&p)[1].verb,
        dmuc_proto::Verb::Status {
            names: vec![odd.into()],
            text: Some(dmuc_proto::TextOptions { color: false }),
        }
    );
    let bad: &[u8] = b"\xff";
    let argv: Vec<&[u8]> = vec![b"status", bad];
    assert!(plan(argv.into_iter(), &root(), false).is_none());
}

#[test]
fn a_request_too_long_goes_to_dmucctl_full() {
    let long = "n".repeat(REQUEST_MAX);
    let argv: Vec<&[u8]> = vec![b"status", long.as_bytes()];
    assert!(plan(argv.into_iter(), &root(), false).is_none());
}

#[test]
fn the_socket_is_found_as_dmucctl_full_finds_it() {
    let p = |env: Env<'_>| plan(args(&["status"]), &env, false).map(|p| p.socket.bytes().to_vec());
    assert_eq!(p(root()).unwrap(), b"/run/dmuc/dmucd.sock");
    let user = Env {
        euid: 1000,
        ..Env::default()
    };
    assert_eq!(p(user).unwrap(), b"/tmp/dmuc-1000/dmucd.sock");
    let xdg = Env {
        xdg_runtime_dir: Some(b"/run/user/1000"),
        ..user
    };
    assert_eq!(p(xdg).unwrap(), b"/run/user/1000/dmuc/dmucd.sock");
    let given = Env {
        dmuc_socket: Some(b"/e/d.sock"),
        ..xdg
    };
    assert_eq!(p(given).unwrap(), b"/e/d.sock");
    // --socket wins over DMUC_SOCKET.
    let q = plan(args(&["status", "--socket", "/a/s"]), &given, false).unwrap();
    assert_eq!(q.socket.bytes(), b"/a/s");
    // Empty or too long: dmucctl-full says what it makes of them.
    for odd in [
        Env {
            dmuc_socket: Some(b""),
            ..user
        },
        Env {
            xdg_runtime_dir: Some(b""),
            ..user
        },
    ] {
        assert_eq!(p(odd), None);
    }
    let long = format!("/{}", "d".repeat(110));
    let env = Env {
        dmuc_socket: Some(long.as_bytes()),
        ..root()
    };
    assert_eq!(p(env), None);
    // The defaults are dmuc_config's (checked here by their text, see paths.rs).
}

#[test]
fn the_environment_is_read_from_its_entries() {
    let mut e = Env::default();
    e.scan(
        [
            &b"PATH=/bin"[..],
            b"DMUC_SOCKET=/x.sock",
            b"XDG_RUNTIME_DIR=/run/user/5",
            b"NO_COLOR=",
        ]
        .into_iter(),
    );
    assert_eq!(e.dmuc_socket, Some(&b"/x.sock"[..]));
    assert_eq!(e.xdg_runtime_dir, Some(&b"/run/user/5"[..]));
    assert!(e.no_color);
    let mut e = Env::default();
    e.scan([&b"NO_COLORS=1"[..], b"XDMUC_SOCKET=/y"].into_iter());
    assert!(!e.no_color);
    assert_eq!(e.dmuc_socket, None);
}

/// The reply line dmucd sends, built with dmuc_proto as dmucd builds it.
fn reply_line(id: u64, text: &str) -> Vec<u8> {
    let line = dmuc_proto::Reply::result_line(id, &dmuc_proto::TextResult { text: text.into() });
    let mut v = line.into_bytes();
    assert_eq!(v.pop(), Some(b'\n'));
    v
}

#[test]
fn the_table_is_unescaped_exactly() {
    let table = "NAME  STATE\n\u{1b}[32mready\u{1b}[0m \"q\" \\ / \t é ☃ 😀 \u{7f}\u{0}\n";
    let mut line = reply_line(2, table);
    let Line::Text(n) = classify(&mut line) else {
        panic!("not a table: {}", String::from_utf8_lossy(&line));
    };
    assert_eq!(std::str::from_utf8(&line[..n]).unwrap(), table);
    // Escapes serde_json does not write, but JSON allows.
    let mut line = br#"{"id":2,"result":{"text":"\/\b\f\r\ud83d\ude00\u00e9"}}"#.to_vec();
    let Line::Text(n) = classify(&mut line) else {
        panic!()
    };
    assert_eq!(&line[..n], "/\u{8}\u{c}\r😀é".as_bytes());
}

#[test]
fn anything_unexpected_is_other() {
    let hello = br#"{"id":1,"result":{"version":"1.0","server":"dmucd 0.1.0","pid":1,"uid":0,"can_write":true}}"#;
    assert_eq!(classify(&mut hello.to_vec()), Line::Hello);
    for odd in [
        &br#"{"id":2,"error":{"code":"unknown-component","message":"x"}}"#[..],
        br#"{"id":1,"error":{"code":"version-mismatch","message":"x"}}"#,
        br#"{"id":2,"result":{"daemon":{},"components":[]}}"#,
        br#"{"id":2,"result":{"text":"a","more":"b"}}"#,
        br#"{"id":2,"result":{"text":"a\"}}"#,
        br#"{"id":2,"result":{"text":"\x"}}"#,
        br#"{"id":2,"result":{"text":"\u12"}}"#,
        br#"{"id":2,"result":{"text":"\ud83d"}}"#,
        br#"{"id":2,"result":{"text":"\ud83d\u0041"}}"#,
        br#"{"id":2,"result":{"text":"\ude00"}}"#,
        br#"{"id":3,"result":{"text":"a"}}"#,
        br#"{"id":2,"result":{"text":""#,
        b"",
    ] {
        assert_eq!(
            classify(&mut odd.to_vec()),
            Line::Other,
            "{}",
            String::from_utf8_lossy(odd)
        );
    }
}
