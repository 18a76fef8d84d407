//! The link to the daemon: lines out, lines and a terminal in, and reconnecting (on inotify)
//! to the next dmucd when this one goes away.

use super::*;

/// The connection to the daemon; the shim keeps working without it.
pub(super) struct Link {
    pub(super) fd: Option<Fd>,
    pub(super) inbuf: Buf<512>,
    /// The shim socket's path, to reconnect to, and its directory.
    pub(super) path: CBuf,
    pub(super) dir: CBuf,
    /// Watches the socket's directory while the daemon is away.
    pub(super) watch: Option<Fd>,
    /// The link was lost since the last attempt: try once before waiting for an event (a
    /// daemon may have appeared before the watch existed).
    pub(super) retry_now: bool,
    /// The inode of the socket file we last connected through. A dead daemon's socket file
    /// stays until a new daemon renames its own over it: connecting to it again could reach
    /// the dying listener (the connection succeeds, then is reset much later), so only a
    /// different inode is worth a try.
    pub(super) ino: Option<u64>,
}

impl Link {
    pub(super) fn connect(path: &CStr) -> Link {
        let p = path.to_bytes();
        let dir = match p.iter().rposition(|b| *b == b'/') {
            Some(0) => &b"/"[..],
            Some(i) => &p[..i],
            None => b".",
        };
        let mut link = Link {
            fd: sys::connect_unix(path).ok(),
            inbuf: Buf::new(),
            path: cbuf(p),
            dir: cbuf(dir),
            watch: None,
            retry_now: false,
            ino: sys::stat(path).ok().map(|s| s.ino),
        };
        if link.fd.is_none() {
            link.lost();
        }
        link
    }

    /// The link dropped: watch for the socket to be bound again.
    pub(super) fn lost(&mut self) {
        if let Some(fd) = self.fd.take() {
            sys::close(fd);
            say_pane!(
                "\r\n[dmuc] lost the link to dmucd; the program keeps running, waiting for a new dmucd\r\n"
            );
        }
        self.inbuf.clear();
        // Also after a connection that was reset at once (the old daemon's listener was still
        // closing when we connected): the watch is armed first, then we try again.
        self.retry_now = true;
        if self.watch.is_none()
            && let Ok(w) = sys::inotify()
        {
            const IN_MOVED_TO: u32 = 0x80;
            const IN_CREATE: u32 = 0x100;
            if sys::inotify_watch(w, as_cstr(&self.dir), IN_CREATE | IN_MOVED_TO).is_ok() {
                self.watch = Some(w);
            } else {
                sys::close(w);
            }
        }
    }

    /// Tries to connect again (after an inotify event, or at once after a loss: the new
    /// daemon may already listen). True when connected.
    pub(super) fn retry(&mut self) -> bool {
        self.retry_now = false;
        if let Some(w) = self.watch {
            sys::drain(w); // which file it was does not matter
        }
        let path = as_cstr(&self.path);
        let ino = sys::stat(path).ok().map(|s| s.ino);
        if ino.is_none() || ino == self.ino {
            return false; // nothing there, or still the socket of the daemon we lost
        }
        match sys::connect_unix(path) {
            Ok(fd) => {
                say_pane!("[dmuc] reconnected to dmucd\r\n");
                self.fd = Some(fd);
                if let Some(w) = self.watch.take() {
                    sys::close(w);
                }
                self.ino = ino;
                true
            }
            Err(e) => {
                say_pane!("[dmuc] dmucd not there yet ({e}); waiting\r\n");
                false
            }
        }
    }

    /// The fd to poll: the link while connected, else the reconnect watcher.
    pub(super) fn poll_fd(&self) -> Option<Fd> {
        self.fd.or(self.watch)
    }

    /// Writes a formatted line (see `up`).
    pub(super) fn say(&mut self, l: &[u8]) {
        if let Some(fd) = self.fd
            && sys::write_all(fd, l).is_err()
        {
            self.lost();
        }
    }

    pub(super) fn tell(&mut self, u: Up<'_>) {
        self.say(up(u).bytes());
    }

    /// Reads what is available. `None` when the daemon went away; else what it said.
    pub(super) fn read_in(&mut self) -> Option<In> {
        let fd = self.fd?;
        let mut buf = [0u8; 256];
        let mut got = In::default();
        match sys::recv_with_fd(fd, &mut buf) {
            Ok((0, _)) | Err(_) => {
                self.lost();
                return None;
            }
            Ok((n, view)) => {
                got.view = view;
                if self.inbuf.bytes().len() + n > 512 {
                    self.inbuf.clear(); // an overlong line is not ours to read
                }
                self.inbuf.push(&buf[..n]);
            }
        }
        // Complete lines are read; what follows the last newline waits for more.
        let bytes = self.inbuf.bytes();
        let end = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        for l in bytes[..end].split(|b| *b == b'\n') {
            match Down::parse(l) {
                Some(Down::Quit) => got.quit = true,
                Some(Down::Run(n)) => got.run = Some(n),
                // dmucd's word for the window (why it gave up on the component).
                Some(Down::Say(text)) => say_pane!("[dmuc] {}\r\n", Lossy(text)),
                // The terminal came with the read (`view`'s first byte).
                Some(Down::View) | None => {}
            }
        }
        let mut rest = Buf::<512>::new();
        rest.push(&bytes[end..]);
        self.inbuf = rest;
        Some(got)
    }
}

/// What the daemon said in one read: `run N`, `quit` (exit once no program runs), and a
/// terminal passed with `view` (the window that shows this component now).
#[derive(Default)]
pub(super) struct In {
    pub(super) run: Option<u64>,
    pub(super) quit: bool,
    pub(super) view: Option<Fd>,
}
