//! Probes: one tokio task per active probe, reporting verdict changes (after thresholds) to
//! the runtime. A `log` probe follows the component's log file.

use dmuc_config::{Check, Probe};
use dmuc_core::{ProbeCounter, ProbeRole};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until, timeout};

use crate::msg::Msg;

/// A `log` probe: passes once a line of this run's output matches. It reads the log file
/// the shim writes (control sequences already stripped), following it across rotations.
async fn log_probe(
    regex: &str,
    (path, offset, ino): (PathBuf, u64, Option<u64>),
    comp: String,
    run: u64,
    tx: mpsc::UnboundedSender<Msg>,
) {
    let Ok(re) = regex::Regex::new(regex) else {
        return; // validated with the config: cannot happen
    };
    struct Matcher {
        re: regex::Regex,
        matched: bool,
    }
    impl crate::logs::LineSink for Matcher {
        async fn lines(&mut self, lines: Vec<String>) -> bool {
            self.matched = lines.iter().any(|l| self.re.is_match(l));
            !self.matched
        }
    }
    let mut m = Matcher { re, matched: false };
    let from = crate::logs::From::At(offset, ino);
    match crate::logs::follow_lines(&path, from, &mut m).await {
        Ok(()) if m.matched => {
            let _ = tx.send(Msg::Probe {
                comp,
                run,
                role: ProbeRole::Ready,
                ok: true,
                detail: None,
            });
        }
        Ok(()) => {}
        Err(e) => tracing::warn!(%comp, "log probe cannot follow {}: {e}", path.display()),
    }
}

/// Runs `probe` until aborted, sending a `Msg::Probe` each time its verdict changes.
pub async fn run(
    probe: Probe,
    // By name: a reload may renumber components while a verdict is on its way.
    comp: String,
    run: u64,
    role: ProbeRole,
    tx: mpsc::UnboundedSender<Msg>,
    // The component's log and where this run's output starts in it (offset, inode).
    log: (PathBuf, u64, Option<u64>),
) {
    if let Check::Log { regex } = &probe.check {
        if role == ProbeRole::Ready {
            log_probe(regex, log, comp, run, tx).await;
        }
        return;
    }
    let mut next = Instant::now() + probe.initial_delay;
    let mut counter = ProbeCounter::new(probe.success_threshold, probe.failure_threshold);
    let mut tls = TlsCache::default();
    loop {
        sleep_until(next).await;
        let result = match timeout(probe.timeout, check_with(&probe.check, &mut tls)).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {:?}", probe.timeout)),
        };
        let ok = result.is_ok();
        if let Err(e) = &result {
            tracing::debug!(%comp, ?role, "probe failed: {e}");
        }
        if let Some(verdict) = counter.record(ok) {
            let detail = result.err();
            if tx
                .send(Msg::Probe {
                    comp: comp.clone(),
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
    check_with(c, &mut TlsCache::default()).await
}

/// An `https` probe's TLS client settings, built at its first check and kept for the probe's
/// life (a run of its component): reading and parsing the CA, the client certificate and
/// the system's roots at every check would cost more than the check.
#[derive(Default)]
pub struct TlsCache(Option<Arc<rustls::ClientConfig>>);

/// Runs one check, with the probe's TLS settings (built now if not yet: while that fails,
/// e.g. the CA file is not written yet, each check tries again and says why).
pub async fn check_with(c: &Check, tls_cache: &mut TlsCache) -> Result<(), String> {
    match c {
        Check::Tcp { address } => tokio::net::TcpStream::connect(address.as_str())
            .await
            .map(|_| ())
            .map_err(|e| format!("connect {address}: {e}")),
        Check::Http {
            url,
            status,
            ca,
            cert,
            key,
            insecure,
        } => {
            let tls = TlsOptions {
                ca: ca.as_deref(),
                cert: cert.as_deref(),
                key: key.as_deref(),
                insecure: *insecure,
            };
            http_get(url, *status, &tls, tls_cache).await
        }
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
        Check::Unix { path } => tokio::net::UnixStream::connect(path)
            .await
            .map(drop)
            .map_err(|e| format!("{}: {e}", path.display())),
        // A stat(2) is quicker than the thread hop tokio::fs would make for it.
        Check::File { path } => std::fs::metadata(path)
            .map(|_| ())
            .map_err(|e| format!("{}: {e}", path.display())),
        Check::Log { .. } => Ok(()),
    }
}

/// TLS settings of an `https` probe.
pub struct TlsOptions<'a> {
    /// CA bundle to trust instead of the system's roots.
    pub ca: Option<&'a Path>,
    /// Client certificate.
    pub cert: Option<&'a Path>,
    /// Client key.
    pub key: Option<&'a Path>,
    /// Accept any server certificate.
    pub insecure: bool,
}

/// The system's trust roots, read once per daemon, wherever this system keeps them
/// (`rustls-native-certs`: `SSL_CERT_FILE`/`SSL_CERT_DIR`, then the places distributions use:
/// Debian's bundle, Fedora's, Alpine's, ...). Unreadable entries are logged and skipped.
fn system_roots() -> &'static [rustls_pki_types::CertificateDer<'static>] {
    static ROOTS: std::sync::OnceLock<Vec<rustls_pki_types::CertificateDer<'static>>> =
        std::sync::OnceLock::new();
    ROOTS.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::warn!("system trust roots: {e}");
        }
        found.certs
    })
}

