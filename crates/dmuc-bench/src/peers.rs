//! dmuc beside other supervisors, in the same harness and the same run: N `sleep` services
//! each, with times from the kernel's process events (crate::procev), not from any
//! supervisor's own report or a polling loop of ours.
//!
//! Per supervisor: start (its process spawned → the N-th `sleep` exec'd; median of 3 runs),
//! restart (SIGKILL of a service's `sleep` → the replacement's exec, 20 kills), its status
//! command of choice as a whole process (median of 20), and the PSS of all its processes at
//! rest (the services' `sleep`s excluded; for dmuc the tmux server is included). The bench
//! makes itself a child subreaper, so daemons that detach (pm2) stay in its process tree,
//! and it kills only processes of that tree.
//!
//! Peers are found on PATH or through `DMUC_PEERS` (a directory holding `venv/bin`
//! (supervisord, circusd from PyPI), `npm/node_modules/.bin` (pm2) and `horust/bin`);
//! one that is missing is reported as skipped. Needs root (the connector).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procev::{ProcEvents, mono_ns};

/// One supervisor set up for N services in a directory.
struct Setup {
    start: Command,
    /// Status commands: all services, and one where the tool can name one.
    status: Vec<(Command, &'static str)>,
    /// Asks it to stop (after which the harness kills what is left of its tree).
    stop: Box<dyn Fn(&mut Child)>,
    /// It restarts what dies (the raw tmux baseline does not).
    restarts: bool,
    /// Directories to keep while it runs.
    _keep: Option<tempfile::TempDir>,
}

struct Peer {
    name: &'static str,
    /// Its main binary, to tell whether it is installed.
    exe: PathBuf,
    setup: fn(&Path, usize, &Path, &Tools) -> Setup,
}

/// Where the peers' programs are.
struct Tools {
    peers: PathBuf,
    bench_dir: PathBuf,
}

impl Tools {
    fn find(&self, name: &str) -> PathBuf {
        for sub in ["venv/bin", "npm/node_modules/.bin", "horust/bin"] {
            let p = self.peers.join(sub).join(name);
            if p.exists() {
                return p;
            }
        }
        std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join(name))
                    .find(|p| p.exists())
            })
            .unwrap_or_else(|| PathBuf::from(name))
    }
}

fn sig(child: &Child, s: nix::sys::signal::Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), s);
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

