//! Probes: one tokio task per active probe, reporting verdict changes (after thresholds) to
//! the runtime. `log` probes have no task: the shim reports the matching line.

use dmuc_config::{Check, Probe};
use dmuc_core::{ProbeCounter, ProbeRole};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use crate::runtime::Msg;

/// Runs `probe` until aborted, sending a `Msg::Probe` each time its verdict changes.
pub async fn run(
    probe: Probe,
    comp: usize,
    run: u64,
    role: ProbeRole,
    tx: mpsc::UnboundedSender<Msg>,
) {
    if matches!(probe.check, Check::Log { .. }) {
        return;
    }
    let mut next = Instant::now() + probe.initial_delay;
    let mut counter = ProbeCounter::new(probe.success_threshold, probe.failure_threshold);
    loop {
        sleep_until(next).await;
        let result = match timeout(probe.timeout, check(&probe.check)).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", probe.timeout)),
        };
        let ok = result.is_ok();
        if let Err(e) = &result {
            tracing::debug!(comp, ?role, "probe failed: {e}");
        }
        if let Some(verdict) = counter.record(ok) {
            let detail = result.err();
            if tx
                .send(Msg::Probe {
                    comp,
                    run,
                    role,
                    ok: verdict,
                    detail,
                })
                .is_err()
            {
                return;
            }
        }
        // Fixed-rate schedule from the previous slot; skip slots missed by a slow check.
        next += probe.interval;
        let now = Instant::now();
        if next < now {
            next = now;
        }
    }
}

/// Runs one check once.
pub async fn check(c: &Check) -> Result<(), String> {
    match c {
        Check::Tcp { address } => tokio::net::TcpStream::connect(address.as_str())
            .await
            .map(|_| ())
            .map_err(|e| format!("connect {address}: {e}")),
        Check::Http { url, status, .. } => http_get(url, *status).await,
        Check::Exec { command } => {
            let st = tokio::process::Command::new(&command[0])
                .args(&command[1..])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true)
                .status()
                .await
                .map_err(|e| format!("cannot run {:?}: {e}", command[0]))?;
            if st.success() {
                Ok(())
            } else {
                Err(format!("{:?} {st}", command[0]))
            }
        }
        Check::File { path } => tokio::fs::metadata(path)
            .await
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", path.display())),
        Check::Log { .. } => Ok(()),
    }
}

/// A minimal HTTP/1.1 GET: enough to read a status line from a health endpoint.
async fn http_get(url: &str, want: Option<u16>) -> Result<(), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: https probes are not supported yet"))?;
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']')
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let mut s = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: dmucd-probe\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 256];
    while !buf.contains(&b'\n') && buf.len() < 4096 {
        let n = s.read(&mut chunk).await.map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let line = String::from_utf8_lossy(&buf);
    let code: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("{url}: no HTTP status line"))?;
    let ok = match want {
        Some(w) => code == w,
        None => (200..400).contains(&code),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("{url}: HTTP {code}"))
    }
}
