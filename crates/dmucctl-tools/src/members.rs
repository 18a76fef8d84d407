//! More control-plane members (config/ha.toml): how a new member gets the cluster's CAs and
//! service-account key, and how it joins etcd.
//!
//! The keys travel as kubeadm's `upload-certs` sends them: `dmucctl token create
//! --control-plane` seals each file with AES-256-GCM under a fresh 32-byte *certificate key*
//! (printed once, never stored in the cluster) into the Secret `dmuc-certs`, owned by the
//! token's Secret so that the token cleaner's expiry takes it too. The token's holders may
//! read the Secret; only who also has the certificate key can open it.
//!
//! etcd grows one member at a time, each first a *learner* (etcd 3.4+): a learner does not
//! vote, so adding it never costs the quorum (a voting member added before its etcd runs
//! would make a 1-member cluster need 2). `dmucctl etcd promote` (the profile's
//! etcd-promote component) makes it a voter once it has caught up. Both speak etcd's
//! documented JSON gateway (`/v3/cluster/member/*`) with a client certificate of etcd's CA.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::{Value, json};

use crate::kube::{self, Api};

/// The Secret (in kube-system) holding the sealed files.
pub const CERTS_SECRET: &str = "dmuc-certs";

/// What every member shares, with the mode each is written with: the three CAs (their keys
/// sign each member's own certificates; every controller manager signs kubelets' serving
/// certificates that every API server verifies) and the service-account key pair (every API
/// server must verify the tokens any of them signed).
pub const SHARED: [(&str, u32); 8] = [
    ("ca.crt", 0o644),
    ("ca.key", 0o600),
    ("etcd-ca.crt", 0o644),
    ("etcd-ca.key", 0o600),
    ("kubelet-ca.crt", 0o644),
    ("kubelet-ca.key", 0o600),
    ("sa.key", 0o600),
    ("sa.pub", 0o644),
];

/// A shared file opened: name, bytes, mode.
pub type SharedFile = (&'static str, Vec<u8>, u32);

/// The file a member's etcd reads its first-start settings from (environment variables etcd
/// reads itself): `ETCD_INITIAL_CLUSTER`, `ETCD_INITIAL_CLUSTER_STATE`, and the endpoints to
/// promote it through (`DMUC_ETCD_ENDPOINTS`).
pub const ETCD_ENV: &str = "etcd-cluster.env";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// A new certificate key, as hex.
pub fn new_key() -> Result<String, String> {
    let mut k = [0u8; 32];
    SystemRandom::new()
        .fill(&mut k)
        .map_err(|_| "no random numbers".to_string())?;
    Ok(k.iter().map(|b| format!("{b:02x}")).collect())
}

/// The 32 bytes of a certificate key given as 64 hex digits.
pub fn parse_key(hex: &str) -> Result<[u8; 32], String> {
    let bad = || {
        format!(
            "--certificate-key: want the 64 hex digits `dmucctl token create --control-plane` \
             printed, not {} characters",
            hex.len()
        )
    };
    if hex.len() != 64 {
        return Err(bad());
    }
    let mut k = [0u8; 32];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
    }
    Ok(k)
}

fn aead(key: &[u8; 32]) -> Result<LessSafeKey, String> {
    UnboundKey::new(&AES_256_GCM, key)
        .map(LessSafeKey::new)
        .map_err(|_| "bad key".to_string())
}

/// `plain` sealed under `key`, bound to the file's `name` (so that sealed files cannot be
/// swapped): base64 of nonce ‖ ciphertext ‖ tag.
pub fn seal(key: &[u8; 32], name: &str, plain: &[u8]) -> Result<String, String> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| "no random numbers".to_string())?;
    let mut buf = plain.to_vec();
    aead(key)?
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(name.as_bytes()),
            &mut buf,
        )
        .map_err(|_| format!("cannot seal {name}"))?;
    let mut out = nonce.to_vec();
    out.extend(buf);
    Ok(b64().encode(out))
}