fn run_script(dir: &Path, sleep: &Path) {
    let run = dir.join("run");
    write(
        &run,
        &format!("#!/bin/sh\nexec {} 100000\n", sleep.display()),
    );
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Dates a scan directory 10 s back, as a configuration made before boot would be: runsvdir
/// does not trust a directory modified within the current second and would wait for the
/// next one before its first scan.
fn backdate(dir: &Path) {
    let past = std::time::SystemTime::now() - Duration::from_secs(10);
    std::fs::File::open(dir)
        .unwrap()
        .set_modified(past)
        .unwrap();
}

fn dmuc(dir: &Path, n: usize, sleep: &Path, t: &Tools) -> Setup {
    let mut g = String::new();
    for i in 0..n {
        g += &format!(
            "[component.c{i}]\ncommand = [\"{}\", \"100000\"]\nbackoff = {{ initial = \"0s\" }}\n",
            sleep.display()
        );
    }
    write(&dir.join("g.toml"), &g);
    let keep = crate::tmpfs_run(dir);
    let mut start = Command::new(t.bench_dir.join("dmucd"));
    start
        .arg("--config")
        .arg(dir.join("g.toml"))
        .arg("--tmux-socket")
        .arg(dir.join("run/tmux.sock"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .arg("--log-dir")
        .arg(dir.join("log"))
        .arg("--socket")
        .arg(dir.join("run/dmucd.sock"))
        .env("DMUC_LOG", "warn");
    let dmucctl = |names: &[&str]| {
        let mut c = Command::new(t.bench_dir.join("dmucctl"));
        c.arg("--socket")
            .arg(dir.join("run/dmucd.sock"))
            .arg("status")
            .args(names);
        c
    };
    Setup {
        _keep: keep,
        restarts: true,
        start,
        status: vec![
            (dmucctl(&[]), "dmucctl status, all N"),
            (dmucctl(&["c0"]), "dmucctl status c0"),
        ],
        stop: Box::new(|c| sig(c, nix::sys::signal::Signal::SIGTERM)),
    }
}

/// The floor for anything that gives each service a tmux window: chained tmux commands
/// creating the N windows, each running the program directly. One tmux command carries at
/// most 16 KB of arguments (tmux's message size), about 300 windows: beyond, the windows go
/// in several commands, run one after the other by a shell script.
fn raw_tmux(dir: &Path, n: usize, sleep: &Path, _: &Tools) -> Setup {
    const PER_COMMAND: usize = 200;
    let sock = dir.join("tmux.sock");
    let q = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', "'\\''"));
    let mut script = format!(
        "tmux -S {} -f /dev/null new-session -d -x 200 -y 50",
        q(&sock)
    );
    for i in 0..n {
        if i > 0 && i % PER_COMMAND == 0 {
            script.push_str(&format!(
                "\ntmux -S {} new-window -d -- {} 100000",
                q(&sock),
                q(sleep)
            ));
        } else {
            script.push_str(&format!(" \\; new-window -d -- {} 100000", q(sleep)));
        }
    }
    script.push('\n');
    let path = dir.join("start-windows.sh");
    std::fs::write(&path, script).expect("write the raw tmux script");
    let mut start = Command::new("/bin/sh");
    start.arg(&path);
    Setup {
        _keep: None,
        restarts: false,
        start,
        status: Vec::new(),
        stop: Box::new(move |_| {
            let _ = Command::new("tmux")
                .arg("-S")
                .arg(&sock)
                .arg("kill-server")
                .status();
        }),
    }
}

fn runit(dir: &Path, n: usize, sleep: &Path, t: &Tools) -> Setup {
    for i in 0..n {
        run_script(&dir.join(format!("sv/c{i}")), sleep);
    }
    backdate(&dir.join("sv"));
    let mut start = Command::new(t.find("runsvdir"));
    start.arg("-P").arg(dir.join("sv"));
    let mut status = Command::new(t.find("sv"));
    status.arg("status");
    for i in 0..n {
        status.arg(dir.join(format!("sv/c{i}")));
    }
    let mut one = Command::new(t.find("sv"));
    one.arg("status").arg(dir.join("sv/c0"));
    Setup {
        _keep: None,
        restarts: true,
        start,
        status: vec![(status, "sv status, all N"), (one, "sv status c0")],
        // runsvdir passes TERM to each runsv on HUP; each stops its service.
        stop: Box::new(|c| sig(c, nix::sys::signal::Signal::SIGHUP)),
    }
}

fn s6(dir: &Path, n: usize, sleep: &Path, t: &Tools) -> Setup {
    for i in 0..n {
        run_script(&dir.join(format!("scan/c{i}")), sleep);
    }
    backdate(&dir.join("scan"));
    let mut start = Command::new(t.find("s6-svscan"));
    start.arg(dir.join("scan"));
    let mut status = Command::new(t.find("s6-svstat"));
    status.arg(dir.join("scan/c0"));
    let ctl = t.find("s6-svscanctl");
    let scan = dir.join("scan");
    Setup {
        _keep: None,
        restarts: true,
        start,
        status: vec![(status, "s6-svstat c0")],
        stop: Box::new(move |_| {
            let _ = Command::new(&ctl).arg("-t").arg(&scan).status();
        }),
    }
}

fn supervisord(dir: &Path, n: usize, sleep: &Path, t: &Tools) -> Setup {
    let d = dir.display();
    let mut c = format!(
        "[supervisord]\nnodaemon=true\nlogfile={d}/supervisord.log\npidfile={d}/supervisord.pid\n\
         [unix_http_server]\nfile={d}/supervisor.sock\n\
         [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\
         [supervisorctl]\nserverurl=unix://{d}/supervisor.sock\n"
    );
    std::fs::create_dir_all(dir.join("log")).unwrap();
    for i in 0..n {
        c += &format!(
            "[program:c{i}]\ncommand={} 100000\nautorestart=true\nstartsecs=0\n\
             redirect_stderr=true\nstdout_logfile={d}/log/c{i}.log\n",
            sleep.display()
        );
    }
    write(&dir.join("supervisord.conf"), &c);
    let mut start = Command::new(t.find("supervisord"));
    start.arg("-c").arg(dir.join("supervisord.conf"));
    let mut status = Command::new(t.find("supervisorctl"));
    status
        .arg("-c")
        .arg(dir.join("supervisord.conf"))
        .arg("status");
    Setup {
        _keep: None,
        restarts: true,
        start,
        status: vec![(status, "supervisorctl status, all N")],
        stop: Box::new(|c| sig(c, nix::sys::signal::Signal::SIGTERM)),
    }
}

fn circus(dir: &Path, n: usize, sleep: &Path, t: &Tools) -> Setup {
    let d = dir.display();
    let mut c = format!(
        "[circus]\nendpoint = ipc://{d}/ctl.sock\npubsub_endpoint = ipc://{d}/pub.sock\n\
         stats_endpoint = ipc://{d}/stats.sock\ncheck_delay = 0.1\n"
    );
    std::fs::create_dir_all(dir.join("log")).unwrap();
    for i in 0..n {
        c += &format!(
            "[watcher:c{i}]\ncmd = {}\nargs = 100000\nwarmup_delay = 0\nnumprocesses = 1\n\
             stdout_stream.class = FileStream\nstdout_stream.filename = {d}/log/c{i}.log\n",
            sleep.display()
        );
    }
    write(&dir.join("circus.ini"), &c);
    let mut start = Command::new(t.find("circusd"));
    start.arg(dir.join("circus.ini"));
    let mut status = Command::new(t.find("circusctl"));
    status
        .arg("--endpoint")
        .arg(format!("ipc://{d}/ctl.sock"))
        .arg("status");
    Setup {
        _keep: None,
        restarts: true,
        start,
        status: vec![(status, "circusctl status, all N")],
        stop: Box::new(|c| sig(c, nix::sys::signal::Signal::SIGTERM)),
    }
}

fn pm2(dir: &Path, n: usize, sleep: &Path, t: &Tools) -> Setup {
    let apps: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "name": format!("c{i}"), "script": sleep, "args": "100000",
                "interpreter": "none", "autorestart": true, "restart_delay": 0,
                "out_file": dir.join(format!("log/c{i}.log")),
                "error_file": dir.join(format!("log/c{i}.err")),
            })
        })
        .collect();
    write(
        &dir.join("eco.json"),
        &serde_json::json!({ "apps": apps }).to_string(),
    );
    let pm2 = t.find("pm2");
    let home = dir.join("pm2");
    // `pm2 start` starts the daemon (which detaches) and returns once it has the apps.
    let mut start = Command::new(&pm2);
    start
        .arg("start")
        .arg(dir.join("eco.json"))
        .env("PM2_HOME", &home);
    let mut status = Command::new(&pm2);
    status.arg("ls").env("PM2_HOME", &home);
    Setup {
        _keep: None,
        restarts: true,
        start,
        status: vec![(status, "pm2 ls, all N")],
        stop: Box::new(move |_| {
            let _ = Command::new(&pm2)
                .arg("kill")
                .env("PM2_HOME", &home)
                .stdout(Stdio::null())
                .status();
        }),
    }
}

