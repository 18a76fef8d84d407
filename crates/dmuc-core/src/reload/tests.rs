use super::*;
use crate::machine::{Input, ProbeRole};
use crate::state::ExitStatus;
use crate::testkit::H;

fn graph(toml: &str) -> Graph {
    dmuc_config::parse_config(toml, std::path::Path::new("t.toml"), &|_| None)
        .unwrap_or_else(|e| panic!("{e}"))
        .graph
}

const OLD: &str = r#"
[component.db]
command = ["db"]
ready = { tcp = "127.0.0.1:1" }
[component.api]
command = ["api", "--v=1"]
after = ["db"]
[component.old]
command = ["old"]
[component.oldchild]
command = ["oldchild"]
after = ["old"]
"#;

const NEW: &str = r#"
[component.db]
command = ["db"]
ready = { tcp = "127.0.0.1:1" }
[component.api]
command = ["api", "--v=2"]
after = ["db"]
[component.web]
command = ["web"]
after = ["db"]
"#;

#[test]
fn the_plan_names_each_kind_of_change() {
    let p = plan(&graph(OLD), &graph(NEW));
    assert_eq!(p.add, ["web"]);
    assert_eq!(p.remove, ["old", "oldchild"]);
    assert_eq!(p.change, ["api"]);
    assert_eq!(p.keep, ["db"]);
    assert!(!p.is_empty());
    assert!(plan(&graph(OLD), &graph(OLD)).is_empty());
    // `wanted-by` says what a start brings along: a change of it alone restarts nothing.
    let wanted = OLD.replace(
        "after = [\"old\"]",
        "after = [\"old\"]\nwanted-by = [\"old\"]",
    );
    assert_ne!(wanted, OLD);
    let p = plan(&graph(OLD), &graph(&wanted));
    assert!(
        p.is_empty() && p.keep.contains(&"oldchild".to_string()),
        "{p:?}"
    );
}

#[test]
fn reconfigure_keeps_units_starts_new_and_stops_removed_dependents_first() {
    let mut h = H::new(OLD);
    h.feed(Input::Boot);
    h.started("db", 10);
    h.probe("db", ProbeRole::Ready, true);
    h.started("api", 11);
    h.started("old", 12);
    h.started("oldchild", 13);
    let now = h.now;
    let (fx, remap) = h.s.reconfigure(&graph(NEW), now);
    // db and api moved, with their PIDs; old/oldchild kept at the end until stopped.
    assert_eq!(h.s.graph().components()[remap[0]].name, "db");
    assert_eq!(h.s.unit(h.i("db")).pid, Some(10));
    assert_eq!(h.s.unit(h.i("api")).pid, Some(11));
    assert_eq!(h.s.graph().components()[remap[2]].name, "old");
    assert_eq!(h.s.leaving(), ["old", "oldchild"]);
    // web starts now (db is ready); oldchild is stopped before old.
    assert_eq!(h.launched(&fx), vec!["web"]);
    assert_eq!(h.signals(&fx), vec![("oldchild".to_string(), 13, 15)]);
    assert_eq!(h.state("old"), "running");
    assert!(h.s.prune().is_none(), "still running");
    h.exited("oldchild", ExitStatus::Code(0));
    assert_eq!(h.state("old"), "stopping");
    h.exited("old", ExitStatus::Code(0));
    let remap = h.s.prune().expect("all removed components down");
    assert_eq!(h.s.graph().len(), 3);
    assert!(h.s.leaving().is_empty());
    assert_eq!(remap.iter().filter(|&&i| i == usize::MAX).count(), 2);
    assert_eq!(h.s.unit(h.i("db")).pid, Some(10), "db untouched throughout");
    assert_eq!(
        h.s.graph().get("api").unwrap().command[1],
        "--v=2",
        "the new definition"
    );
}

const CFG_OLD: &str = r#"
[component.cfg]
kind = "oneshot"
command = ["write", "--v=1"]
[component.reader]
command = ["reader"]
after = [{ component = "cfg", condition = "completed" }]
[component.images]
kind = "oneshot"
command = ["import"]
after = [{ component = "cfg", condition = "completed" }]
[component.bystander]
command = ["bystander"]
after = [{ component = "cfg", condition = "started" }]
[component.idle]
kind = "oneshot"
command = ["idle", "--v=1"]
"#;

fn cfg_up() -> H {
    let mut h = H::new(CFG_OLD);
    h.feed(Input::Boot);
    h.started("cfg", 10);
    h.started("idle", 11);
    h.exited("idle", ExitStatus::Code(0));
    h.feed(Input::Request(crate::machine::Request::Stop(vec![
        h.i("idle"),
    ])));
    h.exited("cfg", ExitStatus::Code(0));
    h.started("reader", 12);
    h.started("images", 13);
    h.exited("images", ExitStatus::Code(0));
    h.started("bystander", 14);
    for (n, st) in [
        ("cfg", "completed"),
        ("reader", "running"),
        ("images", "completed"),
        ("bystander", "running"),
        ("idle", "completed"),
    ] {
        assert_eq!(h.state(n), st, "{n}");
    }
    h
}

#[test]
fn a_changed_oneshot_runs_again_and_what_reads_its_work_restarts_after_it() {
    let mut h = cfg_up();
    // cfg's command changes; idle's too, but idle was stopped.
    let new = graph(&CFG_OLD.replace("--v=1", "--v=2"));
    let p = plan(h.s.graph(), &new);
    assert_eq!(p.change, ["cfg", "idle"]);
    let r = h.s.reload_restarts(&p, &new);
    assert_eq!(
        r,
        Restarts {
            changed: vec!["cfg".into()],
            followers: vec!["reader".into(), "images".into()],
        },
        "a oneshot stopped by the operator waits for its next start; `started` dependents are not readers"
    );

    // Applied as dmucd applies it: reconfigure, then one restart request for all of them.
    let now = h.now;
    h.s.reconfigure(&new, now);
    let comps: Vec<usize> = r.all().map(|n| h.i(n)).collect();
    let fx = h.feed(Input::Request(crate::machine::Request::Restart(comps)));
    assert_eq!(h.launched(&fx), ["cfg"], "cfg runs again at once");
    assert_eq!(h.state("reader"), "stopping");
    let fx = h.exited(
        "reader",
        ExitStatus::Signal {
            signal: 15,
            core: false,
        },
    );
    assert!(h.launched(&fx).is_empty(), "reader waits for cfg's new run");
    assert_eq!(h.state("reader"), "pending");
    assert_eq!(h.state("images"), "pending");
    h.started("cfg", 20);
    let fx = h.exited("cfg", ExitStatus::Code(0));
    let mut after = h.launched(&fx);
    after.sort();
    assert_eq!(
        after,
        ["images", "reader"],
        "both start once cfg has completed"
    );
    assert_eq!(h.state("bystander"), "running", "untouched");
    assert_eq!(h.state("idle"), "completed", "untouched");
    assert!(!h.s.unit(h.i("idle")).want_up);
}
