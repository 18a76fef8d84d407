//! `dmucctl`: the thin client of dmucd. It parses arguments, sends one request, prints the
//! reply; all logic lives in the daemon. `check` (config validation) is here too; the
//! operator's tools (`pki`, `fetch`, `doctor`, `reset`) are parsed here, for one help and one
//! set of completions, and run by `dmucctl-tools` (crates/dmucctl-tools).
//!
//! Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 daemon not reachable.

#![forbid(unsafe_code)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod analyze;
mod cli;
mod keys;
mod plot;
mod render;
mod usage;

use std::io::{IsTerminal, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use dmuc_proto::{
    Action, ActionResult, ErrorCode, EventRecord, EventWhat, GraphResult, State, StatusResult,
    StreamItem, Verb,
};
use serde_json::Value;

use cli::{ActionArgs, Cli, Cmd};
use dmuc_client::{CallError, Client};
use render::Style;

use dmuc_client::{FAILED, OK, default_socket, report, tmux_program};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let style = Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let socket = cli.socket.clone().unwrap_or_else(default_socket);
    let code = match run(cli.cmd, &socket, style) {
        Ok(c) => c,
        Err(e) => report(&e),
    };
    ExitCode::from(code)
}

fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, CallError> {
    serde_json::from_value(v).map_err(|e| CallError::Broken(format!("unexpected reply: {e}")))
}

