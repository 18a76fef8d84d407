//! Links the shim as a non-PIE executable: PIC objects link fine into one, and then the
//! kernel maps it at a fixed address, so its pointer-holding data needs no relocation at
//! start-up and stays shared between the shims instead of dirtying ~1 MB per process.

fn main() {
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
