//! Ordered stop, SIGKILL escalation, process-group stop, nothing left behind.

use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::util::*;

const T: Duration = Duration::from_secs(20);

#[test]
fn shutdown_in_reverse_order_escalates_and_leaves_nothing() {
    let s = standin();
    let toml = format!(
        r#"
[component.base]
command = ["{s}", "--name", "base"]
[component.stubborn]
command = ["{s}", "--name", "stubborn", "--ignore-term"]
after = ["base"]
stop = {{ timeout = "500ms" }}
[component.forker]
command = ["{s}", "--name", "forker", "--fork-child"]
after = ["base"]
"#
    );
    let mut d = Daemon::start(&toml);
    let base = d.wait_state("base", "running", T);
    let stubborn = d.wait_state("stubborn", "running", T);
    let forker = d.wait_state("forker", "running", T);
    let grandchild = d.grandchild_of("forker");
    assert!(alive(grandchild));
    wait_for("the stand-in to ignore SIGTERM", T, || {
        d.log("stubborn").contains("ignoring SIGTERM").then_some(())
    });
    let pids: Vec<u32> = [&base, &stubborn, &forker]
        .iter()
        .map(|c| c["pid"].as_u64().unwrap() as u32)
        .collect();

    assert!(d.tmux_socket().exists());
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    // Nothing left in the runtime directory that looks alive: tmux leaves its socket file.
    assert!(!d.tmux_socket().exists(), "the tmux socket file was left");
    assert!(!d.socket().exists(), "the control socket file was left");
    let ev = d.events();
    let stop_of = |n: &str| {
        ev.iter()
            .position(|e| e["component"] == n && e["to"] == "stopping")
            .unwrap()
    };
    let exit_of = |n: &str| {
        ev.iter()
            .position(|e| e["component"] == n && e["event"] == "exit")
            .unwrap()
    };
    assert!(
        stop_of("base") > exit_of("stubborn"),
        "base stopped before its dependent stubborn had exited"
    );
    assert!(
        stop_of("base") > exit_of("forker"),
        "base stopped before its dependent forker had exited"
    );
    let e = &ev[exit_of("stubborn")];
    assert_eq!(e["signal"], 9, "SIGTERM was ignored, so SIGKILL: {e}");
    assert!(ev.iter().any(|e| e["component"] == "stubborn"
        && e["reason"].as_str().is_some_and(|r| r.contains("SIGKILL"))));
    for pid in pids {
        assert!(
            !alive(pid),
            "component pid {pid} still alive after shutdown"
        );
    }
    assert!(
        !alive(grandchild),
        "the grandchild {grandchild} survived the process-group stop"
    );
    assert!(
        !d.tmux_alive(),
        "the tmux server is still running after shutdown"
    );
}

