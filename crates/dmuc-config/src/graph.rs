//! The dependency graph: components indexed by name, dependency levels, start order, and
//! cycle detection that reports the cycle's path.

use std::collections::BTreeMap;

use crate::model::Component;

/// A validated, acyclic component graph. Components keep their file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Graph {
    components: Vec<Component>,
    index: BTreeMap<String, usize>,
    dependents: Vec<Vec<usize>>,
    /// For each component, those whose `wanted-by` names it.
    wants: Vec<Vec<usize>>,
    levels: Vec<usize>,
}

impl Graph {
    /// Builds the graph. The caller has validated that every dependency exists and that
    /// there is no cycle ([`find_cycles`]); this is asserted in debug builds.
    pub fn new(components: Vec<Component>) -> Graph {
        let index: BTreeMap<String, usize> = components
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.clone(), i))
            .collect();
        let mut dependents = vec![Vec::new(); components.len()];
        for (i, c) in components.iter().enumerate() {
            for d in &c.after {
                if let Some(&j) = index.get(&d.component)
                    && !dependents[j].contains(&i)
                {
                    dependents[j].push(i);
                }
            }
        }
        let mut wants = vec![Vec::new(); components.len()];
        for (i, c) in components.iter().enumerate() {
            for w in &c.wanted_by {
                if let Some(&j) = index.get(w)
                    && j != i
                    && !wants[j].contains(&i)
                {
                    wants[j].push(i);
                }
            }
        }
        let mut g = Graph {
            components,
            index,
            dependents,
            wants,
            levels: Vec::new(),
        };
        g.levels = g.compute_levels();
        g
    }

    fn compute_levels(&self) -> Vec<usize> {
        // Longest path from a root; acyclic by construction, so memoised DFS terminates.
        fn level(g: &Graph, i: usize, memo: &mut [Option<usize>], depth: usize) -> usize {
            if let Some(l) = memo[i] {
                return l;
            }
            let l = if depth > g.components.len() {
                0 // unreachable for an acyclic graph; guards against misuse
            } else {
                g.deps_of(i)
                    .map(|j| level(g, j, memo, depth + 1) + 1)
                    .max()
                    .unwrap_or(0)
            };
            memo[i] = Some(l);
            l
        }
        let mut memo = vec![None; self.components.len()];
        (0..self.components.len())
            .map(|i| level(self, i, &mut memo, 0))
            .collect()
    }

    /// All components, in file order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Number of components.
    pub fn len(&self) -> usize {
        self.components.len()
    }

    /// True when there are no components.
    pub fn is_empty(&self) -> bool {
        self.components.is_empty()
    }

    /// Index of a component by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// Component by name.
    pub fn get(&self, name: &str) -> Option<&Component> {
        self.index_of(name).map(|i| &self.components[i])
    }

    /// Indices of what component `i` depends on.
    pub fn deps_of(&self, i: usize) -> impl Iterator<Item = usize> + '_ {
        self.components[i]
            .after
            .iter()
            .filter_map(|d| self.index_of(&d.component))
    }

    /// Indices of the components that depend on component `i`.
    pub fn dependents_of(&self, i: usize) -> &[usize] {
        &self.dependents[i]
    }

    /// Dependency level of component `i` (0 = depends on nothing).
    pub fn level(&self, i: usize) -> usize {
        self.levels[i]
    }

    /// Components grouped by level, each level in file order: the start order.
    pub fn levels(&self) -> Vec<Vec<&str>> {
        let max = self.levels.iter().copied().max().map_or(0, |m| m + 1);
        let mut out = vec![Vec::new(); max];
        for (i, c) in self.components.iter().enumerate() {
            out[self.levels[i]].push(c.name.as_str());
        }
        out
    }

    /// Every component `i` needs, transitively (not including `i`).
    pub fn closure_deps(&self, i: usize) -> Vec<usize> {
        self.closure(i, |g, k| g.deps_of(k).collect())
    }

    /// The components whose `wanted-by` names `i`: a start of `i` starts them too.
    pub fn wanted_by_start_of(&self, i: usize) -> &[usize] {
        &self.wants[i]
    }

    /// What a start of `comps` brings up: them, what they need (transitively), and what
    /// any of those wants (`wanted-by`) with what that needs, to a fixed point. Sorted.
    pub fn start_set(&self, comps: &[usize]) -> Vec<usize> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<usize> = comps.to_vec();
        while let Some(k) = stack.pop() {
            if std::mem::replace(&mut seen[k], true) {
                continue;
            }
            stack.extend(self.deps_of(k));
            stack.extend(self.wants[k].iter().copied());
        }
        (0..self.len()).filter(|&i| seen[i]).collect()
    }

    /// Every component that needs `i`, transitively (not including `i`).
    pub fn closure_dependents(&self, i: usize) -> Vec<usize> {
        self.closure(i, |g, k| g.dependents_of(k).to_vec())
    }

    fn closure(&self, i: usize, next: impl Fn(&Graph, usize) -> Vec<usize>) -> Vec<usize> {
        let mut seen = vec![false; self.len()];
        let mut stack = vec![i];
        let mut out = Vec::new();
        while let Some(k) = stack.pop() {
            for j in next(self, k) {
                if !seen[j] && j != i {
                    seen[j] = true;
                    out.push(j);
                    stack.push(j);
                }
            }
        }
        out.sort_unstable();
        out
    }
}

