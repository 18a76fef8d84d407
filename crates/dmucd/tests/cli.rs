//! `dmucd --check`: exit codes and messages. (This also makes `cargo test` build the
//! `dmucd` binary that the end-to-end tests in `tests/` run.)

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn check(text: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("g.toml");
    std::fs::write(&p, text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dmucd"))
        .arg("--config")
        .arg(&p)
        .arg("--check")
        .output()
        .unwrap();
    let s =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (
        out.status.code().unwrap(),
        s.replace(&dir.path().display().to_string(), "DIR"),
    )
}

#[test]
fn valid_config_prints_levels() {
    let (code, out) =
        check("[component.a]\ncommand=[\"a\"]\n[component.b]\ncommand=[\"b\"]\nafter=[\"a\"]\n");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("config OK: 2 components"), "{out}");
    assert!(
        out.contains("level 1:") && out.contains("after: a (ready)"),
        "{out}"
    );
}

#[test]
fn invalid_config_lists_every_error_with_positions() {
    let (code, out) =
        check("[component.a]\ncomand=[\"a\"]\n[component.b]\ncommand=[\"b\"]\nafter=[\"c\"]\n");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("DIR/g.toml:2:1: error: unknown key 'comand'"),
        "{out}"
    );
    assert!(
        out.contains("DIR/g.toml:5:8: error: component 'b' depends on undefined component 'c'"),
        "{out}"
    );
    assert!(
        out.contains("2 errors") || out.contains("3 errors"),
        "{out}"
    );
}

#[test]
fn shipped_demo_graph_is_valid() {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/demo.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_dmucd"))
        .arg("--config")
        .arg(p)
        .arg("--check")
        .env("HOME", "/tmp")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
