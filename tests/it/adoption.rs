//! A dmucd restart does not restart the cluster: kill -9 of the daemon leaves the tmux server
//! and the components running, and the next dmucd adopts them (same PIDs), keeps detecting
//! exits exactly, restarts what died meanwhile or changed, and closes what left the config.

use std::time::Duration;

use serde_json::Value;

use crate::util::*;

const T: Duration = Duration::from_secs(20);

fn graph(s: &str, port: u16, web_flag: &str, with_extra: bool) -> String {
    let extra = if with_extra {
        format!("[component.extra]\ncommand = [\"{s}\", \"--name\", \"extra\"]\n")
    } else {
        String::new()
    };
    format!(
        r#"
[component.db]
command = ["{s}", "--name", "db", "--port", "{port}"]
ready = {{ tcp = "127.0.0.1:{port}", interval = "50ms" }}
[component.api]
command = ["{s}", "--name", "api"]
after = ["db"]
backoff = {{ initial = "0s" }}
[component.web]
command = ["{s}", "--name", "web-{web_flag}"]
after = [{{ component = "api", condition = "started" }}]
[component.init]
kind = "oneshot"
command = ["true"]
{extra}
"#
    )
}

fn pids(d: &mut Daemon) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = d.status().unwrap()["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["pid"].as_u64()?)))
        .collect();
    v.sort();
    v
}

fn up(d: &mut Daemon) {
    d.wait_state("db", "ready", T);
    d.wait_state("api", "running", T);
    d.wait_state("web", "running", T);
    d.wait_state("init", "completed", T);
}

fn events_after(d: &Daemon, seq: u64) -> Vec<Value> {
    d.events()
        .into_iter()
        .filter(|e| e["seq"].as_u64() > Some(seq))
        .collect()
}

fn adopted(d: &Daemon, after_seq: u64) -> Value {
    let deadline = std::time::Instant::now() + T;
    loop {
        if let Some(e) = d.events().into_iter().find(|e| {
            e["seq"].as_u64() > Some(after_seq)
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("adopted"))
        }) {
            return e;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no adoption event; daemon stderr:\n{}",
            d.stderr()
        );
        std::thread::sleep(Duration::from_millis(10)); // poll interval, bounded by the deadline
    }
}

#[test]
fn kill_9_of_dmucd_and_of_its_tmux_server_together_then_a_new_dmucd_adopts_everything() {
    let s = standin();
    let port = free_port();
    let mut d = Daemon::start(&graph(&s, port, "v1", false));
    up(&mut d);
    let before = pids(&mut d);
    let seq = d.events().last().unwrap()["seq"].as_u64().unwrap();
    d.crash();
    d.kill_tmux_server();
    for (name, pid) in &before {
        assert!(alive(*pid as u32), "{name} died with dmucd and tmux");
    }
    d.restart();
    let ev = adopted(&d, seq);
    assert!(
        ev["message"]
            .as_str()
            .unwrap()
            .contains("adopted 4 components"),
        "{ev}\n{}",
        d.stderr()
    );
    up(&mut d);
    assert_eq!(pids(&mut d), before, "same processes");
    let later = events_after(&d, seq);
    assert!(
        !later.iter().any(|e| e["event"] == "exit"),
        "something exited (or the oneshot ran again) across the adoption: {later:?}"
    );
    // Every component has a window again, showing its output.
    for name in ["db", "api", "web"] {
        let text = wait_for(&format!("{name}'s window"), T, || {
            d.windows()
                .iter()
                .any(|w| w.ends_with(&format!(" {name} {name}")))
                .then(|| d.tmux(&["capture-pane", "-p", "-t", &format!("=dmuc:={name}")]))
                .filter(|t| t.contains("kept running"))
        });
        assert!(text.contains("live output continues"), "{text}");
    }
    assert_eq!(d.comp("api").unwrap()["restarts"], 0);
    // Exits are still exact, and the restart happens in the component's new window.
    let api_now = d.comp("api").unwrap();
    let api = api_now["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(api as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let again = wait_for("api restarted", T, || {
        let c = d.comp("api")?;
        (c["pid"].as_u64()? != api && c["state"] == "running").then_some(c)
    });
    assert_eq!(again["last_exit"], "killed by SIGKILL", "{again}");
    assert_eq!(
        again["window"], api_now["window"],
        "restarted in another window"
    );
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    assert!(
        processes_naming(d.dir.path()).is_empty(),
        "something was left: {:?}",
        processes_naming(d.dir.path())
    );
}

