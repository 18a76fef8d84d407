//! Following a reload that renumbered the components: slots, timers, waiters and marks move
//! with them; what left ends.

use super::*;

impl<B: Backend> Runtime<B> {
    /// Follows a reconfiguration of the machine (`remap[old] = new`, `usize::MAX`: gone):
    /// slots, timers, waiters and marks move with their components; a gone component's
    /// probes end and its window closes.
    pub(super) fn remap(&mut self, remap: &[usize]) {
        let n = self.sup.graph().len();
        let mut slots: Vec<Slot> = (0..n).map(|_| Slot::default()).collect();
        let mut marks = vec![String::new(); n];
        for (old, slot) in std::mem::take(&mut self.slots).into_iter().enumerate() {
            match remap.get(old).copied().filter(|&i| i != usize::MAX) {
                Some(new) => {
                    slots[new] = slot;
                    marks[new] = std::mem::take(&mut self.shown.0[old]);
                }
                None => {
                    for h in &slot.probes {
                        h.abort();
                    }
                    if let Some((_, tx)) = &slot.shim {
                        let _ = tx.send(ToShim::Quit); // it has stopped: its shim goes too
                    }
                    if let Some(p) = &slot.pane {
                        self.backend.close_window(p);
                    }
                }
            }
        }
        self.slots = slots;
        self.shown.0 = marks;
        let at = |c: usize| remap.get(c).copied().filter(|&i| i != usize::MAX);
        self.timers = std::mem::take(&mut self.timers)
            .into_iter()
            .filter_map(|(t, key)| {
                let key = match key {
                    TimerKey::Core { comp, token } => TimerKey::Core {
                        comp: at(comp)?,
                        token,
                    },
                    TimerKey::ShimDeadline { comp, run } => TimerKey::ShimDeadline {
                        comp: at(comp)?,
                        run,
                    },
                    k => k,
                };
                Some((t, key))
            })
            .collect();
        for w in self.waiters.values_mut() {
            w.wait.remap(remap);
        }
    }
}
