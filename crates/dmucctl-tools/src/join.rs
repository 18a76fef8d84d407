//! `dmucctl token create`: a bootstrap token for a node to join the cluster, as kubeadm makes
//! them: the token's Secret, the RBAC that lets its holders ask for a node certificate and
//! have it approved, and the `cluster-info` ConfigMap that the controller manager's
//! bootstrap signer signs with each token; then the join command, with the CA's pin.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::kube::{self, Api};
use crate::members;

/// The group every dmuc bootstrap token authenticates in (besides `system:bootstrappers`).
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers:dmuc:default-node-token";

/// The Secret holding the kube-proxy service account's token, for joining nodes.
pub const KUBE_PROXY_SECRET: &str = "kube-proxy-token";

/// `dmucctl token create`'s arguments.
#[derive(clap::Args, Debug)]
pub struct TokenArgs {
    #[command(flatten)]
    pub admin: AdminArgs,
    /// How long the token is good for (`30m`, `24h`).
    #[arg(long, value_name = "DURATION", default_value = "24h", value_parser = dmuc_config::duration::parse_duration)]
    pub ttl: Duration,
    /// The API server URL the join command names [default: the kubeconfig's, unless that
    /// is loopback: then https://NODE-IP:6443 of the `kubernetes` endpoint].
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// For a new control-plane member (config/ha.toml): also seal the CAs and the
    /// service-account key into the Secret dmuc-certs under a new certificate key, which the
    /// join command carries (and nothing else keeps). Gone with the token.
    #[arg(long)]
    pub control_plane: bool,
    /// This member's files to seal [default: the kubeconfig's directory].
    #[arg(long, value_name = "DIR", requires = "control_plane")]
    pub pki: Option<PathBuf>,
    /// The name the joining node will have (its kubelet's `--hostname-override`, else its
    /// host name): with --node-ip, pins what its serving certificate may name.
    #[arg(long, value_name = "NAME", requires = "node_ip")]
    pub node_name: Option<String>,
    /// The joining node's addresses (IPs or host names, comma-separated), as the operator
    /// knows them: `csr-approve` approves no others for --node-name [default: those of its
    /// first serving certificate].
    #[arg(long, value_name = "ADDR,...", requires = "node_name", value_parser = crate::csr::parse_pin)]
    pub node_ip: Option<String>,
}

/// An administrator's kubeconfig (`token`, `csr-approve`).
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// An administrator's kubeconfig.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/lib/dmuc/pki/admin.kubeconfig"
    )]
    pub kubeconfig: PathBuf,
}

const TOKENS: &str = "/api/v1/namespaces/kube-system/secrets";

