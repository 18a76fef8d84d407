//! `dmuc-bench`: measures the real `dmucd` binary (next to this one) on this machine.
//!
//! ```text
//! cargo build --release --workspace && ./target/release/dmuc-bench all
//! ```
//! Figures: start-up of N components (no probes) to all running, against raw tmux creating
//! the same N windows with one chained command, in the same run; kill -9 → replacement
//! running (zero backoff); daemon RSS and PSS of every dmuc process; idle wakeups and CPU;
//! the control protocol (status round trip, `dmucctl status`, requests/s).
//! Times come from the daemon's own event timestamps (microseconds), not from polling.
//! `peers [N] [names]` puts dmuc beside other supervisors, timed by the kernel (peers.rs).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;

mod boot;
mod peers;
mod procev;

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

fn bin(name: &str) -> PathBuf {
    std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .join(name)
}

struct D {
    dir: tempfile::TempDir,
    _run: Option<tempfile::TempDir>,
    child: Child,
}

/// Puts `dir/run` (the sockets and dmucd's runtime files) on a tmpfs, as `/run` is on a
/// production machine (here `/` holds `/run`; `/dev/shm` is the tmpfs).
pub(crate) fn tmpfs_run(dir: &Path) -> Option<tempfile::TempDir> {
    let t = tempfile::tempdir_in("/dev/shm").ok()?;
    std::os::unix::fs::symlink(t.path(), dir.join("run")).ok()?;
    Some(t)
}