fn run(cmd: Cmd, socket: &Path, style: Style) -> Result<u8, CallError> {
    let mut out = std::io::stdout().lock();
    match cmd {
        Cmd::Check { file, vars } => {
            let vars = vars.into_iter().collect();
            return Ok(match dmuc_config::load_file(&file, &vars) {
                Ok(cfg) => {
                    print!("{}", dmuc_config::summary(&cfg));
                    OK
                }
                Err(e) => {
                    eprintln!("{e}");
                    FAILED
                }
            });
        }
        Cmd::Tool(_) => return Ok(run_tools()),
        Cmd::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "dmucctl", &mut out);
            return Ok(OK);
        }
        Cmd::Man => {
            let _ = clap_mangen::Man::new(Cli::command()).render(&mut out);
            return Ok(OK);
        }
        Cmd::Version => {
            println!(
                "dmucctl {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                dmuc_proto::VERSION
            );
            match Client::connect(socket).and_then(|mut c| c.hello().cloned()) {
                Ok(h) => println!("{} (protocol {}, pid {})", h.server, h.version, h.pid),
                Err(CallError::Unreachable { .. }) => {
                    println!("dmucd: not reachable at {}", socket.display())
                }
                Err(e) => return Err(e),
            }
            return Ok(OK);
        }
        _ => {}
    }
    let mut c = Client::connect(socket)?;
    match cmd {
        Cmd::Status { names, watch, .. } if watch => return watch_status(c, socket, names, style),
        Cmd::Status { names, wide, .. } if wide => {
            let s: StatusResult = c.call_as(Verb::Status { names, text: None })?;
            let snap = usage::snapshot();
            let _ = write!(
                out,
                "{}",
                usage::table(&usage::lifetime_rows(&s.components, &snap))
            );
        }
        Cmd::Top { delay, iterations } => return top(&mut c, delay, iterations),
        Cmd::Status { names, json, .. } => {
            if json {
                let v = c.call(Verb::Status { names, text: None })?;
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(&v).unwrap_or_default()
                );
            } else {
                let s: StatusResult = c.call_as(Verb::Status { names, text: None })?;
                let _ = write!(out, "{}", dmuc_proto::render::status_text(&s, style));
            }
        }
        Cmd::Start(a) => return action(&mut c, Verb::Start, a, style),
        Cmd::Stop(a) => return action(&mut c, Verb::Stop, a, style),
        Cmd::Restart(a) => return action(&mut c, Verb::Restart, a, style),
        Cmd::Signal {
            name,
            signal,
            group,
        } => {
            let v = c.call(Verb::Signal {
                name: name.clone(),
                signal,
                group,
            })?;
            let _ = writeln!(
                out,
                "{name}: sent {} to {}{}",
                v["signal"].as_str().unwrap_or("?"),
                if group { "process group " } else { "pid " },
                v["pid"]
            );
        }
        Cmd::Logs {
            name,
            lines,
            follow,
        } => {
            let verb = Verb::Logs {
                name,
                lines: Some(lines),
                follow,
            };
            let v = c.stream(verb, |item| {
                if let StreamItem::Lines(ls) = item {
                    for l in ls {
                        if writeln!(out, "{l}").is_err() {
                            return false; // stdout closed (| head)
                        }
                    }
                    let _ = out.flush();
                }
                true
            })?;
            if let Some(n) = v["truncated"].as_u64().filter(|&n| n > 0) {
                eprintln!(
                    "dmucctl: {n} older lines left out (one reply holds about 700 KiB); the log files have them all"
                );
            }
            for l in v["lines"].as_array().into_iter().flatten() {
                let _ = writeln!(out, "{}", l.as_str().unwrap_or_default());
            }
        }
        Cmd::Events {
            follow,
            since,
            json,
        } => {
            let mut print = |e: &EventRecord| -> bool {
                let line = if json {
                    serde_json::to_string(e).unwrap_or_default()
                } else {
                    render::event_line(e, style)
                };
                let ok = writeln!(out, "{line}").is_ok();
                let _ = out.flush();
                ok
            };
            // As journalctl: without --since, `events` says when it shows only the recent
            // ones, and `-f` shows the last 10 before it follows (resuming after them, so
            // nothing falls between).
            let mut since = since;
            if since.is_none() {
                let recent = recent_events(&mut c)?;
                let shown = if follow {
                    &recent[recent.len().saturating_sub(FOLLOW_BACKLOG)..]
                } else {
                    &recent[..]
                };
                if let Some(first) = shown.first()
                    && first.seq > 1
                {
                    eprintln!(
                        "-- events from #{} (the {} before it: dmucctl events --since 0)",
                        first.seq,
                        first.seq - 1
                    );
                }
                for e in shown {
                    if !print(e) {
                        return Ok(OK);
                    }
                }
                if !follow {
                    return Ok(OK);
                }
                since = Some(recent.last().map_or(0, |e| e.seq));
            }
            let v = c.stream(Verb::Events { since, follow }, |item| match item {
                StreamItem::Event(e) => print(&e),
                StreamItem::Dropped(n) => {
                    eprintln!("dmucctl: {n} events dropped (this terminal read too slowly); `dmucctl events --since SEQ` has them");
                    true
                }
                StreamItem::Lines(_) => true,
            })?;
            let events: Vec<EventRecord> =
                parse(v.get("events").cloned().unwrap_or(Value::Array(vec![])))?;
            for e in &events {
                print(e);
            }
        }
        Cmd::Analyze {
            name,
            since,
            until,
            json,
        } => {
            let a = match analysis(&mut c, since, until, name.as_deref())? {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("dmucctl analyze: {e}");
                    return Ok(FAILED);
                }
            };
            let text = if json {
                serde_json::to_string(&a).unwrap_or_default() + "\n"
            } else {
                analyze::render(&a)
            };
            let _ = write!(out, "{text}");
        }
        Cmd::Plot { name, since, until } => {
            match analysis(&mut c, since, until, name.as_deref())? {
                Ok(a) => {
                    let _ = write!(out, "{}", plot::svg(&a));
                }
                Err(e) => {
                    eprintln!("dmucctl plot: {e}");
                    return Ok(FAILED);
                }
            }
        }
        Cmd::Graph { dot } => {
            let g: GraphResult = parse(c.call(Verb::Graph {})?)?;
            let text = if dot {
                render::graph_dot(&g)
            } else {
                render::graph_text(&g, style)
            };
            let _ = write!(out, "{text}");
        }
        Cmd::Show { names, json } => {
            let v = c.call(Verb::Show { names })?;
            let text = if json {
                format!("{v:#}\n")
            } else {
                render::show(&parse(v)?)
            };
            let _ = write!(out, "{text}");
        }
        Cmd::Reload { dry_run } => {
            let r: dmuc_proto::ReloadResult = parse(c.call(Verb::Reload { dry_run })?)?;
            let _ = write!(out, "{}", render::reload_plan(&r, dry_run));
        }
        Cmd::Shutdown { no_wait } if no_wait => {
            c.call(Verb::Shutdown {})?;
            let pid = c.hello()?.pid;
            let _ = writeln!(out, "dmucd (pid {pid}) is shutting down");
        }
        Cmd::Shutdown { .. } => {
            // The ordered stop's progress: the events from the last one before the request
            // on, subscribed to on this connection before the shutdown is asked on it (a
            // connection's requests are taken in order: nothing is missed), until dmucd
            // closes it as it exits.
            let pid = c.hello()?.pid;
            let recent = recent_events(&mut c)?;
            let follow = c.send(Verb::Events {
                since: Some(recent.last().map_or(0, |e| e.seq)),
                follow: true,
            })?;
            let shutdown = c.send(Verb::Shutdown {})?;
            let _ = writeln!(out, "dmucd (pid {pid}) is stopping every component...");
            let _ = out.flush();
            // Ends with the daemon: a closed connection is the normal end here.
            while let Ok(Some(r)) = c.frame() {
                match r.body {
                    dmuc_proto::Body::Stream(StreamItem::Event(e))
                        if r.id == Some(follow) && stop_progress(&e) =>
                    {
                        let _ = writeln!(out, "{}", render::event_line(&e, style));
                        let _ = out.flush();
                    }
                    dmuc_proto::Body::Error(e) if r.id == Some(shutdown) => {
                        return Err(CallError::Remote(e));
                    }
                    _ => {}
                }
            }
            c.wait_closed();
            let _ = writeln!(out, "dmucd stopped");
        }
        Cmd::Attach { name } => {
            let s: StatusResult = parse(c.call(Verb::Status {
                names: name.iter().cloned().collect(),
                text: None,
            })?)?;
            let target = match &name {
                Some(n) => format!("={}:={n}", s.daemon.session),
                None => format!("={}:=Overview", s.daemon.session),
            };
            drop(c);
            let err = std::process::Command::new(tmux_program())
                .arg("-S")
                .arg(&s.daemon.tmux_socket)
                .args(["attach-session", "-t", &target])
                // Inside another tmux, attaching to ours is what the operator asked for.
                .env_remove("TMUX")
                .exec();
            eprintln!("dmucctl: cannot run tmux: {err}");
            return Ok(FAILED);
        }
        Cmd::Check { .. } | Cmd::Tool(_) | Cmd::Completions { .. } | Cmd::Man | Cmd::Version => {}
    }
    Ok(OK)
}

