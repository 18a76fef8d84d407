//! `dmucd shim`: the process that runs in a component's tmux pane.
//!
//! tmux cannot tell us exit statuses reliably (Debian's 3.3a loses most `pane-died` hooks,
//! see docs/architecture.md), and the daemon is not the parent of pane processes. So the pane
//! runs this small program, which *is* the parent: it spawns the real program in its own
//! process group, reports its PID and its exact exit status or signal to the daemon over the
//! shim socket, owns the log file (the program's stdout and stderr come through a pipe), copies
//! output to the pane without ever blocking on it, forwards terminal signals, and exits with
//! the program's status so the dead pane shows it.
//!
//! Lines sent to the daemon: `hello NAME RUN SHIMPID`, `start PID`, `match` (a line matched the
//! `log` ready probe), `spawn-failed MESSAGE`, `exit code N` or `exit signal N core 0|1`.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::logfile::LogWriter;
use crate::spec::LaunchSpec;

type Link = Arc<Mutex<Option<UnixStream>>>;

fn report(link: &Link, line: &str) {
    let mut g = link.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = g.as_mut()
        && s.write_all(format!("{line}\n").as_bytes()).is_err()
    {
        *g = None; // the daemon went away; keep running without it
    }
}

/// Runs the shim; returns the process exit code.
pub fn main(spec_path: &Path, run: u64) -> i32 {
    let spec: LaunchSpec = match std::fs::read(spec_path)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "dmuc shim: cannot read launch spec {}: {e}",
                spec_path.display()
            );
            return 127;
        }
    };
    let link: Link = Arc::new(Mutex::new(UnixStream::connect(&spec.shim_socket).ok()));
    report(
        &link,
        &format!("hello {} {run} {}", spec.name, std::process::id()),
    );

    // Signals to forward; registered before the spawn so none is lost in between.
    let forwarded = [
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
    ];
    let mut signals = match signal_hook::iterator::Signals::new(forwarded) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dmuc shim: cannot install signal handlers: {e}");
            return 127;
        }
    };

    let (rd, wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return spawn_failed(&link, &spec, &format!("pipe: {e}")),
    };
    let mut cmd = Command::new(&spec.argv[0]);
    cmd.args(&spec.argv[1..])
        .env_clear()
        .envs(spec.env.iter().map(|(k, v)| (k, v)));
    if let Some(d) = &spec.cwd {
        cmd.current_dir(d);
    }
    let wr2 = match wr.try_clone() {
        Ok(w) => w,
        Err(e) => return spawn_failed(&link, &spec, &format!("pipe: {e}")),
    };
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::from(wr2));
    cmd.process_group(0);
    if let Err(e) = apply_user(&mut cmd, &spec) {
        return spawn_failed(&link, &spec, &e);
    }
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to SIGKILL the child if
    // the shim dies, so a killed shim never leaves an orphaned component behind.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return spawn_failed(
                &link,
                &spec,
                &format!("cannot execute {:?}: {e}", spec.argv[0]),
            );
        }
    };
    drop(cmd); // closes our copies of the pipe's write end
    let pid = child.id() as i32;
    report(&link, &format!("start {pid}"));

    let target = if spec.kill_group {
        Pid::from_raw(-pid)
    } else {
        Pid::from_raw(pid)
    };
    let sig_handle = signals.handle();
    std::thread::spawn(move || {
        for s in signals.forever() {
            if let Ok(sig) = Signal::try_from(s) {
                let _ = kill(target, sig);
            }
        }
    });

    let (done_tx, done_rx) = mpsc::channel::<()>();
    let pump_link = link.clone();
    let pump_spec = spec.clone();
    std::thread::spawn(move || {
        pump(rd, &pump_spec, &pump_link);
        let _ = done_tx.send(());
    });

    let status = loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => break (Some(code), None),
            Ok(WaitStatus::Signaled(_, sig, core)) => break (None, Some((sig as i32, core))),
            Ok(_) => continue,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => {
                eprintln!("dmuc shim: waitpid: {e}");
                break (Some(255), None);
            }
        }
    };
    sig_handle.close();
    if spec.kill_group {
        // Like a cgroup stop: nothing of the component outlives its main process.
        let _ = kill(Pid::from_raw(-pid), Signal::SIGKILL);
    }
    // Let the log catch the last output; a process that escaped the group may hold the pipe
    // open, so this wait is bounded.
    let _ = done_rx.recv_timeout(Duration::from_millis(500));
    let (line, code, text) = match status {
        (Some(c), _) => (format!("exit code {c}"), c, format!("exit status {c}")),
        (_, Some((s, core))) => (
            format!("exit signal {s} core {}", u8::from(core)),
            128 + s,
            format!(
                "killed by {}{}",
                dmuc_config::signal::signal_name(s),
                if core { " (core dumped)" } else { "" }
            ),
        ),
        _ => unreachable!("waitpid loop always sets a status"),
    };
    report(&link, &line);
    let _ = writeln!(
        std::io::stderr(),
        "\r\n[dmuc] {} (pid {pid}) ended: {text}\r",
        spec.name
    );
    code
}

