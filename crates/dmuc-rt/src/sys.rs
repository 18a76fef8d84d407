//! The system calls of dmuc's libc-free binaries, made directly: `syscalls` issues the
//! instruction, linux-raw-sys (generated from the kernel's headers for each architecture)
//! gives the numbers, constants and structure layouts. The same code on every architecture
//! Linux has with the `*at`/`clone`/`ppoll` family (x86_64 and aarch64 are built and tested;
//! aarch64 has no `open`, `stat`, `fork`, `poll`, `pause`, `dup2` or `rename`, so neither is
//! used).
//!
//! Why not rustix: its `std` feature is turned on by other crates of the workspace (tempfile,
//! xattr), and Cargo unifies a crate's features over a whole build, so every `cargo build`
//! linked std into these binaries (duplicate `panic_impl`); and what they need beyond it
//! (fork, execve, sigprocmask, signalfd, exit) is outside its stable interface.
//! linux-raw-sys is used without `std` (rustix, its other user, also does).

use core::ffi::CStr;

use linux_raw_sys::general as k;

/// A file descriptor.
pub type Fd = i32;

/// A failed system call's error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

/// Result of a system call.
pub type Res<T> = Result<T, Errno>;

/// One system call, with the kernel's `-errno` turned into `Err`; `EINTR` is retried.
///
/// # Safety
/// The arguments must be valid for the call `nr` (pointers to live memory of the right size).
unsafe fn call(nr: u32, a: [usize; 6]) -> Res<usize> {
    loop {
        // SAFETY: forwarded from the caller.
        let r = unsafe { syscalls::raw::syscall6(nr as usize, a[0], a[1], a[2], a[3], a[4], a[5]) };
        match r as isize {
            e if (-4095..0).contains(&e) && -e == EINTR as isize => continue,
            e if (-4095..0).contains(&e) => return Err(Errno(-e as i32)),
            _ => return Ok(r),
        }
    }
}

macro_rules! sc {
    ($n:ident $(, $a:expr)*) => {{
        let mut args = [0usize; 6];
        let vals: &[usize] = &[$($a as usize),*];
        args[..vals.len()].copy_from_slice(vals);
        // SAFETY: every wrapper below passes pointers to memory it borrows for the call.
        unsafe { call(k::$n, args) }
    }};
}

macro_rules! consts {
    ($ty:ty; $($name:ident = $v:expr),* $(,)?) => {
        $(
            #[allow(missing_docs)]
            pub const $name: $ty = $v as $ty;
        )*
    };
}

consts!(i32;
    EINTR = linux_raw_sys::errno::EINTR,
    EAGAIN = linux_raw_sys::errno::EAGAIN,
    EACCES = linux_raw_sys::errno::EACCES,
    ENOENT = linux_raw_sys::errno::ENOENT,
    ENOTDIR = linux_raw_sys::errno::ENOTDIR,
    ECHILD = linux_raw_sys::errno::ECHILD,
    ESRCH = linux_raw_sys::errno::ESRCH,
);

consts!(usize;
    O_RDONLY = k::O_RDONLY,
    O_WRONLY = k::O_WRONLY,
    O_RDWR = k::O_RDWR,
    O_CREAT = k::O_CREAT,
    O_APPEND = k::O_APPEND,
    O_NONBLOCK = k::O_NONBLOCK,
    O_CLOEXEC = k::O_CLOEXEC,
);

const AT_FDCWD: isize = k::AT_FDCWD as isize;

/// Reads into `buf`.
pub fn read(fd: Fd, buf: &mut [u8]) -> Res<usize> {
    sc!(__NR_read, fd, buf.as_mut_ptr(), buf.len())
}

/// Writes from `buf` (one call: may be short).
pub fn write(fd: Fd, buf: &[u8]) -> Res<usize> {
    sc!(__NR_write, fd, buf.as_ptr(), buf.len())
}

