//! The few Linux system calls the shim makes, issued directly: the shim links no libc, so a
//! pane's helper process has no dynamic loader, no relocations and no allocator to pay for
//! (docs/performance.md: 190 KB → a few KB of private memory per component).
//!
//! x86_64 only for now: the numbers and the `syscall` instruction are the only
//! architecture-specific parts (see `nr` and `raw`).

use core::arch::asm;
use core::ffi::CStr;

/// A file descriptor.
pub type Fd = i32;

/// A failed system call's error number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Errno(pub i32);

/// Result of a system call.
pub type Res<T> = Result<T, Errno>;

#[allow(missing_docs)]
pub mod nr {
    pub const READ: usize = 0;
    pub const WRITE: usize = 1;
    pub const CLOSE: usize = 3;
    pub const IOCTL: usize = 16;
    pub const FSTAT: usize = 5;
    pub const POLL: usize = 7;
    pub const MMAP: usize = 9;
    pub const MUNMAP: usize = 11;
    pub const RT_SIGPROCMASK: usize = 14;
    pub const DUP2: usize = 33;
    pub const PAUSE: usize = 34;
    pub const GETPID: usize = 39;
    pub const SOCKET: usize = 41;
    pub const CONNECT: usize = 42;
    pub const RECVMSG: usize = 47;
    pub const FORK: usize = 57;
    pub const EXECVE: usize = 59;
    pub const EXIT: usize = 60;
    pub const WAIT4: usize = 61;
    pub const KILL: usize = 62;
    pub const FCNTL: usize = 72;
    pub const CHDIR: usize = 80;
    pub const RENAME: usize = 82;
    pub const UNLINK: usize = 87;
    pub const READLINK: usize = 89;
    pub const GETUID: usize = 102;
    pub const GETEUID: usize = 107;
    pub const SETUID: usize = 105;
    pub const SETGID: usize = 106;
    pub const SETPGID: usize = 109;
    pub const SETGROUPS: usize = 116;
    pub const PRCTL: usize = 157;
    pub const CLOCK_GETTIME: usize = 228;
    pub const EXIT_GROUP: usize = 231;
    pub const INOTIFY_ADD_WATCH: usize = 254;
    pub const OPENAT: usize = 257;
    pub const NEWFSTATAT: usize = 262;
    pub const SIGNALFD4: usize = 289;
    pub const PIPE2: usize = 293;
    pub const INOTIFY_INIT1: usize = 294;
}

/// One system call with up to six arguments.
///
/// # Safety
/// The arguments must be valid for the call `n` (pointers to live memory of the right size).
#[inline(always)]
pub unsafe fn raw(n: usize, a: [usize; 6]) -> isize {
    let r: isize;
    // SAFETY: the caller vouches for the arguments; the kernel clobbers rcx and r11 only.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") n as isize => r,
            in("rdi") a[0], in("rsi") a[1], in("rdx") a[2],
            in("r10") a[3], in("r8") a[4], in("r9") a[5],
            lateout("rcx") _, lateout("r11") _,
            options(nostack),
        );
    }
    r
}

fn check(r: isize) -> Res<usize> {
    if (-4095..0).contains(&r) {
        Err(Errno(-r as i32))
    } else {
        Ok(r as usize)
    }
}

/// A system call, with the kernel's `-errno` turned into `Err`; `EINTR` is retried.
///
/// # Safety
/// As for [`raw`].
pub unsafe fn call(n: usize, a: [usize; 6]) -> Res<usize> {
    loop {
        // SAFETY: forwarded from the caller.
        match check(unsafe { raw(n, a) }) {
            Err(Errno(EINTR)) => continue,
            r => return r,
        }
    }
}

macro_rules! sc {
    ($n:expr $(, $a:expr)*) => {{
        let mut args = [0usize; 6];
        let vals: &[usize] = &[$($a as usize),*];
        args[..vals.len()].copy_from_slice(vals);
        // SAFETY: every wrapper below passes pointers to memory it borrows for the call.
        unsafe { call($n, args) }
    }};
}

#[allow(missing_docs)]
pub const EINTR: i32 = 4;
#[allow(missing_docs)]
pub const EAGAIN: i32 = 11;
#[allow(missing_docs)]
pub const EACCES: i32 = 13;
#[allow(missing_docs)]
pub const ENOENT: i32 = 2;
#[allow(missing_docs)]
pub const ENOTDIR: i32 = 20;
#[allow(missing_docs)]
pub const ECHILD: i32 = 10;

