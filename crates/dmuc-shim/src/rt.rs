//! The runtime of dmuc's libc-free binaries (dmuc-shim, dmucctl's front): the entry point
//! and the memory functions the compiler calls. Included by each binary's main.rs with
//! `#[path]`, not part of the dmuc-shim library: these symbols would replace libc's in any
//! std program that links the library (dmucd does).
//!
//! The including crate defines `fn start(args: Args, envp: *const *const c_char) -> i32`
//! and its panic handler, and has the `sys` module in scope.

use core::arch::{asm, global_asm};
use core::ffi::{CStr, c_char};

// The kernel starts us with argc, the argv pointers, a null, then the environment pointers
// and a null, on the stack.
global_asm!(
    ".globl _start",
    "_start:",
    "xor ebp, ebp",
    "mov rdi, rsp",
    "and rsp, -16",
    "call {entry}",
    "ud2",
    entry = sym entry,
);

/// # Safety
/// Called once, by `_start`, with the initial stack pointer.
unsafe extern "C" fn entry(sp: *const usize) -> ! {
    // SAFETY: the System V ABI initial stack: argc, then argc pointers to NUL-terminated
    // strings, then a null pointer, then the environment's pointers and a null.
    let (argv, envp) = unsafe {
        let argc = *sp;
        let argv = core::slice::from_raw_parts(sp.add(1).cast::<*const c_char>(), argc);
        (argv, sp.add(2 + argc).cast::<*const c_char>())
    };
    crate::sys::exit(crate::start(Args(argv), envp).clamp(0, 255))
}

/// The command line as the kernel gave it (argv[0] included).
#[derive(Clone, Copy)]
pub struct Args(&'static [*const c_char]);

impl Args {
    /// The strings.
    pub fn iter(self) -> impl Iterator<Item = &'static CStr> {
        // SAFETY: each pointer is one of the kernel's argv strings, alive for the process.
        self.0.iter().map(|p| unsafe { CStr::from_ptr(*p) })
    }

    /// The argv pointer array itself, null-terminated (as execve wants it).
    #[allow(dead_code)] // the front passes its argv on; the shim execs what its spec says
    pub fn as_ptr(self) -> *const *const c_char {
        self.0.as_ptr()
    }
}

/// core is precompiled with unwind tables that name this symbol; nothing here unwinds
/// (panics end the process, see the workspace's `panic = "abort"`).
#[unsafe(no_mangle)]
extern "C" fn rust_eh_personality() {}

// The memory functions the compiler emits calls to, in the simplest correct form: the
// shim moves little data (kernel copies do the bulk), so `rep movsb` / `rep stosb` suffice.

/// # Safety
/// As C's `memcpy`.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller passes valid, non-overlapping ranges of n bytes.
    unsafe {
        asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// As C's `memmove`.
#[unsafe(no_mangle)]
unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: a forward copy is correct when dst does not start inside src.
        return unsafe { memcpy(dst, src, n) };
    }
    // SAFETY: overlapping with dst after src: copy backwards (direction flag set, then cleared).
    unsafe {
        asm!("std", "rep movsb", "cld",
             inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
             options(nostack));
    }
    dst
}

/// # Safety
/// As C's `memset`.
#[unsafe(no_mangle)]
unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller passes a valid range of n bytes.
    unsafe {
        asm!("rep stosb", inout("rcx") n => _, inout("rdi") dst => _, in("al") c as u8,
             options(nostack, preserves_flags));
    }
    dst
}

/// # Safety
/// As C's `memcmp`.
#[unsafe(no_mangle)]
unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: both ranges hold n bytes; volatile keeps this loop from becoming a call
        // to memcmp itself.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// As C's `bcmp`.
#[unsafe(no_mangle)]
unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: forwarded.
    unsafe { memcmp(a, b, n) }
}

/// # Safety
/// As C's `strlen`.
#[unsafe(no_mangle)]
unsafe extern "C" fn strlen(s: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: the caller passes a NUL-terminated string; volatile as in memcmp.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}
