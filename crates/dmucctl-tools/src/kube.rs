//! A small client of the Kubernetes API for `dmucctl token create` and `dmucctl join`: a
//! kubeconfig's server and credentials, and JSON requests over HTTPS (ureq, rustls). No
//! client-go: the few objects these commands make are written out as JSON here.

use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

/// What a kubeconfig says of its current cluster and user (the first of each: dmucctl's
/// kubeconfigs, and kubeadm's, hold one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Kubeconfig {
    /// The API server's URL.
    pub server: String,
    /// The cluster's CA, PEM.
    pub ca: Option<Vec<u8>>,
    /// The client certificate, PEM.
    pub cert: Option<Vec<u8>>,
    /// The client key, PEM.
    pub key: Option<Vec<u8>>,
    /// A bearer token.
    pub token: Option<String>,
}

/// Reads a kubeconfig's `server`, `certificate-authority(-data)`, `client-certificate(-data)`,
/// `client-key(-data)` and `token` (paths are relative to the file's directory). A
/// line-based reader of the keys, not YAML in general: enough for the flat files kubeadm,
/// kubectl and dmucctl write.
pub fn parse_kubeconfig(text: &str, dir: &Path) -> Result<Kubeconfig, String> {
    parse(text, Some(dir))
}

/// [`parse_kubeconfig`] of a kubeconfig from somewhere else (a server's cluster-info): inline
/// data only, a reference to a local file is an error (it would read this host's files).
pub fn parse_kubeconfig_inline(text: &str) -> Result<Kubeconfig, String> {
    parse(text, None)
}

fn parse(text: &str, dir: Option<&Path>) -> Result<Kubeconfig, String> {
    let mut k = Kubeconfig::default();
    let b64 = |v: &str, what: &str| {
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .map_err(|e| format!("{what}: not base64: {e}"))
    };
    let file = |v: &str| {
        let Some(dir) = dir else {
            return Err(format!(
                "names a local file ({}): only inline data (…-data keys) is taken from elsewhere",
                v.trim()
            ));
        };
        let p = dir.join(v.trim());
        std::fs::read(&p).map_err(|e| format!("{}: {e}", p.display()))
    };
    for line in text.lines() {
        let Some((key, value)) = line.trim().trim_start_matches("- ").split_once(':') else {
            continue;
        };
        let value = value.trim().trim_matches('"').trim_matches('\'');
        if value.is_empty() {
            continue;
        }
        match key.trim() {
            "server" if k.server.is_empty() => k.server = value.to_string(),
            "certificate-authority-data" if k.ca.is_none() => k.ca = Some(b64(value, key)?),
            "certificate-authority" if k.ca.is_none() => k.ca = Some(file(value)?),
            "client-certificate-data" if k.cert.is_none() => k.cert = Some(b64(value, key)?),
            "client-certificate" if k.cert.is_none() => k.cert = Some(file(value)?),
            "client-key-data" if k.key.is_none() => k.key = Some(b64(value, key)?),
            "client-key" if k.key.is_none() => k.key = Some(file(value)?),
            "token" if k.token.is_none() => k.token = Some(value.to_string()),
            _ => {}
        }
    }
    if k.server.is_empty() {
        return Err("the kubeconfig names no server".into());
    }
    Ok(k)
}

/// The kubeconfig of a file.
pub fn load_kubeconfig(path: &Path) -> Result<Kubeconfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse_kubeconfig(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// A connection to one API server.
pub struct Api {
    agent: ureq::Agent,
    /// For watches: no overall deadline, the server ends them after WATCH_SECS.
    watcher: ureq::Agent,
    server: String,
    token: Option<String>,
}

/// An API answer that is not a success.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status (0: no answer).
    pub status: u16,
    /// What the server or the connection said.
    pub message: String,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.status == 0 {
            write!(f, "{}", self.message)
        } else {
            write!(f, "HTTP {}: {}", self.status, self.message)
        }
    }
}