#[allow(missing_docs)]
pub const O_RDONLY: usize = 0;
#[allow(missing_docs)]
pub const O_WRONLY: usize = 1;
#[allow(missing_docs)]
pub const O_RDWR: usize = 2;
#[allow(missing_docs)]
pub const O_CREAT: usize = 0o100;
#[allow(missing_docs)]
pub const O_APPEND: usize = 0o2000;
#[allow(missing_docs)]
pub const O_NONBLOCK: usize = 0o4000;
#[allow(missing_docs)]
pub const O_CLOEXEC: usize = 0o2000000;
const AT_FDCWD: isize = -100;

/// Reads into `buf`.
pub fn read(fd: Fd, buf: &mut [u8]) -> Res<usize> {
    sc!(nr::READ, fd, buf.as_mut_ptr(), buf.len())
}

/// Writes from `buf` (one call: may be short).
pub fn write(fd: Fd, buf: &[u8]) -> Res<usize> {
    sc!(nr::WRITE, fd, buf.as_ptr(), buf.len())
}

/// Writes all of `buf` (a blocking fd), or fails.
pub fn write_all(fd: Fd, mut buf: &[u8]) -> Res<()> {
    while !buf.is_empty() {
        match write(fd, buf)? {
            0 => return Err(Errno(5)), // EIO: nothing more will go
            n => buf = &buf[n..],
        }
    }
    Ok(())
}

/// Closes `fd`.
pub fn close(fd: Fd) {
    let _ = sc!(nr::CLOSE, fd);
}

/// Opens `path` relative to the working directory.
pub fn open(path: &CStr, flags: usize, mode: usize) -> Res<Fd> {
    sc!(nr::OPENAT, AT_FDCWD, path.as_ptr(), flags, mode).map(|f| f as Fd)
}

/// The `stat` fields the shim uses.
pub struct Stat {
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
}

fn stat_of(buf: &[u64; 18]) -> Stat {
    // x86_64 `struct stat`: st_dev, st_ino, st_nlink, st_mode+st_uid, st_gid+pad, st_rdev, st_size.
    Stat {
        ino: buf[1],
        size: buf[6],
    }
}

/// `stat(2)` of a path.
pub fn stat(path: &CStr) -> Res<Stat> {
    let mut b = [0u64; 18];
    sc!(nr::NEWFSTATAT, AT_FDCWD, path.as_ptr(), b.as_mut_ptr(), 0)?;
    Ok(stat_of(&b))
}

/// `fstat(2)`.
pub fn fstat(fd: Fd) -> Res<Stat> {
    let mut b = [0u64; 18];
    sc!(nr::FSTAT, fd, b.as_mut_ptr())?;
    Ok(stat_of(&b))
}

/// Renames a file.
pub fn rename(from: &CStr, to: &CStr) -> Res<()> {
    sc!(nr::RENAME, from.as_ptr(), to.as_ptr()).map(drop)
}

/// Removes a file.
pub fn unlink(path: &CStr) -> Res<()> {
    sc!(nr::UNLINK, path.as_ptr()).map(drop)
}

/// A pipe, both ends close-on-exec: (read, write).
pub fn pipe() -> Res<(Fd, Fd)> {
    let mut fds = [0i32; 2];
    sc!(nr::PIPE2, fds.as_mut_ptr(), O_CLOEXEC)?;
    Ok((fds[0], fds[1]))
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: Fd) {
    const F_GETFL: usize = 3;
    const F_SETFL: usize = 4;
    if let Ok(fl) = sc!(nr::FCNTL, fd, F_GETFL) {
        let _ = sc!(nr::FCNTL, fd, F_SETFL, fl | O_NONBLOCK);
    }
}

/// An entry of [`poll`].
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
pub const POLLIN: i16 = 1;

/// Waits for events; `timeout_ms` < 0 waits forever.
pub fn poll(fds: &mut [PollFd], timeout_ms: i32) -> Res<usize> {
    // SAFETY: `fds` is a live array of `pollfd` of the given length.
    check(unsafe {
        raw(
            nr::POLL,
            [
                fds.as_mut_ptr() as usize,
                fds.len(),
                timeout_ms as isize as usize,
                0,
                0,
                0,
            ],
        )
    })
}

