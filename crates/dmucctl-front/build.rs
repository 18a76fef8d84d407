//! Links the front as the shim is linked (crates/dmuc-shim/build.rs): static, non-PIE, no
//! C runtime, so `dmucctl status` starts without a dynamic loader or glibc's start-up.

fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
        println!("cargo:rustc-link-arg-bin=dmucctl={arg}");
    }
}
