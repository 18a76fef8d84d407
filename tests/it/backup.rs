//! `dmucctl backup` and `dmucctl restore` against a real etcd with TLS and client
//! certificates, run by dmucd with dependents: the snapshot and its checksum, the refusals
//! that change nothing (an existing file, a tampered snapshot, a dry run), and the restore's
//! ordered stop, data swap and return. The real cluster's restore is in realcluster.rs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::util::*;

const T: Duration = Duration::from_secs(30);

/// A CA and a certificate for 127.0.0.1 good for serving and as a client (as kubeadm makes
/// etcd's), made with openssl.
fn certs(dir: &Path) {
    let sh = format!(
        r#"set -e
cd {d}
openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2 -subj /CN=etcd-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=etcd 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n' > ext
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile ext 2>/dev/null
"#,
        d = dir.display()
    );
    let o = Command::new("sh").args(["-c", &sh]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

struct Etcd {
    endpoint: String,
    tls: Vec<String>,
}

impl Etcd {
    fn ctl(&self, args: &[&str]) -> String {
        let o = Command::new("etcdctl")
            .arg(format!("--endpoints={}", self.endpoint))
            .args(&self.tls)
            .args(args)
            .env("ETCDCTL_API", "3")
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The keys under /t/ and their values.
    fn keys(&self) -> Vec<String> {
        self.ctl(&["get", "--prefix", "/t/"])
            .lines()
            .map(String::from)
            .collect()
    }
}

fn pid(d: &mut Daemon, name: &str) -> u64 {
    d.comp(name).unwrap()["pid"].as_u64().unwrap()
}

fn out(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The entries of `dir` whose name starts with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn backup_and_restore_of_a_tls_etcd_stop_its_dependents_in_order_and_bring_back_the_saved_keys() {
    if skip_without(
        "the etcd backup test",
        &["etcd", "etcdctl", "openssl", "sha256sum"],
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    certs(w);
    let (port, peer) = (free_port(), free_port());
    let endpoint = format!("https://127.0.0.1:{port}");
    let tls: Vec<String> = [
        ("cacert", "ca.crt"),
        ("cert", "server.crt"),
        ("key", "server.key"),
    ]
    .iter()
    .map(|(f, file)| format!("--{f}={}", w.join(file).display()))
    .collect();
    let etcdctl = Command::new("sh")
        .args(["-c", "command -v etcdctl"])
        .output()
        .unwrap();
    let etcdctl = String::from_utf8_lossy(&etcdctl.stdout).trim().to_string();
    let probe: Vec<String> = std::iter::once(etcdctl)
        .chain([format!("--endpoints={endpoint}")])
        .chain(tls.iter().cloned())
        .chain(["endpoint".into(), "health".into()])
        .map(|a| format!("{a:?}"))
        .collect();
    let s = standin();
    let toml = format!(
        r#"
[component.etcd]
command = ["etcd", "--name", "n1", "--data-dir", "data",
           "--listen-client-urls", "{endpoint}", "--advertise-client-urls", "{endpoint}",
           "--listen-peer-urls", "http://127.0.0.1:{peer}",
           "--initial-advertise-peer-urls", "http://127.0.0.1:{peer}",
           "--initial-cluster", "n1=http://127.0.0.1:{peer}",
           "--client-cert-auth", "--trusted-ca-file", "ca.crt",
           "--cert-file", "server.crt", "--key-file={w}/server.key"]
cwd = "{w}"
ready = {{ exec = [{probe}], interval = "100ms", timeout = "5s" }}
[component.api]
command = ["{s}", "--name", "api"]
after = ["etcd"]
[component.worker]
command = ["{s}", "--name", "worker"]
after = [{{ component = "api", condition = "started" }}]
[component.held]
command = ["{s}", "--name", "held"]
after = ["etcd"]
[component.other]
command = ["{s}", "--name", "other"]
"#,
        w = w.display(),
        probe = probe.join(", ")
    );
    let mut d = Daemon::start(&toml);
    for n in ["etcd", "api", "worker", "held", "other"] {
        d.wait_state(n, if n == "etcd" { "ready" } else { "running" }, T);
    }
    let e = Etcd { endpoint, tls };
    e.ctl(&["put", "/t/saved", "before the backup"]);

    // `show` tells etcd's command as dmucd runs it, which backup reads.
    let shown = d.ctl_ok(&["show", "etcd"]);
    assert!(
        shown.contains("[component.etcd]") && shown.contains(r#""--client-cert-auth""#),
        "{shown}"
    );

    // The backup: the snapshot, private, and a checksum that sha256sum accepts.
    let backups = w.join("backups");
    let snap = backups.join("etcd.db");
    let said = d.ctl_ok(&["backup", snap.to_str().unwrap()]);
    assert!(said.contains("saved") && said.contains("sha256"), "{said}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&snap).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the snapshot holds the cluster's secrets");
    let check = Command::new("sha256sum")
        .args(["-c", "etcd.db.sha256"])
        .current_dir(&backups)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", out(&check));
    // A second backup to the same file is refused and leaves it alone.
    let first = std::fs::read(&snap).unwrap();
    let again = d.ctl(&["backup", snap.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "{}", out(&again));
    assert!(out(&again).contains("--force"), "{}", out(&again));
    assert_eq!(std::fs::read(&snap).unwrap(), first);

    // After the backup: one key gone, one new; `held` stopped by the operator.
    e.ctl(&["del", "/t/saved"]);
    e.ctl(&["put", "/t/later", "after the backup"]);
    d.ctl_ok(&["stop", "held"]);
    let after = e.keys();
    let pids: Vec<u64> = ["etcd", "api", "worker", "other"]
        .iter()
        .map(|n| pid(&mut d, n))
        .collect();
    let unchanged = |d: &mut Daemon, what: &str| {
        let now: Vec<u64> = ["etcd", "api", "worker", "other"]
            .iter()
            .map(|n| pid(d, n))
            .collect();
        assert_eq!(now, pids, "{what} restarted something");
        assert_eq!(e.keys(), after, "{what} changed etcd");
        assert!(
            named(w, "data.").is_empty(),
            "{what} left {:?}",
            named(w, "data.")
        );
    };

    // --dry-run: the plan, and nothing changed.
    let plan = d.ctl_ok(&["restore", "--dry-run", snap.to_str().unwrap()]);
    assert!(plan.contains("checksum ok"), "{plan}");
    assert!(
        plan.contains("stop, in order:  worker, held, api, etcd"),
        "{plan}"
    );
    assert!(
        plan.contains("start again:     etcd, api, worker\n"),
        "{plan}"
    );
    assert!(plan.contains("dry run: nothing was changed"), "{plan}");
    unchanged(&mut d, "restore --dry-run");

    // A snapshot that is not the one saved: refused before anything stops.
    let bad = backups.join("bad.db");
    let mut bytes = first.clone();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&bad, &bytes).unwrap();
    let sum = std::fs::read_to_string(backups.join("etcd.db.sha256")).unwrap();
    std::fs::write(
        backups.join("bad.db.sha256"),
        sum.replace("etcd.db", "bad.db"),
    )
    .unwrap();
    let refused = d.ctl(&["restore", "-y", bad.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{}", out(&refused));
    assert!(
        out(&refused).contains("is not the snapshot that was saved"),
        "{}",
        out(&refused)
    );
    unchanged(&mut d, "a refused restore");

    // The restore.
    let seq = d.last_seq().unwrap();
    let done = d.ctl_ok(&["restore", "-y", snap.to_str().unwrap()]);
    assert!(done.contains("started etcd, api, worker"), "{done}");
    assert_eq!(e.keys(), ["/t/saved", "before the backup"]);
    let ev: Vec<serde_json::Value> = d
        .events()
        .into_iter()
        .filter(|e| e["seq"].as_u64() > Some(seq))
        .collect();
    let at = |n: &str, to: &str| seq_of(&ev, n, to).unwrap_or_else(|| panic!("{n} {to}"));
    assert!(at("worker", "stopped") < at("api", "stopping"));
    assert!(at("api", "stopped") < at("etcd", "stopping"));
    assert!(at("etcd", "stopped") < at("etcd", "starting"));
    assert!(at("etcd", "ready") < at("api", "starting"));
    for n in ["etcd", "api", "worker"] {
        assert_ne!(
            pid(&mut d, n),
            pids[["etcd", "api", "worker"]
                .iter()
                .position(|x| *x == n)
                .unwrap()]
        );
    }
    assert_eq!(pid(&mut d, "other"), pids[3], "other does not use etcd");
    assert_eq!(
        d.comp("held").unwrap()["state"],
        "stopped",
        "held was stopped before"
    );
    // The data of before is kept, nothing else is left beside it.
    let kept = named(w, "data.");
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(
        kept[0].to_string_lossy().contains("data.before-restore-"),
        "{kept:?}"
    );
    assert!(done.contains(&kept[0].display().to_string()), "{done}");
    d.stop();
}