/// `status --watch`: redraws the table whenever an event arrives (and every second, for
/// the uptimes), until the daemon goes away.
fn watch_status(
    mut c: Client,
    socket: &Path,
    names: Vec<String>,
    style: Style,
) -> Result<u8, CallError> {
    let mut follow = Client::connect(socket)?;
    follow.hello()?; // its reply must not count as an event below
    follow.send(Verb::Events {
        since: None,
        follow: true,
    })?;
    let mut out = std::io::stdout().lock();
    let mut fetch = true;
    let mut s: Option<(StatusResult, std::time::Instant)> = None;
    loop {
        if fetch || s.is_none() {
            let reply = c.call(Verb::Status {
                names: names.clone(),
                text: None,
            });
            // A shutdown sends events and then closes both connections: the status asked
            // for after the last event may meet a closed socket. That is the daemon going
            // away (the normal end) when the event stream ends too.
            if let Err(CallError::Broken(_)) = &reply
                && follow_ends(&mut follow)?
            {
                return Ok(OK);
            }
            let st: StatusResult = parse(reply?)?;
            s = Some((st, std::time::Instant::now()));
        }
        let Some((st, at)) = &s else { continue };
        // Between events only the clock moves: age the uptimes here rather than ask dmucd
        // again, so a watching overview costs the daemon no wakeups.
        let age = at.elapsed().as_millis() as u64;
        let mut comps = st.components.clone();
        for c in &mut comps {
            c.uptime_ms = c.uptime_ms.map(|u| u + age);
        }
        let up = comps.iter().filter(|c| c.state.is_up()).count();
        let _ = write!(out, "\x1b[H\x1b[2J");
        let _ = writeln!(
            out,
            "dmuc: {up}/{} up · dmucd pid {} · up {}{}\n",
            comps.len(),
            st.daemon.pid,
            render::duration(st.daemon.uptime_ms + age),
            if st.daemon.stopping {
                " · shutting down"
            } else {
                ""
            }
        );
        let _ = write!(out, "{}", render::status_table(&comps, style));
        let _ = writeln!(
            out,
            "\nC-b w: windows · C-b n/p: next/previous · dmucctl logs -f NAME · dmucctl events -f"
        );
        let _ = out.flush();
        // Wait for an event, then take whatever else is queued before fetching again.
        fetch = false;
        let mut timeout = Duration::from_secs(1);
        loop {
            match follow.frame_within(Some(timeout))? {
                None => break,
                Some(None) => return Ok(OK),
                Some(Some(_)) => {
                    fetch = true;
                    timeout = Duration::from_millis(20);
                }
            }
        }
    }
}