/// A Secret's `data` value, decoded.
fn secret_field(s: &Value, key: &str) -> String {
    s["data"][key]
        .as_str()
        .and_then(|v| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v).ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The table of `dmucctl token list`, from the bootstrap token Secrets (as kubeadm's).
pub fn token_table(secrets: &[Value]) -> String {
    let mut rows = vec![
        [
            "TOKEN-ID",
            "EXPIRES",
            "USAGES",
            "EXTRA-GROUPS",
            "DESCRIPTION",
        ]
        .map(String::from),
    ];
    for s in secrets {
        let usages: Vec<&str> = ["authentication", "signing"]
            .into_iter()
            .filter(|u| secret_field(s, &format!("usage-bootstrap-{u}")) == "true")
            .collect();
        let expires = secret_field(s, "expiration");
        rows.push([
            secret_field(s, "token-id"),
            if expires.is_empty() {
                "never".into()
            } else {
                expires
            },
            usages.join(","),
            secret_field(s, "auth-extra-groups"),
            secret_field(s, "description"),
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let line: Vec<String> = r
                .iter()
                .zip(&widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            line.join("  ").trim_end().to_string() + "\n"
        })
        .collect()
}

/// `dmucctl token list`.
pub fn list(a: AdminArgs) -> u8 {
    let r = kube::load_kubeconfig(&a.kubeconfig)
        .and_then(|k| Api::new(&k, true))
        .and_then(|api| {
            api.get(&format!(
                "{TOKENS}?fieldSelector=type%3Dbootstrap.kubernetes.io%2Ftoken"
            ))
            .map_err(|e| format!("the tokens: {e}"))
        });
    match r {
        Ok(list) => {
            let items = list
                .as_ref()
                .and_then(|l| l["items"].as_array())
                .cloned()
                .unwrap_or_default();
            print!("{}", token_table(&items));
            dmuc_client::OK
        }
        Err(e) => {
            eprintln!("dmucctl: token list: {e}");
            dmuc_client::FAILED
        }
    }
}

/// `dmucctl token delete`: the nodes that joined with them keep their certificates; no new
/// node can join with them.
pub fn delete(a: AdminArgs, tokens: &[String]) -> u8 {
    let api = match kube::load_kubeconfig(&a.kubeconfig).and_then(|k| Api::new(&k, true)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("dmucctl: token delete: {e}");
            return dmuc_client::FAILED;
        }
    };
    let mut failed = false;
    for t in tokens {
        // `ID` or the whole `ID.SECRET`, as kubeadm takes them.
        let id = t.split_once('.').map_or(t.as_str(), |(id, _)| id);
        match api.delete(&format!("{TOKENS}/bootstrap-token-{id}")) {
            Ok(true) => println!("deleted token {id}"),
            Ok(false) => {
                eprintln!("dmucctl: token delete: no token {id}");
                failed = true;
            }
            Err(e) => {
                eprintln!("dmucctl: token delete {id}: {e}");
                failed = true;
            }
        }
    }
    if failed {
        dmuc_client::FAILED
    } else {
        dmuc_client::OK
    }
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
fn cluster_objects(cluster_info: &str) -> Vec<(String, Value)> {
    let crb = |name: &str, role: &str, subject: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": [subject]})
    };
    let group =
        |g: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g});
    let objects: Vec<(&str, Value)> = vec![
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
        // kube-proxy on the joining nodes (and the routes component) as one service account
        // whose long-lived token its bootstrappers may read: kubeadm's DaemonSet identity,
        // without a DaemonSet.
        (
            "/api/v1/namespaces/kube-system/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount",
                   "metadata": {"name": "kube-proxy", "namespace": "kube-system"}}),
        ),
        (
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            crb(
                "dmuc:node-proxier",
                "system:node-proxier",
                json!({"kind": "ServiceAccount", "name": "kube-proxy", "namespace": "kube-system"}),
            ),
        ),
        (
            "/api/v1/namespaces/kube-system/secrets",
            json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
                   "metadata": {"name": KUBE_PROXY_SECRET, "namespace": "kube-system",
                                "annotations": {"kubernetes.io/service-account.name": "kube-proxy"}}}),
        ),
    ];
    let mut all: Vec<(String, Value)> = objects
        .into_iter()
        .map(|(p, o)| (p.to_string(), o))
        .collect();
    // Anonymous discovery reads cluster-info; bootstrappers read kube-proxy's token.
    let user = json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "system:anonymous"});
    all.extend(may_get(
        "kube-public",
        "dmuc:bootstrap-signer-clusterinfo",
        "configmaps",
        "cluster-info",
        user,
    ));
    all.extend(may_get(
        "kube-system",
        "dmuc:kube-proxy-token",
        "secrets",
        KUBE_PROXY_SECRET,
        group(BOOTSTRAP_GROUP),
    ));
    all
}

/// A Role allowing `get` of one object, and its RoleBinding to `subject`.
fn may_get(
    ns: &str,
    name: &str,
    resource: &str,
    object: &str,
    subject: Value,
) -> [(String, Value); 2] {
    let rbac = format!("/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}");
    [
        (
            format!("{rbac}/roles"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": name, "namespace": ns},
                   "rules": [{"apiGroups": [""], "resources": [resource],
                              "resourceNames": [object], "verbs": ["get"]}]}),
        ),
        (
            format!("{rbac}/rolebindings"),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": name, "namespace": ns},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                   "subjects": [subject]}),
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
            eprintln!(
                "(on the command line, the token and the certificate key show in `ps` to every \
                 user of the node while the join runs: --token-file FILE and \
                 --certificate-key-file FILE read them from a file of mode 0600 instead, `-` \
                 from standard input)"
            );
            dmuc_client::OK
        }
        Err(e) => {
            eprintln!("dmucctl: token create: {e}");
            dmuc_client::FAILED
        }
    }
}