impl D {
    fn start(toml: &str) -> D {
        let dir = tempfile::tempdir().unwrap();
        let run = tmpfs_run(dir.path());
        std::fs::write(dir.path().join("g.toml"), toml).unwrap();
        let child = Command::new(bin("dmucd"))
            .arg("--config")
            .arg(dir.path().join("g.toml"))
            .arg("--tmux-socket")
            .arg(dir.path().join("run/tmux.sock"))
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--log-dir")
            .arg(dir.path().join("log"))
            .arg("--socket")
            .arg(dir.path().join("run/dmucd.sock"))
            .env("DMUC_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        D {
            dir,
            _run: run,
            child,
        }
    }
    fn status(&self) -> Option<Value> {
        serde_json::from_str(
            &std::fs::read_to_string(self.dir.path().join("state/status.json")).ok()?,
        )
        .ok()
    }
    fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.path().join("state/events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
    /// Polls (with a deadline) until `f` holds on the status; timing comes from events.
    fn wait(&self, what: &str, f: impl Fn(&Value) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.status().as_ref().is_some_and(&f) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    fn comps(&self) -> Vec<Value> {
        self.status()
            .map(|s| s["components"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for D {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.dir.path().join("run/tmux.sock"))
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
    }
}

fn graph(n: usize, backoff0: bool) -> String {
    let mut s = String::new();
    for i in 0..n {
        s += &format!(
            "[component.c{i}]\ncommand = [\"sleep\", \"100000\"]\nstart-limit = {{ burst = 1000, interval = \"1s\" }}\n"
        );
        if backoff0 {
            s += "backoff = { initial = \"0s\" }\n";
        }
    }
    s
}

fn all_running(v: &Value) -> bool {
    v["components"]
        .as_array()
        .is_some_and(|a| a.iter().all(|c| c["state"] == "running"))
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn start(n: usize, runs: usize) {
    let (mut dmuc, mut raw) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        let t0 = now_us();
        let d = D::start(&graph(n, false));
        d.wait("all running", all_running);
        let last = d
            .events()
            .iter()
            .filter(|e| e["to"] == "running")
            .filter_map(|e| e["ts_us"].as_u64())
            .max()
            .unwrap();
        dmuc.push((last - t0) as f64 / 1000.0);
        drop(d);

        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let mut args: Vec<String> = [
            "-S",
            sock.to_str().unwrap(),
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            "b",
            "-x",
            "200",
            "-y",
            "50",
            "sleep 100000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for _ in 0..n {
            args.extend(
                [";", "new-window", "-d", "sleep 100000"]
                    .iter()
                    .map(|s| s.to_string()),
            );
        }
        let t = Instant::now();
        let st = Command::new("tmux").args(&args).status().unwrap();
        raw.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(st.success());
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(&sock)
            .arg("kill-server")
            .status();
    }
    let (m, r) = (median(&mut dmuc), median(&mut raw));
    println!(
        "start-{n}: dmucd {m:.0} ms (median of {runs}, runs {dmuc:.0?}), raw tmux chained {r:.0} ms, ratio {:.2}",
        m / r
    );
}

fn restart(kills: usize) {
    let d = D::start(&graph(1, true));
    d.wait("running", all_running);
    let mut lat = Vec::new();
    for _ in 0..kills {
        let pid = d.comps()[0]["pid"].as_u64().unwrap();
        let seen = d.events().len();
        let t = now_us();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        d.wait("a new pid", |v| {
            v["components"][0]["state"] == "running"
                && v["components"][0]["pid"].as_u64() != Some(pid)
        });
        let ev = d.events();
        let back = ev[seen..]
            .iter()
            .find(|e| e["to"] == "running")
            .and_then(|e| e["ts_us"].as_u64())
            .unwrap();
        lat.push((back - t) as f64 / 1000.0);
    }
    println!(
        "restart (kill -9 -> new pid running, zero backoff): median {:.2} ms, p99 {:.2} ms over {kills}",
        median(&mut lat),
        pct(&mut lat, 0.99)
    );
}

/// kill -9 of the tmux server with `n` components running: how long until every shim writes
/// to a new window's terminal again (its fd 1, from /proc), and that no component restarted.
fn tmux_death(n: usize, runs: usize) {
    let d = D::start(&graph(n, false));
    d.wait("all running", all_running);
    let pids =
        |d: &D| -> Vec<Option<u64>> { d.comps().iter().map(|c| c["pid"].as_u64()).collect() };
    let before = pids(&d);
    let shims = shims_of(d.dir.path());
    let tty = |p: u32| std::fs::read_link(format!("/proc/{p}/fd/1")).unwrap_or_default();
    let socket = d.dir.path().join("run/tmux.sock");
    let mut took = Vec::new();
    for _ in 0..runs {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args(["display", "-p", "#{pid}"])
            .output()
            .unwrap();
        let server: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let t = Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(server),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
        let deadline = t + Duration::from_secs(60);
        loop {
            // The new server's terminals (numbers are reused, so the old ones may be there).
            let panes = Command::new("tmux")
                .arg("-S")
                .arg(&socket)
                .args(["list-panes", "-a", "-F", "#{pid} #{pane_tty}"])
                .output()
                .unwrap();
            let panes = String::from_utf8_lossy(&panes.stdout).into_owned();
            let fresh: Vec<&str> = panes
                .lines()
                .filter(|l| !l.starts_with(&format!("{server} ")))
                .filter_map(|l| l.split(' ').nth(1))
                .collect();
            let back = shims
                .iter()
                .all(|p| fresh.iter().any(|t| tty(*p) == Path::new(t)));
            if back {
                break;
            }
            assert!(Instant::now() < deadline, "the windows did not come back");
            std::thread::sleep(Duration::from_millis(1)); // poll interval of the measurement
        }
        took.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    assert_eq!(pids(&d), before, "a component restarted");
    println!(
        "tmux death at N={n} (kill -9 of the server -> every shim writing to a new window): median {:.0} ms (runs {:.0?}); 0 restarts, same {} PIDs",
        median(&mut took.clone()),
        took,
        before.len()
    );
}

fn kb(pid: u32, file: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// The processes running `prog` (by executable) whose command line names `dir`.
fn procs_of(prog: &str, dir: &Path) -> Vec<u32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap_or_default();
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            exe.file_name().is_some_and(|f| f == prog)
                && String::from_utf8_lossy(&c).contains(&needle)
        })
        .collect()
}

fn shims_of(dir: &Path) -> Vec<u32> {
    procs_of("dmuc-shim", dir)
}

/// The windows' processes (`dmuc-shim --idle --view PID`) of the shims `shims`.
fn views_of(shims: &[u32]) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let c = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.windows(2).any(|w| {
                w[0] == b"--view"
                    && std::str::from_utf8(w[1])
                        .ok()
                        .and_then(|p| p.parse::<u32>().ok())
                        .is_some_and(|p| shims.contains(&p))
            })
        })
        .collect()
}

