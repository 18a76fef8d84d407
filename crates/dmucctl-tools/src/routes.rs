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
    /// The cluster's pod CIDR (the profile's `cluster-cidr`): a pod subnet outside it is
    /// never routed.
    #[arg(long, value_name = "CIDR", default_value = "10.244.0.0/16", value_parser = parse_net)]
    pub cluster_cidr: Net,
}

fn parse_net(s: &str) -> Result<Net, String> {
    Net::parse(s)
        .ok_or_else(|| format!("{s:?} is not an IPv4 network (ADDR/PREFIX, host bits zero)"))
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

/// An IPv4 network, `ADDR/PREFIX`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    pub addr: u32,
    pub prefix: u8,
}

impl Net {
    /// `10.244.1.0/24` (host bits must be zero).
    pub fn parse(s: &str) -> Option<Net> {
        let (a, p) = s.split_once('/')?;
        let addr = u32::from(a.parse::<Ipv4Addr>().ok()?);
        let prefix: u8 = p.parse().ok().filter(|p| *p <= 32)?;
        let n = Net { addr, prefix };
        (addr & !n.mask() == 0).then_some(n)
    }

    fn mask(self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - self.prefix)
        }
    }

    /// Whether `ip` is in this network.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.addr
    }

    /// Whether `other` lies wholly inside this network.
    pub fn covers(self, other: Net) -> bool {
        other.prefix >= self.prefix && other.addr & self.mask() == self.addr
    }

    /// Whether the two share an address.
    pub fn overlaps(self, other: Net) -> bool {
        self.covers(other) || other.covers(self)
    }
}

/// What a route must respect, from this host and the cluster: the pod subnets come from the
/// cluster CIDR (the controller manager allocates them there), the gateways are on this
/// host's own networks, and nothing a Node says may re-route this host's own networks.
#[derive(Debug, Clone)]
pub struct Bounds {
    /// The cluster's pod CIDR (the profile's `cluster-cidr`).
    pub cluster: Net,
    /// This host's IPv4 networks (`ip -4 addr`: address and prefix of each interface but
    /// loopback).
    pub host: Vec<(Ipv4Addr, Net)>,
}

/// What the Nodes ask for: each other node's IPv4 pod subnets via its IPv4 InternalIP,
/// with the node's name; the nodes still without a subnet or an address; and what is refused
/// (a Node object is written by its kubelet: whoever holds a node's credentials, or a
/// bootstrap token, can write any podCIDR or address in it), each with why.
pub fn wanted(
    nodes: &BTreeMap<String, Value>,
    me: &str,
    b: &Bounds,
) -> (BTreeMap<Route, String>, Vec<String>, Vec<String>) {
    let (mut want, mut waiting, mut refused) = (BTreeMap::new(), Vec::new(), Vec::new());
    // Every node's pod subnets, ours included, for the overlap check.
    let subnets = |n: &Value| -> Vec<String> {
        let mut cidrs: Vec<String> = n["spec"]["podCIDRs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        if cidrs.is_empty() {
            cidrs.extend(n["spec"]["podCIDR"].as_str().map(str::to_string));
        }
        // IPv4 only (a dual-stack node's IPv6 subnet is not routed here).
        cidrs.retain(|c| {
            c.split_once('/')
                .is_some_and(|(a, _)| a.parse::<Ipv4Addr>().is_ok())
        });
        cidrs
    };
    // Every node's pod subnets that could be routed (this node's always): one that is refused
    // for itself does not also block the others.
    let all: Vec<(&String, Net)> = nodes
        .iter()
        .flat_map(|(name, n)| {
            subnets(n)
                .into_iter()
                .filter_map(move |c| Net::parse(&c).map(|net| (name, net)))
        })
        .filter(|(name, net)| {
            name.as_str() == me
                || (b.cluster.covers(*net) && !b.host.iter().any(|(_, h)| h.overlaps(*net)))
        })
        .collect();
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
        let cidrs = subnets(n);
        let Some(via) = via.filter(|_| !cidrs.is_empty()) else {
            waiting.push(name.clone());
            continue;
        };
        if let Some(why) = bad_gateway(via, b) {
            refused.push(format!("node {name}: gateway {via}: {why}"));
            continue;
        }
        for c in cidrs {
            match bad_subnet(&c, name, &all, b) {
                Some(why) => refused.push(format!("node {name}: pod subnet {c}: {why}")),
                None => {
                    want.insert(Route { cidr: c, via }, name.clone());
                }
            }
        }
    }
    (want, waiting, refused)
}

/// Why a node's gateway is not one to route through.
fn bad_gateway(via: Ipv4Addr, b: &Bounds) -> Option<String> {
    if b.host.iter().any(|(a, _)| *a == via) {
        return Some("an address of this host".into());
    }
    if !b.host.iter().any(|(_, net)| net.contains(via)) {
        return Some("not on a network of this host".into());
    }
    None
}

/// Why a node's pod subnet is not one to route.
fn bad_subnet(cidr: &str, name: &str, all: &[(&String, Net)], b: &Bounds) -> Option<String> {
    let Some(net) = Net::parse(cidr) else {
        return Some("not a network address".into());
    };
    if !b.cluster.covers(net) {
        return Some(format!(
            "outside the cluster CIDR {}/{}",
            Ipv4Addr::from(b.cluster.addr),
            b.cluster.prefix
        ));
    }
    if let Some((_, h)) = b.host.iter().find(|(_, h)| h.overlaps(net)) {
        return Some(format!(
            "overlaps this host's network {}/{}",
            Ipv4Addr::from(h.addr),
            h.prefix
        ));
    }
    if let Some((other, _)) = all
        .iter()
        .find(|(other, n)| other.as_str() != name && n.overlaps(net))
    {
        return Some(format!("overlaps node {other}'s"));
    }
    None
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
    cluster: Net,
    said: &mut (Vec<String>, Vec<String>),
) -> Result<(), String> {
    let b = Bounds {
        cluster,
        host: host_networks()?,
    };
    let (want, waiting, refused) = wanted(nodes, me, &b);
    if refused != said.1 {
        for r in &refused {
            eprintln!("refused: {r}");
        }
        said.1 = refused;
    }
    let waiting_said = &mut said.0;
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

/// This host's IPv4 addresses with their networks (`ip -4 -o addr show`), loopback aside.
pub fn host_networks() -> Result<Vec<(Ipv4Addr, Net)>, String> {
    ip(&["-4", "-o", "addr", "show"]).map(|t| parse_addrs(&t))
}

/// `2: eth0    inet 198.18.0.1/24 brd ... scope global eth0` lines: address and network.
pub fn parse_addrs(text: &str) -> Vec<(Ipv4Addr, Net)> {
    text.lines()
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            let at = w.iter().position(|x| *x == "inet")?;
            let (a, p) = w.get(at + 1)?.split_once('/')?;
            let addr: Ipv4Addr = a.parse().ok()?;
            let prefix: u8 = p.parse().ok().filter(|p| *p <= 32)?;
            let mut net = Net { addr: 0, prefix };
            net.addr = u32::from(addr) & net.mask();
            (!addr.is_loopback()).then_some((addr, net))
        })
        .collect()
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
    let mut said = (Vec::new(), Vec::new());
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
        return sync(&nodes, &a.node.name, a.cluster_cidr, &mut said);
    }
    println!(
        "routing the pod subnets of the nodes other than {} (proto {PROTO})",
        a.node.name
    );
    api.list_watch("/api/v1/nodes", |nodes, _| {
        sync(nodes, &a.node.name, a.cluster_cidr, &mut said).map(|()| false)
    })
}

#[cfg(test)]
mod tests;
