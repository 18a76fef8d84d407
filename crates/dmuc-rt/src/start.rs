//! Program start without libc: the kernel jumps to `_start` with the stack holding argc, the
//! argv pointers, a null, the environment pointers and a null. `_start` (the only assembly
//! in dmuc: two instructions' worth per architecture, what no crate can provide without
//! taking over rustix's configuration for every program in the build) aligns the stack and
//! calls [`entry`], which calls the binary's `start` and exits with its status.
//!
//! A binary says `dmuc_rt::main!(start);` with `fn start(args: Args, envp: *const *const
//! c_char) -> i32`, and brings its own `#[panic_handler]`.

use core::ffi::{CStr, c_char};

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
    pub fn as_ptr(self) -> *const *const c_char {
        self.0.as_ptr()
    }
}

/// Called by `_start` with the initial stack pointer; runs `start` and exits with its status.
///
/// # Safety
/// `sp` must be the stack pointer the kernel started the process with.
#[doc(hidden)]
pub unsafe fn entry(sp: *const usize, start: fn(Args, *const *const c_char) -> i32) -> ! {
    // SAFETY: the initial stack of every Linux architecture: argc, then argc pointers to
    // NUL-terminated strings, then a null pointer, then the environment's pointers and a null.
    let (argv, envp) = unsafe {
        let argc = *sp;
        let argv = core::slice::from_raw_parts(sp.add(1).cast::<*const c_char>(), argc);
        (argv, sp.add(2 + argc).cast::<*const c_char>())
    };
    crate::sys::exit(start(Args(argv), envp).clamp(0, 255))
}

// The memory functions the compiler emits calls to, in the simplest correct form: these
// programs move little data (the kernel copies the bulk between descriptors). Volatile
// accesses keep the loops from being turned back into calls to the functions themselves.

/// # Safety
/// As C's `memcpy`.
#[doc(hidden)]
pub unsafe fn copy_forward(dst: *mut u8, src: *const u8, n: usize) {
    for i in 0..n {
        // SAFETY: the caller passes valid ranges of n bytes.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
}

/// # Safety
/// As C's `memmove`.
#[doc(hidden)]
pub unsafe fn copy_any(dst: *mut u8, src: *const u8, n: usize) {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: a forward copy is correct when dst does not start inside src.
        return unsafe { copy_forward(dst, src, n) };
    }
    for i in (0..n).rev() {
        // SAFETY: as above; backwards, since dst overlaps the end of src.
        unsafe { dst.add(i).write_volatile(src.add(i).read_volatile()) };
    }
}

/// # Safety
/// As C's `memset`.
#[doc(hidden)]
pub unsafe fn fill(dst: *mut u8, c: u8, n: usize) {
    for i in 0..n {
        // SAFETY: the caller passes a valid range of n bytes.
        unsafe { dst.add(i).write_volatile(c) };
    }
}

/// # Safety
/// As C's `memcmp`.
#[doc(hidden)]
pub unsafe fn compare(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: both ranges hold n bytes.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// As C's `strlen`.
#[doc(hidden)]
pub unsafe fn length(s: *const c_char) -> usize {
    let mut n = 0;
    // SAFETY: the caller passes a NUL-terminated string.
    while unsafe { s.add(n).read_volatile() } != 0 {
        n += 1;
    }
    n
}

/// Makes the including binary a program: its `_start`, and the memory functions the
/// compiler calls (see the module comment).
#[macro_export]
macro_rules! main {
    ($start:path) => {
        // The kernel's stack pointer goes to `entry`, aligned to 16 bytes as the ABI wants at
        // a call; nothing returns here.
        #[cfg(target_arch = "x86_64")]
        core::arch::global_asm!(
            ".globl _start",
            "_start:",
            "xor ebp, ebp",
            "mov rdi, rsp",
            "and rsp, -16",
            "call {entry}",
            "ud2",
            entry = sym __dmuc_entry,
        );
        #[cfg(target_arch = "aarch64")]
        core::arch::global_asm!(
            ".globl _start",
            "_start:",
            "mov x29, #0",
            "mov x30, #0",
            "mov x0, sp",
            "and sp, x0, #-16",
            "bl {entry}",
            "brk #0",
            entry = sym __dmuc_entry,
        );
        #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
        compile_error!("dmuc_rt::main! has an entry point for x86_64 and aarch64");

        unsafe extern "C" fn __dmuc_entry(sp: *const usize) -> ! {
            // SAFETY: called once, by `_start`, with the kernel's stack pointer.
            unsafe { $crate::start::entry(sp, $start) }
        }

        /// core is precompiled with unwind tables that name this symbol; nothing here
        /// unwinds (panics end the process: the workspace's `panic = "abort"`).
        #[unsafe(no_mangle)]
        extern "C" fn rust_eh_personality() {}

        /// # Safety
        /// As C's `memcpy`.
        #[unsafe(no_mangle)]
        unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { $crate::start::copy_forward(dst, src, n) };
            dst
        }

        /// # Safety
        /// As C's `memmove`.
        #[unsafe(no_mangle)]
        unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { $crate::start::copy_any(dst, src, n) };
            dst
        }

        /// # Safety
        /// As C's `memset`.
        #[unsafe(no_mangle)]
        unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
            // SAFETY: forwarded.
            unsafe { $crate::start::fill(dst, c as u8, n) };
            dst
        }

        /// # Safety
        /// As C's `memcmp`.
        #[unsafe(no_mangle)]
        unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
            // SAFETY: forwarded.
            unsafe { $crate::start::compare(a, b, n) }
        }

        /// # Safety
        /// As C's `bcmp`.
        #[unsafe(no_mangle)]
        unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
            // SAFETY: forwarded.
            unsafe { $crate::start::compare(a, b, n) }
        }

        /// # Safety
        /// As C's `strlen`.
        #[unsafe(no_mangle)]
        unsafe extern "C" fn strlen(s: *const core::ffi::c_char) -> usize {
            // SAFETY: forwarded.
            unsafe { $crate::start::length(s) }
        }

        /// compiler-builtins' aarch64 atomics ask for the CPU's features; without libc there
        /// is no auxiliary vector reader: say none (they fall back to plain exclusives).
        #[cfg(target_arch = "aarch64")]
        #[unsafe(no_mangle)]
        extern "C" fn getauxval(_type: core::ffi::c_ulong) -> core::ffi::c_ulong {
            0
        }
    };
}