fn ticks(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = s
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
}

fn memory_and_idle(n: usize, idle_secs: u64) {
    let d = D::start(&graph(n, false));
    d.wait("all running", all_running);
    let pid = d.child.id();
    let rss = kb(pid, "status", "VmRSS:");
    let shims = shims_of(d.dir.path());
    let pss_d = kb(pid, "smaps_rollup", "Pss:");
    let pss_s: u64 = shims.iter().map(|p| kb(*p, "smaps_rollup", "Pss:")).sum();
    // The windows open after the programs start: poll for all of them (with a deadline).
    let until = std::time::Instant::now() + Duration::from_secs(30);
    let mut views = views_of(&shims);
    while views.len() < shims.len() && std::time::Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
        views = views_of(&shims);
    }
    let pss_v: u64 = views.iter().map(|p| kb(*p, "smaps_rollup", "Pss:")).sum();
    println!(
        "memory at N={n}: dmucd RSS {:.1} MB, PSS {:.1} MB; {} shims PSS {:.1} MB total ({:.0} KB each); {} windows' processes {:.1} MB ({:.0} KB each); all dmuc processes {:.1} MB PSS",
        rss as f64 / 1024.0,
        pss_d as f64 / 1024.0,
        shims.len(),
        pss_s as f64 / 1024.0,
        pss_s as f64 / shims.len().max(1) as f64,
        views.len(),
        pss_v as f64 / 1024.0,
        pss_v as f64 / views.len().max(1) as f64,
        (pss_d + pss_s + pss_v) as f64 / 1024.0
    );
    // The rest of the picture: the tmux server with its control client (`tmux -S DIR/...`:
    // the server keeps the client's command line). The overview is drawn by dmucd itself.
    let pss = |ps: Vec<u32>| -> u64 { ps.iter().map(|p| kb(*p, "smaps_rollup", "Pss:")).sum() };
    let tmux = pss(procs_of("tmux", d.dir.path()));
    println!(
        "memory at N={n}: besides: tmux server + dmucd's control client {:.1} MB PSS",
        tmux as f64 / 1024.0
    );
    let cs = |p| {
        kb(p, "status", "voluntary_ctxt_switches:") + kb(p, "status", "nonvoluntary_ctxt_switches:")
    };
    // Two consecutive windows: the first may still see the tail of start-up (the paced
    // status file and marks), the second is steady state.
    for window in ["first", "second"] {
        let (c0, t0) = (cs(pid), ticks(pid));
        std::thread::sleep(Duration::from_secs(idle_secs)); // measuring idleness itself
        let (c1, t1) = (cs(pid), ticks(pid));
        println!(
            "idle for {idle_secs}s at N={n} (no probes, {window} window): {} context switches, {} CPU ticks",
            c1 - c0,
            t1 - t0
        );
    }
}

