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
    assert_eq!(judge(&good, Some(&node())), Verdict::Approve("w1".into()));
}

#[test]
fn anything_else_stays_pending_with_its_reason() {
    let n = node();
    let refused = |c: &Value, n: Option<&Value>, want: &str| match judge(c, n) {
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
    assert_eq!(judge(&bad, Some(&n)), Verdict::NotOurs);
    let mut done = csr("system:node:w1", req(&["198.18.0.11"], &[]), &SERVING);
    done["status"]["conditions"] = json!([{"type": "Denied", "status": "True"}]);
    assert_eq!(judge(&done, Some(&n)), Verdict::NotOurs);
}
