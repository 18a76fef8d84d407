//! `[component.NAME]`: command, environment, identity, kind, `after`, restart policy,
//! backoff, start limit and stop.

use super::*;

const COMPONENT_KEYS: &[&str] = &[
    "description",
    "command",
    "env",
    "env-file",
    "args-file",
    "cwd",
    "user",
    "group",
    "kind",
    "after",
    "wanted-by",
    "restart",
    "backoff",
    "start-limit",
    "ready",
    "liveness",
    "stop",
];
const BACKOFF_KEYS: &[&str] = &["initial", "max", "factor", "reset-after"];
const START_LIMIT_KEYS: &[&str] = &["burst", "interval"];
const STOP_KEYS: &[&str] = &["signal", "timeout", "scope"];
const AFTER_KEYS: &[&str] = &["component", "condition"];

impl Cx<'_> {
    pub(super) fn component(
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
        let file = |s: String| match s.strip_prefix('-') {
            Some(p) => EnvFile {
                path: p.into(),
                optional: true,
            },
            None => EnvFile {
                path: s.into(),
                optional: false,
            },
        };
        let env_file = self.string(t, "env-file", &what).map(file);
        let args_file = self.string(t, "args-file", &what).map(file);
        let cwd = self.path(t, "cwd", &what);
        let user = self.string(t, "user", &what);
        let group = self.string(t, "group", &what);
        let kind = match self.enum_str(t, "kind", &what, &["service", "oneshot"]) {
            Some((s, _)) if s == "oneshot" => Kind::Oneshot,
            _ => Kind::Service,
        };
        let (after, after_spans) = self.after(t, &what);
        let (wanted_by, wanted_spans) = self.names_list(t, "wanted-by", &what);
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
        // Without a valid command (already reported) the component still takes part in the
        // graph's checks, so that one pass reports every error: its `after`, and the others'
        // dependencies on it. The config is refused all the same.
        let command = command.unwrap_or_default();
        Some((
            Component {
                name: name.to_string(),
                command,
                env,
                env_file,
                args_file,
                cwd,
                user,
                group,
                kind,
                after,
                wanted_by,
                restart,
                backoff,
                start_limit,
                ready,
                liveness,
                stop,
            },
            (kspan.clone(), after_spans, wanted_spans),
        ))
    }

    pub(super) fn argv(
        &mut self,
        item: &Item,
        span: &Range<usize>,
        what: &str,
    ) -> Option<Vec<String>> {
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

    /// A list of component names (`wanted-by`), with where each is.
    pub(super) fn names_list(
        &mut self,
        t: &dyn TableLike,
        key: &str,
        what: &str,
    ) -> (Vec<String>, Vec<Range<usize>>) {
        let (mut names, mut spans) = (Vec::new(), Vec::new());
        let Some((item, span)) = self.get(t, key) else {
            return (names, spans);
        };
        let Some(arr) = item.as_array() else {
            self.err(
                &span,
                format!("{what}.{key} must be a list of component names"),
                Some(format!("write {key} = [\"kubelet\"]")),
            );
            return (names, spans);
        };
        for el in arr.iter() {
            let es = el.span().unwrap_or(span.clone());
            match el.as_str() {
                Some(s) => {
                    names.push(s.to_string());
                    spans.push(es);
                }
                None => self.err(
                    &es,
                    format!("{what}.{key} entries must be component names"),
                    Some(format!("write {key} = [\"kubelet\"]")),
                ),
            }
        }
        (names, spans)
    }

    pub(super) fn after(
        &mut self,
        t: &dyn TableLike,
        what: &str,
    ) -> (Vec<Dependency>, Vec<Range<usize>>) {
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
}
