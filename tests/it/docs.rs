//! The docs as written (issue 29): docs/tutorial.md's blocks run in order, on a machine of
//! their own, against the real Kubernetes of ../shared/k8s, and what each command prints is
//! checked against what the page shows (tests/src/doc.rs: the markers, the comparison).
//!
//! The machine is a node of config/one-machine.sh named `vm` (the tutorial's session's host
//! name), on the test bridge: its own network, /run, /var/lib/dmuc, /var/lib/kubelet, ...,
//! and here also its own /usr/local/bin and /opt, so that the page's paths are used as
//! written and nothing lands on the host. Each command runs in bash from the repository's
//! root (the page's `config/cluster.toml`), with the environment the page's commands
//! exported so far (`export KUBECONFIG=...`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dmuc_tests::doc::{self, Step};

use crate::nodes::{Bridge, Worker};
use crate::util::*;

/// How long one command may take (a `dmucctl start` of the API server under CI's load
/// included), unless its marker retries it for longer.
const STEP: Duration = Duration::from_secs(240);

/// A step that did not fail: it printed what the page shows, or (DMUC_DOC_RECORD) what it
/// printed instead was written down.
#[derive(PartialEq)]
enum Done {
    AsShown,
    Recorded,
}

/// The pages whose blocks are tested (each must say, block by block, how).
const TESTED_PAGES: &[&str] = &["docs/tutorial.md"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .unwrap()
}

/// A page's machine: the node, where its commands' outputs and environment are kept, and
/// what the `instead` blocks use.
struct Machine {
    node: Worker,
    work: PathBuf,
    env: Vec<(String, String)>,
}

impl Machine {
    fn new(name: &str, ip: &str, work: &Path) -> Machine {
        let node = Worker::new(name, ip, &work.join("nodes"));
        // The node's own /usr/local/bin and /opt (tmpfs): what the page installs there stays
        // in the node and goes with it.
        let local = work.join("usr-local-bin");
        std::fs::create_dir_all(&local).unwrap();
        open_dir(&local);
        let (ok, out) = node_sh(
            &node,
            &format!(
                "mount --bind {} /usr/local/bin && mount -t tmpfs -o mode=755 dmuc-doc-opt /opt",
                local.display()
            ),
        );
        assert!(ok, "the node's /usr/local/bin and /opt: {out}");
        let k8s = crate::realcluster::shared_k8s().canonicalize().unwrap();
        Machine {
            node,
            work: work.to_path_buf(),
            env: vec![
                ("DMUC_BUILD".into(), bin_dir().display().to_string()),
                ("DMUC_K8S_DIR".into(), k8s.display().to_string()),
            ],
        }
    }

    /// One command of the page, in bash in the node, from the repository's root, with the
    /// environment exported so far: its exit status (`None`: killed at `wait`) and output.
    fn run(&self, n: usize, command: &str, wait: Duration) -> (Option<i32>, String) {
        let env = self.work.join("env.sh");
        let out_path = self.work.join(format!("out-{n}"));
        let script = format!(
            "cd {repo}\n[ -f {env} ] && . {env}\n{command}\nrc=$?\nexport -p >{env}.new && mv {env}.new {env}\nexit $rc\n",
            repo = repo().display(),
            env = env.display(),
        );
        let out = std::fs::File::create(&out_path).unwrap();
        let e = self.node.enter();
        let mut cmd = Command::new(&e[0]);
        cmd.args(&e[1..])
            .args(["bash", "-c", &script])
            .env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        // A group of its own: what it left running in the background (the page's
        // `dmucd ... &`) is only killed with it when it overran its time.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + wait;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st.code();
            }
            if Instant::now() > deadline {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(child.id() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50)); // the command running, under its deadline
        };
        (
            status,
            std::fs::read_to_string(&out_path).unwrap_or_default(),
        )
    }

    /// What the node says when a step failed: its graph, its last events, its pods.
    fn diagnostics(&self) -> String {
        let (_, out) = self.run(
            0,
            "dmucctl status; dmucctl events | tail -n 30; \
             kubectl --kubeconfig /var/lib/dmuc/pki/admin.kubeconfig get pods -A -o wide",
            Duration::from_secs(60),
        );
        out
    }
}

impl Drop for Machine {
    /// What a page that failed half-way leaves: its dmucd and components, reset as the page's
    /// last chapter does (then the node and its directories go, `Worker`'s drop).
    fn drop(&mut self) {
        if self.node.processes().is_empty() {
            return;
        }
        let (rc, out) = self.run(
            0,
            "dmucctl reset --config config/cluster.toml --yes",
            Duration::from_secs(240),
        );
        if rc != Some(0) {
            eprintln!("cleanup: reset in the page's node: {out}");
        }
        let left = self.node.kill_all();
        if left > 0 {
            eprintln!("cleanup: {left} processes left in the page's node, killed");
        }
    }
}

