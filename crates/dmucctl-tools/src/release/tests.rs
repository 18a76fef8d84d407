use super::*;

fn v(minor: u32) -> Version {
    Version { minor, patch: 0 }
}

fn node() -> Node {
    Node {
        socket: "/run/containerd/containerd.sock".into(),
        pause_image: "registry.k8s.io/pause:3.10".into(),
        pod_logs: Some("/srv/pods".into()),
        cgroup_v2: false,
        cgroup_driver: Driver::Cgroupfs,
    }
}

/// The settings of a node whose kubelet and API server are both 1.`minor` (with a pod logs
/// directory of its own where the release has the field).
fn at(minor: u32) -> Settings {
    let node = Node {
        pod_logs: (minor >= 30).then(|| "/srv/pods".into()),
        ..node()
    };
    settings(
        Found {
            kubelet: Some(v(minor)),
            apiserver: Some(v(minor)),
        },
        &node,
    )
    .unwrap()
}

fn lines_of(s: &Settings, t: Target) -> Vec<String> {
    match t {
        Target::KubeletArgs => s.kubelet_args.clone(),
        Target::KubeletConfig => s.kubelet_config.clone(),
        Target::SchedulerConfigApi => s.scheduler_config_api.iter().cloned().collect(),
    }
}

/// Every row, at both ends of its range and just outside them: its value is written inside
/// the range and not outside (where the release would refuse it or miss it).
#[test]
fn every_row_applies_exactly_to_its_releases() {
    for row in ROWS {
        let value = fill(row, &node()).expect("every row says something for this node");
        let first = value.lines().next().unwrap().to_string();
        for m in [row.since, row.until] {
            assert!(
                lines_of(&at(m), row.target).contains(&first),
                "{}: 1.{m} lacks {first:?}",
                row.what
            );
        }
        for m in [row.since.saturating_sub(1), row.until + 1] {
            if !(OLDEST..=NEWEST).contains(&m) {
                continue;
            }
            assert!(
                !lines_of(&at(m), row.target).contains(&first),
                "{}: 1.{m} has {first:?}",
                row.what
            );
        }
    }
}

#[test]
fn every_release_has_exactly_one_scheduler_api_and_one_way_to_the_runtime() {
    for m in OLDEST..=NEWEST {
        let s = at(m);
        assert!(s.scheduler_config_api.is_some(), "1.{m}");
        let by_flag = s
            .kubelet_args
            .iter()
            .any(|a| a.starts_with("--container-runtime-endpoint="));
        let by_config = s
            .kubelet_config
            .iter()
            .any(|a| a.starts_with("containerRuntimeEndpoint:"));
        assert!(
            by_flag ^ by_config,
            "1.{m}: flag {by_flag}, config {by_config}"
        );
        let rows = ROWS
            .iter()
            .filter(|r| r.target == Target::SchedulerConfigApi && (r.since..=r.until).contains(&m))
            .count();
        assert_eq!(rows, 1, "1.{m}: scheduler API rows overlap or leave a gap");
    }
}

#[test]
fn v1_20_takes_what_the_debian_built_binaries_were_seen_to_take() {
    let s = at(20);
    assert_eq!(
        s.kubelet_args,
        [
            "--container-runtime=remote",
            "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
            "--pod-infra-container-image=registry.k8s.io/pause:3.10",
        ]
    );
    assert_eq!(
        s.scheduler_config_api.as_deref(),
        Some("kubescheduler.config.k8s.io/v1beta1")
    );
    assert!(s.kubelet_config.is_empty(), "{:?}", s.kubelet_config);
}

#[test]
fn v1_36_on_cgroup_v1_and_v2() {
    let s = at(36);
    assert!(s.kubelet_args.is_empty());
    assert_eq!(
        s.kubelet_config,
        [
            "containerRuntimeEndpoint: unix:///run/containerd/containerd.sock",
            "podLogsDir: /srv/pods",
            "failCgroupV1: false"
        ]
    );
    let v2 = settings(
        Found {
            kubelet: Some(v(36)),
            apiserver: None,
        },
        &Node {
            cgroup_v2: true,
            pod_logs: None,
            ..node()
        },
    )
    .unwrap();
    assert!(
        v2.kubelet_config
            .contains(&"failCgroupV1: true".to_string())
    );
    assert!(
        !v2.kubelet_config
            .iter()
            .any(|l| l.starts_with("podLogsDir"))
    );
    // A worker has no API server: the scheduler's row follows the kubelet.
    assert_eq!(
        v2.scheduler_config_api.as_deref(),
        Some("kubescheduler.config.k8s.io/v1")
    );
}

