//! `dmucctl csr-approve`: approves the kubelets' serving certificate requests (signer
//! `kubernetes.io/kubelet-serving`), which the controller manager never approves by itself,
//! once each is checked: asked by the node it names, for that node's pinned name and addresses
//! only, for serving only. The API server then reaches the joined kubelets with a
//! certificate it verifies (`--kubelet-certificate-authority`), for logs, exec and
//! port-forward. What fails a check stays pending, with the reason in the window.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use serde_json::{Value, json};

use crate::kube::{self, Api};

/// The signer of kubelet serving certificates.
pub const SIGNER: &str = "kubernetes.io/kubelet-serving";

/// `dmucctl csr-approve`'s arguments.
#[derive(clap::Args, Debug)]
pub struct CsrArgs {
    /// A kubeconfig allowed to read Nodes and approve CSRs (the administrator's).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/lib/dmuc/pki/admin.kubeconfig"
    )]
    pub kubeconfig: PathBuf,
    /// Keep watching and approving (a component's mode); without it, look once and exit.
    #[arg(long)]
    pub watch: bool,
    /// The node on this host, the API server's (config/cluster.toml's `node`): its own
    /// requests may name the API server's addresses, which are this host's. No other node's.
    #[arg(long = "node", value_name = "NAME")]
    pub local_node: Option<String>,
}

/// What to do with one CSR.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Another signer's, or decided already.
    NotOurs,
    /// The node whose serving certificate it asks for, and what to pin for it when nothing
    /// was pinned yet (its first serving certificate: the names and addresses it names).
    Approve(String, Option<String>),
    /// Left pending, and why.
    Refuse(String),
}

/// The node name of `system:node:NAME`.
fn node_of(user: &str) -> Option<&str> {
    user.strip_prefix("system:node:").filter(|n| !n.is_empty())
}

/// What no node's serving certificate may name, whatever its Node object says (the kubelet
/// writes its own addresses): the API server's addresses, and the other nodes' addresses and
/// names. The cluster's service names and loopback are refused in any case.
#[derive(Debug, Clone, Default)]
pub struct Reserved {
    /// The API server's addresses (the `kubernetes` Service and its endpoints).
    pub apiserver: Vec<IpAddr>,
    /// Every Node: its name, addresses and host names.
    pub nodes: Vec<(String, Vec<IpAddr>, Vec<String>)>,
    /// The node on the API server's host (the operator's word, `--node`), which may have
    /// its addresses.
    pub local: Option<String>,
    /// Each node's pinned names and addresses (ConfigMap kube-system/dmuc-node-addresses):
    /// the operator's word (`token create --node-name --node-ip`), else those of the node's
    /// first approved serving certificate. A node never gets others.
    pub pins: BTreeMap<String, Vec<String>>,
}

/// The ConfigMap in kube-system that holds each node's pinned names and addresses: a key a
/// node, its value `IP,IP,NAME` (only administrators write in kube-system).
pub const PINS: &str = "dmuc-node-addresses";

/// The pins of a `dmuc-node-addresses` ConfigMap.
pub fn pins_of(cm: Option<&Value>) -> BTreeMap<String, Vec<String>> {
    cm.and_then(|c| c["data"].as_object())
        .into_iter()
        .flatten()
        .filter_map(|(node, v)| {
            let v = v.as_str()?;
            Some((
                node.clone(),
                v.split(',')
                    .map(str::trim)
                    .filter(|a| !a.is_empty())
                    .map(str::to_string)
                    .collect(),
            ))
        })
        .collect()
}

/// Checks a pin the operator gives (`IP` or host names, comma-separated) and returns it as
/// the ConfigMap holds it.
pub fn parse_pin(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split(',').map(str::trim).collect();
    for p in &parts {
        let name_ok = !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if p.parse::<IpAddr>().is_err() && !name_ok {
            return Err(format!("{p:?} is neither an IP address nor a host name"));
        }
        if service_name(p) {
            return Err(format!("{p} is a name of the cluster's services"));
        }
    }
    Ok(parts.join(","))
}

