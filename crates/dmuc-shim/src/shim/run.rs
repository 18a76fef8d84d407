//! One run, while the program lives: output pumped to the pane and the log, signals forwarded,
//! the exact end reaped, a reconnecting daemon told where it stands.

use super::*;

/// What the shim's loops share: the signalfd, the daemon link, the terminal, `quit`.
pub(super) struct Io<'a> {
    pub(super) sfd: Fd,
    pub(super) link: &'a mut Link,
    pub(super) tty: &'a mut Tty,
    pub(super) quit: &'a mut bool,
}

impl Io<'_> {
    /// Acts on what the daemon said (a new terminal, `quit`); returns its `run N`.
    pub(super) fn take(&mut self, got: In) -> Option<u64> {
        if let Some(fd) = got.view {
            self.tty.got(fd, self.link);
        }
        *self.quit |= got.quit;
        got.run
    }
}

/// Pumps output and forwards signals until the program has exited and its output is drained.
pub(super) fn supervise(
    spec: &Spec<'_>,
    io: &mut Io<'_>,
    run: &mut Run<'_>,
    hello: &Line,
    readbuf: &mut Option<Mapping>,
) {
    let sfd = io.sfd;
    let target = if spec.kill_group { -run.pid } else { run.pid };
    // After the exit: a process that escaped the group may hold the pipe open, so bound the drain.
    let mut drain_until: Option<u64> = None;
    loop {
        if run.status.is_some() && run.pipe.is_none() {
            return;
        }
        if io.link.fd.is_none() && io.link.retry_now && io.link.retry() {
            reannounce(io, hello, run);
        }
        let timeout = match drain_until {
            Some(t) => {
                let now = sys::now_ms();
                if now >= t {
                    return;
                }
                (t - now).min(60_000) as i32
            }
            None => -1,
        };
        // fds: signals, the terminal (watched for hangup only: the tmux server died or the
        // window was closed; the kernel's SIGHUP does not reliably reach us), the link (to see
        // the daemon go, and a new terminal come) or while it is away the reconnect watcher,
        // the output pipe.
        let mut fds = [
            PollFd::new(sfd, POLLIN),
            PollFd::new(io.tty.poll_fd(), 0),
            PollFd::new(io.link.poll_fd().unwrap_or(-1), POLLIN),
            PollFd::new(run.pipe.unwrap_or(-1), POLLIN),
        ];
        match sys::poll(&mut fds, timeout) {
            Ok(_) | Err(Errno(sys::EINTR)) => {}
            Err(_) => return,
        }
        let [sig_ready, hung_up, link_ready, pipe_ready] = fds.map(|f| f.revents != 0);
        if link_ready {
            if io.link.fd.is_some() {
                // During a run the daemon only hands over terminals; EOF means it went away
                // (the next loop turn tries to reconnect).
                if let Some(got) = io.link.read_in() {
                    let _ = io.take(got);
                }
            } else if io.link.retry() {
                reannounce(io, hello, run);
            }
        }
        if hung_up {
            io.tty.lost(io.link);
        }
        if sig_ready {
            while let Some((signo, code)) = sys::read_signal(sfd) {
                if signo == SIGHUP && code == sys::SI_KERNEL {
                    // The terminal's hangup, sent to its session leader: not a stop.
                    io.tty.lost(io.link);
                } else if signo == SIGCHLD {
                    reap(run, spec);
                    if run.status.is_some() && drain_until.is_none() {
                        drain_until = Some(sys::now_ms() + 500);
                    }
                } else {
                    // The daemon signals the program directly: someone signalled the shim
                    // itself to end the pane, so no run may follow this one.
                    // A detached shim has no pane: a signal to it is passed on (the Ctrl-C
                    // its window forwards), and what comes next is the daemon's decision.
                    if [SIGTERM, SIGINT, SIGHUP].contains(&signo) && !io.tty.detached {
                        run.closing = true;
                    }
                    if run.status.is_none() {
                        let _ = sys::kill(target, signo);
                    }
                }
            }
        }
        if pipe_ready {
            if readbuf.is_none() {
                *readbuf = Mapping::new(32 * 1024).ok();
            }
            match readbuf.as_mut() {
                Some(buf) => pump(run, buf.all_mut()),
                None => {
                    let mut small = [0u8; 512];
                    pump(run, &mut small);
                }
            }
            report_log(run, io.link);
        }
    }
}

