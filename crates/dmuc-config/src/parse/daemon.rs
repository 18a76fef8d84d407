//! `[daemon]`: paths, session, log rotation, access, readiness notification.

use super::*;

const DAEMON_KEYS: &[&str] = &[
    "socket",
    "tmux-socket",
    "session",
    "log-dir",
    "state-dir",
    "log-max-size",
    "log-keep",
    "history-limit",
    "crash-loop-exits",
    "crash-loop-window",
    "group",
    "public-status",
    "hold",
    "notify-ready",
    "notify-ready-timeout",
];

impl Cx<'_> {
    pub(super) fn daemon(&mut self, t: &dyn TableLike) -> DaemonConfig {
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
            match super::values::byte_size(item) {
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
        if let Some(n) = self.uint(t, "crash-loop-exits", "daemon", 0, 1_000_000) {
            d.crash_loop_exits = n as u32;
        }
        if let Some((_, span)) = self.get(t, "crash-loop-window")
            && let Some(w) = self.duration(t, "crash-loop-window", "daemon")
        {
            if w.is_zero() || w > std::time::Duration::from_secs(3600) {
                self.err(
                    &span,
                    "daemon.crash-loop-window must be between 1ms and 1h".into(),
                    Some("write it like \"10s\" (the default) or \"1m\"".into()),
                );
            } else {
                d.crash_loop_window = w;
            }
        }
        if let Some((_, span)) = self.get(t, "notify-ready-timeout")
            && let Some(w) = self.duration(t, "notify-ready-timeout", "daemon")
        {
            if w.is_zero() {
                self.err(
                    &span,
                    "daemon.notify-ready-timeout must be more than 0".into(),
                    Some(
                        "write it like \"5m\" (the default): below the unit's TimeoutStartSec"
                            .into(),
                    ),
                );
            } else {
                d.notify_ready_timeout = w;
            }
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
}
