//! `dmucctl top`'s keys, as top's: on a terminal, stdin without line buffering or echo while
//! it runs (put back when dropped), and the wait between two refreshes ends at a key that
//! quits: `q`, or Ctrl-C and Ctrl-D, read as keys (the terminal's signals are off, so that
//! the terminal is always put back).

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};

/// Whether a byte read from the terminal asks to quit.
pub fn quits(b: u8) -> bool {
    matches!(b, b'q' | b'Q' | 0x03 | 0x04)
}

/// The terminal in key mode; its settings before.
pub struct Keys {
    saved: Termios,
}

impl Keys {
    /// Stdin in key mode, when it is a terminal.
    pub fn new() -> Option<Keys> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(stdin.as_fd()).ok()?;
        let mut keys = saved.clone();
        keys.local_flags
            .remove(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ISIG);
        keys.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        keys.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        termios::tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &keys).ok()?;
        Some(Keys { saved })
    }

    /// Waits `d` (the refresh the operator asked for), or less when a key that quits comes:
    /// then `true`. Other keys are read and ignored.
    pub fn wait(&self, d: Duration) -> bool {
        let deadline = Instant::now() + d;
        let stdin = std::io::stdin();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            let mut fds = [PollFd::new(stdin.as_fd(), PollFlags::POLLIN)];
            let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(0) | Err(Errno::EINTR) => {}
                Ok(_) => {
                    let mut b = [0u8; 16];
                    match nix::unistd::read(stdin.as_fd(), &mut b) {
                        // The terminal hung up.
                        Ok(0) => return true,
                        Ok(n) if b[..n].iter().any(|&c| quits(c)) => return true,
                        Ok(_) | Err(Errno::EINTR | Errno::EAGAIN) => {}
                        Err(_) => return true,
                    }
                }
                Err(_) => {
                    // No way to wait on the terminal: the refresh still comes.
                    std::thread::sleep(left); // the refresh interval the operator asked for
                    return false;
                }
            }
        }
    }
}

impl Drop for Keys {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn q_ctrl_c_and_ctrl_d_quit_other_keys_do_not() {
        for b in [b'q', b'Q', 3, 4] {
            assert!(super::quits(b), "{b}");
        }
        for b in [b' ', b'\n', b'x', 27] {
            assert!(!super::quits(b), "{b}");
        }
    }
}
