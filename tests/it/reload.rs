//! Reload by diff: add, remove, change, unchanged (same PID), invalid (nothing changes),
//! dry run, a [vars] change, SIGHUP.

use std::time::Duration;

use serde_json::Value;

use crate::util::*;

const T: Duration = Duration::from_secs(20);

fn graph(s: &str, extra: &str, api_flag: &str) -> String {
    format!(
        r#"
[vars]
flag = "{api_flag}"
[component.db]
command = ["{s}", "--name", "db"]
[component.api]
command = ["{s}", "--name", "api-${{flag}}"]
after = [{{ component = "db", condition = "started" }}]
{extra}
"#
    )
}

fn pid(d: &mut Daemon, name: &str) -> u64 {
    d.comp(name).unwrap()["pid"].as_u64().unwrap()
}

#[test]
fn add_remove_change_and_keep() {
    let s = standin();
    let old_extra = format!(
        r#"
[component.gone]
command = ["{s}", "--name", "gone"]
[component.gonechild]
command = ["{s}", "--name", "gonechild"]
after = [{{ component = "gone", condition = "started" }}]
"#
    );
    let mut d = Daemon::start(&graph(&s, &old_extra, "v1"));
    for n in ["db", "api", "gone", "gonechild"] {
        d.wait_state(n, "running", T);
    }
    let (db, api, gone, child) = (
        pid(&mut d, "db"),
        pid(&mut d, "api"),
        pid(&mut d, "gone"),
        pid(&mut d, "gonechild"),
    );
    let windows_before = d.windows().len();

    let new_extra = format!(
        r#"
[component.web]
command = ["{s}", "--name", "web"]
after = [{{ component = "api", condition = "started" }}]
"#
    );
    let cfg = d.path("graph.toml");
    std::fs::write(&cfg, graph(&s, &new_extra, "v2")).unwrap();

    // The dry run says what would happen and does nothing.
    let plan = d.ctl_ok(&["reload", "--dry-run"]);
    assert!(
        plan.contains("+ web") && plan.contains("would start"),
        "{plan}"
    );
    assert!(
        plan.contains("- gone ") && plan.contains("- gonechild"),
        "{plan}"
    );
    assert!(
        plan.contains("~ api") && plan.contains("1 unchanged"),
        "{plan}"
    );
    assert!(plan.contains("dry run"), "{plan}");
    assert_eq!(pid(&mut d, "api"), api);
    assert!(d.comp("web").is_none());

    let out = d.ctl_ok(&["reload"]);
    assert!(out.contains("+ web") && out.contains("starting"), "{out}");
    d.wait_state("web", "running", T);
    wait_for("api to run its new definition", T, || {
        let c = d.comp("api")?;
        (c["state"] == "running" && c["pid"].as_u64()? != api).then_some(())
    });
    wait_for("the removed components to leave", T, || {
        d.comp("gone").is_none().then_some(())
    });
    assert!(d.comp("gonechild").is_none());
    assert_eq!(pid(&mut d, "db"), db, "db is unchanged: same process");
    assert!(alive(db as u32));
    for p in [api, gone, child] {
        assert!(!alive(p as u32), "pid {p} survived its reload");
    }
    // The new run's first line reaches its log a moment after the run is `running`.
    wait_for("the changed command's output in api's log", T, || {
        d.log("api").contains("[api-v2]").then_some(())
    });
    // The removed stopped dependents first; their windows are closed; web's is new.
    let ev = d.events();
    assert!(seq_of(&ev, "gonechild", "stopped") < seq_of(&ev, "gone", "stopping"));
    wait_for("the removed windows to close", T, || {
        (d.windows().len() == windows_before - 1).then_some(())
    });
    assert!(
        d.windows().iter().any(|w| w.ends_with(" web web")),
        "{:?}",
        d.windows()
    );
    assert!(ev.iter().any(|e: &Value| {
        e["event"] == "daemon"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("reload: 1 new, 2 removed, 1 changed, 1 unchanged"))
    }));

    // Same file again: nothing to do, nothing restarted.
    assert!(d.ctl_ok(&["reload"]).contains("unchanged"));
    assert_eq!(pid(&mut d, "db"), db);

    // A [vars] change only restarts what uses the variable; SIGHUP reloads too.
    let api2 = pid(&mut d, "api");
    let web = pid(&mut d, "web");
    std::fs::write(&cfg, graph(&s, &new_extra, "v3")).unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(d.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_for("SIGHUP's reload to restart api", T, || {
        let c = d.comp("api")?;
        (c["state"] == "running" && c["pid"].as_u64()? != api2).then_some(())
    });
    assert_eq!(pid(&mut d, "db"), db);
    assert_eq!(pid(&mut d, "web"), web, "web does not use ${{flag}}");

    // An invalid file: an error, and everything as it was.
    std::fs::write(&cfg, "[component.db]\ncommand = 3\n").unwrap();
    let o = d.ctl(&["reload"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("graph.toml:2"),
        "{o:?}"
    );
    assert_eq!(pid(&mut d, "db"), db);
    assert_eq!(pid(&mut d, "web"), web);
    // [daemon] changes are refused whole.
    std::fs::write(
        &cfg,
        format!(
            "[daemon]\nsession = \"other\"\n{}",
            graph(&s, &new_extra, "v3")
        ),
    )
    .unwrap();
    let o = d.ctl(&["reload"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("[daemon] changed"),
        "{o:?}"
    );
    assert_eq!(d.stop(), Some(0));
}

/// A oneshot that writes a file from a variable, a service that reads it at start (it waits
/// for the oneshot's `completed`), and one that only needs it `started`.
fn oneshot_graph(dir: &std::path::Path, s: &str, value: &str) -> String {
    let f = dir.join("made.conf");
    let f = f.display();
    format!(
        r#"
[vars]
value = "{value}"
[component.write]
kind = "oneshot"
command = ["sh", "-c", "echo ${{value}} > {f}"]
[component.reader]
command = ["sh", "-c", "echo read $(cat {f}); exec {s} --name reader"]
after = [{{ component = "write", condition = "completed" }}]
[component.bystander]
command = ["{s}", "--name", "bystander"]
after = [{{ component = "write", condition = "started" }}]
"#
    )
}

#[test]
fn reload_runs_a_changed_oneshot_again_and_restarts_what_reads_its_work_after_it() {
    let s = standin();
    let work = tempfile::tempdir().unwrap();
    let mut d = Daemon::start(&oneshot_graph(work.path(), &s, "one"));
    d.wait_state("write", "completed", T);
    d.wait_state("reader", "running", T);
    d.wait_state("bystander", "running", T);
    let made = work.path().join("made.conf");
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "one\n");
    let (reader, bystander) = (pid(&mut d, "reader"), pid(&mut d, "bystander"));

    std::fs::write(d.path("graph.toml"), oneshot_graph(work.path(), &s, "two")).unwrap();
    // The dry run names both the oneshot and its reader, and changes nothing.
    let plan = d.ctl_ok(&["reload", "--dry-run"]);
    assert!(
        plan.contains("~ write") && plan.contains("would restart (changed)"),
        "{plan}"
    );
    assert!(
        plan.contains("~ reader") && plan.contains("after the oneshots it reads"),
        "{plan}"
    );
    assert!(!plan.contains("bystander"), "{plan}");
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "one\n");
    let seq = d.last_seq().unwrap();

    let out = d.ctl_ok(&["reload"]);
    assert!(
        out.contains("~ write") && out.contains("restarting (changed)"),
        "{out}"
    );
    // What reload said is what it did: the file is made anew, then the reader starts again
    // and reads the new one; the bystander is untouched.
    let r = wait_for("the reader to start again", T, || {
        let c = d.comp("reader")?;
        (c["state"] == "running" && c["pid"].as_u64()? != reader).then_some(c)
    });
    assert_eq!(std::fs::read_to_string(&made).unwrap(), "two\n");
    assert!(r["pid"].as_u64().is_some());
    let ev: Vec<Value> = d
        .events()
        .into_iter()
        .filter(|e| e["seq"].as_u64() > Some(seq))
        .collect();
    let at = |n: &str, to: &str| seq_of(&ev, n, to).unwrap_or_else(|| panic!("{n} never {to}"));
    assert!(
        at("reader", "starting") > at("write", "completed"),
        "the reader started again before the oneshot completed: {ev:?}"
    );
    assert!(wait_for("the reader's log", T, || {
        d.log("reader").contains("read two").then_some(true)
    }));
    assert_eq!(pid(&mut d, "bystander"), bystander, "bystander restarted");
    assert_eq!(d.stop(), Some(0));
}
