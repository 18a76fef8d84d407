//! `dmucd shim`: the process that runs in a component's tmux pane.
//!
//! tmux cannot tell us exit statuses reliably (Debian's 3.3a loses most `pane-died` hooks,
//! see docs/architecture.md), and the daemon is not the parent of pane processes. So the pane
//! runs this small program, which *is* the parent: it spawns the real program in its own
//! process group, reports its PID and its exact exit status or signal to the daemon over the
//! shim socket, owns the log file (stdout and stderr come through one pipe), copies output to
//! the pane without ever blocking on it, and forwards terminal signals.
//!
//! The shim outlives its program: after reporting an exit it waits for the daemon to say
//! `run N` (restart in place: one line and a fork/exec, no tmux round trip) or to go away.
//! It is one thread around one `poll(2)` over a signalfd, the output pipe and the daemon link,
//! which keeps it small (it runs once per component).
//!
//! Shim → daemon lines: `hello NAME RUN SHIMPID` (at the start of each run), `start PID`,
//! `match` (a line matched the `log` ready probe), `spawn-failed MESSAGE`,
//! `log-error MESSAGE` / `log-ok` (the log file stopped / started working again),
//! `exit code N` or `exit signal N core 0|1`. Daemon → shim: `run N`.
//!
//! The shim also outlives the daemon: when the link drops (dmucd crashed, was killed, or is
//! being upgraded) the program keeps running and the shim waits, on inotify, for a new daemon
//! to bind the shim socket, then reconnects and says where it stands: `hello` and `start PID`
//! while the program runs, or `hello` and its `exit ...` line if it ended meanwhile. That is
//! what lets a new dmucd adopt the components instead of restarting them.

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::logfile::LogWriter;
use crate::spec::LaunchSpec;

const FORWARDED: [Signal; 6] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// The connection to the daemon; the shim keeps working without it.
struct Link {
    stream: Option<UnixStream>,
    inbuf: Vec<u8>,
    /// The shim socket's path, to reconnect to.
    path: std::path::PathBuf,
    /// Watches the socket's directory while the daemon is away.
    watch: Option<nix::sys::inotify::Inotify>,
    /// The link was lost since the last attempt: try once before waiting for an event (a
    /// daemon may have appeared before the watch existed).
    retry_now: bool,
    /// The inode of the socket file we last connected through. A dead daemon's socket file
    /// stays until a new daemon renames its own over it: connecting to it again could reach
    /// the dying listener (the connection succeeds, then is reset much later), so only a
    /// different inode is worth a try.
    ino: Option<u64>,
}

impl Link {
    fn connect(path: &Path) -> Link {
        let ino = socket_ino(path);
        let stream = UnixStream::connect(path).ok();
        let mut link = Link {
            stream,
            inbuf: Vec::new(),
            path: path.to_path_buf(),
            watch: None,
            retry_now: false,
            ino,
        };
        if link.stream.is_none() {
            link.lost();
        }
        link
    }