impl Api {
    /// A client with the kubeconfig's CA and credentials. `verify: false` skips the server
    /// certificate's check: only for discovery, whose answer is checked another way.
    pub fn new(k: &Kubeconfig, verify: bool) -> Result<Api, String> {
        use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};
        let mut tls = TlsConfig::builder();
        if let Some(ca) = &k.ca {
            let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(ca)
                .filter_map(|i| match i {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if certs.is_empty() {
                return Err("the kubeconfig's CA holds no certificate".into());
            }
            tls = tls.root_certs(RootCerts::new_with_certs(&certs));
        }
        if let (Some(c), Some(key)) = (&k.cert, &k.key) {
            let cert = Certificate::from_pem(c).map_err(|e| format!("client certificate: {e}"))?;
            let key = PrivateKey::from_pem(key).map_err(|e| format!("client key: {e}"))?;
            tls = tls.client_cert(Some(ClientCert::new_with_certs(&[cert], key)));
        }
        if !verify {
            tls = tls.disable_verification(true);
        }
        let tls = tls.build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls.clone())
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        let watcher = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_recv_response(Some(Duration::from_secs(30)))
            // A silent connection (a partition) ends a little after the server's own end.
            .timeout_recv_body(Some(Duration::from_secs(WATCH_SECS + 30)))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Ok(Api {
            agent,
            watcher,
            server: k.server.trim_end_matches('/').to_string(),
            token: k.token.clone(),
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        let url = format!("{}{path}", self.server);
        let no = |e: ureq::Error| ApiError {
            status: 0,
            message: format!("{url}: {e}"),
        };
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let mut resp = match (method, body) {
            ("GET", _) | ("DELETE", None) => {
                let mut r = if method == "GET" {
                    self.agent.get(&url)
                } else {
                    self.agent.delete(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.header("Accept", "application/json").call().map_err(no)?
            }
            (_, body) => {
                let mut r = match method {
                    "POST" => self.agent.post(&url),
                    "PUT" => self.agent.put(&url),
                    _ => self.agent.patch(&url),
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                let text = body.map_or_else(String::new, Value::to_string);
                r.header("Content-Type", "application/json")
                    .header("Accept", "application/json")
                    .send(text.as_str())
                    .map_err(no)?
            }
        };
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(no)?;
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            let message = v["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            Err(ApiError { status, message })
        }
    }

    /// GET; `None` when the object does not exist.
    pub fn get(&self, path: &str) -> Result<Option<Value>, ApiError> {
        match self.retried(|| self.call("GET", path, None)) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.status == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// POST `body` to the collection `path`.
    pub fn create(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.call("POST", path, Some(body))
    }

    /// DELETE the object at `path`; `false` when there was none.
    pub fn delete(&self, path: &str) -> Result<bool, ApiError> {
        match self.retried(|| self.call("DELETE", path, None)) {
            Ok(_) => Ok(true),
            Err(e) if e.status == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// PUT `body` to `path` (a replace, or a subresource such as a CSR's approval).
    pub fn put(&self, path: &str, body: &Value) -> Result<Value, ApiError> {
        self.call("PUT", path, Some(body))
    }

    /// Creates the object unless one of its name exists (which is kept as it is): how the
    /// RBAC bindings and the like are made idempotent.
    pub fn ensure(&self, path: &str, body: &Value) -> Result<bool, ApiError> {
        // A create retried after a lost answer finds its own object: 409, also fine.
        match self.retried(|| self.create(path, body)) {
            Ok(_) => Ok(true),
            Err(e) if e.status == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `f` again while it fails in a way that passes (see [`transient`]), for up to
    /// RETRY_FOR: only around requests that may be repeated (GET, DELETE, ensure).
    fn retried<T>(&self, mut f: impl FnMut() -> Result<T, ApiError>) -> Result<T, ApiError> {
        let deadline = std::time::Instant::now() + RETRY_FOR;
        let mut pause = Duration::from_millis(250);
        loop {
            match f() {
                Err(e) if transient(&e) && std::time::Instant::now() + pause < deadline => {
                    std::thread::sleep(pause); // a backoff between tries, with the deadline above
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                r => return r,
            }
        }
    }
}

/// How long a repeatable request is tried again while the control plane recovers (an etcd
/// leader election, an API server behind the balancer going away).
pub const RETRY_FOR: Duration = Duration::from_secs(15);

/// Whether an error passes by itself: no answer (a connection refused or reset), too many
/// requests, the server not ready or timing out, or etcd timing out or changing its leader.
pub fn transient(e: &ApiError) -> bool {
    match e.status {
        0 | 429 | 503 | 504 => true,
        500 => ["etcdserver", "timed out", "leader changed", "Timeout"]
            .iter()
            .any(|m| e.message.contains(m)),
        _ => false,
    }
}

/// How long a watch request lasts before the server ends it (and it is made again).
pub const WATCH_SECS: u64 = 300;

/// One watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// ADDED or MODIFIED: the object as it is now.
    Put,
    /// DELETED.
    Deleted,
}

impl Api {
    /// Lists `collection` and then watches it: `each` gets the whole current set (by name)
    /// after the list and after each change, with the object that changed. It returns when
    /// `each` says it is done (`Ok(true)`) or fails: a lost or expired watch lists again,
    /// after a backoff when the server could not be reached (errors go to stderr, for the
    /// component's window).
    pub fn list_watch(
        &self,
        collection: &str,
        mut each: impl FnMut(
            &std::collections::BTreeMap<String, Value>,
            Option<(Change, &Value)>,
        ) -> Result<bool, String>,
    ) -> Result<(), String> {
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.list_then_watch(collection, &mut each) {
                Err(Lost::Each(e)) => return Err(e),
                Err(Lost::Done) => return Ok(()),
                // The resource version is too old: list again, now.
                Err(Lost::Api(e)) if e.status == 410 => continue,
                Err(Lost::Api(e)) => {
                    eprintln!("{collection}: {e}; again in {} ms", backoff.as_millis());
                    std::thread::sleep(backoff); // a retry's backoff, not a synchronisation
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
                Ok(()) => backoff = Duration::from_millis(500),
            }
        }
    }

    fn list_then_watch(
        &self,
        collection: &str,
        each: &mut impl FnMut(
            &std::collections::BTreeMap<String, Value>,
            Option<(Change, &Value)>,
        ) -> Result<bool, String>,
    ) -> Result<(), Lost> {
        let list = self.call("GET", collection, None)?;
        let mut rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let name = |o: &Value| {
            o["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        let mut set: std::collections::BTreeMap<String, Value> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| (name(o), o.clone()))
            .collect();
        if each(&set, None).map_err(Lost::Each)? {
            return Err(Lost::Done);
        }
        loop {
            let sep = if collection.contains('?') { '&' } else { '?' };
            let url = format!(
                "{}{collection}{sep}watch=1&allowWatchBookmarks=true&timeoutSeconds={WATCH_SECS}&resourceVersion={rv}",
                self.server
            );
            let no = |e: ureq::Error| ApiError {
                status: 0,
                message: format!("{url}: {e}"),
            };
            let mut r = self.watcher.get(&url);
            if let Some(t) = &self.token {
                r = r.header("Authorization", format!("Bearer {t}"));
            }
            let resp = r.header("Accept", "application/json").call().map_err(no)?;
            let status = resp.status().as_u16();
            let reader = std::io::BufReader::new(resp.into_body().into_reader());
            if !(200..300).contains(&status) {
                return Err(Lost::Api(ApiError {
                    status,
                    message: format!("watch {collection}"),
                }));
            }
            use std::io::BufRead as _;
            let (started, mut events) = (std::time::Instant::now(), 0u64);
            for line in reader.lines() {
                events += 1;
                // The server ended the watch (its timeout, or it stopped): watch again.
                let Ok(line) = line else { break };
                let Ok(ev) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                let obj = &ev["object"];
                if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
                    rv = v.to_string();
                }
                let change = match ev["type"].as_str() {
                    Some("ADDED" | "MODIFIED") => {
                        set.insert(name(obj), obj.clone());
                        Change::Put
                    }
                    Some("DELETED") => {
                        set.remove(&name(obj));
                        Change::Deleted
                    }
                    Some("ERROR") => {
                        return Err(Lost::Api(ApiError {
                            status: obj["code"].as_u64().unwrap_or(0) as u16,
                            message: obj["message"].as_str().unwrap_or_default().to_string(),
                        }));
                    }
                    _ => continue, // BOOKMARK: only the resource version moves
                };
                if each(&set, Some((change, obj))).map_err(Lost::Each)? {
                    return Err(Lost::Done);
                }
            }
            // A server that ends each watch at once (it is stopping) gets the backoff.
            if events == 0 && started.elapsed() < Duration::from_secs(1) {
                return Err(Lost::Api(ApiError {
                    status: 0,
                    message: format!("the watch of {collection} ended at once"),
                }));
            }
        }
    }
}

/// Why a list-and-watch stopped.
enum Lost {
    Api(ApiError),
    Each(String),
    /// `each` has what it waited for.
    Done,
}

impl From<ApiError> for Lost {
    fn from(e: ApiError) -> Lost {
        Lost::Api(e)
    }
}

/// `sha256:HEX` of a certificate's SubjectPublicKeyInfo: the CA pin of kubeadm's
/// `--discovery-token-ca-cert-hash`.
pub fn ca_hash(ca_pem: &[u8]) -> Result<String, String> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(ca_pem).map_err(|e| format!("the CA is not PEM: {e}"))?;
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("the CA is not a certificate: {e}"))?;
    let spki = cert.tbs_certificate.subject_pki.raw;
    let d = ring::digest::digest(&ring::digest::SHA256, spki);
    Ok(format!(
        "sha256:{}",
        d.as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ))
}

/// base64url without padding (JWS).
pub fn b64url(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// Checks a detached JWS (`HEADER..SIGNATURE`, HS256 keyed by the token's secret) over
/// `content`, as the bootstrap signer makes them for `cluster-info`: proof that the server
/// knows the token.
pub fn jws_ok(jws: &str, content: &str, token_id: &str, secret: &str) -> Result<(), String> {
    let (header, sig) = jws
        .split_once("..")
        .ok_or("the signature is not a detached JWS")?;
    let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|e| format!("the signature's header: {e}"))?;
    let h: Value =
        serde_json::from_slice(&h).map_err(|e| format!("the signature's header: {e}"))?;
    if h["alg"] != "HS256" || h["kid"] != token_id {
        return Err(format!(
            "the signature is not HS256 by token {token_id}: {h}"
        ));
    }
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|e| format!("the signature: {e}"))?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let signed = format!("{header}.{}", b64url(content.as_bytes()));
    ring::hmac::verify(&key, signed.as_bytes(), &sig)
        .map_err(|_| "the cluster-info signature does not match the token".to_string())
}

/// A detached JWS of `content` (what the bootstrap signer computes; for tests).
pub fn jws_sign(content: &str, token_id: &str, secret: &str) -> String {
    let header = b64url(format!(r#"{{"alg":"HS256","kid":"{token_id}"}}"#).as_bytes());
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let signed = format!("{header}.{}", b64url(content.as_bytes()));
    let sig = ring::hmac::sign(&key, signed.as_bytes());
    format!("{header}..{}", b64url(sig.as_ref()))
}

#[cfg(test)]
pub(crate) mod tests;
