//! Walks a TOML document into a [`Config`], collecting every problem with its position.
//!
//! We walk `toml_edit`'s spanned tree by hand instead of deriving serde structs: serde stops
//! at the first error and loses positions for semantic errors, while an operator fixing a
//! cluster file wants all problems at once, each with `file:line:col` and a hint.

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

const TOP_KEYS: &[&str] = &["daemon", "vars", "component"];
const DAEMON_KEYS: &[&str] = &[
    "socket",
    "tmux-socket",
    "session",
    "log-dir",
    "state-dir",
    "log-max-size",
    "log-keep",
    "history-limit",
    "group",
    "public-status",
    "hold",
    "notify-ready",
];
const COMPONENT_KEYS: &[&str] = &[
    "description",
    "command",
    "env",
    "cwd",
    "user",
    "group",
    "kind",
    "after",
    "restart",
    "backoff",
    "start-limit",
    "ready",
    "liveness",
    "stop",
];
const PROBE_CHECKS: &[&str] = &["tcp", "http", "https", "exec", "unix", "file", "log"];
const PROBE_KEYS: &[&str] = &[
    "tcp",
    "http",
    "https",
    "exec",
    "unix",
    "file",
    "log",
    "interval",
    "timeout",
    "initial-delay",
    "success-threshold",
    "failure-threshold",
    "status",
    "ca",
    "cert",
    "key",
    "insecure",
];
const BACKOFF_KEYS: &[&str] = &["initial", "max", "factor", "reset-after"];
const START_LIMIT_KEYS: &[&str] = &["burst", "interval"];
const STOP_KEYS: &[&str] = &["signal", "timeout", "scope"];
const AFTER_KEYS: &[&str] = &["component", "condition"];

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

/// Where a component was declared, and where each of its `after` entries is.
type AfterSpans = (Range<usize>, Vec<Range<usize>>);

struct Cx<'a> {
    text: &'a str,
    lines: LineIndex,
    diags: Vec<(usize, Diagnostic)>,
    vars: BTreeMap<String, String>,
    env: EnvLookup<'a>,
}

impl<'a> Cx<'a> {
    fn err(&mut self, span: &Range<usize>, message: String, hint: Option<String>) {
        let (line, col) = self.lines.position(self.text, span.start);
        self.diags.push((
            span.start,
            Diagnostic {
                line,
                col,
                message,
                hint,
            },
        ));
    }

    fn finish(mut self, file: &Path) -> ConfigError {
        self.diags.sort_by_key(|(o, _)| *o);
        self.diags.dedup_by(|a, b| a.1 == b.1);
        ConfigError {
            file: file.to_path_buf(),
            diagnostics: self.diags.into_iter().map(|(_, d)| d).collect(),
        }
    }

    fn check_keys(&mut self, t: &dyn TableLike, allowed: &[&str], what: &str, hint: &str) {
        for (k, _) in t.iter() {
            if !allowed.contains(&k) {
                let span = key_span(t, k).unwrap_or(0..0);
                let h = match did_you_mean(k, allowed) {
                    Some(s) => format!("did you mean '{s}'?"),
                    None => hint.to_string(),
                };
                self.err(&span, format!("unknown key '{k}' in {what}"), Some(h));
            }
        }
    }

