//! What no single table can check: the graph as a whole (unknown dependencies, conditions
//! a dependency cannot meet, cycles, duplicates).

use super::*;

impl Cx<'_> {
    pub(super) fn check_graph(
        &mut self,
        comps: &[Component],
        spans: &BTreeMap<String, AfterSpans>,
    ) {
        let kinds: BTreeMap<&str, Kind> = comps.iter().map(|c| (c.name.as_str(), c.kind)).collect();
        let names: Vec<&str> = comps.iter().map(|c| c.name.as_str()).collect();
        let mut known_bad: BTreeSet<(String, String)> = BTreeSet::new();
        for c in comps {
            let (_, dspans, wspans) = &spans[&c.name];
            let mut wanted = BTreeSet::new();
            for (w, s) in c.wanted_by.iter().zip(wspans) {
                if *w == c.name {
                    self.err(
                        s,
                        format!("component '{}' is wanted by itself", c.name),
                        Some("name the component whose start should start this one".into()),
                    );
                } else if !kinds.contains_key(w.as_str()) {
                    let others: Vec<&str> =
                        names.iter().copied().filter(|n| *n != c.name).collect();
                    let hint = match did_you_mean(w, &others) {
                        Some(n) => format!("did you mean '{n}'?"),
                        None => format!("define [component.{w}] or remove it from wanted-by"),
                    };
                    self.err(
                        s,
                        format!(
                            "component '{}' is wanted by undefined component '{w}'",
                            c.name
                        ),
                        Some(hint),
                    );
                } else if !wanted.insert(w.as_str()) {
                    self.err(
                        s,
                        format!("component '{}' lists '{w}' twice in wanted-by", c.name),
                        Some("keep one entry".into()),
                    );
                }
            }
            for (d, s) in c.after.iter().zip(dspans) {
                match kinds.get(d.component.as_str()) {
                    None => {
                        known_bad.insert((c.name.clone(), d.component.clone()));
                        // Never the component itself (that would be a cycle of one).
                        let others: Vec<&str> =
                            names.iter().copied().filter(|n| *n != c.name).collect();
                        let hint = match did_you_mean(&d.component, &others) {
                            Some(n) => format!("did you mean '{n}'?"),
                            None => format!(
                                "define [component.{}] or remove it from after",
                                d.component
                            ),
                        };
                        self.err(
                            s,
                            format!(
                                "component '{}' depends on undefined component '{}'",
                                c.name, d.component
                            ),
                            Some(hint),
                        );
                    }
                    Some(k) if d.condition == Condition::Completed && *k != Kind::Oneshot => {
                        self.err(s, format!("component '{}' waits for '{}' to be completed, but '{}' is a service", c.name, d.component, d.component), Some(format!("use condition = \"ready\", or make '{}' kind = \"oneshot\"", d.component)));
                    }
                    _ => {}
                }
            }
            let mut seen = BTreeSet::new();
            for (d, s) in c.after.iter().zip(dspans) {
                if !seen.insert(d.component.as_str()) {
                    self.err(
                        s,
                        format!(
                            "component '{}' lists '{}' twice in after",
                            c.name, d.component
                        ),
                        Some("keep one entry".into()),
                    );
                }
            }
        }
        let nodes: Vec<(&str, Vec<&str>)> = comps
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.after.iter().map(|d| d.component.as_str()).collect(),
                )
            })
            .collect();
        for cycle in find_cycles(&nodes) {
            let first = &cycle[0];
            let span = spans.get(first).and_then(|(k, d, _)| {
                let c = comps.iter().find(|c| &c.name == first)?;
                let pos = c.after.iter().position(|d| d.component == cycle[1])?;
                Some(d.get(pos).cloned().unwrap_or(k.clone()))
            });
            self.err(
                &span.unwrap_or(0..0),
                format!("dependency cycle: {}", cycle.join(" -> ")),
                Some("remove one of these after entries".into()),
            );
        }
    }
}