#[test]
fn process_scope_stop_spares_the_group() {
    let s = standin();
    let toml = format!(
        r#"
[component.runtime]
command = ["{s}", "--name", "runtime", "--fork-child"]
stop = {{ scope = "process" }}
"#
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("runtime", "running", T);
    let grandchild = d.grandchild_of("runtime");
    assert_eq!(d.stop(), Some(0));
    assert!(
        alive(grandchild),
        "scope = process must not signal the rest of the group (containerd's shims)"
    );
}

/// The `tick N` numbers in a stand-in's log, in order.
fn ticks(log: &str) -> Vec<u64> {
    log.lines()
        .filter_map(|l| l.rsplit_once("tick ")?.1.trim().parse().ok())
        .collect()
}

/// Asserts the numbers run without a gap (each one more than the one before).
fn no_gap(name: &str, t: &[u64]) {
    assert!(t.len() > 2, "{name}: too few ticks logged: {t:?}");
    for w in t.windows(2) {
        assert_eq!(
            w[1],
            w[0] + 1,
            "{name}: its log has a gap between ticks {} and {}",
            w[0],
            w[1]
        );
    }
}

/// The text of `name`'s window (`None` while it has none).
fn shown(d: &Daemon, name: &str) -> Option<String> {
    let target = format!("=dmuc:={name}");
    d.windows()
        .iter()
        .any(|w| w.ends_with(&format!(" {name} {name}")))
        .then(|| d.tmux(&["capture-pane", "-p", "-t", &target]))
}

/// Waits until `name`'s window shows a tick later than `after`: live output is back.
fn live_after(d: &Daemon, name: &str, after: u64) -> String {
    wait_for(
        &format!("{name}'s window to show live output after tick {after}"),
        T,
        || {
            let text = shown(d, name)?;
            (ticks(&text).last()? > &after).then_some(text)
        },
    )
}

/// Waits until `name` has a window again, then until it shows a tick logged after that: output
/// that reached the window live, not only the log's last lines dmucd wrote at its top.
fn live_again(d: &Daemon, name: &str) -> String {
    let text = wait_for(&format!("{name}'s window back"), T, || {
        shown(d, name).filter(|t| t.contains("live output continues"))
    });
    assert!(text.contains("kept running"), "{text}");
    let logged = *ticks(&d.log(name)).last().unwrap_or(&0);
    live_after(d, name, logged)
}

#[test]
fn a_killed_tmux_server_costs_no_component_its_life_and_the_windows_come_back() {
    let s = standin();
    let toml = format!(
        r#"
[component.a]
command = ["{s}", "--name", "a", "--log-every", "20ms"]
[component.b]
command = ["{s}", "--name", "b", "--log-every", "20ms"]
after = ["a"]
[component.setup]
kind = "oneshot"
command = ["true"]
"#
    );
    let mut d = Daemon::start(&toml);
    let a = d.wait_state("a", "running", T)["pid"].as_u64().unwrap();
    let b = d.wait_state("b", "running", T)["pid"].as_u64().unwrap();
    d.wait_state("setup", "completed", T);
    let before = *ticks(&d.log("a")).last().unwrap_or(&0);
    live_after(&d, "a", 0);
    let server = d.kill_tmux_server();
    wait_for("a new tmux server", T, || {
        (d.tmux_alive() && d.tmux_pid() != server).then_some(())
    });
    // Both keep their process, and their windows show their live output again.
    live_again(&d, "a");
    live_again(&d, "b");
    for (name, old) in [("a", a), ("b", b)] {
        let c = d.comp(name).unwrap();
        assert_eq!(c["pid"].as_u64(), Some(old), "{name} was restarted: {c}");
        assert_eq!(c["restarts"], 0, "{c}");
        assert_eq!(c["state"], "running", "{c}");
        assert!(alive(old as u32));
    }
    assert!(
        d.events().iter().any(|e| e["event"] == "daemon"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("the tmux server died"))),
        "the events say what happened"
    );
    let ev = d.events();
    let died = ev
        .iter()
        .position(|e| {
            e["event"] == "daemon"
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("the tmux server died"))
        })
        .unwrap();
    assert!(
        !ev[died..]
            .iter()
            .any(|e| e["event"] == "exit" || e["event"] == "state"),
        "nothing exited or changed state: {:?}",
        &ev[died..]
    );
    // The oneshot that had completed is still completed; it has a window again too.
    assert_eq!(d.comp("setup").unwrap()["state"], "completed");
    wait_for("setup's window", T, || shown(&d, "setup"));

    // An operator closes a window: the same, for that component alone.
    d.tmux(&["kill-window", "-t", "=dmuc:=b"]);
    live_again(&d, "b");
    assert_eq!(d.comp("b").unwrap()["pid"].as_u64(), Some(b));

    // A restart goes through the shim in the new window: a new PID, in that window.
    d.ctl_ok(&["restart", "a"]);
    let a2 = d.wait_state("a", "running", T)["pid"].as_u64().unwrap();
    assert_ne!(a2, a);
    assert!(
        wait_for("a's window to show its new run", T, || {
            shown(&d, "a").filter(|t| t.contains("starting again"))
        })
        .contains("starting again")
    );
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    // The logs ran on through it all: no tick lost while no tmux server ran.
    no_gap("b", &ticks(&d.log("b")));
    // a's first run: its ticks up to where the second run starts counting again.
    let t = ticks(&d.log("a"));
    let end = t
        .windows(2)
        .position(|w| w[1] < w[0])
        .map_or(t.len(), |i| i + 1);
    no_gap("a", &t[..end]);
    assert!(
        t[..end].last() > Some(&before),
        "a's log went on after the kill"
    );
    assert!(!alive(a as u32) && !alive(a2 as u32) && !alive(b as u32));
    assert!(
        processes_naming(d.dir.path()).is_empty(),
        "something was left: {:?}",
        processes_naming(d.dir.path())
    );
}

