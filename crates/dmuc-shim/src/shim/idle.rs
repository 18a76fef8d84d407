//! Between runs: waiting for `run N`, a new terminal, or the end.

use super::*;

/// Between runs: waits for `run N` from the daemon. `None`: time to exit (we were told to
/// stop by a signal or `quit`, or neither a window nor a daemon is left). While the daemon is
/// away, waits for it to come back and tells it how the last run ended; while the terminal is
/// gone, waits for the daemon to hand over a new one.
pub(super) fn idle(io: &mut Io<'_>, last: &(Line, Line)) -> Option<u64> {
    if *io.quit {
        return None;
    }
    if io.link.fd.is_none() && io.link.watch.is_none() {
        io.link.lost();
    }
    let tell = |io: &mut Io<'_>| {
        io.link.say(last.0.bytes());
        io.link.say(last.1.bytes());
        if !io.tty.live {
            io.link.tell(Up::ViewLost);
        }
    };
    loop {
        if io.link.fd.is_none() && !io.tty.live {
            return None; // no window and no daemon: nothing would ever start or show a run
        }
        if io.link.fd.is_none() && io.link.retry_now && io.link.retry() {
            tell(io);
        }
        let lfd = io.link.poll_fd()?; // no link and no way to watch for one
        let mut fds = [
            PollFd::new(io.sfd, POLLIN),
            PollFd::new(lfd, POLLIN),
            PollFd::new(io.tty.poll_fd(), 0),
        ];
        match sys::poll(&mut fds, -1) {
            Ok(_) | Err(Errno(sys::EINTR)) => {}
            Err(_) => return None,
        }
        let [sig_ready, link_ready, hung_up] = fds.map(|f| f.revents != 0);
        if hung_up {
            io.tty.lost(io.link);
        }
        if sig_ready {
            while let Some((signo, code)) = sys::read_signal(io.sfd) {
                if signo == SIGHUP && code == sys::SI_KERNEL {
                    io.tty.lost(io.link); // the terminal's hangup
                } else if signo == SIGINT && io.tty.detached {
                    // Ctrl-C in its window with no program running: nothing to pass it to.
                } else if signo != SIGCHLD {
                    return None; // TERM/HUP/INT with no program running: the pane is closing
                }
                // Stray children (none of ours) are reaped so they do not linger as zombies.
                while let Ok(Some(_)) = sys::wait_nohang(-1) {}
            }
        }
        if link_ready {
            if io.link.fd.is_none() {
                if io.link.retry() {
                    tell(io);
                }
                continue;
            }
            // `None`: the daemon went away; the loop tries once, then waits for the next one.
            if let Some(got) = io.link.read_in() {
                let run = io.take(got);
                if *io.quit {
                    return None;
                }
                if run.is_some() {
                    return run;
                }
            }
        }
    }
}