impl Reserved {
    /// From the Nodes, the `kubernetes` Service and its Endpoints, as the API gives them.
    pub fn from_api(
        nodes: &[Value],
        service: Option<&Value>,
        endpoints: Option<&Value>,
    ) -> Reserved {
        let mut apiserver: Vec<IpAddr> = service
            .and_then(|s| s["spec"]["clusterIP"].as_str())
            .and_then(|ip| ip.parse().ok())
            .into_iter()
            .collect();
        for subset in endpoints
            .and_then(|e| e["subsets"].as_array())
            .into_iter()
            .flatten()
        {
            apiserver.extend(
                subset["addresses"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|a| a["ip"].as_str()?.parse::<IpAddr>().ok()),
            );
        }
        let nodes = nodes
            .iter()
            .map(|n| {
                let name = n["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                let addrs = n["status"]["addresses"].as_array().into_iter().flatten();
                let ips = addrs
                    .clone()
                    .filter_map(|a| a["address"].as_str()?.parse::<IpAddr>().ok())
                    .collect();
                let hosts = addrs
                    .filter(|a| a["type"] == "Hostname")
                    .filter_map(|a| a["address"].as_str().map(str::to_string))
                    .collect();
                (name, ips, hosts)
            })
            .collect();
        Reserved {
            apiserver,
            nodes,
            local: None,
            pins: BTreeMap::new(),
        }
    }
}

/// Whether `dns` is a name of the cluster's own services (the API server's above all) or
/// of this host.
fn service_name(dns: &str) -> bool {
    let d = dns.trim_end_matches('.').to_ascii_lowercase();
    d == "localhost"
        || d.ends_with(".localhost")
        || d == "kubernetes"
        || d.starts_with("kubernetes.")
        || d.ends_with(".svc")
        || d.contains(".svc.")
        || d.ends_with(".cluster.local")
}

/// Judges a CSR object. `node`: the Node its requester names (from the API), when there is
/// one; `reserved`: what no node may have in its certificate.
pub fn judge(csr: &Value, node: Option<&Value>, reserved: &Reserved) -> Verdict {
    let spec = &csr["spec"];
    let decided = csr["status"]["conditions"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["type"] == "Approved" || c["type"] == "Denied")
    });
    if spec["signerName"] != SIGNER || decided {
        return Verdict::NotOurs;
    }
    let user = spec["username"].as_str().unwrap_or_default();
    let Some(name) = node_of(user) else {
        return Verdict::Refuse(format!("asked by {user:?}, not by a node"));
    };
    let in_nodes = spec["groups"]
        .as_array()
        .is_some_and(|g| g.iter().any(|g| g == "system:nodes"));
    if !in_nodes {
        return Verdict::Refuse(format!("{user} is not in the group system:nodes"));
    }
    let usages: Vec<&str> = spec["usages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let allowed = ["digital signature", "key encipherment", "server auth"];
    if !usages.contains(&"server auth") || usages.iter().any(|u| !allowed.contains(u)) {
        return Verdict::Refuse(format!("usages {usages:?}: serving only is approved"));
    }
    let Some(node) = node else {
        return Verdict::Refuse(format!("there is no Node {name}"));
    };
    let addresses: Vec<IpAddr> = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "InternalIP" || a["type"] == "ExternalIP")
        .filter_map(|a| a["address"].as_str()?.parse().ok())
        .collect();
    let hostnames: Vec<&str> = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["type"] == "Hostname")
        .filter_map(|a| a["address"].as_str())
        .chain([name])
        .collect();
    let req = match request(spec["request"].as_str().unwrap_or_default()) {
        Ok(r) => r,
        Err(e) => return Verdict::Refuse(e),
    };
    if req.cn != user || req.orgs != ["system:nodes"] {
        return Verdict::Refuse(format!(
            "its subject is CN={} O={:?}, not CN={user} O=system:nodes",
            req.cn, req.orgs
        ));
    }
    if req.ips.is_empty() && req.dns.is_empty() {
        return Verdict::Refuse("it names no address".into());
    }
    if let Some(ip) = req.ips.iter().find(|ip| !addresses.contains(ip)) {
        return Verdict::Refuse(format!("{ip} is not an address of Node {name}"));
    }
    if let Some(d) = req.dns.iter().find(|d| !hostnames.contains(&d.as_str())) {
        return Verdict::Refuse(format!("{d} is not a name of Node {name}"));
    }
    // What the Node says of itself is the kubelet's word: never the API server's or another
    // node's address or name, nor a service's, whatever it claims.
    for ip in &req.ips {
        if ip.is_loopback() || ip.is_unspecified() || ip.is_multicast() {
            return Verdict::Refuse(format!("{ip} is no node's own address"));
        }
        if reserved.apiserver.contains(ip) && reserved.local.as_deref() != Some(name) {
            return Verdict::Refuse(format!("{ip} is the API server's address"));
        }
        if let Some((other, ..)) = reserved
            .nodes
            .iter()
            .find(|(other, ips, _)| other != name && ips.contains(ip))
        {
            return Verdict::Refuse(format!("{ip} is Node {other}'s address too"));
        }
    }
    for d in &req.dns {
        if service_name(d) {
            return Verdict::Refuse(format!(
                "{d} is a name of the cluster's services or of localhost"
            ));
        }
        if let Some((other, ..)) = reserved
            .nodes
            .iter()
            .find(|(other, _, hosts)| other != name && (other == d || hosts.contains(d)))
        {
            return Verdict::Refuse(format!("{d} is Node {other}'s name"));
        }
    }
    // What dmuc knows of the node (the operator's word or its first certificate) bounds what
    // it may claim later: an address given up by another node, or taken from one that is
    // down, is not its own.
    match reserved.pins.get(name) {
        Some(pin) => {
            let known = |a: &str| a == name || pin.iter().any(|p| p.eq_ignore_ascii_case(a));
            let mut claimed = req
                .ips
                .iter()
                .map(ToString::to_string)
                .chain(req.dns.clone());
            if let Some(a) = claimed.find(|a| !known(a)) {
                return Verdict::Refuse(format!(
                    "{a} is not among Node {name}'s pinned addresses ({}; ConfigMap \
                     kube-system/{PINS}: an administrator changes them there)",
                    pin.join(",")
                ));
            }
            Verdict::Approve(name.to_string(), None)
        }
        None => {
            let pin = req.ips.iter().map(ToString::to_string).chain(req.dns);
            Verdict::Approve(name.to_string(), Some(pin.collect::<Vec<_>>().join(",")))
        }
    }
}