/// A signal set, as the kernel's 64-bit mask.
pub type SigSet = u64;

/// The bit of signal `s` in a [`SigSet`].
pub const fn sigbit(s: i32) -> SigSet {
    1 << (s - 1)
}

/// Replaces (`SIG_SETMASK`) or extends (`SIG_BLOCK`) the blocked set.
pub fn sigprocmask(how: usize, set: SigSet) -> Res<()> {
    sc!(nr::RT_SIGPROCMASK, how, &set as *const SigSet, 0, 8).map(drop)
}

/// `SIG_BLOCK`.
pub const SIG_BLOCK: usize = 0;
/// `SIG_SETMASK`.
pub const SIG_SETMASK: usize = 2;

/// A non-blocking, close-on-exec signalfd for `set`.
pub fn signalfd(set: SigSet) -> Res<Fd> {
    const SFD_NONBLOCK: usize = 0o4000;
    const SFD_CLOEXEC: usize = 0o2000000;
    sc!(
        nr::SIGNALFD4,
        -1isize,
        &set as *const SigSet,
        8,
        SFD_NONBLOCK | SFD_CLOEXEC
    )
    .map(|f| f as Fd)
}

/// `si_code` of a signal the kernel sent itself (a terminal's hangup, for one).
pub const SI_KERNEL: i32 = 0x80;

/// The next pending signal from a signalfd, if any: its number and `si_code` (who sent it).
pub fn read_signal(fd: Fd) -> Option<(i32, i32)> {
    // struct signalfd_siginfo: ssi_signo, ssi_errno, ssi_code, ...
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
    sc!(nr::KILL, pid as isize, sig).map(drop)
}

/// How a child ended, decoded from a wait status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal (and whether it dumped core).
    Signal(i32, bool),
}

/// `waitpid(pid, WNOHANG)`: `Ok(None)` while it runs (or only stopped/continued).
pub fn wait_nohang(pid: i32) -> Res<Option<(i32, Ended)>> {
    const WNOHANG: usize = 1;
    let mut status: i32 = 0;
    let got = sc!(nr::WAIT4, pid as isize, &mut status as *mut i32, WNOHANG, 0)? as i32;
    if got == 0 {
        return Ok(None);
    }
    Ok(decode(status).map(|e| (got, e)))
}