/// Finds dependency cycles among `nodes` (name, names it depends on). Each cycle is returned
/// once, as a path that starts and ends with the same name (`a -> b -> a`), starting at
/// the first member in input order. Unknown names are ignored (reported elsewhere).
pub fn find_cycles(nodes: &[(&str, Vec<&str>)]) -> Vec<Vec<String>> {
    let index: BTreeMap<&str, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, (n, _))| (*n, i))
        .collect();
    let adj: Vec<Vec<usize>> = nodes
        .iter()
        .map(|(_, deps)| deps.iter().filter_map(|d| index.get(d).copied()).collect())
        .collect();
    // Iterative DFS with colours; a back edge closes a cycle.
    let n = nodes.len();
    let mut colour = vec![0u8; n]; // 0 white, 1 on stack, 2 done
    let mut cycles: Vec<Vec<String>> = Vec::new();
    let mut seen_sets: Vec<Vec<usize>> = Vec::new();
    for root in 0..n {
        if colour[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        colour[root] = 1;
        while let Some(&mut (v, ref mut next)) = stack.last_mut() {
            if *next < adj[v].len() {
                let w = adj[v][*next];
                *next += 1;
                match colour[w] {
                    0 => {
                        colour[w] = 1;
                        stack.push((w, 0));
                    }
                    1 => {
                        let pos = stack.iter().position(|(x, _)| *x == w).unwrap_or(0);
                        let mut members: Vec<usize> =
                            stack[pos..].iter().map(|(x, _)| *x).collect();
                        let mut key = members.clone();
                        key.sort_unstable();
                        if !seen_sets.contains(&key) {
                            seen_sets.push(key);
                            // Rotate so the first member in file order leads.
                            let lead = members
                                .iter()
                                .enumerate()
                                .min_by_key(|(_, m)| **m)
                                .map_or(0, |(i, _)| i);
                            members.rotate_left(lead);
                            let mut path: Vec<String> =
                                members.iter().map(|m| nodes[*m].0.to_string()).collect();
                            path.push(path[0].clone());
                            cycles.push(path);
                        }
                    }
                    _ => {}
                }
            } else {
                colour[v] = 2;
                stack.pop();
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_cycle_path() {
        let nodes = vec![
            ("a", vec!["b"]),
            ("b", vec!["c"]),
            ("c", vec!["a"]),
            ("d", vec![]),
        ];
        assert_eq!(find_cycles(&nodes), vec![vec!["a", "b", "c", "a"]]);
    }

    #[test]
    fn self_loop_and_two_cycles() {
        let nodes = vec![("x", vec!["x"]), ("a", vec!["b"]), ("b", vec!["a"])];
        assert_eq!(
            find_cycles(&nodes),
            vec![vec!["x", "x"], vec!["a", "b", "a"]]
        );
    }

    #[test]
    fn acyclic_has_none() {
        let nodes = vec![("a", vec![]), ("b", vec!["a"]), ("c", vec!["a", "b"])];
        assert!(find_cycles(&nodes).is_empty());
    }
}