/// What a certificate request asks for.
struct Request {
    cn: String,
    orgs: Vec<String>,
    dns: Vec<String>,
    ips: Vec<IpAddr>,
}

/// Reads `spec.request`: a base64 PKCS#10 request in PEM.
fn request(b64: &str) -> Result<Request, String> {
    use x509_parser::extensions::{GeneralName, ParsedExtension};
    use x509_parser::prelude::FromDer as _;
    let pem = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64)
        .map_err(|e| format!("its request is not base64: {e}"))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem)
        .map_err(|e| format!("its request is not PEM: {e}"))?;
    let (_, csr) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&pem.contents)
            .map_err(|e| format!("its request is not PKCS#10: {e}"))?;
    let subject = &csr.certification_request_info.subject;
    let text = |a: &x509_parser::x509::AttributeTypeAndValue| a.as_str().unwrap_or("?").to_string();
    let mut r = Request {
        cn: subject
            .iter_common_name()
            .map(text)
            .collect::<Vec<_>>()
            .join(","),
        orgs: subject.iter_organization().map(text).collect(),
        dns: Vec::new(),
        ips: Vec::new(),
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for n in &san.general_names {
                match n {
                    GeneralName::DNSName(d) => r.dns.push(d.to_string()),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => r
                            .ips
                            .push(IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default())),
                        16 => r
                            .ips
                            .push(IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default())),
                        _ => return Err("its request has a malformed IP address".into()),
                    },
                    other => return Err(format!("its request names {other:?}")),
                }
            }
        }
    }
    Ok(r)
}

/// `dmucctl csr-approve`.
pub fn run(a: CsrArgs) -> u8 {
    match approve(&a) {
        Ok(()) => dmuc_client::OK,
        Err(e) => {
            eprintln!("dmucctl: csr-approve: {e}");
            dmuc_client::FAILED
        }
    }
}

const CSRS: &str = "/apis/certificates.k8s.io/v1/certificatesigningrequests";

/// What no node may name, read now (a CSR is judged against the cluster as it is).
fn reserved(api: &Api) -> Result<Reserved, String> {
    let nodes = api
        .get("/api/v1/nodes")
        .map_err(|e| format!("nodes: {e}"))?
        .unwrap_or_default();
    let service = api
        .get("/api/v1/namespaces/default/services/kubernetes")
        .map_err(|e| format!("the kubernetes Service: {e}"))?;
    let endpoints = api
        .get("/api/v1/namespaces/default/endpoints/kubernetes")
        .map_err(|e| format!("the kubernetes Endpoints: {e}"))?;
    let pins = api
        .get(&format!("{PINS_AT}/{PINS}"))
        .map_err(|e| format!("ConfigMap {PINS}: {e}"))?;
    let items = nodes["items"].as_array().cloned().unwrap_or_default();
    let mut r = Reserved::from_api(&items, service.as_ref(), endpoints.as_ref());
    r.pins = pins_of(pins.as_ref());
    Ok(r)
}

const PINS_AT: &str = "/api/v1/namespaces/kube-system/configmaps";

