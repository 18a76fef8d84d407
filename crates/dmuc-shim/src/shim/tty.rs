//! The terminal the output is shown on, which may hang up and be replaced: tmux is the view,
//! not the parent.

use super::*;

/// The terminal the program's output is copied to (fds 1 and 2): the pane's at first, then
/// the one dmucd hands over when the pane went away (the tmux server died, or the window was
/// closed). The program never writes to it (its output is its own pipe, which the shim
/// reads), so losing the terminal costs the program nothing: tmux is the view, not the parent.
pub(super) struct Tty {
    pub(super) live: bool,
}

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
        self.live = true;
        link.tell(Up::ViewOk);
    }
}