/// Writes all of `buf` (a blocking fd), or fails.
pub fn write_all(fd: Fd, mut buf: &[u8]) -> Res<()> {
    while !buf.is_empty() {
        match write(fd, buf)? {
            0 => return Err(Errno(linux_raw_sys::errno::EIO as i32)), // nothing more will go
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// Closes `fd`.
pub fn close(fd: Fd) {
    let _ = sc!(__NR_close, fd);
}

/// Opens `path` relative to the working directory.
pub fn open(path: &CStr, flags: usize, mode: usize) -> Res<Fd> {
    sc!(__NR_openat, AT_FDCWD, path.as_ptr(), flags, mode).map(|f| f as Fd)
}

/// The `stat` fields the shim uses.
pub struct Stat {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
}

// The field types are each architecture's (`__kernel_ulong_t`, `long`, ...).
#[allow(clippy::unnecessary_cast)]
fn stat_of(s: &k::stat) -> Stat {
    Stat {
        ino: s.st_ino as u64,
        size: s.st_size as u64,
    }
}

/// `stat(2)` of a path.
pub fn stat(path: &CStr) -> Res<Stat> {
    let mut s = core::mem::MaybeUninit::<k::stat>::zeroed();
    sc!(__NR_newfstatat, AT_FDCWD, path.as_ptr(), s.as_mut_ptr(), 0)?;
    // SAFETY: zeroed is a valid `stat` (plain integers), and the kernel filled it in.
    Ok(stat_of(unsafe { s.assume_init_ref() }))
}

/// `fstat(2)`.
pub fn fstat(fd: Fd) -> Res<Stat> {
    let mut s = core::mem::MaybeUninit::<k::stat>::zeroed();
    sc!(__NR_fstat, fd, s.as_mut_ptr())?;
    // SAFETY: as in `stat`.
    Ok(stat_of(unsafe { s.assume_init_ref() }))
}

/// Renames a file.
pub fn rename(from: &CStr, to: &CStr) -> Res<()> {
    sc!(
        __NR_renameat2,
        AT_FDCWD,
        from.as_ptr(),
        AT_FDCWD,
        to.as_ptr(),
        0
    )
    .map(drop)
}

/// Removes a file.
pub fn unlink(path: &CStr) -> Res<()> {
    sc!(__NR_unlinkat, AT_FDCWD, path.as_ptr(), 0).map(drop)
}

/// A pipe, both ends close-on-exec: (read, write).
pub fn pipe() -> Res<(Fd, Fd)> {
    let mut fds = [0i32; 2];
    sc!(__NR_pipe2, fds.as_mut_ptr(), O_CLOEXEC)?;
    Ok((fds[0], fds[1]))
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: Fd) {
    if let Ok(fl) = sc!(__NR_fcntl, fd, k::F_GETFL) {
        let _ = sc!(__NR_fcntl, fd, k::F_SETFL, fl | O_NONBLOCK);
    }
}

/// An entry of [`poll`] (the kernel's `struct pollfd`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PollFd {
    /// The fd (negative: ignored).
    pub fd: Fd,
    /// Events asked for.
    pub events: i16,
    /// Events that happened.
    pub revents: i16,
}

const _: () = assert!(core::mem::size_of::<PollFd>() == core::mem::size_of::<k::pollfd>());

impl PollFd {
    /// Watches `fd` for `events` (0: only hangups and errors).
    pub const fn new(fd: Fd, events: i16) -> PollFd {
        PollFd {
            fd,
            events,
            revents: 0,
        }
    }
}

/// Readable.
pub const POLLIN: i16 = k::POLLIN as i16;

/// Waits for events; `timeout_ms` < 0 waits forever. A signal interrupts it (`EINTR`).
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> Res<usize> {
    let ts = k::__kernel_timespec {
        tv_sec: i64::from(timeout_ms / 1000),
        tv_nsec: i64::from(timeout_ms % 1000) * 1_000_000,
    };
    let timeout = if timeout_ms < 0 {
        core::ptr::null()
    } else {
        &ts as *const k::__kernel_timespec
    };
    let r = unsafe {
        // SAFETY: `fds` is a live array of `pollfd` of the given length, `timeout` null or
        // a live timespec. Not `call`: EINTR is for the caller to see.
        syscalls::raw::syscall5(
            k::__NR_ppoll as usize,
            fds.as_mut_ptr() as usize,
            fds.len(),
            timeout as usize,
            0,
            8,
        )
    };
    match r as isize {
        e if (-4095..0).contains(&e) => Err(Errno(-e as i32)),
        _ => Ok(r),
    }
}

/// A signal set, as the kernel's 64-bit mask.
pub type SigSet = u64;

/// The bit of signal `s` in a [`SigSet`].
pub const fn sigbit(s: i32) -> SigSet {
    1 << (s - 1)
}

/// Replaces (`SIG_SETMASK`) or extends (`SIG_BLOCK`) the blocked set.
pub fn sigprocmask(how: usize, set: SigSet) -> Res<()> {
    sc!(__NR_rt_sigprocmask, how, &set as *const SigSet, 0, 8).map(drop)
}

/// `SIG_BLOCK`.
pub const SIG_BLOCK: usize = k::SIG_BLOCK as usize;
/// `SIG_SETMASK`.
pub const SIG_SETMASK: usize = k::SIG_SETMASK as usize;

/// A non-blocking, close-on-exec signalfd for `set`.
pub fn signalfd(set: SigSet) -> Res<Fd> {
    // signalfd.h defines SFD_NONBLOCK and SFD_CLOEXEC as these (linux-raw-sys has no
    // signalfd.h).
    let flags = k::O_NONBLOCK | k::O_CLOEXEC;
    sc!(__NR_signalfd4, -1isize, &set as *const SigSet, 8, flags).map(|f| f as Fd)
}

/// `si_code` of a signal the kernel sent itself (a terminal's hangup, for one).
pub const SI_KERNEL: i32 = 0x80;

/// The next pending signal from a signalfd, if any: its number and `si_code` (who sent it).
pub fn read_signal(fd: Fd) -> Option<(i32, i32)> {
    // struct signalfd_siginfo: 128 bytes of fixed-width fields, the same on every
    // architecture: ssi_signo (u32), ssi_errno (i32), ssi_code (i32), ...
    let mut info = [0u8; 128];
    match read(fd, &mut info) {
        Ok(128) => {
            let word =
                |i: usize| i32::from_ne_bytes([info[i], info[i + 1], info[i + 2], info[i + 3]]);
            Some((word(0), word(8)))
        }
        _ => None,
    }
}

/// Sends signal `sig` to `pid` (negative: a process group).
pub fn kill(pid: i32, sig: i32) -> Res<()> {
    sc!(__NR_kill, pid as isize, sig).map(drop)
}

/// How a child ended, decoded from a wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal (and whether it dumped core).
    Signal(i32, bool),
}

/// `waitpid(pid, WNOHANG)` (`pid` -1: any child): `Ok(None)` while it runs (or only
/// stopped/continued).
pub fn wait_nohang(pid: i32) -> Res<Option<(i32, Ended)>> {
    let mut status: i32 = 0;
    let got = sc!(
        __NR_wait4,
        pid as isize,
        &mut status as *mut i32,
        k::WNOHANG,
        0
    )? as i32;
    if got == 0 {
        return Ok(None);
    }
    Ok(decode(status).map(|e| (got, e)))
}

/// Waits for `pid` to end (used only for a child known to be exiting).
pub fn wait_blocking(pid: i32) -> Res<()> {
    let mut status: i32 = 0;
    sc!(__NR_wait4, pid as isize, &mut status as *mut i32, 0, 0).map(drop)
}

/// Decodes a wait status; `None` for stopped or continued (not an end).
pub fn decode(status: i32) -> Option<Ended> {
    let low = status & 0x7f;
    if low == 0 {
        Some(Ended::Code((status >> 8) & 0xff))
    } else if low != 0x7f && status & 0xffff != 0xffff {
        Some(Ended::Signal(low, status & 0x80 != 0))
    } else {
        None
    }
}

/// `fork(2)`: 0 in the child. As `clone(SIGCHLD)`, which every architecture has; the order
/// of clone's other arguments differs between them, but they are all 0 here.
pub fn fork() -> Res<i32> {
    sc!(__NR_clone, k::SIGCHLD, 0, 0, 0, 0).map(|p| p as i32)
}

/// Replaces the process image; returns only on failure.
///
/// # Safety
/// `argv` and `envp` must be null-terminated arrays of pointers to NUL-terminated strings.
pub unsafe fn execve(path: &CStr, argv: *const *const u8, envp: *const *const u8) -> Errno {
    let a = [
        path.as_ptr() as usize,
        argv as usize,
        envp as usize,
        0,
        0,
        0,
    ];
    // SAFETY: forwarded from the caller.
    match unsafe { call(k::__NR_execve, a) } {
        Err(e) => e,
        Ok(_) => Errno(0),
    }
}

/// Duplicates `from` onto `to` (as dup2: nothing to do when they are the same).
pub fn dup2(from: Fd, to: Fd) -> Res<()> {
    if from == to {
        return sc!(__NR_fcntl, from, k::F_GETFD).map(drop);
    }
    sc!(__NR_dup3, from, to, 0).map(drop)
}

/// Changes the working directory.
pub fn chdir(path: &CStr) -> Res<()> {
    sc!(__NR_chdir, path.as_ptr()).map(drop)
}

/// Puts the calling process in a new process group of its own.
pub fn setpgid_self() -> Res<()> {
    sc!(__NR_setpgid, 0, 0).map(drop)
}

/// Starts a new session (and process group) led by the calling process: no terminal's
/// signals reach it.
pub fn setsid() -> Res<()> {
    sc!(__NR_setsid).map(drop)
}

/// A file descriptor that refers to process `pid` itself (readable once it has exited), so
/// that signals cannot reach a later process that reuses the number.
pub fn pidfd_open(pid: i32) -> Res<Fd> {
    sc!(__NR_pidfd_open, pid as isize, 0).map(|fd| fd as Fd)
}

/// Sends `sig` to the process that `pidfd` refers to (not to whoever has its PID now).
pub fn pidfd_send_signal(pidfd: Fd, sig: i32) -> Res<()> {
    sc!(__NR_pidfd_send_signal, pidfd, sig, 0, 0).map(drop)
}

/// Reads at `offset` without moving the file position.
pub fn pread(fd: Fd, buf: &mut [u8], offset: u64) -> Res<usize> {
    sc!(__NR_pread64, fd, buf.as_mut_ptr(), buf.len(), offset)
}

/// Closes every descriptor from `first` up (`close_range(2)`; a loop on kernels before 5.9).
pub fn close_from(first: Fd) {
    if sc!(__NR_close_range, first, u32::MAX, 0).is_err() {
        for fd in first..4096 {
            close(fd);
        }
    }
}

/// `setuid(2)`: the kernel's call, for this (single-threaded) process.
pub fn setuid(uid: u32) -> Res<()> {
    sc!(__NR_setuid, uid).map(drop)
}

/// `setgid(2)`: the kernel's call, for this (single-threaded) process.
pub fn setgid(gid: u32) -> Res<()> {
    sc!(__NR_setgid, gid).map(drop)
}

/// Drops all supplementary groups.
pub fn clear_groups() -> Res<()> {
    sc!(__NR_setgroups, 0, 0).map(drop)
}

/// `getuid(2)`.
pub fn getuid() -> u32 {
    sc!(__NR_getuid).unwrap_or(0) as u32
}

/// `geteuid(2)`.
pub fn geteuid() -> u32 {
    sc!(__NR_geteuid).unwrap_or(0) as u32
}

/// Whether `fd` is a terminal (as `isatty(3)`: the terminal ioctl `TCGETS` succeeds).
pub fn isatty(fd: Fd) -> bool {
    let mut t = core::mem::MaybeUninit::<k::termios>::zeroed();
    sc!(__NR_ioctl, fd, linux_raw_sys::ioctl::TCGETS, t.as_mut_ptr()).is_ok()
}

/// `readlink(2)` into `buf`: the link's length (not NUL-terminated; may be truncated).
pub fn readlink(path: &CStr, buf: &mut [u8]) -> Res<usize> {
    sc!(
        __NR_readlinkat,
        AT_FDCWD,
        path.as_ptr(),
        buf.as_mut_ptr(),
        buf.len()
    )
}

/// Waits for a signal (returns after a handled one; a terminating one ends the process).
pub fn pause() {
    // ppoll on nothing, forever: what `pause` is on architectures without it. Not `call`:
    // EINTR is the normal return.
    // SAFETY: no memory is passed.
    let _ = unsafe { syscalls::raw::syscall5(k::__NR_ppoll as usize, 0, 0, 0, 0, 8) };
}

/// `getpid(2)`.
pub fn getpid() -> i32 {
    sc!(__NR_getpid).unwrap_or(0) as i32
}

/// Asks the kernel to send `sig` when the parent dies.
pub fn set_parent_death_signal(sig: i32) -> Res<()> {
    sc!(__NR_prctl, linux_raw_sys::prctl::PR_SET_PDEATHSIG, sig).map(drop)
}

/// Monotonic time in milliseconds.
pub fn now_ms() -> u64 {
    let mut ts = k::__kernel_timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    let _ = sc!(__NR_clock_gettime, k::CLOCK_MONOTONIC, &mut ts as *mut _);
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Ends the process.
pub fn exit(code: i32) -> ! {
    loop {
        let _ = sc!(__NR_exit_group, code);
    }
}

/// Anonymous private memory of `len` bytes (zero-filled, touched only when written).
pub fn mmap_anon(len: usize) -> Res<*mut u8> {
    let prot = k::PROT_READ | k::PROT_WRITE;
    let flags = k::MAP_PRIVATE | k::MAP_ANONYMOUS;
    sc!(__NR_mmap, 0, len, prot, flags, -1isize, 0).map(|p| p as *mut u8)
}

/// Unmaps what [`mmap_anon`] returned.
///
/// # Safety
/// Nothing may use the memory afterwards.
pub unsafe fn munmap(p: *mut u8, len: usize) {
    let _ = sc!(__NR_munmap, p, len);
}

/// Connects a stream socket to a Unix socket path.
pub fn connect_unix(path: &CStr) -> Res<Fd> {
    use linux_raw_sys::net::{AF_UNIX, SOCK_STREAM, sockaddr_un};
    let bytes = path.to_bytes();
    let mut addr = sockaddr_un {
        sun_family: AF_UNIX as _,
        sun_path: [0; 108],
    };
    if bytes.len() >= addr.sun_path.len() {
        return Err(Errno(linux_raw_sys::errno::ENAMETOOLONG as i32)); // as std says
    }
    for (d, s) in addr.sun_path.iter_mut().zip(bytes) {
        *d = *s as _;
    }
    let fd = sc!(__NR_socket, AF_UNIX, SOCK_STREAM | k::O_CLOEXEC, 0)? as Fd;
    let len = core::mem::size_of_val(&addr.sun_family) + bytes.len() + 1;
    match sc!(__NR_connect, fd, &addr as *const sockaddr_un, len) {
        Ok(_) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// Reads what a stream socket has, and the first descriptor passed with it (`SCM_RIGHTS`,
/// received close-on-exec; any further ones are closed).
#[allow(clippy::unnecessary_cast)] // `size_t` fields: usize on 64-bit targets only
pub fn recv_with_fd(fd: Fd, buf: &mut [u8]) -> Res<(usize, Option<Fd>)> {
    use linux_raw_sys::net::{MSG_CMSG_CLOEXEC, SCM_RIGHTS, SOL_SOCKET, cmsghdr, msghdr};
    // Room for a header and a few descriptors, aligned as a cmsghdr.
    #[repr(C, align(8))]
    struct Control([u8; 64]);
    let mut control = Control([0; 64]);
    let mut iov = k::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len() as _,
    };
    let mut msg = msghdr {
        msg_name: core::ptr::null_mut(),
        msg_namelen: 0,
        msg_iov: (&mut iov as *mut k::iovec).cast(),
        msg_iovlen: 1,
        msg_control: control.0.as_mut_ptr().cast(),
        msg_controllen: control.0.len() as _,
        msg_flags: 0,
    };
    let n = sc!(__NR_recvmsg, fd, &mut msg as *mut msghdr, MSG_CMSG_CLOEXEC)?;
    let mut passed = None;
    let len = (msg.msg_controllen as usize).min(control.0.len());
    let head = core::mem::size_of::<cmsghdr>();
    // One SCM_RIGHTS message at most (a read stops at the next one); its fds follow the header.
    if len >= head {
        // SAFETY: the buffer holds at least a header, and is aligned for one.
        let h = unsafe { control.0.as_ptr().cast::<cmsghdr>().read() };
        if h.cmsg_level == SOL_SOCKET as i32 && h.cmsg_type == SCM_RIGHTS as i32 {
            let end = (h.cmsg_len as usize).min(len);
            for chunk in control.0[head.min(end)..end].chunks_exact(4) {
                let f = i32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                match passed {
                    None => passed = Some(f),
                    Some(_) => close(f),
                }
            }
        }
    }
    Ok((n, passed))
}

/// A non-blocking, close-on-exec inotify instance.
pub fn inotify() -> Res<Fd> {
    sc!(__NR_inotify_init1, k::IN_NONBLOCK | k::IN_CLOEXEC).map(|f| f as Fd)
}

/// Watches `path` for `mask`.
pub fn inotify_watch(fd: Fd, path: &CStr, mask: u32) -> Res<()> {
    sc!(__NR_inotify_add_watch, fd, path.as_ptr(), mask).map(drop)
}

/// Drains whatever is readable from a non-blocking fd.
pub fn drain(fd: Fd) {
    let mut b = [0u8; 512];
    while matches!(read(fd, &mut b), Ok(n) if n > 0) {}
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        // The texts of strerror(3), so messages read as they did from std.
        let text = match self.0 {
            1 => "Operation not permitted",
            2 => "No such file or directory",
            3 => "No such process",
            4 => "Interrupted system call",
            5 => "Input/output error",
            7 => "Argument list too long",
            8 => "Exec format error",
            9 => "Bad file descriptor",
            11 => "Resource temporarily unavailable",
            12 => "Cannot allocate memory",
            13 => "Permission denied",
            17 => "File exists",
            20 => "Not a directory",
            21 => "Is a directory",
            22 => "Invalid argument",
            23 => "Too many open files in system",
            24 => "Too many open files",
            26 => "Text file busy",
            27 => "File too large",
            28 => "No space left on device",
            30 => "Read-only file system",
            32 => "Broken pipe",
            36 => "File name too long",
            40 => "Too many levels of symbolic links",
            104 => "Connection reset by peer",
            111 => "Connection refused",
            122 => "Disk quota exceeded",
            _ => "Unknown error",
        };
        write!(f, "{text} (os error {})", self.0)
    }
}

#[cfg(test)]
mod tests;