/// The file sealed by [`seal`]; an error names the likely cause (a wrong key).
pub fn open(key: &[u8; 32], name: &str, sealed: &str) -> Result<Vec<u8>, String> {
    let raw = b64()
        .decode(sealed.trim())
        .map_err(|_| format!("{CERTS_SECRET}: {name} is not base64"))?;
    if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(format!("{CERTS_SECRET}: {name} is too short to be sealed"));
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| "bad nonce".to_string())?;
    let mut buf = ct.to_vec();
    let plain = aead(key)?
        .open_in_place(nonce, Aad::from(name.as_bytes()), &mut buf)
        .map_err(|_| {
            format!(
                "{CERTS_SECRET}: {name} does not open with this certificate key: a wrong \
                 --certificate-key, or the Secret was sealed again by a later `token create \
                 --control-plane`"
            )
        })?;
    Ok(plain.to_vec())
}

/// The `dmuc-certs` Secret: each shared file sealed (data key = file name), the etcd client
/// URLs to join through in the clear, owned by the token's Secret.
pub fn certs_secret(
    key: &[u8; 32],
    files: &[(&str, Vec<u8>)],
    etcd_endpoints: &[String],
    owner: (&str, &str),
) -> Result<Value, String> {
    let mut data = serde_json::Map::new();
    for (name, bytes) in files {
        // The sealed text, base64 again as Secret data wants it.
        data.insert(
            (*name).to_string(),
            Value::String(b64().encode(seal(key, name, bytes)?)),
        );
    }
    data.insert(
        "etcd-endpoints".into(),
        Value::String(b64().encode(etcd_endpoints.join(","))),
    );
    Ok(
        json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": CERTS_SECRET, "namespace": "kube-system",
            "ownerReferences": [{"apiVersion": "v1", "kind": "Secret", "name": owner.0,
                                 "uid": owner.1, "controller": true}]},
        "data": Value::Object(data)}),
    )
}

fn secret_text(s: &Value, key: &str) -> Option<String> {
    let v = s["data"][key].as_str()?;
    let b = b64().decode(v).ok()?;
    String::from_utf8(b).ok()
}

/// The shared files opened from the Secret (name, bytes, mode) and the etcd endpoints.
pub fn open_secret(key: &[u8; 32], s: &Value) -> Result<(Vec<SharedFile>, Vec<String>), String> {
    let mut files = Vec::new();
    for (name, mode) in SHARED {
        let sealed = secret_text(s, name)
            .ok_or_else(|| format!("{CERTS_SECRET} holds no {name}: make it again with `dmucctl token create --control-plane`"))?;
        files.push((name, open(key, name, &sealed)?, mode));
    }
    let endpoints: Vec<String> = secret_text(s, "etcd-endpoints")
        .unwrap_or_default()
        .split(',')
        .filter(|e| !e.is_empty())
        .map(str::to_string)
        .collect();
    if endpoints.is_empty() {
        return Err(format!("{CERTS_SECRET} names no etcd endpoint"));
    }
    Ok((files, endpoints))
}

/// An etcd member as the gateway lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member ID (uint64, as the gateway's JSON string).
    pub id: String,
    /// Empty until the member's etcd has started.
    pub name: String,
    /// Peer URLs.
    pub peers: Vec<String>,
    /// Client URLs (empty until started).
    pub clients: Vec<String>,
    /// Not voting yet.
    pub learner: bool,
}

