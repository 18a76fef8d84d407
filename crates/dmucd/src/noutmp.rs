//! The utmp stand-in preloaded into dmuc's tmux server (crates/dmuc-noutmp says why: tmux
//! otherwise forks and waits for libutempter's setgid helper at every window it opens and
//! closes, and registers each component as a login).
//!
//! The library is built into dmucd (build.rs) and handed to the tmux client that starts the
//! server as an anonymous memory file: nothing to install, and no file system that might be
//! mounted `noexec`. The dynamic loader maps it when the client starts; the server, forked from
//! the client, keeps that mapping. If anything here fails, tmux runs as it would by itself.

use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

/// The library's bytes.
static LIBRARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/libdmuc_noutmp.so"));

/// The library in a memory file (close-on-exec: only the child that asks for it keeps it).
#[derive(Debug)]
pub struct Preload {
    fd: OwnedFd,
}

impl Preload {
    /// Writes the library into a new memory file.
    pub fn new() -> std::io::Result<Preload> {
        let fd =
            nix::sys::memfd::memfd_create(c"dmuc-noutmp", nix::sys::memfd::MFdFlags::MFD_CLOEXEC)?;
        let mut f = std::fs::File::from(fd);
        f.write_all(LIBRARY)?;
        Ok(Preload { fd: f.into() })
    }

    /// The memory file's descriptor, for `dmuc_tmux::Client::connect`.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Its path as the child sees it (the child keeps the same descriptor number).
    pub fn path(&self) -> String {
        format!("/proc/self/fd/{}", self.fd.as_raw_fd())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_is_a_shared_object_exporting_the_utempter_calls() {
        assert_eq!(&LIBRARY[..4], b"\x7fELF");
        for sym in [
            "utempter_add_record",
            "utempter_remove_record",
            "utempter_remove_added_record",
        ] {
            assert!(
                LIBRARY.windows(sym.len()).any(|w| w == sym.as_bytes()),
                "{sym} is not in the library"
            );
        }
        let p = Preload::new().unwrap();
        let on_disk = std::fs::read(p.path()).unwrap();
        assert_eq!(on_disk, LIBRARY);
    }
}
