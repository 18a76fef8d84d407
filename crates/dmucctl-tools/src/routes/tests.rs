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
    let (want, waiting) = wanted(&nodes, "cp");
    assert_eq!(
        want.into_iter().collect::<Vec<_>>(),
        [(r("10.244.1.0/24", "198.18.0.11"), "w1".into())]
    );
    assert_eq!(waiting, ["w2", "w3"]);
    let (want, _) = wanted(&nodes, "w1");
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