fn tls_config(t: &TlsOptions<'_>) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if t.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
    } else {
        // A configured CA replaces the system's roots, as curl's --cacert and kubectl's
        // certificate-authority do: a cluster's own endpoint is trusted for its CA only.
        let mut roots = rustls::RootCertStore::empty();
        match t.ca {
            Some(ca) => {
                let certs = CertificateDer::pem_file_iter(ca)
                    .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
                for c in certs {
                    let c = c.map_err(|e| format!("CA file {}: {e}", ca.display()))?;
                    roots
                        .add(c)
                        .map_err(|e| format!("CA file {}: {e}", ca.display()))?;
                }
            }
            None => {
                let (_, unusable) = roots.add_parsable_certificates(system_roots().iter().cloned());
                if roots.is_empty() {
                    return Err(format!(
                        "no system trust roots found ({unusable} unusable); set the probe's `ca`"
                    ));
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    match (t.cert, t.key) {
        (Some(cert), Some(key)) => {
            let chain: Result<Vec<_>, _> = CertificateDer::pem_file_iter(cert)
                .map_err(|e| format!("client cert {}: {e}", cert.display()))?
                .collect();
            let chain = chain.map_err(|e| format!("client cert {}: {e}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| format!("client key {}: {e}", key.display()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client cert: {e}"))
        }
        _ => Ok(builder.with_no_client_auth()),
    }
}

/// `insecure = true`: the handshake still happens, the server's certificate is not checked.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A minimal HTTP/1.1 GET over TCP or TLS: enough to read a health endpoint's status line.
async fn http_get(
    url: &str,
    want: Option<u16>,
    tls: &TlsOptions<'_>,
    cache: &mut TlsCache,
) -> Result<(), String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url}: not an http(s) URL"));
    };
    let (hostport, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let has_port = hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !hostport.ends_with(']');
    let addr = if has_port {
        hostport.to_string()
    } else {
        format!("{hostport}:{}", if https { 443 } else { 80 })
    };
    let host = addr
        .rsplit_once(':')
        .map_or(hostport, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: dmucd-probe\r\nConnection: close\r\n\r\n"
    );
    let head = if https {
        let cfg = match &cache.0 {
            Some(cfg) => cfg.clone(),
            None => cache.0.insert(Arc::new(tls_config(tls)?)).clone(),
        };
        let name = rustls_pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("{url}: bad host name {host:?}: {e}"))?;
        let mut s = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| format!("{url}: TLS: {e}"))?;
        exchange(&mut s, &req).await?
    } else {
        let mut s = tcp;
        exchange(&mut s, &req).await?
    };
    let code: u16 = head
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

/// Sends the request and reads up to the end of the status line.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &str,
) -> Result<String, String> {
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
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests;
