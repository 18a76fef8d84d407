//! The stand-in's own contract (and this makes `cargo test` build its binary).

use std::process::Command;

#[test]
fn exits_with_the_requested_status() {
    let st = Command::new(env!("CARGO_BIN_EXE_dmuc-standin"))
        .args(["--exit", "--exit-code", "7"])
        .status();
    assert_eq!(st.ok().and_then(|s| s.code()), Some(7));
}

#[test]
fn rejects_unknown_arguments() {
    let st = Command::new(env!("CARGO_BIN_EXE_dmuc-standin"))
        .arg("--bogus")
        .status();
    assert_eq!(st.ok().and_then(|s| s.code()), Some(2));
}