/// The members of a `member/list` (or `member/add`) answer.
pub fn parse_members(v: &Value) -> Vec<Member> {
    let strings = |m: &Value, k: &str| -> Vec<String> {
        m[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|u| u.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    v["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| Member {
                    id: match &m["ID"] {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    },
                    name: m["name"].as_str().unwrap_or_default().to_string(),
                    peers: strings(m, "peerURLs"),
                    clients: strings(m, "clientURLs"),
                    learner: m["isLearner"].as_bool().unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// `ETCD_INITIAL_CLUSTER` for a new member `name` at `peer`, from the member list after its
/// `member add`: every member by its peer URLs, the new one under its name (as `etcdctl
/// member add` prints it). Fails while another added member has not started: etcd would
/// refuse the list.
pub fn initial_cluster(members: &[Member], name: &str, peer: &str) -> Result<String, String> {
    let mut parts = Vec::new();
    for m in members {
        let n = if m.peers.iter().any(|p| p == peer) {
            name
        } else if m.name.is_empty() {
            return Err(format!(
                "etcd member {} ({}) was added but has not started: start it (or remove it \
                 with `dmucctl etcd remove {}`) before another joins",
                m.id,
                m.peers.join(","),
                m.id
            ));
        } else {
            &m.name
        };
        for p in &m.peers {
            parts.push(format!("{n}={p}"));
        }
    }
    Ok(parts.join(","))
}

/// Why `name` at `peer` cannot join the members as they are, if it cannot.
pub fn refuse_join(members: &[Member], name: &str, peer: &str) -> Option<String> {
    if let Some(m) = members.iter().find(|m| m.peers.iter().any(|p| p == peer)) {
        return Some(format!(
            "etcd already has member {} ({:?}) at {peer}: a member that was reset must be \
             removed first (`dmucctl etcd remove {}` on a running member)",
            m.id,
            m.name,
            if m.name.is_empty() { &m.id } else { &m.name }
        ));
    }
    if members.iter().any(|m| m.name == name) {
        return Some(format!(
            "etcd already has a member named {name}: give this node another --node-name"
        ));
    }
    if let Some(m) = members.iter().find(|m| m.learner) {
        return Some(format!(
            "etcd member {} ({}) is still a learner: etcd takes one at a time; wait until its \
             etcd-promote has made it a voter",
            m.id, m.name
        ));
    }
    None
}

/// A client of etcd at `endpoint` whose server certificate is of etcd's CA, with a client
/// certificate of that CA made in memory for this command (nothing written).
pub fn etcd_client(ca_crt: &[u8], ca_key: &[u8], endpoint: &str) -> Result<Api, String> {
    let (cert, key) = crate::pki::client_cert(
        &String::from_utf8_lossy(ca_crt),
        &String::from_utf8_lossy(ca_key),
        "dmucctl-join",
    )?;
    etcd_api(endpoint, ca_crt, cert.into_bytes(), key.into_bytes())
}

fn etcd_api(endpoint: &str, ca: &[u8], cert: Vec<u8>, key: Vec<u8>) -> Result<Api, String> {
    Api::new(
        &kube::Kubeconfig {
            server: endpoint.to_string(),
            ca: Some(ca.to_vec()),
            cert: Some(cert),
            key: Some(key),
            token: None,
        },
        true,
    )
}

/// `member/list` through the first endpoint that answers.
pub fn member_list(apis: &[(String, Api)]) -> Result<(usize, Vec<Member>), String> {
    let mut errors = Vec::new();
    for (i, (ep, api)) in apis.iter().enumerate() {
        match api.create("/v3/cluster/member/list", &json!({})) {
            Ok(v) => return Ok((i, parse_members(&v))),
            Err(e) => errors.push(format!("{ep}: {e}")),
        }
    }
    Err(format!("no etcd member answers: {}", errors.join("; ")))
}

/// Adds a learner at `peer`; returns its ID and the members afterwards.
pub fn add_learner(api: &Api, peer: &str) -> Result<(String, Vec<Member>), String> {
    let v = api
        .create(
            "/v3/cluster/member/add",
            &json!({"peerURLs": [peer], "isLearner": true}),
        )
        .map_err(|e| format!("etcd member add {peer}: {e}"))?;
    let id = match &v["member"]["ID"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok((id, parse_members(&v)))
}

/// The `etcd-cluster.env` of a member.
pub fn etcd_env(initial: &str, state: &str, endpoints: &[String]) -> String {
    format!(
        "# Written by dmucctl: read by etcd at its first start only (a data directory wins).\n\
         ETCD_INITIAL_CLUSTER={initial}\nETCD_INITIAL_CLUSTER_STATE={state}\n\
         DMUC_ETCD_ENDPOINTS={}\n",
        endpoints.join(",")
    )
}

/// `dmucctl etcd promote`'s arguments.
#[derive(clap::Args, Debug)]
pub struct PromoteArgs {
    /// This member's peer URL (how it is found in the member list).
    #[arg(long, value_name = "URL")]
    pub peer_url: String,
    /// The member's files: etcd-ca.crt and apiserver-etcd-client.{crt,key} (etcd's client).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/dmuc/pki")]
    pub pki: std::path::PathBuf,
    /// The etcd-cluster.env a control-plane join wrote (its DMUC_ETCD_ENDPOINTS: the voting
    /// members to ask); without the file, this member is the first and votes already.
    #[arg(long, value_name = "FILE")]
    pub env: std::path::PathBuf,
    /// How long to wait for the learner to catch up.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = dmuc_config::duration::parse_duration)]
    pub timeout: Duration,
}

/// Where `etcd members` and `etcd remove` ask: a member's etcd client certificate.
#[derive(clap::Args, Debug)]
pub struct EtcdArgs {
    /// The member's files: etcd-ca.crt and apiserver-etcd-client.{crt,key}.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/dmuc/pki")]
    pub pki: std::path::PathBuf,
    /// etcd's client URL (repeatable: the first that answers).
    #[arg(long, value_name = "URL", default_value = "https://127.0.0.1:2379")]
    pub endpoint: Vec<String>,
}

impl EtcdArgs {
    fn apis(&self) -> Result<Vec<(String, Api)>, String> {
        let read = |f: &str| {
            let p = self.pki.join(f);
            std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
        };
        let (ca, cert, key) = (
            read("etcd-ca.crt")?,
            read("apiserver-etcd-client.crt")?,
            read("apiserver-etcd-client.key")?,
        );
        self.endpoint
            .iter()
            .map(|e| Ok((e.clone(), etcd_api(e, &ca, cert.clone(), key.clone())?)))
            .collect()
    }
}

/// The members as the local etcd lists them, with the member's client certificate in `pki`.
pub fn local_members(pki: &Path) -> Result<Vec<Member>, String> {
    let a = EtcdArgs {
        pki: pki.to_path_buf(),
        endpoint: vec!["https://127.0.0.1:2379".into()],
    };
    member_list(&a.apis()?).map(|(_, ms)| ms)
}

/// The other members (name, host) of a member list, from their peer URLs.
pub fn peers_of(ms: &[Member], self_ip: &str) -> Vec<(String, String)> {
    let list: Vec<String> = ms
        .iter()
        .flat_map(|m| m.peers.iter().map(move |p| format!("{}={p}", m.name)))
        .collect();
    peers(&list.join(","), self_ip)
}

/// The table of `dmucctl etcd members`.
pub fn members_table(ms: &[Member]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "ID".into(),
        "ROLE".into(),
        "PEER".into(),
        "CLIENT".into(),
    ]];
    for m in ms {
        let role = if m.name.is_empty() {
            "added, not started"
        } else if m.learner {
            "learner"
        } else {
            "voter"
        };
        rows.push([
            if m.name.is_empty() {
                "-".into()
            } else {
                m.name.clone()
            },
            m.id.clone(),
            role.into(),
            m.peers.join(","),
            if m.clients.is_empty() {
                "-".into()
            } else {
                m.clients.join(",")
            },
        ]);
    }
    let w: Vec<usize> = (0..5)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let mut l = String::new();
            for (i, c) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    l.push_str(c);
                } else {
                    l.push_str(&format!("{c:<width$}  ", width = w[i]));
                }
            }
            l.trim_end().to_string() + "\n"
        })
        .collect()
}