/// A protocol connection that has said hello.
fn connect(
    sock: &Path,
) -> (
    std::os::unix::net::UnixStream,
    std::io::BufReader<std::os::unix::net::UnixStream>,
) {
    use std::io::{BufRead, Write};
    let deadline = Instant::now() + Duration::from_secs(10);
    let w = loop {
        match std::os::unix::net::UnixStream::connect(sock) {
            Ok(w) => break w,
            Err(e) => {
                assert!(Instant::now() < deadline, "cannot connect: {e}");
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    };
    let mut r = std::io::BufReader::new(w.try_clone().unwrap());
    (&w).write_all(b"{\"id\":0,\"verb\":\"hello\",\"version\":\"1.0\"}\n")
        .unwrap();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    (w, r)
}

/// One `status` round trip on a connection; returns the reply's size.
fn status_rt(
    w: &std::os::unix::net::UnixStream,
    r: &mut std::io::BufReader<std::os::unix::net::UnixStream>,
    line: &mut String,
) -> usize {
    use std::io::{BufRead, Write};
    let mut w = w;
    w.write_all(b"{\"id\":1,\"verb\":\"status\"}\n").unwrap();
    line.clear();
    r.read_line(line).unwrap();
    assert!(line.contains("\"result\""), "{line}");
    line.len()
}

/// `count` status round trips (ms) on one connection after `warm` unmeasured ones, and the
/// reply's size.
fn status_times(sock: &Path, warm: usize, count: usize) -> (Vec<f64>, usize) {
    let (w, mut r) = connect(sock);
    let mut line = String::new();
    let mut size = 0;
    for _ in 0..warm {
        size = status_rt(&w, &mut r, &mut line);
    }
    let times = (0..count)
        .map(|_| {
            let t = Instant::now();
            status_rt(&w, &mut r, &mut line);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    (times, size)
}

/// Control protocol: status round trip with n components, `dmucctl status` as a whole
/// process, and requests per second from 1, 10 and 50 concurrent clients.
fn control(n: usize) {
    let d = D::start(&graph(n, false));
    d.wait("all running", all_running);
    let sock = d.dir.path().join("run/dmucd.sock");
    let (mut rt, size) = status_times(&sock, 200, 2000);
    println!(
        "control: status round trip, {n} components ({size} B reply): p50 {:.3} ms, p99 {:.3} ms (2000 requests)",
        median(&mut rt),
        pct(&mut rt, 0.99)
    );
    let mut whole: Vec<f64> = (0..50)
        .map(|_| {
            let t = Instant::now();
            let st = Command::new(bin("dmucctl"))
                .arg("--socket")
                .arg(&sock)
                .arg("status")
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(st.success());
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    println!(
        "control: `dmucctl status` whole process, {n} components: p50 {:.2} ms, p99 {:.2} ms (50 runs)",
        median(&mut whole),
        pct(&mut whole, 0.99)
    );
    for clients in [1usize, 10, 50] {
        let per = 20_000 / clients;
        let t = Instant::now();
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let sock = sock.clone();
                std::thread::spawn(move || {
                    let (w, mut r) = connect(&sock);
                    let mut line = String::new();
                    for _ in 0..per {
                        status_rt(&w, &mut r, &mut line);
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        let secs = t.elapsed().as_secs_f64();
        println!(
            "control: {clients:>2} concurrent clients, {} status requests: {:.0} requests/s",
            per * clients,
            (per * clients) as f64 / secs
        );
    }
}

/// A chain of `levels` components, each gated by a tcp probe on the previous one: how long
/// dmuc takes from "dependency ready" to "dependent launched", and from "listening" to "ready".
fn chain(levels: usize) {
    let s = bin("dmuc-standin").display().to_string();
    let mut toml = String::new();
    for i in 0..levels {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        toml += &format!(
            "[component.c{i}]\ncommand = [\"{s}\", \"--name\", \"c{i}\", \"--port\", \"{port}\"]\nready = {{ tcp = \"127.0.0.1:{port}\", interval = \"10ms\" }}\n"
        );
        if i > 0 {
            toml += &format!("after = [\"c{}\"]\n", i - 1);
        }
    }
    let t0 = now_us();
    let d = D::start(&toml);
    d.wait("all ready", |v| {
        v["components"]
            .as_array()
            .is_some_and(|a| a.iter().all(|c| c["state"] == "ready"))
    });
    let ev = d.events();
    let at = |name: String, to: &str| {
        ev.iter()
            .find(|e| e["component"] == name.as_str() && e["to"] == to)
            .and_then(|e| e["ts_us"].as_u64())
            .unwrap()
    };
    let mut react = Vec::new();
    let mut level = Vec::new();
    for i in 1..levels {
        let prev_ready = at(format!("c{}", i - 1), "ready");
        react.push((at(format!("c{i}"), "starting") - prev_ready) as f64 / 1000.0);
        level.push((at(format!("c{i}"), "ready") - prev_ready) as f64 / 1000.0);
    }
    let total = (at(format!("c{}", levels - 1), "ready") - t0) as f64 / 1000.0;
    println!(
        "chain-{levels} (tcp probe every 10 ms): all ready in {total:.0} ms; per level median {:.2} ms (dependency ready -> dependent launched {:.3} ms, the rest is tmux, the shim, the program and the probe's 10 ms period)",
        median(&mut level),
        median(&mut react)
    );
}

/// One component writing 200 MB as fast as it can: bytes logged, time against the same
/// program writing to /dev/null, the daemon's CPU meanwhile, a neighbour's probe unaffected.
fn logs_throughput() {
    let mb = 200u64;
    // 99 x's and a newline per line; the final `echo` ends the last line.
    let producer = format!(
        "head -c {} /dev/zero | tr '\\0' x | fold -w 99; echo",
        mb * 1024 * 1024 / 100 * 99
    );
    let t = Instant::now();
    let st = Command::new("sh")
        .arg("-c")
        .arg(format!("({producer}) > /dev/null"))
        .status()
        .unwrap();
    assert!(st.success());
    let direct = t.elapsed().as_secs_f64();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = bin("dmuc-standin").display().to_string();
    let toml = format!(
        "[daemon]\nlog-max-size = \"1G\"\n[component.probed]\ncommand = [\"{s}\", \"--name\", \"probed\", \"--port\", \"{port}\"]\nready = {{ tcp = \"127.0.0.1:{port}\", interval = \"10ms\" }}\nliveness = {{ tcp = \"127.0.0.1:{port}\", interval = \"10ms\" }}\n[component.writer]\nkind = \"oneshot\"\ncommand = [\"sh\", \"-c\", \"{}\"]\nafter = [\"probed\"]\n",
        producer.replace('\\', "\\\\").replace('"', "\\\"")
    );
    let d = D::start(&toml);
    d.wait("probed ready", |v| v["components"][0]["state"] == "ready");
    let cpu0 = ticks(d.child.id());
    d.wait("the writer done", |v| {
        v["components"][1]["state"] == "completed"
    });
    let cpu1 = ticks(d.child.id());
    let ev = d.events();
    let at = |to: &str| {
        ev.iter()
            .find(|e| e["component"] == "writer" && e["to"] == to)
            .and_then(|e| e["ts_us"].as_u64())
            .unwrap()
    };
    let logged = (at("completed") - at("starting")) as f64 / 1e6;
    let size = std::fs::metadata(d.dir.path().join("log/writer.log"))
        .unwrap()
        .len();
    let expected = mb * 1024 * 1024 / 100 * 99 + mb * 1024 * 1024 / 100 * 99 / 99;
    let failures = ev
        .iter()
        .filter(|e| e["component"] == "probed" && e["event"] == "probe" && e["ok"] == false)
        .count();
    println!(
        "logs: {:.0} MB written through the shim in {logged:.2} s ({:.0} MB/s) vs {direct:.2} s to /dev/null; log file {} bytes (expected {expected}: {}); dmucd CPU {} ticks meanwhile; neighbour's probe failures: {failures}",
        size as f64 / 1048576.0,
        size as f64 / 1048576.0 / logged,
        size,
        if size == expected {
            "equal"
        } else {
            "DIFFERENT"
        },
        cpu1 - cpu0
    );
}

/// `status` round trip and start-up as the graph grows.
fn scaling() {
    for n in [10usize, 100, 500] {
        let d = D::start(&graph(n, false));
        d.wait("all running", all_running);
        let (mut rt, _) = status_times(&d.dir.path().join("run/dmucd.sock"), 50, 500);
        println!(
            "scaling: N={n:>3}: status round trip p50 {:.3} ms ({:.1} us per component)",
            median(&mut rt),
            median(&mut rt) * 1000.0 / n as f64
        );
    }
}

/// CPU over `secs` idle seconds at N components, with or without a liveness probe each (a
/// `file` check every 10 s: what a quiet cluster costs).
fn idle_cpu(n: usize, probes: bool, secs: u64) {
    let mut toml = graph(n, false);
    if probes {
        toml = toml.replace(
            "start-limit",
            "liveness = { file = \"/\", interval = \"10s\" }\nstart-limit",
        );
    }
    let d = D::start(&toml);
    d.wait("all running", all_running);
    let pid = d.child.id();
    // The start-up's tail (paced status file, marks, overview) is not idleness.
    std::thread::sleep(Duration::from_secs(2)); // settling before a measurement window
    let cs = |p| {
        kb(p, "status", "voluntary_ctxt_switches:") + kb(p, "status", "nonvoluntary_ctxt_switches:")
    };
    let (c0, t0) = (cs(pid), ticks(pid));
    std::thread::sleep(Duration::from_secs(secs)); // measuring idleness itself
    let (c1, t1) = (cs(pid), ticks(pid));
    println!(
        "idle {secs}s at N={n} {}: {} context switches, {} CPU ticks ({:.2} ms CPU per second), dmucd RSS {:.1} MB",
        if probes {
            "with a liveness probe each (every 10 s)"
        } else {
            "without probes"
        },
        c1 - c0,
        t1 - t0,
        (t1 - t0) as f64 * 10.0 / secs as f64,
        kb(pid, "status", "VmRSS:") as f64 / 1024.0
    );
}

/// dmucd's context switches, every thread's (the Overview's /proc reads run on tokio's
/// blocking pool).
fn all_switches(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .map(|t| {
            let f = format!("task/{t}/status");
            kb(pid, &f, "voluntary_ctxt_switches:") + kb(pid, &f, "nonvoluntary_ctxt_switches:")
        })
        .sum()
}

/// What the Overview's CPU and memory columns cost: `secs` seconds at N components with no
/// client, then with a client showing the Overview (dmucd reads /proc every 2 s for it).
fn overview_watched(n: usize, secs: u64) {
    let d = D::start(&graph(n, false));
    d.wait("all running", all_running);
    let pid = d.child.id();
    std::thread::sleep(Duration::from_secs(2)); // settling before a measurement window
    let tmux = d.dir.path().join("run/tmux.sock");
    for watched in [false, true] {
        let client = watched.then(|| {
            Command::new("tmux")
                .arg("-S")
                .arg(&tmux)
                .args(["-C", "attach-session", "-t", "=dmuc:=Overview"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        });
        std::thread::sleep(Duration::from_secs(1)); // the client attached and counted
        let (c0, t0) = (all_switches(pid), ticks(pid));
        std::thread::sleep(Duration::from_secs(secs)); // measuring the window itself
        let (c1, t1) = (all_switches(pid), ticks(pid));
        println!(
            "overview at N={n}, {secs}s {}: {} context switches (all threads), {} CPU ticks ({:.2} ms CPU per second)",
            if watched {
                "shown to a client"
            } else {
                "shown to nobody"
            },
            c1 - c0,
            t1 - t0,
            (t1 - t0) as f64 * 10.0 / secs as f64,
        );
        if let Some(mut c) = client {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn main() {
    // Panics abort (the workspace's profile), so no Drop cleans up: every process this bench
    // started, or that a started daemon left behind, is in its tree (it is a child subreaper)
    // and is killed, by PID, before the abort.
    // SAFETY: prctl with an integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        for pid in peers::descendants() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }));
    let what = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    assert!(
        bin("dmucd").exists(),
        "build dmucd first: cargo build --release --workspace"
    );
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        String::from_utf8_lossy(&Command::new("tmux").arg("-V").output().unwrap().stdout).trim()
    );
    if what == "all" || what == "start" {
        start(10, 5);
        start(100, 5);
    }
    if what == "all" || what == "restart" {
        restart(20);
    }
    if what == "all" || what == "control" {
        control(100);
    }
    if what == "all" || what == "chain" {
        chain(10);
    }
    if what == "all" || what == "logs" {
        logs_throughput();
    }
    if what == "all" || what == "scaling" {
        start(500, 3);
        scaling();
    }
    if what == "idle" {
        idle_cpu(100, false, 60);
        idle_cpu(100, true, 60);
        memory_and_idle(500, 10);
    }
    if what == "all" || what == "tmux-death" {
        tmux_death(100, 5);
    }
    if what == "all" || what == "memory" {
        memory_and_idle(100, 10);
    }
    if what == "all" || what == "overview" {
        overview_watched(100, 10);
        overview_watched(500, 10);
    }
    if what == "boot" {
        let arg = |i: usize, what: &str| -> PathBuf {
            std::env::args()
                .nth(i)
                .unwrap_or_else(|| panic!("dmuc-bench boot K8S_BIN IMAGES [RUNS]: {what} missing"))
                .into()
        };
        let runs = std::env::args().nth(4).and_then(|n| n.parse().ok());
        boot::boot(&arg(2, "K8S_BIN"), &arg(3, "IMAGES"), runs.unwrap_or(3));
    }
    if what == "peers" {
        let n = std::env::args().nth(2).and_then(|n| n.parse().ok());
        let only = std::env::args().nth(3);
        peers::peers(n.unwrap_or(100), only.as_deref());
    }
}
