//! Hostile input for the config parser: arbitrary text, and TOML documents assembled from the
//! real keys with random values, never panic; what parses is a valid acyclic graph.

#![allow(clippy::unwrap_used)]

use std::path::Path;

use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100_000)
}

fn parse(text: &str) {
    match dmuc_config::parse_config(text, Path::new("fuzz.toml"), &|_| Some("x".into())) {
        Ok(cfg) => {
            let g = &cfg.graph;
            let levels = g.levels();
            assert_eq!(levels.iter().map(Vec::len).sum::<usize>(), g.len());
            for (i, c) in g.components().iter().enumerate() {
                for d in &c.after {
                    let j = g.index_of(&d.component).expect("dependencies exist");
                    assert!(g.level(j) < g.level(i), "a dependency starts first");
                }
                assert!(!c.command.is_empty());
            }
        }
        Err(e) => {
            assert!(!e.diagnostics.is_empty());
            let _ = e.to_string();
        }
    }
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\"x\"".to_string()),
        Just("[\"a\", \"b\"]".to_string()),
        Just("[]".to_string()),
        Just("3".to_string()),
        Just("-1".to_string()),
        Just("true".to_string()),
        Just("\"10s\"".to_string()),
        Just("\"${nope}\"".to_string()),
        Just("\"${env:HOME}\"".to_string()),
        Just("{ tcp = \"127.0.0.1:1\" }".to_string()),
        Just("{ http = \"http://x/\", status = 700 }".to_string()),
        Just("{ log = \"(\" }".to_string()),
        Just("{ component = \"a\", condition = \"completed\" }".to_string()),
        Just("[\"a\", \"b\", \"c\"]".to_string()),
        "\"[ -~]{0,20}\"".prop_map(|s| s.replace('\\', "/")),
        any::<i64>().prop_map(|n| n.to_string()),
    ]
}

fn doc() -> impl Strategy<Value = String> {
    let key = prop_oneof![
        Just("command"),
        Just("after"),
        Just("kind"),
        Just("restart"),
        Just("ready"),
        Just("liveness"),
        Just("stop"),
        Just("backoff"),
        Just("start-limit"),
        Just("env"),
        Just("cwd"),
        Just("user"),
        Just("bogus"),
    ];
    let comp = (
        prop_oneof![Just("a"), Just("b"), Just("c"), Just("Bad_Name")],
        prop::collection::vec((key, value()), 0..6),
    );
    prop::collection::vec(comp, 0..5).prop_map(|comps| {
        let mut s = String::from("[vars]\nv = \"1\"\n");
        for (name, kv) in comps {
            s += &format!("[component.{name}]\ncommand = [\"x\"]\n");
            let mut seen = std::collections::BTreeSet::new();
            for (k, v) in kv {
                if k != "command" && seen.insert(k) {
                    s += &format!("{k} = {v}\n");
                }
            }
        }
        s
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in ".{0,200}") {
        parse(&text);
    }

    #[test]
    fn documents_of_real_keys_never_panic(text in doc()) {
        parse(&text);
    }
}
