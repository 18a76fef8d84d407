//! `dmuc-standin`: plays a cluster component in the demo graph and in tests, where no
//! Kubernetes binaries exist. It listens on a loopback port and answers `GET /health`,
//! `/healthz`, `/readyz` and `/livez` with 503 until `--ready-after` has passed, then 200;
//! prints a log line every `--log-every`; exits with `--exit-code` after `--crash-after` or when
//! `GET /crash` is requested; `--ignore-term` makes it ignore SIGTERM (to test stop
//! escalation); `--fork-child` leaves a grandchild in its process group (to test group stop);
//! `--write-file PATH` writes its PID and start time there (to test ordering).
//!
//! Run under the name of a cluster component (a symlink `kube-apiserver`, `kubelet`, ...), it
//! plays that component instead: see [`persona`].

mod persona;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Opts {
    name: String,
    port: Option<u16>,
    ready_after: Duration,
    log_every: Option<Duration>,
    crash_after: Option<Duration>,
    exit_code: u8,
    ignore_term: bool,
    fork_child: bool,
    write_file: Option<String>,
    exit_now: bool,
}

fn dur(s: &str) -> Result<Duration, String> {
    let (n, mult) = if let Some(v) = s.strip_suffix("ms") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('m') {
        (v, 60.0)
    } else {
        (s, 1.0)
    };
    n.parse::<f64>()
        .map(|x| Duration::from_secs_f64(x * mult))
        .map_err(|_| format!("bad duration {s:?}"))
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        name: "standin".into(),
        port: None,
        ready_after: Duration::ZERO,
        log_every: None,
        crash_after: None,
        exit_code: 1,
        ignore_term: false,
        fork_child: false,
        write_file: None,
        exit_now: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--name" => o.name = val()?,
            "--port" => o.port = Some(val()?.parse().map_err(|_| "bad port")?),
            "--ready-after" => o.ready_after = dur(&val()?)?,
            "--log-every" => o.log_every = Some(dur(&val()?)?),
            "--crash-after" => o.crash_after = Some(dur(&val()?)?),
            "--exit-code" => o.exit_code = val()?.parse().map_err(|_| "bad exit code")?,
            "--ignore-term" => o.ignore_term = true,
            "--fork-child" => o.fork_child = true,
            "--write-file" => o.write_file = Some(val()?),
            "--exit" => o.exit_now = true,
            "-h" | "--help" => {
                println!(
                    "usage: dmuc-standin [--name N] [--port P] [--ready-after D] [--log-every D] [--crash-after D] [--exit-code N] [--ignore-term] [--fork-child] [--write-file PATH] [--exit]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// SIGTERM/SIGINT: say so and exit 0, as a well-behaved server does.
fn exit_on_term(name: &str) {
    if let Ok(mut sigs) = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        let name = name.to_string();
        std::thread::spawn(move || {
            if let Some(s) = sigs.forever().next() {
                println!("[{name}] got signal {s}, shutting down");
                std::process::exit(0);
            }
        });
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let prog = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .and_then(|n| n.to_str())
        .unwrap_or("");
    if persona::NAMES.contains(&prog) {
        exit_on_term(prog);
        return persona::run(prog, &args[1..]);
    }
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dmuc-standin: {e}");
            return ExitCode::from(2);
        }
    };
    let start = Instant::now();
    println!("[{}] starting (pid {})", o.name, std::process::id());
    if let Some(p) = &o.write_file
        && let Err(e) = std::fs::write(p, format!("{} {}\n", std::process::id(), now_ms()))
    {
        eprintln!("[{}] cannot write {p}: {e}", o.name);
    }
    if o.exit_now {
        println!("[{}] exiting with status {}", o.name, o.exit_code);
        return ExitCode::from(o.exit_code);
    }
    if o.ignore_term {
        // SAFETY: setting a signal's disposition to SIG_IGN runs no handler code.
        unsafe {
            libc::signal(libc::SIGTERM, libc::SIG_IGN);
        }
        // Tests wait for this line before they send SIGTERM.
        println!("[{}] ignoring SIGTERM", o.name);
    } else {
        exit_on_term(&o.name);
    }
    if o.fork_child {
        match std::process::Command::new("sleep").arg("3600").spawn() {
            Ok(c) => println!("[{}] grandchild pid {}", o.name, c.id()),
            Err(e) => eprintln!("[{}] cannot fork a child: {e}", o.name),
        }
    }
    let crashed = Arc::new(AtomicBool::new(false));
    if let Some(port) = o.port {
        let listener = match TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => l,
            Err(e) => {
                eprintln!("[{}] cannot listen on 127.0.0.1:{port}: {e}", o.name);
                return ExitCode::from(3);
            }
        };
        println!(
            "[{}] listening on 127.0.0.1:{port}, ready after {:?}",
            o.name, o.ready_after
        );
        let (name, ready_after, code) = (o.name.clone(), o.ready_after, o.exit_code);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let mut first = String::new();
                let _ = BufReader::new(&s).read_line(&mut first);
                let path = first.split_whitespace().nth(1).unwrap_or("/").to_string();
                let ready = start.elapsed() >= ready_after;
                let (status, body) = match path.as_str() {
                    "/crash" => {
                        let _ =
                            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\ncrashing\n");
                        println!("[{name}] crash requested, exiting with status {code}");
                        std::process::exit(code.into());
                    }
                    "/health" | "/healthz" | "/readyz" | "/livez" if ready => ("200 OK", "ok\n"),
                    "/health" | "/healthz" | "/readyz" | "/livez" => {
                        ("503 Service Unavailable", "not ready\n")
                    }
                    _ => ("404 Not Found", "not found\n"),
                };
                let _ = write!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
    }
    let mut n = 0u64;
    let mut announced = o.ready_after.is_zero();
    loop {
        let elapsed = start.elapsed();
        if let Some(c) = o.crash_after
            && elapsed >= c
        {
            println!(
                "[{}] crashing as asked (--crash-after {:?}), status {}",
                o.name, c, o.exit_code
            );
            crashed.store(true, Ordering::SeqCst);
            return ExitCode::from(o.exit_code);
        }
        if !announced && elapsed >= o.ready_after {
            println!("[{}] ready", o.name);
            announced = true;
        }
        // Sleep until the next thing to do: a log line, readiness, or the crash.
        let mut wait = Duration::from_secs(3600);
        if let Some(every) = o.log_every {
            wait = wait.min(every);
        }
        if !announced {
            wait = wait.min(o.ready_after - elapsed);
        }
        if let Some(c) = o.crash_after {
            wait = wait.min(c.saturating_sub(elapsed));
        }
        std::thread::sleep(wait);
        if o.log_every.is_some() {
            n += 1;
            println!("[{}] working... tick {n}", o.name);
        }
    }
}
