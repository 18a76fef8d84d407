use serde_json::json;

use super::*;

fn node(name: &str, ip: Option<&str>, cidrs: &[&str]) -> (String, Value) {
    let mut n = json!({"metadata": {"name": name}, "spec": {}, "status": {"addresses": [
        {"type": "Hostname", "address": name}]}});
    if let Some(ip) = ip {
        n["status"]["addresses"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "InternalIP", "address": ip}));
    }
    if let Some(c) = cidrs.first() {
        n["spec"]["podCIDR"] = json!(c);
        n["spec"]["podCIDRs"] = json!(cidrs);
    }
    (name.to_string(), n)
}

/// This host on 198.18.0.0/24 (and its bridge's 10.244.0.1/24), the cluster on 10.244.0.0/16.
fn bounds() -> Bounds {
    Bounds {
        cluster: Net::parse("10.244.0.0/16").unwrap(),
        host: parse_addrs(
            "1: lo    inet 127.0.0.1/8 scope host lo\n\
             2: br0    inet 198.18.0.1/24 brd 198.18.0.255 scope global br0\n\
             3: cni0    inet 10.244.0.1/24 brd 10.244.0.255 scope global cni0\n",
        ),
    }
}

fn r(cidr: &str, via: &str) -> Route {
    Route {
        cidr: cidr.into(),
        via: via.parse().unwrap(),
    }
}

#[test]
fn every_other_node_s_ipv4_pod_subnets_via_its_internal_ip() {
    let nodes: BTreeMap<String, Value> = [
        node("cp", Some("198.18.0.1"), &["10.244.0.0/24"]),
        node("w1", Some("198.18.0.11"), &["10.244.1.0/24", "fd00:1::/64"]),
        node("w2", Some("198.18.0.12"), &[]),
        node("w3", None, &["10.244.3.0/24"]),
    ]
    .into_iter()
    .collect();
    let (want, waiting, refused) = wanted(&nodes, "cp", &bounds());
    assert!(refused.is_empty(), "{refused:?}");
    assert_eq!(
        want.into_iter().collect::<Vec<_>>(),
        [(r("10.244.1.0/24", "198.18.0.11"), "w1".into())]
    );
    assert_eq!(waiting, ["w2", "w3"]);
    // From w1: its own host's networks.
    let w1 = Bounds {
        host: parse_addrs(
            "2: eth0    inet 198.18.0.11/24 scope global eth0\n3: cni0    inet 10.244.1.1/24 scope global cni0\n",
        ),
        ..bounds()
    };
    let (want, _, _) = wanted(&nodes, "w1", &w1);
    assert_eq!(
        want.keys().cloned().collect::<Vec<_>>(),
        [r("10.244.0.0/24", "198.18.0.1")]
    );
}

#[test]
fn the_plan_adds_what_is_missing_and_removes_what_no_node_has() {
    let have = parse_routes(
        "10.244.1.0/24 via 198.18.0.11 dev br0 \n10.244.2.0/24 via 198.18.0.12 dev br0 \n",
    );
    assert_eq!(have.len(), 2);
    // w1 moved to another address; w2 left; w3 came.
    let want: BTreeMap<Route, String> = [
        (r("10.244.1.0/24", "198.18.0.21"), "w1".to_string()),
        (r("10.244.3.0/24", "198.18.0.13"), "w3".to_string()),
    ]
    .into_iter()
    .collect();
    let (add, del) = plan(&have, &want);
    assert_eq!(
        add,
        [
            r("10.244.1.0/24", "198.18.0.21"),
            r("10.244.3.0/24", "198.18.0.13")
        ]
    );
    assert_eq!(
        del,
        [
            r("10.244.1.0/24", "198.18.0.11"),
            r("10.244.2.0/24", "198.18.0.12")
        ]
    );
    let (add, del) = plan(&want.keys().cloned().collect(), &want);
    assert!(add.is_empty() && del.is_empty());
    assert!(parse_routes("blackhole 10.0.0.0/8 \ngarbage\n").is_empty());
}

/// A Node object is its kubelet's to write: what it claims is routed only inside the cluster
/// CIDR, off this host's networks and the other nodes' subnets, via a neighbour.
#[test]
fn hostile_node_objects_do_not_reroute_the_host() {
    let nodes: BTreeMap<String, Value> = [
        node("cp", Some("198.18.0.1"), &["10.244.0.0/24"]),
        node("good", Some("198.18.0.11"), &["10.244.1.0/24"]),
        node("default", Some("198.18.0.12"), &["0.0.0.0/0"]),
        node("apiserver", Some("198.18.0.13"), &["198.18.0.1/32"]),
        node("all-pods", Some("198.18.0.14"), &["10.244.0.0/16"]),
        node("twin", Some("198.18.0.15"), &["10.244.1.128/25"]),
        node("far", Some("192.0.2.7"), &["10.244.5.0/24"]),
        node("me-as-gw", Some("198.18.0.1"), &["10.244.6.0/24"]),
        node("junk", Some("198.18.0.16"), &["10.244.7.5/24"]),
    ]
    .into_iter()
    .collect();
    let (want, _, refused) = wanted(&nodes, "cp", &bounds());
    // "good" and "twin" overlap: neither is routed (which one is lying cannot be told).
    assert!(want.is_empty(), "{want:?}");
    let said = refused.join("\n");
    for (node, why) in [
        ("default", "outside the cluster CIDR 10.244.0.0/16"),
        ("apiserver", "outside the cluster CIDR"),
        ("all-pods", "overlaps this host's network 10.244.0.0/24"),
        ("good", "overlaps node twin's"),
        ("twin", "overlaps node good's"),
        ("far", "not on a network of this host"),
        ("me-as-gw", "an address of this host"),
        ("junk", "not a network address"),
    ] {
        assert!(
            refused
                .iter()
                .any(|r| r.starts_with(&format!("node {node}:")) && r.contains(why)),
            "{node}: {why}\n{said}"
        );
    }
    assert_eq!(
        parse_addrs("2: eth0    inet 198.18.0.9/24 brd 198.18.0.255 scope global eth0\n")[0],
        (
            "198.18.0.9".parse().unwrap(),
            Net::parse("198.18.0.0/24").unwrap()
        )
    );
}
