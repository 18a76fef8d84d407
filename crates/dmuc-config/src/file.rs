//! Reading a config file and summarizing a valid one: what `dmucd --check` and
//! `dmucctl check` print, from one place so they cannot differ.

use std::path::Path;

use crate::Config;

/// Reads and validates a config file, defining `${dmucd-dir}` (the directory of the running
/// binary: dmucd and dmucctl are installed side by side).
pub fn load_file(path: &Path) -> Result<Config, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut builtins = std::collections::BTreeMap::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        builtins.insert("dmucd-dir".to_string(), dir.display().to_string());
    }
    crate::parse_config_with(&text, path, &|k| std::env::var(k).ok(), &builtins)
        .map_err(|e| e.to_string())
}

/// The `--check` summary of a valid config: components in start order, by level.
pub fn summary(cfg: &Config) -> String {
    use std::fmt::Write;
    let g = &cfg.graph;
    let mut s = format!("config OK: {} components\n", g.len());
    for (i, level) in g.levels().iter().enumerate() {
        let _ = writeln!(s, "  level {i}:");
        for name in level {
            let Some(c) = g.get(name) else { continue };
            let after: Vec<String> = c
                .after
                .iter()
                .map(|d| format!("{} ({})", d.component, d.condition.as_str()))
                .collect();
            let ready = c
                .ready
                .as_ref()
                .map_or("-".to_string(), |p| p.check.kind().to_string());
            let _ = write!(s, "    {name:<24} ready: {ready:<5}");
            if !after.is_empty() {
                let _ = write!(s, " after: {}", after.join(", "));
            }
            s.push('\n');
        }
    }
    s
}
