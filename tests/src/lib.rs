//! End-to-end tests live in `tests/it`. This library holds what tests of every crate share:
//! the rule for tests that need what a fresh Debian machine with Rust lacks, and running a
//! program a test has just written.

#![forbid(unsafe_code)]

pub mod doc;

/// The programs of `progs` that are not on `PATH`.
pub fn missing_programs(progs: &[&str]) -> Vec<String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    progs
        .iter()
        .filter(|p| !std::env::split_paths(&path).any(|d| d.join(p).is_file()))
        .map(|p| p.to_string())
        .collect()
}

/// Whether a test that needs `what` (root, programs, the shared binaries) must stop: under
/// CI=true a missing piece is a failure (CI installs everything and skips nothing),
/// elsewhere a skip that names it ([`skipped`]). `true` means "return now".
pub fn skip_unless(test: &str, missing: &[String]) -> bool {
    if missing.is_empty() {
        return false;
    }
    let why = format!("missing {}", missing.join(", "));
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test} cannot run under CI: {why}");
    }
    skipped(test, &why);
    true
}

/// Says that `test` did not run, and why, where it cannot be missed: on the test process's
/// standard error itself (past the harness's capture of `eprintln!`, which hides the output
/// of passing tests), and as a line of the file `DMUC_SKIP_LOG` names, which `.ci/run` counts
/// in its closing `N passed, N failed, N skipped` (and fails on).
pub fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let line = format!("SKIPPED {test}: {why}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(log) = std::env::var_os("DMUC_SKIP_LOG") {
        // One write of one short line with O_APPEND: lines of parallel tests do not mix.
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .and_then(|mut f| f.write_all(line.as_bytes()));
    }
}

/// `skip_unless` for programs on `PATH`.
pub fn skip_without(test: &str, progs: &[&str]) -> bool {
    skip_unless(test, &missing_programs(progs))
}

/// `skip_unless` for root.
pub fn skip_unless_root(test: &str) -> bool {
    let missing: Vec<String> = if nix::unistd::geteuid().is_root() {
        Vec::new()
    } else {
        vec!["root".into()]
    };
    skip_unless(test, &missing)
}

/// `cmd.output()` for a program file this test just wrote, retried while it is "busy"
/// (ETXTBSY): another test thread that forks while the file is open for writing lends its
/// child that descriptor until the child's exec. Bounded by a deadline.
pub fn output_of_fresh(cmd: &mut std::process::Command) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match cmd.output() {
            Err(e)
                if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::yield_now()
            }
            r => return r.expect("the program runs"),
        }
    }
}
