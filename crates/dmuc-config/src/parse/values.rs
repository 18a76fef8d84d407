//! The values every section is made of: strings (expanded), paths, durations, numbers,
//! booleans, tables, enumerations; unknown keys; and the error list they all report to.

use super::*;

impl Cx<'_> {
    pub(super) fn err(&mut self, span: &Range<usize>, message: String, hint: Option<String>) {
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

    pub(super) fn finish(mut self, file: &Path) -> ConfigError {
        self.diags.sort_by_key(|(o, _)| *o);
        self.diags.dedup_by(|a, b| a.1 == b.1);
        ConfigError {
            file: file.to_path_buf(),
            diagnostics: self.diags.into_iter().map(|(_, d)| d).collect(),
        }
    }

    pub(super) fn check_keys(
        &mut self,
        t: &dyn TableLike,
        allowed: &[&str],
        what: &str,
        hint: &str,
    ) {
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
    pub(super) fn get<'t>(
        &self,
        t: &'t dyn TableLike,
        k: &str,
    ) -> Option<(&'t Item, Range<usize>)> {
        let (key, item) = t.get_key_value(k)?;
        let span = item.span().or_else(|| key.span()).unwrap_or(0..0);
        Some((item, span))
    }

    pub(super) fn str_at(
        &mut self,
        item: &Item,
        span: &Range<usize>,
        what: &str,
    ) -> Option<String> {
        match item.as_str() {
            Some(s) => self.expand_at(s, span),
            None => {
                self.err(span, format!("{what} must be a string"), None);
                None
            }
        }
    }

    pub(super) fn expand_at(&mut self, s: &str, span: &Range<usize>) -> Option<String> {
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

    pub(super) fn string(&mut self, t: &dyn TableLike, k: &str, what: &str) -> Option<String> {
        let (item, span) = self.get(t, k)?;
        self.str_at(item, &span, &format!("{what}.{k}"))
    }

    pub(super) fn path(&mut self, t: &dyn TableLike, k: &str, what: &str) -> Option<PathBuf> {
        self.string(t, k, what).map(PathBuf::from)
    }

    pub(super) fn duration(&mut self, t: &dyn TableLike, k: &str, what: &str) -> Option<Duration> {
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

    pub(super) fn uint(
        &mut self,
        t: &dyn TableLike,
        k: &str,
        what: &str,
        min: i64,
        max: i64,
    ) -> Option<i64> {
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

    pub(super) fn boolean(&mut self, t: &dyn TableLike, k: &str, what: &str) -> Option<bool> {
        let (item, span) = self.get(t, k)?;
        let b = item.as_bool();
        if b.is_none() {
            self.err(&span, format!("{what}.{k} must be true or false"), None);
        }
        b
    }

    pub(super) fn table<'t>(
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

    pub(super) fn enum_str(
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
}

pub(super) fn byte_size(item: &Item) -> Option<u64> {
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
