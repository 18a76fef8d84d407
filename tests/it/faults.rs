//! Fault injection: crash loops, a daemon killed at the worst moments, many clients coming
//! and going, hostile requests and hostile strings. docs/reliability.md lists each fault with
//! the test that shows the expected behaviour.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::*;

const T: Duration = Duration::from_secs(30);

fn call(w: &mut UnixStream, r: &mut BufReader<UnixStream>, v: Value) -> Value {
    w.write_all(format!("{v}\n").as_bytes()).unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    serde_json::from_str(&line).unwrap()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

#[test]
fn a_crash_loop_is_bounded_by_backoff_and_the_start_limit_and_hurts_nobody() {
    let s = standin();
    let toml = format!(
        r#"
[component.steady]
command = ["{s}", "--name", "steady"]
[component.flappy]
command = ["{s}", "--name", "flappy", "--exit", "--exit-code", "3"]
backoff = {{ initial = "50ms", factor = 2.0, max = "1s" }}
start-limit = {{ burst = 6, interval = "1m" }}
"#
    );
    let mut d = Daemon::start(&toml);
    let steady = d.wait_state("steady", "running", T)["pid"]
        .as_u64()
        .unwrap();
    let f = d.wait_state("flappy", "failed", T);
    assert!(f["reason"].as_str().unwrap().contains("start limit"), "{f}");
    let ev = d.events();
    let starts: Vec<u64> = ev
        .iter()
        .filter(|e| e["component"] == "flappy" && e["to"] == "starting")
        .map(|e| e["ts_us"].as_u64().unwrap() / 1000)
        .collect();
    assert_eq!(starts.len(), 6, "exactly the burst");
    // Each wait at least the growing backoff (50, 100, 200, 400, 800 ms).
    for (i, w) in starts.windows(2).enumerate() {
        let want = 50u64 << i;
        assert!(
            w[1] - w[0] >= want - 5,
            "restart {i} after {} ms, backoff {want} ms",
            w[1] - w[0]
        );
    }
    let exits = ev
        .iter()
        .filter(|e| e["component"] == "flappy" && e["event"] == "exit")
        .all(|e| e["code"] == 3);
    assert!(exits, "every exit status exact");
    assert_eq!(
        d.comp("steady").unwrap()["pid"].as_u64(),
        Some(steady),
        "the neighbour is untouched"
    );
    assert_eq!(d.comp("steady").unwrap()["restarts"], 0);
    assert_eq!(d.stop(), Some(0));
}

/// A crash loop with no backoff and no start limit: its events are coalesced (one
/// `crash_loop` record per 100 exits or per window), the neighbour's are not, and a stop ends
/// the loop with what it held back, then the stop.
#[test]
fn a_crash_loop_storm_is_coalesced_in_the_event_log() {
    let s = standin();
    let toml = format!(
        r#"
[daemon]
crash-loop-window = "2s"
[component.steady]
command = ["{s}", "--name", "steady"]
[component.storm]
command = ["{s}", "--name", "storm", "--exit", "--exit-code", "4"]
backoff = {{ initial = "0s" }}
start-limit = {{ burst = 1000000, interval = "1s" }}
"#
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("steady", "running", T);
    wait_for("300 restarts", Duration::from_secs(60), || {
        (d.comp("storm")?["run"].as_u64()? > 300).then_some(())
    });
    d.ctl_ok(&["restart", "steady"]);
    d.ctl_ok(&["stop", "storm"]);
    d.wait_state("storm", "stopped", T);
    let runs = d.comp("storm").unwrap()["run"].as_u64().unwrap();
    let ev = d.events();
    let of = |c: &'static str| ev.iter().filter(move |e| e["component"] == c);
    let mine: Vec<&Value> = of("storm").collect();
    let last_loop = mine
        .iter()
        .rposition(|e| e["event"] == "crash_loop")
        .unwrap();
    let exits = mine[..last_loop]
        .iter()
        .filter(|e| e["event"] == "exit")
        .count();
    let loops: Vec<&Value> = of("storm").filter(|e| e["event"] == "crash_loop").collect();
    // Ten exits logged one by one (what made it a loop), then records until the stop.
    assert_eq!(exits, 10, "exits logged of {runs} runs");
    assert_eq!(loops[0]["phase"], "begin", "{loops:?}");
    assert!(
        loops.len() >= 2 && loops.len() < 2 + runs as usize / 50,
        "{loops:?}"
    );
    let counted: u64 = loops[1..]
        .iter()
        .map(|l| l["exits"].as_u64().unwrap())
        .sum();
    assert!(
        counted + 10 >= runs - 1,
        "{counted} exits coalesced of {runs} runs"
    );
    assert!(
        loops[1..]
            .iter()
            .all(|l| l["last_exit"].as_str().is_none_or(|x| x.contains("4"))),
        "{loops:?}"
    );
    // The stop: the loop's last record (over), then the moves to stopped, logged.
    let after = &mine[last_loop..];
    assert_eq!(after[0]["phase"], "over", "{after:?}");
    assert!(after[1..].iter().any(|e| e["to"] == "stopped"), "{after:?}");
    // The neighbour's restart is logged as it is.
    assert!(of("steady").any(|e| e["to"] == "stopping"));
    assert!(
        of("storm").count() < 40,
        "{} storm events in the log",
        of("storm").count()
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn kill_9_of_dmucd_during_start_up_and_during_shutdown_converges() {
    let s = standin();
    let port = free_port();
    let toml = format!(
        r#"
[component.db]
command = ["{s}", "--name", "db", "--port", "{port}", "--ready-after", "700ms"]
ready = {{ http = "http://127.0.0.1:{port}/health", interval = "50ms" }}
[component.api]
command = ["{s}", "--name", "api"]
after = ["db"]
[component.web]
command = ["{s}", "--name", "web"]
after = ["api"]
"#
    );
    let mut d = Daemon::start(&toml);
    // During start-up: db launched, not ready yet, api and web still waiting.
    let db = d.wait_state("db", "starting", T);
    let db_pid = wait_for("db's pid", T, || d.comp("db")?["pid"].as_u64());
    assert_eq!(db["state"], "starting");
    d.crash();
    d.restart();
    for n in ["db", "api", "web"] {
        d.wait_state(n, if n == "db" { "ready" } else { "running" }, T);
    }
    assert_eq!(
        d.comp("db").unwrap()["pid"].as_u64(),
        Some(db_pid),
        "db was adopted, not restarted"
    );

    // During shutdown: web and api already stopped, db stopping or not yet.
    let api = d.comp("api").unwrap()["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    wait_for("api to have stopped", T, || {
        (!alive(api as u32)).then_some(())
    });
    d.crash();
    d.restart();
    for n in ["db", "api", "web"] {
        d.wait_state(n, if n == "db" { "ready" } else { "running" }, T);
    }
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn two_hundred_clients_come_and_go_while_components_restart() {
    let s = standin();
    let toml = format!(
        "[component.a]\ncommand = [\"{s}\", \"--name\", \"a\"]\n[component.b]\ncommand = [\"{s}\", \"--name\", \"b\"]\n"
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("a", "running", T);
    d.wait_state("b", "running", T);
    let daemon = d.pid();
    // One client first (its descriptors come and go), then the count once it is steady.
    assert!(d.ctl_ok(&["status"]).contains("running"));
    let last = std::cell::Cell::new(usize::MAX);
    let before = wait_for("a steady descriptor count", T, || {
        let n = fds(daemon);
        (n == last.replace(n)).then_some(n)
    });
    let sock = d.socket();
    let threads: Vec<_> = (0..200u64)
        .map(|t| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut w = UnixStream::connect(&sock).unwrap();
                let mut r = BufReader::new(w.try_clone().unwrap());
                call(
                    &mut w,
                    &mut r,
                    json!({"id": 0, "verb": "hello", "version": "1.0"}),
                );
                match t % 4 {
                    // Leave at once, or after a reply, or after a stream began, or after
                    // asking for a restart.
                    0 => {}
                    1 => {
                        let v = call(&mut w, &mut r, json!({"id": t, "verb": "status"}));
                        assert_eq!(v["id"], t, "{v}");
                        assert_eq!(v["result"]["components"].as_array().unwrap().len(), 2);
                    }
                    2 => {
                        w.write_all(b"{\"id\":7,\"verb\":\"events\",\"follow\":true}\n")
                            .unwrap();
                    }
                    _ => {
                        let req =
                            json!({"id": t, "verb": "restart", "names": ["b"], "wait": false});
                        let v = call(&mut w, &mut r, req);
                        assert_eq!(v["id"], t, "{v}");
                    }
                }
            })
        })
        .collect();
    // Components restart meanwhile.
    for _ in 0..5 {
        d.ctl_ok(&["restart", "a"]);
    }
    for t in threads {
        t.join().unwrap();
    }
    assert!(alive(daemon));
    let listing = |pid: u32| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .map(|e| {
                        std::fs::read_link(e.path())
                            .map(|p| p.display().to_string())
                            .unwrap_or_default()
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let deadline = std::time::Instant::now() + T;
    while fds(daemon) > before {
        assert!(
            std::time::Instant::now() < deadline,
            "descriptors leaked: {} > {before}: {:?}",
            fds(daemon),
            listing(daemon)
        );
        std::thread::sleep(Duration::from_millis(10)); // poll interval, bounded by the deadline
    }
    assert!(d.ctl_ok(&["status"]).contains("running"));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn hostile_requests_are_bounded_and_answered() {
    let toml = r#"
[component.chatty]
kind = "oneshot"
command = ["sh", "-c", "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); echo line-$i-padding-padding-padding; done; head -c 200000 /dev/zero | tr '\\0' x; echo"]
[component.idle]
command = ["sleep", "3600"]
"#;
    let mut d = Daemon::start(toml);
    d.wait_state("chatty", "completed", T);
    let mut r = d.raw();
    // logs -n 999999999: one reply, under the frame limit, the newest lines, the rest counted.
    r.send(json!({"id": 1, "verb": "logs", "name": "chatty", "lines": 999_999_999u64}));
    let mut line = String::new();
    r.r.read_line(&mut line).unwrap();
    assert!(line.len() < 1 << 20, "reply of {} bytes", line.len());
    let v: Value = serde_json::from_str(&line).unwrap();
    let lines = v["result"]["lines"].as_array().unwrap();
    assert!(v["result"]["truncated"].as_u64().unwrap() > 0);
    assert!(
        lines
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .ends_with("cut at 64 KiB]")
    );
    // Names that try to leave the log directory are just unknown components.
    for bad in ["../../etc/passwd", "/etc/passwd", "chatty/../idle", ""] {
        let v = r.call(json!({"id": 2, "verb": "logs", "name": bad}));
        assert_eq!(v["error"]["code"], "unknown-component", "{bad}: {v}");
    }
    for (req, code) in [
        (
            json!({"id": 3, "verb": "logs", "name": "chatty", "lines": -1}),
            "bad-request",
        ),
        (
            json!({"id": 4, "verb": "events", "since": -5}),
            "bad-request",
        ),
        (
            json!({"id": 5, "verb": "signal", "name": "idle", "signal": "SIGNOTHING"}),
            "bad-request",
        ),
        (
            json!({"id": 6, "verb": "cancel", "stream": u64::MAX}),
            "unknown-stream",
        ),
    ] {
        let v = r.call(req.clone());
        assert_eq!(v["error"]["code"], code, "{req}: {v}");
    }
    let deep = format!(
        "{{\"id\":7,\"verb\":\"status\",\"names\":{}1{}}}\n",
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    r.send_raw(deep.as_bytes());
    assert!(r.frame()["error"].is_object());
    assert!(r.call(json!({"id": 8, "verb": "status"}))["result"].is_object());
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn strings_with_shell_metacharacters_reach_the_program_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let long = "y".repeat(20_000);
    let toml = format!(
        r#"
[component.args]
kind = "oneshot"
command = ["printf", "[%s]\n", "; touch {m}", "$(touch {m})", "`touch {m}`", "a b\tc", "line1\nline2", "'\"", "{long}"]
env = {{ TRICKY = "$(touch {m}); echo $HOME" }}
[component.env]
kind = "oneshot"
command = ["printenv", "TRICKY"]
env = {{ TRICKY = "$(touch {m}); echo $HOME" }}
"#,
        m = marker.display()
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("args", "completed", T);
    d.wait_state("env", "completed", T);
    let log = d.log("args");
    assert!(
        log.contains(&format!("[; touch {}]", marker.display())),
        "{log}"
    );
    assert!(log.contains(&format!("[$(touch {})]", marker.display())));
    assert!(log.contains("[a b\tc]"));
    assert!(log.contains("[line1\nline2]"));
    assert!(
        log.contains(&format!("[{long}]")),
        "a 20 kB argument arrives whole"
    );
    assert!(
        d.log("env")
            .contains(&format!("$(touch {}); echo $HOME", marker.display()))
    );
    assert!(!marker.exists(), "something went through a shell");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn an_unwritable_log_is_reported_and_logging_resumes() {
    let s = standin();
    let toml = format!(
        "[daemon]\nlog-max-size = 4096\n[component.talker]\ncommand = [\"{s}\", \"--name\", \"talker\", \"--log-every\", \"5ms\"]\n"
    );
    let mut d = Daemon::start(&toml);
    let pid = d.wait_state("talker", "running", T)["pid"]
        .as_u64()
        .unwrap();
    let log = d.path("log");
    let moved = d.path("log.moved");
    // The log directory becomes a file: the next rotation cannot create the log again.
    std::fs::rename(&log, &moved).unwrap();
    std::fs::write(&log, "not a directory").unwrap();
    let c = wait_for("the log error in the status", T, || {
        let c = d.comp("talker")?;
        c["log_error"].as_str().is_some().then_some(c)
    });
    assert!(
        c["log_error"].as_str().unwrap().contains("Not a directory"),
        "{c}"
    );
    assert_eq!(c["pid"].as_u64(), Some(pid), "the component keeps running");
    assert!(
        d.ctl_ok(&["events"])
            .contains("the log file cannot be written")
    );
    // Space comes back: logging resumes by itself.
    std::fs::remove_file(&log).unwrap();
    std::fs::rename(&moved, &log).unwrap();
    wait_for("logging to resume", T, || {
        d.comp("talker")?["log_error"].is_null().then_some(())
    });
    assert!(d.ctl_ok(&["events"]).contains("the log file works again"));
    let before = d.log("talker").len();
    wait_for("new lines in the log", T, || {
        (d.log("talker").len() > before).then_some(())
    });
    assert_eq!(d.comp("talker").unwrap()["pid"].as_u64(), Some(pid));
    assert_eq!(d.stop(), Some(0));
}

/// The daemon's own descriptor limit, made small in the child before it execs dmucd.
fn few_descriptors() -> std::io::Result<()> {
    let lim = libc::rlimit {
        rlim_cur: 64,
        rlim_max: 64,
    };
    // SAFETY: setrlimit with a valid pointer; async-signal-safe.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Out of descriptors, the control socket's accepts fail: the daemon pauses between tries
/// (it used to retry at once, 2.5 million log lines in 10 s), says so once, and answers
/// again when descriptors come back.
#[test]
fn out_of_descriptors_the_daemon_pauses_says_so_once_a_run_and_answers_again() {
    let s = standin();
    let toml = format!("[component.a]\ncommand = [\"{s}\", \"--name\", \"a\"]\n");
    let mut d = Daemon::start_pre_exec(&toml, few_descriptors);
    d.wait_state("a", "running", T);
    // Connections the daemon accepts until it has no descriptor left; the rest wait in the
    // socket's backlog, which it cannot drain.
    let conns: Vec<UnixStream> = (0..200)
        .map_while(|_| UnixStream::connect(d.socket()).ok())
        .collect();
    wait_for("the daemon to run out of descriptors", T, || {
        d.stderr()
            .contains("trying again, less often")
            .then_some(())
    });
    // Give it the time for many tries (a plain wait is the point here: the loop must not
    // spin while nothing changes): each run of failures is said once (a descriptor the daemon
    // frees meanwhile may let one accept through, which starts a new run), not once a try.
    std::thread::sleep(Duration::from_millis(500));
    let log = d.stderr();
    let (said, recovered) = (
        log.matches("control socket accept:").count(),
        log.matches("control socket accept works again").count(),
    );
    assert!(
        said <= recovered + 1 && said <= 10,
        "{said} runs of failures, {recovered} recoveries:\n{log}"
    );
    drop(conns);
    wait_for("the daemon to answer again", T, || {
        d.ctl(&["status"]).status.success().then_some(())
    });
    assert!(d.stderr().contains("works again after"), "{}", d.stderr());
    assert_eq!(d.stop(), Some(0));
}

/// A connection that never says hello is closed after 10 s; over the limit of connections a
/// client is told why.
#[test]
fn silent_connections_are_closed_and_one_too_many_is_told_why() {
    let s = standin();
    let toml = format!("[component.a]\ncommand = [\"{s}\", \"--name\", \"a\"]\n");
    let mut d = Daemon::start(&toml);
    d.wait_state("a", "running", T);
    let silent = UnixStream::connect(d.socket()).unwrap();
    let started = std::time::Instant::now();
    let mut line = String::new();
    // EOF: the daemon closed it.
    assert_eq!(BufReader::new(&silent).read_line(&mut line).unwrap(), 0);
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    // 512 greeted connections, then one more.
    let mut held = Vec::new();
    for _ in 0..512 {
        let mut w = UnixStream::connect(d.socket()).unwrap();
        let mut r = BufReader::new(w.try_clone().unwrap());
        let v = call(
            &mut w,
            &mut r,
            json!({"id": 0, "verb": "hello", "version": "1.0"}),
        );
        assert!(v.get("result").is_some(), "{v}");
        held.push(w);
    }
    let extra = UnixStream::connect(d.socket()).unwrap();
    let mut line = String::new();
    BufReader::new(&extra).read_line(&mut line).unwrap();
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["error"]["code"], "too-many-connections", "{v}");
    drop(held);
    wait_for("a slot to be free again", T, || {
        d.ctl(&["status"]).status.success().then_some(())
    });
}

/// Each `logs -f` costs the daemon an inotify instance (128 per user by default, shared with
/// everything else the user runs): past 32 followers a client is told so, and a place freed
/// by a client that left is taken again.
#[test]
fn log_followers_are_capped_and_a_place_comes_back() {
    let s = standin();
    let toml = format!("[component.a]\ncommand = [\"{s}\", \"--name\", \"a\"]\n");
    let mut d = Daemon::start(&toml);
    d.wait_state("a", "running", T);
    wait_for("a line in a's log", T, || {
        (!d.log("a").is_empty()).then_some(())
    });
    let follow = |sock: &std::path::Path| {
        let mut w = UnixStream::connect(sock).unwrap();
        let mut r = BufReader::new(w.try_clone().unwrap());
        call(
            &mut w,
            &mut r,
            json!({"id": 0, "verb": "hello", "version": "1.0"}),
        );
        let v = call(
            &mut w,
            &mut r,
            json!({"id": 1, "verb": "logs", "name": "a", "follow": true}),
        );
        (w, v)
    };
    let sock = d.socket();
    let mut followers = Vec::new();
    for i in 0..32 {
        let (w, v) = follow(&sock);
        assert!(v.get("error").is_none(), "follower {i}: {v}");
        followers.push(w);
    }
    let (_w, v) = follow(&sock);
    assert_eq!(v["error"]["code"], "too-many-followers", "{v}");
    // 32 followers of a log cost dmucd one inotify instance (shared), not 32 of its user's.
    let inotify = std::fs::read_dir(format!("/proc/{}/fd", d.pid()))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:inotify")
        })
        .count();
    assert_eq!(
        inotify, 1,
        "dmucd's inotify instances while 32 clients follow"
    );
    followers.pop();
    wait_for("the freed place to be taken", T, || {
        let (w, v) = follow(&sock);
        v.get("error").is_none().then_some(w)
    });
}
