use super::*;
use dmuc_proto::{GraphEdge, GraphNode};

fn argv(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

#[test]
fn reads_the_cluster_profile_s_etcd() {
    let m = member(
        &argv(
            "/usr/local/bin/etcd --name node1 --data-dir /var/lib/dmuc/etcd \
             --listen-client-urls http://127.0.0.1:2379 \
             --advertise-client-urls http://127.0.0.1:2379 \
             --listen-peer-urls http://127.0.0.1:2380 \
             --initial-advertise-peer-urls http://127.0.0.1:2380 \
             --initial-cluster node1=http://127.0.0.1:2380 --initial-cluster-state new",
        ),
        &[],
        Path::new("/"),
    )
    .unwrap();
    assert_eq!(m.name, "node1");
    assert_eq!(m.data_dir, Path::new("/var/lib/dmuc/etcd"));
    assert_eq!(m.endpoint, "http://127.0.0.1:2379");
    assert_eq!(m.members, ["node1"]);
    assert_eq!(m.tls, Tls::default());
    m.single().unwrap();
    assert_eq!(
        m.restore_args(Path::new("/b/s.db"), Path::new("/var/lib/dmuc/etcd.new")),
        [
            "snapshot",
            "restore",
            "/b/s.db",
            "--name=node1",
            "--data-dir=/var/lib/dmuc/etcd.new",
            "--initial-cluster=node1=http://127.0.0.1:2380",
            "--initial-cluster-token=etcd-cluster",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
        ]
    );
}

#[test]
fn etcd_s_defaults_for_the_tutorial_s_bare_etcd_in_its_directory() {
    let m = member(&argv("/opt/bin/etcd"), &[], Path::new("/srv/k8s")).unwrap();
    assert_eq!(m.name, "default");
    assert_eq!(m.data_dir, Path::new("/srv/k8s/default.etcd"));
    assert_eq!(m.endpoint, "http://localhost:2379");
    assert_eq!(m.initial_cluster, "default=http://localhost:2380");
}

#[test]
fn tls_flags_with_equals_single_dashes_booleans_and_environment() {
    let m = member(
        &argv(
            "etcd -name=a --client-cert-auth --cert-file=tls/server.crt --key-file /k/server.key \
             --listen-client-urls=https://0.0.0.0:2379 --snapshot-count 5000",
        ),
        &[
            ("ETCD_TRUSTED_CA_FILE".into(), "/k/ca.crt".into()),
            ("ETCD_NAME".into(), "from-env".into()),
            ("ETCD_DATA_DIR".into(), "data".into()),
        ],
        Path::new("/etc/etcd"),
    )
    .unwrap();
    assert_eq!(m.name, "a", "a flag wins over its variable");
    assert_eq!(m.data_dir, Path::new("/etc/etcd/data"));
    assert_eq!(m.endpoint, "https://127.0.0.1:2379");
    assert_eq!(
        m.tls.args(),
        [
            "--cacert=/k/ca.crt",
            "--cert=/etc/etcd/tls/server.crt",
            "--key=/k/server.key"
        ]
    );
    assert_eq!(m.initial_cluster, "a=http://localhost:2380");
}

#[test]
fn refuses_what_it_cannot_restore_with_the_reason() {
    let e = member(
        &argv("etcd --config-file /etc/etcd.yaml"),
        &[],
        Path::new("/"),
    )
    .unwrap_err();
    assert!(
        e.contains("/etc/etcd.yaml") && e.contains("--endpoint"),
        "{e}"
    );
    let e = member(&argv("etcd --wal-dir /wal"), &[], Path::new("/")).unwrap_err();
    assert!(e.contains("--wal-dir"), "{e}");
    let e = member(&argv("etcd --name"), &[], Path::new("/")).unwrap_err();
    assert!(e.contains("--name has no value"), "{e}");
    let m = member(
        &argv("etcd --name b --initial-cluster a=http://a:2380,b=http://b:2380,c=http://c:2380"),
        &[],
        Path::new("/"),
    )
    .unwrap();
    let e = m.single().unwrap_err();
    assert!(e.contains("3 members (a, b, c)"), "{e}");
}

#[test]
fn finds_the_etcd_component_by_its_program() {
    let cmds = vec![
        ("store".to_string(), argv("/usr/bin/etcd --name x")),
        (
            "api".to_string(),
            argv("/usr/bin/kube-apiserver --etcd-servers x"),
        ),
        ("tool".to_string(), argv("/usr/bin/etcdctl get")),
    ];
    assert_eq!(find_component(&cmds, None).unwrap(), "store");
    assert_eq!(find_component(&cmds, Some("api")).unwrap(), "api");
    assert!(
        find_component(&cmds, Some("nope"))
            .unwrap_err()
            .contains("nope")
    );
    assert!(
        find_component(&cmds[1..], None)
            .unwrap_err()
            .contains("--component")
    );
    let two = [cmds[0].clone(), ("b".to_string(), argv("etcd"))];
    assert!(find_component(&two, None).unwrap_err().contains("store, b"));
}

fn status(name: &str, state: State) -> ComponentStatus {
    ComponentStatus {
        name: name.into(),
        kind: "service".into(),
        state,
        pid: None,
        run: 1,
        restarts: 0,
        uptime_ms: None,
        since_ms: None,
        ready: None,
        last_exit: None,
        reason: None,
        window: None,
        log_error: None,
    }
}

#[test]
fn plan_stops_the_dependents_last_started_first_and_brings_back_what_was_wanted_up() {
    let node = |name: &str, level| GraphNode {
        name: name.into(),
        level,
        state: State::Ready,
    };
    let edge = |from: &str, to: &str| GraphEdge {
        from: from.into(),
        to: to.into(),
        condition: "ready".into(),
    };
    let g = GraphResult {
        nodes: vec![
            node("pki", 0),
            node("etcd", 0),
            node("api", 1),
            node("cm", 2),
            node("sched", 2),
            node("containerd", 0),
            node("kubelet", 2),
            node("proxy", 3),
        ],
        edges: vec![
            edge("api", "etcd"),
            edge("api", "pki"),
            edge("cm", "api"),
            edge("sched", "api"),
            edge("kubelet", "api"),
            edge("kubelet", "containerd"),
            edge("proxy", "kubelet"),
        ],
    };
    let states = [
        status("etcd", State::Backoff),
        status("api", State::Failed),
        status("cm", State::Ready),
        status("sched", State::Stopped),
        status("kubelet", State::Ready),
        status("proxy", State::Pending),
    ];
    let p = plan(&g, &states, "etcd");
    assert_eq!(p.stop, ["proxy", "kubelet", "sched", "cm", "api", "etcd"]);
    assert_eq!(p.start, ["etcd", "api", "cm", "kubelet", "proxy"]);
}

#[test]
fn checksum_lines_as_sha256sum_writes_and_reads_them() {
    let f = Path::new("/backups/etcd-1.db");
    let hex = "ab".repeat(32);
    let line = checksum_line(&hex, f);
    assert_eq!(line, format!("{hex}  etcd-1.db\n"));
    assert_eq!(parse_checksum(&line, f).unwrap(), hex);
    // sha256sum's binary-mode star, upper case.
    let upper = format!("{} *etcd-1.db\n", hex.to_uppercase());
    assert_eq!(parse_checksum(&upper, f).unwrap(), hex);
    assert!(parse_checksum(&line, Path::new("/b/other.db")).is_err());
    assert!(parse_checksum("xyz  etcd-1.db\n", f).is_err());
}
