//! The control socket and dmucctl: every verb against a real daemon, hostile input,
//! concurrency, slow clients, authorization, streams, socket ownership.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

const T: Duration = Duration::from_secs(20);

/// db (tcp-ready) <- api <- web, and a chatty logger.
fn graph() -> String {
    let s = standin();
    let port = free_port();
    format!(
        r#"
[component.db]
command = ["{s}", "--name", "db", "--port", "{port}", "--log-every", "50ms"]
ready = {{ tcp = "127.0.0.1:{port}", interval = "50ms" }}
[component.api]
command = ["{s}", "--name", "api"]
after = ["db"]
[component.web]
command = ["{s}", "--name", "web"]
after = ["api"]
"#
    )
}

fn err_code(v: &Value) -> &str {
    v["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

#[test]
fn every_verb_round_trips_through_dmucctl() {
    let mut d = Daemon::start(&graph());
    d.wait_state("web", "running", T);

    let table = d.ctl_ok(&["status"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("NAME"), "{table}");
    assert!(
        lines[1].starts_with("db") && lines[1].contains("ready"),
        "{table}"
    );
    assert!(!table.contains('\x1b'), "colours in a pipe: {table:?}");
    let js: Value = serde_json::from_str(&d.ctl_ok(&["status", "--json", "api"])).unwrap();
    assert_eq!(js["components"].as_array().unwrap().len(), 1);
    let api_pid = js["components"][0]["pid"].as_u64().unwrap();
    assert_eq!(js["daemon"]["pid"].as_u64().unwrap(), d.pid() as u64);

    // stop takes the dependents first and reports it in order.
    let out = d.ctl_ok(&["stop", "api"]);
    let web_at = out.find("web: running -> stopping").expect(&out);
    let api_at = out.find("api: running -> stopping").expect(&out);
    assert!(web_at < api_at, "{out}");
    assert!(out.trim_end().ends_with("done"), "{out}");
    assert_eq!(d.comp("web").unwrap()["state"], "stopped");
    assert!(!alive(api_pid as u32));

    // start takes what it depends on; web is not a dependency of api, it stays down.
    let out = d.ctl_ok(&["start", "api"]);
    assert!(out.contains("api: starting -> running"), "{out}");
    assert_eq!(d.comp("web").unwrap()["state"], "stopped");
    d.ctl_ok(&["start", "web"]);

    // restart: a new PID, reported when running.
    let before = d.comp("web").unwrap()["pid"].as_u64().unwrap();
    let out = d.ctl_ok(&["restart", "web"]);
    assert!(
        out.contains("web: stopping -> pending") || out.contains("web: stopping ->"),
        "{out}"
    );
    let after = d.comp("web").unwrap()["pid"].as_u64().unwrap();
    assert_ne!(before, after);
    assert!(!alive(before as u32));

    // --no-wait returns before anything happened.
    let out = d.ctl_ok(&["restart", "--no-wait", "web"]);
    assert_eq!(out.trim(), "requested");
    d.wait_state("web", "running", T);

    // signal: TERM ends the run (by its handler or by the signal), then the policy restarts it.
    let web = d.comp("web").unwrap()["pid"].as_u64().unwrap();
    let out = d.ctl_ok(&["signal", "web", "TERM"]);
    assert!(out.contains(&format!("SIGTERM to pid {web}")), "{out}");
    wait_for("web to be restarted after the signal", T, || {
        let c = d.comp("web")?;
        (c["pid"].as_u64()? != web && c["restarts"] == 1).then_some(())
    });
    assert!(!alive(web as u32));

    // logs -n from the file.
    let out = d.ctl_ok(&["logs", "db", "-n", "2"]);
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(out.contains("[db]"), "{out}");

    // graph, text and dot.
    let out = d.ctl_ok(&["graph"]);
    assert!(out.contains("api [running] after db (ready)"), "{out}");
    let dot = d.ctl_ok(&["graph", "--dot"]);
    assert!(
        dot.starts_with("digraph") && dot.contains("\"web\" -> \"api\""),
        "{dot}"
    );

    // events: JSON lines with consecutive sequence numbers.
    let ev = d.ctl_ok(&["events", "--json"]);
    let seqs: Vec<u64> = ev
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        seqs.len() > 10 && seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "{seqs:?}"
    );

    // reload: unchanged is fine; an invalid file changes nothing (tests/it/reload.rs has the rest).
    assert!(d.ctl_ok(&["reload"]).contains("unchanged"));
    let cfg = d.path("graph.toml");
    std::fs::write(&cfg, "[component.x\n").unwrap();
    let o = d.ctl(&["reload"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("graph.toml:1"),
        "{o:?}"
    );
    assert_eq!(
        d.comp("db").unwrap()["state"],
        "ready",
        "a failed reload changed things"
    );

    // version, completions, man page.
    let v = d.ctl_ok(&["version"]);
    assert!(
        v.contains("dmucctl") && v.contains(&format!("pid {}", d.pid())),
        "{v}"
    );
    assert!(d.ctl_ok(&["completions", "bash"]).contains("dmucctl"));
    assert!(d.ctl_ok(&["man"]).contains(".TH dmucctl"));

    // unknown component: exit 1 with a hint.
    let o = d.ctl(&["restart", "wbe"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("did you mean `web`?"),
        "{o:?}"
    );
    // usage error: exit 2.
    assert_eq!(d.ctl(&["restart"]).status.code(), Some(2));

    // shutdown waits until the daemon is gone, and says how the ordered stop goes: a
    // line as each running component stops, dependents first.
    let st: Value = serde_json::from_str(&d.ctl_ok(&["status", "--json"])).unwrap();
    let running: Vec<&str> = ["web", "api", "db"]
        .into_iter()
        .filter(|n| {
            st["components"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["name"] == *n && c["pid"].is_u64())
        })
        .collect();
    assert!(running.contains(&"db"), "{st}");
    let out = d.ctl_ok(&["shutdown"]);
    assert!(out.contains("dmucd stopped"), "{out}");
    let stopped: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("-> stopped"))
        .filter_map(|l| {
            ["web", "api", "db"]
                .into_iter()
                .find(|n| l.contains(&format!(" {n}: ")))
        })
        .collect();
    assert_eq!(stopped, running, "{out}");
    assert_eq!(d.wait_exit(T), Some(0));
    assert!(!d.socket().exists(), "socket left behind");
    let o = d.ctl(&["status"]);
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains(&d.socket().display().to_string()));
}

#[test]
fn check_is_offline_and_matches_dmucd() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    std::fs::write(
        &cfg,
        "[component.a]\ncommand = [\"true\"]\nafter = [\"b\"]\n",
    )
    .unwrap();
    let run = |bin: &str, args: &[&str]| {
        Command::new(bin_dir().join(bin))
            .args(args)
            .arg(&cfg)
            .output()
            .unwrap()
    };
    let ctl = run("dmucctl", &["check"]);
    let daemon = run("dmucd", &["--check", "--config"]);
    assert_eq!(ctl.status.code(), Some(1));
    assert_eq!(ctl.stderr, daemon.stderr);
    assert!(String::from_utf8_lossy(&ctl.stderr).contains("g.toml:3"));
    std::fs::write(&cfg, "[component.a]\ncommand = [\"true\"]\n").unwrap();
    let ctl = run("dmucctl", &["check"]);
    let daemon = run("dmucd", &["--check", "--config"]);
    assert_eq!(ctl.status.code(), Some(0));
    assert_eq!(ctl.stdout, daemon.stdout);
}

#[test]
fn hostile_frames_get_error_replies_and_the_connection_survives() {
    let d = Daemon::start(&graph());
    let mut r = Raw::connect(&{
        wait_for("socket", T, || d.socket().exists().then_some(()));
        d.socket()
    });
    // Before hello.
    assert_eq!(
        err_code(&r.call(json!({"id": 1, "verb": "status"}))),
        "hello-required"
    );
    // Another major version.
    let v = r.call(json!({"id": 2, "verb": "hello", "version": "2.0"}));
    assert_eq!(err_code(&v), "version-mismatch");
    assert_eq!(v["id"], 2);
    let v = r.call(json!({"id": 3, "verb": "hello", "version": "1.0"}));
    assert_eq!(v["result"]["version"], "1.0");
    assert_eq!(v["result"]["can_write"], true);

    r.send_raw(b"{this is not json\n");
    assert_eq!(err_code(&r.frame()), "parse-error");
    r.send_raw(b"[1,2,3]\n");
    assert_eq!(err_code(&r.frame()), "parse-error");
    assert_eq!(err_code(&r.call(json!({"verb": "status"}))), "bad-request");
    let v = r.call(json!({"id": 4, "verb": "frobnicate"}));
    assert_eq!((err_code(&v), v["id"].as_u64()), ("unknown-verb", Some(4)));
    let v = r.call(json!({"id": 5, "verb": "signal", "name": "db"}));
    assert_eq!(err_code(&v), "bad-request");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("signal"),
        "{v}"
    );
    let v = r.call(json!({"id": 6, "verb": "status", "names": ["nope"]}));
    assert_eq!(err_code(&v), "unknown-component");
    let v = r.call(json!({"id": 7, "verb": "signal", "name": "db", "signal": "SIGNOPE"}));
    assert_eq!(err_code(&v), "bad-request");
    let v = r.call(json!({"id": 8, "verb": "cancel", "stream": 99}));
    assert_eq!(err_code(&v), "unknown-stream");

    // 2 MiB without a newline, then the newline: one error, then business as usual.
    let big = vec![b'x'; 2 << 20];
    r.send_raw(&big);
    r.send_raw(b"\n");
    assert_eq!(err_code(&r.frame()), "frame-too-large");
    // A frame just under the limit is read (and rejected as JSON, not as too large).
    let mut near = vec![b' '; (1 << 20) - 100];
    near.extend_from_slice(br#"{"id":9,"verb":"status"}"#);
    near.push(b'\n');
    r.send_raw(&near);
    let v = r.frame();
    assert_eq!(
        v["id"],
        9,
        "{}",
        &v.to_string()[..200.min(v.to_string().len())]
    );
    assert!(v["result"]["components"].is_array());

    // Pipelined requests are answered in order, each with its id.
    r.send_raw(b"{\"id\":10,\"verb\":\"graph\"}\n{\"id\":11,\"verb\":\"status\"}\n");
    assert_eq!(r.frame()["id"], 10);
    assert_eq!(r.frame()["id"], 11);
    assert!(alive(d.pid()), "the daemon died of bad input");
}

#[test]
fn fifty_clients_two_hundred_requests_each() {
    let mut d = Daemon::start(&graph());
    d.wait_state("db", "ready", T);
    let sock = d.socket();
    let threads: Vec<_> = (0..50)
        .map(|t| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut r = Raw::connect(&sock);
                r.call(json!({"id": 0, "verb": "hello", "version": "1.0"}));
                for i in 1..=200u64 {
                    let id = t * 1000 + i;
                    let verb = if i % 2 == 0 { "status" } else { "graph" };
                    let v = r.call(json!({"id": id, "verb": verb}));
                    assert_eq!(v["id"].as_u64(), Some(id), "{v}");
                    assert!(v.get("result").is_some(), "{v}");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn a_client_that_never_reads_does_not_stall_others() {
    let mut d = Daemon::start(&graph());
    d.wait_state("db", "ready", T);
    // Follow the chatty db's log and events, and never read: its queues fill up.
    let mut stalled = d.raw();
    stalled.send(json!({"id": 1, "verb": "logs", "name": "db", "follow": true}));
    stalled.send(json!({"id": 2, "verb": "events", "follow": true}));
    // And pipeline far more requests than its socket buffer and reply queue hold.
    let mut flood = stalled.w.try_clone().unwrap();
    let flooder = std::thread::spawn(move || {
        use std::io::Write;
        let line = b"{\"id\":3,\"verb\":\"status\"}\n".repeat(100);
        for _ in 0..200 {
            if flood.write_all(&line).is_err() {
                break; // disconnected by the daemon: what we expect
            }
        }
    });
    // Make events while another client keeps getting answers.
    let mut other = d.raw();
    for i in 0..30 {
        let v = other.call(json!({"id": 100 + i, "verb": "restart", "names": ["web"]}));
        assert!(v.get("result").is_some(), "{v}");
        let v = other.call(json!({"id": 200 + i, "verb": "status"}));
        assert_eq!(v["id"], 200 + i);
    }
    flooder.join().unwrap();
    wait_for("the stalled client to be disconnected", T, || {
        d.stderr()
            .contains("does not read its replies: disconnecting")
            .then_some(())
    });
    drop(stalled);
    let v = other.call(json!({"id": 999, "verb": "status"}));
    assert!(v.get("result").is_some());
}

#[test]
fn events_since_resumes_without_gaps_or_duplicates_and_follow_streams() {
    let mut d = Daemon::start(&graph());
    d.wait_state("web", "running", T);
    let mut f = d.raw();
    let last = |d: &Daemon| -> u64 {
        let ev = d.ctl_ok(&["events", "--json"]);
        let l = ev.lines().last().unwrap();
        serde_json::from_str::<Value>(l).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let mid = last(&d);
    f.send(json!({"id": 1, "verb": "events", "since": mid, "follow": true}));
    d.ctl_ok(&["restart", "web"]);
    // The stream carries exactly mid+1, mid+2, ... (some from the backlog, some live).
    let mut want = mid + 1;
    let end = last(&d);
    while want <= end {
        let v = f.frame();
        assert_eq!(v["id"], 1, "{v}");
        assert_eq!(v["stream"]["event"]["seq"].as_u64(), Some(want), "{v}");
        want += 1;
    }
    let since = d.ctl_ok(&["events", "--json", "--since", &mid.to_string()]);
    let seqs: Vec<u64> = since
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, ((mid + 1)..=end).collect::<Vec<_>>());
    // Cancel ends the stream with a terminal frame.
    f.send(json!({"id": 2, "verb": "cancel", "stream": 1}));
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(f.frame());
    }
    assert!(
        got.iter()
            .any(|v| v["id"] == 1 && v["result"]["cancelled"] == true),
        "{got:?}"
    );
    assert!(
        got.iter()
            .any(|v| v["id"] == 2 && v.get("result").is_some()),
        "{got:?}"
    );

    // `dmucctl events -f`, as `journalctl -f`: the last 10 events, then what comes.
    let mut follow = Command::new(bin_dir().join("dmucctl"))
        .args(["--socket"])
        .arg(d.socket())
        .args(["events", "-f", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut seq = || -> u64 {
        let l = lines.next().unwrap().unwrap();
        serde_json::from_str::<Value>(&l).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let backlog: Vec<u64> = (0..10).map(|_| seq()).collect();
    assert_eq!(backlog, ((end - 9)..=end).collect::<Vec<_>>());
    d.ctl_ok(&["restart", "web"]);
    assert_eq!(seq(), end + 1, "the first new event, nothing between");
    let _ = follow.kill();
    let _ = follow.wait();
    // `dmucctl events` says when it shows only the recent ones.
    let o = d.ctl(&["events"]);
    let said = String::from_utf8_lossy(&o.stderr);
    assert_eq!(said.contains("-- events from #"), end > 100, "{said}");
}

#[test]
fn logs_follow_sees_lines_written_after_it_started() {
    let mut d = Daemon::start(&graph());
    d.wait_state("db", "ready", T);
    let mut child = Command::new(bin_dir().join("dmucctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["logs", "-f", "-n", "0", "db"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let size_at_start = std::fs::metadata(d.path("log/db.log")).unwrap().len();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("[db]"), "{line:?}");
    // That line was not in the file when following began.
    let text = std::fs::read_to_string(d.path("log/db.log")).unwrap();
    let at = text
        .find(line.trim_end())
        .expect("followed line is in the file");
    assert!(
        at as u64 >= size_at_start - 1,
        "old line {line:?} at {at} < {size_at_start}"
    );
}

#[test]
fn a_uid_without_rights_may_read_status_only() {
    let toml = format!("[daemon]\npublic-status = true\n{}", graph());
    let mut d = Daemon::start(&toml);
    d.wait_state("db", "ready", T);
    // Let `nobody` reach the socket: the test dir is private, the socket 0660.
    d.open_to_others(true);
    let o = d.ctl_as_nobody(&["status"]);
    assert!(o.status.success(), "{o:?}");
    let o = d.ctl_as_nobody(&["stop", "db"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("uid 65534 may only read status"), "{err}");
    assert_eq!(d.comp("db").unwrap()["state"], "ready");
    let o = d.ctl_as_nobody(&["logs", "db"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    // Root may.
    d.ctl_ok(&["restart", "web"]);
}

#[test]
fn status_can_be_closed_to_others() {
    let toml = format!("[daemon]\npublic-status = false\n{}", graph());
    let mut d = Daemon::start(&toml);
    d.wait_state("db", "ready", T);
    d.open_to_others(true);
    let o = d.ctl_as_nobody(&["status"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("may not use this daemon"));
}

#[test]
fn a_second_daemon_on_the_socket_refuses_and_a_stale_socket_is_replaced() {
    let d = Daemon::start(&graph());
    wait_for("socket", T, || d.socket().exists().then_some(()));
    let other = tempfile::tempdir().unwrap();
    let o = Command::new(bin_dir().join("dmucd"))
        .arg("--config")
        .arg(d.path("graph.toml"))
        .arg("--socket")
        .arg(d.socket())
        .arg("--tmux-socket")
        .arg(other.path().join("tmux.sock"))
        .arg("--state-dir")
        .arg(other.path().join("state"))
        .arg("--log-dir")
        .arg(other.path().join("log"))
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("pid {}", d.pid()))
            && err.contains(&d.socket().display().to_string()),
        "{err}"
    );
    assert!(
        !other.path().join("tmux.sock").exists(),
        "it started tmux anyway"
    );

    // A socket file nobody listens on is replaced.
    let stale = tempfile::tempdir().unwrap();
    let path = stale.path().join("run/dmucd.sock");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // Bound in a child that then exits: a listener bound here could be held open for a moment
    // by a process another test thread is forking, and then it would rightly count as live.
    // SAFETY: the child only makes system calls (socket, bind) and _exits.
    match unsafe { nix::unistd::fork() }.unwrap() {
        nix::unistd::ForkResult::Child => {
            let ok = std::os::unix::net::UnixListener::bind(&path).is_ok();
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        nix::unistd::ForkResult::Parent { child } => {
            let st = nix::sys::wait::waitpid(child, None).unwrap();
            assert_eq!(st, nix::sys::wait::WaitStatus::Exited(child, 0));
        }
    }
    assert!(path.exists());
    let mut d2 = Daemon::start_in(stale, &graph());
    d2.wait_state("db", "ready", T);
    assert!(d2.ctl_ok(&["status"]).contains("db"));
    d2.stop();
}

#[test]
fn the_tmux_status_line_shows_each_state_and_a_summary() {
    let mut d = Daemon::start(&graph());
    d.wait_state("web", "running", T);
    let tmux = |args: &[&str]| d.tmux(args).trim().to_string();
    let marks = || {
        tmux(&[
            "list-windows",
            "-t",
            "dmuc",
            "-F",
            "#{@dmuc_component}=#{@dmuc_mark}",
        ])
    };
    wait_for("marks for every window", T, || {
        let m = marks();
        (m.contains("db=#[fg=green]✓") && m.contains("web=#[fg=green]●")).then_some(())
    });
    wait_for("the summary", T, || {
        (tmux(&["show", "-gv", "@dmuc_summary"]) == "dmuc 3/3 up").then_some(())
    });
    d.ctl_ok(&["stop", "web"]);
    wait_for("web's mark to change", T, || {
        marks().contains("web=#[dim]○").then_some(())
    });
    let s = tmux(&["show", "-gv", "@dmuc_summary"]);
    assert_eq!(
        s, "dmuc 2/3 up",
        "a stopped component is not a problem to report"
    );
    // The window keeps the component's plain name.
    assert!(
        tmux(&["list-windows", "-t", "dmuc", "-F", "#W"])
            .lines()
            .any(|l| l == "web")
    );
    // `C-b w` and `C-b s` list the component session, not dmucd's own control session: the
    // bindings' filter, evaluated by this tmux for each session.
    let keys = tmux(&["list-keys", "-T", "prefix"]);
    let filter = "#{?#{m:_dmucctl*,#{session_name}},0,1}";
    for k in ["prefix w choose-tree -Zw -f", "prefix s choose-tree -Zs -f"] {
        assert!(
            keys.lines().any(|l| {
                let l = l.split_whitespace().collect::<Vec<_>>().join(" ");
                l.contains(k) && l.contains(filter)
            }),
            "{k}: {keys}"
        );
    }
    let shown = tmux(&[
        "list-sessions",
        "-F",
        &format!("#{{session_name}}={filter}"),
    ]);
    let mut ctl = 0;
    for l in shown.lines() {
        let (name, show) = l.split_once('=').unwrap();
        if name.starts_with("_dmucctl") {
            ctl += 1;
            assert_eq!(show, "0", "{shown}");
        } else {
            assert_eq!(show, "1", "{shown}");
        }
    }
    assert_eq!(ctl, 1, "{shown}");
}

#[test]
fn the_overview_window_shows_the_live_table_and_attach_targets_it() {
    let mut d = Daemon::start(&graph());
    let web = d.wait_state("web", "running", T)["pid"].to_string();
    let capture = || {
        let o = Command::new("tmux")
            .arg("-S")
            .arg(d.tmux_socket())
            .args(["capture-pane", "-p", "-t", "=dmuc:=Overview"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    wait_for("the overview to show every component up", T, || {
        let s = capture();
        (s.contains("dmuc: 3/3 up") && s.contains("NAME")).then_some(())
    });
    // dmucd draws it on a pane the idle shim holds: no watching client, start times (a
    // frame that cannot go stale) instead of uptimes.
    let s = capture();
    assert!(s.contains("STARTED") && !s.contains("UPTIME"), "{s}");
    assert!(
        s.lines().any(|l| l.starts_with("web ") && l.contains(&web)),
        "{s}"
    );
    assert_eq!(
        d.tmux(&[
            "list-panes",
            "-t",
            "=dmuc:=Overview",
            "-F",
            "#{pane_current_command}"
        ])
        .trim(),
        "dmuc-shim"
    );
    // An event redraws it.
    d.ctl_ok(&["stop", "web"]);
    wait_for("the overview to show web stopped", T, || {
        capture().contains("dmuc: 2/3 up").then_some(())
    });

    // attach execs tmux on dmuc's socket: a stand-in `tmux` on PATH records its arguments.
    let bin = tempfile::tempdir().unwrap();
    let fake = bin.path().join("tmux");
    std::fs::write(&fake, "#!/bin/sh\necho \"$@\" TMUX=${TMUX:-unset}\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Once it has run, no forked child holds it open for writing any more: dmucctl's exec of
    // it cannot meet ETXTBSY.
    output_of_fresh(&mut Command::new(&fake));
    let attach = |args: &[&str]| {
        Command::new(bin_dir().join("dmucctl"))
            .arg("--socket")
            .arg(d.socket())
            .args(args)
            .env("PATH", bin.path())
            .env("TMUX", "/tmp/outer,1,0")
            .output()
            .unwrap()
    };
    let o = attach(&["attach", "api"]);
    let sock = d.tmux_socket().display().to_string();
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("-S {sock} attach-session -t =dmuc:=api TMUX=unset")
    );
    let o = attach(&["attach"]);
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        format!("-S {sock} attach-session -t =dmuc:=Overview TMUX=unset")
    );
    let o = attach(&["attach", "nope"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn the_socket_belongs_to_the_configured_group_whose_members_may_write() {
    // nobody's primary group on Debian is nogroup (65534).
    let toml = format!("[daemon]\ngroup = \"nogroup\"\n{}", graph());
    let mut d = Daemon::start(&toml);
    d.wait_state("db", "ready", T);
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(d.socket()).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o660);
    assert_eq!(meta.gid(), 65534);
    // What the socket gives the group only, the files give the group only: the logs (in a
    // setgid directory, so that they take its group), the event log and status.json.
    wait_for("status.json", T, || {
        d.path("state/status.json").exists().then_some(())
    });
    let mode = |p: &str| {
        let m = std::fs::metadata(d.path(p)).unwrap();
        (m.mode() & 0o7777, m.gid())
    };
    assert_eq!(mode("log"), (0o2750, 65534));
    for f in ["log/db.log", "state/events.jsonl", "state/status.json"] {
        assert_eq!(mode(f), (0o640, 65534), "{f}");
    }
    // Only the directory needs opening for nobody; the socket's group mode lets it in.
    d.open_to_others(false);
    let o = d.ctl_as_nobody(&["stop", "web"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(d.comp("web").unwrap()["state"], "stopped");
}

#[test]
fn a_follower_that_falls_behind_is_told_how_many_events_it_missed() {
    let s = standin();
    // Four crash loops (zero backoff): events come fast enough that the follower's queues
    // overflow well before its 10 s write timeout would disconnect it.
    // Crash loops log every event here (crash-loop-exits = 0): their events are the flood.
    let toml: String = std::iter::once("[daemon]\ncrash-loop-exits = 0\n".to_string())
        .chain((0..4).map(|i| {
            let name = if i == 0 {
                "loop".to_string()
            } else {
                format!("loop{i}")
            };
            format!(
                r#"
[component.{name}]
command = ["{s}", "--name", "{name}", "--exit", "--exit-code", "1"]
backoff = {{ initial = "0s" }}
start-limit = {{ burst = 100000, interval = "1s" }}
"#
            )
        }))
        .collect();
    let mut d = Daemon::start(&toml);
    wait_for("the crash loop", T, || {
        (d.comp("loop")?["run"].as_u64()? > 1).then_some(())
    });
    let mut slow = d.raw();
    slow.send(json!({"id": 1, "verb": "events", "follow": true}));
    let first = d.last_seq().unwrap();
    // Far more events than the follower's queues hold (a crash loop makes ~4 per run).
    wait_for("4000 more events", Duration::from_secs(60), || {
        (d.last_seq()? > first + 4000).then_some(())
    });
    d.ctl_ok(&["stop", "loop", "loop1", "loop2", "loop3"]);
    // Read what was queued; the notice comes where the gap is (frame() has a 30 s timeout).
    let mut seen = 0;
    let dropped = loop {
        let v = slow.frame();
        if let Some(n) = v["stream"]["dropped"].as_u64() {
            break n;
        }
        assert!(v["stream"]["event"].is_object(), "{v}");
        seen += 1;
    };
    assert!(
        dropped > 0 && seen > 0,
        "dropped {dropped} after {seen} events"
    );
    assert!(alive(d.pid()));
}

#[test]
fn hold_starts_nothing_and_start_brings_what_is_needed_with_var_overrides() {
    let s = standin();
    let toml = format!(
        r#"
[vars]
greeting = "unset"
[component.db]
command = ["{s}", "--name", "db-${{greeting}}"]
[component.api]
command = ["{s}", "--name", "api"]
after = [{{ component = "db", condition = "started" }}]
[component.web]
command = ["{s}", "--name", "web"]
after = ["api"]
"#
    );
    let mut d = Daemon::start_with(
        tempfile::tempdir().unwrap(),
        &toml,
        &["--hold", "--var", "greeting=hello"],
    );
    wait_for("the daemon to answer", T, || {
        d.ctl(&["status"]).status.success().then_some(())
    });
    let table = d.ctl_ok(&["status"]);
    assert_eq!(table.matches("stopped").count(), 3, "{table}");
    let out = d.ctl_ok(&["start", "api"]);
    assert!(
        out.contains("db: pending -> starting") || out.contains("db: stopped"),
        "{out}"
    );
    assert_eq!(d.comp("api").unwrap()["state"], "running");
    assert_eq!(d.comp("web").unwrap()["state"], "stopped");
    wait_for("db's log", T, || {
        d.log("db").contains("[db-hello]").then_some(())
    });
    // reload keeps applying the --var values: the config is unchanged.
    assert!(d.ctl_ok(&["reload"]).contains("unchanged"));
}

#[test]
fn a_closed_overview_is_never_drawn_into_the_window_that_reuses_its_terminal() {
    // Terminal numbers are reused: the next pane gets the lowest free /dev/pts/N. dmucd must
    // not draw its table into whichever window has the old overview's number now.
    let mut d = Daemon::start(&graph());
    let old_web = d.wait_state("web", "running", T)["pid"].as_u64().unwrap();
    let tty = |d: &Daemon, w: &str| {
        d.tmux(&["display", "-p", "-t", &format!("=dmuc:={w}"), "#{pane_tty}"])
            .trim()
            .to_string()
    };
    let overview_tty = tty(&d, "Overview");
    assert!(overview_tty.starts_with("/dev/pts/"), "{overview_tty:?}");
    let old_window = d.tmux(&["display", "-p", "-t", "=dmuc:=web", "#{window_id}"]);
    d.tmux(&["kill-window", "-t", "=dmuc:=Overview"]);
    d.tmux(&["kill-window", "-t", "=dmuc:=web"]);
    // web keeps running and gets a new window (which may get the overview's number).
    wait_for("web in a new window", T, || {
        let w = d.tmux(&["display", "-p", "-t", "=dmuc:=web", "#{window_id}"]);
        (!w.trim().is_empty() && w != old_window).then_some(())
    });
    let web = d.comp("web").unwrap();
    assert_eq!(
        web["pid"].as_u64(),
        Some(old_web),
        "closing its window restarted web"
    );
    let web_tty = tty(&d, "web");
    // State changes redraw the overview (if dmucd still thought it had one).
    d.ctl_ok(&["restart", "api"]);
    let api = d.wait_state("api", "running", T)["pid"].clone();
    // status.json is written right after the overview is drawn, in the same paced turn.
    wait_for("status.json to show api's new run", T, || {
        let s = std::fs::read_to_string(d.path("state/status.json")).ok()?;
        let v: Value = serde_json::from_str(&s).ok()?;
        v["components"]
            .as_array()?
            .iter()
            .any(|c| c["name"] == "api" && c["pid"] == api && c["state"] == "running")
            .then_some(())
    });
    let shown = d.tmux(&["capture-pane", "-p", "-t", "=dmuc:=web"]);
    assert!(
        !shown.contains("STARTED") && !shown.contains("dmuc: "),
        "the overview was drawn into web's window ({web_tty}, the overview had {overview_tty}):\n{shown}"
    );
    assert!(web["pid"].as_u64().is_some());
}

#[test]
fn status_watch_redraws_on_events_until_the_daemon_goes_away() {
    use std::io::Read;
    let mut d = Daemon::start(&graph());
    d.wait_state("web", "running", T);
    let mut watch = Command::new(bin_dir().join("dmucctl"))
        .arg("--socket")
        .arg(d.socket())
        .args(["status", "--watch"])
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Everything it prints, as it comes (the frames never end in a way a line reader sees).
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    let mut out = watch.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let mut until = |what: &str, needle: &str| {
        wait_for(what, T, || {
            while let Ok(b) = rx.try_recv() {
                seen.push_str(&String::from_utf8_lossy(&b));
            }
            // Only the newest frame counts: each starts by clearing the screen.
            let frame = seen.rsplit("\x1b[2J").next().unwrap_or_default();
            frame.contains(needle).then_some(())
        })
    };
    until("a first frame with every component up", "dmuc: 3/3 up");
    d.ctl_ok(&["stop", "web"]);
    until("a frame after web stopped", "dmuc: 2/3 up");
    // It ends by itself when dmucd does.
    assert_eq!(d.stop(), Some(0));
    let st = wait_for("the watcher to exit", T, || watch.try_wait().unwrap());
    assert!(st.success(), "{st}");
    reader.join().unwrap();
}

#[test]
fn the_front_answers_status_as_dmucctl_full_would_and_hands_it_everything_else() {
    // Held: nothing runs but the oneshots started below, so no column moves with time and
    // the two clients' tables can be compared byte for byte.
    let toml = r#"
[component.setup]
kind = "oneshot"
command = ["/bin/true"]
[component.broken]
kind = "oneshot"
command = ["/bin/sh", "-c", "echo 'a \"quoted\" \\ line'; exit 3"]
[component.web]
command = ["/bin/sleep", "60"]
after = ["setup"]
"#;
    let mut d = Daemon::start_with(tempfile::tempdir().unwrap(), toml, &["--hold"]);
    wait_for("the daemon to answer", T, || {
        d.ctl(&["status"]).status.success().then_some(())
    });
    d.ctl_ok(&["start", "setup"]);
    let _ = d.ctl(&["start", "broken"]);
    // Settled: no column may change between the two clients' calls.
    d.wait_state("setup", "completed", T);
    d.wait_state("broken", "failed", T);
    let run = |bin: &str, args: &[&str]| {
        Command::new(bin_dir().join(bin))
            .arg("--socket")
            .arg(d.socket())
            .args(args)
            .env_remove("DMUC_SOCKET")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    };
    for args in [
        &["status"][..],
        &["status", "web", "setup"],
        &["status", "broken"],
    ] {
        let (front, full) = (run("dmucctl", args), run("dmucctl-full", args));
        assert!(front.status.success(), "{args:?}: {front:?}");
        assert_eq!(
            String::from_utf8_lossy(&front.stdout),
            String::from_utf8_lossy(&full.stdout),
            "{args:?}"
        );
        assert!(front.stderr.is_empty(), "{front:?}");
    }
    let table = String::from_utf8_lossy(&run("dmucctl", &["status"]).stdout).into_owned();
    assert!(
        table.contains("completed") && table.contains("exit status 3") && table.contains("stopped"),
        "{table}"
    );

    // On a terminal, in colour: both run under script(1), which gives them a pty.
    let on_tty = |bin: &str| {
        let cmd = format!(
            "{} --socket {} status",
            bin_dir().join(bin).display(),
            d.socket().display()
        );
        let o = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env_remove("NO_COLOR")
            .env_remove("DMUC_SOCKET")
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (front, full) = (on_tty("dmucctl"), on_tty("dmucctl-full"));
    assert!(front.contains("\x1b[32mcompleted\x1b[0m"), "{front:?}");
    assert_eq!(front, full);

    // What the front does not answer, dmucctl-full does, with its output and exit code.
    let o = run("dmucctl", &["status", "nosuch"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("no component named `nosuch`"));
    let o = run("dmucctl", &["status", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["components"].as_array().unwrap().len(), 3);
    let o = Command::new(bin_dir().join("dmucctl"))
        .args(["--socket", "/nonexistent/dmucd.sock", "status"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot reach dmucd"));

    // Alone, the front still answers status (it never needed dmucctl-full for it), and
    // says what is missing for the rest.
    let alone = tempfile::tempdir().unwrap();
    let front = alone.path().join("dmucctl");
    std::fs::copy(bin_dir().join("dmucctl"), &front).unwrap();
    let lone = |args: &[&str]| {
        output_of_fresh(
            Command::new(&front)
                .arg("--socket")
                .arg(d.socket())
                .args(args)
                .env("PATH", alone.path())
                .env("NO_COLOR", "1"),
        )
    };
    let o = lone(&["status"]);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), table);
    let o = lone(&["version"]);
    assert_eq!(o.status.code(), Some(1), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot run dmucctl-full") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn the_front_and_the_shim_start_without_a_dynamic_loader() {
    // Their point is to start without ld.so and glibc: an ELF with no PT_INTERP and no
    // PT_DYNAMIC (static, nothing to relocate).
    for bin in ["dmucctl", "dmuc-shim"] {
        let elf = std::fs::read(bin_dir().join(bin)).unwrap();
        assert_eq!(&elf[..4], b"\x7fELF", "{bin}");
        let u16_at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
        let phoff = u64::from_le_bytes(elf[0x20..0x28].try_into().unwrap()) as usize;
        let (size, count) = (u16_at(0x36), u16_at(0x38));
        let types: Vec<u32> = (0..count)
            .map(|i| {
                let o = phoff + i * size;
                u32::from_le_bytes(elf[o..o + 4].try_into().unwrap())
            })
            .collect();
        const PT_DYNAMIC: u32 = 2;
        const PT_INTERP: u32 = 3;
        assert!(
            !types.contains(&PT_INTERP) && !types.contains(&PT_DYNAMIC),
            "{bin}: program headers {types:?}"
        );
    }
    // And dmucctl-full is the ordinary, dynamically linked program.
    let full = std::fs::read(bin_dir().join("dmucctl-full")).unwrap();
    assert!(full.windows(b"ld-linux".len()).any(|w| w == b"ld-linux"));
}

/// A `status --wide` or `top` row of `name`: its cells (the last, LAST EXIT, may hold spaces).
fn wide_row(text: &str, name: &str) -> Vec<String> {
    text.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name}:\n{text}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// "31.2M" in MiB.
fn mib(cell: &str) -> f64 {
    let (n, unit) = cell.split_at(cell.len() - 1);
    let n: f64 = n.parse().unwrap();
    match unit {
        "K" => n / 1024.0,
        "M" => n,
        "G" => n * 1024.0,
        _ => panic!("not a size: {cell}"),
    }
}

#[test]
fn status_wide_and_top_show_each_component_s_cpu_and_memory() {
    let toml = r#"
[component.burn]
command = ["sh", "-c", "while :; do :; done"]

[component.big]
command = ["sh", "-c", "x=$(head -c 30000000 /dev/zero | tr '\\0' a); echo ready; sleep 1000"]
ready = { log = "^ready$" }

[component.idle]
command = ["sleep", "1000"]
"#;
    let mut d = Daemon::start(toml);
    d.wait_state("big", "ready", T);
    d.wait_state("idle", "running", T);
    d.wait_state("burn", "running", T);
    // Columns: NAME STATE PID UPTIME CPU% MEM PROCS RESTARTS LAST EXIT.
    let wide = d.ctl_ok(&["status", "--wide"]);
    assert!(wide.starts_with("NAME "), "{wide}");
    assert!(wide.lines().all(|l| l.len() <= 100), "{wide}");
    let big = wide_row(&wide, "big");
    assert!(mib(&big[5]) >= 25.0, "the shell holds 30 MB:\n{wide}");
    assert_eq!(big[6], "2", "sh and its sleep:\n{wide}");
    let idle = wide_row(&wide, "idle");
    assert_eq!((idle[4].as_str(), idle[6].as_str()), ("0.0", "1"), "{wide}");
    // top: two frames half a second apart; the second is over that interval, busiest first.
    let top = d.ctl_ok(&["top", "-n", "2", "-d", "0.5"]);
    let second = top
        .split("dmuc top:")
        .nth(2)
        .unwrap_or_else(|| panic!("{top}"));
    let first_row = second.lines().nth(3).unwrap_or_default();
    assert!(first_row.starts_with("burn "), "{top}");
    let cpu: f64 = wide_row(second, "burn")[4].parse().unwrap();
    assert!(cpu > 30.0, "a busy loop uses a core:\n{top}");
    d.ctl_ok(&["stop", "burn"]);
    top_quits_on_q(&d);
    let o = d.ctl(&["top", "-d", "0"]);
    assert_eq!(o.status.code(), Some(2), "{o:?}");
    assert_eq!(d.stop(), Some(0));
}

/// `q` quits `dmucctl top` on a terminal (script(1) gives it a pty), long before its next
/// refresh, and the terminal gets its modes back.
fn top_quits_on_q(d: &Daemon) {
    use std::io::{Read as _, Write as _};
    let cmd = format!(
        "{} --socket {} top -d 600; stty -a",
        bin_dir().join("dmucctl").display(),
        d.socket().display()
    );
    let mut child = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env_remove("DMUC_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut b = [0u8; 4096];
        while let Ok(n) = out.read(&mut b) {
            if n == 0 || tx.send(b[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    // Until the output shows `want`, within T.
    let read_until = |seen: &mut Vec<u8>, want: &str| {
        let deadline = std::time::Instant::now() + T;
        while !String::from_utf8_lossy(seen).contains(want) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(b) => seen.extend(b),
                Err(_) => return false,
            }
        }
        true
    };
    if !read_until(&mut seen, "q quits") {
        let _ = child.kill();
        panic!(
            "top's first frame, saying q quits: {:?}",
            String::from_utf8_lossy(&seen)
        );
    }
    child.stdin.as_mut().unwrap().write_all(b"q").unwrap();
    // `stty -a` after top: canonical mode and echo are back.
    if !read_until(&mut seen, "icanon") {
        let _ = child.kill();
        panic!(
            "top quitting on q (its refresh is 10 min away): {:?}",
            String::from_utf8_lossy(&seen)
        );
    }
    let st = child.wait().unwrap();
    let text = String::from_utf8_lossy(&seen).into_owned();
    assert!(st.success(), "{st:?}: {text}");
    let modes: Vec<&str> = text.split_whitespace().collect();
    for m in ["icanon", "echo", "isig"] {
        assert!(modes.contains(&m), "the terminal's {m} put back: {text}");
    }
}

/// The Overview's CPU% and MEM columns: there while a client shows the Overview (a control
/// client here, which tmux lists as any other), gone when it shows another window or leaves.
#[test]
fn the_overview_window_shows_cpu_and_memory_while_a_client_shows_it() {
    let toml = r#"
[component.big]
command = ["sh", "-c", "x=$(head -c 30000000 /dev/zero | tr '\\0' a); echo ready; sleep 1000"]
ready = { log = "^ready$" }
"#;
    let mut d = Daemon::start(toml);
    d.wait_state("big", "ready", T);
    let overview = || d.tmux(&["capture-pane", "-p", "-t", "=dmuc:=Overview"]);
    assert!(!overview().contains("CPU%"), "{}", overview());
    let mut client = Command::new("tmux")
        .arg("-S")
        .arg(d.tmux_socket())
        .args(["-C", "attach-session", "-t", "=dmuc:=Overview"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let shown = wait_for("the Overview's resource columns", T, || {
        let t = overview();
        t.contains("CPU%").then_some(t)
    });
    // NAME STATE PID STARTED CPU% MEM RESTARTS READY LAST EXIT
    let big = wide_row(&shown, "big");
    assert!(mib(&big[5]) >= 25.0, "the shell holds 30 MB:\n{shown}");
    // The client goes to another window, then back, then away.
    d.tmux(&["select-window", "-t", "=dmuc:=big"]);
    wait_for("the columns to go with the client", T, || {
        (!overview().contains("CPU%")).then_some(())
    });
    d.tmux(&["select-window", "-t", "=dmuc:=Overview"]);
    wait_for("the columns back", T, || {
        overview().contains("CPU%").then_some(())
    });
    drop(client.stdin.take());
    client.kill().unwrap();
    client.wait().unwrap();
    wait_for("the columns to go when the client leaves", T, || {
        (!overview().contains("CPU%")).then_some(())
    });
    assert_eq!(d.stop(), Some(0));
}
