use super::*;
use crate::analyze::analyze;
use dmuc_proto::{EventRecord, EventWhat, GraphEdge};

fn event(seq: u64, ms: u64, name: Option<&str>, what: EventWhat) -> EventRecord {
    EventRecord {
        seq,
        ts_us: 5_000_000_000 + ms * 1000,
        component: name.map(str::to_string),
        what,
    }
}

/// dmucd's own event (no component): the graph started, or settled.
fn daemon(seq: u64, ms: u64, message: &str) -> EventRecord {
    event(
        seq,
        ms,
        None,
        EventWhat::Daemon {
            message: message.into(),
        },
    )
}

fn to(seq: u64, ms: u64, name: &str, to: State) -> EventRecord {
    event(
        seq,
        ms,
        Some(name),
        EventWhat::State {
            from: State::Pending,
            to,
            reason: None,
        },
    )
}

/// etcd, then an api that fails once, then a node agent; a tool that never comes up.
fn analysis() -> Analysis {
    let events = vec![
        daemon(
            1,
            0,
            "started the graph of g.toml: dmucd pid 1, 4 components",
        ),
        to(2, 1, "etcd", State::Starting),
        to(3, 2, "tool<&>", State::Starting),
        to(4, 800, "etcd", State::Ready),
        to(5, 801, "api", State::Starting),
        to(6, 900, "api", State::Backoff),
        to(7, 1000, "api", State::Starting),
        to(8, 2500, "api", State::Ready),
        to(9, 2501, "agent", State::Starting),
        to(10, 2700, "agent", State::Running),
        to(11, 3000, "tool<&>", State::Failed),
    ];
    let names: Vec<String> = ["etcd", "api", "agent", "tool<&>"]
        .map(String::from)
        .to_vec();
    let edges = vec![
        GraphEdge {
            from: "api".into(),
            to: "etcd".into(),
            condition: "ready".into(),
        },
        GraphEdge {
            from: "agent".into(),
            to: "api".into(),
            condition: "ready".into(),
        },
    ];
    analyze(&events, &names, &edges, None, None, None).unwrap()
}

#[test]
fn the_chart_is_well_formed_xml_with_a_bar_per_component_and_the_chain_outlined() {
    let text = svg(&analysis());
    let doc = roxmltree::Document::parse(&text).expect("well-formed SVG");
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "svg");
    assert_eq!(
        root.tag_name().namespace(),
        Some("http://www.w3.org/2000/svg")
    );
    let bars: Vec<_> = doc
        .descendants()
        .filter(|n| n.attribute("class").is_some_and(|c| c.starts_with("bar")))
        .collect();
    let names: Vec<&str> = bars
        .iter()
        .map(|b| b.attribute("data-component").unwrap())
        .collect();
    assert_eq!(
        names,
        ["etcd", "api", "agent", "tool<&>"],
        "names escaped and read back"
    );
    let critical: Vec<&str> = bars
        .iter()
        .filter(|b| b.attribute("class") == Some("bar critical"))
        .map(|b| b.attribute("data-component").unwrap())
        .collect();
    assert_eq!(critical, ["etcd", "api", "agent"]);
    let of = |name: &str, class: &str| {
        bars.iter()
            .find(|b| b.attribute("data-component") == Some(name))
            .unwrap()
            .descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .count()
    };
    // Every component that came up has its three segments; the api's failure and its
    // second launch are marked; the tool never came up (no "up" segment, one failure).
    for name in ["etcd", "api", "agent"] {
        assert_eq!(
            (of(name, "waiting"), of(name, "starting"), of(name, "up")),
            (1, 1, 1),
            "{name}"
        );
    }
    assert_eq!((of("api", "failure"), of("api", "relaunch")), (1, 1));
    assert_eq!(
        (
            of("tool<&>", "up"),
            of("tool<&>", "failure"),
            of("tool<&>", "chain")
        ),
        (0, 1, 0)
    );
    assert_eq!(of("api", "chain"), 1);
    // Bars stay inside the picture.
    let width: f64 = root.attribute("width").unwrap().parse().unwrap();
    for r in doc.descendants().filter(|n| n.has_tag_name("rect")) {
        let (Some(x), Some(w)) = (r.attribute("x"), r.attribute("width")) else {
            continue;
        };
        let (x, w): (f64, f64) = (x.parse().unwrap(), w.parse().unwrap_or(0.0));
        assert!(x >= 0.0 && x + w <= width + 0.5, "{x} + {w} > {width}");
    }
    assert!(text.contains("critical chain: agent"), "{text}");
}

#[test]
fn ticks_are_round_and_about_ten() {
    assert_eq!(tick(3_300_000), 500_000);
    assert_eq!(tick(10_000), 1000);
    assert_eq!(tick(95_000_000), 10_000_000);
}

#[test]
fn the_axis_ends_where_the_start_settled_and_an_exit_and_its_relaunch_both_show() {
    // A 3 s start that settled, then 5 min of a crash loop: the chart is of the 3 s.
    let mut events = vec![
        daemon(
            1,
            0,
            "started the graph of g.toml: dmucd pid 1, 1 components",
        ),
        to(2, 1, "api", State::Starting),
        // Its exit and relaunch 1 ms apart: the same place on the axis.
        to(3, 1500, "api", State::Backoff),
        to(4, 1501, "api", State::Starting),
        to(5, 3000, "api", State::Ready),
        daemon(6, 3001, "the graph settled: 1/1 up"),
    ];
    for i in 0..15u64 {
        events.push(to(7 + 2 * i, 20_000 * (i + 1), "api", State::Backoff));
        events.push(to(8 + 2 * i, 20_000 * (i + 1) + 5, "api", State::Starting));
    }
    let a = analyze(&events, &["api".into()], &[], None, None, None).unwrap();
    let text = svg(&a);
    let doc = roxmltree::Document::parse(&text).unwrap();
    // The last tick is within the start (3 s and its margin), not five minutes on.
    let ticks: Vec<&str> = doc
        .descendants()
        .filter(|n| n.attribute("text-anchor") == Some("middle"))
        .filter_map(|n| n.text())
        .collect();
    assert_eq!(ticks.last(), Some(&"3.000s"), "{ticks:?}");
    let marks = |class: &str| -> Vec<(f64, f64)> {
        doc.descendants()
            .filter(|n| n.attribute("class") == Some(class))
            .map(|n| {
                let f = |k| n.attribute(k).unwrap().parse::<f64>().unwrap();
                (f("y"), f("y") + f("height"))
            })
            .collect()
    };
    let (fail, again) = (marks("failure"), marks("relaunch"));
    assert_eq!((fail.len(), again.len()), (1, 1), "{text}");
    assert!(
        fail[0].1 <= again[0].0,
        "the exit mark {fail:?} and the relaunch mark {again:?} overlap"
    );
    assert!(
        text.contains("The start settled at #6; 30 later events not shown"),
        "{text}"
    );
}
