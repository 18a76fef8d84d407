//! Dependency order, readiness gating and oneshot `completed` conditions.

use std::time::Duration;

use serde_json::Value;

use crate::util::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn dependent_launches_only_after_dependency_probe_passed() {
    let s = standin();
    let port = free_port();
    let toml = format!(
        r#"
[vars]
dir = "${{env:DMUC_TEST_DIR}}"
[component.store]
command = ["{s}", "--name", "store", "--port", "{port}", "--ready-after", "700ms"]
ready = {{ http = "http://127.0.0.1:{port}/health", interval = "50ms" }}
[component.api]
command = ["{s}", "--name", "api", "--write-file", "${{dir}}/api.start"]
after = ["store"]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let toml = toml.replace("${env:DMUC_TEST_DIR}", &dir.path().display().to_string());
    let mut d = Daemon::start(&toml);
    let api = d.wait_state("api", "running", T);
    let store_ready = d.ts_of("store", "ready").expect("store became ready");
    let store_started = d.ts_of("store", "starting").unwrap();
    let (api_pid, api_start) = wait_for("api's start file", T, || {
        read_start(&dir.path().join("api.start"))
    });
    assert_eq!(
        api["pid"].as_u64(),
        Some(api_pid as u64),
        "status shows the program's real PID"
    );
    assert!(
        store_ready >= store_started + 600,
        "the probe gated readiness for ~700ms: {store_started} -> {store_ready}"
    );
    assert!(
        api_start >= store_ready,
        "api started at {api_start}, before store was ready at {store_ready}"
    );
    // Each component has its own window, tagged with @dmuc_component.
    let w = d.windows();
    assert!(w.iter().any(|l| l.ends_with(" store store")), "{w:?}");
    assert!(w.iter().any(|l| l.ends_with(" api api")), "{w:?}");
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn oneshot_completed_gates_and_failure_blocks_with_reason() {
    let s = standin();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().display();
    let toml = format!(
        r#"
[component.setup]
kind = "oneshot"
command = ["{s}", "--name", "setup", "--write-file", "{p}/setup.start", "--exit", "--exit-code", "0"]
[component.app]
command = ["{s}", "--name", "app", "--write-file", "{p}/app.start"]
after = [{{ component = "setup", condition = "completed" }}]
[component.broken]
kind = "oneshot"
command = ["{s}", "--name", "broken", "--exit", "--exit-code", "4"]
[component.blocked]
command = ["{s}", "--name", "blocked"]
after = [{{ component = "broken", condition = "completed" }}]
"#
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("app", "running", T);
    d.wait_state("setup", "completed", T);
    let completed = d.ts_of("setup", "completed").unwrap();
    let (_, app_start) = wait_for("app's start file", T, || {
        read_start(&dir.path().join("app.start"))
    });
    assert!(app_start >= completed, "app started before setup completed");

    let b = d.wait_state("broken", "failed", T);
    assert!(
        b["reason"].as_str().unwrap().contains("exit status 4"),
        "{b}"
    );
    let blocked = d.wait_state("blocked", "pending", T);
    let reason = wait_for("blocked's reason", T, || {
        let r = d.comp("blocked")?["reason"].as_str()?.to_string();
        r.contains("failed").then_some(r)
    });
    assert!(
        reason.contains("dependency broken failed: exit status 4"),
        "{reason} / {blocked}"
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn log_ready_probe_gates_on_a_matching_output_line() {
    let s = standin();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().display();
    let toml = format!(
        r#"
[component.runtime]
command = ["{s}", "--name", "runtime", "--ready-after", "400ms"]
ready = {{ log = "\\] ready$" }}
[component.agent]
command = ["{s}", "--name", "agent", "--write-file", "{p}/agent.start"]
after = ["runtime"]
"#
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("agent", "running", T);
    let started = d.ts_of("runtime", "starting").unwrap();
    let ready = d.ts_of("runtime", "ready").unwrap();
    assert!(
        ready >= started + 350,
        "ready at +{}ms, but the line comes after 400ms",
        ready - started
    );
    let (_, agent_start) = wait_for("agent's start file", T, || {
        read_start(&dir.path().join("agent.start"))
    });
    assert!(agent_start >= ready);
    assert!(d.log("runtime").contains("[runtime] ready"));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn analyze_tells_the_critical_chain_of_the_start_of_one_restart_and_after_adoption() {
    let toml = r#"
[component.a]
command = ["sh", "-c", "echo ready; exec sleep 1000"]
ready = { log = "^ready$" }

[component.b]
command = ["sh", "-c", "echo ready; exec sleep 1000"]
after = ["a"]
ready = { log = "^ready$" }

[component.c]
command = ["sleep", "1000"]
after = ["b"]

[component.side]
command = ["sleep", "1000"]
"#;
    let mut d = Daemon::start(toml);
    for n in ["a", "b"] {
        d.wait_state(n, "ready", T);
    }
    for n in ["c", "side"] {
        d.wait_state(n, "running", T);
    }
    let json = |d: &Daemon, args: &[&str]| -> Value {
        serde_json::from_str(&d.ctl_ok(&[&["analyze", "--json"], args].concat())).unwrap()
    };
    let names = |a: &Value| -> Vec<String> {
        a["chain"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let boot = json(&d, &["c"]);
    assert_eq!(names(&boot), ["c", "b", "a"], "{boot}");
    let chain = boot["chain"].as_array().unwrap();
    // Each waited for the next: launched at or after it was up, up after its own launch.
    for w in chain.windows(2) {
        assert_eq!(w[0]["waited_for"], w[1]["name"]);
        assert!(
            w[0]["launched_us"].as_u64() >= w[1]["up_us"].as_u64(),
            "{boot}"
        );
    }
    for c in chain {
        assert!(c["up_us"].as_u64() >= c["launched_us"].as_u64(), "{c}");
        // Running when its PID was known: for a and b (ready probes) the `spawned` event,
        // between launch and ready; for c, `running` itself.
        let running = c["running_us"].as_u64().unwrap_or_else(|| panic!("{c}"));
        assert!(
            running >= c["launched_us"].as_u64().unwrap()
                && running <= c["up_us"].as_u64().unwrap(),
            "{c}"
        );
    }
    let side = &boot["components"].as_array().unwrap()[3];
    assert_eq!(
        (side["name"].as_str(), side["waited_for"].as_str()),
        (Some("side"), None)
    );
    // Without a name, the window ends where dmucd said the start settled (after the last one
    // up), and what came after is counted, not analysed.
    let settled_ev = wait_for("the settled event", T, || {
        d.events().into_iter().find(|e| {
            e["event"] == "daemon"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("the graph settled: 4/4 up"))
        })
    });
    let whole = json(&d, &[]);
    assert_eq!(
        (&whole["settled"], &whole["until_seq"]),
        (&true.into(), &settled_ev["seq"]),
        "{whole}"
    );
    // The text form: the chain as systemd prints it, then every component.
    let text = d.ctl_ok(&["analyze", "c"]);
    assert!(text.starts_with("c was up @"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("└─b @"))
            && text.lines().any(|l| l.starts_with("  └─a @")),
        "{text}"
    );

    // One component's restart: b at its last start, the graph's start unchanged.
    d.ctl_ok(&["restart", "b"]);
    d.wait_state("b", "ready", T);
    let again = json(&d, &["b"]);
    assert_eq!(names(&again), ["b", "a"], "{again}");
    assert!(again["chain"][0]["launched_us"].as_u64() > chain[1]["launched_us"].as_u64());
    // The table is of the graph's start (b's first launch), counting both launches.
    let b = &again["components"][1];
    assert_eq!(
        (&b["launched_us"], &b["launches"]),
        (&chain[1]["launched_us"], &2.into())
    );
    assert_eq!(json(&d, &["c"])["since_seq"], boot["since_seq"]);
    // The graph's start still ends where it settled, the restart after it counted as later
    // events; `--until` takes them in.
    let start = json(&d, &[]);
    assert_eq!(start["until_seq"], settled_ev["seq"], "{start}");
    assert!(start["later"].as_u64().unwrap() >= 3, "{start}");
    assert_eq!(start["components"][1]["launches"], 1, "{start}");
    let to_now = json(&d, &["--until", "1000000"]);
    assert_eq!(
        (&to_now["later"], &to_now["components"][1]["launches"]),
        (&0.into(), &2.into()),
        "{to_now}"
    );

    // A new dmucd adopts the components: the analysis still is of the start that launched them.
    d.crash();
    d.restart();
    // status falls back on the crashed daemon's status.json: wait for the new one to answer.
    wait_for("the new dmucd to answer", T, || {
        d.ctl(&["status"]).status.success().then_some(())
    });
    d.wait_state("c", "running", T);
    let adopted = json(&d, &["c"]);
    assert_eq!(adopted["since_seq"], boot["since_seq"], "{adopted}");
    assert_eq!(names(&adopted), ["c", "b", "a"]);
    // An unknown name is a clear error.
    let o = d.ctl(&["analyze", "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no component named \"nope\""));
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn plot_draws_the_start_as_a_chart_that_a_browser_shows() {
    let toml = r#"
[component.a]
command = ["sh", "-c", "echo ready; exec sleep 1000"]
ready = { log = "^ready$" }

[component.b]
command = ["sleep", "1000"]
after = ["a"]

[component.bad]
command = ["sh", "-c", "exit 3"]
restart = "never"
"#;
    let mut d = Daemon::start(toml);
    d.wait_state("b", "running", T);
    d.wait_state("bad", "failed", T);
    let svg = d.ctl_ok(&["plot"]);
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{e}:\n{svg}"));
    let bars: Vec<(String, bool)> = doc
        .descendants()
        .filter_map(|n| {
            let class = n.attribute("class")?;
            class.starts_with("bar").then(|| {
                (
                    n.attribute("data-component")
                        .unwrap_or_default()
                        .to_string(),
                    class.contains("critical"),
                )
            })
        })
        .collect();
    // The chain ends at the component that was up last: `b` running, after `a`, as a rule;
    // but `bad` is up too (running, with no ready probe) for the moment before its exit, and
    // nothing orders that moment against `b`'s: when it came after, `bad` alone is the chain.
    // (Its failure is not an "up": a failure after `b` ran leaves the chain `b ← a`.)
    let ev = d.events();
    let b_up = seq_of(&ev, "b", "running").unwrap();
    let a_b = seq_of(&ev, "bad", "running").is_none_or(|bad_up| b_up > bad_up);
    assert_eq!(
        bars,
        [("a".into(), a_b), ("b".into(), a_b), ("bad".into(), !a_b)],
        "{svg}"
    );
    assert_eq!(d.stop(), Some(0));

    // What a browser makes of it: Debian's chromium, headless.
    if skip_without(
        "plot_draws_the_start_as_a_chart_that_a_browser_shows (the browser's part)",
        &["chromium"],
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("boot.svg");
    std::fs::write(&file, &svg).unwrap();
    let root = doc.root_element();
    let (w, h) = (
        root.attribute("width").unwrap(),
        root.attribute("height").unwrap(),
    );
    let shot = dir.path().join("boot.png");
    let out = std::process::Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!(
            "--user-data-dir={}",
            dir.path().join("profile").display()
        ))
        .arg(format!("--window-size={w},{h}"))
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", file.display()))
        .output()
        .unwrap();
    assert!(shot.exists(), "no screenshot: {out:?}");
    let decoder = png::Decoder::new(std::fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let width = info.width as usize;
    let near = |px: &[u8], c: [u8; 3]| (0..3).all(|i| px[i].abs_diff(c[i]) <= 12);
    let (mut up, mut starting, mut label_ink) = (0, 0, 0);
    for (i, px) in buf[..info.buffer_size()].chunks(step).enumerate() {
        if near(px, [0x5c, 0xb8, 0x5c]) {
            up += 1;
        }
        if near(px, [0xf0, 0xad, 0x4e]) {
            starting += 1;
        }
        // Dark pixels in the names' column, below the title and legend: the labels.
        let (x, y) = (i % width, i / width);
        if x < 200 && y > 56 && px[..3].iter().all(|v| *v < 110) {
            label_ink += 1;
        }
    }
    // Two up bars of hundreds of pixels, the starting segments and the legend's swatches,
    // and three names written in the label column.
    assert!(up > 2000, "green pixels: {up}");
    assert!(starting > 100, "orange pixels: {starting}");
    assert!(label_ink > 60, "label pixels: {label_ink}");
}
