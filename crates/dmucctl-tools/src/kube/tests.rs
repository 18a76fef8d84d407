use super::*;

#[test]
fn reads_dmucctl_s_own_kubeconfigs_and_file_references() {
    let text = crate::pki::kubeconfig(
        "dmuc",
        "https://10.0.0.1:6443",
        "admin",
        "CA PEM\n",
        "CRT PEM\n",
        "KEY PEM\n",
    );
    let k = parse_kubeconfig(&text, Path::new("/")).unwrap();
    assert_eq!(k.server, "https://10.0.0.1:6443");
    assert_eq!(k.ca.as_deref(), Some(&b"CA PEM\n"[..]));
    assert_eq!(k.cert.as_deref(), Some(&b"CRT PEM\n"[..]));
    assert_eq!(k.key.as_deref(), Some(&b"KEY PEM\n"[..]));
    assert_eq!(k.token, None);

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), "CA").unwrap();
    let text = "clusters:\n- cluster:\n    certificate-authority: ca.crt\n    server: \"https://h:6443\"\n  name: c\nusers:\n- name: u\n  user:\n    token: abcdef.0123456789abcdef\n";
    let k = parse_kubeconfig(text, dir.path()).unwrap();
    assert_eq!(
        (k.server.as_str(), k.ca.as_deref()),
        ("https://h:6443", Some(&b"CA"[..]))
    );
    assert_eq!(k.token.as_deref(), Some("abcdef.0123456789abcdef"));
    assert!(
        parse_kubeconfig("kind: Config\n", dir.path())
            .unwrap_err()
            .contains("no server")
    );
    let missing = "server: https://h\ncertificate-authority: nope.crt\n";
    assert!(
        parse_kubeconfig(missing, dir.path())
            .unwrap_err()
            .contains("nope.crt")
    );
}

#[test]
fn a_detached_jws_checks_against_its_token_only() {
    let content = "apiVersion: v1\nkind: Config\n";
    let jws = jws_sign(content, "abcdef", "0123456789abcdef");
    assert!(jws.contains(".."), "{jws}");
    jws_ok(&jws, content, "abcdef", "0123456789abcdef").unwrap();
    assert!(jws_ok(&jws, content, "abcdef", "0123456789abcdeX").is_err());
    assert!(jws_ok(&jws, "other content", "abcdef", "0123456789abcdef").is_err());
    let e = jws_ok(&jws, content, "zzzzzz", "0123456789abcdef").unwrap_err();
    assert!(e.contains("zzzzzz"), "{e}");
    assert!(jws_ok("garbage", content, "abcdef", "x").is_err());
}

#[test]
fn the_ca_hash_is_of_its_public_key_as_kubeadm_pins_it() {
    // openssl x509 -pubkey | openssl pkey -pubin -outform der | sha256sum, for this CA.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = p.self_signed(&key).unwrap();
    let pem = key.public_key_pem();
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    let want = ring::digest::digest(&ring::digest::SHA256, &der);
    let want: String = want.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        ca_hash(cert.pem().as_bytes()).unwrap(),
        format!("sha256:{want}")
    );
    assert!(ca_hash(b"not pem").is_err());
}

#[test]
fn transient_errors_are_told_from_final_ones() {
    let e = |status, m: &str| ApiError {
        status,
        message: m.into(),
    };
    assert!(transient(&e(0, "connection refused")));
    assert!(transient(&e(503, "not ready")));
    assert!(transient(&e(429, "too many requests")));
    assert!(transient(&e(
        500,
        "etcdserver: request timed out, possibly due to previous leader failure"
    )));
    assert!(!transient(&e(500, "internal error: a bug")));
    for status in [400, 401, 403, 404, 409, 422] {
        assert!(!transient(&e(status, "etcdserver")), "{status}");
    }
}

/// A server on loopback answering each connection with the next of `answers`; counts them.
pub(crate) fn answering(
    answers: Vec<(u16, &'static str)>,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let n = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = n.clone();
    std::thread::spawn(move || {
        for (status, body) in answers {
            let Ok((mut c, _)) = l.accept() else { return };
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                c,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, n)
}

/// A client of a plain-HTTP server at `url`.
pub(crate) fn plain(url: String) -> Api {
    Api::new(
        &Kubeconfig {
            server: url,
            ..Default::default()
        },
        true,
    )
    .unwrap()
}

#[test]
fn repeatable_requests_ride_out_a_leader_election_and_final_errors_do_not_wait() {
    let etcd = r#"{"message":"etcdserver: leader changed"}"#;
    let (url, n) = answering(vec![
        (500, etcd),
        (503, "{}"),
        (200, r#"{"kind":"ConfigMap"}"#),
    ]);
    let api = plain(url);
    let got = api
        .get("/api/v1/namespaces/x/configmaps/y")
        .unwrap()
        .unwrap();
    assert_eq!(got["kind"], "ConfigMap");
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 3);
    // ensure: the retried create finds its object made by the lost try.
    let (url, n) = answering(vec![(504, "{}"), (409, r#"{"message":"exists"}"#)]);
    let api = plain(url);
    assert!(
        !api.ensure("/api/v1/namespaces", &serde_json::json!({}))
            .unwrap()
    );
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 2);
    // A refusal is final: asked once.
    let (url, n) = answering(vec![(403, r#"{"message":"forbidden"}"#), (200, "{}")]);
    let api = plain(url);
    assert_eq!(api.get("/x").unwrap_err().status, 403);
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 1);
}