#[test]
fn kill_9_of_dmucd_then_a_new_one_adopts_everything_without_a_restart() {
    let s = standin();
    let port = free_port();
    let mut d = Daemon::start(&graph(&s, port, "v1", true));
    up(&mut d);
    d.wait_state("extra", "running", T);
    let before = pids(&mut d);
    let windows = d.windows();
    let seq = d.events().last().unwrap()["seq"].as_u64().unwrap();

    d.crash();
    for (_, pid) in &before {
        assert!(alive(*pid as u32), "a component died with the daemon");
    }
    assert!(d.tmux_alive());
    d.restart();
    let ev = adopted(&d, seq);
    if !ev["message"]
        .as_str()
        .unwrap()
        .contains("adopted 5 components")
    {
        let mut panes = String::new();
        for n in ["db", "api", "web", "init", "extra"] {
            let o = std::process::Command::new("tmux")
                .arg("-S")
                .arg(d.tmux_socket())
                .args([
                    "capture-pane",
                    "-p",
                    "-S",
                    "-50",
                    "-t",
                    &format!("=dmuc:={n}"),
                ])
                .output()
                .unwrap();
            panes += &format!("--- {n}:\n{}\n", String::from_utf8_lossy(&o.stdout).trim());
        }
        panic!("{ev}\n{panes}\n{}", d.stderr());
    }
    up(&mut d);
    assert_eq!(pids(&mut d), before, "same processes");
    assert_eq!(d.windows(), windows, "same windows");
    // No launch happened: nothing went to `starting` from `pending` except through adoption.
    let later = events_after(&d, seq);
    assert!(
        !later.iter().any(|e| e["event"] == "exit"),
        "something exited across the adoption: {later:?}"
    );
    assert_eq!(d.comp("db").unwrap()["restarts"], 0);
    // The event sequence went on from where the previous daemon stopped.
    assert_eq!(later[0]["seq"].as_u64(), Some(seq + 1));

    // Exact exits are still detected, and restarts still happen in the same window.
    let api = d.comp("api").unwrap();
    let api_pid = api["pid"].as_u64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(api_pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let exit = wait_for("api's exit event", T, || {
        d.events().into_iter().find(|e| {
            e["component"] == "api" && e["event"] == "exit" && e["pid"].as_u64() == Some(api_pid)
        })
    });
    assert_eq!(exit["signal"], 9);
    wait_for("api back", T, || {
        let c = d.comp("api")?;
        (c["state"] == "running" && c["pid"].as_u64()? != api_pid).then_some(())
    });
    assert_eq!(d.comp("api").unwrap()["restarts"], 1);
    assert_eq!(d.comp("api").unwrap()["window"], api["window"]);

    // Once more: what the daemon knew of api outlives it (restarts, last exit, and an uptime
    // from the process's real start, not from the adoption).
    let was = d.comp("api").unwrap();
    let db_was = d.comp("db").unwrap();
    assert_eq!(was["last_exit"], "killed by SIGKILL");
    let seq = d.last_seq().unwrap();
    d.crash();
    d.restart();
    adopted(&d, seq);
    let now = wait_for("the new daemon's status of api", T, || {
        let o = d.ctl(&["status", "--json", "api"]);
        let v: Value = serde_json::from_slice(&o.stdout).ok()?;
        v["components"][0]
            .get("pid")
            .is_some()
            .then(|| v["components"][0].clone())
    });
    assert_eq!(now["pid"], was["pid"], "{now}");
    assert_eq!(now["restarts"], 1, "{now}");
    assert_eq!(now["last_exit"], "killed by SIGKILL", "{now}");
    // Within the two clocks' precision (10 ms kernel ticks; the launch precedes the exec).
    let db_now = d.comp("db").unwrap();
    for (was, now) in [(&was, &now), (&db_was, &db_now)] {
        assert!(
            now["uptime_ms"].as_u64().unwrap() + 100 >= was["uptime_ms"].as_u64().unwrap(),
            "uptime went back: {was} then {now}"
        );
    }
    assert_eq!(d.stop(), Some(0));
    for (_, pid) in before {
        assert!(!alive(pid as u32), "pid {pid} survived the shutdown");
    }
}

#[test]
fn what_died_changed_or_left_while_no_dmucd_ran_is_handled_on_adoption() {
    let s = standin();
    let port = free_port();
    let mut d = Daemon::start(&graph(&s, port, "v1", true));
    up(&mut d);
    d.wait_state("extra", "running", T);
    let db = d.comp("db").unwrap()["pid"].as_u64().unwrap();
    let api = d.comp("api").unwrap()["pid"].as_u64().unwrap();
    let web = d.comp("web").unwrap()["pid"].as_u64().unwrap();
    let extra = d.comp("extra").unwrap()["pid"].as_u64().unwrap();
    let seq = d.events().last().unwrap()["seq"].as_u64().unwrap();

    d.crash();
    // Meanwhile: api dies, web's definition changes, extra leaves the config.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(api as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for("api to die", T, || (!alive(api as u32)).then_some(()));
    std::fs::write(d.path("graph.toml"), graph(&s, port, "v2", false)).unwrap();
    d.restart();
    adopted(&d, seq);

    wait_for("api restarted", T, || {
        let c = d.comp("api")?;
        (c["state"] == "running" && c["pid"].as_u64()? != api).then_some(())
    });
    // The events file is written off the daemon's actor: it may lag the status a moment.
    let exit = wait_for(
        "the exit that happened while no daemon ran, reported",
        T,
        || {
            d.events().into_iter().find(|e| {
                e["seq"].as_u64() > Some(seq) && e["component"] == "api" && e["event"] == "exit"
            })
        },
    );
    assert_eq!(exit["signal"], 9, "{exit}");
    wait_for("web restarted with its new definition", T, || {
        let c = d.comp("web")?;
        (c["state"] == "running" && c["pid"].as_u64()? != web).then_some(())
    });
    wait_for("web's new command", T, || {
        d.log("web").contains("[web-v2]").then_some(())
    });
    assert!(!alive(web as u32));
    assert_eq!(
        d.comp("db").unwrap()["pid"].as_u64(),
        Some(db),
        "db untouched"
    );
    assert!(d.comp("extra").is_none());
    wait_for("extra stopped and its window closed", T, || {
        (!alive(extra as u32) && !d.windows().iter().any(|w| w.ends_with(" extra extra")))
            .then_some(())
    });
    assert_eq!(d.stop(), Some(0));
}
