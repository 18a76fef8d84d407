//! `dmuc-shim --spec FILE --run N`: see the `shim` module. No std, no libc, no allocator:
//! `dmuc_rt::main!` brings the entry point and the memory functions the compiler calls, and
//! this file the panic handler.

#![no_std]
#![no_main]

use core::ffi::c_char;

use dmuc_rt::sys;

dmuc_rt::main!(start);

fn start(args: dmuc_rt::start::Args, _envp: *const *const c_char) -> i32 {
    dmuc_shim::shim::main(args.iter().skip(1))
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    dmuc_shim::shim::err_out(format_args!("dmuc shim: {info}\r\n"));
    sys::exit(127)
}
