//! `dmucctl pki`: the files verified by the tools Kubernetes users have (openssl, kubectl).

#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

fn ctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_dmucctl-tools"))
        .args(args)
        .output()
        .unwrap()
}

fn tool(dir: &Path, prog: &str, args: &[&str]) -> String {
    let o = Command::new(prog)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(
        o.status.success(),
        "{prog} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn init(dir: &Path) -> std::process::Output {
    ctl(&[
        "pki",
        "init",
        "--dir",
        dir.to_str().unwrap(),
        "--node-name",
        "node1",
        "--node-ip",
        "10.0.0.5",
    ])
}

#[test]
fn chain_sans_identities_and_modes() {
    if dmuc_tests::skip_without("the pki test", &["openssl", "kubectl"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = init(d);
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("files created, 0 kept"));

    let certs = [
        (
            "apiserver",
            "kube-apiserver",
            None,
            "TLS Web Server Authentication",
        ),
        (
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
            "TLS Web Client Authentication",
        ),
        (
            "admin",
            "kubernetes-admin",
            Some("system:masters"),
            "TLS Web Client Authentication",
        ),
        (
            "kube-controller-manager",
            "system:kube-controller-manager",
            None,
            "TLS Web Client Authentication",
        ),
        (
            "kube-scheduler",
            "system:kube-scheduler",
            None,
            "TLS Web Client Authentication",
        ),
        (
            "kubelet-client",
            "system:node:node1",
            Some("system:nodes"),
            "TLS Web Client Authentication",
        ),
        (
            "kube-proxy",
            "system:kube-proxy",
            Some("system:node-proxier"),
            "TLS Web Client Authentication",
        ),
        ("kubelet", "node1", None, "TLS Web Server Authentication"),
        (
            "etcd-server",
            "node1",
            None,
            "TLS Web Server Authentication, TLS Web Client Authentication",
        ),
        (
            "etcd-peer",
            "node1",
            None,
            "TLS Web Server Authentication, TLS Web Client Authentication",
        ),
        (
            "apiserver-etcd-client",
            "kube-apiserver-etcd-client",
            None,
            "TLS Web Client Authentication",
        ),
    ];
    for (name, cn, org, eku) in certs {
        let crt = format!("{name}.crt");
        // etcd's certificates come from its own CA, and only from it: a client certificate
        // of the cluster CA does not open etcd. The kubelet's serving certificate comes from
        // the kubelets' CA, which clients of the API server do not trust: it cannot pass for
        // the API server's.
        let (ca, other) = if name.starts_with("etcd-") || name == "apiserver-etcd-client" {
            ("etcd-ca.crt", "ca.crt")
        } else if name == "kubelet" {
            ("kubelet-ca.crt", "ca.crt")
        } else {
            ("ca.crt", "etcd-ca.crt")
        };
        assert!(
            tool(d, "openssl", &["verify", "-CAfile", ca, &crt]).contains(": OK"),
            "{crt}"
        );
        let o = Command::new("openssl")
            .current_dir(d)
            .args(["verify", "-CAfile", other, &crt])
            .output()
            .unwrap();
        assert!(!o.status.success(), "{crt} verifies against {other}");
        let subject = tool(
            d,
            "openssl",
            &[
                "x509", "-in", &crt, "-noout", "-subject", "-nameopt", "RFC2253",
            ],
        );
        assert!(subject.contains(&format!("CN={cn}")), "{crt}: {subject}");
        match org {
            Some(o) => assert!(subject.contains(&format!("O={o}")), "{crt}: {subject}"),
            None => assert!(!subject.contains("O="), "{crt}: {subject}"),
        }
        let text = tool(d, "openssl", &["x509", "-in", &crt, "-noout", "-text"]);
        assert!(text.contains(eku), "{crt}: no {eku}");
        assert!(text.contains("CA:FALSE"), "{crt} is a CA");
        let key = d.join(format!("{name}.key"));
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let api = tool(
        d,
        "openssl",
        &[
            "x509",
            "-in",
            "apiserver.crt",
            "-noout",
            "-ext",
            "subjectAltName",
        ],
    );
    for san in [
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:node1",
        "IP Address:127.0.0.1",
        "IP Address:10.96.0.1",
        "IP Address:10.0.0.5",
    ] {
        assert!(api.contains(san), "apiserver SANs lack {san}: {api}");
    }
    let ca = tool(d, "openssl", &["x509", "-in", "ca.crt", "-noout", "-text"]);
    assert!(ca.contains("CA:TRUE") && ca.contains("Certificate Sign"));
    // The service-account pair: a private key and its public half.
    let pubkey = tool(d, "openssl", &["pkey", "-in", "sa.key", "-pubout"]);
    assert_eq!(pubkey, std::fs::read_to_string(d.join("sa.pub")).unwrap());

    // Every kubeconfig is read by kubectl, with the right server, user and CA.
    let ca_pem = std::fs::read_to_string(d.join("ca.crt")).unwrap();
    for (kc, server, user) in [
        ("admin", "https://127.0.0.1:6443", "kubernetes-admin"),
        (
            "kube-controller-manager",
            "https://127.0.0.1:6443",
            "system:kube-controller-manager",
        ),
        (
            "kube-scheduler",
            "https://127.0.0.1:6443",
            "system:kube-scheduler",
        ),
        ("kubelet", "https://10.0.0.5:6443", "system:node:node1"),
        ("kube-proxy", "https://10.0.0.5:6443", "system:kube-proxy"),
    ] {
        let file = format!("{kc}.kubeconfig");
        let get = |path: &str| {
            tool(
                d,
                "kubectl",
                &[
                    "config",
                    "view",
                    "--kubeconfig",
                    &file,
                    "--raw",
                    "-o",
                    &format!("jsonpath={path}"),
                ],
            )
        };
        assert_eq!(get("{.clusters[0].cluster.server}"), server, "{file}");
        assert_eq!(get("{.contexts[0].context.user}"), user, "{file}");
        let ca_b64 = get("{.clusters[0].cluster.certificate-authority-data}");
        let ca_back = tool(d, "sh", &["-c", &format!("echo {ca_b64} | base64 -d")]);
        assert_eq!(ca_back, ca_pem, "{file}: CA data");
        let meta = std::fs::metadata(d.join(&file)).unwrap();
        assert_eq!(
            meta.permissions().mode() & 0o777,
            0o600,
            "{file} holds a key"
        );
    }

    // Re-run: everything kept and said so; check is clean.
    let o = init(d);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("0 files created"), "{out}");
    let o = ctl(&[
        "pki",
        "check",
        "--dir",
        d.to_str().unwrap(),
        "--node-name",
        "node1",
        "--node-ip",
        "10.0.0.5",
    ]);
    assert!(o.status.success(), "{o:?}");
    // check for another node: the SAN and identity problems are named, exit 1.
    let o = ctl(&[
        "pki",
        "check",
        "--dir",
        d.to_str().unwrap(),
        "--node-name",
        "node2",
        "--node-ip",
        "10.0.0.5",
    ]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("SAN lacks DNS:node2"), "{out}");
    assert!(
        out.contains("CN is [\"system:node:node1\"], expected \"system:node:node2\""),
        "{out}"
    );
}