/// Field `n` (1-based, as in proc(5)) of `/proc/PID/stat`.
fn stat_field(pid: u64, n: usize) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(n - 3).unwrap().parse().unwrap()
}

#[test]
fn a_component_runs_before_its_window_which_shows_all_its_output_once_and_passes_ctrl_c_on() {
    let toml = r#"
[component.talk]
command = ["sh", "-c", "echo first-line; echo second-line; exec sleep 1000"]
backoff = { initial = "0s" }
"#;
    let mut d = Daemon::start(toml);
    let pid = d.wait_state("talk", "running", T)["pid"].as_u64().unwrap();
    // dmucd started the shim itself: it is not a tmux pane's process, and it leads a session
    // of its own (no terminal signal meant for dmucd reaches it).
    let shim = stat_field(pid, 4);
    assert_eq!(stat_field(shim, 6), shim, "the shim leads its own session");
    assert_ne!(
        stat_field(shim, 4),
        d.tmux_pid() as u64,
        "the shim is not tmux's child"
    );
    let panes = d.tmux(&["list-panes", "-a", "-F", "#{pane_pid}"]);
    assert!(!panes.lines().any(|p| p == shim.to_string()), "{panes}");
    // Its window shows what it wrote before the window existed, each line once, exactly.
    let text = wait_for("talk's window with its output", T, || {
        shown(&d, "talk").filter(|t| t.contains("second-line"))
    });
    assert_eq!(
        (
            text.matches("first-line").count(),
            text.matches("second-line").count()
        ),
        (1, 1),
        "{text}"
    );
    let window = d.comp("talk").unwrap()["window"].clone();
    assert!(window.is_string(), "talk has no window in status");
    // Ctrl-C in the window reaches the program (the window's own process passes it to the
    // shim); the shim stays, so the restart happens in the same window.
    d.tmux(&["send-keys", "-t", "=dmuc:=talk", "C-c"]);
    let exit = wait_for("talk's exit by SIGINT", T, || {
        d.event(|e| e["component"] == "talk" && e["event"] == "exit")
    });
    assert_eq!(
        (exit["pid"].as_u64(), exit["signal"].as_u64()),
        (Some(pid), Some(2))
    );
    let again = wait_for("talk's second run", T, || {
        let c = d.comp("talk")?;
        (c["state"] == "running" && c["pid"].as_u64() != Some(pid)).then_some(c)
    });
    assert_eq!(again["window"], window, "restarted in the same window");
    assert_eq!(
        stat_field(again["pid"].as_u64().unwrap(), 4),
        shim,
        "by the same shim"
    );
    wait_for("the end and the new run in talk's window", T, || {
        shown(&d, "talk").filter(|t| t.contains("killed by SIGINT") && t.contains("starting again"))
    });
    // The window's process ends with the shim, as a pane's process would: kill -9 of the shim
    // takes its program along (parent-death signal), and the next shim shows in the same
    // window again.
    let second = again["pid"].as_u64().unwrap();
    kill(Pid::from_raw(shim as i32), Signal::SIGKILL).unwrap();
    let third = wait_for("talk's run after its shim was killed", T, || {
        let c = d.comp("talk")?;
        (c["state"] == "running" && c["pid"].as_u64() != Some(second)).then_some(c)
    });
    assert!(!alive(second as u32), "the program outlived its shim");
    let pid3 = third["pid"].as_u64().unwrap();
    assert_ne!(stat_field(pid3, 4), shim, "a new shim");
    assert_eq!(third["window"], window, "in the same window");
    wait_for("talk's window showing its new shim", T, || {
        let live = d.tmux(&["display", "-p", "-t", "=dmuc:=talk", "#{pane_dead}"]);
        let text = shown(&d, "talk")?;
        (live.trim() == "0" && text.contains("second-line")).then_some(())
    });
    assert_eq!(d.stop(), Some(0), "{}", d.stderr());
    assert!(!alive(shim as u32) && !alive(pid3 as u32));
}

