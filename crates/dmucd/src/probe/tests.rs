//! Each check against real local servers (loopback only). HTTPS runs against `openssl
//! s_server` with a CA and leaf certificate made for the test.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

async fn http_server(status: &'static str) -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").as_bytes())
                .await;
        }
    });
    port
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn tcp_http_exec_file() {
    let port = http_server("200 OK").await;
    assert!(
        check(&Check::Tcp {
            address: format!("127.0.0.1:{port}")
        })
        .await
        .is_ok()
    );
    assert!(
        check(&Check::Tcp {
            address: format!("127.0.0.1:{}", free_port())
        })
        .await
        .is_err()
    );

    let http = |url: String, status| Check::Http {
        url,
        status,
        ca: None,
        cert: None,
        key: None,
        insecure: false,
    };
    assert!(
        check(&http(format!("http://127.0.0.1:{port}/health"), None))
            .await
            .is_ok()
    );
    assert!(
        check(&http(format!("http://127.0.0.1:{port}/health"), Some(200)))
            .await
            .is_ok()
    );
    assert!(
        check(&http(format!("http://127.0.0.1:{port}/health"), Some(204)))
            .await
            .unwrap_err()
            .contains("HTTP 200")
    );
    let bad = http_server("503 Service Unavailable").await;
    assert!(
        check(&http(format!("http://127.0.0.1:{bad}/readyz"), None))
            .await
            .unwrap_err()
            .contains("HTTP 503")
    );

    assert!(
        check(&Check::Exec {
            command: vec!["true".into()]
        })
        .await
        .is_ok()
    );
    assert!(
        check(&Check::Exec {
            command: vec!["false".into()]
        })
        .await
        .is_err()
    );
    assert!(
        check(&Check::Exec {
            command: vec!["/nonexistent/x".into()]
        })
        .await
        .unwrap_err()
        .contains("cannot run")
    );

    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("sock");
    assert!(check(&Check::File { path: f.clone() }).await.is_err());
    std::fs::write(&f, "").unwrap();
    assert!(check(&Check::File { path: f.clone() }).await.is_ok());

    // unix: a file is not enough, nor a socket nobody listens on; a listener is.
    assert!(check(&Check::Unix { path: f }).await.is_err());
    let s = dir.path().join("real.sock");
    let l = std::os::unix::net::UnixListener::bind(&s).unwrap();
    assert!(check(&Check::Unix { path: s.clone() }).await.is_ok());
    drop(l);
    assert!(check(&Check::Unix { path: s }).await.is_err());
}

#[tokio::test]
async fn probe_loop_reports_verdict_changes_after_thresholds() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("flag");
    let probe = Probe {
        check: Check::File { path: f.clone() },
        interval: Duration::from_millis(20),
        timeout: Duration::from_secs(1),
        initial_delay: Duration::ZERO,
        success_threshold: 2,
        failure_threshold: 2,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let none = (dir.path().join("c3.log"), 0, None);
    let h = tokio::spawn(run(probe, "c3".into(), 7, ProbeRole::Liveness, tx, none));
    let first = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            first,
            Msg::Probe {
                ref comp,
                run: 7,
                ok: false,
                ..
            } if comp == "c3"
        ),
        "{first:?}"
    );
    std::fs::write(&f, "").unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(second, Msg::Probe { ok: true, .. }), "{second:?}");
    h.abort();
}

#[tokio::test]
async fn log_probe_matches_only_this_runs_output_across_a_rotation() {
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("c.log");
    // The previous run already said the magic words: they must not count.
    std::fs::write(&log, "listening on :80\n").unwrap();
    let m = std::fs::metadata(&log).unwrap();
    let probe = Probe {
        check: Check::Log {
            regex: "listening on :\\d+".into(),
        },
        interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        initial_delay: Duration::ZERO,
        success_threshold: 1,
        failure_threshold: 1,
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let from = (log.clone(), m.len(), Some(m.ino()));
    let h = tokio::spawn(run(probe, "c".into(), 2, ProbeRole::Ready, tx, from));
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    writeln!(f, "starting").unwrap();
    // Nothing matched yet: the probe is silent (a deadline, not a sleep, bounds the wait).
    let quiet = tokio::time::timeout(Duration::from_millis(300), rx.recv()).await;
    assert!(quiet.is_err(), "{quiet:?}");
    // The shim rotates: the match comes in the new file.
    std::fs::rename(&log, dir.path().join("c.log.1")).unwrap();
    std::fs::write(&log, "ready: listening on :8080\n").unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(
        matches!(
            got,
            Msg::Probe {
                run: 2,
                ok: true,
                role: ProbeRole::Ready,
                ..
            }
        ),
        "{got:?}"
    );
    h.await.unwrap();
}

struct TlsServer {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success(), "openssl {args:?}");
}

