//! Scale: a deploy to 1,000 gateways (real HTTP servers, all in this test
//! process) and a check of a 100,000-node hierarchy file. The times are
//! printed, never asserted on; `benches/scale.rs` measures the same in
//! release mode.

mod common;

use std::sync::Arc;
use std::time::Instant;

use common::*;

#[test]
fn deploys_to_a_thousand_gateways() {
    let in_flight = Arc::new(InFlight::default());
    let (gateways, dir) = accepting_project(1000, &in_flight);
    let mut command = deployer(&dir);
    command
        .args(["deploy", "cart", "hierarchy.json"])
        .env("EDGE_NODE_TOKEN", "tok");
    let started = Instant::now();
    let output = run(&mut command);
    let elapsed = started.elapsed();
    let out = stdout(&output);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(out.contains("1000 nodes: 1000 ok, 0 failed"), "{out}");
    for (i, gateway) in gateways.iter().enumerate() {
        let functions = gateway.functions();
        assert_eq!(
            functions["cart"]["envVars"]["EDGE_LOCATION"],
            format!("edge-{i}")
        );
    }
    assert!(
        in_flight.max() <= 16,
        "default concurrency exceeded: {}",
        in_flight.max()
    );
    eprintln!("deploy to 1,000 gateways (debug build): {elapsed:.2?}");
}

#[test]
fn checks_a_hundred_thousand_nodes() {
    let dir = test_support::tempdir();
    // 1 cloud + 100 regions + 100 × 999 edges = 100,001 nodes.
    std::fs::write(dir.join("big.json"), generated_hierarchy(100, 999)).unwrap();
    let mut command = deployer(&dir);
    command.args(["check-infrastructure", "big.json"]);
    let started = Instant::now();
    let output = run(&mut command);
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "big.json: OK, 100001 nodes on 3 levels (cloud: 1, region: 100, edge: 99900)\n"
    );
    eprintln!("check-infrastructure of 100,001 nodes (debug build): {elapsed:.2?}");
}