fn make(a: &TokenArgs) -> Result<String, String> {
    let k = kube::load_kubeconfig(&a.admin.kubeconfig)?;
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
        if api
            .ensure(&path, &obj)
            .map_err(|e| format!("{name}: {e}"))?
        {
            eprintln!("made {} {name}", obj["kind"].as_str().unwrap_or_default());
        }
    }
    if let (Some(node), Some(pin)) = (&a.node_name, &a.node_ip) {
        crate::csr::pin_node(&api, node, pin, true)?;
        eprintln!(
            "pinned node {node}'s addresses: {pin} (ConfigMap kube-system/{})",
            crate::csr::PINS
        );
    }
    let (id, secret) = (random(6)?, random(16)?);
    let expires = time::OffsetDateTime::now_utc()
        + time::Duration::seconds(i64::try_from(a.ttl.as_secs()).unwrap_or(i64::MAX / 2));
    let made = api
        .create(
            "/api/v1/namespaces/kube-system/secrets",
            &token_secret(&id, &secret, &rfc3339(expires)),
        )
        .map_err(|e| format!("the token's Secret: {e}"))?;
    eprintln!("made token {id}, good until {}", rfc3339(expires));
    let certificate_key = if a.control_plane {
        let pki = a.pki.clone().unwrap_or_else(|| {
            a.admin
                .kubeconfig
                .parent()
                .unwrap_or(std::path::Path::new("."))
                .to_path_buf()
        });
        let uid = made["metadata"]["uid"].as_str().unwrap_or_default();
        Some(upload_certs(
            &api,
            &pki,
            (&format!("bootstrap-token-{id}"), uid),
        )?)
    } else {
        None
    };
    // The controller manager's bootstrap signer signs cluster-info with the new token: a
    // join checks that signature, so the command is only good once it is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    let key = format!("jws-kubeconfig-{id}");
    loop {
        let cm = api
            .get("/api/v1/namespaces/kube-public/configmaps/cluster-info")
            .map_err(|e| format!("cluster-info: {e}"))?;
        let proxy = api
            .get(&format!(
                "/api/v1/namespaces/kube-system/secrets/{KUBE_PROXY_SECRET}"
            ))
            .map_err(|e| format!("{KUBE_PROXY_SECRET}: {e}"))?;
        // The token controller fills the kube-proxy Secret in; joins need both.
        if cm.as_ref().is_some_and(|c| c["data"][&key].is_string())
            && proxy
                .as_ref()
                .is_some_and(|p| p["data"]["token"].is_string())
        {
            break;
        }
        // The signer does not sign with an expired token: a TTL this short cannot work.
        if time::OffsetDateTime::now_utc() > expires {
            return Err(format!(
                "token {id} expired before the bootstrap signer signed cluster-info with it: \
                 give a --ttl longer than {} s",
                a.ttl.as_secs()
            ));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "cluster-info was not signed with token {id}, or the {KUBE_PROXY_SECRET} Secret \
                 not filled in, within 30 s: the controller manager must run the bootstrap \
                 signer and the token controller (--controllers=*,bootstrapsigner,tokencleaner \
                 and --service-account-private-key-file)"
            ));
        }
        std::thread::sleep(Duration::from_millis(200)); // polling the API, with the deadline above
    }
    let mut line = format!(
        "dmucctl join --server {server} --token {id}.{secret} --ca-cert-hash {}",
        kube::ca_hash(&ca)?
    );
    if let Some(k) = certificate_key {
        line.push_str(&format!(" --control-plane --certificate-key {k}"));
    }
    Ok(line)
}

