//! A highly available control plane, for real: three config/ha.toml members (198.18.0.21-23),
//! each a dmucd in namespaces of its own (tests/it/nodes.rs), joined one after the other with
//! `dmucctl token create --control-plane` / `dmucctl join --control-plane`; a
//! config/balancer.toml HAProxy (198.18.0.100) in front of their API servers; and a
//! config/worker.toml node joined through the balancer. The checks: etcd has 3 voting
//! members, all healthy; kubectl through the balancer works; kill -9 of one member's API
//! server and of another member's whole namespace (dmucd, tmux, every component): writes and
//! reads go on through the balancer, the controller manager's lease moves to a live member,
//! the node stays Ready and a new Deployment is scheduled and runs; the member comes back and
//! etcd is 3/3 again. Then every node is reset and nothing is left.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::nodes::{Bridge, Worker};
use crate::realcluster::{Kubectl, T, missing, node_files, web_manifest};
use crate::util::*;

const LB: &str = "198.18.0.100";
const MEMBERS: [(&str, &str); 3] = [
    ("dmuc-m1", "198.18.0.21"),
    ("dmuc-m2", "198.18.0.22"),
    ("dmuc-m3", "198.18.0.23"),
];

fn member_vars(m: &Worker, bin: &Path) -> Vec<String> {
    vec![
        format!("bin={}", bin.display()),
        format!("state={}", m.state().display()),
        format!("node={}", m.name),
        format!("node-ip={}", m.ip),
        format!("apiserver-sans={LB}"),
    ]
}