    /// The link dropped: watch for the socket to be bound again.
    fn lost(&mut self) {
        if self.stream.is_some() {
            eprintln!(
                "\r\n[dmuc] lost the link to dmucd; the program keeps running, waiting for a new dmucd\r"
            );
        }
        self.stream = None;
        self.inbuf.clear();
        // Also after a connection that was reset at once (the old daemon's listener was still
        // closing when we connected): the watch is armed first, then we try again.
        self.retry_now = true;
        if self.watch.is_none() {
            use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
            let dir = self.path.parent().unwrap_or(Path::new("."));
            self.watch = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK)
                .ok()
                .filter(|i| {
                    i.add_watch(dir, AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO)
                        .is_ok()
                });
        }
    }

    /// Tries to connect again (after an inotify event, or at once after a loss: the new
    /// daemon may already listen). True when connected.
    fn retry(&mut self) -> bool {
        self.retry_now = false;
        if let Some(w) = &self.watch {
            let _ = w.read_events(); // drain; which file it was does not matter
        }
        let ino = socket_ino(&self.path);
        if ino.is_none() || ino == self.ino {
            return false; // nothing there, or still the socket of the daemon we lost
        }
        match UnixStream::connect(&self.path) {
            Ok(s) => {
                eprintln!("[dmuc] reconnected to dmucd\r");
                self.stream = Some(s);
                self.watch = None;
                self.ino = ino;
                true
            }
            Err(e) => {
                eprintln!("[dmuc] dmucd not there yet ({e}); waiting\r");
                false
            }
        }
    }

    /// The fd to poll: the link while connected, else the reconnect watcher.
    fn poll_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        match (&self.stream, &self.watch) {
            (Some(s), _) => Some(s.as_fd()),
            (None, Some(w)) => Some(w.as_fd()),
            (None, None) => None,
        }
    }

    fn say(&mut self, line: &str) {
        if let Some(s) = self.stream.as_mut()
            && s.write_all(format!("{line}\n").as_bytes()).is_err()
        {
            self.lost();
        }
    }

    /// Reads what is available; returns complete lines, or `None` at EOF.
    fn read_lines(&mut self) -> Option<Vec<String>> {
        let s = self.stream.as_mut()?;
        let mut buf = [0u8; 512];
        match s.read(&mut buf) {
            Ok(0) => {
                self.lost();
                return None;
            }
            Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => {
                self.lost();
                return None;
            }
        }
        let mut lines = Vec::new();
        while let Some(i) = self.inbuf.iter().position(|b| *b == b'\n') {
            let l: Vec<u8> = self.inbuf.drain(..=i).collect();
            lines.push(String::from_utf8_lossy(&l[..l.len() - 1]).into_owned());
        }
        Some(lines)
    }
}

fn socket_ino(path: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| m.ino())
}

fn read_spec(path: &Path) -> Result<LaunchSpec, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read launch spec {}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("bad launch spec {}: {e}", path.display()))
}

/// One running program: its PID, its output pipe, the log.
struct Run {
    pid: i32,
    pipe: Option<std::fs::File>,
    log: LogWriter,
    matcher: Option<regex::bytes::Regex>,
    line: Vec<u8>,
    status: Option<(String, i32, String)>,
    /// The pane is closing (tmux sent TERM/HUP): exit after this run instead of waiting.
    closing: bool,
    /// The log error last told to the daemon (`None`: the log works).
    log_told: Option<String>,
}

/// Tells the daemon when the log starts or stops failing (disk full, directory gone, ...).
fn report_log(run: &mut Run, link: &mut Link) {
    if run.log.error != run.log_told {
        match &run.log.error {
            Some(e) => link.say(&format!("log-error {e}")),
            None => link.say("log-ok"),
        }
        run.log_told = run.log.error.clone();
    }
}