/// Seals this member's shared files into `dmuc-certs` (replacing an earlier one), owned by
/// the token's Secret, readable by the token's group; returns the certificate key.
fn upload_certs(api: &Api, pki: &std::path::Path, owner: (&str, &str)) -> Result<String, String> {
    let files = members::read_shared(pki)?;
    // Stacked etcd: a member's etcd listens on its API server's advertised address.
    let ep = api
        .get("/api/v1/namespaces/default/endpoints/kubernetes")
        .map_err(|e| format!("the API servers' addresses: {e}"))?
        .ok_or("no `kubernetes` endpoint")?;
    let etcd: Vec<String> = ep["subsets"][0]["addresses"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["ip"].as_str())
                .map(|ip| format!("https://{ip}:2379"))
                .collect()
        })
        .unwrap_or_default();
    if etcd.is_empty() {
        return Err("the `kubernetes` endpoint has no address".into());
    }
    let hex = members::new_key()?;
    let key = members::parse_key(&hex)?;
    let secret = members::certs_secret(&key, &files, &etcd, owner)?;
    for (path, obj) in may_get(
        "kube-system",
        "dmuc:control-plane-certs",
        "secrets",
        members::CERTS_SECRET,
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": BOOTSTRAP_GROUP}),
    ) {
        api.ensure(&path, &obj)
            .map_err(|e| format!("{path}: {e}"))?;
    }
    let path = format!("{TOKENS}/{}", members::CERTS_SECRET);
    api.delete(&path)
        .map_err(|e| format!("{}: {e}", members::CERTS_SECRET))?;
    api.create(TOKENS, &secret)
        .map_err(|e| format!("{}: {e}", members::CERTS_SECRET))?;
    eprintln!(
        "sealed {} into Secret kube-system/{} (etcd at {}): it goes with the token",
        members::SHARED.map(|(n, _)| n).join(", "),
        members::CERTS_SECRET,
        etcd.join(",")
    );
    Ok(hex)
}

/// `dmucctl join`'s arguments.
#[derive(clap::Args, Debug)]
pub struct JoinArgs {
    /// The control plane's API server (what `dmucctl token create` printed).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The bootstrap token, `ID.SECRET` (any local user can read it in `ps` while the join
    /// runs: --token-file keeps it off the command line).
    #[arg(
        long,
        value_name = "TOKEN",
        required_unless_present = "token_file",
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// Read the bootstrap token from this file (`-`: standard input).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The pin of the cluster CA's public key: cluster-info's CA must have it.
    #[arg(long, value_name = "sha256:HEX")]
    pub ca_cert_hash: String,
    /// This node's state directory (the worker profile's `state`).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/dmuc")]
    pub state: PathBuf,
    /// Replace an earlier join's files (and the kubelet's credentials from it).
    #[arg(long)]
    pub force: bool,
    /// Join as a control-plane member (config/ha.toml) instead of a worker: the CAs and the
    /// service-account key from the sealed Secret, and this member's etcd added as a learner.
    #[arg(long, requires_all = ["node_name", "node_ip"])]
    pub control_plane: bool,
    /// The key that opens the sealed Secret (what `token create --control-plane` printed;
    /// --certificate-key-file keeps it off the command line).
    #[arg(
        long,
        value_name = "HEX",
        requires = "control_plane",
        conflicts_with = "certificate_key_file"
    )]
    pub certificate_key: Option<String>,
    /// Read the certificate key from this file (`-`: standard input).
    #[arg(long, value_name = "FILE", requires = "control_plane")]
    pub certificate_key_file: Option<PathBuf>,
    /// This member's name (its etcd member name; the profile's `node`).
    #[arg(long, value_name = "NAME", requires = "control_plane")]
    pub node_name: Option<String>,
    /// This member's address (etcd's peer and client URLs; the profile's `node-ip`).
    #[arg(long, value_name = "IP", requires = "control_plane")]
    pub node_ip: Option<std::net::Ipv4Addr>,
}

impl JoinArgs {
    /// The token (after [`JoinArgs::read_secrets`]).
    fn token(&self) -> &str {
        self.token.as_deref().unwrap_or_default()
    }

