use super::*;

#[test]
fn tokens_and_pins_are_checked_for_shape() {
    assert_eq!(
        parse_token("abcdef.0123456789abcdef").unwrap(),
        ("abcdef", "0123456789abcdef")
    );
    for bad in [
        "abcdef0123456789abcdef",
        "ABCDEF.0123456789abcdef",
        "abcde.0123456789abcdef",
        "abcdef.0123456789abcde",
        "abcdef.0123456789abcdef.",
    ] {
        assert!(
            parse_token(bad)
                .unwrap_err()
                .contains("not a bootstrap token"),
            "{bad}"
        );
    }
    let hex = "AB".repeat(32);
    assert_eq!(
        parse_hash(&format!("SHA256:{hex}")).unwrap(),
        format!("sha256:{}", "ab".repeat(32))
    );
    assert!(parse_hash(&format!("sha1:{hex}")).is_err());
    assert!(parse_hash("sha256:abc").is_err());
    assert!(parse_hash(&format!("sha256:{}", "zz".repeat(32))).is_err());
}

fn ca() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    p.self_signed(&key).unwrap().pem()
}

fn cluster_info(ca: &str, sign: &[(&str, &str)]) -> Value {
    let b = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ca);
    let content = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {b}\n    server: https://198.18.0.1:6443\n  name: \"\"\n"
    );
    let mut data = json!({ "kubeconfig": content });
    for (id, secret) in sign {
        data[format!("jws-kubeconfig-{id}")] = json!(kube::jws_sign(&content, id, secret));
    }
    json!({ "data": data })
}

#[test]
fn cluster_info_is_trusted_only_signed_by_the_token_and_with_the_pinned_ca() {
    let (ca, other) = (ca(), ca());
    let pin = kube::ca_hash(ca.as_bytes()).unwrap();
    let (id, secret) = ("abcdef", "0123456789abcdef");
    let good = cluster_info(&ca, &[("zzzzzz", "ffffffffffffffff"), (id, secret)]);
    assert_eq!(
        check_cluster_info(&good, id, secret, &pin).unwrap(),
        ca.as_bytes()
    );

    // An expired token: the signer has removed its signature.
    let e = check_cluster_info(&good, "yyyyyy", secret, &pin).unwrap_err();
    assert!(e.contains("does not know token yyyyyy"), "{e}");
    // The right ID with another secret: a server that does not know the token.
    let e = check_cluster_info(&good, id, "0123456789abcdeX", &pin).unwrap_err();
    assert!(e.contains("does not match"), "{e}");
    // Signed right, but another CA than the pin: both hashes are named.
    let swapped = cluster_info(&other, &[(id, secret)]);
    let e = check_cluster_info(&swapped, id, secret, &pin).unwrap_err();
    let found = kube::ca_hash(other.as_bytes()).unwrap();
    assert!(e.contains(&found) && e.contains(&pin), "{e}");
    let e = check_cluster_info(&json!({"data": {}}), id, secret, &pin).unwrap_err();
    assert!(e.contains("no kubeconfig"), "{e}");
}

#[test]
fn a_join_writes_its_files_whole_and_drops_an_earlier_join_s_kubelet_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let pki = dir.path().join("pki");
    std::fs::create_dir_all(pki.join("kubelet")).unwrap();
    std::fs::write(pki.join("kubelet/kubelet-client-current.pem"), "old").unwrap();
    std::fs::write(pki.join("kubelet.kubeconfig"), "old").unwrap();
    let files = vec![
        ("ca.crt", "CA".to_string(), 0o644),
        ("bootstrap-kubelet.kubeconfig", "K".to_string(), 0o600),
    ];
    let written = write_join(&pki, files).unwrap();
    assert_eq!(
        written,
        [pki.join("ca.crt"), pki.join("bootstrap-kubelet.kubeconfig")]
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = |f: &str| std::fs::metadata(pki.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        (mode("ca.crt"), mode("bootstrap-kubelet.kubeconfig")),
        (0o644, 0o600)
    );
    assert!(!pki.join("kubelet").exists() && !pki.join("kubelet.kubeconfig").exists());
    let names: Vec<_> = std::fs::read_dir(&pki)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn a_node_that_joined_already_is_refused_before_anything_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pki")).unwrap();
    std::fs::write(dir.path().join("pki/kubelet.kubeconfig"), "x").unwrap();
    let a = JoinArgs {
        // Nothing listens there: the refusal comes first.
        server: "https://127.0.0.1:9".into(),
        token: Some("abcdef.0123456789abcdef".into()),
        token_file: None,
        ca_cert_hash: format!("sha256:{}", "0".repeat(64)),
        state: dir.path().into(),
        force: false,
        control_plane: false,
        certificate_key: None,
        certificate_key_file: None,
        node_name: None,
        node_ip: None,
    };
    let e = discover(&a).unwrap_err();
    assert!(e.contains("joined already") && e.contains("--force"), "{e}");
    // A member with the cluster's CA key, or etcd data, is refused before any call too.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pki")).unwrap();
    std::fs::write(dir.path().join("pki/ca.key"), "x").unwrap();
    let a = JoinArgs {
        state: dir.path().into(),
        control_plane: true,
        certificate_key: Some(crate::members::new_key().unwrap()),
        node_name: Some("m2".into()),
        node_ip: Some("198.18.0.22".parse().unwrap()),
        ..a
    };
    let e = member_files(&a).unwrap_err();
    assert!(e.contains("pki/ca.key exists"), "{e}");
    std::fs::remove_file(dir.path().join("pki/ca.key")).unwrap();
    std::fs::create_dir_all(dir.path().join("etcd/member")).unwrap();
    let e = member_files(&a).unwrap_err();
    assert!(e.contains("holds etcd data already"), "{e}");
}

