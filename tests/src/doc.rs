//! The docs as tests: which code blocks of a Markdown page run, what stands in for the ones
//! that cannot run here, and whether what a command printed is what the page says it prints.
//! Pure: the runner (tests/it/docs.rs) does the I/O.
//!
//! A marker is an HTML comment on the line right before a block's opening fence (invisible
//! when the page is rendered):
//!
//! - `<!-- doc-test: run -->`: the block runs as written and must succeed. A `sh` block is one
//!   command; in a `console` block each line `# COMMAND` (or `NAME# COMMAND`: on the machine
//!   NAME) is a command, `\` at a line's end continues it, and the other lines are what it
//!   prints, not checked.
//! - `<!-- doc-test: check -->`: as `run`, and each command prints what the page shows
//!   ([`missing_line`]).
//! - `<!-- doc-test: check, retry 60s -->`: a command that fails or does not print it yet is
//!   run again, up to 60 s (what a reader does with `kubectl get pods` while a pod starts).
//! - `<!-- doc-test: instead` ... `-->`: the comment's next lines run in place of the block
//!   (what cannot run here, such as a download), and must succeed.
//! - `<!-- doc-test: not run: WHY -->`: the block does not run, and WHY says what covers it.
//!
//! Every `sh` and `console` block of a tested page carries one: a new block without one fails
//! the test, so nothing the page shows goes unchecked by accident.

/// What a block's marker asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mark {
    Run,
    Check { retry_secs: u64 },
    Instead(String),
    NotRun(String),
}

/// One command of a page, where it is, and what the page says it prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// 1-based line of the page where the command is.
    pub line: usize,
    /// The machine it runs on (`NAME# ` prompts); `None`: the page's default one.
    pub host: Option<String>,
    pub command: String,
    /// The lines the page shows it printing, checked when `check` is set.
    pub expect: Vec<String>,
    pub check: bool,
    pub retry_secs: u64,
}

/// A block the page does not run, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRun {
    pub line: usize,
    pub why: String,
}

/// A page's steps in order, and the blocks it does not run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub not_run: Vec<NotRun>,
}

const PREFIX: &str = "<!-- doc-test:";

/// Reads the marker that starts at `lines[i]`: the mark, and the index of its last line.
fn parse_mark(lines: &[&str], i: usize, file: &str) -> Result<(Mark, usize), String> {
    let first = lines[i].trim();
    let rest = first[PREFIX.len()..].trim();
    let at = |what: &str| format!("{file}:{}: {what}", i + 1);
    if rest == "instead" {
        let end = (i + 1..lines.len())
            .find(|&j| lines[j].trim() == "-->")
            .ok_or_else(|| at("`<!-- doc-test: instead` is not closed by a line `-->`"))?;
        let body = lines[i + 1..end].join("\n");
        if body.trim().is_empty() {
            return Err(at("`doc-test: instead` with no commands"));
        }
        return Ok((Mark::Instead(body), end));
    }
    let Some(inner) = rest.strip_suffix("-->").map(str::trim) else {
        return Err(at(
            "a doc-test marker is one line ending in `-->` (but `instead`, closed by a line `-->`)",
        ));
    };
    if inner == "run" {
        return Ok((Mark::Run, i));
    }
    if let Some(why) = inner.strip_prefix("not run:") {
        if why.trim().is_empty() {
            return Err(at(
                "`not run:` needs the reason (what covers the block instead)",
            ));
        }
        return Ok((Mark::NotRun(why.trim().to_string()), i));
    }
    if let Some(opts) = inner.strip_prefix("check") {
        let opts = opts.trim();
        if opts.is_empty() {
            return Ok((Mark::Check { retry_secs: 0 }, i));
        }
        let secs = opts
            .strip_prefix(',')
            .map(str::trim)
            .and_then(|o| o.strip_prefix("retry"))
            .map(str::trim)
            .and_then(|s| s.strip_suffix('s'))
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(|| {
                at(&format!(
                    "`check{opts}`: write `check` or `check, retry 60s`"
                ))
            })?;
        return Ok((Mark::Check { retry_secs: secs }, i));
    }
    Err(at(&format!(
        "unknown doc-test marker `{inner}`: use run, check, `check, retry Ns`, instead or `not run: WHY`"
    )))
}

