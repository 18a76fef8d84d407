//! `${name}` and `${env:NAME}` substitution inside config strings.
//!
//! `$$` writes a literal `$`. A `$` not followed by `{` is left alone, so shell snippets such
//! as `sh -c 'echo $HOME'` pass through untouched.

use std::collections::BTreeMap;

/// Looks up an environment variable (injected so parsing stays pure).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The most an expanded string may hold: far above any command or script a graph needs, and a
/// bound on what a chain of variables that each double the one before can cost (a hostile or
/// broken file gets an error, not all the memory; a reload of it leaves the daemon running).
pub const MAX_EXPANDED: usize = 64 * 1024;

/// Expands one string. `vars` are already fully expanded.
pub fn expand(
    s: &str,
    vars: &BTreeMap<String, String>,
    env: EnvLookup<'_>,
) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| format!("unclosed '${{' in '{s}'"))?;
            let name = &body[..end];
            let value = lookup(name, vars, env)?;
            if out.len() + value.len() > MAX_EXPANDED {
                return Err(format!(
                    "'${{{name}}}' makes this string longer than {MAX_EXPANDED} bytes once expanded: \
                     does a variable repeat another several times?"
                ));
            }
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn lookup(
    name: &str,
    vars: &BTreeMap<String, String>,
    env: EnvLookup<'_>,
) -> Result<String, String> {
    if let Some(var) = name.strip_prefix("env:") {
        return env(var).ok_or_else(|| format!("environment variable '{var}' is not set"));
    }
    vars.get(name).cloned().ok_or_else(|| {
        let known: Vec<&str> = vars.keys().map(String::as_str).collect();
        match crate::diag::did_you_mean(name, &known) {
            Some(k) => format!("unknown variable '${{{name}}}' (did you mean '${{{k}}}'?)"),
            None => format!("unknown variable '${{{name}}}'"),
        }
    })
}

/// Expands the `[vars]` table itself: a var may use `${env:...}` and vars defined before it.
pub fn expand_vars(
    builtins: &BTreeMap<String, String>,
    raw: &[(String, String)],
    env: EnvLookup<'_>,
) -> (BTreeMap<String, String>, Vec<(usize, String)>) {
    let mut done = builtins.clone();
    let mut errors = Vec::new();
    for (i, (k, v)) in raw.iter().enumerate() {
        match expand(v, &done, env) {
            Ok(x) => {
                done.insert(k.clone(), x);
            }
            Err(e) => errors.push((i, e)),
        }
    }
    (done, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_of_doubling_vars_is_stopped_at_the_bound() {
        let env = |_: &str| None;
        let mut raw = vec![("v0".to_string(), "x".repeat(64))];
        for i in 1..40 {
            raw.push((format!("v{i}"), format!("${{v{}}}${{v{}}}", i - 1, i - 1)));
        }
        let (vars, errors) = expand_vars(&BTreeMap::new(), &raw, &env);
        // 64 × 2^10 = 64 KiB is the last that fits; every later one is an error naming the bound.
        assert_eq!(vars["v10"].len(), MAX_EXPANDED);
        assert!(!vars.contains_key("v11"));
        assert_eq!(errors.first().map(|e| e.0), Some(11));
        assert!(
            errors[0].1.contains("longer than 65536 bytes"),
            "{:?}",
            errors[0]
        );
        assert!(vars.values().all(|v| v.len() <= MAX_EXPANDED));
    }

    fn env(n: &str) -> Option<String> {
        (n == "HOME").then(|| "/root".to_string())
    }

    #[test]
    fn substitutes() {
        let mut vars = BTreeMap::new();
        vars.insert("node".to_string(), "n1".to_string());
        assert_eq!(
            expand("--name=${node}", &vars, &env).as_deref(),
            Ok("--name=n1")
        );
        assert_eq!(
            expand("${env:HOME}/x", &vars, &env).as_deref(),
            Ok("/root/x")
        );
        assert_eq!(
            expand("echo $HOME $$ $", &vars, &env).as_deref(),
            Ok("echo $HOME $ $")
        );
        assert!(
            expand("${nod}", &vars, &env)
                .unwrap_err()
                .contains("did you mean '${node}'")
        );
        assert!(expand("${env:NOPE}", &vars, &env).is_err());
        assert!(expand("${node", &vars, &env).is_err());
    }

    #[test]
    fn vars_see_earlier_vars() {
        let raw = vec![
            ("a".to_string(), "1".to_string()),
            ("b".to_string(), "${a}2".to_string()),
            ("c".to_string(), "${d}".to_string()),
        ];
        let (v, errs) = expand_vars(&BTreeMap::new(), &raw, &env);
        assert_eq!(v["b"], "12");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].0, 2);
    }
}
