//! A replacement for libutempter, loaded into dmuc's private tmux server with `LD_PRELOAD`.
//!
//! tmux built with libutempter (Debian's is) registers every new pane in utmp as a login
//! session and removes it when the pane closes. Each of those calls forks and execs libutempter's
//! setgid helper and *waits for it*, in the server's only thread: on the machines measured
//! that is a third of the time tmux takes to open a window (docs/performance.md). dmuc's panes
//! run daemons, not logins: `who` should not list a kube-apiserver. These functions take the
//! helper's place and do nothing; the server's own symbols bind to them first.
//!
//! No std and no libc: the library is loaded into a C program and must not bring a runtime.

#![cfg_attr(not(test), no_std)]

use core::ffi::{c_char, c_int};

/// `utempter_add_record(master_fd, hostname)`: records nothing; reports success.
#[unsafe(no_mangle)]
pub extern "C" fn utempter_add_record(_master_fd: c_int, _hostname: *const c_char) -> c_int {
    1
}

/// `utempter_remove_record(master_fd)`: nothing was recorded; reports success.
#[unsafe(no_mangle)]
pub extern "C" fn utempter_remove_record(_master_fd: c_int) -> c_int {
    1
}

/// `utempter_remove_added_record()`: nothing was recorded; reports success.
#[unsafe(no_mangle)]
pub extern "C" fn utempter_remove_added_record() -> c_int {
    1
}

/// `utempter_set_helper(path)`: no helper is ever run.
#[unsafe(no_mangle)]
pub extern "C" fn utempter_set_helper(_pathname: *const c_char) {}

#[cfg(not(test))]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    // Nothing here can panic; were it to, stopping the tmux server is not ours to do.
    loop {
        core::hint::spin_loop();
    }
}
