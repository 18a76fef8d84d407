//! `dmucctl pki init|check`: the certificates, keys and kubeconfigs `config/cluster.toml`
//! needs, generated in Rust (rcgen; no openssl at run time). What to generate follows the
//! Kubernetes "PKI certificates and requirements" page, trimmed to one node
//! (../shared/design/k8s-modern.md §3).
//!
//! The plan ([`plan`]) is pure: names, subjects, usages and SANs from the options. `init`
//! carries it out: a file that exists is kept (unless `--force`), so a re-run only fills
//! gaps; a new CA makes every certificate new, since the old ones would not verify.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose as Eku, IsCa, Issuer,
    KeyPair, KeyUsagePurpose as Ku, SanType,
};

/// What `pki init` is asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the files go.
    pub dir: PathBuf,
    /// The node's name (the kubelet's identity: `system:node:NAME`).
    pub node_name: String,
    /// The node's IP (apiserver and kubelet SANs; kubelet and kube-proxy reach the API there).
    pub node_ip: Ipv4Addr,
    /// Cluster name in the kubeconfigs.
    pub cluster_name: String,
    /// The service CIDR: its first address is the `kubernetes` Service's, so a SAN.
    pub service_cidr: String,
    /// Leaf validity, days.
    pub days: u32,
    /// CA validity, days.
    pub ca_days: u32,
    /// Replace existing files.
    pub force: bool,
    /// More names and addresses for the API server's certificate (a load balancer, a DNS
    /// name): IPs as IP SANs, the rest as DNS SANs.
    pub sans: Vec<String>,
    /// The control plane's users by role (`etcd`, `apiserver`, `controller-manager`,
    /// `scheduler`): each private key goes to the role that reads it ([`KEY_OWNERS`]).
    pub users: Vec<(String, String)>,
}

/// The roles of the control plane's users.
pub const ROLES: [&str; 4] = ["etcd", "apiserver", "controller-manager", "scheduler"];

/// Which role reads each private key (or kubeconfig holding one), and which role's group may
/// also read it (0640 then; 0600 otherwise). The rest stay root's.
pub const KEY_OWNERS: &[(&str, &str, Option<&str>)] = &[
    ("etcd-server.key", "etcd", None),
    ("etcd-peer.key", "etcd", None),
    ("apiserver.key", "apiserver", None),
    ("apiserver-kubelet-client.key", "apiserver", None),
    ("apiserver-etcd-client.key", "apiserver", None),
    // The API server signs service-account tokens with it, the controller manager too.
    ("sa.key", "apiserver", Some("controller-manager")),
    // The controller manager signs the nodes' certificates.
    ("ca.key", "controller-manager", None),
    // It signs the joined kubelets' serving certificates.
    ("kubelet-ca.key", "controller-manager", None),
    (
        "kube-controller-manager.kubeconfig",
        "controller-manager",
        None,
    ),
    ("kube-scheduler.kubeconfig", "scheduler", None),
];

/// `ROLE=USER`, for `--user`.
pub fn parse_role_user(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((r, u)) if ROLES.contains(&r) && !u.is_empty() => Ok((r.into(), u.into())),
        _ => Err(format!(
            "{s:?}: want ROLE=USER with ROLE one of {}",
            ROLES.join(", ")
        )),
    }
}

/// The uid and primary gid of a user.
fn ids_of(user: &str) -> Result<(u32, u32), String> {
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok((u.uid.as_raw(), u.gid.as_raw())),
        Ok(None) => Err(format!(
            "no user {user}: make it first (config/cluster.toml's users component does)"
        )),
        Err(e) => Err(format!("user {user}: {e}")),
    }
}

/// Who should own `file` and with which mode, from `users`: `None` when no role of it is set.
fn wanted_owner(file: &str, users: &[(String, String)]) -> Option<Result<(u32, u32, u32), String>> {
    let (_, role, group) = KEY_OWNERS.iter().find(|(f, ..)| *f == file)?;
    let user_of = |r: &str| users.iter().find(|(x, _)| x == r).map(|(_, u)| u.as_str());
    let user = user_of(role)?;
    Some((|| {
        let (uid, gid) = ids_of(user)?;
        match group.and_then(user_of) {
            Some(g) => Ok((uid, ids_of(g)?.1, 0o640)),
            None => Ok((uid, gid, 0o600)),
        }
    })())
}

/// Which side of TLS a certificate serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// serverAuth.
    Server,
    /// clientAuth.
    Client,
    /// Both: etcd's serving and peer certificates (a member is its peers' client, and
    /// etcdctl with the member's certificate is the client of its own server).
    Both,
}

