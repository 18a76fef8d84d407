use super::*;

fn request_pem(cn: &str, org: &str, ips: &[&str], dns: &[&str]) -> String {
    use rcgen::{CertificateParams, DnType, KeyPair, SanType};
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, org);
    p.subject_alt_names = ips
        .iter()
        .map(|i| SanType::IpAddress(i.parse().unwrap()))
        .chain(
            dns.iter()
                .map(|d| SanType::DnsName((*d).try_into().unwrap())),
        )
        .collect();
    let key = KeyPair::generate().unwrap();
    let pem = p.serialize_request(&key).unwrap().pem().unwrap();
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pem)
}

fn csr(user: &str, request: String, usages: &[&str]) -> Value {
    json!({"metadata": {"name": "csr-1"}, "spec": {
        "signerName": SIGNER, "username": user,
        "groups": ["system:nodes", "system:authenticated"],
        "usages": usages, "request": request}})
}

const SERVING: [&str; 3] = ["digital signature", "key encipherment", "server auth"];

fn node() -> Value {
    json!({"metadata": {"name": "w1"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "198.18.0.11"},
        {"type": "Hostname", "address": "w1"}]}})
}

#[test]
fn a_node_s_request_for_its_own_names_and_addresses_is_approved() {
    let good = csr(
        "system:node:w1",
        request_pem("system:node:w1", "system:nodes", &["198.18.0.11"], &["w1"]),
        &SERVING,
    );
    assert_eq!(
        judge(&good, Some(&node()), &Reserved::default()),
        Verdict::Approve("w1".into(), Some("198.18.0.11,w1".into()))
    );
}

#[test]
fn anything_else_stays_pending_with_its_reason() {
    let n = node();
    let refused = |c: &Value, n: Option<&Value>, want: &str| match judge(c, n, &Reserved::default())
    {
        Verdict::Refuse(why) => assert!(why.contains(want), "{why} ∌ {want}"),
        v => panic!("{v:?} for {c}"),
    };
    let req = |ips: &[&str], dns: &[&str]| request_pem("system:node:w1", "system:nodes", ips, dns);
    // Another node's address, or a name not the node's.
    refused(
        &csr("system:node:w1", req(&["198.18.0.12"], &[]), &SERVING),
        Some(&n),
        "198.18.0.12 is not",
    );
    refused(
        &csr("system:node:w1", req(&[], &["kubernetes"]), &SERVING),
        Some(&n),
        "kubernetes is not",
    );
    refused(
        &csr("system:node:w1", req(&[], &[]), &SERVING),
        Some(&n),
        "no address",
    );
    // Asked by someone else than the node it names.
    let other = request_pem("system:node:w2", "system:nodes", &["198.18.0.11"], &[]);
    refused(
        &csr("system:node:w1", other, &SERVING),
        Some(&n),
        "its subject",
    );
    refused(
        &csr(
            "system:bootstrap:abcdef",
            req(&["198.18.0.11"], &[]),
            &SERVING,
        ),
        Some(&n),
        "not by a node",
    );
    // A client certificate, or no Node.
    refused(
        &csr(
            "system:node:w1",
            req(&["198.18.0.11"], &[]),
            &["client auth"],
        ),
        Some(&n),
        "serving only",
    );
    refused(
        &csr("system:node:w1", req(&["198.18.0.11"], &[]), &SERVING),
        None,
        "no Node w1",
    );
    let mut bad = csr("system:node:w1", "bm90IGEgcmVxdWVzdA==".into(), &SERVING);
    refused(&bad, Some(&n), "not PEM");
    // Not ours: another signer, or decided already.
    bad["spec"]["signerName"] = json!("kubernetes.io/kube-apiserver-client-kubelet");
    assert_eq!(
        judge(&bad, Some(&n), &Reserved::default()),
        Verdict::NotOurs
    );
    let mut done = csr("system:node:w1", req(&["198.18.0.11"], &[]), &SERVING);
    done["status"]["conditions"] = json!([{"type": "Denied", "status": "True"}]);
    assert_eq!(
        judge(&done, Some(&n), &Reserved::default()),
        Verdict::NotOurs
    );
}

