//! The shim's command line (and this makes `cargo test` build the binary the end-to-end
//! tests use).

use std::process::Command;

#[test]
fn usage_errors_exit_2() {
    let st = Command::new(env!("CARGO_BIN_EXE_dmuc-shim"))
        .arg("--bogus")
        .status();
    assert_eq!(st.ok().and_then(|s| s.code()), Some(2));
}

#[test]
fn unreadable_spec_exits_127() {
    let st = Command::new(env!("CARGO_BIN_EXE_dmuc-shim"))
        .args(["--spec", "/nonexistent/spec.json", "--run", "1"])
        .status();
    assert_eq!(st.ok().and_then(|s| s.code()), Some(127));
}