/// The CAs: the cluster's, and etcd's own (as the Kubernetes PKI guide and the author's labs
/// recommend: a client certificate of the cluster CA must not open etcd).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ca {
    /// `ca.crt`: the API server, the kubelets, every kubeconfig.
    Cluster,
    /// `etcd-ca.crt`: etcd's serving and peer certificates and its clients'.
    Etcd,
    /// `kubelet-ca.crt`: the kubelets' serving certificates only (the controller manager
    /// signs joined nodes' with it). The API server verifies kubelets with it; clients of the
    /// API server never trust it, so a node's certificate can never pass for the API server.
    Kubelet,
}

impl Ca {
    /// The file stem (`ca`, `etcd-ca`).
    pub fn stem(self) -> &'static str {
        match self {
            Ca::Cluster => "ca",
            Ca::Etcd => "etcd-ca",
            Ca::Kubelet => "kubelet-ca",
        }
    }

    fn cn(self) -> &'static str {
        match self {
            Ca::Cluster => "kubernetes-ca",
            Ca::Etcd => "etcd-ca",
            Ca::Kubelet => "kubelet-serving-ca",
        }
    }
}

/// One certificate of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPlan {
    /// File stem: `NAME.crt` and `NAME.key`.
    pub name: &'static str,
    /// Subject CN.
    pub cn: String,
    /// Subject O, when the identity needs a group.
    pub org: Option<&'static str>,
    /// serverAuth or clientAuth.
    pub usage: Usage,
    /// The CA that signs it.
    pub ca: Ca,
    /// DNS SANs.
    pub dns: Vec<String>,
    /// IP SANs.
    pub ips: Vec<IpAddr>,
}

/// One kubeconfig of the plan: `NAME.kubeconfig`, with the client cert `cert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeconfigPlan {
    /// File stem.
    pub name: &'static str,
    /// The certificate (stem) it authenticates with.
    pub cert: &'static str,
    /// API server URL.
    pub server: String,
}

/// The first usable address of an IPv4 CIDR (`10.96.0.0/12` → `10.96.0.1`).
pub fn first_ip(cidr: &str) -> Result<Ipv4Addr, String> {
    let (net, bits) = cidr
        .split_once('/')
        .ok_or_else(|| format!("{cidr} is not an IPv4 CIDR like 10.96.0.0/12"))?;
    let net: Ipv4Addr = net
        .parse()
        .map_err(|_| format!("{cidr}: {net} is not an IPv4 address"))?;
    let bits: u32 = bits
        .parse()
        .ok()
        .filter(|b| *b <= 30)
        .ok_or_else(|| format!("{cidr}: the prefix must be 0..=30"))?;
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    Ok(Ipv4Addr::from((u32::from(net) & mask) + 1))
}

/// Every certificate and kubeconfig, from the options. Pure.
pub fn plan(o: &Options) -> Result<(Vec<CertPlan>, Vec<KubeconfigPlan>), String> {
    let svc = first_ip(&o.service_cidr)?;
    let local = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let node_ip = IpAddr::V4(o.node_ip);
    let mut api_ips = vec![local, IpAddr::V4(svc), node_ip];
    let mut api_dns: Vec<String> = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        &o.node_name,
    ]
    .map(String::from)
    .to_vec();
    for san in &o.sans {
        match san.parse::<IpAddr>() {
            Ok(ip) if !api_ips.contains(&ip) => api_ips.push(ip),
            Ok(_) => {}
            Err(_) if !api_dns.contains(san) => api_dns.push(san.clone()),
            Err(_) => {}
        }
    }
    api_ips.dedup();
    let node_ips = if node_ip == local {
        vec![local]
    } else {
        vec![node_ip, local]
    };
    let client = |name, cn: &str, org| CertPlan {
        name,
        cn: cn.to_string(),
        org,
        usage: Usage::Client,
        ca: Ca::Cluster,
        dns: vec![],
        ips: vec![],
    };
    let certs = vec![
        CertPlan {
            name: "apiserver",
            cn: "kube-apiserver".into(),
            org: None,
            usage: Usage::Server,
            ca: Ca::Cluster,
            dns: api_dns,
            ips: api_ips,
        },
        client(
            "apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            Some("system:masters"),
        ),
        client("admin", "kubernetes-admin", Some("system:masters")),
        client(
            "kube-controller-manager",
            "system:kube-controller-manager",
            None,
        ),
        client("kube-scheduler", "system:kube-scheduler", None),
        client(
            "kubelet-client",
            &format!("system:node:{}", o.node_name),
            Some("system:nodes"),
        ),
        client(
            "kube-proxy",
            "system:kube-proxy",
            Some("system:node-proxier"),
        ),
        // The kubelet's serving certificate, from the kubelets' own CA, so the apiserver can
        // verify it (--kubelet-certificate-authority) for logs/exec.
        CertPlan {
            name: "kubelet",
            cn: o.node_name.clone(),
            org: None,
            usage: Usage::Server,
            ca: Ca::Kubelet,
            dns: vec![o.node_name.clone(), "localhost".into()],
            ips: node_ips.clone(),
        },
        // etcd's, from its own CA: the member's serving and peer certificates, and the API
        // server's as its client.
        CertPlan {
            name: "etcd-server",
            cn: o.node_name.clone(),
            org: None,
            usage: Usage::Both,
            ca: Ca::Etcd,
            dns: vec![o.node_name.clone(), "localhost".into()],
            ips: node_ips.clone(),
        },
        CertPlan {
            name: "etcd-peer",
            cn: o.node_name.clone(),
            org: None,
            usage: Usage::Both,
            ca: Ca::Etcd,
            dns: vec![o.node_name.clone(), "localhost".into()],
            ips: node_ips,
        },
        CertPlan {
            ca: Ca::Etcd,
            ..client("apiserver-etcd-client", "kube-apiserver-etcd-client", None)
        },
    ];
    let api_local = "https://127.0.0.1:6443".to_string();
    let api_node = format!("https://{}:6443", o.node_ip);
    let kubeconfigs = vec![
        KubeconfigPlan {
            name: "admin",
            cert: "admin",
            server: api_local.clone(),
        },
        KubeconfigPlan {
            name: "kube-controller-manager",
            cert: "kube-controller-manager",
            server: api_local.clone(),
        },
        KubeconfigPlan {
            name: "kube-scheduler",
            cert: "kube-scheduler",
            server: api_local,
        },
        // Node components reach the API at the node's address, as they would from another
        // host later.
        KubeconfigPlan {
            name: "kubelet",
            cert: "kubelet-client",
            server: api_node.clone(),
        },
        KubeconfigPlan {
            name: "kube-proxy",
            cert: "kube-proxy",
            server: api_node,
        },
    ];
    Ok((certs, kubeconfigs))
}