/// Runs the shim; returns the process exit code.
pub fn main(spec_path: &Path, first_run: u64) -> i32 {
    let mut spec = match read_spec(spec_path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dmuc shim: {e}");
            return 127;
        }
    };
    let mut link = Link::connect(&spec.shim_socket);
    if let Some(s) = &link.stream {
        let _ = s.set_nonblocking(false);
    }
    // Signals arrive through a signalfd, so the one poll loop sees them in order with I/O.
    let mut mask = SigSet::empty();
    for s in FORWARDED {
        mask.add(s);
    }
    mask.add(Signal::SIGCHLD);
    let sfd = match sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| e.to_string())
        .and_then(|_| {
            SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
                .map_err(|e| e.to_string())
        }) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dmuc shim: cannot set up signals: {e}");
            return 127;
        }
    };
    // The pane may be slower than the program; the log must never wait for it.
    let _ = nix::fcntl::fcntl(
        std::io::stdout().as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );

    let mut run_no = first_run;
    let mut code: i32;
    // The last run's hello and exit lines, said again to a daemon that reconnects.
    let mut last: Option<(String, String)>;
    loop {
        link.say(&format!(
            "hello {} {run_no} {}",
            spec.name,
            std::process::id()
        ));
        code = match spawn(&spec) {
            Err(msg) => {
                let mut log = LogWriter::new(&spec.log_path, spec.log_max_size, spec.log_keep);
                log.write(format!("[dmuc] {}: {msg}\n", spec.name).as_bytes());
                eprintln!("[dmuc] {}: {msg}\r", spec.name);
                link.say(&format!("spawn-failed {msg}"));
                last = Some((
                    format!("hello {} {run_no} {}", spec.name, std::process::id()),
                    format!("spawn-failed {msg}"),
                ));
                127
            }
            Ok(mut run) => {
                link.say(&format!("start {}", run.pid));
                report_log(&mut run, &mut link);
                let hello = format!("hello {} {run_no} {}", spec.name, std::process::id());
                supervise(&spec, &sfd, &mut link, &mut run, &hello);
                let (line, c, text) = run
                    .status
                    .take()
                    .unwrap_or_else(|| ("exit code 255".into(), 255, "lost".into()));
                link.say(&line);
                last = Some((
                    format!("hello {} {run_no} {}", spec.name, std::process::id()),
                    line,
                ));
                let _ = writeln!(
                    std::io::stderr(),
                    "\r\n[dmuc] {} (pid {}) ended: {text}\r",
                    spec.name,
                    run.pid
                );
                if run.closing {
                    return c;
                }
                c
            }
        };
        // Between runs: wait for `run N`, then start again with the spec the daemon rewrote.
        let Some(n) = idle(&sfd, &mut link, last.as_ref()) else {
            return code;
        };
        run_no = n;
        match read_spec(spec_path) {
            Ok(s) => spec = s,
            Err(e) => eprintln!("dmuc shim: {e}; reusing the previous spec\r"),
        }
        let _ = writeln!(
            std::io::stderr(),
            "[dmuc] {}: starting again (run {run_no})\r",
            spec.name
        );
    }
}