    /// Reads the token and the certificate key from their files where given (`-`: standard
    /// input, for one of them), so that neither shows in `ps`.
    pub fn read_secrets(&mut self, stdin: &mut dyn std::io::Read) -> Result<(), String> {
        if self.token_file.as_deref() == Some(std::path::Path::new("-"))
            && self.certificate_key_file.as_deref() == Some(std::path::Path::new("-"))
        {
            return Err(
                "--token-file and --certificate-key-file cannot both be standard input".into(),
            );
        }
        let mut read = |f: &std::path::Path, what: &str| -> Result<String, String> {
            let mut text = String::new();
            if f == std::path::Path::new("-") {
                use std::io::Read as _;
                std::io::Read::take(&mut *stdin, 4096)
                    .read_to_string(&mut text)
                    .map_err(|e| format!("{what} from standard input: {e}"))?;
            } else {
                text = std::fs::read_to_string(f)
                    .map_err(|e| format!("{what} file {}: {e}", f.display()))?;
            }
            let v = text.trim().to_string();
            if v.is_empty() {
                return Err(format!("no {what} in {}", f.display()));
            }
            Ok(v)
        };
        if let Some(f) = &self.token_file.clone() {
            self.token = Some(read(f, "token")?);
        }
        if let Some(f) = &self.certificate_key_file.clone() {
            self.certificate_key = Some(read(f, "certificate key")?);
        }
        if self.control_plane && self.certificate_key.is_none() {
            return Err("--control-plane needs the certificate key: --certificate-key-file FILE (or --certificate-key)".into());
        }
        Ok(())
    }
}

/// `ID.SECRET` of a bootstrap token (`[a-z0-9]{6}.[a-z0-9]{16}`).
pub fn parse_token(t: &str) -> Result<(&str, &str), String> {
    let ok = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    match t.split_once('.') {
        Some((id, secret)) if ok(id, 6) && ok(secret, 16) => Ok((id, secret)),
        _ => Err(format!(
            "--token {t:?} is not a bootstrap token: 6 and 16 of [a-z0-9] joined by a dot, \
             as `dmucctl token create` prints"
        )),
    }
}

/// `sha256:HEX` in lower case, as [`kube::ca_hash`] prints it.
pub fn parse_hash(h: &str) -> Result<String, String> {
    match h.split_once(':') {
        Some((alg, hex))
            if alg.eq_ignore_ascii_case("sha256")
                && hex.len() == 64
                && hex.bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
        }
        _ => Err(format!(
            "--ca-cert-hash {h:?} is not sha256: and 64 hex digits, as `dmucctl token create` prints"
        )),
    }
}

/// The API server's URL: https only (the token would cross the network in clear).
pub fn parse_server(s: &str) -> Result<String, String> {
    let rest = s.strip_prefix("https://").ok_or_else(|| {
        format!(
            "--server {s:?}: only https:// is taken (the token and the node's credentials must not cross the network in clear)"
        )
    })?;
    if rest.trim_end_matches('/').is_empty() {
        return Err(format!("--server {s:?} names no host"));
    }
    Ok(s.trim_end_matches('/').to_string())
}

/// Checks the `cluster-info` ConfigMap read without trusting the server: signed with the
/// token's secret (the server knows the token) and holding the CA the pin names (the
/// operator knows the CA). Returns the CA.
pub fn check_cluster_info(
    cm: &Value,
    id: &str,
    secret: &str,
    pin: &str,
) -> Result<Vec<u8>, String> {
    let content = cm["data"]["kubeconfig"]
        .as_str()
        .ok_or("cluster-info holds no kubeconfig: is this a dmuc or kubeadm control plane?")?;
    let jws = cm["data"][format!("jws-kubeconfig-{id}")]
        .as_str()
        .ok_or_else(|| {
            format!(
                "the cluster does not know token {id} (expired, deleted or never made): make a \
                 new one with `dmucctl token create` on the control plane"
            )
        })?;
    kube::jws_ok(jws, content, id, secret)
        .map_err(|e| format!("{e}: a wrong token secret, or not the cluster you think"))?;
    let k = kube::parse_kubeconfig_inline(content).map_err(|e| format!("cluster-info: {e}"))?;
    let ca = k.ca.ok_or("cluster-info's kubeconfig holds no CA")?;
    // The pin names one certificate: a bundle would let whoever can sign cluster-info (any
    // holder of the token, answering in the server's place) add a CA of their own beside it.
    let certs = x509_parser::pem::Pem::iter_from_buffer(&ca)
        .filter(|p| p.as_ref().is_ok_and(|p| p.label == "CERTIFICATE"))
        .count();
    if certs != 1 {
        return Err(format!(
            "cluster-info's CA holds {certs} certificates: only the one --ca-cert-hash pins is              trusted, alone"
        ));
    }
    let found = kube::ca_hash(&ca)?;
    if found != pin {
        return Err(format!(
            "the cluster's CA has the public key hash {found}, not {pin} as --ca-cert-hash \
             pins: check the join command (or something is between this node and the cluster)"
        ));
    }
    Ok(ca)
}

