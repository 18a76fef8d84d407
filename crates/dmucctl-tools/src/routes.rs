//! `dmucctl routes`: a route to each other node's pod subnet via its InternalIP, kept in
//! sync with the Node objects (a watch), as the tutorial's follow-up does by hand with
//! `ip route add 10.1.2.0/24 via NODE2_IP`. The routes carry their own protocol number
//! ([`PROTO`]) so that the ones dmuc made are found again (after a restart, and by reset)
//! without touching anyone else's.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::Value;

use crate::kube::{self, Api};

/// The routing protocol number on dmuc's routes (`ip route show proto 211`): one that no
/// routing daemon in iproute2's rt_protos uses.
pub const PROTO: &str = "211";

/// `dmucctl routes`' arguments.
#[derive(clap::Args, Debug)]
pub struct RoutesArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    /// Keep watching the Nodes and keep the routes in sync (a component's mode); without it,
    /// set the routes once and exit.
    #[arg(long)]
    pub watch: bool,
    /// Only remove dmuc's routes (what `dmucctl reset` does).
    #[arg(long, conflicts_with = "watch")]
    pub remove: bool,
}

/// A route to a pod subnet: `cidr via gateway`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub cidr: String,
    pub via: Ipv4Addr,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} via {}", self.cidr, self.via)
    }
}

/// What the Nodes ask for: each other node's IPv4 pod subnets via its IPv4 InternalIP,
/// with the node's name; and the nodes still without a subnet or an address.
pub fn wanted(nodes: &BTreeMap<String, Value>, me: &str) -> (BTreeMap<Route, String>, Vec<String>) {
    let (mut want, mut waiting) = (BTreeMap::new(), Vec::new());
    for (name, n) in nodes {
        if name == me {
            continue;
        }
        let via = n["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["type"] == "InternalIP")
            .find_map(|a| a["address"].as_str()?.parse::<Ipv4Addr>().ok());
        let mut cidrs: Vec<&str> = n["spec"]["podCIDRs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if cidrs.is_empty() {
            cidrs.extend(n["spec"]["podCIDR"].as_str());
        }
        cidrs.retain(|c| {
            c.split_once('/')
                .is_some_and(|(a, _)| a.parse::<Ipv4Addr>().is_ok())
        });
        match via {
            Some(via) if !cidrs.is_empty() => {
                for c in cidrs {
                    want.insert(
                        Route {
                            cidr: c.to_string(),
                            via,
                        },
                        name.clone(),
                    );
                }
            }
            _ => waiting.push(name.clone()),
        }
    }
    (want, waiting)
}

/// dmuc's routes in `ip -4 route show proto 211` output (`10.244.1.0/24 via 198.18.0.11 dev
/// br0 `).
pub fn parse_routes(text: &str) -> BTreeSet<Route> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == "via")?;
            Some(Route {
                cidr: w.first()?.to_string(),
                via: w.get(at + 1)?.parse().ok()?,
            })
        })
        .collect()
}

/// What to add (or replace) and what to delete to go from `have` to `want`.
pub fn plan(have: &BTreeSet<Route>, want: &BTreeMap<Route, String>) -> (Vec<Route>, Vec<Route>) {
    let add = want.keys().filter(|r| !have.contains(r)).cloned().collect();
    let del = have
        .iter()
        .filter(|r| !want.contains_key(r))
        .cloned()
        .collect();
    (add, del)
}

fn ip(args: &[&str]) -> Result<String, String> {
    let o = std::process::Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e} (install iproute2)"))?;
    if o.status.success() {
        Ok(String::from_utf8_lossy(&o.stdout).into_owned())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&o.stderr).trim()
        ))
    }
}

/// dmuc's routes on this host.
pub fn ours() -> Result<BTreeSet<Route>, String> {
    ip(&["-4", "route", "show", "proto", PROTO]).map(|t| parse_routes(&t))
}

/// Deletes one of dmuc's routes.
pub fn delete(r: &Route) -> Result<(), String> {
    let via = r.via.to_string();
    ip(&["-4", "route", "del", &r.cidr, "via", &via, "proto", PROTO]).map(|_| ())
}

