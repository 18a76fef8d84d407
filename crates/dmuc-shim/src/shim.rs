//! The process that runs each component's program, and each component window's process.
//!
//! tmux cannot tell us exit statuses reliably (Debian's 3.3a loses most `pane-died` hooks,
//! see docs/architecture.md), and the daemon is not the parent of the programs. So dmucd
//! starts this small program (`--detached`: it forks into a session of its own and its first
//! parent exits), which *is* the parent: it starts the real program in its own
//! process group, reports its PID and its exact exit status or signal to the daemon over the
//! shim socket, owns the log file (stdout and stderr come through one pipe), copies output to
//! the pane without ever blocking on it, and forwards terminal signals.
//!
//! The shim outlives its program: after reporting an exit it waits for the daemon to say
//! `run N` (restart in place: one line and a fork/exec, no tmux round trip) or to go away.
//! It is one thread around one `poll(2)` over a signalfd, the output pipe and the daemon link,
//! and it links no libc and allocates nothing but two mappings (the spec and the read buffer):
//! one runs per component, for the cluster's lifetime.
//!
//! The lines it says and reads are `dmuc_wire::line` (`hello`, `start PID`, `exit ...`, ...
//! up; `run N`, `quit`, `view` with a terminal passed alongside, down).
//!
//! The shim also outlives the daemon: when the link drops (dmucd crashed, was killed, or is
//! being upgraded) the program keeps running and the shim waits, on inotify, for a new daemon
//! to bind the shim socket, then reconnects and says where it stands: `hello` and `start PID`
//! while the program runs, or `hello` and its `exit ...` line if it ended meanwhile. That is
//! what lets a new dmucd adopt the components instead of restarting them.
//!
//! And it outlives its window: it starts without one and says `view-lost`, and so again when
//! the terminal hangs up (the tmux server died, or someone closed the window); the program
//! keeps running, its output keeps going to the log, and the daemon opens a window, whose
//! process is `dmuc-shim --idle --view PID` (`view_window`: Ctrl-C passed on, gone with the
//! shim), and hands its terminal over the link. On the first one the shim shows what the log
//! took before it.
//! A shim between runs with neither a terminal nor a daemon exits: nothing could start or
//! show its next run.
//!
//! This file: the command line, the spec's mapping and the loop over runs. `spawn` starts a
//! program, `run` supervises it, `idle` waits between runs, `link` is the daemon's end,
//! `tty` the terminal shown on.

use core::ffi::CStr;
use core::fmt::{self, Write};

use crate::logfile::{LogWriter, Message};
use crate::spec::Spec;
use crate::sys::{self, Errno, Fd, POLLIN, PollFd};
use crate::text::{Buf, Lossy};
use dmuc_wire::line::{Down, End, Up};
use dmuc_wire::parse_u64;

const SIGHUP: i32 = 1;
const SIGINT: i32 = 2;
const SIGKILL: i32 = 9;
const SIGPIPE: i32 = 13;
const SIGTERM: i32 = 15;
const SIGCHLD: i32 = 17;
/// Signals tmux (or an operator) sends the pane, passed on to the program.
const FORWARDED: [i32; 6] = [SIGTERM, SIGINT, SIGHUP, 3, 10, 12];

/// One protocol line.
type Line = Buf<1024>;

/// Writes to the pane (stderr); never blocks the shim for long (the tty is ours).
pub fn err_out(args: fmt::Arguments<'_>) {
    let mut b = Buf::<1024>::new();
    let _ = b.write_fmt(args);
    let _ = sys::write(2, b.bytes());
}

macro_rules! say_pane {
    ($($t:tt)*) => { err_out(format_args!($($t)*)) };
}

mod idle;
mod link;
mod run;
mod spawn;
mod tty;

use idle::idle;
use link::{In, Link};
use run::{Io, report_log, supervise};
use spawn::{spawn, spawn_failed};
use tty::Tty;

fn line(args: fmt::Arguments<'_>) -> Line {
    let mut b = Line::new();
    let _ = b.write_fmt(args);
    b
}

/// A link line, formatted (newline included).
fn up(u: Up<'_>) -> Line {
    let mut b = Line::new();
    u.write(&mut |x| {
        b.push(x);
    });
    b
}