/// A Node's addresses are its kubelet's word: a node that claims the API server's address,
/// another node's, or a service name in its own Node object still gets none of them.
#[test]
fn a_node_cannot_have_the_api_server_s_or_another_node_s_names_and_addresses() {
    let liar = json!({"metadata": {"name": "w1"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "198.18.0.11"},
        {"type": "InternalIP", "address": "198.18.0.1"},
        {"type": "InternalIP", "address": "10.96.0.1"},
        {"type": "InternalIP", "address": "198.18.0.12"},
        {"type": "InternalIP", "address": "127.0.0.1"},
        {"type": "Hostname", "address": "w1"},
        {"type": "Hostname", "address": "kubernetes.default.svc"},
        {"type": "Hostname", "address": "w2"}]}});
    let w2 = json!({"metadata": {"name": "w2"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "198.18.0.12"},
        {"type": "Hostname", "address": "w2"}]}});
    let service = json!({"spec": {"clusterIP": "10.96.0.1"}});
    let endpoints = json!({"subsets": [{"addresses": [{"ip": "198.18.0.1"}]}]});
    let reserved = Reserved::from_api(&[liar.clone(), w2], Some(&service), Some(&endpoints));
    let judge_of = |ips: &[&str], dns: &[&str]| {
        let c = csr(
            "system:node:w1",
            request_pem("system:node:w1", "system:nodes", ips, dns),
            &SERVING,
        );
        judge(&c, Some(&liar), &reserved)
    };
    for (ips, dns, why) in [
        (
            &["198.18.0.1"][..],
            &[][..],
            "198.18.0.1 is the API server's address",
        ),
        (&["10.96.0.1"], &[], "10.96.0.1 is the API server's address"),
        (
            &["198.18.0.12"],
            &[],
            "198.18.0.12 is Node w2's address too",
        ),
        (&["127.0.0.1"], &[], "no node's own address"),
        (
            &["198.18.0.11"],
            &["kubernetes.default.svc"],
            "name of the cluster's services",
        ),
        (&["198.18.0.11"], &["w2"], "w2 is Node w2's name"),
    ] {
        match judge_of(ips, dns) {
            Verdict::Refuse(r) => assert!(r.contains(why), "{r} ∌ {why}"),
            v => panic!("{ips:?} {dns:?}: {v:?}"),
        }
    }
    // Its own address and name still go through.
    assert_eq!(
        judge_of(&["198.18.0.11"], &["w1"]),
        Verdict::Approve("w1".into(), Some("198.18.0.11,w1".into()))
    );
    // The node on the API server's host (the operator says which) may name its address.
    let cp = json!({"metadata": {"name": "cp"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "198.18.0.1"}, {"type": "Hostname", "address": "cp"}]}});
    let mut with_cp =
        Reserved::from_api(std::slice::from_ref(&cp), Some(&service), Some(&endpoints));
    let ask = csr(
        "system:node:cp",
        request_pem("system:node:cp", "system:nodes", &["198.18.0.1"], &["cp"]),
        &SERVING,
    );
    assert!(matches!(
        judge(&ask, Some(&cp), &with_cp),
        Verdict::Refuse(_)
    ));
    with_cp.local = Some("cp".into());
    assert_eq!(
        judge(&ask, Some(&cp), &with_cp),
        Verdict::Approve("cp".into(), Some("198.18.0.1,cp".into()))
    );
    for d in [
        "kubernetes",
        "kubernetes.default",
        "x.ns.svc",
        "a.svc.cluster.local",
        "localhost",
        "KUBERNETES.",
    ] {
        assert!(service_name(d), "{d}");
    }
    for d in ["w1", "node-1.example.org", "svc-host"] {
        assert!(!service_name(d), "{d}");
    }
}

/// What dmuc knows of a node bounds what it may claim: once pinned (by the operator, or by
/// its first certificate), an address its Node object gains later is not approved, even one
/// no other node has now (a node down, an address given up).
#[test]
fn a_pinned_node_gets_its_pinned_names_and_addresses_only() {
    let moved = json!({"metadata": {"name": "w1"}, "status": {"addresses": [
        {"type": "InternalIP", "address": "198.18.0.11"},
        {"type": "InternalIP", "address": "198.18.0.13"},
        {"type": "Hostname", "address": "w1"},
        {"type": "Hostname", "address": "w1.example.org"}]}});
    let cm = json!({"data": {"w1": "198.18.0.11, w1.example.org", "w2": "198.18.0.12"}});
    let mut reserved = Reserved {
        pins: pins_of(Some(&cm)),
        ..Default::default()
    };
    assert_eq!(reserved.pins["w1"], ["198.18.0.11", "w1.example.org"]);
    let ask = |ips: &[&str], dns: &[&str], reserved: &Reserved| {
        let c = csr(
            "system:node:w1",
            request_pem("system:node:w1", "system:nodes", ips, dns),
            &SERVING,
        );
        judge(&c, Some(&moved), reserved)
    };
    // Pinned ones (and its own name) go through, with nothing more to pin.
    assert_eq!(
        ask(&["198.18.0.11"], &["w1", "w1.example.org"], &reserved),
        Verdict::Approve("w1".into(), None)
    );
    match ask(&["198.18.0.11", "198.18.0.13"], &["w1"], &reserved) {
        Verdict::Refuse(why) => assert!(
            why.contains("198.18.0.13 is not among Node w1's pinned addresses")
                && why.contains(PINS),
            "{why}"
        ),
        v => panic!("{v:?}"),
    }
    // Another node's pin bounds that node only.
    reserved.pins.remove("w1");
    assert_eq!(
        ask(&["198.18.0.13"], &[], &reserved),
        Verdict::Approve("w1".into(), Some("198.18.0.13".into()))
    );
    // The operator's pins: addresses and host names, never a service's name.
    assert_eq!(
        parse_pin("198.18.0.11, w1.example.org").unwrap(),
        "198.18.0.11,w1.example.org"
    );
    for bad in ["", "198.18.0.11,", "a b", "kubernetes.default.svc", "x/y"] {
        assert!(parse_pin(bad).is_err(), "{bad:?}");
    }
}
