//! The terminal the output is shown on, which may hang up and be replaced: tmux is the view,
//! not the parent.

use super::*;

/// The terminal the program's output is copied to (fds 1 and 2): the pane's at first, then
/// the one dmucd hands over when the pane went away (the tmux server died, or the window was
/// closed). The program never writes to it (its output is its own pipe, which the shim
/// reads), so losing the terminal costs the program nothing: tmux is the view, not the parent.
pub(super) struct Tty {
    pub(super) live: bool,
    /// Started by dmucd without a window (`--detached`): no tmux pane is ours to close, and
    /// the first terminal handed over gets what the log took meanwhile (`replay`).
    pub(super) detached: bool,
    /// Until the first terminal comes: the log's path and its size when the shim started.
    pub(super) replay: Option<(CBuf, u64)>,
}

/// At most this much of the log is shown on a detached shim's first terminal.
const REPLAY_MAX: usize = 4096;

impl Tty {
    /// The fd to watch for a hangup (-1 once it has hung up: it would report it forever).
    pub(super) fn poll_fd(&self) -> Fd {
        if self.live { 1 } else { -1 }
    }

    /// The terminal hung up: output goes on to the log only, and the daemon is told, so it
    /// can open a window and hand its terminal over.
    #[cold]
    #[inline(never)]
    pub(super) fn lost(&mut self, link: &mut Link) {
        if !self.live {
            return;
        }
        self.live = false;
        if let Ok(null) = sys::open(c"/dev/null", sys::O_RDWR | sys::O_CLOEXEC, 0) {
            for fd in 0..3 {
                let _ = sys::dup2(null, fd);
            }
            sys::close(null);
        }
        link.tell(Up::ViewLost);
    }

    /// The daemon handed over a new terminal.
    #[cold]
    #[inline(never)]
    pub(super) fn got(&mut self, fd: Fd, link: &mut Link) {
        let _ = sys::dup2(fd, 1).and_then(|_| sys::dup2(fd, 2));
        sys::close(fd);
        sys::set_nonblocking(1);
        if let Some((path, from)) = self.replay.take() {
            replay(&path, from);
        }
        self.live = true;
        link.tell(Up::ViewOk);
    }
}

/// Shows on the new terminal what the log took since the shim started (its last
/// `REPLAY_MAX` bytes, from a line start): the same thread wrote it, so nothing is missing
/// between it and the live output that follows, and nothing is shown twice.
#[cold]
#[inline(never)]
fn replay(path: &CBuf, from: u64) {
    let Ok(fd) = sys::open(as_cstr(path), sys::O_RDONLY | sys::O_CLOEXEC, 0) else {
        return;
    };
    let size = sys::fstat(fd).map(|s| s.size).unwrap_or(0);
    // Rotated since: everything in the new file is new.
    let from = if size < from { 0 } else { from };
    let start = from.max(size.saturating_sub(REPLAY_MAX as u64));
    let mut buf = [0u8; REPLAY_MAX];
    let want = (size - start) as usize;
    let mut got = 0;
    while got < want {
        match sys::pread(fd, &mut buf[got..want], start + got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    sys::close(fd);
    let mut text = &buf[..got];
    if start > from {
        // Cut mid-line: start at the next whole line.
        if let Some(i) = text.iter().position(|b| *b == b'\n') {
            text = &text[i + 1..];
        }
    }
    let _ = sys::write(1, text);
}
