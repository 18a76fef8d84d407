//! etcd as its component runs it, for `dmucctl backup` and `dmucctl restore`: the member's
//! name, data directory, client endpoint, certificates and initial cluster, read from the
//! component's argv and environment the way etcd reads them; and what a restore stops and
//! brings back. Pure: the I/O is in [`crate::backup`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use dmuc_proto::{ComponentStatus, GraphResult, State};

/// The flags that take a value and that backup or restore read. Any other bare `--flag` is
/// taken as a boolean (`--client-cert-auth`), as Go's flag package would for etcd's booleans.
const VALUE_FLAGS: &[&str] = &[
    "name",
    "data-dir",
    "wal-dir",
    "listen-client-urls",
    "advertise-client-urls",
    "initial-advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-token",
    "cert-file",
    "key-file",
    "trusted-ca-file",
    "config-file",
];

/// One etcd member, as its component runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// `--name` (etcd's default: `default`).
    pub name: String,
    /// `--data-dir`, absolute (etcd's default: `NAME.etcd` in its working directory).
    pub data_dir: PathBuf,
    /// The URL etcdctl reaches it on.
    pub endpoint: String,
    /// `--initial-advertise-peer-urls`.
    pub peer_urls: String,
    /// `--initial-cluster`.
    pub initial_cluster: String,
    /// `--initial-cluster-token`.
    pub cluster_token: String,
    /// The members named in `--initial-cluster`.
    pub members: Vec<String>,
    /// The server's CA, certificate and key: etcdctl uses them as its client identity, as
    /// Kubernetes' own backup instructions do (an etcd server certificate made for both
    /// serverAuth and clientAuth, which `--client-cert-auth` needs).
    pub tls: Tls,
}

/// Certificates for etcdctl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tls {
    /// `--cacert`: `--trusted-ca-file`.
    pub ca: Option<PathBuf>,
    /// `--cert`: `--cert-file`.
    pub cert: Option<PathBuf>,
    /// `--key`: `--key-file`.
    pub key: Option<PathBuf>,
}

impl Tls {
    /// etcdctl's arguments for these files.
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (flag, f) in [
            ("--cacert", &self.ca),
            ("--cert", &self.cert),
            ("--key", &self.key),
        ] {
            if let Some(f) = f {
                a.push(format!("{flag}={}", f.display()));
            }
        }
        a
    }
}

/// Reads the member from the component's `command`, `env` and working directory. A flag wins
/// over its `ETCD_*` variable, as in etcd.
pub fn member(command: &[String], env: &[(String, String)], cwd: &Path) -> Result<Member, String> {
    let mut flags: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in env {
        if let Some(f) = k.strip_prefix("ETCD_") {
            flags.insert(f.to_ascii_lowercase().replace('_', "-"), v.clone());
        }
    }
    let mut args = command.iter().skip(1);
    while let Some(a) = args.next() {
        let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) else {
            continue;
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.to_string(), None),
        };
        if !VALUE_FLAGS.contains(&name.as_str()) {
            continue;
        }
        let value = match value {
            Some(v) => v,
            None => args
                .next()
                .cloned()
                .ok_or_else(|| format!("etcd's --{name} has no value"))?,
        };
        flags.insert(name, value);
    }
    if let Some(f) = flags.get("config-file") {
        return Err(format!(
            "etcd reads its settings from {f} (--config-file), which dmucctl does not read: \
             give the endpoint and certificates with --endpoint, --cacert, --cert and --key"
        ));
    }
    let get = |k: &str| flags.get(k).filter(|v| !v.is_empty()).cloned();
    let name = get("name").unwrap_or_else(|| "default".into());
    let data_dir = cwd.join(get("data-dir").unwrap_or_else(|| format!("{name}.etcd")));
    if get("wal-dir").is_some() {
        return Err(
            "etcd keeps its WAL apart (--wal-dir): dmucctl restore only restores a data \
             directory that holds its WAL"
                .into(),
        );
    }
    let endpoint = match get("advertise-client-urls") {
        Some(u) => first(&u),
        None => local(&first(
            &get("listen-client-urls").unwrap_or_else(|| "http://localhost:2379".into()),
        )),
    };
    let peer_urls =
        get("initial-advertise-peer-urls").unwrap_or_else(|| "http://localhost:2380".into());
    // etcd's rule: without --initial-cluster, the member alone at its peer URLs.
    let initial_cluster = get("initial-cluster").unwrap_or_else(|| {
        peer_urls
            .split(',')
            .map(|u| format!("{name}={u}"))
            .collect::<Vec<_>>()
            .join(",")
    });
    let members: BTreeSet<String> = initial_cluster
        .split(',')
        .filter_map(|m| m.split_once('=').map(|(n, _)| n.trim().to_string()))
        .collect();
    Ok(Member {
        name,
        data_dir,
        endpoint,
        peer_urls,
        cluster_token: get("initial-cluster-token").unwrap_or_else(|| "etcd-cluster".into()),
        initial_cluster,
        members: members.into_iter().collect(),
        tls: Tls {
            ca: get("trusted-ca-file").map(|f| cwd.join(f)),
            cert: get("cert-file").map(|f| cwd.join(f)),
            key: get("key-file").map(|f| cwd.join(f)),
        },
    })
}