/// The files a join writes, under STATE/pki.
pub const JOIN_FILES: [&str; 3] = [
    "ca.crt",
    "bootstrap-kubelet.kubeconfig",
    "kube-proxy.kubeconfig",
];

/// What the kubelet makes of the bootstrap kubeconfig: stale after a new join.
const KUBELET_CREDENTIALS: [&str; 2] = ["kubelet.kubeconfig", "kubelet"];

/// `dmucctl join`.
pub fn join(mut a: JoinArgs) -> u8 {
    if let Err(e) = a.read_secrets(&mut std::io::stdin()) {
        eprintln!("dmucctl: join: {e}; nothing was written");
        return dmuc_client::FAILED;
    }
    if a.control_plane {
        return join_control_plane(&a);
    }
    let files = match discover(&a) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("dmucctl: join: {e}; nothing was written");
            return dmuc_client::FAILED;
        }
    };
    match write_join(&a.state.join("pki"), files) {
        Ok(written) => {
            for f in &written {
                println!("wrote {}", f.display());
            }
            println!(
                "joined {}: now start the node with\n  dmucd --config config/worker.toml --var state={}",
                a.server,
                a.state.display()
            );
            dmuc_client::OK
        }
        Err(e) => {
            eprintln!("dmucctl: join: {e}; run the join again with --force once fixed");
            dmuc_client::FAILED
        }
    }
}

/// Refuses a node that has joined already (one of `files` exists), unless --force.
fn joined_already(a: &JoinArgs, files: &[&str]) -> Result<(), String> {
    let pki = a.state.join("pki");
    match files.iter().map(|f| pki.join(f)).find(|p| p.exists()) {
        Some(p) if !a.force => Err(format!(
            "{} exists: this node has joined already (`dmucctl reset` it, or --force)",
            p.display()
        )),
        _ => Ok(()),
    }
}

/// The checks of a join, which write nothing: the files to write (name, text, mode).
fn discover(a: &JoinArgs) -> Result<Vec<(&'static str, String, u32)>, String> {
    let mut already = JOIN_FILES[1..].to_vec();
    already.push(KUBELET_CREDENTIALS[0]);
    joined_already(a, &already)?;
    let (ca, api, server) = login(a)?;
    let proxy = api
        .get(&format!(
            "/api/v1/namespaces/kube-system/secrets/{KUBE_PROXY_SECRET}"
        ))
        .map_err(|e| format!("kube-proxy's token: {e}"))?
        .ok_or("the control plane has no kube-proxy token: run a newer `dmucctl token create`")?;
    let proxy_token = proxy["data"]["token"]
        .as_str()
        .and_then(|t| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, t).ok())
        .and_then(|t| String::from_utf8(t).ok())
        .ok_or("the kube-proxy-token Secret holds no token yet")?;

    let ca_text = String::from_utf8_lossy(&ca).into_owned();
    Ok(vec![
        (JOIN_FILES[0], ca_text.clone(), 0o644),
        (
            JOIN_FILES[1],
            crate::pki::token_kubeconfig("dmuc", &server, "kubelet-bootstrap", &ca_text, a.token()),
            0o600,
        ),
        (
            JOIN_FILES[2],
            crate::pki::token_kubeconfig("dmuc", &server, "kube-proxy", &ca_text, &proxy_token),
            0o600,
        ),
    ])
}

