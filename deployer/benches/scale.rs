//! Scale benchmark of the deployer binary: a deploy to 1,000 fake OpenFaaS
//! gateways (real HTTP servers in this process, default concurrency) and
//! `check-infrastructure` of a generated 100,001-node hierarchy file.
//! Prints the times; run with `cargo bench -p deployer --bench scale`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;

fn main() {
    let deploy = deploy_to_gateways(1000);
    let check = check_nodes(100, 999);
    println!(
        "deploy to 1,000 gateways: {:.0} ms",
        deploy.as_secs_f64() * 1e3
    );
    println!(
        "check-infrastructure of 100,001 nodes: {:.0} ms",
        check.as_secs_f64() * 1e3
    );
}

fn deploy_to_gateways(count: usize) -> Duration {
    let in_flight = Arc::new(InFlight::default());
    let (gateways, dir) = accepting_project(count, &in_flight);
    let mut command = deployer(&dir);
    command
        .args(["deploy", "cart", "hierarchy.json"])
        .env("EDGE_NODE_TOKEN", "bench-token");
    let started = Instant::now();
    let output = run(&mut command);
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(gateways.iter().all(|g| g.functions().contains_key("cart")));
    let _ = std::fs::remove_dir_all(&dir);
    elapsed
}

fn check_nodes(regions: usize, edges_per_region: usize) -> Duration {
    let dir = test_support::tempdir();
    std::fs::write(
        dir.join("big.json"),
        generated_hierarchy(regions, edges_per_region),
    )
    .unwrap();
    let mut command = deployer(&dir);
    command.args(["check-infrastructure", "big.json"]);
    let started = Instant::now();
    let output = run(&mut command);
    let elapsed = started.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let _ = std::fs::remove_dir_all(&dir);
    elapsed
}