    /// The item under `k` and the best span to point at for it.
    fn get<'t>(&self, t: &'t dyn TableLike, k: &str) -> Option<(&'t Item, Range<usize>)> {
        let (key, item) = t.get_key_value(k)?;
        let span = item.span().or_else(|| key.span()).unwrap_or(0..0);
        Some((item, span))
    }

    fn str_at(&mut self, item: &Item, span: &Range<usize>, what: &str) -> Option<String> {
        match item.as_str() {
            Some(s) => self.expand_at(s, span),
            None => {
                self.err(span, format!("{what} must be a string"), None);
                None
            }
        }
    }

    fn expand_at(&mut self, s: &str, span: &Range<usize>) -> Option<String> {
        match expand(s, &self.vars, self.env) {
            Ok(v) => Some(v),
            Err(e) => {
                self.err(
                    span,
                    e,
                    Some("define it under [vars], or write $$ for a literal $".into()),
                );
                None
            }
        }
    }

    fn string(&mut self, t: &dyn TableLike, k: &str, what: &str) -> Option<String> {
        let (item, span) = self.get(t, k)?;
        self.str_at(item, &span, &format!("{what}.{k}"))
    }

    fn path(&mut self, t: &dyn TableLike, k: &str, what: &str) -> Option<PathBuf> {
        self.string(t, k, what).map(PathBuf::from)
    }

    fn duration(&mut self, t: &dyn TableLike, k: &str, what: &str) -> Option<Duration> {
        let (item, span) = self.get(t, k)?;
        let Some(s) = item.as_str() else {
            self.err(
                &span,
                format!("{what}.{k} must be a duration string"),
                Some("write it like \"250ms\", \"5s\" or \"2m\"".into()),
            );
            return None;
        };
        match parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(
                    &span,
                    format!("{what}.{k}: {e}"),
                    Some("write it like \"250ms\", \"5s\", \"2m\" or \"1h\"".into()),
                );
                None
            }
        }
    }

    fn uint(&mut self, t: &dyn TableLike, k: &str, what: &str, min: i64, max: i64) -> Option<i64> {
        let (item, span) = self.get(t, k)?;
        match item.as_integer() {
            Some(n) if (min..=max).contains(&n) => Some(n),
            Some(n) => {
                self.err(
                    &span,
                    format!("{what}.{k} = {n} is out of range"),
                    Some(format!("use a value from {min} to {max}")),
                );
                None
            }
            None => {
                self.err(&span, format!("{what}.{k} must be an integer"), None);
                None
            }
        }
    }

    fn boolean(&mut self, t: &dyn TableLike, k: &str, what: &str) -> Option<bool> {
        let (item, span) = self.get(t, k)?;
        let b = item.as_bool();
        if b.is_none() {
            self.err(&span, format!("{what}.{k} must be true or false"), None);
        }
        b
    }

    fn table<'t>(
        &mut self,
        t: &'t dyn TableLike,
        k: &str,
        what: &str,
    ) -> Option<(&'t dyn TableLike, Range<usize>)> {
        let (item, span) = self.get(t, k)?;
        match item.as_table_like() {
            Some(tt) => Some((tt, span)),
            None => {
                self.err(
                    &span,
                    format!("{what}.{k} must be a table"),
                    Some(format!("write {k} = {{ ... }}")),
                );
                None
            }
        }
    }

    fn enum_str(
        &mut self,
        t: &dyn TableLike,
        k: &str,
        what: &str,
        choices: &[&str],
    ) -> Option<(String, Range<usize>)> {
        let (item, span) = self.get(t, k)?;
        let s = self.str_at(item, &span, &format!("{what}.{k}"))?;
        if choices.contains(&s.as_str()) {
            Some((s, span))
        } else {
            let list = choices
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ");
            let hint = match did_you_mean(&s, choices) {
                Some(c) => format!("did you mean \"{c}\"? (one of {list})"),
                None => format!("one of {list}"),
            };
            self.err(
                &span,
                format!("{what}.{k}: invalid value \"{s}\""),
                Some(hint),
            );
            None
        }
    }

    fn daemon(&mut self, t: &dyn TableLike) -> DaemonConfig {
        self.check_keys(
            t,
            DAEMON_KEYS,
            "[daemon]",
            "see docs/config.md for the [daemon] keys",
        );
        let mut d = DaemonConfig::with_defaults();
        d.socket = self.path(t, "socket", "daemon");
        d.tmux_socket = self.path(t, "tmux-socket", "daemon");
        d.log_dir = self.path(t, "log-dir", "daemon");
        d.state_dir = self.path(t, "state-dir", "daemon");
        d.group = self.string(t, "group", "daemon");
        if let Some((item, span)) = self.get(t, "session")
            && let Some(s) = self.str_at(item, &span, "daemon.session")
        {
            if valid_name(&s) {
                d.session = s;
            } else {
                self.err(
                    &span,
                    format!("daemon.session \"{s}\" is not a valid session name"),
                    Some("use lowercase letters, digits and '-'".into()),
                );
            }
        }
        if let Some((item, span)) = self.get(t, "log-max-size") {
            match size_of(item) {
                Some(n) if n >= 4096 => d.log_max_size = n,
                _ => self.err(
                    &span,
                    "daemon.log-max-size must be a size of at least 4096 bytes".into(),
                    Some("write a byte count or a string like \"10M\" or \"512K\"".into()),
                ),
            }
        }
        if let Some(n) = self.uint(t, "log-keep", "daemon", 0, 1000) {
            d.log_keep = n as u32;
        }
        if let Some(n) = self.uint(t, "history-limit", "daemon", 0, 1_000_000) {
            d.history_limit = n as u32;
        }
        if let Some(b) = self.boolean(t, "public-status", "daemon") {
            d.public_status = b;
        }
        if let Some(b) = self.boolean(t, "hold", "daemon") {
            d.hold = b;
        }
        if let Some((s, _)) = self.enum_str(t, "notify-ready", "daemon", &["socket", "settled"]) {
            d.notify_ready = if s == "socket" {
                NotifyReady::Socket
            } else {
                NotifyReady::Settled
            };
        }
        d
    }

    fn component(
        &mut self,
        name: &str,
        kspan: &Range<usize>,
        item: &Item,
    ) -> Option<(Component, AfterSpans)> {
        let what = format!("component.{name}");
        if !valid_name(name) {
            self.err(kspan, format!("invalid component name '{name}'"), Some("use lowercase letters, digits and '-' (names become tmux windows and log files)".into()));
        }
        let Some(t) = item.as_table_like() else {
            self.err(
                kspan,
                format!("{what} must be a table"),
                Some(format!("write [component.{name}]")),
            );
            return None;
        };
        self.check_keys(
            t,
            COMPONENT_KEYS,
            &format!("[{what}]"),
            "see docs/config.md for component keys",
        );
        let _ = self.string(t, "description", &what);

        let command = match self.get(t, "command") {
            None => {
                self.err(
                    kspan,
                    format!("{what} has no command"),
                    Some("add command = [\"/path/to/program\", \"--flag\"]".into()),
                );
                None
            }
            Some((item, span)) => self.argv(item, &span, &format!("{what}.command")),
        };

        let mut env = Vec::new();
        if let Some((et, _)) = self.table(t, "env", &what) {
            for (k, v) in et.iter() {
                let vspan = v.span().or_else(|| key_span(et, k)).unwrap_or(0..0);
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    self.err(
                        &vspan,
                        format!("invalid environment variable name '{k}'"),
                        None,
                    );
                    continue;
                }
                if let Some(s) = self.str_at(v, &vspan, &format!("{what}.env.{k}")) {
                    env.push((k.to_string(), s));
                }
            }
        }
        let cwd = self.path(t, "cwd", &what);
        let user = self.string(t, "user", &what);
        let group = self.string(t, "group", &what);
        let kind = match self.enum_str(t, "kind", &what, &["service", "oneshot"]) {
            Some((s, _)) if s == "oneshot" => Kind::Oneshot,
            _ => Kind::Service,
        };
        let (after, after_spans) = self.after(t, &what);
        let restart = match self.enum_str(t, "restart", &what, &["always", "on-failure", "never"]) {
            Some((s, _)) => match s.as_str() {
                "always" => Restart::Always,
                "on-failure" => Restart::OnFailure,
                _ => Restart::Never,
            },
            None if kind == Kind::Oneshot => Restart::Never,
            None => Restart::Always,
        };
        let mut backoff = Backoff::default();
        if let Some((bt, span)) = self.table(t, "backoff", &what) {
            let w = format!("{what}.backoff");
            self.check_keys(
                bt,
                BACKOFF_KEYS,
                &w,
                "backoff keys: initial, max, factor, reset-after",
            );
            if let Some(d) = self.duration(bt, "initial", &w) {
                backoff.initial = d;
            }
            if let Some(d) = self.duration(bt, "max", &w) {
                backoff.max = d;
            }
            if let Some(d) = self.duration(bt, "reset-after", &w) {
                backoff.reset_after = d;
            }
            if let Some((item, fspan)) = self.get(bt, "factor") {
                match item
                    .as_float()
                    .or_else(|| item.as_integer().map(|i| i as f64))
                {
                    Some(f) if (1.0..=100.0).contains(&f) => backoff.factor = f,
                    _ => self.err(
                        &fspan,
                        format!("{w}.factor must be a number from 1.0 to 100.0"),
                        None,
                    ),
                }
            }
            if backoff.max < backoff.initial {
                self.err(
                    &span,
                    format!("{w}: max is smaller than initial"),
                    Some("raise max or lower initial".into()),
                );
            }
        }
        let mut start_limit = StartLimit::default();
        if let Some((st, _)) = self.table(t, "start-limit", &what) {
            let w = format!("{what}.start-limit");
            self.check_keys(
                st,
                START_LIMIT_KEYS,
                &w,
                "start-limit keys: burst, interval",
            );
            if let Some(n) = self.uint(st, "burst", &w, 1, 1_000_000) {
                start_limit.burst = n as u32;
            }
            if let Some(d) = self.duration(st, "interval", &w) {
                start_limit.interval = d;
            }
        }
        let ready = self.probe(t, "ready", &what, Duration::from_millis(500));
        let liveness = self.probe(t, "liveness", &what, Duration::from_secs(10));
        let mut stop = Stop::default();
        if let Some((st, _)) = self.table(t, "stop", &what) {
            let w = format!("{what}.stop");
            self.check_keys(st, STOP_KEYS, &w, "stop keys: signal, timeout, scope");
            if let Some((item, span)) = self.get(st, "signal")
                && let Some(s) = self.str_at(item, &span, &format!("{w}.signal"))
            {
                match parse_signal(&s) {
                    Ok(n) => stop.signal = n,
                    Err(e) => {
                        let hint = match did_you_mean(&s.to_ascii_uppercase(), &known_names()) {
                            Some(n) => format!("did you mean \"{n}\"?"),
                            None => format!("one of {}", known_names().join(", ")),
                        };
                        self.err(&span, format!("{w}.signal: {e}"), Some(hint));
                    }
                }
            }
            if let Some(d) = self.duration(st, "timeout", &w) {
                stop.timeout = d;
            }
            if let Some((s, _)) = self.enum_str(st, "scope", &w, &["group", "process"]) {
                stop.scope = if s == "process" {
                    StopScope::Process
                } else {
                    StopScope::Group
                };
            }
        }
        if let Some(p) = &liveness {
            let refusal = if kind == Kind::Oneshot {
                Some((
                    format!("{what}: a oneshot cannot have a liveness probe"),
                    "remove liveness, or make it kind = \"service\"",
                ))
            } else if matches!(p.check, Check::Log { .. }) {
                Some((
                    format!("{what}.liveness: a log probe can only be a ready probe"),
                    "a line passing by says the program got somewhere once, not that it is alive now: use tcp, http, exec, unix or file",
                ))
            } else {
                None
            };
            if let Some((msg, hint)) = refusal {
                let span = self
                    .get(t, "liveness")
                    .map(|(_, s)| s)
                    .unwrap_or(kspan.clone());
                self.err(&span, msg, Some(hint.into()));
            }
        }
        let command = command?;
        Some((
            Component {
                name: name.to_string(),
                command,
                env,
                cwd,
                user,
                group,
                kind,
                after,
                restart,
                backoff,
                start_limit,
                ready,
                liveness,
                stop,
            },
            (kspan.clone(), after_spans),
        ))
    }

    fn argv(&mut self, item: &Item, span: &Range<usize>, what: &str) -> Option<Vec<String>> {
        let argv: Vec<String> = if let Some(s) = item.as_str() {
            let s = self.expand_at(s, span)?;
            match shell_words::split(&s) {
                Ok(v) => v,
                Err(e) => {
                    self.err(
                        span,
                        format!("{what}: cannot split the command: {e}"),
                        Some(
                            "check the quotes, or write the command as an array of strings".into(),
                        ),
                    );
                    return None;
                }
            }
        } else if let Some(arr) = item.as_array() {
            let mut v = Vec::new();
            let mut ok = true;
            for el in arr.iter() {
                let es = el.span().unwrap_or(span.clone());
                match el.as_str() {
                    Some(s) => match self.expand_at(s, &es) {
                        Some(x) => v.push(x),
                        None => ok = false,
                    },
                    None => {
                        self.err(
                            &es,
                            format!("{what}: every argument must be a string"),
                            Some("quote numbers too: \"8080\"".into()),
                        );
                        ok = false;
                    }
                }
            }
            if !ok {
                return None;
            }
            v
        } else {
            self.err(
                span,
                format!("{what} must be an array of strings or a string"),
                None,
            );
            return None;
        };
        if argv.is_empty() || argv[0].is_empty() {
            self.err(
                span,
                format!("{what} is empty"),
                Some("name the program to run first".into()),
            );
            return None;
        }
        if argv.iter().any(|a| a.contains('\0')) {
            self.err(span, format!("{what} contains a NUL character"), None);
            return None;
        }
        Some(argv)
    }

    fn after(&mut self, t: &dyn TableLike, what: &str) -> (Vec<Dependency>, Vec<Range<usize>>) {
        let mut deps = Vec::new();
        let mut spans = Vec::new();
        let Some((item, span)) = self.get(t, "after") else {
            return (deps, spans);
        };
        let Some(arr) = item.as_array() else {
            self.err(
                &span,
                format!("{what}.after must be a list"),
                Some(
                    "write after = [\"etcd\", { component = \"x\", condition = \"started\" }]"
                        .into(),
                ),
            );
            return (deps, spans);
        };
        for el in arr.iter() {
            let es = el.span().unwrap_or(span.clone());
            match el {
                Value::String(s) => {
                    deps.push(Dependency {
                        component: s.value().clone(),
                        condition: Condition::Ready,
                    });
                    spans.push(es);
                }
                Value::InlineTable(it) => {
                    self.check_keys(
                        it,
                        AFTER_KEYS,
                        &format!("{what}.after"),
                        "after entries have: component, condition",
                    );
                    let comp = self.string(it, "component", &format!("{what}.after"));
                    let cond = match self.enum_str(
                        it,
                        "condition",
                        &format!("{what}.after"),
                        &["started", "ready", "completed"],
                    ) {
                        Some((s, _)) => match s.as_str() {
                            "started" => Condition::Started,
                            "completed" => Condition::Completed,
                            _ => Condition::Ready,
                        },
                        None => Condition::Ready,
                    };
                    match comp {
                        Some(c) => {
                            deps.push(Dependency {
                                component: c,
                                condition: cond,
                            });
                            spans.push(es);
                        }
                        None if it.get("component").is_none() => {
                            self.err(&es, format!("{what}.after entry lacks 'component'"), None);
                        }
                        None => {}
                    }
                }
                _ => self.err(
                    &es,
                    format!(
                        "{what}.after entries must be names or {{ component, condition }} tables"
                    ),
                    None,
                ),
            }
        }
        (deps, spans)
    }

    fn probe(
        &mut self,
        t: &dyn TableLike,
        k: &str,
        what: &str,
        default_interval: Duration,
    ) -> Option<Probe> {
        let (pt, span) = self.table(t, k, what)?;
        let w = format!("{what}.{k}");
        self.check_keys(pt, PROBE_KEYS, &w, "see docs/config.md for probe keys");
        let present: Vec<&str> = PROBE_CHECKS
            .iter()
            .copied()
            .filter(|c| pt.contains_key(c))
            .collect();
        if present.len() != 1 {
            let msg = if present.is_empty() {
                format!("{w} names no check")
            } else {
                format!("{w} names several checks ({})", present.join(", "))
            };
            self.err(
                &span,
                msg,
                Some("give exactly one of tcp, http, https, exec, unix, file, log".into()),
            );
            return None;
        }
        let check = match present[0] {
            "tcp" => {
                let a = self.string(pt, "tcp", &w)?;
                let (host, port) = a.rsplit_once(':').unwrap_or(("", ""));
                if host.is_empty() || port.parse::<u16>().is_err() {
                    let s = self.get(pt, "tcp").map(|x| x.1).unwrap_or(span.clone());
                    self.err(
                        &s,
                        format!("{w}.tcp \"{a}\" is not HOST:PORT"),
                        Some("write it like \"127.0.0.1:2379\"".into()),
                    );
                    return None;
                }
                Check::Tcp { address: a }
            }
            key @ ("http" | "https") => {
                let url = self.string(pt, key, &w)?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    let s = self.get(pt, key).map(|x| x.1).unwrap_or(span.clone());
                    self.err(
                        &s,
                        format!("{w}.{key} \"{url}\" is not an http:// or https:// URL"),
                        None,
                    );
                    return None;
                }
                let status = self.uint(pt, "status", &w, 100, 599).map(|n| n as u16);
                Check::Http {
                    url,
                    status,
                    ca: self.path(pt, "ca", &w),
                    cert: self.path(pt, "cert", &w),
                    key: self.path(pt, "key", &w),
                    insecure: self.boolean(pt, "insecure", &w).unwrap_or(false),
                }
            }
            "exec" => {
                let (item, s) = self.get(pt, "exec")?;
                Check::Exec {
                    command: self.argv(item, &s, &format!("{w}.exec"))?,
                }
            }
            "unix" => Check::Unix {
                path: self.path(pt, "unix", &w)?,
            },
            "file" => Check::File {
                path: self.path(pt, "file", &w)?,
            },
            _ => {
                let (item, s) = self.get(pt, "log")?;
                let re = self.str_at(item, &s, &format!("{w}.log"))?;
                if let Err(e) = regex::Regex::new(&re) {
                    let first = e
                        .to_string()
                        .lines()
                        .last()
                        .unwrap_or("")
                        .trim()
                        .to_string();
                    self.err(&s, format!("{w}.log: invalid regex: {first}"), Some("see https://docs.rs/regex for the syntax; escape literal characters with \\\\".into()));
                    return None;
                }
                Check::Log { regex: re }
            }
        };
        let is_http = matches!(check, Check::Http { .. });
        for opt in ["status", "ca", "cert", "key", "insecure"] {
            if !is_http && pt.contains_key(opt) {
                let s = key_span(pt, opt).unwrap_or(span.clone());
                self.err(&s, format!("{w}.{opt} only applies to http probes"), None);
            }
        }
        if is_http && (pt.contains_key("cert") != pt.contains_key("key")) {
            self.err(
                &span,
                format!("{w}: cert and key go together"),
                Some("give both a client cert and its key, or neither".into()),
            );
        }
        let mut p = Probe {
            check,
            interval: default_interval,
            timeout: Duration::from_secs(1),
            initial_delay: Duration::ZERO,
            success_threshold: 1,
            failure_threshold: 3,
        };
        if let Some(d) = self.duration(pt, "interval", &w) {
            if d.is_zero() {
                let s = key_span(pt, "interval").unwrap_or(span.clone());
                self.err(&s, format!("{w}.interval must be more than zero"), None);
            } else {
                p.interval = d;
            }
        }
        if let Some(d) = self.duration(pt, "timeout", &w) {
            p.timeout = d;
        }
        if let Some(d) = self.duration(pt, "initial-delay", &w) {
            p.initial_delay = d;
        }
        if let Some(n) = self.uint(pt, "success-threshold", &w, 1, 1000) {
            p.success_threshold = n as u32;
        }
        if let Some(n) = self.uint(pt, "failure-threshold", &w, 1, 1000) {
            p.failure_threshold = n as u32;
        }
        Some(p)
    }

    fn check_graph(&mut self, comps: &[Component], spans: &BTreeMap<String, AfterSpans>) {
        let kinds: BTreeMap<&str, Kind> = comps.iter().map(|c| (c.name.as_str(), c.kind)).collect();
        let names: Vec<&str> = comps.iter().map(|c| c.name.as_str()).collect();
        let mut known_bad: BTreeSet<(String, String)> = BTreeSet::new();
        for c in comps {
            let (_, dspans) = &spans[&c.name];
            for (d, s) in c.after.iter().zip(dspans) {
                match kinds.get(d.component.as_str()) {
                    None => {
                        known_bad.insert((c.name.clone(), d.component.clone()));
                        let hint = match did_you_mean(&d.component, &names) {
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
            let span = spans.get(first).and_then(|(k, d)| {
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

/// Component and session names: lowercase letters, digits and `-`, starting with a letter or
/// digit, at most 64 characters.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn size_of(item: &Item) -> Option<u64> {
    if let Some(n) = item.as_integer() {
        return u64::try_from(n).ok();
    }
    let s = item.as_str()?.trim();
    let (num, mult) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = s[i..].trim().to_ascii_uppercase();
            let m = match unit.trim_end_matches("IB").trim_end_matches('B') {
                "" => 1,
                "K" => 1 << 10,
                "M" => 1 << 20,
                "G" => 1 << 30,
                _ => return None,
            };
            (&s[..i], m)
        }
        None => (s, 1),
    };
    num.trim().parse::<u64>().ok()?.checked_mul(mult)
}

#[cfg(test)]
mod tests;