/// Waits for `pid` to end (used only for a child known to be exiting).
pub fn wait_blocking(pid: i32) -> Res<()> {
    let mut status: i32 = 0;
    sc!(nr::WAIT4, pid as isize, &mut status as *mut i32, 0, 0).map(drop)
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

/// `fork(2)`: 0 in the child.
pub fn fork() -> Res<i32> {
    sc!(nr::FORK).map(|p| p as i32)
}

/// Replaces the process image; returns only on failure.
///
/// # Safety
/// `argv` and `envp` must be null-terminated arrays of pointers to NUL-terminated strings.
pub unsafe fn execve(path: &CStr, argv: *const *const u8, envp: *const *const u8) -> Errno {
    // SAFETY: forwarded from the caller.
    match unsafe {
        call(
            nr::EXECVE,
            [
                path.as_ptr() as usize,
                argv as usize,
                envp as usize,
                0,
                0,
                0,
            ],
        )
    } {
        Err(e) => e,
        Ok(_) => Errno(0),
    }
}

/// Duplicates `from` onto `to`.
pub fn dup2(from: Fd, to: Fd) -> Res<()> {
    sc!(nr::DUP2, from, to).map(drop)
}

/// Changes the working directory.
pub fn chdir(path: &CStr) -> Res<()> {
    sc!(nr::CHDIR, path.as_ptr()).map(drop)
}

/// Puts the calling process in a new process group of its own.
pub fn setpgid_self() -> Res<()> {
    sc!(nr::SETPGID, 0, 0).map(drop)
}

/// `setuid(2)`.
pub fn setuid(uid: u32) -> Res<()> {
    sc!(nr::SETUID, uid).map(drop)
}

/// `setgid(2)`.
pub fn setgid(gid: u32) -> Res<()> {
    sc!(nr::SETGID, gid).map(drop)
}

/// Drops all supplementary groups.
pub fn clear_groups() -> Res<()> {
    sc!(nr::SETGROUPS, 0, 0).map(drop)
}

/// `getuid(2)`.
pub fn getuid() -> u32 {
    sc!(nr::GETUID).unwrap_or(0) as u32
}

/// `geteuid(2)`.
pub fn geteuid() -> u32 {
    sc!(nr::GETEUID).unwrap_or(0) as u32
}

/// Whether `fd` is a terminal (as `isatty(3)`: the terminal ioctl `TCGETS` succeeds).
pub fn isatty(fd: Fd) -> bool {
    const TCGETS: usize = 0x5401;
    let mut termios = [0u8; 60]; // struct termios is 60 bytes on x86_64
    sc!(nr::IOCTL, fd, TCGETS, termios.as_mut_ptr()).is_ok()
}

/// `readlink(2)` into `buf`: the link's length (not NUL-terminated; may be truncated).
pub fn readlink(path: &CStr, buf: &mut [u8]) -> Res<usize> {
    sc!(nr::READLINK, path.as_ptr(), buf.as_mut_ptr(), buf.len())
}

/// Waits for a signal (returns after a handled one; a terminating one ends the process).
pub fn pause() {
    // SAFETY: no arguments. Not `call`: EINTR is the normal return.
    let _ = unsafe { raw(nr::PAUSE, [0; 6]) };
}

/// `getpid(2)`.
pub fn getpid() -> i32 {
    sc!(nr::GETPID).unwrap_or(0) as i32
}

/// Asks the kernel to send `sig` when the parent dies.
pub fn set_parent_death_signal(sig: i32) -> Res<()> {
    const PR_SET_PDEATHSIG: usize = 1;
    sc!(nr::PRCTL, PR_SET_PDEATHSIG, sig).map(drop)
}

/// Monotonic time in milliseconds.
pub fn now_ms() -> u64 {
    const CLOCK_MONOTONIC: usize = 1;
    let mut ts = [0i64; 2];
    let _ = sc!(nr::CLOCK_GETTIME, CLOCK_MONOTONIC, ts.as_mut_ptr());
    ts[0] as u64 * 1000 + ts[1] as u64 / 1_000_000
}

/// Ends the process.
pub fn exit(code: i32) -> ! {
    let _ = sc!(nr::EXIT_GROUP, code);
    loop {
        let _ = sc!(nr::EXIT, code);
    }
}

/// Anonymous private memory of `len` bytes (zero-filled, touched only when written).
pub fn mmap_anon(len: usize) -> Res<*mut u8> {
    const PROT_RW: usize = 3;
    const MAP_PRIVATE_ANON: usize = 0x02 | 0x20;
    sc!(nr::MMAP, 0, len, PROT_RW, MAP_PRIVATE_ANON, -1isize, 0).map(|p| p as *mut u8)
}

/// Unmaps what [`mmap_anon`] returned.
///
/// # Safety
/// Nothing may use the memory afterwards.
pub unsafe fn munmap(p: *mut u8, len: usize) {
    let _ = sc!(nr::MUNMAP, p, len);
}

/// Connects a stream socket to a Unix socket path.
pub fn connect_unix(path: &CStr) -> Res<Fd> {
    const AF_UNIX: usize = 1;
    const SOCK_STREAM_CLOEXEC: usize = 1 | 0o2000000;
    let bytes = path.to_bytes();
    let mut addr = [0u8; 110]; // sa_family_t + sun_path[108]
    if bytes.len() >= 108 {
        return Err(Errno(36)); // ENAMETOOLONG, as std says for a path that does not fit
    }
    addr[0] = AF_UNIX as u8;
    addr[2..2 + bytes.len()].copy_from_slice(bytes);
    let fd = sc!(nr::SOCKET, AF_UNIX, SOCK_STREAM_CLOEXEC, 0)? as Fd;
    match sc!(nr::CONNECT, fd, addr.as_ptr(), 2 + bytes.len() + 1) {
        Ok(_) => Ok(fd),
        Err(e) => {
            close(fd);
            Err(e)
        }
    }
}

/// Reads what a stream socket has, and the first descriptor passed with it (`SCM_RIGHTS`,
/// received close-on-exec; any further ones are closed).
pub fn recv_with_fd(fd: Fd, buf: &mut [u8]) -> Res<(usize, Option<Fd>)> {
    const MSG_CMSG_CLOEXEC: usize = 0x4000_0000;
    const SOL_SOCKET: i32 = 1;
    const SCM_RIGHTS: i32 = 1;
    let mut iov = [buf.as_mut_ptr() as usize, buf.len()];
    // Room for a cmsghdr (len: u64, level: i32, type: i32) and a few descriptors.
    let mut control = [0u64; 6];
    // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
    let mut msg = [
        0usize,
        0,
        iov.as_mut_ptr() as usize,
        1,
        control.as_mut_ptr() as usize,
        core::mem::size_of_val(&control),
        0,
    ];
    let n = sc!(nr::RECVMSG, fd, msg.as_mut_ptr(), MSG_CMSG_CLOEXEC)?;
    let mut passed = None;
    let len = msg[5].min(core::mem::size_of_val(&control));
    // One SCM_RIGHTS message at most (a read stops at the next one); its fds follow the header.
    if len >= 16 {
        let c = control[0] as usize; // cmsg_len
        let (level, kind) = (control[1] as u32 as i32, (control[1] >> 32) as u32 as i32);
        if level == SOL_SOCKET && kind == SCM_RIGHTS && c > 16 {
            let words = (c.min(len) - 16) / 4;
            for i in 0..words {
                let w = control[2 + i / 2];
                let f = if i % 2 == 0 {
                    w as u32
                } else {
                    (w >> 32) as u32
                } as Fd;
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
    sc!(nr::INOTIFY_INIT1, O_NONBLOCK | O_CLOEXEC).map(|f| f as Fd)
}

/// Watches `path` for `mask`.
pub fn inotify_watch(fd: Fd, path: &CStr, mask: u32) -> Res<()> {
    sc!(nr::INOTIFY_ADD_WATCH, fd, path.as_ptr(), mask).map(drop)
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
mod tests {
    use super::*;

    #[test]
    fn errors_come_back_as_errno() {
        assert_eq!(
            open(c"/nonexistent/x", O_RDONLY, 0).err(),
            Some(Errno(ENOENT))
        );
        assert_eq!(
            Errno(2).to_string(),
            "No such file or directory (os error 2)"
        );
    }

    #[test]
    fn stat_sees_size_and_inode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"12345").unwrap();
        let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
        let s = stat(&c).unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!((s.size, s.ino), (5, m.ino()));
    }

    #[test]
    fn a_passed_descriptor_arrives_with_its_line_close_on_exec() {
        use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
        use std::io::Write;
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::MetadataExt;
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        let file = tempfile::tempfile().unwrap();
        let fds = [file.as_raw_fd()];
        let cmsg = [ControlMessage::ScmRights(&fds)];
        let iov = [std::io::IoSlice::new(b"view\n")];
        sendmsg::<()>(a.as_raw_fd(), &iov, &cmsg, MsgFlags::empty(), None).unwrap();
        (&a).write_all(b"run 3\n").unwrap();
        let mut buf = [0u8; 64];
        let (n, fd) = recv_with_fd(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!(
            &buf[..n],
            b"view\n",
            "a read stops after the message with descriptors"
        );
        let fd = fd.expect("the descriptor");
        assert_eq!(fstat(fd).unwrap().ino, file.metadata().unwrap().ino());
        const F_GETFD: usize = 1;
        assert_eq!(sc!(nr::FCNTL, fd, F_GETFD).unwrap() & 1, 1, "FD_CLOEXEC");
        close(fd);
        let (n, fd) = recv_with_fd(b.as_raw_fd(), &mut buf).unwrap();
        assert_eq!((&buf[..n], fd), (&b"run 3\n"[..], None));
    }

    #[test]
    fn wait_status_is_decoded_exactly() {
        assert_eq!(decode(0x0300), Some(Ended::Code(3)));
        assert_eq!(decode(0), Some(Ended::Code(0)));
        assert_eq!(decode(9), Some(Ended::Signal(9, false)));
        assert_eq!(decode(0x86), Some(Ended::Signal(6, true)));
        assert_eq!(decode(0x137f), None, "stopped by SIGSTOP");
        assert_eq!(decode(0xffff), None, "continued");
    }
}
