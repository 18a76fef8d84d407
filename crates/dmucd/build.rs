//! Links the binary as a non-PIE executable: PIC objects link fine into one, and the kernel
//! then maps it at a fixed address, so its pointer-holding data needs no relocation at
//! start-up and stays shared, clean, instead of ~1 MB of private pages per process
//! (docs/performance.md). Only the binaries: libraries and tests are unaffected.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