/// Discovery and login with the token: the cluster's CA (checked against the pin), a client
/// logged in as the bootstrapper, and the server URL.
fn login(a: &JoinArgs) -> Result<(Vec<u8>, Api, String), String> {
    let (id, secret) = parse_token(a.token())?;
    let pin = parse_hash(&a.ca_cert_hash)?;
    let server = parse_server(&a.server)?;
    let info = "/api/v1/namespaces/kube-public/configmaps/cluster-info";
    // Discovery: nothing is trusted until the signature and the pin are checked.
    let blind = Api::new(
        &kube::Kubeconfig {
            server: server.clone(),
            ..Default::default()
        },
        false,
    )?;
    let cm = blind
        .get(info)
        .map_err(|e| format!("cluster-info from {server}: {e}"))?
        .ok_or_else(|| {
            format!("{server} has no cluster-info: run `dmucctl token create` on the control plane")
        })?;
    let ca = check_cluster_info(&cm, id, secret, &pin)?;
    // From here the server's certificate must chain to that CA, and the token must log in.
    let mut k = kube::Kubeconfig {
        server: server.clone(),
        ca: Some(ca.clone()),
        ..Default::default()
    };
    Api::new(&k, true)?
        .get(info)
        .map_err(|e| format!("{server} with the cluster's CA: {e}"))?;
    k.token = Some(a.token().to_string());
    let api = Api::new(&k, true)?;
    login_check(&api, id).map_err(|e| format!("logging in with the token: {e}"))?;
    Ok((ca, api, server))
}

/// That the token logs in as the bootstrapper `system:bootstrap:ID`: asked of the API server
/// itself (SelfSubjectReview) where it has it (1.26 and later, discovered); older servers
/// cannot say who a client is, so there the token must log in and be allowed what the
/// kubelet's TLS bootstrap does (create a CertificateSigningRequest).
fn login_check(api: &Api, id: &str) -> Result<(), String> {
    let group = api
        .get("/apis/authentication.k8s.io/v1")
        .map_err(|e| e.to_string())?
        .unwrap_or_default();
    let has_review = group["resources"]
        .as_array()
        .is_some_and(|r| r.iter().any(|r| r["name"] == "selfsubjectreviews"));
    if has_review {
        let review = api
            .create(
                "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
            )
            .map_err(|e| e.to_string())?;
        let user = review["status"]["userInfo"]["username"]
            .as_str()
            .unwrap_or_default();
        if user != format!("system:bootstrap:{id}") {
            return Err(format!(
                "the token logs in as {user:?}, not as the bootstrapper system:bootstrap:{id}"
            ));
        }
        return Ok(());
    }
    let review = api
        .create(
            "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
            &json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                    "spec": {"resourceAttributes": {"group": "certificates.k8s.io",
                        "resource": "certificatesigningrequests", "verb": "create"}}}),
        )
        .map_err(|e| e.to_string())?;
    if review["status"]["allowed"] != true {
        return Err(format!(
            "the token logs in but may not ask for a kubelet certificate (system:bootstrap:{id} lacks create on certificatesigningrequests): {}",
            review["status"]["reason"]
                .as_str()
                .unwrap_or("no reason given")
        ));
    }
    Ok(())
}

/// `dmucctl join --control-plane`: discovery and login as for a node, then the sealed shared
/// files opened with the certificate key, this member added to etcd as a learner (the last
/// step that can fail on the cluster's side), then the files written: the shared ones and
/// etcd-cluster.env. `pki init` (the profile's pki component) issues the member's own
/// certificates from the CAs.
fn join_control_plane(a: &JoinArgs) -> u8 {
    let fail = |e: String, written: bool| {
        let tail = if written {
            "run the join again with --force once fixed"
        } else {
            "nothing was written"
        };
        eprintln!("dmucctl: join --control-plane: {e}; {tail}");
        dmuc_client::FAILED
    };
    let (files, env) = match member_files(a) {
        Ok(x) => x,
        Err(e) => return fail(e, false),
    };
    let pki = a.state.join("pki");
    let mut out: Vec<(&str, String, u32)> = Vec::new();
    for (name, bytes, mode) in files {
        out.push((name, String::from_utf8_lossy(&bytes).into_owned(), mode));
    }
    let written = write_join(&pki, out).and_then(|mut w| {
        let p = a.state.join(members::ETCD_ENV);
        crate::pki::write_file(&p, env.as_bytes(), 0o644)?;
        w.push(p);
        Ok(w)
    });
    match written {
        Ok(w) => {
            for f in &w {
                println!("wrote {}", f.display());
            }
            println!(
                "joined {} as a control-plane member: now start it with\n  dmucd --config config/ha.toml --var state={} --var node={} --var node-ip={}",
                a.server,
                a.state.display(),
                a.node_name.as_deref().unwrap_or_default(),
                a.node_ip.map(|i| i.to_string()).unwrap_or_default()
            );
            dmuc_client::OK
        }
        Err(e) => fail(
            format!(
                "{e} (etcd has this member as a learner already: `dmucctl etcd remove` it on a running member first)"
            ),
            true,
        ),
    }
}