/// A console line's prompt: `# ` (the default machine) or `NAME# `.
fn prompt(line: &str) -> Option<(Option<String>, &str)> {
    if let Some(cmd) = line.strip_prefix("# ") {
        return Some((None, cmd));
    }
    let (host, cmd) = line.split_once("# ")?;
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then(|| (Some(host.to_string()), cmd))
}

/// The commands of a console block (its first line is page line `line0 + 1`).
fn console_steps(body: &[&str], line0: usize, mark: &Mark) -> Vec<Step> {
    let (check, retry_secs) = match mark {
        Mark::Check { retry_secs } => (true, *retry_secs),
        _ => (false, 0),
    };
    let mut steps: Vec<Step> = Vec::new();
    let mut i = 0;
    while i < body.len() {
        if let Some((host, cmd)) = prompt(body[i]) {
            let line = line0 + i + 1;
            let mut command = cmd.to_string();
            while command.ends_with('\\') && i + 1 < body.len() {
                i += 1;
                command.push('\n');
                command.push_str(body[i]);
            }
            steps.push(Step {
                line,
                host,
                command,
                expect: Vec::new(),
                check,
                retry_secs,
            });
        } else if let Some(s) = steps.last_mut() {
            s.expect.push(body[i].to_string());
        }
        i += 1;
    }
    steps
}

/// The plan of a page: every `sh` and `console` block must carry a marker.
pub fn plan(md: &str, file: &str) -> Result<Plan, String> {
    let lines: Vec<&str> = md.lines().collect();
    let mut plan = Plan::default();
    let mut errors = Vec::new();
    let mut pending: Option<(Mark, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let t = lines[i].trim_start();
        if t.starts_with(PREFIX) {
            match parse_mark(&lines, i, file) {
                Ok((mark, end)) => {
                    pending = Some((mark, i));
                    i = end + 1;
                }
                Err(e) => {
                    errors.push(e);
                    i += 1;
                }
            }
            continue;
        }
        if let Some(lang) = t.strip_prefix("```") {
            let lang = lang.trim().to_string();
            let end = (i + 1..lines.len())
                .find(|&j| lines[j].trim_start().starts_with("```"))
                .unwrap_or(lines.len());
            let body = &lines[i + 1..end];
            // The marker must be the line right before the fence (the end of an `instead`).
            let mark = pending.take().filter(|(_, at)| {
                let close = if lines[*at].trim() == format!("{PREFIX} instead") {
                    (*at + 1..i)
                        .find(|&j| lines[j].trim() == "-->")
                        .unwrap_or(*at)
                } else {
                    *at
                };
                close + 1 == i
            });
            let runs = lang == "sh" || lang == "console";
            match (mark, runs) {
                (None, true) => errors.push(format!(
                    "{file}:{}: this ```{lang} block has no doc-test marker on the line before it \
                     (run, check, instead or `not run: WHY`)",
                    i + 1
                )),
                (None, false) => {}
                (Some((_, at)), false) => errors.push(format!(
                    "{file}:{}: a doc-test marker before a ```{lang} block: only sh and console \
                     blocks run",
                    at + 1
                )),
                (Some((Mark::NotRun(why), _)), true) => {
                    plan.not_run.push(NotRun { line: i + 1, why })
                }
                (Some((Mark::Instead(body), _)), true) => plan.steps.push(Step {
                    line: i + 1,
                    host: None,
                    command: body,
                    expect: Vec::new(),
                    check: false,
                    retry_secs: 0,
                }),
                (Some((mark, _)), true) if lang == "console" => {
                    let steps = console_steps(body, i + 1, &mark);
                    if steps.is_empty() {
                        errors.push(format!(
                            "{file}:{}: a console block to run with no `# ` command",
                            i + 1
                        ));
                    }
                    plan.steps.extend(steps);
                }
                (Some((mark, _)), true) => {
                    if matches!(mark, Mark::Check { .. }) {
                        errors.push(format!(
                            "{file}:{}: `check` is for console blocks (a sh block shows no output)",
                            i + 1
                        ));
                    }
                    plan.steps.push(Step {
                        line: i + 1,
                        host: None,
                        command: body.join("\n"),
                        expect: Vec::new(),
                        check: false,
                        retry_secs: 0,
                    });
                }
            }
            i = end + 1;
            continue;
        }
        if !t.is_empty()
            && let Some((_, at)) = pending.take()
        {
            // Text between a marker and its block: the marker belongs to no block.
            errors.push(format!(
                "{file}:{}: a doc-test marker must be on the line right before its block",
                at + 1
            ));
        }
        i += 1;
    }
    if let Some((_, at)) = pending {
        errors.push(format!(
            "{file}:{}: a doc-test marker with no block after it",
            at + 1
        ));
    }
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors.join("\n"))
    }
}

