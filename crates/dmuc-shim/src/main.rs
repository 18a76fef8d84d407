//! `dmuc-shim --spec FILE --run N`: see the `shim` module. No std, no libc, no allocator:
//! this file and `rt` are the whole runtime (entry point, panic handler, the memory
//! functions the compiler calls).

#![no_std]
#![no_main]

use core::ffi::c_char;

use dmuc_shim::sys;

mod rt;

fn start(args: rt::Args, _envp: *const *const c_char) -> i32 {
    dmuc_shim::shim::main(args.iter().skip(1))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    dmuc_shim::shim::err_out(format_args!("dmuc shim: {info}\r\n"));
    sys::exit(127)
}
