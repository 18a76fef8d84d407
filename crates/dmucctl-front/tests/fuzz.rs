//! Hostile input for the front: whatever the command line or the reply, it never panics, a
//! table always comes out exactly as dmucd wrote it, and a request it sends always parses as
//! the hello and status it means. 100k cases each; `PROPTEST_CASES` changes it.

#![allow(clippy::unwrap_used)]

use dmucctl_front::{Env, Line, classify, plan};
use proptest::prelude::*;

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100_000);
    ProptestConfig::with_cases(cases)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn any_table_comes_out_exactly(text in any::<String>()) {
        let mut line = dmuc_proto::Reply::result_line(2, &dmuc_proto::TextResult { text: text.clone() })
            .into_bytes();
        line.pop();
        let Line::Text(n) = classify(&mut line) else { panic!("not a table") };
        prop_assert_eq!(&line[..n], text.as_bytes());
    }

    #[test]
    fn any_line_is_classified_without_panic(mut line in proptest::collection::vec(any::<u8>(), 0..64), text in prop::bool::ANY) {
        if text {
            let mut l = br#"{"id":2,"result":{"text":""#.to_vec();
            l.append(&mut line);
            l.extend_from_slice(b"\"}}");
            line = l;
        }
        let len = line.len();
        if let Line::Text(n) = classify(&mut line) {
            prop_assert!(n <= len);
        }
    }

    #[test]
    fn any_command_line_gives_a_request_that_parses(args in proptest::collection::vec(prop_oneof![
        Just("status".to_string()), Just("--socket".to_string()), Just("/s".to_string()),
        Just("--json".to_string()), ".{0,8}".prop_map(String::from),
    ], 0..6)) {
        let env = Env { euid: 0, ..Env::default() };
        if let Some(p) = plan(args.iter().map(|a| a.as_bytes()), &env, false) {
            let text = std::str::from_utf8(p.request.bytes()).unwrap();
            let reqs: Vec<_> = text.lines().map(|l| dmuc_proto::parse_request(l.as_bytes()).unwrap()).collect();
            prop_assert_eq!(reqs.len(), 2);
            let dmuc_proto::Verb::Status { names, text } = &reqs[1].verb else { panic!("{text}") };
            prop_assert_eq!(*text, Some(dmuc_proto::TextOptions { color: false }));
            // The names are the arguments after `status` that are neither options nor the
            // socket's value.
            prop_assert!(names.iter().all(|n| args.contains(n) && !n.starts_with('-')));
        }
    }
}
