//! Turning replies into text for people: tables, durations, event lines, Graphviz. Pure
//! functions of the reply, so they are unit-tested without a daemon.

use std::fmt::Write;

use dmuc_proto::{EventRecord, EventWhat, GraphResult};
// The status table is shared with dmucd's overview window.
pub use dmuc_proto::render::{Style, clock, duration, state_color, status_table};

/// `show`'s definitions as TOML sections (strings quoted as JSON does, which TOML's basic
/// strings accept). The values are what dmucd runs: a `$` is not doubled back into `$$`.
pub fn show(r: &dmuc_proto::ShowResult) -> String {
    let q = |v: &str| serde_json::Value::from(v).to_string();
    let list = |v: &[String]| {
        let items: Vec<String> = v.iter().map(|x| q(x)).collect();
        format!("[{}]", items.join(", "))
    };
    let mut s = String::new();
    for (i, c) in r.components.iter().enumerate() {
        if i > 0 {
            s.push('\n');
        }
        let _ = writeln!(s, "[component.{}]", c.name);
        let _ = writeln!(s, "# log: {}", c.log);
        let _ = writeln!(s, "kind = {}", q(&c.kind));
        let _ = writeln!(s, "command = {}", list(&c.command));
        let _ = writeln!(s, "cwd = {}", q(&c.cwd));
        for (k, v) in [
            ("user", &c.user),
            ("group", &c.group),
            ("env-file", &c.env_file),
            ("args-file", &c.args_file),
        ] {
            if let Some(v) = v {
                let _ = writeln!(s, "{k} = {}", q(v));
            }
        }
        if !c.after.is_empty() {
            let deps: Vec<String> = c
                .after
                .iter()
                .map(|e| {
                    format!(
                        "{{ component = {}, condition = {} }}",
                        q(&e.to),
                        q(&e.condition)
                    )
                })
                .collect();
            let _ = writeln!(s, "after = [{}]", deps.join(", "));
        }
        if !c.wanted_by.is_empty() {
            let names: Vec<String> = c.wanted_by.iter().map(|n| q(n)).collect();
            let _ = writeln!(s, "wanted-by = [{}]", names.join(", "));
        }
        if !c.env.is_empty() {
            let _ = writeln!(s, "[component.{}.env]", c.name);
            for (k, v) in &c.env {
                let _ = writeln!(s, "{} = {}", q(k), q(v));
            }
        }
    }
    s
}

/// What a reload did (or, with `--dry-run`, would do).
pub fn reload_plan(r: &dmuc_proto::ReloadResult, dry_run: bool) -> String {
    let mut s = String::new();
    if r.add.is_empty() && r.remove.is_empty() && r.change.is_empty() {
        s.push_str("the config is unchanged: nothing to do\n");
        return s;
    }
    let (start, stop, restart) = if dry_run {
        ("would start", "would stop", "would restart")
    } else {
        ("starting", "stopping", "restarting")
    };
    for n in &r.add {
        let _ = writeln!(s, "+ {n:<28} {start} (new)");
    }
    for n in &r.remove {
        let _ = writeln!(s, "- {n:<28} {stop} (removed)");
    }
    for n in &r.change {
        if r.restart.contains(n) {
            let _ = writeln!(s, "~ {n:<28} {restart} (changed)");
        } else {
            let _ = writeln!(
                s,
                "~ {n:<28} changed; not running, takes effect at its next start"
            );
        }
    }
    for n in &r.follow {
        let _ = writeln!(
            s,
            "~ {n:<28} {restart} after the oneshots it reads have completed again"
        );
    }
    let left = r.keep.len().saturating_sub(r.follow.len());
    let _ = writeln!(s, "  {left} unchanged, left running");
    if dry_run {
        s.push_str("(dry run: nothing changed)\n");
    }
    s
}