/// How many recent events `events -f` shows before it follows (journalctl's 10).
const FOLLOW_BACKLOG: usize = 10;

/// `dmucctl top`: a status and a /proc snapshot every `delay` seconds, CPU % over the
/// interval. The sleep is the refresh rate the operator asked for, not a wait for an event.
fn top(c: &mut Client, delay: f64, iterations: Option<u64>) -> Result<u8, CallError> {
    if !(delay.is_finite() && delay > 0.0) {
        eprintln!("dmucctl top: --delay must be a positive number of seconds");
        return Ok(dmuc_client::USAGE);
    }
    let tty = std::io::stdout().is_terminal();
    // `q` quits, as in top (the terminal is put back when `keys` goes).
    let keys = if tty { keys::Keys::new() } else { None };
    let mut before: std::collections::HashMap<u32, usage::Usage> = Default::default();
    // The previous snapshot's uptime: CPU % is over the time since.
    let mut last: Option<f64> = None;
    let mut n = 0;
    loop {
        let s: StatusResult = c.call_as(Verb::Status {
            names: vec![],
            text: None,
        })?;
        let snap = usage::snapshot();
        let secs = last.map_or(0.0, |up| snap.uptime - up);
        let rows = usage::interval_rows(&s.components, &snap, &before, secs);
        let mut frame = String::new();
        if tty {
            frame.push_str("\x1b[H\x1b[2J");
        }
        let busy: f64 = rows.iter().filter_map(|r| r.cpu).sum();
        let mem: u64 = rows.iter().filter_map(|r| r.usage.map(|u| u.rss)).sum();
        frame.push_str(&format!(
            "dmuc top: {} components, CPU {busy:.1} %, memory {} ({}; every {delay}s{})\n\n",
            s.components.len(),
            usage::bytes(mem),
            if last.is_some() {
                "CPU over the interval"
            } else {
                "CPU since each start, until the next refresh"
            },
            if keys.is_some() {
                ", q quits"
            } else if tty {
                ", Ctrl-C quits"
            } else {
                ""
            }
        ));
        frame.push_str(&usage::table(&rows));
        let mut out = std::io::stdout().lock();
        if write!(out, "{frame}").and_then(|()| out.flush()).is_err() {
            return Ok(OK); // the reader went away (a pipe into head)
        }
        drop(out);
        before = s
            .components
            .iter()
            .filter_map(|c| Some((c.pid?, snap.group(c.pid?)?)))
            .collect();
        last = Some(snap.uptime);
        n += 1;
        if iterations.is_some_and(|max| n >= max) {
            return Ok(OK);
        }
        if !tty {
            println!();
        }
        let every = Duration::from_secs_f64(delay);
        match &keys {
            Some(k) => {
                if k.wait(every) {
                    return Ok(OK);
                }
            }
            None => std::thread::sleep(every), // the refresh interval the operator asked for
        }
    }
}

/// `analyze`'s answer from the daemon's graph and event log (the inner error: nothing to
/// analyse, or no such component).
fn analysis(
    c: &mut Client,
    since: Option<u64>,
    until: Option<u64>,
    name: Option<&str>,
) -> Result<Result<analyze::Analysis, String>, CallError> {
    let g: GraphResult = parse(c.call(Verb::Graph {})?)?;
    let events = event_log(c, since)?;
    let names: Vec<String> = g.nodes.iter().map(|n| n.name.clone()).collect();
    Ok(analyze::analyze(
        &events, &names, &g.edges, since, until, name,
    ))
}

