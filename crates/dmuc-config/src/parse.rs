//! Walks a TOML document into a [`Config`], collecting every problem with its position.
//!
//! We walk `toml_edit`'s spanned tree by hand instead of deriving serde structs: serde stops
//! at the first error and loses positions for semantic errors, while an operator fixing a
//! cluster file wants all problems at once, each with `file:line:col` and a hint.
//!
//! This file walks the top level; one decoder per section: `daemon`, `component` (with its
//! `after`, restart, backoff, start-limit and stop tables), `probe`; `values` holds what they
//! are all made of, `validate` what only the whole graph can tell.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml_edit::{Item, TableLike, Value};

use crate::diag::{ConfigError, Diagnostic, LineIndex, did_you_mean};
use crate::duration::parse_duration;
use crate::expand::{EnvLookup, expand, expand_vars};
use crate::graph::{Graph, find_cycles};
use crate::model::*;
use crate::signal::{known_names, parse_signal};

mod component;
mod daemon;
mod probe;
mod validate;
mod values;

const TOP_KEYS: &[&str] = &["daemon", "vars", "component"];

/// Parses and validates a config. `file` is used in messages only; `env` resolves
/// `${env:NAME}`.
pub fn parse_config(text: &str, file: &Path, env: EnvLookup<'_>) -> Result<Config, ConfigError> {
    parse_config_with(text, file, env, &BTreeMap::new())
}

/// Like [`parse_config`], with predefined variables (the daemon defines `dmucd-dir`, the
/// directory of its own binary, so a graph can name programs shipped beside it).
pub fn parse_config_with(
    text: &str,
    file: &Path,
    env: EnvLookup<'_>,
    builtins: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    parse_config_full(text, file, env, builtins, &BTreeMap::new())
}

/// Like [`parse_config_with`], with values that replace those of `[vars]` (`--var k=v`); each
/// must name a variable the file defines, so a typo is an error rather than ignored.
pub fn parse_config_full(
    text: &str,
    file: &Path,
    env: EnvLookup<'_>,
    builtins: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
) -> Result<Config, ConfigError> {
    let mut cx = Cx {
        text,
        lines: LineIndex::new(text),
        diags: Vec::new(),
        vars: builtins.clone(),
        env,
    };
    let doc = match toml_edit::Document::parse(text) {
        Ok(d) => d,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let msg = e.message().trim().replace('\n', " ");
            cx.err(&span, format!("invalid TOML: {msg}"), None);
            return Err(cx.finish(file));
        }
    };
    let root = doc.as_item().as_table_like();
    let Some(root) = root else {
        cx.err(&(0..0), "the document is not a table".into(), None);
        return Err(cx.finish(file));
    };
    cx.check_keys(
        root,
        TOP_KEYS,
        "top level",
        "allowed here: [daemon], [vars], [component.NAME]",
    );

    // [vars] first: everything else may use them.
    let mut defined: Vec<String> = Vec::new();
    if let Some((item, span)) = cx.get(root, "vars") {
        match item.as_table_like() {
            Some(t) => {
                let mut raw = Vec::new();
                let mut spans = Vec::new();
                for (k, v) in t.iter() {
                    let vspan = v.span().unwrap_or(span.clone());
                    match v.as_str() {
                        Some(s) => {
                            defined.push(k.to_string());
                            let v = overrides.get(k).map_or(s, String::as_str);
                            raw.push((k.to_string(), v.to_string()));
                            spans.push(vspan);
                        }
                        None => cx.err(
                            &vspan,
                            format!("variable '{k}' must be a string"),
                            Some("quote it: name = \"value\"".into()),
                        ),
                    }
                }
                let (vars, errors) = expand_vars(builtins, &raw, env);
                for (i, e) in errors {
                    cx.err(
                        &spans[i],
                        e,
                        Some(
                            "a variable may use ${env:NAME} and variables defined above it".into(),
                        ),
                    );
                }
                cx.vars = vars;
            }
            None => cx.err(&span, "[vars] must be a table".into(), None),
        }
    }

    for k in overrides.keys().filter(|k| !defined.contains(k)) {
        let known: Vec<&str> = defined.iter().map(String::as_str).collect();
        let hint = match crate::diag::did_you_mean(k, &known) {
            Some(m) => format!("did you mean '{m}'?"),
            None if known.is_empty() => "this file has no [vars]".to_string(),
            None => format!("its variables: {}", known.join(", ")),
        };
        cx.err(
            &(0..0),
            format!("--var {k}: the file defines no variable '{k}' in [vars]"),
            Some(hint),
        );
    }

    let daemon = match cx.get(root, "daemon") {
        Some((item, span)) => match item.as_table_like() {
            Some(t) => cx.daemon(t),
            None => {
                cx.err(&span, "[daemon] must be a table".into(), None);
                DaemonConfig::with_defaults()
            }
        },
        None => DaemonConfig::with_defaults(),
    };

    let mut components = Vec::new();
    let mut after_spans: BTreeMap<String, AfterSpans> = BTreeMap::new();
    if let Some((item, span)) = cx.get(root, "component") {
        match item.as_table_like() {
            Some(t) => {
                for (name, item) in t.iter() {
                    let kspan = key_span(t, name).unwrap_or(span.clone());
                    if let Some((c, spans)) = cx.component(name, &kspan, item) {
                        after_spans.insert(name.to_string(), spans);
                        components.push(c);
                    }
                }
            }
            None => cx.err(
                &span,
                "'component' must be a table of components".into(),
                Some("write [component.NAME]".into()),
            ),
        }
    }

    cx.check_graph(&components, &after_spans);
    if cx.diags.is_empty() {
        Ok(Config {
            daemon,
            vars: cx.vars,
            graph: Graph::new(components),
        })
    } else {
        Err(cx.finish(file))
    }
}

fn key_span(t: &dyn TableLike, k: &str) -> Option<Range<usize>> {
    t.get_key_value(k).and_then(|(key, _)| key.span())
}

/// Where a component was declared, and where each of its `after` and `wanted-by` entries is.
type AfterSpans = (Range<usize>, Vec<Range<usize>>, Vec<Range<usize>>);

struct Cx<'a> {
    text: &'a str,
    lines: LineIndex,
    diags: Vec<(usize, Diagnostic)>,
    vars: BTreeMap<String, String>,
    env: EnvLookup<'a>,
}

/// Component and session names: lowercase letters, digits and `-`, starting with a letter or
/// digit, at most 64 characters.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

#[cfg(test)]
mod tests;