/// What `init` did with a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Written now.
    Created,
    /// There already, kept.
    Kept,
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour back absorbs clock skew between this host and its clients.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(days.into());
}

fn ca_params(o: &Options, which: Ca) -> CertificateParams {
    let mut ca = CertificateParams::default();
    ca.distinguished_name.push(DnType::CommonName, which.cn());
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![Ku::KeyCertSign, Ku::CrlSign, Ku::DigitalSignature];
    validity(&mut ca, o.ca_days);
    ca
}

fn leaf(
    c: &CertPlan,
    days: u32,
    key: &KeyPair,
    issuer: &Issuer<'_, &KeyPair>,
) -> Result<String, String> {
    let mut p = CertificateParams::default();
    p.distinguished_name.push(DnType::CommonName, c.cn.as_str());
    if let Some(o) = c.org {
        p.distinguished_name.push(DnType::OrganizationName, o);
    }
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![Ku::DigitalSignature, Ku::KeyEncipherment];
    p.extended_key_usages = match c.usage {
        Usage::Server => vec![Eku::ServerAuth],
        Usage::Client => vec![Eku::ClientAuth],
        Usage::Both => vec![Eku::ServerAuth, Eku::ClientAuth],
    };
    p.use_authority_key_identifier_extension = true;
    for d in &c.dns {
        p.subject_alt_names.push(SanType::DnsName(
            d.as_str().try_into().map_err(|e| format!("SAN {d}: {e}"))?,
        ));
    }
    p.subject_alt_names
        .extend(c.ips.iter().map(|ip| SanType::IpAddress(*ip)));
    validity(&mut p, days);
    Ok(p.signed_by(key, issuer).map_err(|e| e.to_string())?.pem())
}

/// A client certificate (and its key, PEM) signed by the CA `ca_crt`/`ca_key`, valid a day:
/// for a command that needs one only while it runs (a control-plane join asking etcd).
pub fn client_cert(ca_crt: &str, ca_key: &str, cn: &str) -> Result<(String, String), String> {
    let ca_key = KeyPair::from_pem(ca_key).map_err(|e| format!("CA key: {e}"))?;
    let issuer = Issuer::from_ca_cert_pem(ca_crt, &ca_key).map_err(|e| format!("CA: {e}"))?;
    let k = KeyPair::generate().map_err(|e| e.to_string())?;
    let plan = CertPlan {
        name: "client",
        cn: cn.to_string(),
        org: None,
        usage: Usage::Client,
        ca: Ca::Etcd,
        dns: vec![],
        ips: vec![],
    };
    Ok((leaf(&plan, 1, &k, &issuer)?, k.serialize_pem()))
}