fn spawn_failed(link: &Link, spec: &LaunchSpec, msg: &str) -> i32 {
    let mut log = LogWriter::new(&spec.log_path, spec.log_max_size, spec.log_keep);
    log.write(format!("[dmuc] {}: {msg}\n", spec.name).as_bytes());
    eprintln!("[dmuc] {}: {msg}", spec.name);
    report(link, &format!("spawn-failed {msg}"));
    127
}

fn apply_user(cmd: &mut Command, spec: &LaunchSpec) -> Result<(), String> {
    use nix::unistd::{Group, User};
    let mut gid = None;
    if let Some(u) = &spec.user {
        let user = match u.parse::<u32>() {
            Ok(n) => User::from_uid(n.into()),
            Err(_) => User::from_name(u),
        }
        .map_err(|e| format!("cannot look up user {u}: {e}"))?
        .ok_or_else(|| format!("no such user: {u}"))?;
        cmd.uid(user.uid.as_raw());
        gid = Some(user.gid.as_raw());
    }
    if let Some(g) = &spec.group {
        let group = match g.parse::<u32>() {
            Ok(n) => Group::from_gid(n.into()),
            Err(_) => Group::from_name(g),
        }
        .map_err(|e| format!("cannot look up group {g}: {e}"))?
        .ok_or_else(|| format!("no such group: {g}"))?;
        gid = Some(group.gid.as_raw());
    }
    if let Some(g) = gid {
        cmd.gid(g);
    }
    Ok(())
}

/// Copies the program's output to the log (always) and the pane (when it keeps up).
fn pump(rd: OwnedFd, spec: &LaunchSpec, link: &Link) {
    let mut log = LogWriter::new(&spec.log_path, spec.log_max_size, spec.log_keep);
    if let Some(e) = &log.error {
        eprintln!("[dmuc] log: {e}");
    }
    let stdout = std::io::stdout();
    let out_fd = stdout.as_fd();
    // Non-blocking: tmux parses pane output at ~30 MB/s; the log must not wait for it.
    let _ = nix::fcntl::fcntl(
        out_fd,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    let mut matcher = spec
        .ready_log
        .as_deref()
        .and_then(|r| regex::bytes::Regex::new(r).ok());
    let mut line = Vec::new();
    let mut file = std::fs::File::from(rd);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let data = &buf[..n];
        log.write(data);
        let _ = nix::unistd::write(out_fd, data); // EAGAIN: the pane view drops it, the log has it
        if let Some(re) = &matcher {
            let mut hit = false;
            for &b in data {
                if b == b'\n' {
                    hit |= re.is_match(&line);
                    line.clear();
                } else if line.len() < 64 * 1024 {
                    line.push(b);
                }
            }
            if hit {
                report(link, "match");
                matcher = None;
            }
        }
    }
}
