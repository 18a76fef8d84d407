//! `dmucctl token create`: a bootstrap token for a node to join the cluster, as kubeadm makes
//! them: the token's Secret, the RBAC that lets its holders ask for a node certificate and
//! have it approved, and the `cluster-info` ConfigMap that the controller manager's
//! bootstrap signer signs with each token; then the join command, with the CA's pin.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kube::{self, Api};

/// The group every dmuc bootstrap token authenticates in (besides `system:bootstrappers`).
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:dmuc:default-node-token";

/// `dmucctl token create`'s arguments.
#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    /// An administrator's kubeconfig.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/lib/dmuc/pki/admin.kubeconfig"
    )]
    pub kubeconfig: PathBuf,
    /// How long the token is good for (`30m`, `24h`).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = dmuc_config::duration::parse_duration)]
    pub ttl: Duration,
    /// The API server URL the join command names [default: the kubeconfig's, unless that
    /// is loopback: then https://NODE-IP:6443 of the `kubernetes` endpoint].
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
}

/// `[a-z0-9]{n}` from the system's random source.
fn random(n: usize) -> Result<String, String> {
    use ring::rand::SecureRandom;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let rng = ring::rand::SystemRandom::new();
    let mut out = String::with_capacity(n);
    while out.len() < n {
        let mut b = [0u8; 32];
        rng.fill(&mut b)
            .map_err(|_| "no random numbers".to_string())?;
        // 252 = 7 × 36: the bytes above are dropped, so every letter is as likely.
        out.extend(
            b.iter()
                .filter(|&&x| x < 252)
                .map(|&x| ALPHABET[(x % 36) as usize] as char),
        );
    }
    out.truncate(n);
    Ok(out)
}

/// RFC 3339 in UTC, as the token's `expiration` wants it.
fn rfc3339(t: time::OffsetDateTime) -> String {
    crate::backup::utc(t, "-", ":")
}

/// The objects that do not depend on the token, by collection path: made once, kept.
fn cluster_objects(cluster_info: &str) -> Vec<(&'static str, Value)> {
    let crb = |name: &str, role: &str, subject: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": [subject]})
    };
    let group =
        |g: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g});
    vec![
        // Its holders may ask for a node client certificate...
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            crb(
                "dmuc:kubelet-bootstrap",
                "system:node-bootstrapper",
                group(BOOTSTRAP_GROUP),
            ),
        ),
        // ... which the controller manager approves, as it approves nodes' renewals.
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            crb(
                "dmuc:node-autoapprove-bootstrap",
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                group(BOOTSTRAP_GROUP),
            ),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            crb(
                "dmuc:node-autoapprove-certificate-rotation",
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                group("system:nodes"),
            ),
        ),
        // What a joining node reads before it trusts anything: the CA and the server.
        (
            "/api/v1/namespaces/kube-public/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cluster-info", "namespace": "kube-public"},
                   "data": {"kubeconfig": cluster_info}}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-public/roles",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "dmuc:bootstrap-signer-clusterinfo", "namespace": "kube-public"},
                   "rules": [{"apiGroups": [""], "resources": ["configmaps"],
                              "resourceNames": ["cluster-info"], "verbs": ["get"]}]}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/namespaces/kube-public/rolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "dmuc:bootstrap-signer-clusterinfo", "namespace": "kube-public"},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                               "name": "dmuc:bootstrap-signer-clusterinfo"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                                 "name": "system:anonymous"}]}),
        ),
    ]
}

/// The token's Secret.
fn token_secret(id: &str, secret: &str, expires: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
           "metadata": {"name": format!("bootstrap-token-{id}"), "namespace": "kube-system"},
           "stringData": {
               "description": "made by dmucctl token create",
               "token-id": id, "token-secret": secret, "expiration": expires,
               "usage-bootstrap-authentication": "true", "usage-bootstrap-signing": "true",
               "auth-extra-groups": BOOTSTRAP_GROUP}})
}

/// `dmucctl token create`: prints the join command on stdout (and what it made on stderr).
pub fn create(a: TokenArgs) -> u8 {
    match make(&a) {
        Ok(line) => {
            println!("{line}");
            dmuc_client::OK
        }
        Err(e) => {
            eprintln!("dmucctl: token create: {e}");
            dmuc_client::FAILED
        }
    }
}

fn make(a: &TokenArgs) -> Result<String, String> {
    let k = kube::load_kubeconfig(&a.kubeconfig)?;
    let ca = k.ca.clone().ok_or("the kubeconfig holds no CA")?;
    let api = Api::new(&k, true)?;
    let server = match &a.server {
        Some(s) => s.clone(),
        None if !k.server.contains("//127.") && !k.server.contains("//localhost") => {
            k.server.clone()
        }
        // Loopback reaches nothing from another node: the address the API server advertises.
        None => {
            let ep = api
                .get("/api/v1/namespaces/default/endpoints/kubernetes")
                .map_err(|e| format!("the API server's address: {e}"))?
                .ok_or("no `kubernetes` endpoint: give --server")?;
            let ip = ep["subsets"][0]["addresses"][0]["ip"]
                .as_str()
                .ok_or("the `kubernetes` endpoint has no address: give --server")?;
            let port = ep["subsets"][0]["ports"][0]["port"]
                .as_u64()
                .unwrap_or(6443);
            format!("https://{ip}:{port}")
        }
    };
    let cluster_info = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: \"\"\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\ncontexts: null\ncurrent-context: \"\"\nusers: null\npreferences: {{}}\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &ca)
    );
    for (path, obj) in cluster_objects(&cluster_info) {
        let name = obj["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if api.ensure(path, &obj).map_err(|e| format!("{name}: {e}"))? {
            eprintln!("made {} {name}", obj["kind"].as_str().unwrap_or_default());
        }
    }
    let (id, secret) = (random(6)?, random(16)?);
    let expires = time::OffsetDateTime::now_utc()
        + time::Duration::seconds(i64::try_from(a.ttl.as_secs()).unwrap_or(i64::MAX / 2));
    api.create(
        "/api/v1/namespaces/kube-system/secrets",
        &token_secret(&id, &secret, &rfc3339(expires)),
    )
    .map_err(|e| format!("the token's Secret: {e}"))?;
    eprintln!("made token {id}, good until {} UTC", rfc3339(expires));
    // The controller manager's bootstrap signer signs cluster-info with the new token: a
    // join checks that signature, so the command is only good once it is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let key = format!("jws-kubeconfig-{id}");
    loop {
        let cm = api
            .get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
            .map_err(|e| format!("cluster-info: {e}"))?;
        if cm.as_ref().is_some_and(|c| c["data"][&key].is_string()) {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "cluster-info was not signed with token {id} within 30 s: the controller \
                 manager must run the bootstrap signer (--controllers=*,bootstrapsigner,tokencleaner)"
            ));
        }
        std::thread::sleep(Duration::from_millis(200)); // polling the API, with the deadline above
    }
    Ok(format!(
        "dmucctl join --server {server} --token {id}.{secret} --ca-cert-hash {}",
        kube::ca_hash(&ca)?
    ))
}