/// Writes `bytes` to `path` atomically (temp file, then rename) with `mode`. The temp file is
/// made anew (a leftover one, or a link in its place, is removed first, then it is created
/// exclusively with `mode`): a stale 0644 temp file must not give a key its mode.
pub(crate) fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp = path.with_extension("tmp~");
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot remove the leftover {}: {e}", tmp.display())),
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename to {}: {e}", path.display()))
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// A kubeconfig with the CA and the client credentials embedded (self-contained files).
pub fn kubeconfig(
    cluster: &str,
    server: &str,
    user: &str,
    ca: &str,
    crt: &str,
    key: &str,
) -> String {
    let b = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut s = String::new();
    let _ = write!(
        s,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: {user}@{cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\ncurrent-context: {user}@{cluster}\n",
        b(ca),
        b(crt),
        b(key)
    );
    s
}

/// A kubeconfig with the CA embedded and a bearer token (a bootstrap or service-account
/// token) as the user's credential.
pub fn token_kubeconfig(cluster: &str, server: &str, user: &str, ca: &str, token: &str) -> String {
    let ca = base64::engine::general_purpose::STANDARD.encode(ca);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: {user}\n  user:\n    token: {token}\ncontexts:\n- name: {user}@{cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\ncurrent-context: {user}@{cluster}\n"
    )
}

/// Generates what is missing (everything with `force`); returns each file with what was done.
pub fn init(o: &Options) -> Result<Vec<(String, Outcome)>, String> {
    let (certs, kubeconfigs) = plan(o)?;
    std::fs::create_dir_all(&o.dir)
        .map_err(|e| format!("cannot create {}: {e}", o.dir.display()))?;
    let p = |f: &str| o.dir.join(f);
    let mut done = Vec::new();

    // The CAs: each kept when both halves are there (and not --force).
    let mut cas = Vec::new();
    for which in [Ca::Cluster, Ca::Etcd, Ca::Kubelet] {
        let stem = which.stem();
        let (crt, key) = (p(&format!("{stem}.crt")), p(&format!("{stem}.key")));
        let fresh = o.force || !crt.exists() || !key.exists();
        let (key_pair, pem) = if fresh {
            let k = KeyPair::generate().map_err(|e| e.to_string())?;
            let pem = ca_params(o, which)
                .self_signed(&k)
                .map_err(|e| e.to_string())?
                .pem();
            write_file(&key, k.serialize_pem().as_bytes(), 0o600)?;
            write_file(&crt, pem.as_bytes(), 0o644)?;
            (k, pem)
        } else {
            let k = KeyPair::from_pem(&read(&key)?).map_err(|e| format!("{stem}.key: {e}"))?;
            (k, read(&crt)?)
        };
        let how = if fresh {
            Outcome::Created
        } else {
            Outcome::Kept
        };
        done.push((format!("{stem}.crt"), how.clone()));
        done.push((format!("{stem}.key"), how));
        cas.push((which, key_pair, pem, fresh));
    }
    let ca_crt = p("ca.crt");
    let fresh_ca = cas[0].3;

    for c in &certs {
        let (_, ca_key, ca_pem, ca_fresh) = cas
            .iter()
            .find(|(w, ..)| *w == c.ca)
            .ok_or("no CA for a certificate")?;
        let issuer = Issuer::from_ca_cert_pem(ca_pem, ca_key)
            .map_err(|e| format!("{}.crt: {e}", c.ca.stem()))?;
        let (crt, key) = (p(&format!("{}.crt", c.name)), p(&format!("{}.key", c.name)));
        // A new CA invalidates every certificate signed by the old one.
        let outcome = if o.force || *ca_fresh || !crt.exists() || !key.exists() {
            let k = KeyPair::generate().map_err(|e| e.to_string())?;
            let pem = leaf(c, o.days, &k, &issuer)?;
            write_file(&key, k.serialize_pem().as_bytes(), 0o600)?;
            write_file(&crt, pem.as_bytes(), 0o644)?;
            Outcome::Created
        } else {
            Outcome::Kept
        };
        done.push((format!("{}.crt", c.name), outcome.clone()));
        done.push((format!("{}.key", c.name), outcome));
    }
    let redo = o.force || fresh_ca;

    // The service-account key pair: no certificate.
    let (sa_key, sa_pub) = (p("sa.key"), p("sa.pub"));
    let outcome = if o.force || !sa_key.exists() || !sa_pub.exists() {
        let k = KeyPair::generate().map_err(|e| e.to_string())?;
        write_file(&sa_key, k.serialize_pem().as_bytes(), 0o600)?;
        write_file(&sa_pub, k.public_key_pem().as_bytes(), 0o644)?;
        Outcome::Created
    } else {
        Outcome::Kept
    };
    done.push(("sa.key".to_string(), outcome.clone()));
    done.push(("sa.pub".to_string(), outcome));

    let ca_pem = read(&ca_crt)?;
    for k in &kubeconfigs {
        let file = format!("{}.kubeconfig", k.name);
        let path = p(&file);
        let cert_new = done
            .iter()
            .any(|(f, how)| *f == format!("{}.crt", k.cert) && *how == Outcome::Created);
        let outcome = if redo || cert_new || !path.exists() {
            let crt = read(&p(&format!("{}.crt", k.cert)))?;
            let key = read(&p(&format!("{}.key", k.cert)))?;
            let user = certs
                .iter()
                .find(|c| c.name == k.cert)
                .map_or(k.name.to_string(), |c| c.cn.clone());
            let text = kubeconfig(&o.cluster_name, &k.server, &user, &ca_pem, &crt, &key);
            // It embeds a private key.
            write_file(&path, text.as_bytes(), 0o600)?;
            Outcome::Created
        } else {
            Outcome::Kept
        };
        done.push((file, outcome));
    }
    // The control plane's keys to their users (each run: files made now are root's).
    for (file, ..) in KEY_OWNERS {
        if let Some(want) = wanted_owner(file, &o.users) {
            let (uid, gid, mode) = want?;
            let path = p(file);
            std::os::unix::fs::chown(&path, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", path.display()))?;
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("cannot chmod {}: {e}", path.display()))?;
        }
    }
    Ok(done)
}

/// One finding of `pki check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file.
    pub file: String,
    /// Days until it expires (negative: expired), for certificates.
    pub days_left: Option<i64>,
    /// What is wrong; empty when fine.
    pub problems: Vec<String>,
}