fn horust(dir: &Path, n: usize, sleep: &Path, t: &Tools) -> Setup {
    for i in 0..n {
        write(
            &dir.join(format!("services/c{i}.toml")),
            &format!(
                "command = \"{} 100000\"\n[restart]\nstrategy = \"always\"\nbackoff = \"0s\"\nattempts = 0\n",
                sleep.display()
            ),
        );
    }
    let mut start = Command::new(t.find("horust"));
    start.arg("--services-path").arg(dir.join("services"));
    Setup {
        _keep: None,
        restarts: true,
        start,
        status: Vec::new(),
        stop: Box::new(|c| sig(c, nix::sys::signal::Signal::SIGTERM)),
    }
}

/// Every process under ours (children, and orphans re-parented to us as subreaper).
pub(crate) fn descendants() -> Vec<u32> {
    let me = std::process::id();
    let mut parent = std::collections::HashMap::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let ppid = stat
            .rsplit(')')
            .next()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if let Some(pp) = ppid {
            parent.insert(pid, pp);
        }
    }
    let mut out = Vec::new();
    for &pid in parent.keys() {
        let mut p = pid;
        while let Some(&pp) = parent.get(&p) {
            if pp == me {
                out.push(pid);
                break;
            }
            p = pp;
        }
    }
    out
}