fn first(urls: &str) -> String {
    urls.split(',')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// A listening address as a client reaches it: the wildcard is the loopback.
fn local(url: &str) -> String {
    url.replacen("//0.0.0.0", "//127.0.0.1", 1)
        .replacen("//[::]", "//[::1]", 1)
}

impl Member {
    /// A restore must bring back one member; several are restored each from the same
    /// snapshot, which one node's dmucd cannot do for the others.
    pub fn single(&self) -> Result<(), String> {
        if self.members.len() > 1 {
            return Err(format!(
                "etcd's --initial-cluster has {} members ({}): a cluster of several is restored \
                 by restoring every member from the same snapshot; dmucctl restore restores a \
                 single-member etcd",
                self.members.len(),
                self.members.join(", ")
            ));
        }
        Ok(())
    }

    /// `snapshot restore`'s arguments (etcdutl's and etcdctl 3.4's are the same), into `dir`.
    pub fn restore_args(&self, snapshot: &Path, dir: &Path) -> Vec<String> {
        vec![
            "snapshot".into(),
            "restore".into(),
            snapshot.display().to_string(),
            format!("--name={}", self.name),
            format!("--data-dir={}", dir.display()),
            format!("--initial-cluster={}", self.initial_cluster),
            format!("--initial-cluster-token={}", self.cluster_token),
            format!("--initial-advertise-peer-urls={}", self.peer_urls),
        ]
    }
}

/// The etcd component of a graph: `wanted` if given, else the one whose program is `etcd`.
pub fn find_component(
    commands: &[(String, Vec<String>)],
    wanted: Option<&str>,
) -> Result<String, String> {
    if let Some(w) = wanted {
        return commands
            .iter()
            .find(|(n, _)| n == w)
            .map(|(n, _)| n.clone())
            .ok_or_else(|| format!("no component named {w}"));
    }
    let etcds: Vec<&String> = commands
        .iter()
        .filter(|(_, c)| {
            c.first()
                .and_then(|p| Path::new(p).file_name())
                .is_some_and(|f| f == "etcd")
        })
        .map(|(n, _)| n)
        .collect();
    match etcds.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err("no component runs etcd: name it with --component".into()),
        many => Err(format!(
            "several components run etcd ({}): name one with --component",
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// What a restore does to the graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// What stops, in order: the dependents (the last to start first), then etcd.
    pub stop: Vec<String>,
    /// What starts again: etcd, and the dependents that dmucd wanted up (any state but
    /// `stopped`), in config order.
    pub start: Vec<String>,
}

/// The restore's plan for `etcd` in `graph` with these states.
pub fn plan(graph: &GraphResult, states: &[ComponentStatus], etcd: &str) -> Plan {
    // Everything that waits for etcd, directly or not.
    let mut deps: BTreeSet<&str> = BTreeSet::from([etcd]);
    loop {
        let before = deps.len();
        for e in &graph.edges {
            if deps.contains(e.to.as_str()) {
                deps.insert(e.from.as_str());
            }
        }
        if deps.len() == before {
            break;
        }
    }
    let mut stop: Vec<&dmuc_proto::GraphNode> = graph
        .nodes
        .iter()
        .filter(|n| deps.contains(n.name.as_str()))
        .collect();
    // Reverse start order: the highest level first (a stable sort keeps config order within
    // a level, reversed).
    stop.reverse();
    stop.sort_by_key(|n| std::cmp::Reverse(n.level));
    let state = |n: &str| states.iter().find(|s| s.name == n).map(|s| s.state);
    let start = graph
        .nodes
        .iter()
        .filter(|n| deps.contains(n.name.as_str()))
        .filter(|n| n.name == etcd || state(&n.name).is_some_and(|s| s != State::Stopped))
        .map(|n| n.name.clone())
        .collect();
    Plan {
        stop: stop.into_iter().map(|n| n.name.clone()).collect(),
        start,
    }
}

/// The checksum file's line for `file`, as `sha256sum` writes it (and `sha256sum -c` reads
/// it in the file's directory).
pub fn checksum_line(hex: &str, file: &Path) -> String {
    let name = file.file_name().map_or_else(
        || file.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    format!("{hex}  {name}\n")
}

/// The digest in a checksum file's text, for `file`.
pub fn parse_checksum(text: &str, file: &Path) -> Result<String, String> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
    for line in text.lines() {
        let Some((hex, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start().trim_start_matches('*');
        if hex.len() == 64
            && hex.bytes().all(|b| b.is_ascii_hexdigit())
            && name.as_deref().is_none_or(|n| n == rest)
        {
            return Ok(hex.to_ascii_lowercase());
        }
    }
    Err(format!(
        "no SHA-256 line for {} in its checksum file",
        file.display()
    ))
}

#[cfg(test)]
mod tests;