/// Checks every certificate of the plan: present, signed by `ca.crt`, not expired (and not
/// within 30 days of it), the expected CN/O and usage, and the SANs the plan wants.
pub fn check(o: &Options) -> Result<Vec<Finding>, String> {
    use x509_parser::prelude::*;
    let (certs, kubeconfigs) = plan(o)?;
    let p = |f: &str| o.dir.join(f);
    let mut ca_pems = Vec::new();
    for which in [Ca::Cluster, Ca::Etcd, Ca::Kubelet] {
        let stem = which.stem();
        let text = read(&p(&format!("{stem}.crt")))?;
        let (_, pem) =
            parse_x509_pem(text.as_bytes()).map_err(|e| format!("{stem}.crt: not PEM: {e}"))?;
        ca_pems.push((which, pem));
    }
    let mut cas = Vec::new();
    for (which, pem) in &ca_pems {
        let c = pem
            .parse_x509()
            .map_err(|e| format!("{}.crt: not a certificate: {e}", which.stem()))?;
        cas.push((*which, c));
    }
    let days_left = |c: &X509Certificate<'_>| {
        let left =
            c.validity().not_after.timestamp() - ::time::OffsetDateTime::now_utc().unix_timestamp();
        left.div_euclid(86_400)
    };
    let mut out: Vec<Finding> = cas
        .iter()
        .map(|(which, ca)| {
            let mut problems = if ca.is_ca() {
                vec![]
            } else {
                vec!["not a CA certificate".into()]
            };
            // The CA's key, where this host has it (a worker has none).
            problems.extend(private(&p(&format!("{}.key", which.stem()))));
            Finding {
                file: format!("{}.crt", which.stem()),
                days_left: Some(days_left(ca)),
                problems,
            }
        })
        .collect();
    for c in &certs {
        let file = format!("{}.crt", c.name);
        let mut f = Finding {
            file: file.clone(),
            days_left: None,
            problems: vec![],
        };
        let text = match std::fs::read_to_string(p(&file)) {
            Ok(t) => t,
            Err(e) => {
                f.problems.push(format!("missing: {e}"));
                out.push(f);
                continue;
            }
        };
        let parsed = parse_x509_pem(text.as_bytes())
            .map_err(|e| e.to_string())
            .map(|(_, pem)| pem.contents);
        let der = match parsed {
            Ok(d) => d,
            Err(e) => {
                f.problems.push(format!("not PEM: {e}"));
                out.push(f);
                continue;
            }
        };
        let cert = match X509Certificate::from_der(&der) {
            Ok((_, c)) => c,
            Err(e) => {
                f.problems.push(format!("not a certificate: {e}"));
                out.push(f);
                continue;
            }
        };
        let left = days_left(&cert);
        f.days_left = Some(left);
        if left < 0 {
            f.problems.push("expired".into());
        } else if left < 30 {
            f.problems.push(format!(
                "expires in {left} days: renew with `pki init --force`"
            ));
        }
        let ca = cas
            .iter()
            .find(|(w, _)| *w == c.ca)
            .map(|(_, ca)| ca)
            .ok_or("no CA for a certificate")?;
        if cert.verify_signature(Some(ca.public_key())).is_err() {
            f.problems.push(format!(
                "not signed by {}.crt (made with another CA?)",
                c.ca.stem()
            ));
        }
        let cn: Vec<&str> = cert
            .subject()
            .iter_common_name()
            .filter_map(|a| a.as_str().ok())
            .collect();
        if cn != [c.cn.as_str()] {
            f.problems
                .push(format!("CN is {cn:?}, expected {:?}", c.cn));
        }
        let org: Vec<&str> = cert
            .subject()
            .iter_organization()
            .filter_map(|a| a.as_str().ok())
            .collect();
        let want_org: Vec<&str> = c.org.into_iter().collect();
        if org != want_org {
            f.problems
                .push(format!("O is {org:?}, expected {want_org:?}"));
        }
        let eku = cert.extended_key_usage().ok().flatten().map(|e| e.value);
        let (server, client) = eku.map_or((false, false), |e| (e.server_auth, e.client_auth));
        let (want_server, want_client) = match c.usage {
            Usage::Server => (true, false),
            Usage::Client => (false, true),
            Usage::Both => (true, true),
        };
        for (want, has, name) in [
            (want_server, server, "serverAuth"),
            (want_client, client, "clientAuth"),
        ] {
            if want && !has {
                f.problems.push(format!("extended key usage lacks {name}"));
            }
        }
        let mut dns = Vec::new();
        let mut ips = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for n in &san.value.general_names {
                match n {
                    GeneralName::DNSName(d) => dns.push(d.to_string()),
                    GeneralName::IPAddress(b) if b.len() == 4 => {
                        ips.push(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
                    }
                    _ => {}
                }
            }
        }
        for d in &c.dns {
            if !dns.contains(d) {
                f.problems.push(format!("SAN lacks DNS:{d}"));
            }
        }
        for ip in &c.ips {
            if !ips.contains(ip) {
                f.problems.push(format!("SAN lacks IP:{ip}"));
            }
        }
        f.problems.extend(private(&p(&format!("{}.key", c.name))));
        out.push(f);
    }
    for k in &kubeconfigs {
        let file = format!("{}.kubeconfig", k.name);
        let mut problems = match std::fs::read_to_string(p(&file)) {
            Ok(t) if t.contains(&format!("server: {}", k.server)) => vec![],
            Ok(_) => vec![format!("its server is not {}", k.server)],
            Err(e) => vec![format!("missing: {e}")],
        };
        // It embeds a private key.
        problems.extend(private(&p(&file)));
        out.push(Finding {
            file,
            days_left: None,
            problems,
        });
    }
    for f in ["sa.key", "sa.pub"] {
        let mut problems = if p(f).exists() {
            vec![]
        } else {
            vec!["missing".into()]
        };
        if f == "sa.key" {
            problems.extend(private(&p(f)));
        }
        out.push(Finding {
            file: f.into(),
            days_left: None,
            problems,
        });
    }
    // Owners, when the users are given.
    for (file, ..) in KEY_OWNERS {
        let Some(want) = wanted_owner(file, &o.users) else {
            continue;
        };
        let (uid, gid, _) = want?;
        use std::os::unix::fs::MetadataExt as _;
        let Ok(m) = std::fs::metadata(p(file)) else {
            continue;
        };
        if (m.uid(), m.gid()) != (uid, gid) {
            // The finding of the file, or of the certificate the key belongs to.
            let stem = file.trim_end_matches(".key");
            let f = out
                .iter_mut()
                .find(|f| f.file == *file || f.file == format!("{stem}.crt"));
            let why = format!(
                "{file} is owned by {}:{}, not {uid}:{gid} (its component's user)",
                m.uid(),
                m.gid()
            );
            match f {
                Some(f) => f.problems.push(why),
                None => out.push(Finding {
                    file: (*file).into(),
                    days_left: None,
                    problems: vec![why],
                }),
            }
        }
    }
    Ok(out)
}