fn pss_kb(pid: u32) -> u64 {
    crate::kb(pid, "smaps_rollup", "Pss:")
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[derive(Default)]
struct Result {
    start_ms: Vec<f64>,
    restart_ms: Vec<f64>,
    status_ms: Vec<(f64, &'static str)>,
    pss_kb: u64,
    procs: usize,
    /// PSS by command name, largest first.
    by_comm: Vec<(String, u64, usize)>,
    /// RSS of its largest process (the daemon), KB.
    main_rss_kb: u64,
}

/// One round of one supervisor: start to all running; in round 0 also the restarts, the
/// status command and memory; then stop. `None` if it could not be spawned.
fn measure(
    peer: &Peer,
    round: usize,
    res: &mut Result,
    (n, ev, sleep, tools): (usize, &ProcEvents, &Path, &Tools),
) -> Option<()> {
    {
        let dir = tempfile::tempdir().unwrap();
        let mut s = (peer.setup)(dir.path(), n, sleep, tools);
        let t0 = mono_ns();
        let mut child = s
            .start
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let up = ev.wait(Instant::now() + Duration::from_secs(60), |seen| {
            let live = seen.live_since(t0);
            (live.len() >= n).then_some(())
        });
        if up.is_none() {
            eprintln!("{}: not all {n} services came up in 60 s", peer.name);
        } else {
            ev.sync();
            let last = ev.with(|seen| seen.live_since(t0).iter().map(|(_, t)| *t).max());
            res.start_ms.push(ms(last.unwrap_or(t0) - t0));
        }
        if round == 0 && up.is_some() {
            // Part of the protocol, not a synchronisation: runit and s6 hold back the restart
            // of a service that ran for less than a second, so every service is given two
            // seconds of life before the kills (as in a running system).
            std::thread::sleep(Duration::from_secs(2));
            if s.restarts {
                restarts(ev, n, t0, &mut res.restart_ms);
            }
            for (cmd, what) in s.status.iter_mut() {
                let mut times: Vec<f64> = (0..20)
                    .map(|_| {
                        let t = Instant::now();
                        let ok = cmd
                            .stdout(Stdio::null())
                            .stderr(Stdio::null())
                            .status()
                            .is_ok_and(|s| s.success());
                        if !ok {
                            eprintln!("{}: {what} failed", peer.name);
                        }
                        t.elapsed().as_secs_f64() * 1000.0
                    })
                    .collect();
                res.status_ms.push((crate::median(&mut times), what));
            }
            let sleeps: Vec<u32> = ev.with(|seen| seen.live_since(0).iter().map(|p| p.0).collect());
            let procs: Vec<u32> = descendants()
                .into_iter()
                .filter(|p| !sleeps.contains(p))
                .collect();
            res.pss_kb = procs.iter().map(|p| pss_kb(*p)).sum();
            res.procs = procs.len();
            res.main_rss_kb = procs
                .iter()
                .map(|p| crate::kb(*p, "status", "VmRSS:"))
                .max()
                .unwrap_or(0);
            let mut by: std::collections::BTreeMap<String, (u64, usize)> = Default::default();
            for p in &procs {
                let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
                let e = by.entry(comm.trim().to_string()).or_default();
                e.0 += pss_kb(*p);
                e.1 += 1;
            }
            res.by_comm = by.into_iter().map(|(c, (k, n))| (c, k, n)).collect();
            res.by_comm.sort_by_key(|e| std::cmp::Reverse(e.1));
        }
        (s.stop)(&mut child);
        // Whatever did not stop within 10 s is killed (only processes of our tree).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let _ = child.try_wait();
            reap();
            let left = descendants();
            if left.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                for p in left {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                }
            }
            // Wait for the next exit anywhere rather than spin.
            let t = mono_ns();
            ev.wait(Instant::now() + Duration::from_millis(200), |seen| {
                seen.exits.values().any(|e| *e > t).then_some(())
            });
        }
    }
    Some(())
}

/// Collects exited children (and adopted orphans) so they do not stay as zombies.
fn reap() {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if st == WaitStatus::StillAlive {
            break;
        }
    }
}