#[test]
fn unsupported_releases_and_skew_are_refused_with_the_range() {
    for minor in [15, 19, 37] {
        let e = settings(
            Found {
                kubelet: Some(v(minor)),
                apiserver: None,
            },
            &node(),
        )
        .unwrap_err();
        assert!(e.contains(&format!("v1.{minor}.0")), "{e}");
        assert!(e.contains("1.20 to 1.36"), "{e}");
    }
    let e = settings(
        Found {
            kubelet: Some(v(30)),
            apiserver: Some(v(29)),
        },
        &node(),
    )
    .unwrap_err();
    assert!(e.contains("newer than the API server"), "{e}");
    assert!(settings(Found::default(), &node()).is_err());
    // An older kubelet under a newer API server is allowed.
    assert!(
        settings(
            Found {
                kubelet: Some(v(33)),
                apiserver: Some(v(36)),
            },
            &node()
        )
        .is_ok()
    );
}

#[test]
fn a_pod_logs_directory_needs_1_30() {
    let old = Found {
        kubelet: Some(v(29)),
        apiserver: None,
    };
    let e = settings(old, &node()).unwrap_err();
    assert!(e.contains("podLogsDir") && e.contains("/srv/pods"), "{e}");
    let default = Node {
        pod_logs: Some(DEFAULT_POD_LOGS.into()),
        ..node()
    };
    assert!(settings(old, &default).is_ok());
    assert!(
        !settings(
            Found {
                kubelet: Some(v(30)),
                apiserver: None
            },
            &default
        )
        .unwrap()
        .kubelet_config
        .iter()
        .any(|l| l.starts_with("podLogsDir"))
    );
}

#[test]
fn versions_as_the_binaries_print_them() {
    for (text, want) in [
        ("Kubernetes v1.20.2\n", Some((20, 2))),
        ("Kubernetes v1.36.2-dirty", Some((36, 2))),
        ("Kubernetes v1.31.0-rc.1", Some((31, 0))),
        ("Kubernetes v2.0.0", None),
        ("Kubernetes", None),
        ("", None),
    ] {
        assert_eq!(
            parse_version(text).map(|v| (v.minor, v.patch)),
            want,
            "{text:?}"
        );
    }
}

#[test]
fn the_env_file_is_sourced_by_sh_as_written() {
    let s = at(36);
    let found = Found {
        kubelet: Some(v(36)),
        apiserver: Some(v(36)),
    };
    let text = env_file(found, &s);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{text}\nprintf '%s|%s|%s' \"$KUBE_VERSION\" \"$KUBE_SCHEDULER_CONFIG_API\" \"$KUBELET_CONFIG_RELEASE\""
        ))
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!(
            "v1.36.0|kubescheduler.config.k8s.io/v1|{}",
            s.kubelet_config.join("\n")
        )
    );
    assert_eq!(sh_quote("it's"), r"'it'\''s'");
}

#[test]
fn the_docs_hold_the_table() {
    let doc = include_str!("../../../../docs/kubernetes-versions.md");
    assert!(
        doc.contains(&markdown_table()),
        "docs/kubernetes-versions.md must hold the table as `dmucctl k8s-release --table` prints it:\n{}",
        markdown_table()
    );
}

#[test]
fn the_cgroup_driver_is_systemds_where_systemd_runs_the_host_unless_asked() {
    assert_eq!(cgroup_driver(None, true), Driver::Systemd);
    assert_eq!(cgroup_driver(None, false), Driver::Cgroupfs);
    assert_eq!(
        cgroup_driver(Some(Driver::Cgroupfs), true),
        Driver::Cgroupfs
    );
    assert_eq!(cgroup_driver(Some(Driver::Systemd), false), Driver::Systemd);
    // release.env carries it for both containerd (runc's SystemdCgroup) and the kubelet.
    for (d, systemd) in [(Driver::Systemd, "true"), (Driver::Cgroupfs, "false")] {
        let node = Node {
            cgroup_driver: d,
            ..node()
        };
        let found = Found {
            kubelet: Some(v(20)),
            apiserver: Some(v(20)),
        };
        let s = settings(
            found,
            &Node {
                pod_logs: None,
                ..node
            },
        )
        .unwrap();
        let env = env_file(found, &s);
        assert!(
            env.contains(&format!("CGROUP_DRIVER={}\n", d.name())),
            "{env}"
        );
        assert!(
            env.contains(&format!("SYSTEMD_CGROUP={systemd}\n")),
            "{env}"
        );
    }
}