#[test]
fn the_token_table_shows_ids_expiry_and_usages_never_secrets() {
    let b = |s: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, s);
    let secret = |id: &str, exp: Option<&str>| {
        let mut d = json!({"token-id": b(id), "token-secret": b("0123456789abcdef"),
            "usage-bootstrap-authentication": b("true"), "usage-bootstrap-signing": b("true"),
            "auth-extra-groups": b(BOOTSTRAP_GROUP), "description": b("made by dmucctl token create")});
        if let Some(e) = exp {
            d["expiration"] = json!(b(e));
        }
        json!({ "data": d })
    };
    let t = token_table(&[
        secret("abcdef", Some("2026-12-04T12:00:00Z")),
        secret("zzzzzz", None),
    ]);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3, "{t}");
    assert!(lines[0].starts_with("TOKEN-ID  EXPIRES"), "{t}");
    assert!(lines[1].starts_with("abcdef    2026-12-04T12:00:00Z  authentication,signing  system:bootstrappers:dmuc:default-node-token"), "{t}");
    assert!(lines[2].starts_with("zzzzzz    never"), "{t}");
    assert!(!t.contains("0123456789abcdef"), "{t}");
}

/// The token's login, on API servers with SelfSubjectReview (1.26 and later: who the token
/// is) and without it (1.20 to 1.25: that it may start a TLS bootstrap).
#[test]
fn a_token_logs_in_as_its_bootstrapper_on_old_and_new_api_servers() {
    use crate::kube::tests::{answering, plain};
    let new = r#"{"resources":[{"name":"tokenreviews"},{"name":"selfsubjectreviews"}]}"#;
    let old = r#"{"resources":[{"name":"tokenreviews"}]}"#;
    let me = r#"{"status":{"userInfo":{"username":"system:bootstrap:abcdef"}}}"#;
    let other = r#"{"status":{"userInfo":{"username":"system:admin"}}}"#;
    let (url, n) = answering(vec![(200, new), (201, me)]);
    login_check(&plain(url), "abcdef").unwrap();
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 2);
    let (url, _) = answering(vec![(200, new), (201, other)]);
    let e = login_check(&plain(url), "abcdef").unwrap_err();
    assert!(
        e.contains("\"system:admin\"") && e.contains("system:bootstrap:abcdef"),
        "{e}"
    );
    let (url, n) = answering(vec![(200, old), (201, r#"{"status":{"allowed":true}}"#)]);
    login_check(&plain(url), "abcdef").unwrap();
    assert_eq!(n.load(std::sync::atomic::Ordering::SeqCst), 2);
    let (url, _) = answering(vec![
        (200, old),
        (
            201,
            r#"{"status":{"allowed":false,"reason":"no RBAC policy matched"}}"#,
        ),
    ]);
    let e = login_check(&plain(url), "abcdef").unwrap_err();
    assert!(
        e.contains("no RBAC policy matched") && e.contains("certificatesigningrequests"),
        "{e}"
    );
    // A token the API server does not take: refused at discovery.
    let (url, _) = answering(vec![(401, r#"{"message":"Unauthorized"}"#)]);
    assert!(
        login_check(&plain(url), "abcdef")
            .unwrap_err()
            .contains("401")
    );
}

/// A token holder answering in the server's place can sign a cluster-info of their own: it
/// may carry only the pinned CA, inline.
#[test]
fn cluster_info_with_a_second_ca_or_a_local_file_is_refused() {
    let (ca, mine) = (ca(), ca());
    let pin = kube::ca_hash(ca.as_bytes()).unwrap();
    let (id, secret) = ("abcdef", "0123456789abcdef");
    let bundle = cluster_info(&format!("{ca}{mine}"), &[(id, secret)]);
    let e = check_cluster_info(&bundle, id, secret, &pin).unwrap_err();
    assert!(e.contains("holds 2 certificates"), "{e}");
    // certificate-authority: PATH would read this host's file (/dev/zero: without end).
    let content = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority: /dev/zero\n    server: https://198.18.0.1:6443\n";
    let mut cm = json!({"data": {"kubeconfig": content}});
    cm["data"][format!("jws-kubeconfig-{id}")] = json!(kube::jws_sign(content, id, secret));
    let e = check_cluster_info(&cm, id, secret, &pin).unwrap_err();
    assert!(e.contains("local file (/dev/zero)"), "{e}");
}

#[test]
fn join_takes_only_https_servers() {
    assert_eq!(
        parse_server("https://198.18.0.1:6443/").unwrap(),
        "https://198.18.0.1:6443"
    );
    for bad in [
        "http://198.18.0.1:6443",
        "198.18.0.1:6443",
        "HTTP://x",
        "https://",
    ] {
        let e = parse_server(bad).unwrap_err();
        assert!(e.contains(bad), "{e}");
    }
    assert!(parse_server("http://x").unwrap_err().contains("in clear"));
}

fn join_args(args: &[&str]) -> Result<JoinArgs, clap::Error> {
    #[derive(clap::Parser)]
    struct P {
        #[command(flatten)]
        a: JoinArgs,
    }
    let mut v = vec![
        "join",
        "--server",
        "https://x:6443",
        "--ca-cert-hash",
        "sha256:0",
    ];
    v.extend(args);
    <P as clap::Parser>::try_parse_from(v).map(|p| p.a)
}

/// The token and the certificate key can stay off the command line (`ps`).
#[test]
fn secrets_come_from_files_or_standard_input() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("token");
    std::fs::write(&f, "abcdef.0123456789abcdef\n").unwrap();
    let mut a = join_args(&["--token-file", f.to_str().unwrap()]).unwrap();
    a.read_secrets(&mut std::io::empty()).unwrap();
    assert_eq!(a.token(), "abcdef.0123456789abcdef");
    let mut a = join_args(&[
        "--token-file",
        "-",
        "--control-plane",
        "--node-name",
        "m2",
        "--node-ip",
        "198.18.0.22",
        "--certificate-key-file",
        f.to_str().unwrap(),
    ])
    .unwrap();
    a.read_secrets(&mut "ghijkl.0123456789abcdef\n".as_bytes())
        .unwrap();
    assert_eq!(a.token(), "ghijkl.0123456789abcdef");
    assert_eq!(
        a.certificate_key.as_deref(),
        Some("abcdef.0123456789abcdef")
    );
    // Neither given, both given, both from standard input, an empty file, a member without key.
    assert!(join_args(&[]).is_err());
    assert!(join_args(&["--token", "a.b", "--token-file", "-"]).is_err());
    let mut both = join_args(&[
        "--token-file",
        "-",
        "--control-plane",
        "--node-name",
        "m",
        "--node-ip",
        "198.18.0.22",
        "--certificate-key-file",
        "-",
    ])
    .unwrap();
    assert!(
        both.read_secrets(&mut std::io::empty())
            .unwrap_err()
            .contains("both")
    );
    std::fs::write(&f, "\n").unwrap();
    let mut empty = join_args(&["--token-file", f.to_str().unwrap()]).unwrap();
    assert!(
        empty
            .read_secrets(&mut std::io::empty())
            .unwrap_err()
            .contains("no token")
    );
    let mut nokey = join_args(&[
        "--token",
        "abcdef.0123456789abcdef",
        "--control-plane",
        "--node-name",
        "m",
        "--node-ip",
        "198.18.0.22",
    ])
    .unwrap();
    assert!(
        nokey
            .read_secrets(&mut std::io::empty())
            .unwrap_err()
            .contains("--certificate-key-file")
    );
}