/// Whether `c` may be part of a name Kubernetes makes random (a ReplicaSet's hash, a pod's
/// suffix, a CSR's name): its alphabet has no vowels (k8s.io/apimachinery's rand.String).
fn random_char(c: char) -> bool {
    "bcdfghjklmnpqrstvwxz0123456789".contains(c)
}

/// A line as compared: what differs from run to run made the same. Every number is `0`
/// (times, PIDs, addresses, counts, sequence numbers), an age (`5s`, `2m3s`) is `0s`,
/// Kubernetes' random name parts (`-55f4544f78`, `-qzr5x`) and iptables chains' hashes
/// (`KUBE-SVC-LOLE4ISW44XBNF3G`) are `*`, hex digests of 8 digits or more are `*`, and
/// runs of blanks (table columns) are one space.
pub fn normalize(line: &str) -> String {
    let words: Vec<String> = line.split_whitespace().map(normalize_word).collect();
    words.join(" ")
}

fn normalize_word(w: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = w.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        // A random name part: '-' then 5 to 10 characters of the vowel-less alphabet, up to a
        // character that ends a name (a fifth of them have no digit).
        if c == '-' {
            let run = chars[i + 1..]
                .iter()
                .take_while(|c| random_char(**c))
                .count();
            let next = chars.get(i + 1 + run);
            let ends = next.is_none_or(|n| !n.is_ascii_alphanumeric());
            if (5..=10).contains(&run) && ends {
                out.push_str("-*");
                i += 1 + run;
                continue;
            }
        }
        // An iptables chain's hash: 16 of [A-Z2-7] after a '-'.
        if c == '-' {
            let run = chars[i + 1..]
                .iter()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
                .count();
            if run == 16 && chars.get(i + 17).is_none_or(|n| !n.is_ascii_alphanumeric()) {
                out.push_str("-*");
                i += 17;
                continue;
            }
        }
        // A hex digest: 8 or more hex digits, not part of a longer word.
        let starts = i == 0 || !chars[i - 1].is_ascii_alphanumeric();
        if starts && c.is_ascii_hexdigit() {
            let run = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_digit() || ('a'..='f').contains(c))
                .count();
            let ends = chars
                .get(i + run)
                .is_none_or(|n| !n.is_ascii_alphanumeric());
            if run >= 8 && ends && chars[i..i + run].iter().any(char::is_ascii_digit) {
                out.push('*');
                i += run;
                continue;
            }
        }
        if c.is_ascii_digit() {
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            out.push('0');
            continue;
        }
        out.push(c);
        i += 1;
    }
    age(&out)
}

/// `0s`, `0m0s`, `0h0m`, `0d0h` (an age, numbers already `0`) is `0s`.
fn age(w: &str) -> String {
    let mut rest = w;
    let mut parts = 0;
    while let Some(r) = rest.strip_prefix('0') {
        let Some(r) = r.strip_prefix(['s', 'm', 'h', 'd']) else {
            return w.to_string();
        };
        rest = r;
        parts += 1;
    }
    if parts > 0 && rest.is_empty() {
        "0s".to_string()
    } else {
        w.to_string()
    }
}

/// Whether `actual` (normalized) is what `want` (normalized) shows: equal, or with each `...`
/// of `want` standing for any text.
fn line_matches(want: &str, actual: &str) -> bool {
    let pieces: Vec<&str> = want.split("...").map(str::trim).collect();
    if pieces.len() == 1 {
        return want == actual;
    }
    let mut rest = actual;
    for (k, p) in pieces.iter().enumerate() {
        if p.is_empty() {
            continue;
        }
        if k == 0 {
            let Some(r) = rest.strip_prefix(p) else {
                return false;
            };
            rest = r;
        } else if k == pieces.len() - 1 {
            return rest.trim_end().ends_with(p);
        } else {
            let Some(at) = rest.find(p) else {
                return false;
            };
            rest = &rest[at + p.len()..];
        }
    }
    true
}