/// One event as a line (and the output tail of an exit, indented).
pub fn event_line(e: &EventRecord, style: Style) -> String {
    let who = e.component.as_deref().unwrap_or("dmucd");
    let what = match &e.what {
        EventWhat::State { from, to, reason } => {
            let mut s = format!("{from} -> {}", style.state(*to));
            if let Some(r) = reason {
                let _ = write!(s, " ({r})");
            }
            s
        }
        EventWhat::Exit {
            pid, status, tail, ..
        } => {
            let mut s = match pid {
                Some(p) => format!("pid {p} ended: {status}"),
                None => format!("ended: {status}"),
            };
            for l in tail {
                let _ = write!(s, "\n    | {l}");
            }
            s
        }
        EventWhat::Probe { role, ok, detail } => {
            let mut s = format!("{role} probe {}", if *ok { "passed" } else { "failed" });
            if let Some(d) = detail {
                let _ = write!(s, ": {d}");
            }
            s
        }
        EventWhat::Log { ok: true, .. } => "the log file works again".to_string(),
        EventWhat::Log { ok: false, detail } => format!(
            "the log file cannot be written: {}",
            detail.as_deref().unwrap_or("?")
        ),
        EventWhat::Daemon { message } => message.clone(),
        EventWhat::Spawned { pid } => format!("running as pid {pid}"),
        EventWhat::CrashLoop {
            phase,
            exits,
            held,
            span_ms,
            last_exit,
        } => {
            let span = format!("{:.1} s", *span_ms as f64 / 1000.0);
            let last = if last_exit.is_empty() {
                String::new()
            } else {
                format!(", the last {last_exit}")
            };
            match phase {
                dmuc_proto::LoopPhase::Begin => format!(
                    "crash loop: {exits} exits in {span}; its events are coalesced until it settles"
                ),
                dmuc_proto::LoopPhase::Ongoing => {
                    format!(
                        "crash loop: {exits} more exits in {span}{last} ({held} events coalesced)"
                    )
                }
                dmuc_proto::LoopPhase::Over if *exits == 0 => {
                    "crash loop over; events logged again".to_string()
                }
                dmuc_proto::LoopPhase::Over => format!(
                    "crash loop over: {exits} more exits in {span}{last} ({held} events coalesced); events logged again"
                ),
            }
        }
        EventWhat::Other => "(an event this dmucctl does not know)".to_string(),
    };
    format!("#{:<5} {} {who}: {what}", e.seq, clock(e.ts_us))
}

/// The graph as text: components by start level, each with what it waits for.
pub fn graph_text(g: &GraphResult, style: Style) -> String {
    let mut out = String::new();
    let max = g.nodes.iter().map(|n| n.level).max().unwrap_or(0);
    for level in 0..=max {
        let _ = writeln!(out, "level {level}:");
        for n in g.nodes.iter().filter(|n| n.level == level) {
            let deps: Vec<String> = g
                .edges
                .iter()
                .filter(|e| e.from == n.name)
                .map(|e| format!("{} ({})", e.to, e.condition))
                .collect();
            let _ = write!(out, "  {} [{}]", n.name, style.state(n.state));
            if !deps.is_empty() {
                let _ = write!(out, " after {}", deps.join(", "));
            }
            out.push('\n');
        }
    }
    out
}

