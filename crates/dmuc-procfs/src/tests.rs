use super::*;

/// A stat line as the kernel writes it (fields 1-24 matter here).
fn stat(pid: i32, comm: &str, pgrp: i32, ticks: [u64; 4], start: u64, rss: u64) -> String {
    format!(
        "{pid} ({comm}) S 1 {pgrp} {pgrp} 0 -1 4194560 100 0 0 0 {} {} {} {} 20 0 1 0 {start} 1000000 {rss} 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0",
        ticks[0], ticks[1], ticks[2], ticks[3]
    )
}

#[test]
fn a_stat_line_is_read_even_with_a_hostile_command_name() {
    let p = parse_stat(&stat(42, "sh) S 1 (x", 40, [10, 5, 2, 1], 900, 300)).unwrap();
    assert_eq!(
        p,
        Proc {
            pid: 42,
            pgrp: 40,
            ticks: 18,
            start: 900,
            rss_pages: 300
        }
    );
    assert_eq!(parse_stat("garbage"), None);
    assert_eq!(parse_stat("1 (init) S 0"), None);
}

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
fn a_component_is_its_main_process_group() {
    // 10 leads its group (a shell and its child 11); 12 left the group (setsid) and does not
    // count; 20 is another component.
    let s = snap(
        vec![
            p(10, 10, 300, 1000, 256),
            p(11, 10, 100, 1100, 256),
            p(12, 12, 5000, 1100, 1000),
            p(20, 20, 1, 1000, 1),
        ],
        30.0,
    );
    let u = s.group(10).unwrap();
    assert_eq!(
        (u.ticks, u.rss, u.procs, u.start),
        (400, 2 * 1024 * 1024, 2, 1000)
    );
    // Started at 10 s after boot, read at 30 s: 4 s of CPU in 20 s.
    assert!((s.lifetime_cpu(&u) - 20.0).abs() < 1e-9);
    assert_eq!(s.group(99), None);
    // Between two samples 2 s apart: 1 s of CPU more is 50 %; a new process with the same PID
    // (another start time) is not compared.
    let later = Usage { ticks: 500, ..u };
    assert!((interval_cpu(&u, &later, 100, 2.0) - 50.0).abs() < 1e-9);
    let reborn = Usage {
        start: 2000,
        ..later
    };
    assert_eq!(interval_cpu(&u, &reborn, 100, 2.0), 0.0);
}