/// The checks and the etcd member add of a control-plane join: the shared files and the
/// text of etcd-cluster.env.
fn member_files(a: &JoinArgs) -> Result<(Vec<members::SharedFile>, String), String> {
    let (Some(hex), Some(name), Some(ip)) = (&a.certificate_key, &a.node_name, a.node_ip) else {
        return Err("--control-plane needs --certificate-key, --node-name and --node-ip".into());
    };
    let key = members::parse_key(hex)?;
    joined_already(a, &["ca.key", members::ETCD_ENV])?;
    if a.state.join("etcd").join("member").exists() && !a.force {
        return Err(format!(
            "{} holds etcd data already: this node was a member (`dmucctl reset` it first)",
            a.state.join("etcd").display()
        ));
    }
    let (_, api, _) = login(a)?;
    let secret = api
        .get(&format!("{TOKENS}/{}", members::CERTS_SECRET))
        .map_err(|e| format!("{}: {e}", members::CERTS_SECRET))?
        .ok_or_else(|| {
            format!(
                "the cluster has no {} Secret (or it went with its token): run `dmucctl token                  create --control-plane` on a member",
                members::CERTS_SECRET
            )
        })?;
    let (files, endpoints) = members::open_secret(&key, &secret)?;
    let get = |n: &str| {
        files
            .iter()
            .find(|(f, ..)| *f == n)
            .map(|(_, b, _)| b.clone())
            .unwrap_or_default()
    };
    let (etcd_ca, etcd_key) = (get("etcd-ca.crt"), get("etcd-ca.key"));
    let apis = endpoints
        .iter()
        .map(|e| Ok((e.clone(), members::etcd_client(&etcd_ca, &etcd_key, e)?)))
        .collect::<Result<Vec<_>, String>>()?;
    let peer = format!("https://{ip}:2380");
    let (i, now) = members::member_list(&apis)?;
    if let Some(why) = members::refuse_join(&now, name, &peer) {
        return Err(why);
    }
    // etcd refuses a new member until every voter has been connected for 5 s (its strict
    // reconfiguration check): right after another member's promotion, say. Retried.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (id, after) = loop {
        match members::add_learner(&apis[i].1, &peer) {
            Err(e) if e.contains("unhealthy cluster") && std::time::Instant::now() < deadline => {
                println!("waiting: {e}");
                std::thread::sleep(Duration::from_secs(1)); // polling etcd, with the deadline above
            }
            r => break r?,
        }
    };
    let initial = members::initial_cluster(&after, name, &peer)?;
    println!("etcd: added {name} ({id}) at {peer} as a learner");
    let voters: Vec<String> = after
        .iter()
        .filter(|m| !m.learner)
        .flat_map(|m| m.clients.clone())
        .collect();
    Ok((files, members::etcd_env(&initial, "existing", &voters)))
}

/// Writes a join's files into `pki`, each atomically.
fn write_join(
    pki: &std::path::Path,
    files: Vec<(&str, String, u32)>,
) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(pki).map_err(|e| format!("{}: {e}", pki.display()))?;
    // An earlier join's kubelet credentials would keep the kubelet in the old cluster.
    for f in KUBELET_CREDENTIALS {
        let p = pki.join(f);
        let gone = if p.is_dir() {
            std::fs::remove_dir_all(&p)
        } else {
            std::fs::remove_file(&p)
        };
        if let Err(e) = gone
            && e.kind() != std::io::ErrorKind::NotFound
        {
            return Err(format!("{}: {e}", p.display()));
        }
    }
    let mut written = Vec::new();
    for (name, text, mode) in files {
        let p = pki.join(name);
        crate::pki::write_file(&p, text.as_bytes(), mode)?;
        written.push(p);
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
