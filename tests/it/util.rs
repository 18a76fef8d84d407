//! The test harness: start a daemon on temp paths, read its status and events, stop it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

pub use dmuc_tests::{output_of_fresh, skip_unless, skip_unless_root, skip_without};

/// `target/debug` (or whichever profile the tests were built with).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().to_path_buf(); // target/<profile>/deps/.. 
    for b in [
        "dmucd",
        "dmucctl",
        "dmucctl-full",
        "dmucctl-tools",
        "dmuc-shim",
        "dmuc-standin",
    ] {
        assert!(
            dir.join(b).exists(),
            "{} is missing: run `cargo build --workspace` (cargo test --workspace builds it)",
            dir.join(b).display()
        );
    }
    dir
}

/// The stand-in program's path.
pub fn standin() -> String {
    bin_dir().join("dmuc-standin").display().to_string()
}

/// Tests that use a cluster's fixed ports (2379, 6443, 10248, ...) hold this lock, so they
/// never run at the same time.
pub fn fixed_ports() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// The sequence number of `name`'s first transition to `to` (events are totally ordered).
pub fn seq_of(events: &[Value], name: &str, to: &str) -> Option<u64> {
    events
        .iter()
        .find(|e| e["component"] == name && e["event"] == "state" && e["to"] == to)
        .and_then(|e| e["seq"].as_u64())
}

