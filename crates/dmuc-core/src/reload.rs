//! Reload by diff: which components a new graph adds, removes, changes or keeps, and the
//! machine's switch to it. Unchanged components keep their unit (same run, same PID); changed
//! ones keep theirs too and are restarted by the caller so the new definition takes effect
//! (a completed oneshot runs again, and what reads its work with `condition = "completed"`
//! starts again after it: [`Supervisor::reload_restarts`]);
//! removed ones stay in the graph, wanted down, until they have stopped, then are pruned.

use std::time::Instant;

use dmuc_config::{Component, Condition, Graph, Kind};

use crate::machine::{Effect, Supervisor};
use crate::state::{State, Unit};

/// What a reload does, by component name (each list in the new graph's order, removed ones
/// in the old graph's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Not in the old graph: will start (in dependency order).
    pub add: Vec<String>,
    /// Not in the new graph: will stop (dependents first).
    pub remove: Vec<String>,
    /// Definition changed (command, env, probes, ...): restarted if running.
    pub change: Vec<String>,
    /// Identical: untouched, same PID.
    pub keep: Vec<String>,
}

impl Plan {
    /// Nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.remove.is_empty() && self.change.is_empty()
    }
}

/// Whether `new` runs differently from `old`: anything but `wanted-by`, which says what a
/// start brings along, not how this component runs (a change of it alone restarts nothing).
fn runs_otherwise(old: &Component, new: &Component) -> bool {
    let mut old = old.clone();
    old.wanted_by.clone_from(&new.wanted_by);
    old != *new
}

/// Compares two graphs. A `[vars]` change shows up here only in the components whose expanded
/// strings changed.
pub fn plan(old: &Graph, new: &Graph) -> Plan {
    let mut p = Plan::default();
    for c in new.components() {
        match old.get(&c.name) {
            None => p.add.push(c.name.clone()),
            Some(o) if runs_otherwise(o, c) => p.change.push(c.name.clone()),
            Some(_) => p.keep.push(c.name.clone()),
        }
    }
    for c in old.components() {
        if new.get(&c.name).is_none() {
            p.remove.push(c.name.clone());
        }
    }
    p
}

/// What a reload restarts, by name (in the new graph's order), given where each component
/// stands now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restarts {
    /// Changed components that are up: restarted on their new definition. A oneshot that
    /// completed counts: it runs again, so that what it makes is made anew.
    pub changed: Vec<String>,
    /// Up components that wait for a re-run oneshot with `condition = "completed"`: they read
    /// what it makes, so they are restarted and start again once it has completed.
    pub followers: Vec<String>,
}

impl Restarts {
    /// Every component to restart.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.changed.iter().chain(&self.followers)
    }
}

/// Whether a reload restarts a component in this state: it runs, or it is a oneshot whose
/// completed run made what its dependents read (and nobody stopped it since).
fn up_for_reload(u: &Unit) -> bool {
    u.state.is_active() || (u.state == State::Completed && u.want_up)
}

impl Supervisor {
    /// What applying `plan` (towards `new`) restarts. Pure: also what `--dry-run` shows.
    pub fn reload_restarts(&self, plan: &Plan, new: &Graph) -> Restarts {
        let up = |name: &str| {
            self.graph()
                .index_of(name)
                .is_some_and(|i| up_for_reload(self.unit(i)))
        };
        let changed: Vec<String> = new
            .components()
            .iter()
            .filter(|c| plan.change.contains(&c.name) && up(&c.name))
            .map(|c| c.name.clone())
            .collect();
        let rerun: Vec<&String> = changed
            .iter()
            .filter(|n| new.get(n).is_some_and(|c| c.kind == Kind::Oneshot))
            .collect();
        let followers = new
            .components()
            .iter()
            .filter(|c| !changed.contains(&c.name) && up(&c.name))
            .filter(|c| {
                c.after
                    .iter()
                    .any(|d| d.condition == Condition::Completed && rerun.contains(&&d.component))
            })
            .map(|c| c.name.clone())
            .collect();
        Restarts { changed, followers }
    }

    /// Switches to `new`: units move by name, new components start pending, removed ones stay
    /// (at the end, their edges kept only to what still exists) wanted down until pruned.
    /// Returns the effects and, for each old index, its new index.
    pub fn reconfigure(&mut self, new: &Graph, now: Instant) -> (Vec<Effect>, Vec<usize>) {
        let old_graph = self.graph().clone();
        let mut comps: Vec<Component> = new.components().to_vec();
        let mut leaving = Vec::new();
        for c in old_graph.components() {
            if new.get(&c.name).is_none() {
                leaving.push(c.name.clone());
                comps.push(c.clone());
            }
        }
        let names: Vec<String> = comps.iter().map(|c| c.name.clone()).collect();
        for c in &mut comps {
            c.after.retain(|d| names.contains(&d.component));
        }
        let merged = Graph::new(comps);
        let mut old_units = self.take_units();
        let units: Vec<Unit> = merged
            .components()
            .iter()
            .map(|c| match old_graph.index_of(&c.name) {
                Some(i) => {
                    let mut u = std::mem::replace(&mut old_units[i], Unit::new());
                    if leaving.contains(&c.name) {
                        u.want_up = false;
                    }
                    u
                }
                None => Unit::new(),
            })
            .collect();
        let remap = old_graph
            .components()
            .iter()
            .map(|c| merged.index_of(&c.name).unwrap_or(usize::MAX))
            .collect();
        self.replace(merged, units, leaving);
        let fx = self.settle(now);
        (fx, remap)
    }

    /// Drops the removed components once none is active any more; returns, for each index,
    /// its new index (`usize::MAX` for the pruned), or `None` when there is nothing to prune.
    pub fn prune(&mut self) -> Option<Vec<usize>> {
        if self.leaving().is_empty() {
            return None;
        }
        let gone = |i: usize, s: &Supervisor| s.leaving().contains(&s.graph().components()[i].name);
        let done = (0..self.graph().len()).filter(|&i| gone(i, self)).all(|i| {
            !self.unit(i).state.is_active() && !matches!(self.unit(i).state, State::Backoff { .. })
        });
        if !done {
            return None;
        }
        let keep: Vec<usize> = (0..self.graph().len())
            .filter(|&i| !gone(i, self))
            .collect();
        let comps: Vec<Component> = keep
            .iter()
            .map(|&i| self.graph().components()[i].clone())
            .collect();
        let mut remap = vec![usize::MAX; self.graph().len()];
        for (new_i, &old_i) in keep.iter().enumerate() {
            remap[old_i] = new_i;
        }
        let mut units = self.take_units();
        let kept: Vec<Unit> = keep
            .iter()
            .map(|&i| std::mem::replace(&mut units[i], Unit::new()))
            .collect();
        self.replace(Graph::new(comps), kept, Vec::new());
        Some(remap)
    }
}

#[cfg(test)]
mod tests;