fn spawn(spec: &LaunchSpec) -> Result<Run, String> {
    let (rd, wr) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let wr2 = wr.try_clone().map_err(|e| format!("pipe: {e}"))?;
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(d) = &spec.cwd {
        cmd.current_dir(d);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::from(wr2));
    cmd.process_group(0);
    apply_user(&mut cmd, spec)?;
    // SAFETY: between fork and exec we only make two syscalls (sigprocmask, prctl), both
    // async-signal-safe: the program must not inherit our blocked signals, and the kernel
    // SIGKILLs it if the shim dies, so a killed shim never leaves an orphaned component.
    unsafe {
        cmd.pre_exec(|| {
            sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)
                .map_err(std::io::Error::from)?;
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot execute {:?}: {e}", spec.argv[0]))?;
    drop(cmd); // closes our copies of the pipe's write end
    let pipe = std::fs::File::from(rd);
    let _ = nix::fcntl::fcntl(
        pipe.as_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let log = LogWriter::new(&spec.log_path, spec.log_max_size, spec.log_keep);
    if let Some(e) = &log.error {
        eprintln!("[dmuc] log: {e}\r");
    }
    Ok(Run {
        pid: child.id() as i32,
        pipe: Some(pipe),
        log,
        matcher: spec
            .ready_log
            .as_deref()
            .and_then(|r| regex::bytes::Regex::new(r).ok()),
        line: Vec::new(),
        status: None,
        closing: false,
        log_told: None,
    })
}

/// Pumps output and forwards signals until the program has exited and its output is drained.
fn supervise(spec: &LaunchSpec, sfd: &SignalFd, link: &mut Link, run: &mut Run, hello: &str) {
    let target = Pid::from_raw(if spec.kill_group { -run.pid } else { run.pid });
    let mut buf = vec![0u8; 32 * 1024];
    // After the exit: a process that escaped the group may hold the pipe open, so bound the drain.
    let mut drain_until: Option<Instant> = None;
    loop {
        if run.status.is_some() && run.pipe.is_none() {
            return;
        }
        if link.stream.is_none() && link.retry_now && link.retry() {
            reannounce(link, hello, run);
        }
        let timeout = match drain_until {
            Some(t) => {
                let left = t.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return;
                }
                PollTimeout::try_from(left.as_millis().min(60_000) as i32)
                    .unwrap_or(PollTimeout::ZERO)
            }
            None => PollTimeout::NONE,
        };
        let pipe_fd = run.pipe.as_ref().map(|p| p.as_fd());
        let stdout = std::io::stdout();
        // fds: signals, the pane's tty (watched for hangup only: when the tmux server dies the
        // pty goes away, and the kernel's SIGHUP does not reliably reach us), the output pipe.
        // Once the tty has hung up it would report it forever: watch an fd that never fires
        // instead, to keep the indices fixed without spinning.
        let tty = if run.closing {
            sfd.as_fd()
        } else {
            stdout.as_fd()
        };
        // The link (to see the daemon go) or, while it is away, the reconnect watcher;
        // a never-firing fd keeps the indices fixed when there is neither.
        let link_fd = link.poll_fd().unwrap_or(sfd.as_fd());
        let link_flags = if link.poll_fd().is_some() {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        let mut fds = vec![
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(tty, PollFlags::empty()),
            PollFd::new(link_fd, link_flags),
        ];
        if let Some(fd) = pipe_fd {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        let ready = |f: Option<&PollFd>| f.and_then(|f| f.revents()).is_some_and(|r| !r.is_empty());
        let sig_ready = ready(fds.first());
        let hung_up = !run.closing && ready(fds.get(1));
        let link_ready = ready(fds.get(2));
        let pipe_ready = ready(fds.get(3));
        drop(fds);
        if link_ready {
            if link.stream.is_some() {
                // The daemon says nothing during a run: readable means it went away (the
                // next loop turn tries to reconnect).
                let _ = link.read_lines();
            } else if link.retry() {
                reannounce(link, hello, run);
            }
        }
        if hung_up {
            run.closing = true;
            if run.status.is_none() {
                let _ = kill(target, Signal::SIGHUP);
            }
        }
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                let signo = info.ssi_signo as i32;
                if signo == libc::SIGCHLD {
                    reap(run, spec);
                    if run.status.is_some() && drain_until.is_none() {
                        drain_until = Some(Instant::now() + Duration::from_millis(500));
                    }
                } else {
                    // Only tmux signals the shim itself (the daemon signals the program
                    // directly): the pane is closing, so no run may follow this one.
                    if [libc::SIGTERM, libc::SIGINT, libc::SIGHUP].contains(&signo) {
                        run.closing = true;
                    }
                    if run.status.is_none()
                        && let Ok(sig) = Signal::try_from(signo)
                    {
                        let _ = kill(target, sig);
                    }
                }
            }
        }
        if pipe_ready {
            pump(run, &mut buf, link);
            report_log(run, link);
        }
    }
}

/// Tells a daemon that (re)connected where this run stands.
fn reannounce(link: &mut Link, hello: &str, run: &Run) {
    link.say(hello);
    link.say(&format!("start {}", run.pid));
    if let Some((line, _, _)) = &run.status {
        link.say(line);
    }
}

fn reap(run: &mut Run, spec: &LaunchSpec) {
    loop {
        match waitpid(Pid::from_raw(run.pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => {
                run.status = Some((format!("exit code {c}"), c, format!("exit status {c}")));
            }
            Ok(WaitStatus::Signaled(_, sig, core)) => {
                let s = sig as i32;
                let text = format!(
                    "killed by {}{}",
                    dmuc_config::signal::signal_name(s),
                    if core { " (core dumped)" } else { "" }
                );
                run.status = Some((
                    format!("exit signal {s} core {}", u8::from(core)),
                    128 + s,
                    text,
                ));
            }
            Ok(WaitStatus::StillAlive) => return,
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
        if run.status.is_some() {
            if spec.kill_group {
                // Like a cgroup stop: nothing of the component outlives its main process.
                let _ = kill(Pid::from_raw(-run.pid), Signal::SIGKILL);
            }
            return;
        }
    }
}

/// Copies available output to the log (always) and the pane (when it keeps up).
fn pump(run: &mut Run, buf: &mut [u8], link: &mut Link) {
    let Some(pipe) = run.pipe.as_mut() else {
        return;
    };
    loop {
        let n = match pipe.read(buf) {
            Ok(0) => {
                run.pipe = None;
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(_) => {
                run.pipe = None;
                return;
            }
        };
        let data = &buf[..n];
        run.log.write(data);
        let _ = nix::unistd::write(std::io::stdout().as_fd(), data); // EAGAIN: the pane drops it, the log has it
        if let Some(re) = &run.matcher {
            let mut hit = false;
            for &b in data {
                if b == b'\n' {
                    hit |= re.is_match(&run.line);
                    run.line.clear();
                } else if run.line.len() < 64 * 1024 {
                    run.line.push(b);
                }
            }
            if hit {
                link.say("match");
                run.matcher = None;
            }
        }
    }
}

/// Between runs: waits for `run N` from the daemon. `None`: time to exit (we were told to
/// stop by a signal, or the pane went away). While the daemon is away, waits for it to come
/// back and tells it how the last run ended.
fn idle(sfd: &SignalFd, link: &mut Link, last: Option<&(String, String)>) -> Option<u64> {
    if link.stream.is_none() && link.watch.is_none() {
        link.lost();
    }
    loop {
        if link.stream.is_none()
            && link.retry_now
            && link.retry()
            && let Some((hello, end)) = last
        {
            link.say(hello);
            link.say(end);
        }
        let stdout = std::io::stdout();
        let Some(lfd) = link.poll_fd() else {
            return None; // no link and no way to watch for one
        };
        let mut fds = [
            PollFd::new(sfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(lfd, PollFlags::POLLIN),
            PollFd::new(stdout.as_fd(), PollFlags::empty()),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
        let [sig_ready, link_ready, hung_up] =
            fds.map(|f| f.revents().is_some_and(|r| !r.is_empty()));
        if hung_up {
            return None; // the pane's tty hung up: the pane is gone
        }
        if sig_ready {
            while let Ok(Some(info)) = sfd.read_signal() {
                if info.ssi_signo as i32 != libc::SIGCHLD {
                    return None; // TERM/HUP/INT with no program running: the pane is closing
                }
                // Stray children (none of ours) are reaped so they do not linger as zombies.
                while let Ok(st) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    if st == WaitStatus::StillAlive {
                        break;
                    }
                }
            }
        }
        if link_ready {
            if link.stream.is_none() {
                if link.retry()
                    && let Some((hello, end)) = last
                {
                    link.say(hello);
                    link.say(end);
                }
                continue;
            }
            // `None`: the daemon went away; the loop tries once, then waits for the next one.
            if let Some(lines) = link.read_lines() {
                for line in lines {
                    if let Some(n) = line
                        .strip_prefix("run ")
                        .and_then(|n| n.trim().parse().ok())
                    {
                        return Some(n);
                    }
                }
            }
        }
    }
}

/// Resolves a user or group given by name or number.
fn lookup<T>(
    what: &str,
    key: &str,
    by_id: impl Fn(u32) -> nix::Result<Option<T>>,
    by_name: impl Fn(&str) -> nix::Result<Option<T>>,
) -> Result<T, String> {
    match key.parse::<u32>() {
        Ok(n) => by_id(n),
        Err(_) => by_name(key),
    }
    .map_err(|e| format!("cannot look up {what} {key}: {e}"))?
    .ok_or_else(|| format!("no such {what}: {key}"))
}

fn apply_user(cmd: &mut Command, spec: &LaunchSpec) -> Result<(), String> {
    use nix::unistd::{Group, User};
    let mut gid = None;
    if let Some(u) = &spec.user {
        let user = lookup("user", u, |n| User::from_uid(n.into()), User::from_name)?;
        cmd.uid(user.uid.as_raw());
        gid = Some(user.gid.as_raw()); // the user's own group unless `group` says otherwise
    }
    if let Some(g) = &spec.group {
        gid = Some(
            lookup("group", g, |n| Group::from_gid(n.into()), Group::from_name)?
                .gid
                .as_raw(),
        );
    }
    if let Some(g) = gid {
        cmd.gid(g);
    }
    Ok(())
}