/// 20 kills of a running service, each timed from the kernel's exit of the killed process to
/// the exec of its replacement.
fn restarts(ev: &ProcEvents, n: usize, t0: u64, out: &mut Vec<f64>) {
    let mut first: Vec<u32> = Vec::new();
    for k in 0..20 {
        let live = ev.with(|seen| seen.live_since(t0));
        let mut pids: Vec<u32> = live.iter().map(|p| p.0).collect();
        pids.sort_unstable();
        if first.is_empty() {
            first = pids.clone();
        }
        // Each kill takes a service started with the others (never a fresh replacement,
        // which runit and s6 would hold back), while there are enough of them.
        let Some(&victim) = first.get(k % first.len().max(1)) else {
            return;
        };
        let before: Vec<u32> = pids.clone();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(victim as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let got = ev.wait(Instant::now() + Duration::from_secs(10), |seen| {
            let exit = *seen.exits.get(&victim)?;
            let live = seen.live_since(t0);
            let fresh = live.iter().find(|(p, _)| !before.contains(p))?;
            (live.len() >= n).then_some((exit, fresh.0))
        });
        let Some((exit, fresh)) = got else {
            eprintln!("no replacement within 10 s");
            return;
        };
        ev.sync(); // the replacement's last exec (after a shell's) is in
        let exec = ev
            .with(|seen| seen.tracked.get(&fresh).copied())
            .unwrap_or(exit);
        out.push(ms(exec.saturating_sub(exit)));
        reap();
    }
}

/// Runs every installed peer and dmuc with `n` services each, and prints one table.
pub fn peers(n: usize, only: Option<&str>) {
    // SAFETY: prctl with an integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
    let work = tempfile::tempdir().unwrap();
    // A private copy of sleep: its path identifies the services' processes in exec events.
    let sleep = work.path().join("svc-sleep");
    std::fs::copy("/bin/sleep", &sleep).unwrap();
    let ev = ProcEvents::start(sleep.clone()).expect("the process-events connector needs root");
    let tools = Tools {
        peers: std::env::var_os("DMUC_PEERS")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/tmp/peers")),
        bench_dir: crate::bin("dmucd").parent().unwrap().to_path_buf(),
    };
    let list: Vec<Peer> = vec![
        Peer {
            name: "dmuc",
            exe: tools.bench_dir.join("dmucd"),
            setup: dmuc,
        },
        Peer {
            name: "raw tmux (baseline)",
            exe: tools.find("tmux"),
            setup: raw_tmux,
        },
        Peer {
            name: "runit",
            exe: tools.find("runsvdir"),
            setup: runit,
        },
        Peer {
            name: "s6",
            exe: tools.find("s6-svscan"),
            setup: s6,
        },
        Peer {
            name: "supervisord",
            exe: tools.find("supervisord"),
            setup: supervisord,
        },
        Peer {
            name: "circus",
            exe: tools.find("circusd"),
            setup: circus,
        },
        Peer {
            name: "pm2",
            exe: tools.find("pm2"),
            setup: pm2,
        },
        Peer {
            name: "horust",
            exe: tools.find("horust"),
            setup: horust,
        },
    ];
    println!(
        "peers, {n} services each (start: median of 3; restart: 20 kills, kernel exit -> replacement exec; status: median of 20 whole-process runs)"
    );
    println!(
        "| supervisor | start {n} | restart median / p99 | status command | PSS at rest (processes) | largest process RSS |"
    );
    println!("|---|---|---|---|---|---|");
    let mut breakdown = Vec::new();
    let list: Vec<Peer> = list
        .into_iter()
        .filter(|p| only.is_none_or(|o| o.split(',').any(|w| p.name.starts_with(w))))
        .collect();
    let mut results: Vec<Option<Result>> = list
        .iter()
        .map(|p| p.exe.exists().then(Result::default))
        .collect();
    // Rounds interleave the supervisors, so a slow spell of the machine falls on all alike.
    for round in 0..3 {
        for (p, r) in list.iter().zip(results.iter_mut()) {
            if let Some(res) = r
                && measure(p, round, res, (n, &ev, &sleep, &tools)).is_none()
            {
                *r = None;
            }
        }
    }
    for (p, r) in list.iter().zip(results) {
        if !p.exe.exists() {
            println!(
                "| {} | skipped: {} not installed | | | |",
                p.name,
                p.exe.display()
            );
            continue;
        }
        let Some(mut r) = r else {
            println!("| {} | could not start | | | |", p.name);
            continue;
        };
        let start = if r.start_ms.is_empty() {
            "—".to_string()
        } else {
            format!("{:.0} ms", crate::median(&mut r.start_ms))
        };
        let restart = if r.restart_ms.is_empty() {
            "—".to_string()
        } else {
            let med = crate::median(&mut r.restart_ms);
            format!("{med:.1} / {:.1} ms", crate::pct(&mut r.restart_ms, 0.99))
        };
        let status = if r.status_ms.is_empty() {
            "—".to_string()
        } else {
            let each: Vec<String> = r
                .status_ms
                .iter()
                .map(|(t, what)| format!("{t:.1} ms ({what})"))
                .collect();
            each.join("; ")
        };
        println!(
            "| {} | {start} | {restart} | {status} | {:.1} MB ({}) | {:.1} MB |",
            p.name,
            r.pss_kb as f64 / 1024.0,
            r.procs,
            r.main_rss_kb as f64 / 1024.0
        );
        let parts: Vec<String> = r
            .by_comm
            .iter()
            .map(|(c, k, n)| format!("{c} {:.1} MB ({n})", *k as f64 / 1024.0))
            .collect();
        breakdown.push(format!("{}: {}", p.name, parts.join(", ")));
    }
    println!("\nPSS by process name:");
    for b in breakdown {
        println!("- {b}");
    }
    let lost = ev.with(|s| s.overruns);
    if lost > 0 {
        println!("warning: {lost} process-event overruns (figures may miss events)");
    }
}
