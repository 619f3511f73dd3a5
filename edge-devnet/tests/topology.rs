//! The devnet's emulated network (issue 8): traffic between two nodes, and
//! from a client to a node, crosses exactly the links of the tree path
//! between them, pays their latencies, and is counted on those links only;
//! each node's functions see the others through their own proxies.

mod link_measure;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use edge_devnet::topology::{LinkPlan, LinkStatus, NodeAddress, Topology};
use edge_sdk::hierarchy::Infrastructure;
use link_measure::{echo_server, median_rtt};

const HIERARCHY: &str = r#"{
  "areaTypesIdentifiers": ["cloud", "country", "city"],
  "hierarchy": [{ "areaName": "cloud", "areas": [
    { "areaName": "italy", "areas": [
      { "areaName": "milan", "areas": [] },
      { "areaName": "rome", "areas": [] } ] } ] }]
}"#;

/// Every node's gateway and Redis are echo servers.
async fn addresses(infrastructure: &Infrastructure) -> Vec<NodeAddress> {
    let mut nodes = Vec::new();
    for node in infrastructure.nodes() {
        nodes.push(NodeAddress {
            name: node.name().to_string(),
            gateway_port: echo_server().await.port(),
            redis_port: echo_server().await.port(),
        });
    }
    nodes
}

fn plan(args: &[&str], access: Option<&str>) -> LinkPlan {
    let mut plan = LinkPlan::default();
    for arg in args {
        plan.add_link(arg).unwrap();
    }
    plan.access = access.map(|a| a.parse().unwrap());
    plan
}

fn traffic(links: &[LinkStatus]) -> HashMap<(String, String), (u64, u64)> {
    links
        .iter()
        .map(|l| ((l.node.clone(), l.peer.clone()), (l.bytes_up, l.bytes_down)))
        .collect()
}

fn key(node: &str, peer: &str) -> (String, String) {
    (node.to_string(), peer.to_string())
}

fn address(url: &str) -> SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

#[tokio::test]
async fn node_to_node_traffic_crosses_the_tree_path_and_is_counted_there() {
    let infrastructure = Infrastructure::from_json(HIERARCHY).unwrap();
    let nodes = addresses(&infrastructure).await;
    // milan–italy 10 ms, rome–italy 5 ms, italy–cloud 30 ms (by level).
    let plan = plan(&["30ms", "city=5ms", "milan=10ms"], Some("2ms"));
    let topology = Topology::start(&infrastructure, &nodes, &plan)
        .await
        .unwrap();

    // What a function on milan is given: every other node through a proxy.
    let text = infrastructure.to_json();
    let seen = Infrastructure::from_json(&topology.rewrite_infrastructure("milan", &text)).unwrap();
    assert_eq!(
        seen.gateway("milan"),
        None,
        "milan's own entry is left alone"
    );
    let rome = address(seen.gateway("rome").unwrap());
    let rome_redis = seen.node("rome").unwrap().main_location.redis_port.unwrap();
    let rome_real = nodes.iter().find(|n| n.name == "rome").unwrap();
    assert_ne!(rome.port(), rome_real.gateway_port);
    assert_ne!(rome_redis, rome_real.redis_port);

    // milan → rome crosses milan–italy (10 ms) and italy–rome (5 ms): a
    // round trip is at least 30 ms, and only those two links count bytes.
    let rtt = median_rtt(rome, 5).await;
    assert!(rtt >= Duration::from_millis(30), "milan → rome RTT {rtt:?}");
    let counted = traffic(&topology.links());
    let (up, down) = counted[&key("milan", "italy")];
    assert!(up >= 5 * 8 && down >= 5 * 8, "milan–italy {up}/{down}");
    // Towards rome the italy–rome link is crossed downwards.
    assert_eq!(counted[&key("rome", "italy")], (down, up));
    assert_eq!(counted[&key("italy", "cloud")], (0, 0));
    for node in ["cloud", "italy", "milan", "rome"] {
        assert_eq!(
            counted[&key(node, "clients")],
            (0, 0),
            "{node}'s access link"
        );
    }
    // The profiles chosen by name, by level and by default.
    let profiles: HashMap<_, _> = topology
        .links()
        .into_iter()
        .map(|l| ((l.node, l.peer), l.up))
        .collect();
    assert_eq!(profiles[&key("milan", "italy")], "10ms");
    assert_eq!(profiles[&key("rome", "italy")], "5ms");
    assert_eq!(profiles[&key("italy", "cloud")], "30ms");
    assert_eq!(profiles[&key("cloud", "clients")], "2ms");
}

#[tokio::test]
async fn a_client_reaches_each_node_through_its_access_link_and_the_tree_path() {
    let infrastructure = Infrastructure::from_json(HIERARCHY).unwrap();
    let nodes = addresses(&infrastructure).await;
    let plan = plan(&["20ms"], Some("5ms"));
    let topology = Topology::start(&infrastructure, &nodes, &plan)
        .await
        .unwrap();
    let gateways = topology.client_gateways("milan");
    assert_eq!(gateways.len(), 4, "{gateways:?}");

    // Its own node: the access link only.
    let local = median_rtt(address(&gateways["milan"]), 5).await;
    assert!(
        local >= Duration::from_millis(10),
        "client → milan {local:?}"
    );
    let before = traffic(&topology.links());
    assert_eq!(before[&key("milan", "italy")], (0, 0));
    let (to_node, to_client) = before[&key("milan", "clients")];
    assert!(to_node > 0 && to_node == to_client, "{to_node}/{to_client}");

    // The cloud: access (5 ms) + milan–italy + italy–cloud (20 ms each).
    let far = median_rtt(address(&gateways["cloud"]), 5).await;
    assert!(far >= Duration::from_millis(90), "client → cloud {far:?}");
    let after = traffic(&topology.links());
    assert!(after[&key("milan", "italy")].0 > 0);
    assert!(after[&key("italy", "cloud")].0 > 0);
    assert_eq!(after[&key("rome", "italy")], (0, 0));
    assert_eq!(after[&key("rome", "clients")], (0, 0));
}

#[tokio::test]
async fn bad_link_options_name_the_problem() {
    let infrastructure = Infrastructure::from_json(HIERARCHY).unwrap();
    let mut plan = LinkPlan::default();
    let error = plan.add_link("milan=fast").unwrap_err();
    assert!(
        format!("{error:#}").contains("--link milan=fast"),
        "{error:#}"
    );
    plan.add_link("naples=5ms").unwrap();
    let error = plan.check(&infrastructure).unwrap_err().to_string();
    assert!(error.contains("naples"), "{error}");
    let mut plan = LinkPlan::default();
    plan.add_link("cloud=5ms").unwrap();
    let error = plan.check(&infrastructure).unwrap_err().to_string();
    assert!(error.contains("root has no parent link"), "{error}");
}
