use super::*;

fn env(n: &str) -> Option<String> {
    (n == "NODE").then(|| "node-1".to_string())
}

fn ok(text: &str) -> Config {
    match parse_config(text, Path::new("t.toml"), &env) {
        Ok(c) => c,
        Err(e) => panic!("expected a valid config, got:\n{e}"),
    }
}

fn errs(text: &str) -> Vec<Diagnostic> {
    match parse_config(text, Path::new("t.toml"), &env) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.diagnostics,
    }
}

fn has(diags: &[Diagnostic], line: usize, needle: &str) -> bool {
    diags.iter().any(|d| {
        d.line == line
            && (d.message.contains(needle) || d.hint.as_deref().unwrap_or("").contains(needle))
    })
}

#[track_caller]
fn assert_has(diags: &[Diagnostic], line: usize, needle: &str) {
    assert!(
        has(diags, line, needle),
        "no diagnostic on line {line} containing {needle:?} in {diags:#?}"
    );
}

#[test]
fn full_component_parses_with_defaults_and_values() {
    let c = ok(r#"
[vars]
node = "${env:NODE}"
dir = "/srv/${node}"

[component.etcd]
command = ["etcd", "--name", "${node}", "--data-dir", "${dir}"]
ready = { http = "http://127.0.0.1:2379/health", status = 200, interval = "100ms" }

[component.certs]
kind = "oneshot"
command = "sh -c 'echo hi > /tmp/x'"

[component.api]
command = ["api"]
env = { A = "1", B = "${node}" }
cwd = "/tmp"
after = ["etcd", { component = "certs", condition = "completed" }]
restart = "on-failure"
backoff = { initial = "0s", max = "5s", factor = 1.5, reset-after = "30s" }
start-limit = { burst = 3, interval = "20s" }
ready = { tcp = "127.0.0.1:6443", timeout = "2s", initial-delay = "1s", success-threshold = 2, failure-threshold = 5 }
liveness = { exec = ["true"] }
stop = { signal = "SIGINT", timeout = "3s", scope = "process" }
"#);
    let g = &c.graph;
    assert_eq!(g.len(), 3);
    let etcd = g.get("etcd").unwrap();
    assert_eq!(
        etcd.command,
        vec!["etcd", "--name", "node-1", "--data-dir", "/srv/node-1"]
    );
    assert_eq!(etcd.kind, Kind::Service);
    assert_eq!(etcd.restart, Restart::Always);
    let r = etcd.ready.as_ref().unwrap();
    assert_eq!(r.interval, Duration::from_millis(100));
    assert!(matches!(
        &r.check,
        Check::Http {
            status: Some(200),
            ..
        }
    ));
    let certs = g.get("certs").unwrap();
    assert_eq!(certs.command, vec!["sh", "-c", "echo hi > /tmp/x"]);
    assert_eq!(certs.restart, Restart::Never);
    let api = g.get("api").unwrap();
    assert_eq!(
        api.env,
        vec![("A".into(), "1".into()), ("B".into(), "node-1".into())]
    );
    assert_eq!(
        api.after[1],
        Dependency {
            component: "certs".into(),
            condition: Condition::Completed
        }
    );
    assert_eq!(api.restart, Restart::OnFailure);
    assert_eq!(api.backoff.initial, Duration::ZERO);
    assert_eq!(api.backoff.factor, 1.5);
    assert_eq!(
        api.start_limit,
        StartLimit {
            burst: 3,
            interval: Duration::from_secs(20)
        }
    );
    let r = api.ready.as_ref().unwrap();
    assert_eq!((r.success_threshold, r.failure_threshold), (2, 5));
    assert_eq!(r.initial_delay, Duration::from_secs(1));
    assert_eq!(
        api.stop,
        Stop {
            signal: 2,
            timeout: Duration::from_secs(3),
            scope: StopScope::Process
        }
    );
    assert_eq!(g.levels(), vec![vec!["etcd", "certs"], vec!["api"]]);
}

#[test]
fn daemon_section() {
    let c = ok(r#"
[daemon]
socket = "/tmp/s.sock"
tmux-socket = "/tmp/t.sock"
session = "lab"
log-dir = "/tmp/logs"
state-dir = "/tmp/state"
log-max-size = "1M"
log-keep = 2
history-limit = 500
crash-loop-exits = 0
crash-loop-window = "1m"
notify-ready-timeout = "90s"
"#);
    assert_eq!(
        c.daemon.notify_ready_timeout,
        std::time::Duration::from_secs(90)
    );
    assert_eq!(c.daemon.crash_loop_exits, 0);
    assert_eq!(
        c.daemon.crash_loop_window,
        std::time::Duration::from_secs(60)
    );
    let d = errs("[daemon]\ncrash-loop-window = \"0s\"\n");
    assert_has(&d, 2, "between 1ms and 1h");
    assert_eq!(c.daemon.socket, Some("/tmp/s.sock".into()));
    assert_eq!(c.daemon.session, "lab");
    assert_eq!(c.daemon.log_max_size, 1 << 20);
    assert_eq!(c.daemon.log_keep, 2);
    assert_eq!(c.daemon.history_limit, 500);
}

#[test]
fn unknown_keys_with_suggestions_all_at_once() {
    let d = errs(
        r#"
[deamon]
[component.a]
comand = ["x"]
restrat = "always"
"#,
    );
    assert_has(&d, 2, "did you mean 'daemon'?");
    assert_has(&d, 4, "did you mean 'command'?");
    assert_has(&d, 5, "did you mean 'restart'?");
    assert_has(&d, 3, "has no command");
}

#[test]
fn undefined_dependency_and_completed_on_service() {
    let d = errs(
        r#"
[component.etcd]
command = ["etcd"]
[component.api]
command = ["api"]
after = ["etc", { component = "etcd", condition = "completed" }]
"#,
    );
    assert_has(&d, 6, "undefined component 'etc'");
    assert_has(&d, 6, "did you mean 'etcd'?");
    assert_has(&d, 6, "is a service");
}

#[test]
fn cycle_is_printed_as_a_path() {
    let d = errs(
        r#"
[component.a]
command = ["a"]
after = ["b"]
[component.b]
command = ["b"]
after = ["c"]
[component.c]
command = ["c"]
after = ["a"]
"#,
    );
    assert_has(&d, 4, "dependency cycle: a -> b -> c -> a");
    assert_eq!(d.len(), 1);
}

#[test]
fn bad_values() {
    let d = errs(
        r#"
[component.a]
command = ["a"]
restart = "sometimes"
backoff = { initial = "5 parsecs", max = 3 }
stop = { signal = "SIGTREM" }
ready = { log = "([unclosed" }
liveness = { tcp = "nohost" }
kind = "daemon"
"#,
    );
    assert_has(&d, 4, "invalid value \"sometimes\"");
    assert_has(&d, 5, "initial");
    assert_has(&d, 5, "must be a duration string");
    assert_has(&d, 6, "did you mean \"SIGTERM\"?");
    assert_has(&d, 7, "invalid regex");
    assert_has(&d, 8, "is not HOST:PORT");
    assert_has(&d, 9, "invalid value \"daemon\"");
}

#[test]
fn probe_shape_errors() {
    let d = errs(
        r#"
[component.a]
command = ["a"]
ready = { tcp = "h:1", file = "/x" }
liveness = { interval = "1s" }
[component.b]
command = ["b"]
ready = { file = "/x", status = 200 }
"#,
    );
    assert_has(&d, 4, "several checks (tcp, file)");
    assert_has(&d, 5, "names no check");
    assert_has(&d, 8, "only applies to http probes");
}

#[test]
fn names_vars_and_syntax() {
    let d = errs("[component.Bad_Name]\ncommand = \"x ${nope}\"\n");
    assert_has(&d, 1, "invalid component name 'Bad_Name'");
    assert_has(&d, 2, "unknown variable '${nope}'");

    let d = errs("[component.a]\ncommand = [\n");
    assert_eq!(d.len(), 1);
    assert!(d[0].message.starts_with("invalid TOML"), "{d:?}");

    let d = errs("[component.a]\ncommand = \"unterminated 'quote\"\n");
    assert_has(&d, 2, "cannot split the command");

    let d = errs("[component.a]\ncommand = []\n");
    assert_has(&d, 2, "is empty");
}

#[test]
fn oneshot_cannot_have_liveness_and_duplicates_rejected() {
    let d = errs(
        r#"
[component.a]
kind = "oneshot"
command = ["a"]
liveness = { exec = ["true"] }
[component.b]
command = ["b"]
after = ["a", "a"]
"#,
    );
    assert_has(&d, 5, "cannot have a liveness probe");
    assert_has(&d, 8, "twice");
}

#[test]
fn a_log_probe_is_only_a_ready_probe() {
    let d = errs(
        r#"
[component.a]
command = ["a"]
ready = { log = "up" }
liveness = { log = "still up" }
"#,
    );
    assert_has(&d, 5, "a log probe can only be a ready probe");
    assert_eq!(d.len(), 1, "{d:?}");
}

#[test]
fn error_display_names_file_line_col_and_hint() {
    let e = parse_config(
        "[component.a]\ncomand = [\"x\"]\n",
        Path::new("/etc/dmuc/x.toml"),
        &env,
    )
    .unwrap_err();
    let s = e.to_string();
    assert!(
        s.contains("/etc/dmuc/x.toml:2:1: error: unknown key 'comand'"),
        "{s}"
    );
    assert!(s.contains("hint: did you mean 'command'?"), "{s}");
}

#[test]
fn graph_closures() {
    let c = ok(r#"
[component.a]
command = ["a"]
[component.b]
command = ["b"]
after = ["a"]
[component.c]
command = ["c"]
after = ["b"]
"#);
    let g = &c.graph;
    let (a, b, cc) = (0, 1, 2);
    assert_eq!(g.closure_deps(cc), vec![a, b]);
    assert_eq!(g.closure_dependents(a), vec![b, cc]);
    assert_eq!(g.level(cc), 2);
}

#[test]
fn size_parsing() {
    let t = |s: &str| super::values::byte_size(&toml_edit::value(s));
    assert_eq!(t("10M"), Some(10 << 20));
    assert_eq!(t("512KiB"), Some(512 << 10));
    assert_eq!(t("4096"), Some(4096));
    assert_eq!(t("lots"), None);
}

#[test]
fn var_overrides_replace_values_and_must_name_a_variable() {
    let text = r#"
[vars]
port = "2379"
addr = "127.0.0.1:${port}"
[component.etcd]
command = ["etcd", "--listen=${addr}"]
ready = { unix = "/run/x.sock" }
"#;
    let mut o = BTreeMap::new();
    o.insert("port".to_string(), "12379".to_string());
    let c = parse_config_full(text, Path::new("t.toml"), &env, &BTreeMap::new(), &o).unwrap();
    let etcd = c.graph.get("etcd").unwrap();
    assert_eq!(
        etcd.command[1], "--listen=127.0.0.1:12379",
        "later vars see the override"
    );
    assert_eq!(etcd.ready.as_ref().unwrap().check.kind(), "unix");

    o.insert("prot".to_string(), "1".to_string());
    let e = parse_config_full(text, Path::new("t.toml"), &env, &BTreeMap::new(), &o)
        .unwrap_err()
        .diagnostics;
    assert!(
        e.iter().any(|d| d.message.contains("--var prot")
            && d.hint.as_deref() == Some("did you mean 'port'?")),
        "{e:#?}"
    );
}

#[test]
fn hold_and_public_status() {
    let c = ok("[daemon]\nhold = true\npublic-status = false\n");
    assert!(c.daemon.hold && !c.daemon.public_status);
    let c = ok("");
    assert!(!c.daemon.hold && c.daemon.public_status);
    assert_has(&errs("[daemon]\nhold = \"yes\"\n"), 2, "hold");
}

#[test]
fn env_file_is_a_path_optional_with_a_dash() {
    let c = ok(r#"
[vars]
state = "/var/lib/x"
[component.a]
command = ["true"]
env-file = "${state}/a.env"
[component.b]
command = ["true"]
env-file = "-/etc/default/b"
[component.c]
command = ["true"]
"#);
    let get = |n: &str| c.graph.get(n).unwrap().env_file.clone();
    assert_eq!(
        get("a"),
        Some(EnvFile {
            path: "/var/lib/x/a.env".into(),
            optional: false
        })
    );
    assert_eq!(
        get("b"),
        Some(EnvFile {
            path: "/etc/default/b".into(),
            optional: true
        })
    );
    assert_eq!(get("c"), None);
    let e = errs("[component.a]\ncommand = [\"true\"]\nenv-file = 3\n");
    assert_has(&e, 3, "env-file");
}

#[test]
fn env_files_are_data_not_scripts() {
    let v = parse_env_file(
        "# first start\nETCD_INITIAL_CLUSTER=m1=https://198.18.0.21:2380\n\n  export A = 'x y' \nB=\"$HOME\"\nC=\nA=2\n",
    )
    .unwrap();
    assert_eq!(
        v,
        [
            ("ETCD_INITIAL_CLUSTER", "m1=https://198.18.0.21:2380"),
            ("B", "$HOME"),
            ("C", ""),
            ("A", "2")
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
    );
    assert!(
        parse_env_file("A=1\nnot a line\n")
            .unwrap_err()
            .starts_with("line 2:")
    );
    assert!(
        parse_env_file("1A=x")
            .unwrap_err()
            .contains("not a variable name")
    );
    assert!(parse_env_file("A-B=x").is_err());
}

#[test]
fn args_file_is_a_path_optional_with_a_dash_and_holds_one_argument_a_line() {
    let c = ok(r#"
[vars]
config = "/var/lib/x/config"
[component.kubelet]
command = ["kubelet", "--v=2"]
args-file = "${config}/kubelet.args"
[component.b]
command = ["true"]
args-file = "-/etc/b.args"
"#);
    let get = |n: &str| c.graph.get(n).unwrap().args_file.clone();
    assert_eq!(
        get("kubelet"),
        Some(EnvFile {
            path: "/var/lib/x/config/kubelet.args".into(),
            optional: false
        })
    );
    assert!(get("b").unwrap().optional);
    assert_has(
        &errs("[component.a]\ncommand = [\"true\"]\nargs-file = []\n"),
        3,
        "args-file",
    );
    assert_eq!(
        parse_args_file("# flags\n--container-runtime=remote\n\n  --x=a b 'c'  \n#--y\n"),
        ["--container-runtime=remote", "--x=a b 'c'"]
    );
    assert!(parse_args_file("").is_empty());
}

/// One pass reports every error (issue 29, row 19): a component whose command is missing
/// still has its `after` checked, a dependency on it is not "undefined", and no hint names
/// the component itself.
#[test]
fn every_error_in_one_pass_and_no_hint_naming_the_component_itself() {
    let d = errs(
        r#"
[component.a]
comand = ["sleep", "1"]
after = ["b"]
[component.c]
command = ["c"]
after = ["a"]
"#,
    );
    assert_has(&d, 3, "did you mean 'command'?");
    assert_has(&d, 4, "depends on undefined component 'b'");
    assert!(
        !d.iter()
            .any(|x| x.message.contains("undefined component 'a'")),
        "{d:?}"
    );
    let d = errs(
        r#"
[component.a]
command = ["sleep", "1"]
after = ["b"]
"#,
    );
    assert_has(&d, 4, "depends on undefined component 'b'");
    assert!(!has(&d, 4, "did you mean 'a'"), "{d:?}");
}

#[test]
fn wanted_by_names_defined_components_once_and_never_itself() {
    let d = errs(
        r#"
[component.kubelet]
command = ["kubelet"]
[component.cni]
command = ["cni"]
after = ["kubelet"]
wanted-by = ["kublet", "cni", "kubelet", "kubelet"]
[component.x]
command = ["x"]
wanted-by = "kubelet"
"#,
    );
    assert_has(&d, 7, "is wanted by undefined component 'kublet'");
    assert_has(&d, 7, "did you mean 'kubelet'?");
    assert_has(&d, 7, "component 'cni' is wanted by itself");
    assert_has(&d, 7, "lists 'kubelet' twice in wanted-by");
    assert_has(
        &d,
        10,
        "component.x.wanted-by must be a list of component names",
    );
    let c = ok(r#"
[component.kubelet]
command = ["kubelet"]
[component.cni]
command = ["cni"]
after = ["kubelet"]
wanted-by = ["kubelet"]
"#);
    assert_eq!(c.graph.get("cni").unwrap().wanted_by, ["kubelet"]);
    assert_eq!(
        c.graph
            .wanted_by_start_of(c.graph.index_of("kubelet").unwrap()),
        [1]
    );
}
