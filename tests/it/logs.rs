//! Log files: content, control sequences stripped, rotation.

use std::time::Duration;

use crate::util::*;

#[test]
fn log_content_is_clean_and_rotated_without_loss() {
    let toml = r#"
[daemon]
log-max-size = 4096
log-keep = 3
[component.chatty]
kind = "oneshot"
command = ["sh", "-c", "printf '\\033[31mred\\033[0m\\r\\n'; i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo line-$i-padding-padding; done"]
"#;
    let mut d = Daemon::start(toml);
    d.wait_state("chatty", "completed", Duration::from_secs(20));
    let read = |n: &str| std::fs::read_to_string(d.path(&format!("log/{n}"))).unwrap_or_default();
    assert!(d.path("log/chatty.log.1").exists(), "no rotation happened");
    assert!(
        !d.path("log/chatty.log.4").exists(),
        "more than log-keep files kept"
    );
    let all = format!(
        "{}{}{}{}",
        read("chatty.log.3"),
        read("chatty.log.2"),
        read("chatty.log.1"),
        read("chatty.log")
    );
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.last(), Some(&"line-1000-padding-padding"));
    // What remains is contiguous: no line lost or reordered across rotations.
    let nums: Vec<u32> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("line-")?.split('-').next()?.parse().ok())
        .collect();
    for w in nums.windows(2) {
        assert_eq!(w[1], w[0] + 1, "gap in the rotated logs");
    }
    assert!(
        !all.contains('\x1b') && !all.contains('\r'),
        "control sequences reached the log"
    );
    for f in ["chatty.log.1", "chatty.log.2", "chatty.log.3"] {
        assert!(
            read(f).len() as u64 >= 4096 && read(f).ends_with('\n'),
            "{f} rotated early or mid-line"
        );
    }
    assert_eq!(d.stop(), Some(0));
}