/// The graph in Graphviz dot: an edge from each component to what it waits for, nodes
/// coloured by state.
pub fn graph_dot(g: &GraphResult) -> String {
    let mut out =
        String::from("digraph dmuc {\n  rankdir=BT;\n  node [shape=box, style=filled];\n");
    for n in &g.nodes {
        let fill = match state_color(n.state) {
            "32" => "palegreen",
            "33" => "khaki",
            "31" => "salmon",
            _ => "lightgrey",
        };
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n{}\", fillcolor={fill}];",
            n.name, n.name, n.state
        );
    }
    for e in &g.edges {
        let style = match e.condition.as_str() {
            "started" => ", style=dashed",
            "completed" => ", style=bold",
            _ => "",
        };
        let _ = writeln!(
            out,
            "  \"{}\" -> \"{}\" [label=\"{}\"{style}];",
            e.from, e.to, e.condition
        );
    }
    out.push_str("}\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use dmuc_proto::{ComponentStatus, GraphEdge, GraphNode, State};

    fn comp(name: &str, state: State) -> ComponentStatus {
        ComponentStatus {
            name: name.into(),
            kind: "service".into(),
            state,
            pid: Some(42),
            run: 1,
            restarts: 2,
            uptime_ms: Some(65_000),
            since_ms: Some(1),
            ready: Some(true),
            last_exit: None,
            reason: None,
            window: None,
            log_error: None,
        }
    }

    #[test]
    fn show_prints_each_definition_as_toml_that_parses_back_to_the_same_values() {
        let spec = |name: &str, after: Vec<GraphEdge>, env: Vec<(String, String)>| {
            dmuc_proto::ComponentSpec {
                name: name.into(),
                kind: "service".into(),
                command: vec!["sh".into(), "-c".into(), "echo \"a\\b\"\n$x".into()],
                env_file: (name == "etcd").then(|| "-/etc/default/etcd".into()),
                args_file: (name == "api").then(|| "/etc/api.args".into()),
                env,
                cwd: "/srv".into(),
                user: Some("etcd".into()),
                group: None,
                wanted_by: (name == "api")
                    .then(|| "etcd".to_string())
                    .into_iter()
                    .collect(),
                after,
                log: format!("/var/log/dmuc/{name}.log"),
            }
        };
        let r = dmuc_proto::ShowResult {
            components: vec![
                spec(
                    "etcd",
                    vec![],
                    vec![("ETCD_NAME".into(), "n=1 \"x\"".into())],
                ),
                spec(
                    "api",
                    vec![GraphEdge {
                        from: "api".into(),
                        to: "etcd".into(),
                        condition: "ready".into(),
                    }],
                    vec![],
                ),
            ],
        };
        let text = show(&r);
        assert!(text.contains("# log: /var/log/dmuc/etcd.log"), "{text}");
        let doc: toml_edit::DocumentMut = text.parse().unwrap_or_else(|e| panic!("{e}\n{text}"));
        let etcd = &doc["component"]["etcd"];
        let command = etcd["command"].as_array().unwrap();
        assert_eq!(command.get(2).unwrap().as_str(), Some("echo \"a\\b\"\n$x"));
        assert_eq!(etcd["cwd"].as_str(), Some("/srv"));
        assert_eq!(etcd["user"].as_str(), Some("etcd"));
        assert!(etcd.get("group").is_none());
        assert_eq!(etcd["env-file"].as_str(), Some("-/etc/default/etcd"));
        assert!(doc["component"]["api"].get("env-file").is_none());
        assert_eq!(
            doc["component"]["api"]["args-file"].as_str(),
            Some("/etc/api.args")
        );
        assert_eq!(etcd["env"]["ETCD_NAME"].as_str(), Some("n=1 \"x\""));
        let after = doc["component"]["api"]["after"].as_array().unwrap();
        let dep = after.get(0).unwrap().as_inline_table().unwrap();
        assert_eq!(dep.get("component").unwrap().as_str(), Some("etcd"));
        assert_eq!(dep.get("condition").unwrap().as_str(), Some("ready"));
        let wanted = doc["component"]["api"]["wanted-by"].as_array().unwrap();
        assert_eq!(wanted.get(0).unwrap().as_str(), Some("etcd"));
        assert!(etcd.get("wanted-by").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(duration(450), "450ms");
        assert_eq!(duration(12_300), "12s");
        assert_eq!(duration(184_000), "3m04s");
        assert_eq!(duration(7_500_000), "2h05m");
        assert_eq!(duration(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
    }

    #[test]
    fn table_aligns_with_and_without_colour() {
        let comps = [
            comp("etcd", State::Ready),
            comp("kube-apiserver", State::Failed),
        ];
        let plain = status_table(&comps, Style { color: false });
        let lines: Vec<&str> = plain.lines().collect();
        assert!(
            lines[0].starts_with("NAME            STATE   PID"),
            "{plain}"
        );
        assert!(
            lines[1].starts_with("etcd            ready   42   1m05s"),
            "{plain}"
        );
        assert!(!plain.contains('\x1b'));
        let color = status_table(&comps, Style { color: true });
        assert!(color.contains("\x1b[31mfailed\x1b[0m"), "{color}");
        // Same columns once the codes are removed.
        let stripped = color
            .replace("\x1b[32m", "")
            .replace("\x1b[31m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, plain);
    }

    #[test]
    fn events_read_well() {
        let e = EventRecord {
            seq: 7,
            ts_us: 3_723_004_000,
            component: Some("etcd".into()),
            what: EventWhat::Exit {
                pid: Some(9),
                code: Some(3),
                signal: None,
                status: "exit status 3".into(),
                tail: vec!["boom".into()],
            },
        };
        assert_eq!(
            event_line(&e, Style { color: false }),
            "#7     01:02:03.004 etcd: pid 9 ended: exit status 3\n    | boom"
        );
    }

    #[test]
    fn dot_has_every_edge() {
        let g = GraphResult {
            nodes: vec![
                GraphNode {
                    name: "etcd".into(),
                    level: 0,
                    state: State::Ready,
                },
                GraphNode {
                    name: "api".into(),
                    level: 1,
                    state: State::Starting,
                },
            ],
            edges: vec![GraphEdge {
                from: "api".into(),
                to: "etcd".into(),
                condition: "ready".into(),
            }],
        };
        let dot = graph_dot(&g);
        assert!(
            dot.contains("\"api\" -> \"etcd\" [label=\"ready\"];"),
            "{dot}"
        );
        assert!(dot.contains("fillcolor=palegreen"));
        let text = graph_text(&g, Style { color: false });
        assert_eq!(
            text,
            "level 0:\n  etcd [ready]\nlevel 1:\n  api [starting] after etcd (ready)\n"
        );
    }
}