fn tls_server(require_client_cert: bool) -> TlsServer {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=dmuc test CA",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "srv.key",
            "-out",
            "srv.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    );
    std::fs::write(
        d.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "srv.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "srv.pem",
            "-days",
            "1",
            "-extfile",
            "ext",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "cli.key",
            "-out",
            "cli.csr",
            "-subj",
            "/CN=admin/O=system:masters",
        ],
    );
    std::fs::write(
        d.join("cext"),
        "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    openssl(
        d,
        &[
            "x509",
            "-req",
            "-in",
            "cli.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cli.pem",
            "-days",
            "1",
            "-extfile",
            "cext",
        ],
    );
    let port = free_port();
    let mut args = vec!["s_server", "-quiet", "-accept"];
    let port_s = port.to_string();
    args.push(&port_s);
    args.extend(["-cert", "srv.pem", "-key", "srv.key", "-www"]);
    if require_client_cert {
        args.extend(["-Verify", "1", "-verify_return_error", "-CAfile", "ca.pem"]);
    }
    let child = Command::new("openssl")
        .args(&args)
        .current_dir(d)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "openssl s_server did not listen");
        std::thread::sleep(Duration::from_millis(10));
    }
    TlsServer { child, dir, port }
}

#[tokio::test]
async fn https_with_ca_insecure_and_untrusted() {
    if dmuc_tests::skip_without("the HTTPS probe test", &["openssl"]) {
        return;
    }
    let srv = tls_server(false);
    let url = format!("https://127.0.0.1:{}/", srv.port);
    let https = |ca: Option<std::path::PathBuf>, insecure| Check::Http {
        url: url.clone(),
        status: Some(200),
        ca,
        cert: None,
        key: None,
        insecure,
    };
    let ca = srv.dir.path().join("ca.pem");
    assert_eq!(check(&https(Some(ca), false)).await, Ok(()));
    assert_eq!(check(&https(None, true)).await, Ok(()));
    let wrong_ca = srv.dir.path().join("srv.pem"); // a leaf, not the issuer
    let err = check(&https(Some(wrong_ca), false)).await.unwrap_err();
    assert!(err.contains("TLS"), "{err}");
    let err = check(&https(Some(srv.dir.path().join("missing.pem")), false))
        .await
        .unwrap_err();
    assert!(err.contains("CA file"), "{err}");
}

#[test]
fn without_a_ca_the_systems_roots_are_trusted() {
    // Found by rustls-native-certs where Debian keeps them (ca-certificates, which cargo and
    // rustup need too); a machine without any gets the error that names the fix.
    let t = TlsOptions {
        ca: None,
        cert: None,
        key: None,
        insecure: false,
    };
    match tls_config(&t) {
        Ok(_) => assert!(system_roots().len() > 10, "{}", system_roots().len()),
        Err(e) => assert!(
            system_roots().is_empty() && e.contains("set the probe's `ca`"),
            "{e}"
        ),
    }
}

#[tokio::test]
async fn an_https_probe_builds_its_tls_settings_once() {
    if dmuc_tests::skip_without("the HTTPS probe test", &["openssl"]) {
        return;
    }
    let srv = tls_server(false);
    let d = srv.dir.path();
    let ca = d.join("probe-ca.pem");
    std::fs::copy(d.join("ca.pem"), &ca).unwrap();
    let probe = Check::Http {
        url: format!("https://127.0.0.1:{}/", srv.port),
        status: Some(200),
        ca: Some(ca.clone()),
        cert: None,
        key: None,
        insecure: false,
    };
    // Not there yet (a pki oneshot has not written it): each check says so and tries again.
    std::fs::rename(&ca, d.join("later.pem")).unwrap();
    let mut cache = crate::probe::TlsCache::default();
    let err = check_with(&probe, &mut cache).await.unwrap_err();
    assert!(err.contains("CA file"), "{err}");
    std::fs::rename(d.join("later.pem"), &ca).unwrap();
    assert_eq!(check_with(&probe, &mut cache).await, Ok(()));
    // Built: later checks do not read the file again.
    std::fs::remove_file(&ca).unwrap();
    assert_eq!(check_with(&probe, &mut cache).await, Ok(()));
    assert!(check(&probe).await.unwrap_err().contains("CA file"));
}

#[tokio::test]
async fn https_client_certificate() {
    if dmuc_tests::skip_without("the HTTPS client-certificate test", &["openssl"]) {
        return;
    }
    let srv = tls_server(true);
    let d = srv.dir.path();
    let url = format!("https://127.0.0.1:{}/", srv.port);
    let with = |cert: Option<std::path::PathBuf>, key: Option<std::path::PathBuf>| Check::Http {
        url: url.clone(),
        status: Some(200),
        ca: Some(d.join("ca.pem")),
        cert,
        key,
        insecure: false,
    };
    assert_eq!(
        check(&with(Some(d.join("cli.pem")), Some(d.join("cli.key")))).await,
        Ok(())
    );
    assert!(
        check(&with(None, None)).await.is_err(),
        "the server requires a client certificate"
    );
}