/// `etcdctl ARGS` from the host against every member, with member 1's client certificate.
fn etcdctl(pki: &Path, args: &[&str]) -> (bool, String) {
    let endpoints: Vec<String> = MEMBERS
        .iter()
        .map(|(_, ip)| format!("https://{ip}:2379"))
        .collect();
    let o = Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg(format!("--cacert={}", pki.join("etcd-ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki.join("apiserver-etcd-client.crt").display()
        ))
        .arg(format!(
            "--key={}",
            pki.join("apiserver-etcd-client.key").display()
        ))
        .arg("--command-timeout=3s")
        .args(args)
        .output()
        .unwrap();
    said(&o)
}

/// Waits until etcd has 3 started voting members, each healthy.
fn etcd_three_of_three(pki: &Path, when: &str) {
    wait_for(&format!("etcd 3/3 {when}"), T, || {
        let (ok, list) = etcdctl(pki, &["member", "list", "-w", "json"]);
        let v: serde_json::Value = serde_json::from_str(&list).ok()?;
        let ms = v["members"].as_array()?;
        let voters = ms
            .iter()
            .filter(|m| m["name"].is_string() && m["isLearner"] != true)
            .count();
        let (healthy, _) = etcdctl(pki, &["endpoint", "health"]);
        (ok && ms.len() == 3 && voters == 3 && healthy).then_some(())
    });
}

/// Whether a `kubectl create` wrote its object: also when an earlier try that timed out had
/// written it (etcd committed it; the answer was lost with the old leader).
fn written((ok, out): (bool, String)) -> Option<()> {
    (ok || out.contains("AlreadyExists")).then_some(())
}

/// The holder of the controller manager's lease (its identity starts with the member's
/// host name).
fn kcm_leader(k: &Kubectl) -> Option<String> {
    let (ok, out) = k.run(&[
        "-n",
        "kube-system",
        "get",
        "lease",
        "kube-controller-manager",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    let who = out.split('_').next()?.trim().to_string();
    (ok && !who.is_empty()).then_some(who)
}

/// The join command `dmucctl token create` printed on member 1, as words.
fn token(m1: &Worker, admin: &str, control_plane: bool) -> Vec<String> {
    let server = format!("https://{LB}:6443");
    let mut args = vec![
        "token",
        "create",
        "--kubeconfig",
        admin,
        "--server",
        &server,
    ];
    if control_plane {
        args.push("--control-plane");
    }
    let (ok, said) = m1.dmucctl(&args);
    assert!(ok, "{said}");
    let line = said
        .lines()
        .find(|l| l.starts_with("dmucctl join"))
        .unwrap_or_else(|| panic!("no join command in {said}"));
    line.split_whitespace().map(str::to_string).collect()
}

/// `m` joins the control plane with a new `token create --control-plane` of member 1 (a
/// wrong certificate key first, refused, with `wrong_first`), starts and is promoted.
fn join_member(m1: &Worker, m: &mut Worker, admin: &str, bin: &Path, wrong_first: bool) {
    let words = token(m1, admin, true);
    assert_eq!(words[3], format!("https://{LB}:6443"));
    assert_eq!(words[8], "--control-plane", "{words:?}");
    let st = m.state().display().to_string();
    let wrong = "0".repeat(64);
    let mut args: Vec<&str> = words[1..8].iter().map(String::as_str).collect();
    args.extend([
        "--control-plane",
        "--certificate-key",
        &wrong,
        "--node-name",
        &m.name,
        "--node-ip",
        &m.ip,
        "--state",
        &st,
    ]);
    if wrong_first {
        let (ok, said) = m.dmucctl(&args);
        assert!(
            !ok && said.contains("does not open") && said.contains("nothing was written"),
            "{said}"
        );
        assert!(!m.state().exists());
    }
    args[9] = &words[10];
    let (ok, said) = m.dmucctl(&args);
    assert!(ok && said.contains("as a learner"), "{said}");
    for f in ["ca.key", "etcd-ca.key", "kubelet-ca.key", "sa.key"] {
        assert!(m.state().join("pki").join(f).exists(), "{f}: {said}");
    }
    let vars = member_vars(m, bin);
    m.start_profile("ha.toml", vars);
    let promoted = m.daemon().wait_state("etcd-promote", "completed", T);
    assert_eq!(promoted["state"], "completed");
    for c in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
    ] {
        m.daemon().wait_state(c, "ready", T);
    }
    let log = m.daemon().log("etcd-promote");
    assert!(log.contains("promoted from learner to voter"), "{log}");
}

#[test]
fn three_members_survive_losing_one_and_take_it_back() {
    let mut why = missing();
    why.extend(dmuc_tests::missing_programs(&[
        "unshare", "nsenter", "haproxy", "etcdctl",
    ]));
    if skip_unless("the HA control-plane test", &why) {
        return;
    }
    let _ports = fixed_ports();
    let t0 = std::time::Instant::now();
    // Where the minutes go, in the test's output.
    let step = |what: &str| eprintln!("ha: {:6.1} s  {what}", t0.elapsed().as_secs_f64());
    let work = tempfile::tempdir().unwrap();
    let (bin, images) = node_files(work.path());
    let _bridge = Bridge::new();
    let mut members: Vec<Worker> = MEMBERS
        .iter()
        .map(|(n, ip)| Worker::new(n, ip, work.path()))
        .collect();
    let mut lb = Worker::new("dmuc-lb", LB, work.path());

    // Member 1 makes the CAs and a new etcd cluster of itself.
    let vars = member_vars(&members[0], &bin);
    members[0].start_profile("ha.toml", vars);
    for c in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        members[0].daemon().wait_state(c, "ready", T);
    }
    let m1_pki = members[0].state().join("pki");
    let admin_local = m1_pki.join("admin.kubeconfig").display().to_string();
    step("member 1 ready");
    // The balancer, in front of all three (two are down for now: its checks say so).
    let servers: Vec<String> = MEMBERS.iter().map(|(_, ip)| format!("{ip}:6443")).collect();
    lb.start_profile(
        "balancer.toml",
        vec![
            format!("state={}", lb.state().display()),
            format!("servers={}", servers.join(" ")),
            format!("bind={LB}:6443"),
        ],
    );
    lb.daemon().wait_state("balancer", "ready", T);
    // kubectl from the host, through the balancer, as member 1's admin.
    let admin = work.path().join("admin-lb.kubeconfig");
    let text = std::fs::read_to_string(&admin_local).unwrap();
    std::fs::write(
        &admin,
        text.replace("https://127.0.0.1:6443", &format!("https://{LB}:6443")),
    )
    .unwrap();
    let k = Kubectl {
        prog: bin.join("kubectl"),
        kubeconfig: admin.clone(),
    };
    wait_for("kubectl through the balancer", T, || {
        k.run(&["get", "--raw", "/readyz"]).0.then_some(())
    });

    step("the balancer answers");
    // Members 2 and 3 join, one at a time (etcd takes one learner at a time); a wrong
    // certificate key first: it opens nothing, and nothing is written.
    for i in 1..3 {
        let (first, rest) = members.split_at_mut(i);
        join_member(&first[0], &mut rest[0], &admin_local, &bin, true);
    }
    step("members 2 and 3 joined");
    // Every member's control plane runs as its own users, not root.
    for m in &members {
        let uid_of = |comm: &str| -> u32 {
            let (pid, _) = m
                .processes()
                .into_iter()
                .find(|(_, c)| c == comm)
                .unwrap_or_else(|| panic!("no {comm} on {}", m.name));
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            status
                .lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
                .unwrap()
        };
        for (comm, user) in [
            ("etcd", "dmuc-etcd"),
            ("kube-apiserver", "dmuc-apiserver"),
            // comm is cut at 15 characters.
            ("kube-controller", "dmuc-controller-manager"),
            ("kube-scheduler", "dmuc-scheduler"),
        ] {
            let want = nix::unistd::User::from_name(user)
                .unwrap()
                .unwrap()
                .uid
                .as_raw();
            assert_eq!(uid_of(comm), want, "{} {comm}", m.name);
        }
    }
    for m in members.iter().chain([&lb]) {
        let pss = m.pss();
        let total: u64 = pss.iter().map(|(_, kb)| kb).sum();
        let parts: Vec<String> = pss
            .iter()
            .map(|(c, kb)| format!("{c} {:.1}", *kb as f64 / 1024.0))
            .collect();
        eprintln!(
            "ha: {} PSS {:.1} MB: {}",
            m.name,
            total as f64 / 1024.0,
            parts.join(", ")
        );
    }
    etcd_three_of_three(&m1_pki, "after the joins");
    // Every member's API server has the balancer's address, and its own, in its certificate.
    for m in &members {
        let (ok, said) = m.dmucctl(&[
            "pki",
            "check",
            "--dir",
            &m.state().join("pki").display().to_string(),
            "--node-name",
            &m.name,
            "--node-ip",
            &m.ip,
            "--san",
            LB,
        ]);
        assert!(ok, "{}: {said}", m.name);
    }
    // doctor knows a member's profile: the balancer answers, the clocks of the other members
    // (as etcd lists them now: member 1 joined nobody) and of the balancer agree.
    let profile = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/ha.toml");
    for (me, m) in members.iter().enumerate().filter(|(i, _)| *i != 1) {
        let mut args: Vec<String> = vec![
            "doctor".into(),
            "--no-ports".into(),
            "--config".into(),
            profile.display().to_string(),
        ];
        for v in member_vars(m, &bin) {
            args.extend(["--var".into(), v]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, said) = m.dmucctl(&args);
        let line = |what: &str| {
            said.lines()
                .find(|l| l.contains(what))
                .unwrap_or_else(|| panic!("no {what:?} in {said}"))
                .to_string()
        };
        assert!(line(" balancer ").starts_with("ok"), "{said}");
        let others = MEMBERS
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != me)
            .map(|(_, (n, _))| *n);
        for peer in others.chain([LB]) {
            let l = line(&format!("clock against {peer}"));
            assert!(l.starts_with("ok"), "{said}");
        }
        assert!(
            !said.contains("kubelet binary") && !said.contains("CNI plugins"),
            "{said}"
        );
    }
    // The `kubernetes` Service's endpoints: the three members.
    wait_for("three API servers in the kubernetes endpoints", T, || {
        let out = k.ok(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[0].addresses[*].ip}",
        ]);
        MEMBERS.iter().all(|(_, ip)| out.contains(ip)).then_some(())
    });

    // A worker joins through the balancer.
    let words = token(&members[0], &admin_local, false);
    let mut w = Worker::new("dmuc-w1", "198.18.0.11", work.path());
    let (ok, said) = w.join(&words[3], &words[5], &words[7], &w.state());
    assert!(ok, "{said}");
    w.start(&bin, &images);
    for c in ["containerd", "kubelet", "kube-proxy"] {
        w.daemon().wait_state(c, "ready", T);
    }
    wait_for("the worker to be Ready", T, || {
        k.node_ready("dmuc-w1").then_some(())
    });

    step("the worker is Ready");
    // The faults: the member holding the controller manager's lease loses everything; another
    // member's API server is killed with -9.
    let leader = wait_for("a controller-manager leader", T, || kcm_leader(&k));
    let down = members
        .iter()
        .position(|m| m.name == leader)
        .unwrap_or_else(|| panic!("the lease holder {leader} is not a member"));
    let other = (down + 1) % 3;
    let api_pid = members[other].daemon().comp("kube-apiserver").unwrap()["pid"]
        .as_u64()
        .unwrap() as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(api_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = members[down].kill_all();
    assert!(
        killed >= 6,
        "only {killed} processes in {leader}'s namespace"
    );

    step("faults done");
    // Writes and reads through the balancer go on (the balancer's checks take the dead
    // servers out within seconds; a connection refused meanwhile is retried elsewhere).
    for n in 0..10 {
        let name = format!("ha-{n}");
        wait_for(&format!("a write through the balancer ({name})"), T, || {
            written(k.run(&[
                "create",
                "configmap",
                &name,
                &format!("--from-literal=n={n}"),
            ]))
        });
        let got = k.ok(&["get", "configmap", &name, "-o", "jsonpath={.data.n}"]);
        assert_eq!(got.trim(), n.to_string());
    }
    step("10 writes and reads through the balancer");
    let moved = wait_for("the controller manager's lease to move", T, || {
        kcm_leader(&k).filter(|l| *l != leader)
    });
    assert!(
        MEMBERS.iter().any(|(n, _)| *n == moved) && moved != leader,
        "{moved}"
    );
    step("the lease moved");
    // The node stays Ready, and the scheduler and the controllers still work: a new
    // Deployment runs on it.
    assert!(k.node_ready("dmuc-w1"), "the worker is not Ready");
    let web = work.path().join("web.yaml");
    std::fs::write(&web, web_manifest(1)).unwrap();
    k.ok(&["apply", "-f", web.to_str().unwrap()]);
    k.ok(&["rollout", "status", "deployment/web", "--timeout=180s"]);
    assert!(k.node_ready("dmuc-w1"), "the worker is not Ready");
    // The killed API server is back (its dmucd restarted it).
    members[other]
        .daemon()
        .wait_state("kube-apiserver", "ready", T);

    step("a new Deployment runs");
    // The member comes back: its etcd rejoins from its data, etcd is 3/3 again.
    members[down].restart();
    for c in ["etcd", "kube-apiserver", "kube-controller-manager"] {
        members[down].daemon().wait_state(c, "ready", T);
    }
    etcd_three_of_three(&m1_pki, "after the member came back");
    let (ok, said) = etcdctl(&m1_pki, &["endpoint", "status", "-w", "table"]);
    assert!(ok, "{said}");
    // A member's etcd backs up like a single node's: its flags and env-file, read through
    // dmucd, give the endpoint and certificates.
    let snap = work.path().join("m2-etcd.db");
    let socket = members[1].daemon().socket().display().to_string();
    let (ok, said) = members[1].dmucctl(&["--socket", &socket, "backup", snap.to_str().unwrap()]);
    assert!(
        ok && said.contains("from https://198.18.0.22:2379"),
        "{said}"
    );
    assert!(snap.exists() && work.path().join("m2-etcd.db.sha256").exists());

    step("the member is back: etcd 3/3");
    // Day two: member 3 replaced, as after a lost host: every process killed, its state
    // reset; a join now is refused, etcd still counts the old member; removed from etcd
    // (asked on member 1); joined again with a new token. (An ordered stop of a member
    // while nodes hold watches through the balancer waits ~60 s for its API server to drain
    // them: docs/operations.md.)
    let pki_arg = m1_pki.display().to_string();
    let (ok, said) = members[0].dmucctl(&["etcd", "members", "--pki", &pki_arg]);
    assert!(ok && said.matches(" voter ").count() == 3, "{said}");
    members[2].kill_all();
    let (ok, said) = members[2].reset();
    assert!(ok, "{said}");
    step("member 3 lost and reset");
    // Member 3 may have led etcd: writes wait for the new leader.
    wait_for("a write after member 3 was lost", T, || {
        written(k.run(&["create", "configmap", "after-m3", "--from-literal=x=1"]))
    });
    let words = token(&members[0], &admin_local, true);
    let st = members[2].state().display().to_string();
    let mut args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
    args.extend([
        "--node-name",
        "dmuc-m3",
        "--node-ip",
        MEMBERS[2].1,
        "--state",
        &st,
    ]);
    let (ok, said) = members[2].dmucctl(&args);
    assert!(
        !ok && said.contains("dmucctl etcd remove dmuc-m3") && said.contains("nothing was written"),
        "{said}"
    );
    let (ok, said) = members[0].dmucctl(&["etcd", "remove", "dmuc-m3", "--pki", &pki_arg]);
    assert!(ok && said.contains("removed etcd member dmuc-m3"), "{said}");
    let (ok, said) = members[0].dmucctl(&["etcd", "members", "--pki", &pki_arg]);
    assert!(ok && !said.contains("dmuc-m3"), "{said}");
    step("member 3 refused, then removed from etcd");
    let (first, rest) = members.split_at_mut(2);
    join_member(&first[0], &mut rest[0], &admin_local, &bin, false);
    step("member 3 joined again");
    etcd_three_of_three(&m1_pki, "after member 3 was replaced");
    step("member 3 replaced");
    // The end: the worker, the balancer, the members in order; nothing is left.
    let (ok, said) = w.reset();
    assert!(ok, "{said}");
    drop(w);
    let (ok, said) = lb.reset();
    assert!(ok, "{said}");
    drop(lb);
    step("the worker and the balancer reset");
    // The members together, each in its own order (API server, then etcd): one by one, the
    // last ones' API servers would lose etcd's majority while stopping, and wait on it until
    // their stop timeout.
    let resets: Vec<(String, bool, String)> = std::thread::scope(|s| {
        let running: Vec<_> = members
            .iter_mut()
            .map(|m| {
                s.spawn(move || {
                    let (ok, said) = m.reset();
                    (m.name.clone(), ok, said)
                })
            })
            .collect();
        running.into_iter().map(|t| t.join().unwrap()).collect()
    });
    for (name, ok, said) in resets {
        assert!(ok, "{name}: {said}");
    }
    for m in &members {
        assert!(
            std::fs::read_dir(m.state()).is_ok_and(|mut r| r.next().is_none()),
            "{}: {} is not empty",
            m.name,
            m.state().display()
        );
    }
    step("everything reset");
    let dirs: Vec<PathBuf> = members.iter().map(|m| m.dir.clone()).collect();
    drop(members);
    for d in dirs {
        assert!(processes_naming(&d).is_empty(), "{} left", d.display());
    }
    let bin_s = bin.display().to_string();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(
            !cmd.contains(&bin_s) && !cmd.contains("haproxy -db"),
            "left: {cmd}"
        );
    }
}