/// The daemon's recent events: its answer to `events` without `since`.
fn recent_events(c: &mut Client) -> Result<Vec<EventRecord>, CallError> {
    let v = c.call(Verb::Events {
        since: None,
        follow: false,
    })?;
    parse(v.get("events").cloned().unwrap_or(Value::Array(vec![])))
}

/// The event log after `since` (all of it without), in order: streamed one event per frame
/// (a reply of thousands would not fit one), up to the last event there was when asked.
/// Uses up the connection (a stream is left by dropping it).
fn event_log(c: &mut Client, since: Option<u64>) -> Result<Vec<EventRecord>, CallError> {
    let recent = recent_events(c)?;
    let Some(last) = recent.last().map(|e| e.seq) else {
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    if since.is_some_and(|s| s >= last) {
        return Ok(events);
    }
    c.stream(
        Verb::Events {
            since: Some(since.unwrap_or(0)),
            follow: true,
        },
        |item| match item {
            StreamItem::Event(e) => {
                let done = e.seq >= last;
                events.push(e);
                !done
            }
            _ => true,
        },
    )?;
    Ok(events)
}

/// The events `shutdown` prints as the ordered stop goes: each component asked to stop,
/// stopped (or killed at its stop timeout), and what dmucd says of the whole.
fn stop_progress(e: &EventRecord) -> bool {
    match &e.what {
        EventWhat::State { to, .. } => matches!(to, State::Stopping | State::Stopped),
        EventWhat::Exit { .. } | EventWhat::Daemon { .. } => true,
        _ => false,
    }
}

fn follow_ends(follow: &mut Client) -> Result<bool, CallError> {
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        match follow.frame_within(Some(left)) {
            Ok(None) => return Ok(false),
            Ok(Some(None)) | Err(CallError::Broken(_)) => return Ok(true),
            Ok(Some(Some(_))) => {}
            Err(e) => return Err(e),
        }
    }
}

fn action(
    c: &mut Client,
    make: fn(Action) -> Verb,
    a: ActionArgs,
    style: Style,
) -> Result<u8, CallError> {
    let verb = make(Action {
        names: a.names,
        wait: !a.no_wait,
        timeout_ms: Some(a.timeout.as_millis() as u64),
    });
    let print_changes = |v: &Value| {
        let changes: Vec<EventRecord> = serde_json::from_value(v.clone()).unwrap_or_default();
        for e in &changes {
            println!("{}", render::event_line(e, style));
        }
    };
    match c.call(verb) {
        Ok(v) => {
            let r: ActionResult = parse(v)?;
            if r.done {
                for e in &r.changes {
                    println!("{}", render::event_line(e, style));
                }
                println!("done");
            } else {
                println!("requested");
            }
            Ok(OK)
        }
        Err(CallError::Remote(e)) if matches!(e.code, ErrorCode::Failed | ErrorCode::Timeout) => {
            if let Some(d) = &e.data {
                print_changes(d);
            }
            Err(CallError::Remote(e))
        }
        Err(e) => Err(e),
    }
}

/// Runs the operator's tools: `dmucctl-tools` (beside this program, else on `PATH`) with
/// this command line. Returns only if it cannot be started.
fn run_tools() -> u8 {
    let exe = std::env::current_exe().ok();
    let beside = exe
        .as_ref()
        .and_then(|e| e.parent())
        .map(|d| d.join("dmucctl-tools"))
        .filter(|p| p.is_file());
    let prog = beside.unwrap_or_else(|| PathBuf::from("dmucctl-tools"));
    let err = std::process::Command::new(&prog)
        .arg0("dmucctl")
        .args(std::env::args_os().skip(1))
        .exec();
    eprintln!("dmucctl: cannot run {}: {err}", prog.display());
    eprintln!("hint: install dmucctl-tools beside dmucctl (cargo build --workspace builds it)");
    127
}
