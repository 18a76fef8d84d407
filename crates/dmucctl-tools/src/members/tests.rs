use super::*;

fn key() -> [u8; 32] {
    parse_key(&new_key().unwrap()).unwrap()
}

#[test]
fn sealed_files_open_only_with_their_key_and_name() {
    let k = key();
    let sealed = seal(&k, "ca.key", b"the CA's key").unwrap();
    assert_eq!(open(&k, "ca.key", &sealed).unwrap(), b"the CA's key");
    // Another key, or the blob under another file's name, does not open.
    let e = open(&key(), "ca.key", &sealed).unwrap_err();
    assert!(e.contains("does not open with this certificate key"), "{e}");
    assert!(open(&k, "sa.key", &sealed).is_err());
    // A flipped bit in the ciphertext is refused.
    let mut raw = b64().decode(&sealed).unwrap();
    let last = raw.len() - 1;
    raw[last] ^= 1;
    assert!(open(&k, "ca.key", &b64().encode(raw)).is_err());
    assert!(
        open(&k, "ca.key", "AAAA")
            .unwrap_err()
            .contains("too short")
    );
    // Each seal has its own nonce.
    assert_ne!(sealed, seal(&k, "ca.key", b"the CA's key").unwrap());
}

#[test]
fn certificate_keys_are_64_hex_digits() {
    let hex = new_key().unwrap();
    assert_eq!(hex.len(), 64);
    assert_ne!(hex, new_key().unwrap());
    assert!(parse_key(&hex[..62]).unwrap_err().contains("64 hex digits"));
    assert!(parse_key(&"zz".repeat(32)).is_err());
}

#[test]
fn the_secret_round_trips_and_belongs_to_the_token() {
    let k = key();
    let files: Vec<(&str, Vec<u8>)> = SHARED
        .iter()
        .map(|(n, _)| (*n, format!("content of {n}").into_bytes()))
        .collect();
    let eps = vec!["https://198.18.0.21:2379".to_string()];
    let s = certs_secret(&k, &files, &eps, ("bootstrap-token-abcdef", "uid-1")).unwrap();
    assert_eq!(s["metadata"]["name"], CERTS_SECRET);
    assert_eq!(
        s["metadata"]["ownerReferences"][0]["name"],
        "bootstrap-token-abcdef"
    );
    assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], "uid-1");
    // Nothing in the Secret shows a key in the clear.
    assert!(!s.to_string().contains(&b64().encode("content of ca.key")));
    let (opened, endpoints) = open_secret(&k, &s).unwrap();
    assert_eq!(endpoints, eps);
    for ((name, bytes, mode), (n, m)) in opened.iter().zip(SHARED) {
        assert_eq!((*name, *mode), (n, m));
        assert_eq!(bytes, format!("content of {n}").as_bytes());
    }
    assert!(open_secret(&key(), &s).is_err());
    let mut partial = s.clone();
    partial["data"].as_object_mut().unwrap().remove("sa.key");
    assert!(
        open_secret(&k, &partial)
            .unwrap_err()
            .contains("holds no sa.key")
    );
}

fn member(id: &str, name: &str, peer: &str, learner: bool) -> Member {
    Member {
        id: id.into(),
        name: name.into(),
        peers: vec![peer.into()],
        clients: if name.is_empty() {
            vec![]
        } else {
            vec![peer.replace("2380", "2379")]
        },
        learner,
    }
}

#[test]
fn members_parse_from_the_gateway_json() {
    let v = json!({"members": [
        {"ID": "1234", "name": "m1", "peerURLs": ["https://198.18.0.21:2380"],
         "clientURLs": ["https://198.18.0.21:2379"]},
        {"ID": "5678", "peerURLs": ["https://198.18.0.22:2380"], "isLearner": true}]});
    assert_eq!(
        parse_members(&v),
        vec![
            member("1234", "m1", "https://198.18.0.21:2380", false),
            member("5678", "", "https://198.18.0.22:2380", true)
        ]
    );
}

#[test]
fn the_initial_cluster_names_every_member_and_the_new_one() {
    let (p1, p2, p3) = (
        "https://198.18.0.21:2380",
        "https://198.18.0.22:2380",
        "https://198.18.0.23:2380",
    );
    let ms = vec![
        member("1", "m1", p1, false),
        member("2", "m2", p2, false),
        member("3", "", p3, true),
    ];
    assert_eq!(
        initial_cluster(&ms, "m3", p3).unwrap(),
        format!("m1={p1},m2={p2},m3={p3}")
    );
    // Another added member that never started makes the list one etcd refuses.
    let e = initial_cluster(&ms, "m4", "https://198.18.0.24:2380").unwrap_err();
    assert!(e.contains("has not started"), "{e}");
}

#[test]
fn joins_that_etcd_would_refuse_are_refused_first() {
    let (p1, p2) = ("https://198.18.0.21:2380", "https://198.18.0.22:2380");
    let one = vec![member("1", "m1", p1, false)];
    assert_eq!(refuse_join(&one, "m2", p2), None);
    assert!(refuse_join(&one, "m1", p2).unwrap().contains("named m1"));
    assert!(
        refuse_join(&one, "m2", p1)
            .unwrap()
            .contains("dmucctl etcd remove m1")
    );
    let learning = vec![member("1", "m1", p1, false), member("2", "m2", p2, true)];
    assert!(
        refuse_join(&learning, "m3", "https://198.18.0.23:2380")
            .unwrap()
            .contains("one at a time")
    );
}

