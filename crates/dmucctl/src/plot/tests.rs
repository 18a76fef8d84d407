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
        event(
            1,
            0,
            None,
            EventWhat::Daemon {
                message: "started the graph of g.toml: dmucd pid 1, 4 components".into(),
            },
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
    analyze(&events, &names, &edges, None, None).unwrap()
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
