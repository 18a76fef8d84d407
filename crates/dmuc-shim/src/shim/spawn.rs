//! Starting the program: fork, the child's set-up (process group, identity, directory,
//! descriptors, signal mask) and exec, and a start that failed told to everyone.

use super::*;

/// Where in the child a start failed (reported with the errno through a close-on-exec pipe).
#[derive(Clone, Copy)]
#[repr(u8)]
pub(super) enum Stage {
    Setup = 0,
    Cwd = 1,
    Ids = 2,
    Exec = 3,
}

#[allow(clippy::result_large_err)]
pub(super) fn spawn<'a>(spec: &Spec<'a>) -> Result<Run<'a>, Buf<512>> {
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
pub(super) fn child(spec: &Spec<'_>, out: Fd, report: Fd) -> ! {
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
pub(super) fn spawn_failed(spec: &Spec<'_>, link: &mut Link, msg: &Buf<512>) -> Line {
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
pub(super) fn exec(spec: &Spec<'_>) -> Errno {
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