/// Records `pin` as `node`'s names and addresses: only where none is (`replace` false), or
/// in any case. `false` when one was there already. Optimistic: a concurrent writer makes
/// the replace fail (409) and this reads again.
pub fn pin_node(api: &Api, node: &str, pin: &str, replace: bool) -> Result<bool, String> {
    for _ in 0..5 {
        let cm = api
            .get(&format!("{PINS_AT}/{PINS}"))
            .map_err(|e| format!("ConfigMap {PINS}: {e}"))?;
        let written = match cm {
            None => api.create(
                PINS_AT,
                &json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": PINS, "namespace": "kube-system"},
                        "data": {node: pin}}),
            ),
            Some(mut cm) => {
                if !replace && cm["data"][node].is_string() {
                    return Ok(false);
                }
                if !cm["data"].is_object() {
                    cm["data"] = json!({});
                }
                cm["data"][node] = json!(pin);
                api.put(&format!("{PINS_AT}/{PINS}"), &cm)
            }
        };
        match written {
            Ok(_) => return Ok(true),
            Err(e) if e.status == 409 => continue,
            Err(e) => return Err(format!("ConfigMap {PINS}: {e}")),
        }
    }
    Err(format!("ConfigMap {PINS}: changed under each of 5 writes"))
}

fn approve(a: &CsrArgs) -> Result<(), String> {
    let api = Api::new(&kube::load_kubeconfig(&a.kubeconfig)?, true)?;
    // A refusal is said once per request, not at each of its updates.
    let mut said = std::collections::BTreeSet::new();
    let mut one = |csr: &Value| -> Result<(), String> {
        let name = csr["metadata"]["name"].as_str().unwrap_or_default();
        let node = node_of(csr["spec"]["username"].as_str().unwrap_or_default())
            .map(|n| api.get(&format!("/api/v1/nodes/{n}")))
            .transpose()
            .map_err(|e| format!("the node of {name}: {e}"))?
            .flatten();
        // Decided or another signer's: nothing more to read.
        if judge(csr, node.as_ref(), &Reserved::default()) == Verdict::NotOurs {
            return Ok(());
        }
        // Judged against the cluster as it is; again once if a pin lands meanwhile.
        let mut verdict = Verdict::NotOurs;
        for _ in 0..2 {
            let mut reserved = reserved(&api).map_err(|e| format!("for {name}: {e}"))?;
            reserved.local = a.local_node.clone();
            verdict = judge(csr, node.as_ref(), &reserved);
            let Verdict::Approve(node, Some(pin)) = &verdict else {
                break;
            };
            match pin_node(&api, node, pin, false) {
                Ok(true) => {
                    println!("pinned node {node}'s addresses: {pin}");
                    break;
                }
                // Pinned meanwhile (another request, another approver): judged again.
                Ok(false) => verdict = Verdict::Refuse(format!("node {node}'s pin changed")),
                Err(e) => {
                    eprintln!("cannot pin node {node}'s addresses, {name} left pending: {e}");
                    return Ok(());
                }
            }
        }
        match verdict {
            Verdict::NotOurs => {}
            Verdict::Refuse(why) => {
                if said.insert(name.to_string()) {
                    println!("left {name} pending: {why}");
                }
            }
            Verdict::Approve(node, _) => {
                let mut body = csr.clone();
                let conditions = body["status"]["conditions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                body["status"]["conditions"] = json!(conditions.into_iter().chain([json!({
                    "type": "Approved", "status": "True", "reason": "DmucCsrApprove",
                    "message": "the node's own names and addresses, for serving (dmucctl csr-approve)"
                })]).collect::<Vec<_>>());
                match api.put(&format!("{CSRS}/{name}/approval"), &body) {
                    Ok(_) => println!("approved {name}: node {node}'s serving certificate"),
                    // Another approver, or a newer version of it: the watch brings it again.
                    Err(e) if e.status == 409 || e.status == 404 => {}
                    Err(e) => eprintln!("cannot approve {name}: {e}"),
                }
            }
        }
        Ok(())
    };
    if !a.watch {
        let list = api
            .get(CSRS)
            .map_err(|e| format!("CSRs: {e}"))?
            .unwrap_or_default();
        for c in list["items"].as_array().into_iter().flatten() {
            one(c)?;
        }
        return Ok(());
    }
    println!("approving the kubelets' serving certificates ({SIGNER}) that match their Node");
    api.list_watch(CSRS, |all, changed| {
        match changed {
            None => all.values().try_for_each(&mut one)?,
            Some((kube::Change::Put, c)) => one(c)?,
            Some((kube::Change::Deleted, _)) => {}
        }
        Ok(false)
    })
}

#[cfg(test)]
mod tests;
