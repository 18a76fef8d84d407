//! The process that runs in a component's tmux pane.
//!
//! tmux cannot tell us exit statuses reliably (Debian's 3.3a loses most `pane-died` hooks,
//! see docs/architecture.md), and the daemon is not the parent of pane processes. So the pane
//! runs this small program, which *is* the parent: it starts the real program in its own
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
//! And it outlives its pane: when the terminal hangs up (the tmux server died, or someone
//! closed the window) the program keeps running, its output keeps going to the log, and the
//! shim says `view-lost`; the daemon opens a new window and hands its terminal over the link.
//! A shim between runs with neither a terminal nor a daemon exits: nothing could start or
//! show its next run.

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

/// The connection to the daemon; the shim keeps working without it.
struct Link {
    fd: Option<Fd>,
    inbuf: Buf<512>,
    /// The shim socket's path, to reconnect to, and its directory.
    path: CBuf,
    dir: CBuf,
    /// Watches the socket's directory while the daemon is away.
    watch: Option<Fd>,
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
    fn connect(path: &CStr) -> Link {
        let p = path.to_bytes();
        let dir = match p.iter().rposition(|b| *b == b'/') {
            Some(0) => &b"/"[..],
            Some(i) => &p[..i],
            None => b".",
        };
        let mut link = Link {
            fd: sys::connect_unix(path).ok(),
            inbuf: Buf::new(),
            path: cbuf(p),
            dir: cbuf(dir),
            watch: None,
            retry_now: false,
            ino: sys::stat(path).ok().map(|s| s.ino),
        };
        if link.fd.is_none() {
            link.lost();
        }
        link
    }

    /// The link dropped: watch for the socket to be bound again.
    fn lost(&mut self) {
        if let Some(fd) = self.fd.take() {
            sys::close(fd);
            say_pane!(
                "\r\n[dmuc] lost the link to dmucd; the program keeps running, waiting for a new dmucd\r\n"
            );
        }
        self.inbuf.clear();
        // Also after a connection that was reset at once (the old daemon's listener was still
        // closing when we connected): the watch is armed first, then we try again.
        self.retry_now = true;
        if self.watch.is_none()
            && let Ok(w) = sys::inotify()
        {
            const IN_MOVED_TO: u32 = 0x80;
            const IN_CREATE: u32 = 0x100;
            if sys::inotify_watch(w, as_cstr(&self.dir), IN_CREATE | IN_MOVED_TO).is_ok() {
                self.watch = Some(w);
            } else {
                sys::close(w);
            }
        }
    }

    /// Tries to connect again (after an inotify event, or at once after a loss: the new
    /// daemon may already listen). True when connected.
    fn retry(&mut self) -> bool {
        self.retry_now = false;
        if let Some(w) = self.watch {
            sys::drain(w); // which file it was does not matter
        }
        let path = as_cstr(&self.path);
        let ino = sys::stat(path).ok().map(|s| s.ino);
        if ino.is_none() || ino == self.ino {
            return false; // nothing there, or still the socket of the daemon we lost
        }
        match sys::connect_unix(path) {
            Ok(fd) => {
                say_pane!("[dmuc] reconnected to dmucd\r\n");
                self.fd = Some(fd);
                if let Some(w) = self.watch.take() {
                    sys::close(w);
                }
                self.ino = ino;
                true
            }
            Err(e) => {
                say_pane!("[dmuc] dmucd not there yet ({e}); waiting\r\n");
                false
            }
        }
    }

    /// The fd to poll: the link while connected, else the reconnect watcher.
    fn poll_fd(&self) -> Option<Fd> {
        self.fd.or(self.watch)
    }

    /// Writes a formatted line (see `up`).
    fn say(&mut self, l: &[u8]) {
        if let Some(fd) = self.fd
            && sys::write_all(fd, l).is_err()
        {
            self.lost();
        }
    }

    fn tell(&mut self, u: Up<'_>) {
        self.say(up(u).bytes());
    }

