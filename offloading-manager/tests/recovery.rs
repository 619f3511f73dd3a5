//! Prompt recovery: a migration of session "s" from milan (source) to cloud
//! (destination), whose proprietary node is m1, is interrupted at each step
//! of the protocol by the crash of the participant at that step, which then
//! restarts at once. Nobody triggers recovery: the managers settle what is
//! due by themselves. A client keeps writing through m1 meanwhile; the
//! write outage, from the start of the migration to the first acknowledged
//! write after it, is printed and must stay within the recovery delay plus
//! five seconds. Afterwards every acknowledged write is on exactly one node
//! and no migration is left undecided.

mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use offloading_manager::faults::Step;
use reqwest::StatusCode;

const WRITES: u64 = 3;
const RECOVERY: Duration = Duration::from_secs(2);

async fn outage_after_crash(failing: &str, step: Step) {
    let cluster = Cluster::start_with_recovery(RECOVERY).await;
    cluster.session_at_milan("s", WRITES).await;

    cluster.node(failing).manager().faults.arm(step);
    let started = Instant::now();
    let attempt = cluster.force_offload("milan", "s").await;
    eprintln!("{step:?}: offload attempt answered {}", attempt.status());
    // The participant crashes at that step and comes back at once.
    cluster.node(failing).kill();
    cluster.node(failing).restart().await;

    let deadline = started + RECOVERY + Duration::from_secs(30);
    let outage = loop {
        let (status, body, _) = cluster.increment("m1", "s", 2).await;
        if status == StatusCode::OK {
            assert_eq!(body, (WRITES + 1).to_string());
            break started.elapsed();
        }
        assert!(
            Instant::now() < deadline,
            "{step:?}: still {status} {body} after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!(
        "crash of {failing} at {step:?}: writes were refused for {:.2} s (recovery delay {} s)",
        outage.as_secs_f64(),
        RECOVERY.as_secs()
    );
    assert!(
        outage <= RECOVERY + Duration::from_secs(5),
        "{step:?}: a write outage of {outage:?}"
    );
    // The other side of the migration settles too, by itself.
    let deadline = Instant::now() + RECOVERY + Duration::from_secs(5);
    while ["cloud", "milan", "m1"]
        .iter()
        .any(|node| cluster.node(node).meta("s").contains_key("migration"))
    {
        assert!(
            Instant::now() < deadline,
            "{step:?}: a migration is still undecided"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let holders = cluster.holders("s");
    assert_eq!(holders.len(), 1, "{step:?}: {holders:?}");
    assert_eq!(holders[0].1, WRITES + 1, "{step:?}: {holders:?}");
    cluster.assert_indexes_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_crashes_after_fencing() {
    outage_after_crash("milan", Step::SourceAfterFence).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_crashes_before_deleting_its_copy() {
    outage_after_crash("milan", Step::SourceBeforeFinalize).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_crashes_before_the_export() {
    outage_after_crash("cloud", Step::DestinationBeforeExport).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_crashes_after_the_export() {
    outage_after_crash("cloud", Step::DestinationAfterExport).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_crashes_after_storing_the_copy() {
    outage_after_crash("cloud", Step::DestinationAfterImport).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_crashes_after_the_decision() {
    outage_after_crash("cloud", Step::DestinationAfterDecision).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proprietary_node_crashes_after_deciding() {
    outage_after_crash("m1", Step::ProprietaryAfterDecision).await;
}
