//! The portable low-level runtime of dmuc's libc-free binaries, `dmuc-shim` (one runs per
//! component, so it must cost a few KB) and `dmucctl`'s front (`dmucctl status` without a
//! dynamic loader):
//! - [`sys`]: the system calls they make, on rustix's raw-syscall backend (any architecture
//!   rustix supports; x86_64 and aarch64 are built and tested);
//! - [`text`]: text without an allocator;
//! - [`start`]: the program entry point and the memory functions the compiler calls, which a
//!   binary instantiates with [`main!`]. A macro, not symbols of this crate: this library is
//!   also linked into std programs (tests, dmucd), whose libc must keep its own `memcpy` and
//!   `_start`.
//!
//! Unit tests build it with std.

#![cfg_attr(not(test), no_std)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod start;
pub mod sys;
pub mod text;