    /// Reads what is available. `None` when the daemon went away; else what it said.
    fn read_in(&mut self) -> Option<In> {
        let fd = self.fd?;
        let mut buf = [0u8; 256];
        let mut got = In::default();
        match sys::recv_with_fd(fd, &mut buf) {
            Ok((0, _)) | Err(_) => {
                self.lost();
                return None;
            }
            Ok((n, view)) => {
                got.view = view;
                if self.inbuf.bytes().len() + n > 512 {
                    self.inbuf.clear(); // an overlong line is not ours to read
                }
                self.inbuf.push(&buf[..n]);
            }
        }
        // Complete lines are read; what follows the last newline waits for more.
        let bytes = self.inbuf.bytes();
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for l in bytes[..end].split(|b| *b == b'\n') {
            match Down::parse(l) {
                Some(Down::Quit) => got.quit = true,
                Some(Down::Run(n)) => got.run = Some(n),
                // The terminal came with the read (`view`'s first byte).
                Some(Down::View) | None => {}
            }
        }
        let mut rest = Buf::<512>::new();
        rest.push(&bytes[end..]);
        self.inbuf = rest;
        Some(got)
    }
}

/// What the daemon said in one read: `run N`, `quit` (exit once no program runs), and a
/// terminal passed with `view` (the window that shows this component now).
#[derive(Default)]
struct In {
    run: Option<u64>,
    quit: bool,
    view: Option<Fd>,
}

/// The terminal the program's output is copied to (fds 1 and 2): the pane's at first, then
/// the one dmucd hands over when the pane went away (the tmux server died, or the window was
/// closed). The program never writes to it (its output is its own pipe, which the shim
/// reads), so losing the terminal costs the program nothing: tmux is the view, not the parent.
struct Tty {
    live: bool,
}

impl Tty {
    /// The fd to watch for a hangup (-1 once it has hung up: it would report it forever).
    fn poll_fd(&self) -> Fd {
        if self.live { 1 } else { -1 }
    }

    /// The terminal hung up: output goes on to the log only, and the daemon is told, so it
    /// can open a window and hand its terminal over.
    #[cold]
    #[inline(never)]
    fn lost(&mut self, link: &mut Link) {
        if !self.live {
            return;
        }
        self.live = false;
        if let Ok(null) = sys::open(c"/dev/null", sys::O_RDWR | sys::O_CLOEXEC, 0) {
            for fd in 0..3 {
                let _ = sys::dup2(null, fd);
            }
            sys::close(null);
        }
        link.tell(Up::ViewLost);
    }