/// The member `which` (a name or an ID) names, unless removing it is refused: unknown, or
/// the last voter (a cluster cannot remove its own last vote).
pub fn to_remove<'a>(ms: &'a [Member], which: &str) -> Result<&'a Member, String> {
    let m = ms
        .iter()
        .find(|m| m.name == which || m.id == which)
        .ok_or_else(|| {
            let names: Vec<&str> = ms.iter().map(|m| m.name.as_str()).collect();
            format!(
                "no etcd member named {which:?} (members: {})",
                names.join(", ")
            )
        })?;
    if !m.learner && ms.iter().filter(|x| !x.learner).count() == 1 {
        return Err(format!(
            "{which} is the last voting member: removing it would end the cluster (dmucctl reset does that)"
        ));
    }
    Ok(m)
}

/// `dmucctl etcd members`.
pub fn members_cmd(a: EtcdArgs) -> u8 {
    match a.apis().and_then(|apis| member_list(&apis)) {
        Ok((_, ms)) => {
            print!("{}", members_table(&ms));
            dmuc_client::OK
        }
        Err(e) => {
            eprintln!("dmucctl: etcd members: {e}");
            dmuc_client::FAILED
        }
    }
}

/// `dmucctl etcd remove NAME|ID`: the member leaves etcd (its etcd stops for good; reset
/// that host before it joins again).
pub fn remove_cmd(a: EtcdArgs, which: &str) -> u8 {
    let r = (|| {
        let apis = a.apis()?;
        let (i, ms) = member_list(&apis)?;
        let m = to_remove(&ms, which)?;
        apis[i]
            .1
            .create("/v3/cluster/member/remove", &json!({"ID": m.id}))
            .map_err(|e| format!("member remove {}: {e}", m.id))?;
        Ok::<String, String>(format!(
            "removed etcd member {} ({}, {}); {} left. On that host: dmucctl reset, then join it \
             again with a new `dmucctl token create --control-plane` if it should come back",
            m.name,
            m.id,
            m.peers.join(","),
            ms.len() - 1
        ))
    })();
    match r {
        Ok(msg) => {
            println!("{msg}");
            dmuc_client::OK
        }
        Err(e) => {
            eprintln!("dmucctl: etcd remove: {e}");
            dmuc_client::FAILED
        }
    }
}

