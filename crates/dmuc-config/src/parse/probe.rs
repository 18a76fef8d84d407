//! `ready` and `liveness` probe tables: exactly one check, its options, the timing.

use super::*;

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

impl Cx<'_> {
    pub(super) fn probe(
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
}