    /// The daemon handed over a new terminal.
    #[cold]
    #[inline(never)]
    fn got(&mut self, fd: Fd, link: &mut Link) {
        let _ = sys::dup2(fd, 1).and_then(|_| sys::dup2(fd, 2));
        sys::close(fd);
        sys::set_nonblocking(1);
        self.live = true;
        link.tell(Up::ViewOk);
    }
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

/// Tells the daemon when the log starts or stops failing (disk full, directory gone, ...).
#[cold]
#[inline(never)]
fn report_log(run: &mut Run<'_>, link: &mut Link) {
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

/// `--idle [--banner]`: holds a tmux window open (dmucd's control session, the overview,
/// which dmucd draws on; `--banner` prints a line about the windows first) until the pane
/// closes: tmux's SIGHUP or SIGTERM ends it (no handler
/// is installed, so their default action applies), and so does a hangup of its tty.
fn idle_window(flag: Option<&[u8]>) -> i32 {
    match flag {
        None => {}
        Some(b"--banner") => say_pane!(
            "dmuc: each component runs in its own window (C-b w lists them, C-b n/p moves).\r\n\
             Logs are in the log directory; this window stays open while dmucd runs.\r\n"
        ),
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

fn usage() -> i32 {
    say_pane!(
        "usage: dmuc-shim --spec FILE --run N | --idle [--banner] (started by dmucd in a tmux pane)\n"
    );
    2
}

/// Runs the shim with its command line (without argv[0]); returns the process exit code.
pub fn main<'a>(mut args: impl Iterator<Item = &'a CStr>) -> i32 {
    let (mut spec_path, mut first_run) = (None, None);
    while let Some(a) = args.next() {
        match a.to_bytes() {
            b"--idle" => return idle_window(args.next().map(|a| a.to_bytes())),
            b"--spec" => spec_path = args.next(),
            b"--run" => first_run = args.next().and_then(|r| parse_u64(r.to_bytes())),
            _ => return usage(),
        }
    }
    let (Some(spec_path), Some(first_run)) = (spec_path, first_run) else {
        return usage();
    };
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
    let mut link = match Spec::parse(mapped.bytes()) {
        Ok(spec) => Link::connect(spec.socket),
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
    let mut tty = Tty { live: true };
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

/// Where in the child a start failed (reported with the errno through a close-on-exec pipe).
#[derive(Clone, Copy)]
#[repr(u8)]
enum Stage {
    Setup = 0,
    Cwd = 1,
    Ids = 2,
    Exec = 3,
}

// No allocator to box the message with: the 512 bytes live on the stack, once per start.
#[allow(clippy::result_large_err)]
fn spawn<'a>(spec: &Spec<'a>) -> Result<Run<'a>, Buf<512>> {
    let mut msg = Buf::<512>::new();
    if let Some(e) = spec.error {
        msg.push(e);
        return Err(msg);
    }
    let fail = |what: &str, e: Errno| {
        let mut m = Buf::<512>::new();
        let _ = write!(m, "{what}: {e}");
        m
    };
    let (rd, wr) = sys::pipe().map_err(|e| fail("pipe", e))?;
    let (erd, ewr) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            sys::close(rd);
            sys::close(wr);
            return Err(fail("pipe", e));
        }
    };
    let pid = match sys::fork() {
        Ok(0) => child(spec, wr, ewr),
        Ok(pid) => pid,
        Err(e) => {
            for fd in [rd, wr, erd, ewr] {
                sys::close(fd);
            }
            return Err(fail("fork", e));
        }
    };
    sys::close(wr);
    sys::close(ewr);
    // The error pipe closes on a successful exec: EOF means the program runs.
    let mut report = [0u8; 5];
    let got = sys::read(erd, &mut report).unwrap_or(0);
    sys::close(erd);
    if got == 5 {
        sys::close(rd);
        let _ = sys::wait_blocking(pid);
        let e = Errno(i32::from_ne_bytes([
            report[1], report[2], report[3], report[4],
        ]));
        let argv0 = spec.args().next().map_or(&b""[..], |a| a.to_bytes());
        let _ = match report[0] {
            1 => write!(
                msg,
                "cannot change directory to {}: {e}",
                Lossy(spec.cwd.map_or(&b""[..], |c| c.to_bytes()))
            ),
            2 => write!(msg, "cannot switch to the component's user and group: {e}"),
            _ => write!(msg, "cannot execute \"{}\": {e}", Lossy(argv0)),
        };
        return Err(msg);
    }
    sys::set_nonblocking(rd);
    let log = LogWriter::new(spec.log, spec.log_max, spec.log_keep);
    if let Some(e) = &log.error {
        say_pane!("[dmuc] log: {}\r\n", Lossy(e.bytes()));
    }
    Ok(Run {
        pid,
        pipe: Some(rd),
        log,
        status: None,
        closing: false,
        log_told: None,
    })
}

/// The child between fork and exec: one thread, so any system call is safe here.
fn child(spec: &Spec<'_>, out: Fd, report: Fd) -> ! {
    let die = |stage: Stage, e: Errno| -> ! {
        let mut r = [stage as u8, 0, 0, 0, 0];
        r[1..].copy_from_slice(&e.0.to_ne_bytes());
        let _ = sys::write(report, &r);
        sys::exit(127)
    };
    // Its own process group (stops reach its children), no blocked signals inherited from
    // us, and SIGKILL from the kernel if the shim dies, so a killed shim never leaves an
    // orphaned component.
    let setup = sys::setpgid_self()
        .and_then(|_| sys::sigprocmask(sys::SIG_SETMASK, 0))
        .and_then(|_| sys::set_parent_death_signal(SIGKILL))
        // Close-on-exec: only its copy on fd 0 reaches the program.
        .and_then(|_| sys::open(c"/dev/null", sys::O_RDONLY | sys::O_CLOEXEC, 0))
        .and_then(|null| sys::dup2(null, 0))
        .and_then(|_| sys::dup2(out, 1))
        .and_then(|_| sys::dup2(out, 2));
    if let Err(e) = setup {
        die(Stage::Setup, e);
    }
    if let Some(d) = spec.cwd
        && let Err(e) = sys::chdir(d)
    {
        die(Stage::Cwd, e);
    }
    let ids = (|| {
        if spec.uid.is_some() && sys::getuid() == 0 {
            sys::clear_groups()?; // root's supplementary groups must not follow the program
        }
        if let Some(g) = spec.gid {
            sys::setgid(g)?;
        }
        if let Some(u) = spec.uid {
            sys::setuid(u)?;
        }
        Ok(())
    })();
    if let Err(e) = ids {
        die(Stage::Ids, e);
    }
    die(Stage::Exec, exec(spec))
}

/// `execvpe`: a program name without `/` is looked up in the program's own `PATH`.
/// Says why the program could not start (log, pane, daemon); returns the line said.
#[cold]
#[inline(never)]
fn spawn_failed(spec: &Spec<'_>, link: &mut Link, msg: &Buf<512>) -> Line {
    let mut text = Buf::<1100>::new();
    let _ = writeln!(text, "[dmuc] {}: {}", Lossy(spec.name), Lossy(msg.bytes()));
    let mut log = LogWriter::new(spec.log, spec.log_max, spec.log_keep);
    log.write(text.bytes_mut());
    say_pane!("[dmuc] {}: {}\r\n", Lossy(spec.name), Lossy(msg.bytes()));
    let why = line(format_args!("{}", Lossy(msg.bytes())));
    let end = up(Up::SpawnFailed(why.bytes()));
    link.say(end.bytes());
    end
}

#[cold]
#[inline(never)]
fn exec(spec: &Spec<'_>) -> Errno {
    let (nargs, nenv) = (spec.args().count(), spec.env().count());
    let Ok(mut table) = Mapping::new((nargs + nenv + 2) * 8) else {
        return Errno(12);
    };
    // SAFETY: the mapping holds nargs + nenv + 2 pointer-sized, suitably aligned slots.
    let slots = unsafe {
        core::slice::from_raw_parts_mut(
            table.all_mut().as_mut_ptr().cast::<*const u8>(),
            nargs + nenv + 2,
        )
    };
    for (i, a) in spec.args().enumerate() {
        slots[i] = a.as_ptr().cast();
    }
    slots[nargs] = core::ptr::null();
    for (i, e) in spec.env().enumerate() {
        slots[nargs + 1 + i] = e.as_ptr().cast();
    }
    slots[nargs + nenv + 1] = core::ptr::null();
    let (argv, envp) = (slots.as_ptr(), slots[nargs + 1..].as_ptr());
    let Some(prog) = spec.args().next() else {
        return Errno(sys::ENOENT);
    };
    // SAFETY (both calls): argv and envp are null-terminated arrays of pointers into the
    // spec's NUL-terminated records, alive until exec replaces us.
    if prog.to_bytes().contains(&b'/') {
        return unsafe { sys::execve(prog, argv, envp) };
    }
    let path = spec
        .var(b"PATH")
        .unwrap_or(b"/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    let mut denied = false;
    for dir in path.split(|b| *b == b':') {
        let mut full = Buf::<4200>::new();
        full.push(if dir.is_empty() { b"." } else { dir })
            .push(b"/")
            .push(prog.to_bytes());
        let Some(c) = full.c_str() else { continue };
        match unsafe { sys::execve(c, argv, envp) } {
            Errno(sys::EACCES) => denied = true,
            Errno(sys::ENOENT | sys::ENOTDIR) => {}
            e => return e,
        }
    }
    Errno(if denied { sys::EACCES } else { sys::ENOENT })
}

/// What the shim's loops share: the signalfd, the daemon link, the terminal, `quit`.
struct Io<'a> {
    sfd: Fd,
    link: &'a mut Link,
    tty: &'a mut Tty,
    quit: &'a mut bool,
}

impl Io<'_> {
    /// Acts on what the daemon said (a new terminal, `quit`); returns its `run N`.
    fn take(&mut self, got: In) -> Option<u64> {
        if let Some(fd) = got.view {
            self.tty.got(fd, self.link);
        }
        *self.quit |= got.quit;
        got.run
    }
}