#[test]
fn the_env_file_holds_what_etcd_and_promote_read() {
    let t = etcd_env("m1=https://a:2380", "existing", &["https://a:2379".into()]);
    assert_eq!(
        env_value(&t, "ETCD_INITIAL_CLUSTER").as_deref(),
        Some("m1=https://a:2380")
    );
    assert_eq!(
        env_value(&t, "ETCD_INITIAL_CLUSTER_STATE").as_deref(),
        Some("existing")
    );
    assert_eq!(
        env_value(&t, "DMUC_ETCD_ENDPOINTS").as_deref(),
        Some("https://a:2379")
    );
    assert_eq!(env_value(&t, "ETCD_INITIAL"), None);
}

#[test]
fn a_client_certificate_is_issued_from_the_etcd_ca() {
    let dir = tempfile::tempdir().unwrap();
    let o = crate::pki::Options {
        dir: dir.path().into(),
        node_name: "m1".into(),
        node_ip: "198.18.0.21".parse().unwrap(),
        cluster_name: "dmuc".into(),
        service_cidr: "10.96.0.0/12".into(),
        days: 1,
        ca_days: 1,
        force: false,
        sans: vec![],
        users: vec![],
    };
    crate::pki::init(&o).unwrap();
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap();
    let (crt, key) =
        crate::pki::client_cert(&read("etcd-ca.crt"), &read("etcd-ca.key"), "x").unwrap();
    assert!(key.contains("PRIVATE KEY"));
    let (_, pem) = x509_parser::pem::parse_x509_pem(crt.as_bytes()).unwrap();
    let cert = pem.parse_x509().unwrap();
    let (_, ca_pem) = x509_parser::pem::parse_x509_pem(read("etcd-ca.crt").as_bytes()).unwrap();
    let ca = ca_pem.parse_x509().unwrap();
    assert!(cert.verify_signature(Some(ca.public_key())).is_ok());
    assert_eq!(cert.issuer(), ca.subject());
}

#[test]
fn http_dates_and_peers_are_read() {
    assert_eq!(http_date("Thu, 01 Jan 1970 00:01:40 GMT"), Some(100));
    assert_eq!(
        http_date("Fri, 04 Dec 2026 21:58:00 GMT"),
        Some(1_796_421_480)
    );
    for bad in [
        "",
        "Fri, 04 Dec 2026 21:58:00 CET",
        "Fri, 32 Dec 2026 21:58:00 GMT",
        "Fri, 04 Foo 2026 21:58:00 GMT",
        "Fri, 04 Dec 2026 21:58 GMT",
    ] {
        assert_eq!(http_date(bad), None, "{bad}");
    }
    assert_eq!(
        peers(
            "m1=https://198.18.0.21:2380,m2=https://198.18.0.22:2380,m3=https://198.18.0.23:2380",
            "198.18.0.22"
        ),
        vec![
            ("m1".to_string(), "198.18.0.21".to_string()),
            ("m3".to_string(), "198.18.0.23".to_string())
        ]
    );
    assert!(peers("m1=https://198.18.0.21:2380", "198.18.0.21").is_empty());
    let ms = vec![
        member("1", "m1", "https://198.18.0.21:2380", false),
        member("2", "m2", "https://198.18.0.22:2380", false),
        // Added, not started: no name, not a peer to read a clock from.
        member("3", "", "https://198.18.0.23:2380", true),
    ];
    assert_eq!(
        peers_of(&ms, "198.18.0.21"),
        vec![("m2".to_string(), "198.18.0.22".to_string())]
    );
}

#[test]
fn members_show_as_a_table_and_removal_spares_the_last_voter() {
    let (p1, p2, p3) = (
        "https://198.18.0.21:2380",
        "https://198.18.0.22:2380",
        "https://198.18.0.23:2380",
    );
    let ms = vec![
        member("11", "m1", p1, false),
        member("22", "m2", p2, true),
        member("33", "", p3, true),
    ];
    let t = members_table(&ms);
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 4, "{t}");
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("ROLE"),
        "{t}"
    );
    assert!(lines[1].contains("voter") && lines[1].contains("https://198.18.0.21:2379"));
    assert!(lines[2].contains("learner"));
    assert!(lines[3].starts_with("-") && lines[3].contains("added, not started"));
    // Columns line up.
    let at = |l: &str| l.find("https://").unwrap();
    assert_eq!(at(lines[1]), at(lines[2]));
    assert_eq!(to_remove(&ms, "m2").unwrap().id, "22");
    assert_eq!(to_remove(&ms, "33").unwrap().peers, vec![p3.to_string()]);
    assert!(
        to_remove(&ms, "m1")
            .unwrap_err()
            .contains("last voting member")
    );
    assert!(
        to_remove(&ms, "m9")
            .unwrap_err()
            .contains("members: m1, m2")
    );
    let two = vec![member("11", "m1", p1, false), member("22", "m2", p2, false)];
    assert_eq!(to_remove(&two, "m1").unwrap().id, "11");
}