fn node_sh(node: &Worker, script: &str) -> (bool, String) {
    let e = node.enter();
    let o = Command::new(&e[0])
        .args(&e[1..])
        .args(["sh", "-c", script])
        .output()
        .unwrap();
    said(&o)
}

/// Runs `step` until it succeeds and prints what the page shows (once, or until its retry
/// time is up): `Err` names the page's line and says what went wrong.
fn run_step(m: &Machine, n: usize, file: &str, step: &Step) -> Result<Done, String> {
    let retry = Duration::from_secs(step.retry_secs);
    let deadline = Instant::now() + retry.max(STEP);
    let mut tries = 0;
    loop {
        tries += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        let (rc, out) = m.run(n, &step.command, left.min(STEP));
        let failure = match rc {
            None => Some(format!("did not end within {:?}", left.min(STEP))),
            Some(0) if !step.check => None,
            Some(0) => doc::missing_line(&step.expect, &out)
                .map(|l| format!("did not print the page's line `{l}`")),
            Some(c) => Some(format!("exit status {c}")),
        };
        if std::env::var_os("DMUC_DOC_SHOW").is_some() {
            eprintln!("docs: {file}:{} # {}\n{out}", step.line, step.command);
        }
        let Some(why) = failure else {
            return Ok(Done::AsShown);
        };
        // Retelling a page (DMUC_DOC_RECORD=FILE): what a command printed that the page does
        // not show is written down and the page goes on; the test still fails at its end.
        if let (Some(rec), Some(0)) = (std::env::var_os("DMUC_DOC_RECORD"), rc)
            && (retry.is_zero() || Instant::now() >= deadline)
        {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(rec)
                .unwrap();
            writeln!(
                f,
                "## {file}:{}: {why}\n# {}\n{out}",
                step.line, step.command
            )
            .unwrap();
            return Ok(Done::Recorded);
        }
        if retry.is_zero() || Instant::now() >= deadline || rc.is_none() {
            let tried = if tries > 1 {
                format!(" (tried {tries} times in {retry:?})")
            } else {
                String::new()
            };
            return Err(format!(
                "{file}:{}: `{}` {why}{tried}\n--- it printed:\n{out}--- the page shows:\n{}",
                step.line,
                step.command,
                step.expect.join("\n")
            ));
        }
        std::thread::sleep(Duration::from_secs(1)); // the cluster getting there, under the retry deadline
    }
}

#[test]
fn the_tutorial_runs_as_written_on_the_real_cluster() {
    let mut why = crate::realcluster::missing();
    why.extend(dmuc_tests::missing_programs(&[
        "ip", "nsenter", "unshare", "bash",
    ]));
    if skip_unless("docs::the_tutorial_runs_as_written", &why) {
        return;
    }
    let file = "docs/tutorial.md";
    let page = std::fs::read_to_string(repo().join(file)).unwrap();
    let plan = doc::plan(&page, file).unwrap_or_else(|e| panic!("{e}"));
    for n in &plan.not_run {
        eprintln!("docs: {file}:{}: not run here: {}", n.line, n.why);
    }
    let _ports = fixed_ports();
    let work = tempfile::tempdir().unwrap();
    open_dir(work.path());
    let _bridge = Bridge::new();
    let m = Machine::new("vm", "198.18.0.2", work.path());
    let t0 = Instant::now();
    let mut recorded = 0;
    for (n, step) in plan.steps.iter().enumerate() {
        if step.host.is_some() {
            // Chapter 5's other machines: not in this test yet (tests/it/multinode.rs).
            continue;
        }
        let t = Instant::now();
        let done = match run_step(&m, n + 1, file, step) {
            Ok(done) => done,
            Err(e) => panic!("{e}\n--- the node:\n{}", m.diagnostics()),
        };
        if done == Done::Recorded {
            recorded += 1;
        }
        eprintln!(
            "docs: {file}:{} {} in {:.1?}: {}",
            step.line,
            if done == Done::Recorded {
                "recorded"
            } else {
                "ok"
            },
            t.elapsed(),
            step.command.lines().next().unwrap_or("")
        );
    }
    eprintln!(
        "docs: {file}: {} steps in {:.0?}",
        plan.steps.len(),
        t0.elapsed()
    );
    // The page's reset left nothing running in its machine.
    let left = m.node.processes();
    assert!(left.is_empty(), "after the page's reset: {left:?}");
    assert_eq!(
        recorded, 0,
        "{recorded} steps printed what the page does not show: see DMUC_DOC_RECORD"
    );
}

/// Without root or the binaries too: every block of the tested pages says whether it runs.
#[test]
fn every_block_of_the_tested_pages_says_how_it_is_tested() {
    for file in TESTED_PAGES {
        let page = std::fs::read_to_string(repo().join(file)).unwrap();
        let plan = doc::plan(&page, file).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            plan.steps.iter().any(|s| s.check),
            "{file}: no command's output is checked"
        );
    }
}