/// A NUL-terminated copy of a short path.
type CBuf = Buf<256>;

fn cbuf(bytes: &[u8]) -> CBuf {
    let mut b = CBuf::new();
    b.push(bytes).push(b"\0");
    b
}

fn as_cstr(b: &CBuf) -> &CStr {
    CStr::from_bytes_with_nul(b.bytes()).unwrap_or(c"")
}

/// Private anonymous memory, unmapped on drop.
struct Mapping {
    ptr: *mut u8,
    cap: usize,
    len: usize,
}

impl Mapping {
    fn new(cap: usize) -> Result<Mapping, Errno> {
        Ok(Mapping {
            ptr: sys::mmap_anon(cap)?,
            cap,
            len: 0,
        })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` maps `cap` bytes for our lifetime and `len <= cap`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }

    fn all_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above; the mapping is ours alone.
        unsafe { core::slice::from_raw_parts_mut(self.ptr, self.cap) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: nothing borrows the mapping any more (borrows end before drop).
        unsafe { sys::munmap(self.ptr, self.cap) }
    }
}

/// Reads a whole file into a fresh mapping (one byte more than its size, for a final NUL).
fn load(path: &CStr) -> Result<Mapping, Errno> {
    let fd = sys::open(path, sys::O_RDONLY | sys::O_CLOEXEC, 0)?;
    let res = (|| {
        let size = sys::fstat(fd)?.size as usize;
        let mut m = Mapping::new(size + 1)?;
        let mut len = 0;
        while len < size {
            match sys::read(fd, &mut m.all_mut()[len..size])? {
                0 => break,
                n => len += n,
            }
        }
        m.len = len;
        Ok(m)
    })();
    sys::close(fd);
    res
}

/// How a run ended: the line for the daemon, the shim's exit code, the text for the pane.
struct Status {
    end: End,
    code: i32,
    text: Buf<64>,
}

/// One running program: its PID, its output pipe, the log.
struct Run<'a> {
    pid: i32,
    pipe: Option<Fd>,
    log: LogWriter<'a>,
    status: Option<Status>,
    /// The pane is closing (tmux sent TERM/HUP): exit after this run instead of waiting.
    closing: bool,
    /// The log error last told to the daemon (`None`: the log works).
    log_told: Option<Message>,
}

/// `--idle [--banner | --view PID]`: holds a tmux window open (dmucd's control session,
/// the overview, which dmucd draws on; `--banner` prints a line about the windows first;
/// `--view` shows the output of the detached shim PID, see `view_window`) until the pane
/// closes: tmux's SIGHUP or SIGTERM ends it (no handler is installed, so their default
/// action applies), and so does a hangup of its tty.
fn idle_window(flag: Option<&[u8]>, arg: Option<&CStr>) -> i32 {
    match flag {
        None => {}
        Some(b"--banner") => say_pane!(
            "dmuc: each component runs in its own window (C-b w lists them, C-b n/p moves).\r\n\
             Logs are in the log directory; this window stays open while dmucd runs.\r\n"
        ),
        Some(b"--view") => match arg.and_then(|a| parse_u64(a.to_bytes())) {
            Some(pid) if pid > 0 && pid <= i32::MAX as u64 => return view_window(pid as i32),
            _ => return usage(),
        },
        Some(_) => return usage(),
    }
    // Also gone when the pane's tty hangs up (the tmux server died): the kernel's SIGHUP
    // may have gone to the shell that exec'd us before we ran.
    loop {
        let mut tty = [PollFd::new(1, 0)];
        match sys::poll(&mut tty, -1) {
            Ok(_) if tty[0].revents != 0 => return 0,
            Ok(_) | Err(Errno(sys::EINTR)) => {}
            Err(_) => sys::pause(), // cannot watch it: signals still end us
        }
    }
}

/// The window of a component whose shim dmucd started without one: the shim writes to this
/// pane's terminal, and this process, the pane's own, passes the terminal's Ctrl-C and
/// Ctrl-\ to it (so they reach the program, as in a window the shim runs in) and ends with
/// it (so the pane dies with the shim, as it would if the shim were the pane's process).
/// Ctrl-Z is ignored: stopping the view would stop nothing else. Closing the window (HUP)
/// ends only the view.
fn view_window(pid: i32) -> i32 {
    const SIGQUIT: i32 = 3;
    const SIGTSTP: i32 = 20;
    // A pidfd names that process itself: a later process given the same PID is not signalled.
    // Without one (a kernel before 5.3), signals go by PID and the window stays until closed:
    // ending at once would have dmucd open it again, forever.
    let shim = match sys::pidfd_open(pid) {
        Ok(fd) => Some(fd),
        Err(Errno(sys::ESRCH)) => return 0, // already gone: nothing to show
        Err(_) => None,
    };
    let mask = sys::sigbit(SIGINT) | sys::sigbit(SIGQUIT) | sys::sigbit(SIGTSTP);
    let sfd = sys::sigprocmask(sys::SIG_BLOCK, mask)
        .and_then(|_| sys::signalfd(mask))
        .unwrap_or(-1);
    loop {
        let mut fds = [
            PollFd::new(1, 0),
            PollFd::new(shim.unwrap_or(-1), POLLIN),
            PollFd::new(sfd, POLLIN),
        ];
        match sys::poll(&mut fds, -1) {
            Ok(_) | Err(Errno(sys::EINTR)) => {}
            Err(_) => return 0,
        }
        let [hung_up, ended, sig] = fds.map(|f| f.revents != 0);
        if hung_up || ended {
            return 0;
        }
        if sig {
            while let Some((signo, _)) = sys::read_signal(sfd) {
                if signo != SIGTSTP {
                    let _ = match shim {
                        Some(fd) => sys::pidfd_send_signal(fd, signo),
                        None => sys::kill(pid, signo),
                    };
                }
            }
        }
    }
}

fn usage() -> i32 {
    say_pane!(
        "usage: dmuc-shim --spec FILE --run N [--detached] | --idle [--banner | --view PID] (started by dmucd)\n"
    );
    2
}

/// Runs the shim with its command line (without argv[0]); returns the process exit code.
pub fn main<'a>(mut args: impl Iterator<Item = &'a CStr>) -> i32 {
    let (mut spec_path, mut first_run, mut detached) = (None, None, false);
    while let Some(a) = args.next() {
        match a.to_bytes() {
            b"--idle" => return idle_window(args.next().map(|a| a.to_bytes()), args.next()),
            b"--spec" => spec_path = args.next(),
            b"--run" => first_run = args.next().and_then(|r| parse_u64(r.to_bytes())),
            b"--detached" => detached = true,
            _ => return usage(),
        }
    }
    let (Some(spec_path), Some(first_run)) = (spec_path, first_run) else {
        return usage();
    };
    supervisor(spec_path, first_run, detached)
}

/// The shim proper. Out of line: its frame (line buffers, the terminal's state) is several
/// pages, which a window's idle process (`--idle`: one per component) would otherwise touch.
#[inline(never)]
fn supervisor(spec_path: &CStr, first_run: u64, detached: bool) -> i32 {
    if detached {
        // Started by dmucd itself. Its child exits at once (dmucd reaps it); the shim goes
        // on as that child's child, which outlives dmucd, is not dmucd's to reap, and leads a
        // session of its own, so no terminal signal meant for the daemon (a Ctrl-C on
        // `dmucd` in the foreground) reaches the component.
        match sys::fork() {
            Ok(0) => {}
            Ok(_) => return 0,
            Err(e) => {
                say_pane!("dmuc shim: cannot fork: {e}\n");
                return 127;
            }
        }
        let _ = sys::setsid();
        // Only stdin, stdout and stderr (/dev/null) are meant for us: a descriptor dmucd was
        // given without close-on-exec (a test harness's, a jobserver's) is not the program's.
        sys::close_from(3);
    }
    let mut mapped = match load(spec_path) {
        Ok(m) => m,
        Err(e) => {
            say_pane!(
                "dmuc shim: cannot read launch spec {}: {e}\n",
                Lossy(spec_path.to_bytes())
            );
            return 127;
        }
    };
    let mut tty = Tty {
        live: !detached,
        detached,
        replay: None,
    };
    let mut link = match Spec::parse(mapped.bytes()) {
        Ok(spec) => {
            if detached && spec.log.to_bytes().len() < 255 {
                let size = sys::stat(spec.log).map_or(0, |s| s.size);
                tty.replay = Some((cbuf(spec.log.to_bytes()), size));
            }
            Link::connect(spec.socket)
        }
        Err(e) => {
            say_pane!(
                "dmuc shim: bad launch spec {}: {e}\n",
                Lossy(spec_path.to_bytes())
            );
            return 127;
        }
    };
    // Signals arrive through a signalfd, so the one poll loop sees them in order with I/O.
    // SIGPIPE is only blocked: a write to a daemon that went away fails with EPIPE instead.
    let mask = FORWARDED
        .iter()
        .fold(sys::sigbit(SIGCHLD), |m, s| m | sys::sigbit(*s));
    let sfd = match sys::sigprocmask(sys::SIG_BLOCK, mask | sys::sigbit(SIGPIPE))
        .and_then(|_| sys::signalfd(mask))
    {
        Ok(fd) => fd,
        Err(e) => {
            say_pane!("dmuc shim: cannot set up signals: {e}\n");
            return 127;
        }
    };
    // The pane may be slower than the program; the log must never wait for it.
    sys::set_nonblocking(1);
    let mut readbuf: Option<Mapping> = None;
    // Told to leave once no program runs (the daemon no longer has this component).
    let mut quit = false;

    let mut run_no = first_run;
    let pid = sys::getpid();
    loop {
        let code;
        // The last run's hello and exit lines, said again to a daemon that reconnects.
        let last;
        {
            let Ok(spec) = Spec::parse(mapped.bytes()) else {
                return 127; // checked when it was loaded
            };
            let hello = up(Up::Hello {
                name: spec.name,
                run: run_no,
                shim: u32::try_from(pid).ok(),
            });
            link.say(hello.bytes());
            if tty.replay.is_some() && run_no == first_run {
                link.tell(Up::ViewLost); // no window yet: dmucd opens one
            }
            match spawn(&spec) {
                Err(msg) => {
                    last = (hello, spawn_failed(&spec, &mut link, &msg));
                    code = 127;
                }
                Ok(mut run) => {
                    link.tell(Up::Start(run.pid as u32));
                    report_log(&mut run, &mut link);
                    let mut io = Io {
                        sfd,
                        link: &mut link,
                        tty: &mut tty,
                        quit: &mut quit,
                    };
                    supervise(&spec, &mut io, &mut run, &hello, &mut readbuf);
                    let st = run.status.take().unwrap_or_else(|| Status {
                        end: End::Code(255),
                        code: 255,
                        text: line64(b"lost"),
                    });
                    link.tell(Up::Exit(st.end));
                    say_pane!(
                        "\r\n[dmuc] {} (pid {}) ended: {}\r\n",
                        Lossy(spec.name),
                        run.pid,
                        Lossy(st.text.bytes())
                    );
                    // Nobody to show a next run or to ask for one: no window and no daemon.
                    if run.closing || quit || (!tty.live && link.fd.is_none()) {
                        return st.code;
                    }
                    last = (hello, up(Up::Exit(st.end)));
                    code = st.code;
                }
            }
        }
        // Between runs: wait for `run N`, then start again with the spec the daemon rewrote.
        let mut io = Io {
            sfd,
            link: &mut link,
            tty: &mut tty,
            quit: &mut quit,
        };
        let Some(n) = idle(&mut io, &last) else {
            return code;
        };
        run_no = n;
        match load(spec_path) {
            Ok(m) if Spec::parse(m.bytes()).is_ok() => mapped = m,
            Ok(_) => say_pane!("dmuc shim: bad launch spec; reusing the previous one\r\n"),
            Err(e) => {
                say_pane!("dmuc shim: cannot read launch spec: {e}; reusing the previous one\r\n")
            }
        }
        if let Ok(spec) = Spec::parse(mapped.bytes()) {
            say_pane!(
                "[dmuc] {}: starting again (run {run_no})\r\n",
                Lossy(spec.name)
            );
        }
    }
}

fn line64(b: &[u8]) -> Buf<64> {
    let mut l = Buf::new();
    l.push(b);
    l
}

// No allocator to box the message with: the 512 bytes live on the stack, once per start.
