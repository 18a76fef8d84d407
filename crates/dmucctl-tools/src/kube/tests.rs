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
