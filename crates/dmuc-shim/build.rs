//! Links the shim as a static, non-PIE executable with no C runtime: it brings its own entry
//! point and system calls (src/main.rs, src/sys.rs), so the kernel maps it at a fixed address
//! and runs it directly: no dynamic loader, no relocations, nothing private but what it
//! writes. (Only the binary: the library is also linked into dmucd and its tests.)

fn main() {
    for arg in ["-nostartfiles", "-nostdlib", "-static", "-no-pie"] {
        println!("cargo:rustc-link-arg-bin=dmuc-shim={arg}");
    }
}