/// A free loopback port (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Whether a PID is a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            s.rsplit(')')
                .next()
                .and_then(|r| r.split_whitespace().next())
                != Some("Z")
        }
        Err(_) => false,
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` at the deadline.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10)); // poll interval, bounded by the deadline
    }
}

/// Whether a command succeeded, and what it said (stdout, then stderr).
pub fn said(o: &Output) -> (bool, String) {
    let text =
        String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    (o.status.success(), text)
}

/// Makes a test's temp dir (0700) traversable and readable by other users: components that
/// run as users of their own (`user = ...`) reach their programs and files there.
pub fn open_dir(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A running daemon on private paths.
pub struct Daemon {
    pub dir: tempfile::TempDir,
    child: Option<Child>,
    pids: Vec<u32>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Run in the child before it execs dmucd (e.g. a seccomp filter).
    pre_exec: Option<fn() -> std::io::Result<()>>,
    /// The dmucd binary (the one built, unless a test placed another beside other helpers).
    exe: PathBuf,
    /// A command that runs dmucd (`nsenter -t PID -n -m --`: a node in namespaces of its own).
    wrap: Vec<String>,
}

impl Daemon {
    /// Writes `toml` and starts `dmucd` on it.
    pub fn start(toml: &str) -> Daemon {
        Daemon::start_in(tempfile::tempdir().unwrap(), toml)
    }

    /// `start` in a directory the test prepared (e.g. with a stale socket in `run/`).
    pub fn start_in(dir: tempfile::TempDir, toml: &str) -> Daemon {
        Daemon::start_with(dir, toml, &[])
    }

    /// `start_in` with more `dmucd` arguments.
    pub fn start_with(dir: tempfile::TempDir, toml: &str, extra: &[&str]) -> Daemon {
        Daemon::start_env(dir, toml, extra, &[])
    }

    /// `start_with` with more environment variables.
    pub fn start_env(
        dir: tempfile::TempDir,
        toml: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Daemon {
        let mut d = Daemon::prepared(dir, toml);
        d.args = extra.iter().map(|s| s.to_string()).collect();
        d.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        d.spawn();
        d
    }

    /// `start` with the dmucd binary `exe` (dmucd finds `dmuc-shim` beside itself).
    pub fn start_exe(exe: PathBuf, toml: &str) -> Daemon {
        let mut d = Daemon::prepared(tempfile::tempdir().unwrap(), toml);
        d.exe = exe;
        d.spawn();
        d
    }

    /// `start` with `f` run in the child before it execs dmucd (what it sets up is inherited
    /// by dmucd and everything dmucd starts).
    pub fn start_pre_exec(toml: &str, f: fn() -> std::io::Result<()>) -> Daemon {
        let mut d = Daemon::prepared(tempfile::tempdir().unwrap(), toml);
        d.pre_exec = Some(f);
        d.spawn();
        d
    }

    /// `start_with`, dmucd run by `wrap` (which must exec it: the child is dmucd).
    pub fn start_wrapped(
        dir: tempfile::TempDir,
        toml: &str,
        extra: &[&str],
        wrap: &[&str],
    ) -> Daemon {
        let mut d = Daemon::prepared(dir, toml);
        d.args = extra.iter().map(|s| s.to_string()).collect();
        d.wrap = wrap.iter().map(|s| s.to_string()).collect();
        d.spawn();
        d
    }

    /// A daemon with `toml` written in `dir`, not started yet.
    fn prepared(dir: tempfile::TempDir, toml: &str) -> Daemon {
        std::fs::write(dir.path().join("graph.toml"), toml).unwrap();
        Daemon {
            dir,
            child: None,
            pids: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            pre_exec: None,
            exe: bin_dir().join("dmucd"),
            wrap: Vec::new(),
        }
    }

    /// Starts `dmucd` on the directory's graph.toml with this daemon's arguments.
    fn spawn(&mut self) {
        let dir = self.dir.path();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("dmucd.stderr"))
            .unwrap();
        let mut cmd = match self.wrap.split_first() {
            Some((prog, args)) => {
                let mut c = Command::new(prog);
                c.args(args).arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        if let Some(f) = self.pre_exec {
            use std::os::unix::process::CommandExt;
            // SAFETY: the functions given are async-signal-safe (system calls only).
            unsafe {
                cmd.pre_exec(f);
            }
        }
        let child = cmd
            .arg("--config")
            .arg(dir.join("graph.toml"))
            .arg("--tmux-socket")
            .arg(dir.join("run/tmux.sock"))
            .arg("--state-dir")
            .arg(dir.join("state"))
            .arg("--log-dir")
            .arg(dir.join("log"))
            .arg("--socket")
            .arg(dir.join("run/dmucd.sock"))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("DMUC_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// kill -9 of the daemon (a crash): the tmux server and the components stay.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts a new daemon on the same directory, config and arguments (after `crash`).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "crash() the running daemon first");
        self.spawn();
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn tmux_socket(&self) -> PathBuf {
        self.path("run/tmux.sock")
    }

    /// The daemon's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.path("dmucd.stderr")).unwrap_or_default()
    }

    /// The current status: asked over the control socket (the supported interface;
    /// status.json is written behind the daemon's back and may lag by a write), or the last
    /// status.json when no daemon answers.
    pub fn status(&mut self) -> Option<Value> {
        let live = self
            .socket()
            .exists()
            .then(|| self.ctl(&["status", "--json"]));
        let v: Value = match live.filter(|o| o.status.success()) {
            Some(o) => serde_json::from_slice(&o.stdout).ok()?,
            None => {
                let s = std::fs::read_to_string(self.path("state/status.json")).ok()?;
                serde_json::from_str(&s).ok()?
            }
        };
        for c in v["components"].as_array()? {
            if let Some(pid) = c["pid"].as_u64()
                && !self.pids.contains(&(pid as u32))
            {
                self.pids.push(pid as u32);
            }
        }
        Some(v)
    }

    /// One component's status entry.
    pub fn comp(&mut self, name: &str) -> Option<Value> {
        self.status()?["components"]
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    }

    /// Waits until `name` is in `state`; returns its status entry.
    pub fn wait_state(&mut self, name: &str, state: &str, timeout: Duration) -> Value {
        let what = format!("{name} to be {state}");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(c) = self.comp(name)
                && c["state"] == state
            {
                return c;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out waiting for {what}; status: {:?}\nstderr:\n{}",
                    self.status(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The sequence number of the last event in the file (reads only its end).
    pub fn last_seq(&self) -> Option<u64> {
        use std::io::{Read, Seek, SeekFrom};
        let mut f = std::fs::File::open(self.path("state/events.jsonl")).ok()?;
        let len = f.metadata().ok()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(8192))).ok()?;
        let mut tail = String::new();
        f.read_to_string(&mut tail).ok()?;
        let line = tail
            .lines()
            .rev()
            .find(|l| l.starts_with('{') && l.ends_with('}'))?;
        serde_json::from_str::<Value>(line).ok()?["seq"].as_u64()
    }

    /// All events so far.
    pub fn events(&self) -> Vec<Value> {
        std::fs::read_to_string(self.path("state/events.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// First event matching `f`.
    pub fn event(&self, f: impl Fn(&Value) -> bool) -> Option<Value> {
        self.events().into_iter().find(|e| f(e))
    }

    /// Timestamp (ms) of the first transition of `name` to `to`.
    pub fn ts_of(&self, name: &str, to: &str) -> Option<u64> {
        self.event(|e| e["component"] == name && e["event"] == "state" && e["to"] == to)
            .and_then(|e| e["ts_us"].as_u64().map(|us| us / 1000))
    }

    /// The daemon's PID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }

    /// Remembers a PID to kill at cleanup if it is still alive.
    pub fn track(&mut self, pid: u32) {
        self.pids.push(pid);
    }

    /// SIGTERM the daemon and wait for it to exit; returns its exit code.
    pub fn stop(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st.code();
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "dmucd did not exit within 30s of SIGTERM\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs a tmux command against our server; its stdout.
    pub fn tmux(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(self.tmux_socket())
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Our tmux server's PID.
    pub fn tmux_pid(&self) -> i32 {
        let out = self.tmux(&["display", "-p", "#{pid}"]);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no tmux server pid in {out:?}"))
    }

    /// kill -9 of our tmux server; returns its PID once it is gone.
    pub fn kill_tmux_server(&self) -> i32 {
        let server = self.tmux_pid();
        kill(Pid::from_raw(server), Signal::SIGKILL).unwrap();
        wait_for(
            "the tmux server to be gone",
            Duration::from_secs(20),
            || (!alive(server as u32)).then_some(()),
        );
        server
    }

    /// Whether our tmux server still answers.
    pub fn tmux_alive(&self) -> bool {
        Command::new("tmux")
            .arg("-S")
            .arg(self.tmux_socket())
            .arg("has-session")
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Names of the windows in the component session, with their `@dmuc_component` option.
    pub fn windows(&self) -> Vec<String> {
        let out = Command::new("tmux")
            .arg("-S")
            .arg(self.tmux_socket())
            .args([
                "list-windows",
                "-t",
                "dmuc",
                "-F",
                "#{window_id} #{window_name} #{@dmuc_component}",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The PID of the grandchild `dmuc-standin --fork-child` logged for `name` (tracked for cleanup).
    pub fn grandchild_of(&mut self, name: &str) -> u32 {
        let pid = wait_for(
            &format!("{name}'s grandchild pid in its log"),
            Duration::from_secs(20),
            || {
                let log = self.log(name);
                log.lines()
                    .find(|l| l.contains("grandchild pid"))?
                    .rsplit(' ')
                    .next()?
                    .parse()
                    .ok()
            },
        );
        self.track(pid);
        pid
    }

    /// The control socket.
    pub fn socket(&self) -> PathBuf {
        self.path("run/dmucd.sock")
    }

    /// Runs `dmucctl ARGS` against this daemon (waiting for its socket first, while it runs).
    pub fn ctl(&self, args: &[&str]) -> Output {
        if self.child.is_some() {
            wait_for("the control socket", Duration::from_secs(10), || {
                self.socket().exists().then_some(())
            });
        }
        Command::new(bin_dir().join("dmucctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .env_remove("DMUC_SOCKET")
            .env("NO_COLOR", "1")
            .output()
            .unwrap()
    }

    /// Runs `dmucctl ARGS` as `nobody` (uid and gid 65534).
    pub fn ctl_as_nobody(&self, args: &[&str]) -> Output {
        use std::os::unix::process::CommandExt;
        Command::new(bin_dir().join("dmucctl"))
            .arg("--socket")
            .arg(self.socket())
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    }

    /// Lets other users traverse the private test directory (and, with `socket`, connect
    /// whatever the socket's group).
    pub fn open_to_others(&self, socket: bool) {
        use std::os::unix::fs::PermissionsExt;
        let mode = |m| std::fs::Permissions::from_mode(m);
        std::fs::set_permissions(self.dir.path(), mode(0o755)).unwrap();
        if socket {
            std::fs::set_permissions(self.socket(), mode(0o666)).unwrap();
        }
    }

    /// `ctl` that must succeed; returns its stdout.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let o = self.ctl(args);
        assert!(
            o.status.success(),
            "dmucctl {args:?} failed ({:?}):\n{}{}\ndaemon:\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            self.stderr()
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// A raw protocol connection that has said hello.
    pub fn raw(&self) -> Raw {
        wait_for("the control socket", Duration::from_secs(10), || {
            self.socket().exists().then_some(())
        });
        let mut r = Raw::connect(&self.socket());
        let h = r.call(json!({"id": 0, "verb": "hello", "version": "1.0"}));
        assert!(h.get("result").is_some(), "{h}");
        r
    }

    /// Waits until the daemon process has exited; returns its exit code.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut()?;
        let st = wait_for("dmucd to exit", timeout, || child.try_wait().unwrap());
        self.child = None;
        st.code()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("log/{name}.log"))).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Never panic here: a panic while a failed test unwinds aborts, skipping the cleanup.
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("tmux")
            .arg("-S")
            .arg(self.tmux_socket())
            .arg("kill-server")
            .stderr(Stdio::null())
            .status();
        for &pid in &self.pids {
            if alive(pid) {
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        }
        // Whatever is left that this test's daemons started names the test's private
        // directory on its command line: a tmux server whose socket file is already gone
        // (kill-server cannot reach it), its control clients, shims.
        for pid in processes_naming(self.dir.path()) {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            eprintln!("cleanup: killing pid {pid}, left behind by this test's daemons: {cmd}");
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
    }
}

/// Processes whose command line contains `dir` (never this test process itself).
pub fn processes_naming(dir: &Path) -> Vec<u32> {
    let mut needle = dir.as_os_str().as_encoded_bytes().to_vec();
    needle.push(b'/'); // a path inside it, not a longer name that starts the same
    let needle = &needle[..];
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// Reads `PID MS` written by `dmuc-standin --write-file`.
pub fn read_start(path: &Path) -> Option<(u32, u64)> {
    let s = std::fs::read_to_string(path).ok()?;
    let mut it = s.split_whitespace();
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

/// A raw control-protocol client: newline-delimited JSON, no helpers beyond framing.
pub struct Raw {
    pub w: UnixStream,
    pub r: BufReader<UnixStream>,
}

impl Raw {
    pub fn connect(path: &Path) -> Raw {
        let w = UnixStream::connect(path).unwrap();
        w.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let r = BufReader::new(w.try_clone().unwrap());
        Raw { w, r }
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).unwrap();
    }

    pub fn send(&mut self, v: Value) {
        self.send_raw(format!("{v}\n").as_bytes());
    }

    /// The next frame (panics on EOF or after 30 s).
    pub fn frame(&mut self) -> Value {
        let mut line = String::new();
        let n = self.r.read_line(&mut line).unwrap();
        assert!(n > 0, "dmucd closed the connection");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad frame {line:?}: {e}"))
    }

    /// Sends a request and returns its first frame.
    pub fn call(&mut self, v: Value) -> Value {
        self.send(v);
        self.frame()
    }
}
