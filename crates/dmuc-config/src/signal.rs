//! Signal names, as written in configs and on the command line.

const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", libc::SIGHUP),
    ("SIGINT", libc::SIGINT),
    ("SIGQUIT", libc::SIGQUIT),
    ("SIGKILL", libc::SIGKILL),
    ("SIGUSR1", libc::SIGUSR1),
    ("SIGUSR2", libc::SIGUSR2),
    ("SIGTERM", libc::SIGTERM),
    ("SIGCONT", libc::SIGCONT),
    ("SIGSTOP", libc::SIGSTOP),
    ("SIGWINCH", libc::SIGWINCH),
    ("SIGPWR", libc::SIGPWR),
    ("SIGABRT", libc::SIGABRT),
    ("SIGALRM", libc::SIGALRM),
];

/// Parses `SIGTERM`, `TERM`, `term` or a number into a signal number.
pub fn parse_signal(s: &str) -> Result<i32, String> {
    if let Ok(n) = s.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(format!("signal number {n} is out of range 1..=64"));
    }
    let up = s.to_ascii_uppercase();
    let full = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    SIGNALS
        .iter()
        .find(|(n, _)| *n == full)
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("unknown signal '{s}'"))
}

/// The conventional name of a signal number, e.g. `SIGTERM`.
pub fn signal_name(n: i32) -> String {
    SIGNALS
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(k, _)| (*k).to_string())
        .unwrap_or_else(|| format!("signal {n}"))
}

/// Names accepted by [`parse_signal`], for hints.
pub fn known_names() -> Vec<&'static str> {
    SIGNALS.iter().map(|(n, _)| *n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse_signal("SIGTERM"), Ok(15));
        assert_eq!(parse_signal("term"), Ok(15));
        assert_eq!(parse_signal("KILL"), Ok(9));
        assert_eq!(parse_signal("10"), Ok(10));
        assert!(parse_signal("SIGFOO").is_err());
        assert!(parse_signal("0").is_err());
        assert_eq!(signal_name(9), "SIGKILL");
    }
}
