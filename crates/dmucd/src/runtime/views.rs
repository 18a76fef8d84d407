//! tmux is the view, not the parent: dmucd starts each shim itself, without a terminal, and
//! the shim's first words ask for a window; one is opened (its pane runs `dmuc-shim --idle
//! --view PID`, which passes Ctrl-C on and ends with the shim) and its terminal is handed to
//! the shim over its link. A shim outlives its window (and the whole tmux server): when its
//! terminal hangs up, it gets a new window the same way. No component is restarted for it.

use std::io::Write;
use std::os::fd::OwnedFd;

use super::*;

/// Lines of the log shown at the top of a reopened window, so it does not start blank.
const VIEW_TAIL_LINES: usize = 20;

impl<B: Backend> Runtime<B> {
    /// The tmux server died under us (killed, crashed, or `kill-server`). The shims and their
    /// programs do not depend on it: start a new server and give every shim a window again.
    pub(super) async fn tmux_lost(&mut self) -> anyhow::Result<()> {
        tracing::error!("the tmux server exited unexpectedly; starting a new one");
        self.events.push(
            None,
            EventWhat::Daemon {
                message: "the tmux server died: started a new one; the components keep running \
                          and get their windows back"
                    .into(),
            },
        );
        self.backend.replace().await?;
        self.server += 1;
        self.overview.clear();
        self.shown = (vec![String::new(); self.slots.len()], String::new());
        self.dirty = true;
        for comp in 0..self.slots.len() {
            let slot = &mut self.slots[comp];
            slot.pane = None;
            slot.view = View::Shown;
            // Views being opened on the dead server are void (their replies are ignored).
            slot.opening = false;
            if slot.shim.is_some() {
                self.open_view(comp);
            }
        }
        Ok(())
    }

    /// A shim said its terminal hung up (`lost`) or that it took the one it was handed.
    pub(super) fn on_view(&mut self, comp: usize, run: u64, lost: bool) {
        let slot = &mut self.slots[comp];
        if !lost {
            if slot.view == View::Handed {
                slot.view = View::Shown;
            }
            return;
        }
        // About the terminal that a window being opened replaces, or from the shim of an
        // earlier run (the current one has its own window).
        if slot.view != View::Shown || run != self.sup.unit(comp).run || slot.shim.is_none() {
            return;
        }
        if slot.fresh {
            // A shim just launched has never had a terminal: this is its first window, not
            // a fault to report.
            tracing::debug!(component = %self.name(comp), "opening its window");
        } else {
            tracing::info!(component = %self.name(comp), "its window went away; opening a new one (it keeps running)");
        }
        self.open_view(comp);
    }

    /// Opens a window for a component whose shim has no terminal (reusing its pane if that
    /// still exists); `view_opened` hands the terminal over.
    pub(super) fn open_view(&mut self, comp: usize) {
        if self.slots[comp].opening {
            return; // one at a time: `view_opened` checks it went to the right shim
        }
        let name = self.name(comp).to_string();
        let slot = &self.slots[comp];
        let fut = self
            .backend
            .open_view(&name, slot.pane.as_ref(), slot.shim_pid);
        let slot = &mut self.slots[comp];
        slot.view = View::Opening;
        slot.opening = true;
        slot.view_for = slot.shim_pid;
        let server = self.server;
        self.when_answered(fut, move |result| Msg::ViewOpened {
            comp: name,
            server,
            result,
        });
    }

    /// A view window is open: show the log's last lines there and hand its terminal to the
    /// shim, which copies the live output to it from then on.
    pub(super) fn view_opened(&mut self, comp: usize, result: Result<(Pane, OwnedFd), String>) {
        self.slots[comp].opening = false;
        self.slots[comp].view = View::Shown;
        match result {
            Ok((pane, tty)) => {
                if self.slots[comp].pane.as_ref() != Some(&pane) {
                    self.shown.0[comp].clear();
                }
                self.slots[comp].pane = Some(pane);
                self.dirty = true;
                let slot = &self.slots[comp];
                if slot.shim.is_none() {
                    return; // its shim went meanwhile; the next one asks again
                }
                if slot.view_for != slot.shim_pid {
                    // Opened for a shim that has been replaced since: that window ends with
                    // the old shim, so the new one gets a window (the same pane) of its own.
                    self.open_view(comp);
                    return;
                }
                if slot.fresh {
                    // Its first window: the shim shows what it wrote so far (exactly: it is
                    // the one writing), and the live output follows.
                    if let Some((_, tx)) = &slot.shim
                        && tx.send(ToShim::View(tty)).is_ok()
                    {
                        let slot = &mut self.slots[comp];
                        slot.view = View::Handed;
                        slot.fresh = false;
                    }
                    return;
                }
                let u = self.sup.unit(comp);
                let mut text = format!(
                    "[dmuc] {} (run {}{}) kept running; its window was opened again. The last lines of its log:\r\n",
                    self.name(comp),
                    u.run,
                    u.pid.map_or(String::new(), |p| format!(", pid {p}")),
                );
                for l in crate::logs::tail(&self.log_path(comp), VIEW_TAIL_LINES).0 {
                    text.push_str(&l);
                    text.push_str("\r\n");
                }
                text.push_str("[dmuc] live output continues here:\r\n");
                // Non-blocking, on a fresh terminal: at worst part of it is dropped.
                let mut file = std::fs::File::from(tty);
                let _ = file.write_all(text.as_bytes());
                let tty = OwnedFd::from(file);
                if let Some((_, tx)) = &self.slots[comp].shim
                    && tx.send(ToShim::View(tty)).is_ok()
                {
                    self.slots[comp].view = View::Handed;
                }
            }
            Err(e) => {
                tracing::warn!(component = %self.name(comp), "cannot open a window for it: {e}; its output goes to its log only")
            }
        }
    }
}