/// Tells a daemon that (re)connected where this run stands.
#[cold]
#[inline(never)]
pub(super) fn reannounce(io: &mut Io<'_>, hello: &Line, run: &Run<'_>) {
    io.link.say(hello.bytes());
    io.link.tell(Up::Start(run.pid as u32));
    if let Some(st) = &run.status {
        io.link.tell(Up::Exit(st.end));
    }
    if !io.tty.live {
        io.link.tell(Up::ViewLost);
    }
}

pub(super) fn reap(run: &mut Run<'_>, spec: &Spec<'_>) {
    let Ok(Some((_, end))) = sys::wait_nohang(run.pid) else {
        return;
    };
    let mut st = Status {
        end: End::Code(0),
        code: 0,
        text: Buf::new(),
    };
    match end {
        sys::Ended::Code(c) => {
            st.end = End::Code(c);
            let _ = write!(st.text, "exit status {c}");
            st.code = c;
        }
        sys::Ended::Signal(s, core) => {
            st.end = End::Signal { signal: s, core };
            let _ = write!(
                st.text,
                "killed by {}{}",
                SigName(s),
                if core { " (core dumped)" } else { "" }
            );
            st.code = 128 + s;
        }
    }
    run.status = Some(st);
    if spec.kill_group {
        // Like a cgroup stop: nothing of the component outlives its main process.
        let _ = sys::kill(-run.pid, SIGKILL);
    }
}

/// Copies available output to the pane (when it keeps up) and the log (always).
pub(super) fn pump(run: &mut Run<'_>, buf: &mut [u8]) {
    let Some(pipe) = run.pipe else {
        return;
    };
    loop {
        match sys::read(pipe, buf) {
            Ok(0) => break,
            Ok(n) => {
                let data = &mut buf[..n];
                let _ = sys::write(1, data); // EAGAIN: the pane drops it, the log has it
                run.log.write(data);
            }
            Err(Errno(sys::EAGAIN)) => return,
            Err(_) => break,
        }
    }
    sys::close(pipe);
    run.pipe = None;
}

/// Tells the daemon when the log starts or stops failing (disk full, directory gone, ...).
#[cold]
#[inline(never)]
pub(super) fn report_log(run: &mut Run<'_>, link: &mut Link) {
    if run.log.error != run.log_told {
        match &run.log.error {
            Some(e) => {
                // Valid UTF-8 on the link (the daemon reads lines of text).
                let text = line(format_args!("{}", Lossy(e.bytes())));
                link.tell(Up::LogError(text.bytes()));
            }
            None => link.tell(Up::LogOk),
        }
        run.log_told = run.log.error.clone();
    }
}

/// A signal's name, for the pane.
pub(super) struct SigName(i32);

impl fmt::Display for SigName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 32] = [
            "",
            "SIGHUP",
            "SIGINT",
            "SIGQUIT",
            "SIGILL",
            "SIGTRAP",
            "SIGABRT",
            "SIGBUS",
            "SIGFPE",
            "SIGKILL",
            "SIGUSR1",
            "SIGSEGV",
            "SIGUSR2",
            "SIGPIPE",
            "SIGALRM",
            "SIGTERM",
            "SIGSTKFLT",
            "SIGCHLD",
            "SIGCONT",
            "SIGSTOP",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGURG",
            "SIGXCPU",
            "SIGXFSZ",
            "SIGVTALRM",
            "SIGPROF",
            "SIGWINCH",
            "SIGIO",
            "SIGPWR",
            "SIGSYS",
        ];
        match NAMES.get(self.0 as usize) {
            Some(n) if !n.is_empty() => f.write_str(n),
            _ => write!(f, "signal {}", self.0),
        }
    }
}
