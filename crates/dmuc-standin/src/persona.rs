//! Personas: run as `kube-apiserver`, `kubelet`, `containerd`, ... (a symlink named after the
//! component), the stand-in answers where the real program would, so `config/cluster.toml`
//! runs unchanged with its real probes: HTTPS with the generated certificates for the API
//! server, self-signed HTTPS for the controller manager and the scheduler, plain HTTP for
//! kubelet and kube-proxy, containerd's Unix socket. Like the real programs it refuses to
//! start when a file it is given does not exist, and the kubelet when the CRI socket does not
//! answer, so a wrong path in a profile fails the test that runs it.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// The personas, by program name.
pub const NAMES: &[&str] = &[
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "containerd",
    "ctr",
    "etcd",
];

type Handler = Arc<dyn Fn(&str) -> (u16, String) + Send + Sync>;

/// `--k=v` and `--k v` flags.
fn flags(args: &[String]) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut i = 0;
    while i < args.len() {
        if let Some(f) = args[i].strip_prefix("--") {
            match f.split_once('=') {
                Some((k, v)) => {
                    m.insert(k.to_string(), v.to_string());
                }
                None if args.get(i + 1).is_some_and(|n| !n.starts_with("--")) => {
                    m.insert(f.to_string(), args[i + 1].clone());
                    i += 1;
                }
                None => {
                    m.insert(f.to_string(), "true".into());
                }
            }
        }
        i += 1;
    }
    m
}

/// A `key: value` line of a YAML file, or `key = "value"` of a TOML file (first match).
fn setting(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix(key)?.trim_start();
        let v = rest.strip_prefix(':').or_else(|| rest.strip_prefix('='))?;
        Some(v.trim().trim_matches('"').to_string())
    })
}

fn fail(name: &str, msg: String) -> ExitCode {
    eprintln!("[{name}] error: {msg}");
    println!("[{name}] error: {msg}");
    ExitCode::from(1)
}

/// Serves `handler` on 127.0.0.1:`port`, over TLS when `tls` is given.
fn serve(
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
    handler: Handler,
) -> Result<(), String> {
    let l = TcpListener::bind(("127.0.0.1", port))
        .map_err(|e| format!("listen 127.0.0.1:{port}: {e}"))?;
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(sock) = conn else { continue };
            let (tls, handler) = (tls.clone(), handler.clone());
            std::thread::spawn(move || {
                let _ = match tls {
                    Some(cfg) => rustls::ServerConnection::new(cfg)
                        .map_err(|e| std::io::Error::other(e.to_string()))
                        .and_then(|c| answer(rustls::StreamOwned::new(c, sock), &handler)),
                    None => answer(sock, &handler),
                };
            });
        }
    });
    Ok(())
}

fn answer<S: Read + Write>(mut s: S, handler: &Handler) -> std::io::Result<()> {
    let mut first = String::new();
    {
        let mut r = BufReader::new(&mut s);
        r.read_line(&mut first)?;
        // Drain the headers so the client sees its request read.
        let mut line = String::new();
        while r.read_line(&mut line)? > 2 {
            line.clear();
        }
    }
    let path = first.split_whitespace().nth(1).unwrap_or("/");
    let path = path.split('?').next().unwrap_or(path);
    let (code, body) = handler(path);
    let reason = if code == 200 { "OK" } else { "Error" };
    write!(
        s,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    s.flush()
}

fn tls_from_files(cert: &str, key: &str) -> Result<Arc<rustls::ServerConfig>, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|i| i.collect())
        .map_err(|e| format!("{cert}: {e}"))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{key}: {e}"))?;
    tls(certs, key)
}

fn tls_self_signed() -> Result<Arc<rustls::ServerConfig>, String> {
    let c = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
        .map_err(|e| e.to_string())?;
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(c.signing_key.serialize_der().into());
    tls(vec![c.cert.der().clone()], key)
}

fn tls(
    certs: Vec<rustls_pki_types::CertificateDer<'static>>,
    key: rustls_pki_types::PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn ok_paths(paths: &'static [&'static str]) -> Handler {
    Arc::new(move |p| {
        if paths.contains(&p) {
            (200, "ok".into())
        } else {
            (404, "not found".into())
        }
    })
}

fn port_of(url_or_addr: &str) -> Option<u16> {
    url_or_addr
        .trim_end_matches('/')
        .rsplit(':')
        .next()?
        .split('/')
        .next()?
        .parse()
        .ok()
}