/// Pumps output and forwards signals until the program has exited and its output is drained.
fn supervise(
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
                    if [SIGTERM, SIGINT, SIGHUP].contains(&signo) {
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
fn reannounce(io: &mut Io<'_>, hello: &Line, run: &Run<'_>) {
    io.link.say(hello.bytes());
    io.link.tell(Up::Start(run.pid as u32));
    if let Some(st) = &run.status {
        io.link.tell(Up::Exit(st.end));
    }
    if !io.tty.live {
        io.link.tell(Up::ViewLost);
    }
}

fn reap(run: &mut Run<'_>, spec: &Spec<'_>) {
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
fn pump(run: &mut Run<'_>, buf: &mut [u8]) {
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

/// Between runs: waits for `run N` from the daemon. `None`: time to exit (we were told to
/// stop by a signal or `quit`, or neither a window nor a daemon is left). While the daemon is
/// away, waits for it to come back and tells it how the last run ended; while the terminal is
/// gone, waits for the daemon to hand over a new one.
fn idle(io: &mut Io<'_>, last: &(Line, Line)) -> Option<u64> {
    if *io.quit {
        return None;
    }
    if io.link.fd.is_none() && io.link.watch.is_none() {
        io.link.lost();
    }
    let tell = |io: &mut Io<'_>| {
        io.link.say(last.0.bytes());
        io.link.say(last.1.bytes());
        if !io.tty.live {
            io.link.tell(Up::ViewLost);
        }
    };
    loop {
        if io.link.fd.is_none() && !io.tty.live {
            return None; // no window and no daemon: nothing would ever start or show a run
        }
        if io.link.fd.is_none() && io.link.retry_now && io.link.retry() {
            tell(io);
        }
        let lfd = io.link.poll_fd()?; // no link and no way to watch for one
        let mut fds = [
            PollFd::new(io.sfd, POLLIN),
            PollFd::new(lfd, POLLIN),
            PollFd::new(io.tty.poll_fd(), 0),
        ];
        match sys::poll(&mut fds, -1) {
            Ok(_) | Err(Errno(sys::EINTR)) => {}
            Err(_) => return None,
        }
        let [sig_ready, link_ready, hung_up] = fds.map(|f| f.revents != 0);
        if hung_up {
            io.tty.lost(io.link);
        }
        if sig_ready {
            while let Some((signo, code)) = sys::read_signal(io.sfd) {
                if signo == SIGHUP && code == sys::SI_KERNEL {
                    io.tty.lost(io.link); // the terminal's hangup
                } else if signo != SIGCHLD {
                    return None; // TERM/HUP/INT with no program running: the pane is closing
                }
                // Stray children (none of ours) are reaped so they do not linger as zombies.
                while let Ok(Some(_)) = sys::wait_nohang(-1) {}
            }
        }
        if link_ready {
            if io.link.fd.is_none() {
                if io.link.retry() {
                    tell(io);
                }
                continue;
            }
            // `None`: the daemon went away; the loop tries once, then waits for the next one.
            if let Some(got) = io.link.read_in() {
                let run = io.take(got);
                if *io.quit {
                    return None;
                }
                if run.is_some() {
                    return run;
                }
            }
        }
    }
}

/// A signal's name, for the pane.
struct SigName(i32);

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