/// What is wrong with who may read a private key (or a kubeconfig holding one): no one
/// but its owner and, for a key two components share, its group (0600, 0640); never others.
fn private(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let m = std::fs::metadata(path).ok()?;
    let mode = m.mode() & 0o777;
    let name = path
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    (mode & 0o137 != 0).then(|| {
        format!(
            "{name} is mode {mode:04o} (uid {}, gid {}): others must not read it, nor the group \
             write it; chmod 0600 (0640 for a key shared through its group)",
            m.uid(),
            m.gid()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A leftover temp file of another mode (or a link in its place) does not lend a key its
    /// mode or its target.
    #[test]
    fn a_key_is_written_through_a_fresh_temp_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("ca.key");
        let tmp = dir.path().join("ca.tmp~");
        std::fs::write(&tmp, "stale").unwrap();
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_file(&key, b"secret", 0o600).unwrap();
        let m = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
        assert_eq!(m, 0o600);
        assert_eq!(std::fs::read(&key).unwrap(), b"secret");
        // A link where the temp file goes: the link is replaced, its target left alone.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "untouched").unwrap();
        std::os::unix::fs::symlink(&target, &tmp).unwrap();
        write_file(&key, b"again", 0o600).unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"untouched");
        assert_eq!(std::fs::read(&key).unwrap(), b"again");
        assert!(!tmp.exists());
    }

    fn opts(dir: &Path) -> Options {
        Options {
            dir: dir.to_path_buf(),
            node_name: "node1".into(),
            node_ip: "10.0.0.5".parse().unwrap(),
            cluster_name: "dmuc".into(),
            service_cidr: "10.96.0.0/12".into(),
            days: 365,
            ca_days: 3650,
            force: false,
            sans: Vec::new(),
            users: Vec::new(),
        }
    }

    #[test]
    fn keys_go_to_their_roles_users_and_check_sees_a_wrong_owner() {
        if dmuc_tests::skip_unless_root("pki::keys_go_to_their_roles_users (chown)") {
            return;
        }
        use std::os::unix::fs::MetadataExt as _;
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.users = vec![
            ("etcd".into(), "nobody".into()),
            ("apiserver".into(), "root".into()),
            ("controller-manager".into(), "nobody".into()),
        ];
        init(&o).unwrap();
        let (nobody, nogroup) = ids_of("nobody").unwrap();
        let own = |f: &str| {
            let m = std::fs::metadata(dir.path().join(f)).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o777)
        };
        assert_eq!(own("etcd-server.key"), (nobody, nogroup, 0o600));
        assert_eq!(own("ca.key"), (nobody, nogroup, 0o600));
        assert_eq!(own("sa.key"), (0, nogroup, 0o640));
        // No scheduler user given: its kubeconfig stays root's.
        assert_eq!(own("kube-scheduler.kubeconfig"), (0, 0, 0o600));
        assert!(check(&o).unwrap().iter().all(|f| f.problems.is_empty()));
        std::os::unix::fs::chown(dir.path().join("etcd-peer.key"), Some(0), Some(0)).unwrap();
        let findings = check(&o).unwrap();
        let peer = findings.iter().find(|f| f.file == "etcd-peer.crt").unwrap();
        assert!(
            peer.problems
                .iter()
                .any(|p| p.contains("etcd-peer.key is owned by 0:0")),
            "{peer:?}"
        );
        assert!(parse_role_user("kubelet=root").is_err());
        assert_eq!(
            parse_role_user("etcd=dmuc-etcd").unwrap(),
            ("etcd".to_string(), "dmuc-etcd".to_string())
        );
    }

    #[test]
    fn extra_sans_go_into_the_api_server_s_certificate_and_check_wants_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(dir.path());
        o.sans = vec![
            "198.18.0.100".into(),
            "api.example.org".into(),
            "10.0.0.5".into(),
        ];
        let (certs, _) = plan(&o).unwrap();
        let api = certs.iter().find(|c| c.name == "apiserver").unwrap();
        assert!(api.ips.contains(&"198.18.0.100".parse().unwrap()));
        assert!(api.dns.contains(&"api.example.org".to_string()));
        assert_eq!(
            api.ips
                .iter()
                .filter(|ip| ip.to_string() == "10.0.0.5")
                .count(),
            1
        );
        // A certificate made without them lacks them, and check says so.
        init(&opts(dir.path())).unwrap();
        let findings = check(&o).unwrap();
        let f = findings.iter().find(|f| f.file == "apiserver.crt").unwrap();
        assert!(
            f.problems.iter().any(|p| p == "SAN lacks IP:198.18.0.100"),
            "{f:?}"
        );
        assert!(
            f.problems
                .iter()
                .any(|p| p == "SAN lacks DNS:api.example.org"),
            "{f:?}"
        );
    }

    #[test]
    fn first_ip_of_a_cidr() {
        assert_eq!(
            first_ip("10.96.0.0/12").unwrap(),
            Ipv4Addr::new(10, 96, 0, 1)
        );
        assert_eq!(
            first_ip("10.96.3.7/12").unwrap(),
            Ipv4Addr::new(10, 96, 0, 1)
        );
        assert_eq!(first_ip("10.0.0.0/24").unwrap(), Ipv4Addr::new(10, 0, 0, 1));
        assert!(first_ip("10.0.0.0").is_err());
        assert!(first_ip("10.0.0.0/31").is_err());
        assert!(first_ip("x/8").is_err());
    }

    #[test]
    fn the_plan_has_the_identities_kubernetes_expects() {
        let (certs, kcs) = plan(&opts(Path::new("/x"))).unwrap();
        let by = |n: &str| certs.iter().find(|c| c.name == n).unwrap();
        assert_eq!(by("kubelet-client").cn, "system:node:node1");
        assert_eq!(by("kubelet-client").org, Some("system:nodes"));
        assert_eq!(by("admin").org, Some("system:masters"));
        assert_eq!(by("kube-scheduler").cn, "system:kube-scheduler");
        let api = by("apiserver");
        assert_eq!(api.usage, Usage::Server);
        for ip in ["127.0.0.1", "10.96.0.1", "10.0.0.5"] {
            assert!(api.ips.contains(&ip.parse().unwrap()), "{ip}");
        }
        assert!(
            api.dns
                .contains(&"kubernetes.default.svc.cluster.local".to_string())
        );
        assert!(api.dns.contains(&"node1".to_string()));
        let kubelet = kcs.iter().find(|k| k.name == "kubelet").unwrap();
        assert_eq!(kubelet.server, "https://10.0.0.5:6443");
        assert_eq!(kubelet.cert, "kubelet-client");
    }

    #[test]
    fn init_is_idempotent_and_check_finds_problems() {
        let dir = tempfile::tempdir().unwrap();
        let o = opts(dir.path());
        let first = init(&o).unwrap();
        assert!(first.iter().all(|(_, how)| *how == Outcome::Created));
        let before = std::fs::read(dir.path().join("apiserver.crt")).unwrap();
        let again = init(&o).unwrap();
        assert!(
            again.iter().all(|(_, how)| *how == Outcome::Kept),
            "{again:?}"
        );
        assert_eq!(
            std::fs::read(dir.path().join("apiserver.crt")).unwrap(),
            before
        );

        // A missing pair is made again, signed by the kept CA.
        std::fs::remove_file(dir.path().join("kube-proxy.key")).unwrap();
        let third = init(&o).unwrap();
        let created: Vec<&str> = third
            .iter()
            .filter(|(_, h)| *h == Outcome::Created)
            .map(|(f, _)| f.as_str())
            .collect();
        assert_eq!(
            created,
            ["kube-proxy.crt", "kube-proxy.key", "kube-proxy.kubeconfig"]
        );
        assert!(check(&o).unwrap().iter().all(|f| f.problems.is_empty()));

        // A key others may read, a shared key only its group may: the first is a problem.
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |f: &str, m: u32| {
            std::fs::set_permissions(dir.path().join(f), std::fs::Permissions::from_mode(m))
                .unwrap()
        };
        mode("etcd-peer.key", 0o644);
        mode("sa.key", 0o640);
        let findings = check(&o).unwrap();
        let peer = findings.iter().find(|f| f.file == "etcd-peer.crt").unwrap();
        assert!(
            peer.problems
                .iter()
                .any(|p| p.contains("etcd-peer.key is mode 0644")),
            "{peer:?}"
        );
        let sa = findings.iter().find(|f| f.file == "sa.key").unwrap();
        assert!(sa.problems.is_empty(), "{sa:?}");
        mode("etcd-peer.key", 0o600);
        // The CAs' keys are checked too.
        for ca in ["ca", "etcd-ca"] {
            mode(&format!("{ca}.key"), 0o604);
            let findings = check(&o).unwrap();
            let f = findings
                .iter()
                .find(|f| f.file == format!("{ca}.crt"))
                .unwrap();
            assert!(
                f.problems
                    .iter()
                    .any(|p| p.contains(&format!("{ca}.key is mode 0604"))),
                "{f:?}"
            );
            mode(&format!("{ca}.key"), 0o600);
        }

        // Asked for another node IP, check reports the SANs that lack it.
        let mut other = o.clone();
        other.node_ip = "10.0.0.9".parse().unwrap();
        let findings = check(&other).unwrap();
        let api = findings.iter().find(|f| f.file == "apiserver.crt").unwrap();
        assert!(
            api.problems.iter().any(|p| p == "SAN lacks IP:10.0.0.9"),
            "{api:?}"
        );

        // --force makes everything new.
        let mut forced = o.clone();
        forced.force = true;
        assert!(
            init(&forced)
                .unwrap()
                .iter()
                .all(|(_, h)| *h == Outcome::Created)
        );
        assert_ne!(
            std::fs::read(dir.path().join("apiserver.crt")).unwrap(),
            before
        );
        assert!(check(&o).unwrap().iter().all(|f| f.problems.is_empty()));
    }
}