/// The first line the page shows that the output lacks, in order: each shown line (but
/// blank ones and lines that are only `...`) must match a later line of the output than the
/// one before it. The output may print more than the page shows; never less, never in another
/// order. `None`: all there.
pub fn missing_line(expect: &[String], output: &str) -> Option<String> {
    let actual: Vec<String> = output.lines().map(normalize).collect();
    let mut at = 0;
    for want in expect {
        let w = normalize(want);
        if w.is_empty() || w == "..." {
            continue;
        }
        match actual[at..].iter().position(|a| line_matches(&w, a)) {
            Some(k) => at += k + 1,
            None => return Some(want.clone()),
        }
    }
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const PAGE: &str = "# Title\n\
\n\
<!-- doc-test: run -->\n\
```sh\n\
echo one\n\
echo two\n\
```\n\
\n\
<!-- doc-test: check, retry 30s -->\n\
```console\n\
# kubectl get pods \\\n\
\x20   -o wide\n\
NAME   READY\n\
web-55f4544f78-qzr5x   1/1\n\
w1# ip route\n\
default via 198.18.0.1\n\
```\n\
\n\
<!-- doc-test: instead\n\
cp /shared/* /usr/local/bin/\n\
-->\n\
```sh\n\
dmucctl fetch --kubernetes 1.36\n\
```\n\
<!-- doc-test: not run: the VM test installs the package -->\n\
```sh\n\
apt install ./dmuc.deb\n\
```\n\
```toml\n\
[vars]\n\
```\n";

    #[test]
    fn a_page_becomes_its_steps_in_order_with_their_lines_hosts_and_output() {
        let p = plan(PAGE, "page.md").unwrap();
        let cmds: Vec<(usize, Option<&str>, &str)> = p
            .steps
            .iter()
            .map(|s| (s.line, s.host.as_deref(), s.command.as_str()))
            .collect();
        assert_eq!(
            cmds,
            vec![
                (4, None, "echo one\necho two"),
                (11, None, "kubectl get pods \\\n    -o wide"),
                (15, Some("w1"), "ip route"),
                (22, None, "cp /shared/* /usr/local/bin/"),
            ]
        );
        assert_eq!(
            p.steps[1].expect,
            ["NAME   READY", "web-55f4544f78-qzr5x   1/1"]
        );
        assert!(p.steps[1].check && p.steps[1].retry_secs == 30);
        assert!(!p.steps[0].check && !p.steps[3].check);
        assert_eq!(
            p.not_run,
            [NotRun {
                line: 26,
                why: "the VM test installs the package".into()
            }]
        );
    }

    #[test]
    fn a_block_without_a_marker_or_a_bad_marker_is_an_error_naming_its_line() {
        let e = plan("text\n```sh\nls\n```\n", "a.md").unwrap_err();
        assert!(
            e.contains("a.md:2: this ```sh block has no doc-test marker"),
            "{e}"
        );
        let e = plan("<!-- doc-test: runn -->\n```sh\nls\n```\n", "a.md").unwrap_err();
        assert!(e.contains("a.md:1: unknown doc-test marker `runn`"), "{e}");
        // Both errors of a page at once, the marker's and the block's.
        assert!(e.contains("a.md:2: this ```sh block"), "{e}");
        let e = plan(
            "<!-- doc-test: run -->\n\nSome text.\n```sh\nls\n```\n",
            "a.md",
        )
        .unwrap_err();
        assert!(e.contains("a.md:1: a doc-test marker must be on the line right before"));
        let e = plan("<!-- doc-test: instead\nls\n```sh\nls\n```\n", "a.md").unwrap_err();
        assert!(e.contains("not closed"), "{e}");
        let e = plan("<!-- doc-test: not run: -->\n```sh\nls\n```\n", "a.md").unwrap_err();
        assert!(e.contains("needs the reason"), "{e}");
        let e = plan("<!-- doc-test: check -->\n```sh\nls\n```\n", "a.md").unwrap_err();
        assert!(e.contains("`check` is for console blocks"), "{e}");
        let e = plan(
            "<!-- doc-test: check, retry soon -->\n```console\n# ls\n```\n",
            "a.md",
        )
        .unwrap_err();
        assert!(e.contains("check, retry 60s"), "{e}");
        let e = plan("<!-- doc-test: run -->\n```toml\nx = 1\n```\n", "a.md").unwrap_err();
        assert!(e.contains("only sh and console blocks run"), "{e}");
        let e = plan(
            "<!-- doc-test: run -->\n```console\nno prompt\n```\n",
            "a.md",
        )
        .unwrap_err();
        assert!(e.contains("no `# ` command"), "{e}");
    }

    #[test]
    fn what_differs_between_runs_is_made_the_same() {
        for (a, b) in [
            (
                "#12    13:30:29.821 etcd: starting -> ready",
                "#3 09:01:02.003 etcd: starting -> ready",
            ),
            (
                "web-55f4544f78-qzr5x   0/1     Pending   0          6s",
                "web-7d9c8b6f4d-x2b9k 0/1 Pending 0 2m13s",
            ),
            (
                "web    ClusterIP   10.102.210.193   <none>        80/TCP    0s",
                "web ClusterIP 10.96.14.7 <none> 80/TCP 1h",
            ),
            (
                "KUBE-SVC-LOLE4ISW44XBNF3G  6  --  0.0.0.0/0  10.102.210.193",
                "KUBE-SVC-NPX46M4PTMTKRN6Y 0 -- 0.0.0.0/0 10.96.0.1",
            ),
            (
                "unpacking registry.k8s.io/pause:3.10 (sha256:a02c04d5...)...done",
                "unpacking registry.k8s.io/pause:3.10 (sha256:7031c1b2...)...done",
            ),
            (
                "csr-6bs7w   kubernetes.io/kubelet-serving",
                "csr-x2vzq kubernetes.io/kubelet-serving",
            ),
        ] {
            assert_eq!(normalize(a), normalize(b), "{a} / {b}");
        }
        // What the page says stays said: names, states, words with vowels.
        for (a, b) in [
            ("etcd: starting -> ready", "etcd: starting -> failed"),
            (
                "deployment.apps/web created",
                "deployment.apps/web configured",
            ),
            ("kube-proxy: ready", "kube-scheduler: ready"),
            ("web-proxy", "web-proxi"),
            ("NAME   STATUS", "NAME   READY"),
        ] {
            assert_ne!(normalize(a), normalize(b), "{a} / {b}");
        }
        assert_eq!(
            normalize("  node/vm   condition met "),
            "node/vm condition met"
        );
    }

    #[test]
    fn the_output_must_show_every_line_the_page_shows_in_order() {
        let expect: Vec<String> = ["#2 13:30:29.282 pki: pending -> starting", "...", "done"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let out = "#5 12:00:00.1 pki: pending -> starting\n#6 etcd: pending\ndone\n";
        assert_eq!(missing_line(&expect, out), None);
        assert_eq!(
            missing_line(&expect, "#6 etcd: pending\ndone\n"),
            Some("#2 13:30:29.282 pki: pending -> starting".into())
        );
        // Order counts.
        assert_eq!(
            missing_line(&expect, "done\n#5 01:02:03.4 pki: pending -> starting\n"),
            Some("done".into())
        );
        // `...` inside a line is any text.
        let e = vec!["KUBE-NODEPORTS 0 -- /* kubernetes service nodeports; ... */".to_string()];
        assert_eq!(
            missing_line(
                &e,
                "KUBE-NODEPORTS  0  --  0.0.0.0/0  0.0.0.0/0  /* kubernetes service nodeports; NOTE: this must be the last rule in this chain */"
            )
            .map(|_| ()),
            Some(()),
            "the part before `...` must start the line"
        );
        let e = vec!["KUBE-NODEPORTS 0 -- ... /* kubernetes service nodeports; ... */".to_string()];
        assert_eq!(
            missing_line(
                &e,
                "KUBE-NODEPORTS  0  --  0.0.0.0/0  0.0.0.0/0  /* kubernetes service nodeports; NOTE: this must be the last rule in this chain */"
            ),
            None
        );
    }
}
