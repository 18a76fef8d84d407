//! Two things for the binary:
//!
//! - It is linked as a non-PIE executable: PIC objects link fine into one, and the kernel then
//!   maps it at a fixed address, so its pointer-holding data needs no relocation at start-up
//!   and stays shared, clean, instead of ~1 MB of private pages per process
//!   (docs/performance.md). Only the binaries: libraries and tests are unaffected.
//! - It carries the utmp stand-in (crates/dmuc-noutmp), a few KB of shared library that dmucd
//!   preloads into its tmux server. Compiled here from that crate's one source file so dmucd
//!   has nothing extra to install or find; the crate itself keeps the file under fmt, clippy
//!   and `cargo build`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");

    let src = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"))
        .join("../dmuc-noutmp/src/lib.rs");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets it"))
        .join("libdmuc_noutmp.so");
    // The compiler as cargo runs it for the target: its wrappers (sccache, ...), the flags
    // for the target (RUSTFLAGS, [build] rustflags), and the linker configured for it (a
    // cross linker such as aarch64-linux-gnu-gcc).
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let wrappers: Vec<_> = ["RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER"]
        .iter()
        .filter_map(|v| std::env::var_os(v).filter(|w| !w.is_empty()))
        .collect();
    let mut cmd = match wrappers.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(&rustc);
            c
        }
        None => Command::new(&rustc),
    };
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        cmd.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        let mut arg = std::ffi::OsString::from("linker=");
        arg.push(linker);
        cmd.arg("-C").arg(arg);
    }
    let target = std::env::var("TARGET").expect("cargo sets it");
    let status = cmd
        .args(["--crate-name", "dmuc_noutmp", "--crate-type", "cdylib"])
        .args(["--edition", "2024", "--target", &target])
        .args([
            "-C",
            "opt-level=2",
            "-C",
            "panic=abort",
            "-C",
            "strip=debuginfo",
        ])
        .arg("-o")
        .arg(&out)
        .arg(&src)
        .status()
        .expect("run rustc for dmuc-noutmp");
    assert!(status.success(), "building {} failed", src.display());
}