/// Runs persona `name`; returns only on a start-up error (else serves until signalled).
pub fn run(name: &str, args: &[String]) -> ExitCode {
    // As the real programs: `--version` prints the release (DMUC_STANDIN_K8S, a test's
    // choice: the profiles write what that release takes) and exits.
    if args.iter().any(|a| a == "--version") && name.starts_with("kube") {
        let v = std::env::var("DMUC_STANDIN_K8S").unwrap_or_else(|_| "v1.36.0".into());
        println!("Kubernetes {v}");
        return ExitCode::SUCCESS;
    }
    println!(
        "[{name}] stand-in for {name} (pid {}), args: {}",
        std::process::id(),
        args.join(" ")
    );
    let f = flags(args);
    // Like the real programs: a file named on the command line must exist.
    for (k, v) in &f {
        let is_file = [".crt", ".key", ".pub", ".kubeconfig", ".yaml", ".toml"]
            .iter()
            .any(|ext| v.ends_with(ext));
        if v.starts_with('/') && is_file && !Path::new(v).exists() {
            return fail(name, format!("--{k}: open {v}: no such file or directory"));
        }
    }
    let config = f
        .get("config")
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .unwrap_or_default();
    let started = match name {
        "kube-apiserver" => {
            let (Some(cert), Some(key)) = (f.get("tls-cert-file"), f.get("tls-private-key-file"))
            else {
                return fail(
                    name,
                    "--tls-cert-file and --tls-private-key-file are required here".into(),
                );
            };
            let etcd = f
                .get("etcd-servers")
                .and_then(|u| u.split(',').next())
                .and_then(port_of)
                .unwrap_or(2379);
            let port = f
                .get("secure-port")
                .and_then(|p| p.parse().ok())
                .unwrap_or(6443);
            // Ready only while etcd answers, as the real one.
            let handler: Handler = Arc::new(move |p| match p {
                "/readyz" | "/healthz" | "/livez" => {
                    if std::net::TcpStream::connect(("127.0.0.1", etcd)).is_ok() {
                        (200, "ok".into())
                    } else {
                        (500, "[-]etcd failed: connection refused".into())
                    }
                }
                "/version" => (200, "{\"gitVersion\":\"v1.34.0-dmuc-standin\"}".into()),
                _ => (404, "not found".into()),
            });
            tls_from_files(cert, key).and_then(|t| serve(port, Some(t), handler))
        }
        "kube-controller-manager" | "kube-scheduler" => {
            let port = if name == "kube-scheduler" {
                10259
            } else {
                10257
            };
            tls_self_signed()
                .and_then(|t| serve(port, Some(t), ok_paths(&["/healthz", "/livez", "/readyz"])))
        }
        "kubelet" => {
            // The flag up to 1.26, the configuration file's field from 1.27.
            let endpoint = f
                .get("container-runtime-endpoint")
                .cloned()
                .or_else(|| setting(&config, "containerRuntimeEndpoint"))
                .unwrap_or_default();
            let sock = endpoint.trim_start_matches("unix://");
            if let Err(e) = std::os::unix::net::UnixStream::connect(sock) {
                return fail(
                    name,
                    format!(
                        "validate CRI v1 runtime API for endpoint \"{endpoint}\": connect: {e}"
                    ),
                );
            }
            let port = setting(&config, "healthzPort")
                .and_then(|p| p.parse().ok())
                .unwrap_or(10248);
            serve(port, None, ok_paths(&["/healthz"]))
        }
        "kube-proxy" => {
            let port = setting(&config, "healthzBindAddress")
                .as_deref()
                .and_then(port_of)
                .unwrap_or(10256);
            serve(port, None, ok_paths(&["/healthz", "/livez"]))
        }
        "containerd" => {
            let Some(sock) = setting(&config, "address") else {
                return fail(name, "no [grpc] address in the config".into());
            };
            let _ = std::fs::remove_file(&sock);
            match std::os::unix::net::UnixListener::bind(&sock) {
                Ok(l) => {
                    println!("[{name}] serving on {sock}");
                    std::thread::spawn(move || for _ in l.incoming() {});
                    Ok(())
                }
                Err(e) => Err(format!("listen {sock}: {e}")),
            }
        }
        "etcd" => {
            let port = f
                .get("listen-client-urls")
                .and_then(|u| port_of(u))
                .unwrap_or(2379);
            serve(
                port,
                None,
                Arc::new(|p| match p {
                    "/health" => (200, "{\"health\":\"true\"}".into()),
                    _ => (404, "not found".into()),
                }),
            )
        }
        _ => {
            // ctr and anything else: do nothing, successfully.
            return ExitCode::SUCCESS;
        }
    };
    if let Err(e) = started {
        return fail(name, e);
    }
    println!("[{name}] ready");
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_settings() {
        let args: Vec<String> = ["--a=1", "--b", "2", "--c", "--d=x=y"]
            .map(String::from)
            .to_vec();
        let f = flags(&args);
        assert_eq!(f["a"], "1");
        assert_eq!(f["b"], "2");
        assert_eq!(f["c"], "true");
        assert_eq!(f["d"], "x=y");
        let yaml = "kind: X\nhealthzBindAddress: 127.0.0.1:10256\n";
        assert_eq!(
            setting(yaml, "healthzBindAddress").as_deref(),
            Some("127.0.0.1:10256")
        );
        let toml = "[grpc]\n  address = \"/run/c.sock\"\n";
        assert_eq!(setting(toml, "address").as_deref(), Some("/run/c.sock"));
        assert_eq!(port_of("http://127.0.0.1:2379"), Some(2379));
        assert_eq!(port_of("127.0.0.1:10256"), Some(10256));
    }
}
