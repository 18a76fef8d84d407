//! The front binary against a scripted server: what it sends, what it prints, and that it
//! prints nothing of its own when it hands over. (The comparison with dmucctl-full against a
//! real dmucd is in tests/it/control.rs.)

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Output};

use dmuc_tests::output_of_fresh;

/// Runs the front alone in `dir` (so no dmucctl-full can be found) against `sock`, the
/// server answering each request line with the next of `replies`; returns its output and
/// the lines it sent.
fn front(dir: &Path, args: &[&str], replies: &[&str]) -> (Output, Vec<String>) {
    let sock = dir.join("d.sock");
    let _ = std::fs::remove_file(&sock);
    let l = UnixListener::bind(&sock).unwrap();
    let replies: Vec<String> = replies.iter().map(|s| s.to_string()).collect();
    let server = std::thread::spawn(move || {
        let (c, _) = l.accept().unwrap();
        let mut rd = BufReader::new(c.try_clone().unwrap());
        let mut wr = c;
        let mut got = Vec::new();
        for r in &replies {
            let mut line = String::new();
            if rd.read_line(&mut line).unwrap() == 0 {
                break;
            }
            got.push(line.trim_end().to_string());
            // The front may be gone already (it hands over at the first odd line).
            let _ = wr.write_all(format!("{r}\n").as_bytes());
        }
        got
    });
    let bin = dir.join("dmucctl");
    if !bin.exists() {
        std::fs::copy(env!("CARGO_BIN_EXE_dmucctl"), &bin).unwrap();
    }
    let o = output_of_fresh(
        Command::new(&bin)
            .arg("--socket")
            .arg(&sock)
            .args(args)
            .env_clear()
            .env("PATH", dir),
    );
    (o, server.join().unwrap())
}

const HELLO: &str = r#"{"id":1,"result":{"version":"1.0","server":"dmucd 0.1.0","pid":7,"uid":0,"can_write":true}}"#;

#[test]
fn it_prints_the_table_the_server_rendered_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (o, sent) = front(
        dir.path(),
        &["status", "etcd"],
        &[
            HELLO,
            r#"{"id":2,"result":{"text":"NAME STATE\netcd \u001b[32mready\u001b[0m \"x\"\n"}}"#,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{o:?}");
    assert_eq!(o.stdout, b"NAME STATE\netcd \x1b[32mready\x1b[0m \"x\"\n");
    assert!(o.stderr.is_empty(), "{o:?}");
    assert_eq!(
        sent,
        [
            r#"{"id":1,"verb":"hello","version":"1.0","client":"dmucctl 0.1.0"}"#,
            // Not a terminal: no colour.
            r#"{"id":2,"verb":"status","names":["etcd"],"text":{"color":false}}"#,
        ]
    );
}

#[test]
fn an_answer_it_does_not_expect_is_handed_over_with_nothing_printed() {
    let dir = tempfile::tempdir().unwrap();
    for replies in [
        &[
            HELLO,
            r#"{"id":2,"error":{"code":"unknown-component","message":"no component named `x`"}}"#,
        ][..],
        &[
            r#"{"id":1,"error":{"code":"version-mismatch","message":"no"}}"#,
            "{}",
        ],
        // An older dmucd that does not know "text" answers with records.
        &[HELLO, r#"{"id":2,"result":{"daemon":{},"components":[]}}"#],
        // Closed without an answer.
        &[HELLO],
    ] {
        let (o, _) = front(dir.path(), &["status", "x"], replies);
        assert_eq!(o.status.code(), Some(1), "{replies:?}: {o:?}");
        assert!(o.stdout.is_empty(), "{o:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.starts_with("dmucctl: cannot run dmucctl-full") && err.contains("not found"),
            "{err}"
        );
    }
}

#[test]
fn it_execs_dmucctl_full_with_the_same_arguments_and_environment() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in dmucctl-full beside the front that shows what it was given.
    let full = dir.path().join("dmucctl-full");
    std::fs::write(&full, "#!/bin/sh\necho \"$0|$*|$DMUC_TEST\"\nexit 5\n").unwrap();
    std::fs::set_permissions(&full, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    // Once it has run, no forked child holds it open for writing any more: the front's exec
    // of it cannot meet ETXTBSY.
    output_of_fresh(&mut Command::new(&full));
    let bin = dir.path().join("dmucctl");
    std::fs::copy(env!("CARGO_BIN_EXE_dmucctl"), &bin).unwrap();
    let o = output_of_fresh(
        Command::new(&bin)
            .args(["restart", "a b", "--no-wait"])
            .env("DMUC_TEST", "kept"),
    );
    assert_eq!(o.status.code(), Some(5), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        format!("{}|restart a b --no-wait|kept\n", full.display())
    );
}
