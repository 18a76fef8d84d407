use super::*;
use dmuc_procfs::Proc;

fn snap(procs: Vec<Proc>, uptime: f64) -> Snapshot {
    Snapshot {
        procs,
        uptime,
        hz: 100,
        page: 4096,
    }
}

fn p(pid: i32, pgrp: i32, ticks: u64, start: u64, rss_pages: u64) -> Proc {
    Proc {
        pid,
        pgrp,
        ticks,
        start,
        rss_pages,
    }
}

#[test]
fn the_table_fits_and_sorts_by_cpu() {
    // As the daemon sends it (what it does not know is left out).
    let comp = |name: &str, pid: Option<u32>| -> ComponentStatus {
        serde_json::from_value(serde_json::json!({
            "name": name, "kind": "service", "run": 1, "restarts": 0, "pid": pid,
            "state": if pid.is_some() { "running" } else { "stopped" },
            "uptime_ms": pid.map(|_| 65_000),
        }))
        .unwrap()
    };
    let comps = [
        comp("etcd", Some(10)),
        comp("kube-apiserver", Some(20)),
        comp("gone", None),
    ];
    let s = snap(
        vec![p(10, 10, 100, 0, 2560), p(20, 20, 100, 0, 25600)],
        10.0,
    );
    let before: HashMap<u32, Usage> = [(10, s.group(10).unwrap()), (20, s.group(20).unwrap())]
        .into_iter()
        .collect();
    let after = snap(
        vec![p(10, 10, 110, 0, 2560), p(20, 20, 190, 0, 25600)],
        11.0,
    );
    let rows = interval_rows(&comps, &after, &before, 1.0);
    let order: Vec<&str> = rows.iter().map(|r| r.c.name.as_str()).collect();
    assert_eq!(order, ["kube-apiserver", "etcd", "gone"]);
    let text = table(&rows);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "NAME            STATE    PID  UPTIME  CPU%     MEM  PROCS  RESTARTS  LAST EXIT"
    );
    assert_eq!(
        lines[1],
        "kube-apiserver  running   20   1m05s  90.0  100.0M      1         0  -"
    );
    assert!(
        lines[3].starts_with("gone            stopped    -       -     -       -      -"),
        "{text}"
    );
    assert!(text.lines().all(|l| l.len() <= 100), "{text}");
    assert_eq!(bytes(640 * 1024), "640K");
    assert_eq!(bytes(3 * 1024 * 1024 * 1024 / 2), "1.5G");
}