/// Brings the host's routes to what the Nodes ask for; prints each change. A route that
/// cannot be set (its gateway is not on a local network) is reported and the rest go on.
fn sync(
    nodes: &BTreeMap<String, Value>,
    me: &str,
    waiting_said: &mut Vec<String>,
) -> Result<(), String> {
    let (want, waiting) = wanted(nodes, me);
    if &waiting != waiting_said {
        if !waiting.is_empty() {
            println!(
                "waiting for the pod subnet or InternalIP of: {}",
                waiting.join(", ")
            );
        }
        *waiting_said = waiting;
    }
    let have = ours()?;
    let (add, del) = plan(&have, &want);
    for r in del {
        match delete(&r) {
            Ok(()) => println!("removed {r} (no node has it now)"),
            Err(e) => eprintln!("{e}"),
        }
    }
    for r in add {
        let via = r.via.to_string();
        match ip(&[
            "-4", "route", "replace", &r.cidr, "via", &via, "proto", PROTO,
        ]) {
            Ok(_) => println!("{r} (node {})", want[&r]),
            Err(e) => eprintln!("{e}"),
        }
    }
    Ok(())
}

/// `dmucctl pod-cidr`'s arguments.
#[derive(clap::Args, Debug)]
pub struct PodCidrArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Which node, and a kubeconfig that may read the Nodes.
#[derive(clap::Args, Debug)]
pub struct NodeArgs {
    /// A kubeconfig allowed to list and watch Nodes (kube-proxy's).
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/var/lib/dmuc/pki/kube-proxy.kubeconfig"
    )]
    pub kubeconfig: PathBuf,
    /// This node's name (its own pod subnet is its bridge's, not routed).
    #[arg(long = "node", value_name = "NAME")]
    pub name: String,
}

/// `dmucctl pod-cidr`: waits (a watch) until the controller manager has given the node its
/// pod subnet, and prints it: what the node's CNI bridge hands out.
pub fn pod_cidr(a: PodCidrArgs) -> u8 {
    let mut found = None;
    let r = kube::load_kubeconfig(&a.node.kubeconfig)
        .and_then(|k| Api::new(&k, true))
        .and_then(|api| {
            let mut said = false;
            api.list_watch(
                &format!(
                    "/api/v1/nodes?fieldSelector=metadata.name%3D{}",
                    a.node.name
                ),
                |nodes, _| {
                    found = nodes
                        .get(&a.node.name)
                        .and_then(|n| n["spec"]["podCIDR"].as_str())
                        .map(str::to_string);
                    if found.is_none() && !said {
                        eprintln!("waiting for Node {} and its pod subnet", a.node.name);
                        said = true;
                    }
                    Ok(found.is_some())
                },
            )
        });
    match (r, found) {
        (Ok(()), Some(c)) => {
            println!("{c}");
            dmuc_client::OK
        }
        (Err(e), _) => {
            eprintln!("dmucctl: pod-cidr: {e}");
            dmuc_client::FAILED
        }
        (Ok(()), None) => dmuc_client::FAILED,
    }
}

/// `dmucctl routes`.
pub fn run(a: RoutesArgs) -> u8 {
    let r = if a.remove {
        remove_all().map(|n| println!("removed {n} routes"))
    } else {
        follow(&a)
    };
    match r {
        Ok(()) => dmuc_client::OK,
        Err(e) => {
            eprintln!("dmucctl: routes: {e}");
            dmuc_client::FAILED
        }
    }
}

/// Removes every dmuc route; how many.
pub fn remove_all() -> Result<usize, String> {
    let have = ours()?;
    for r in &have {
        delete(r)?;
    }
    Ok(have.len())
}

fn follow(a: &RoutesArgs) -> Result<(), String> {
    let api = Api::new(&kube::load_kubeconfig(&a.node.kubeconfig)?, true)?;
    let mut waiting = Vec::new();
    if !a.watch {
        let list = api
            .get("/api/v1/nodes")
            .map_err(|e| format!("nodes: {e}"))?
            .unwrap_or_default();
        let nodes = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|n| {
                (
                    n["metadata"]["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    n.clone(),
                )
            })
            .collect();
        return sync(&nodes, &a.node.name, &mut waiting);
    }
    println!(
        "routing the pod subnets of the nodes other than {} (proto {PROTO})",
        a.node.name
    );
    api.list_watch("/api/v1/nodes", |nodes, _| {
        sync(nodes, &a.node.name, &mut waiting).map(|()| false)
    })
}

#[cfg(test)]
mod tests;
