//! Hostile input for the protocol decoder: arbitrary bytes and arbitrary JSON never panic,
//! and always give a request or a typed error. 100k cases each (about a second in a debug
//! build); `PROPTEST_CASES` raises it on demand.

#![allow(clippy::unwrap_used)]

use dmuc_proto::{Body, parse_request};
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100_000)
}

/// JSON values of any shape (nested objects and arrays, big numbers, odd strings).
fn json() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        ".{0,12}".prop_map(serde_json::Value::String),
        prop_oneof![
            Just("status"),
            Just("start"),
            Just("logs"),
            Just("events"),
            Just("hello"),
            Just("signal"),
            Just("cancel"),
            Just("reload"),
            Just("../etc/passwd"),
        ]
        .prop_map(|s| serde_json::Value::String(s.into())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("id".to_string()),
                    Just("verb".to_string()),
                    Just("names".to_string()),
                    Just("name".to_string()),
                    Just("lines".to_string()),
                    Just("since".to_string()),
                    Just("follow".to_string()),
                    Just("wait".to_string()),
                    Just("signal".to_string()),
                    Just("stream".to_string()),
                    Just("version".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6,
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

fn check(bytes: &[u8]) {
    match parse_request(bytes) {
        Ok(r) => {
            // A request that parses serializes back and parses to the same thing.
            let again = serde_json::to_vec(&r).unwrap();
            assert_eq!(parse_request(&again).unwrap(), r);
        }
        Err(reply) => assert!(matches!(reply.body, Body::Error(_)), "{reply:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        check(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(v in json()) {
        check(v.to_string().as_bytes());
    }
}

#[test]
fn deep_nesting_and_huge_numbers_are_errors_not_crashes() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    check(deep.as_bytes());
    let nested = format!(
        r#"{{"id":1,"verb":"status","names":{}1{}}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    check(nested.as_bytes());
    check(br#"{"id":1,"verb":"logs","name":"a","lines":99999999999999999999999}"#);
    check(br#"{"id":-5,"verb":"status"}"#);
    check(br#"{"id":1,"verb":"events","since":-1}"#);
}
