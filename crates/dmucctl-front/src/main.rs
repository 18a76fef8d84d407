//! `dmucctl`: answers `dmucctl status [NAME...]` without std or libc (see the library for
//! why), and execs dmucctl-full, with the same arguments and environment, for everything
//! else, and whenever its answer is not the plain table it asked for.

#![no_std]
#![no_main]

use core::ffi::{CStr, c_char};

use dmuc_rt::start::Args;
use dmuc_rt::sys;
use dmuc_rt::text::{Buf, Lossy};
use dmucctl_front::{Env, Line, Plan, classify, plan};

dmuc_rt::main!(start);

/// The full client's name, looked for beside this binary, then on `PATH`.
const FULL: &[u8] = b"dmucctl-full";

/// Room for the two replies: a frame is at most 1 MiB (dmuc_proto::MAX_FRAME).
const REPLY_MAX: usize = 2 << 20;

fn start(args: Args, envp: *const *const c_char) -> i32 {
    let mut env = Env {
        euid: sys::geteuid(),
        ..Env::default()
    };
    env.scan(environ(envp).map(CStr::to_bytes));
    let color = sys::isatty(1) && !env.no_color;
    if let Some(p) = plan(args.iter().skip(1).map(CStr::to_bytes), &env, color)
        && let Some(code) = answer(&p)
    {
        return code;
    }
    full(args, envp)
}

/// Asks dmucd and prints the table; `None` for anything but a plain answer (nothing has
/// been printed then).
fn answer(p: &Plan) -> Option<i32> {
    let mut path = p.socket.clone();
    let fd = sys::connect_unix(path.c_str()?).ok()?;
    sys::write_all(fd, p.request.bytes()).ok()?;
    let buf = sys::mmap_anon(REPLY_MAX).ok()?;
    // SAFETY: a fresh private mapping of REPLY_MAX bytes, used only here (and left to exit).
    let buf = unsafe { core::slice::from_raw_parts_mut(buf, REPLY_MAX) };
    let (mut len, mut start) = (0, 0);
    let mut hello = false;
    loop {
        let n = sys::read(fd, &mut buf[len..]).ok()?;
        if n == 0 {
            return None; // closed before answering
        }
        len += n;
        while let Some(nl) = buf[start..len].iter().position(|&b| b == b'\n') {
            let line = &mut buf[start..start + nl];
            match classify(line) {
                Line::Hello => hello = true,
                Line::Text(t) if hello => {
                    sys::write_all(1, &line[..t]).ok()?;
                    return Some(0);
                }
                _ => return None,
            }
            start += nl + 1;
        }
        if len == buf.len() {
            return None;
        }
    }
}

/// Runs dmucctl-full in this process; returns only when it cannot.
fn full(args: Args, envp: *const *const c_char) -> i32 {
    let mut exe = [0u8; 4096];
    let mut tried = Buf::<4200>::new();
    if let Ok(n) = sys::readlink(c"/proc/self/exe", &mut exe)
        && let Some(cut) = exe[..n].iter().rposition(|&b| b == b'/')
    {
        exec_in(&exe[..cut], args, envp, &mut tried);
    }
    if let Some(path) = environ(envp).find_map(|e| e.to_bytes().strip_prefix(b"PATH=")) {
        for dir in path.split(|&b| b == b':').filter(|d| !d.is_empty()) {
            exec_in(dir, args, envp, &mut tried);
        }
    }
    let mut msg = Buf::<4400>::new();
    let _ = core::fmt::write(
        &mut msg,
        format_args!(
            "dmucctl: cannot run {} (looked for it beside this dmucctl, then on PATH{}); \
             install it with dmucctl: cargo build --workspace builds both; \
             cargo install --path crates/dmucctl, then --path crates/dmucctl-front\n",
            Lossy(FULL),
            Lossy(tried.bytes()),
        ),
    );
    let _ = sys::write_all(2, msg.bytes());
    1
}

/// Execs `dir/dmucctl-full`; on failure notes the path and error in `tried` and returns.
fn exec_in(dir: &[u8], args: Args, envp: *const *const c_char, tried: &mut Buf<4200>) {
    let mut path = Buf::<4200>::new();
    path.push(dir).push(b"/").push(FULL);
    let Some(c) = path.c_str() else { return };
    // SAFETY: the kernel's own null-terminated argv and envp arrays.
    let e = unsafe { sys::execve(c, args.as_ptr().cast(), envp.cast()) };
    let why = match e.0 {
        sys::ENOENT => "not found",
        sys::EACCES => "permission denied",
        _ => "cannot exec",
    };
    let _ = core::fmt::write(
        tried,
        format_args!("; {}: {why} (errno {})", Lossy(path.bytes()), e.0),
    );
}

/// The `NAME=VALUE` entries of the environment.
fn environ(envp: *const *const c_char) -> impl Iterator<Item = &'static CStr> + Clone {
    (0..)
        // SAFETY: envp is the kernel's null-terminated array, alive for the process.
        .map(move |i| unsafe { *envp.add(i) })
        .take_while(|p| !p.is_null())
        // SAFETY: each entry is a NUL-terminated string.
        .map(|p| unsafe { CStr::from_ptr(p) })
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let mut b = Buf::<1024>::new();
    let _ = core::fmt::write(&mut b, format_args!("dmucctl: {info}\n"));
    let _ = sys::write(2, b.bytes());
    sys::exit(1)
}