#[test]
fn user_and_group_are_dropped_before_exec() {
    if skip_unless_root("user_and_group_are_dropped_before_exec") {
        return;
    }
    let toml = r#"
[component.who]
kind = "oneshot"
user = "nobody"
command = ["sh", "-c", "echo uid=$(id -u) gid=$(id -g)"]
"#;
    let mut d = Daemon::start(toml);
    d.wait_state("who", "completed", T);
    let uid = nix::unistd::User::from_name("nobody").unwrap().unwrap();
    assert!(
        d.log("who")
            .contains(&format!("uid={} gid={}", uid.uid, uid.gid)),
        "{}",
        d.log("who")
    );
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_second_stop_signal_forces_the_shutdown() {
    let s = standin();
    let toml = format!(
        r#"
[component.stubborn]
command = ["{s}", "--name", "stubborn", "--ignore-term"]
stop = {{ timeout = "1m" }}
"#
    );
    let mut d = Daemon::start(&toml);
    let pid = d.wait_state("stubborn", "running", T)["pid"]
        .as_u64()
        .unwrap() as u32;
    let daemon = d.pid();
    wait_for("the stand-in to ignore SIGTERM", T, || {
        d.log("stubborn").contains("ignoring SIGTERM").then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    d.wait_state("stubborn", "stopping", T);
    assert!(
        alive(pid),
        "SIGTERM is ignored and the stop timeout is a minute"
    );
    // The second one: everything is killed now, not after the timeout.
    assert!(d.stop().is_some(), "{}", d.stderr());
    wait_for("the stubborn process to be gone", T, || {
        (!alive(pid)).then_some(())
    });
    assert!(!d.tmux_alive());
}

#[test]
fn programs_that_cannot_start_say_why_in_status_and_log() {
    let toml = r#"
[component.missing]
command = ["no-such-program-dmuc"]
restart = "never"

[component.badcwd]
command = ["true"]
cwd = "/nonexistent-dmuc"
restart = "never"

[component.notexec]
command = ["/"]
restart = "never"

# A bare name is looked up in the program's own PATH, not the daemon's.
[component.ownpath]
command = ["true"]
env = { PATH = "/nonexistent-dmuc" }
restart = "never"

[component.baduser]
command = ["true"]
user = "no-such-user-dmuc"
restart = "never"
"#;
    let mut d = Daemon::start(toml);
    let expect = [
        (
            "missing",
            r#"cannot execute "no-such-program-dmuc": No such file or directory (os error 2)"#,
        ),
        (
            "badcwd",
            "cannot change directory to /nonexistent-dmuc: No such file or directory (os error 2)",
        ),
        (
            "notexec",
            r#"cannot execute "/": Permission denied (os error 13)"#,
        ),
        ("baduser", "no such user: no-such-user-dmuc"),
        (
            "ownpath",
            r#"cannot execute "true": No such file or directory (os error 2)"#,
        ),
    ];
    for (name, why) in expect {
        let c = wait_for(&format!("{name} to end"), T, || {
            d.comp(name).filter(|c| !c["last_exit"].is_null())
        });
        assert!(
            c["last_exit"].as_str().is_some_and(|e| e.contains(why)),
            "{name}: {c}\nexpected {why}"
        );
        assert!(
            d.log(name).contains(&format!("[dmuc] {name}: {why}")),
            "{}",
            d.log(name)
        );
    }
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn a_program_inherits_only_stdin_stdout_and_stderr() {
    // The shim's own descriptors (its link to dmucd, signalfd, log file, pipes, /dev/null)
    // must not leak into the program: read from outside, in the running program's /proc.
    let toml = r#"
[component.fds]
command = ["sleep", "1000"]
"#;
    let mut d = Daemon::start(toml);
    let pid = d.wait_state("fds", "running", T)["pid"].as_u64().unwrap();
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort_unstable();
    assert_eq!(fds, [0, 1, 2]);
    assert_eq!(d.stop(), Some(0));
}

/// The environment of a process, one `KEY=value` per item.
fn environ(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/environ"))
        .unwrap_or_default()
        .split(|&b| b == 0)
        .map(|v| String::from_utf8_lossy(v).into_owned())
        .collect()
}

#[test]
fn the_tmux_server_runs_the_utmp_stand_in_and_nothing_it_starts_inherits_it() {
    // dmucd preloads a do-nothing libutempter into its tmux server (crates/dmuc-noutmp): no
    // setgid helper forked and waited for at each window, no component listed as a login.
    let s = standin();
    let toml = format!(
        r#"
[component.a]
command = ["{s}", "--name", "a"]
"#
    );
    let mut d = Daemon::start(&toml);
    let a = d.wait_state("a", "running", T)["pid"].as_u64().unwrap() as u32;
    let server = d.tmux_pid();
    let maps = std::fs::read_to_string(format!("/proc/{server}/maps")).unwrap();
    assert!(
        maps.contains("/memfd:dmuc-noutmp"),
        "the stand-in is not mapped in the tmux server:\n{maps}"
    );
    // The library reaches the server only: not the component, not any pane's process (the
    // shims, the overview's shell), not tmux's global environment for later windows.
    let preload = |pid: u32| {
        environ(pid)
            .into_iter()
            .find(|v| v.starts_with("LD_PRELOAD="))
    };
    assert_eq!(preload(a), None, "the component inherited the preload");
    let panes = d.tmux(&["list-panes", "-a", "-F", "#{pane_pid}"]);
    let panes: Vec<u32> = panes.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(panes.len() >= 2, "no panes listed: {panes:?}");
    for p in panes {
        assert_eq!(preload(p), None, "pane process {p} inherited the preload");
    }
    let global = d.tmux(&["show-environment", "-g"]);
    assert!(
        !global.contains("LD_PRELOAD="),
        "tmux's global environment keeps the preload:\n{global}"
    );
    assert_eq!(d.stop(), Some(0));
}

/// The processes whose parent is `pid`, with their command names.
fn children(pid: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID ...": the name may hold spaces, so split after the ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let comm = head
            .split_once('(')
            .map(|(_, c)| c.to_string())
            .unwrap_or_default();
        if rest.split_whitespace().nth(1) == Some(&pid.to_string()) {
            out.push((p, comm));
        }
    }
    out
}

#[test]
fn dmucd_is_its_own_tmux_control_client_and_can_use_a_tmux_process_instead() {
    let s = standin();
    let toml = format!(
        r#"
[component.a]
command = ["{s}", "--name", "a"]
"#
    );
    // A tmux that says it is 3.6b (DMUC_TMUX names it): the in-process client does not speak
    // its client messages, so it gets `tmux -C` without being asked.
    let fake = tempfile::tempdir().unwrap();
    let wrapper = fake.path().join("tmux-3.6b");
    std::fs::write(
        &wrapper,
        "#!/bin/sh\n[ \"$1\" = -V ] && { echo 'tmux 3.6b'; exit 0; }\nexec tmux \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let wrapper = wrapper.display().to_string();
    // The tmux on PATH: in-process for the versions that client speaks, else `tmux -C`.
    let v = std::process::Command::new("tmux")
        .arg("-V")
        .output()
        .unwrap();
    let v = dmuc_tmux::parse_version(&String::from_utf8_lossy(&v.stdout));
    // CI's tmux matrix forces the process for whole runs (DMUC_TMUX_CLIENT=process).
    let forced = std::env::var_os("DMUC_TMUX_CLIENT").is_some_and(|v| v == "process");
    for (process, env) in [
        (forced || !dmuc_tmux::native_speaks(v), vec![]),
        (true, vec![("DMUC_TMUX_CLIENT", "process")]),
        (true, vec![("DMUC_TMUX", wrapper.as_str())]),
    ] {
        let mut d = Daemon::start_env(tempfile::tempdir().unwrap(), &toml, &[], &env);
        let first = d.wait_state("a", "running", T)["pid"].as_u64().unwrap();
        let clients = d.tmux(&["list-clients", "-F", "#{client_pid} #{client_control_mode}"]);
        let clients: Vec<&str> = clients.lines().collect();
        assert_eq!(clients.len(), 1, "{clients:?}");
        let (pid, control) = clients[0].split_once(' ').unwrap();
        assert_eq!(control, "1", "{clients:?}");
        let pid: u32 = pid.parse().unwrap();
        let tmux_children: Vec<(u32, String)> = children(d.pid())
            .into_iter()
            .filter(|(_, c)| c.starts_with("tmux"))
            .collect();
        if process {
            // The `tmux -C` child is the client.
            assert_eq!(tmux_children.iter().map(|c| c.0).collect::<Vec<_>>(), [pid]);
        } else {
            // dmucd is the client itself; no tmux process of its own is left (the one that
            // started the server has exited).
            assert_eq!(pid, d.pid(), "{clients:?}");
            assert!(tmux_children.is_empty(), "{tmux_children:?}");
        }
        // Commands go through either way: a restart respawns the pane.
        d.ctl_ok(&["restart", "a"]);
        let second = d.wait_state("a", "running", T)["pid"].as_u64().unwrap();
        assert_ne!(first, second);
        assert_eq!(d.stop(), Some(0));
    }
}

/// A seccomp filter that makes `memfd_create` fail with EPERM (as a sandbox that forbids it
/// would), everything else allowed. Async-signal-safe: two prctl calls on a static program.
fn deny_memfd_create() -> std::io::Result<()> {
    use libc::{BPF_ABS, BPF_JEQ, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, sock_filter, sock_fprog};
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    const NR_MEMFD_CREATE: u32 = 319;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
    let stmt = |code: u32, k: u32| sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| sock_filter {
        code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let filter = [
        stmt(BPF_LD | BPF_W | BPF_ABS, 4), // seccomp_data.arch
        jump(AUDIT_ARCH_X86_64, 1, 0),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        stmt(BPF_LD | BPF_W | BPF_ABS, 0), // seccomp_data.nr
        jump(NR_MEMFD_CREATE, 0, 1),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
        stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    ];
    let prog = sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: prctl with a valid filter program that lives across the call.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const sock_fprog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[test]
#[cfg(target_arch = "x86_64")]
fn without_memfd_create_tmux_runs_as_it_would_by_itself_and_dmucd_says_so() {
    let s = standin();
    let toml = format!(
        r#"
[component.a]
command = ["{s}", "--name", "a"]
"#
    );
    let mut d = Daemon::start_pre_exec(&toml, deny_memfd_create);
    let first = d.wait_state("a", "running", T)["pid"].as_u64().unwrap();
    assert!(
        d.stderr().contains("cannot prepare the stand-in library"),
        "{}",
        d.stderr()
    );
    // No stand-in in the server (the preload needs the memfd), and everything works.
    let server = d.tmux_pid();
    let maps = std::fs::read_to_string(format!("/proc/{server}/maps")).unwrap();
    assert!(!maps.contains("dmuc-noutmp"), "{maps}");
    d.ctl_ok(&["restart", "a"]);
    let second = d.wait_state("a", "running", T)["pid"].as_u64().unwrap();
    assert_ne!(first, second);
    assert_eq!(d.stop(), Some(0));
}

#[test]
fn env_file_is_read_at_each_start_and_a_missing_one_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("a.env");
    let toml = format!(
        r#"
[component.write]
kind = "oneshot"
command = ["sh", "-c", "printf '# made now\nA=from-file\nB=\"two words\"\n' > {f}"]
[component.show]
kind = "oneshot"
command = ["sh", "-c", "echo \"A=$A B=$B C=$C\""]
env = {{ A = "from-env", C = "kept" }}
env-file = "{f}"
after = [{{ component = "write", condition = "completed" }}]
[component.optional]
kind = "oneshot"
command = ["sh", "-c", "echo \"optional D=$D\""]
env-file = "-{f}.missing"
[component.needs]
kind = "oneshot"
command = ["true"]
env-file = "{f}.missing"
"#,
        f = f.display()
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("show", "completed", T);
    // The file was written by the component before: read at the start, its values win.
    assert!(
        d.log("show").contains("A=from-file B=two words C=kept"),
        "{}",
        d.log("show")
    );
    d.wait_state("optional", "completed", T);
    assert!(d.log("optional").contains("optional D="));
    let failed = d.wait_state("needs", "failed", T);
    let why = failed["reason"].as_str().unwrap_or_default().to_string()
        + failed["last_exit"].as_str().unwrap_or_default();
    let events = d.events();
    let said = events
        .iter()
        .filter(|e| e["component"] == "needs")
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        why.contains("env-file") && why.contains("a.env.missing") && why.contains("leading '-'"),
        "{why}\n{said}"
    );
    // The graph shows it, as `dmucctl show` writes it back.
    let shown = d.ctl_ok(&["show", "show"]);
    assert!(
        shown.contains(&format!("env-file = \"{}\"", f.display())),
        "{shown}"
    );
    // A change in the file counts at the next start.
    std::fs::write(&f, "A=changed\n").unwrap();
    d.ctl_ok(&["start", "show"]);
    wait_for("show to run again with the new file", T, || {
        d.log("show").contains("A=changed B= C=kept").then_some(())
    });
}

#[test]
fn args_file_is_read_at_each_start_after_the_command_and_a_missing_one_fails_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("x.args");
    let toml = format!(
        r#"
[component.write]
kind = "oneshot"
command = ["sh", "-c", "printf '# made now\n--one\n\n  --two=a b  \n' > {f}"]
[component.show]
kind = "oneshot"
command = ["sh", "-c", "for a in \"$@\"; do echo \"arg[$a]\"; done", "sh", "--zero"]
args-file = "{f}"
after = [{{ component = "write", condition = "completed" }}]
[component.optional]
kind = "oneshot"
command = ["sh", "-c", "echo \"optional $#\"", "sh"]
args-file = "-{f}.missing"
[component.needs]
kind = "oneshot"
command = ["true"]
args-file = "{f}.missing"
"#,
        f = f.display()
    );
    let mut d = Daemon::start(&toml);
    d.wait_state("show", "completed", T);
    // Written by the component before: read at the start, each line one argument, after the
    // command's own.
    assert!(
        d.log("show")
            .contains("arg[--zero]\narg[--one]\narg[--two=a b]\n"),
        "{}",
        d.log("show")
    );
    d.wait_state("optional", "completed", T);
    assert!(d.log("optional").contains("optional 0"));
    let failed = d.wait_state("needs", "failed", T);
    let why = failed["reason"].as_str().unwrap_or_default().to_string()
        + failed["last_exit"].as_str().unwrap_or_default();
    assert!(
        why.contains("args-file") && why.contains("x.args.missing") && why.contains("leading '-'"),
        "{why}"
    );
    let shown = d.ctl_ok(&["show", "show"]);
    assert!(
        shown.contains(&format!("args-file = \"{}\"", f.display())),
        "{shown}"
    );
    // A change in the file counts at the next start.
    std::fs::write(&f, "--changed\n").unwrap();
    d.ctl_ok(&["start", "show"]);
    wait_for("show to run again with the new file", T, || {
        d.log("show")
            .contains("arg[--zero]\narg[--changed]\n")
            .then_some(())
    });
}