/// The value of `KEY=` in an env file.
pub fn env_value(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .map(|v| v.trim().to_string())
}

/// `dmucctl etcd promote`: makes this member a voter once it has caught up (a no-op for a
/// voter); retries while etcd says the learner is not in sync yet.
pub fn promote(a: PromoteArgs) -> u8 {
    match promote_inner(&a) {
        Ok(msg) => {
            println!("{msg}");
            dmuc_client::OK
        }
        Err(e) => {
            eprintln!("dmucctl: etcd promote: {e}");
            dmuc_client::FAILED
        }
    }
}

fn promote_inner(a: &PromoteArgs) -> Result<String, String> {
    let read = |f: &str| {
        let p = a.pki.join(f);
        std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut endpoints: Vec<String> = match std::fs::read_to_string(&a.env) {
        Ok(t) => env_value(&t, "DMUC_ETCD_ENDPOINTS")
            .unwrap_or_default()
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => vec![],
    };
    // The local member answers too, once it votes (on a restart, say).
    endpoints.push("https://127.0.0.1:2379".into());
    let (ca, cert, key) = (
        read("etcd-ca.crt")?,
        read("apiserver-etcd-client.crt")?,
        read("apiserver-etcd-client.key")?,
    );
    let apis = endpoints
        .iter()
        .map(|e| Ok((e.clone(), etcd_api(e, &ca, cert.clone(), key.clone())?)))
        .collect::<Result<Vec<_>, String>>()?;
    let deadline = Instant::now() + a.timeout;
    loop {
        let last = match member_list(&apis) {
            Ok((i, members)) => {
                let me = members
                    .iter()
                    .find(|m| m.peers.iter().any(|p| p == &a.peer_url))
                    .ok_or_else(|| {
                        format!(
                            "no etcd member has the peer URL {}: join with `dmucctl join \
                             --control-plane`",
                            a.peer_url
                        )
                    })?;
                if !me.learner {
                    return Ok(format!(
                        "etcd member {} ({}) votes; {} members",
                        me.id,
                        me.name,
                        members.len()
                    ));
                }
                match apis[i]
                    .1
                    .create("/v3/cluster/member/promote", &json!({"ID": me.id}))
                {
                    Ok(_) => {
                        return Ok(format!(
                            "etcd member {} ({}) promoted from learner to voter",
                            me.id, me.name
                        ));
                    }
                    Err(e) => format!("promote {}: {e}", me.id),
                }
            }
            Err(e) => e,
        };
        if Instant::now() > deadline {
            return Err(format!(
                "not a voter after {} s: {last}",
                a.timeout.as_secs()
            ));
        }
        println!("waiting: {last}");
        std::thread::sleep(Duration::from_millis(500)); // polling etcd, with the deadline above
    }
}

/// The seconds since the epoch of an HTTP `Date` (IMF-fixdate: `Fri, 04 Dec 2026 21:58:00
/// GMT`, the only form servers send now).
pub fn http_date(d: &str) -> Option<i64> {
    let w: Vec<&str> = d.split_whitespace().collect();
    let [_, day, month, year, hms, "GMT"] = w[..] else {
        return None;
    };
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u8 + 1;
    let date = time::Date::from_calendar_date(
        year.parse().ok()?,
        time::Month::try_from(month).ok()?,
        day.parse().ok()?,
    )
    .ok()?;
    let t: Vec<u8> = hms.split(':').filter_map(|x| x.parse().ok()).collect();
    let [h, m, s] = t[..] else {
        return None;
    };
    let time = time::Time::from_hms(h, m, s).ok()?;
    Some(
        time::PrimitiveDateTime::new(date, time)
            .assume_utc()
            .unix_timestamp(),
    )
}

/// Another host's clock minus ours, in whole seconds, from the `Date` its API server (or a
/// balancer in front of one) answers with at `https://ADDR:6443` (any status: the header is
/// there on a 401 too). TLS unverified: only the clock is read.
pub fn clock_skew(addr: &str) -> Result<i64, String> {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(true)
        .build();
    let agent = ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(Duration::from_secs(3)))
        .http_status_as_error(false)
        .build()
        .new_agent();
    let before = time::OffsetDateTime::now_utc();
    let r = agent
        .get(&format!("https://{addr}:6443/livez"))
        .call()
        .map_err(|e| e.to_string())?;
    let after = time::OffsetDateTime::now_utc();
    let date = r
        .headers()
        .get("date")
        .and_then(|v| v.to_str().ok())
        .ok_or("no Date header")?;
    let theirs = http_date(date).ok_or_else(|| format!("a Date header of {date:?}"))?;
    // Against the middle of the exchange: the round trip is not the other clock's fault.
    let ours = (before.unix_timestamp() + after.unix_timestamp()) / 2;
    Ok(theirs - ours)
}

/// The other members in an `ETCD_INITIAL_CLUSTER` (name, host), without `self_ip`.
pub fn peers(initial_cluster: &str, self_ip: &str) -> Vec<(String, String)> {
    initial_cluster
        .split(',')
        .filter_map(|e| {
            let (name, url) = e.split_once('=')?;
            let host = url.split("://").nth(1)?.rsplit_once(':')?.0.to_string();
            (host != self_ip && !name.is_empty()).then(|| (name.to_string(), host))
        })
        .collect()
}

/// Reads the shared files of a member's `pki` for the Secret.
pub fn read_shared(pki: &Path) -> Result<Vec<(&'static str, Vec<u8>)>, String> {
    SHARED
        .iter()
        .map(|(name, _)| {
            let p = pki.join(name);
            std::fs::read(&p)
                .map(|b| (*name, b))
                .map_err(|e| format!("{}: {e} (run this on a control-plane member)", p.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
