//! Fault injection: a migration of session "s" from milan (source) to cloud
//! (destination), whose proprietary node is m1, fails at every step of the
//! protocol, with the source, the destination and the proprietary node
//! killed in turn. After the node restarts and recovery runs, every
//! acknowledged write is on exactly one node, a client of the proprietary
//! node reaches it in at most two redirects, no migration is left
//! undecided, and no stub is left after garbage collection.

mod common;

use std::time::Duration;

use common::Cluster;
use offloading_manager::faults::Step;
use reqwest::StatusCode;

const WRITES: u64 = 5;

/// Where the failure happens and who dies.
struct Scenario {
    /// The node whose manager fails at `step` (and is then killed).
    failing: &'static str,
    step: Option<Step>,
    /// A node that is down during the migration (cut off), then restarted.
    down_during: Option<&'static str>,
    /// A node cut off at a step of the destination, then restarted.
    cut_off_at: Option<(Step, &'static str)>,
    /// Where the session must end up.
    expected_holder: &'static str,
}

async fn run(scenario: Scenario) {
    let cluster = Cluster::start().await;
    cluster.session_at_milan("s", WRITES).await;

    if let Some(step) = scenario.step {
        cluster.node(scenario.failing).manager().faults.arm(step);
    }
    if let Some(down) = scenario.down_during {
        cluster.node(down).kill();
    }
    if let Some((step, victim)) = scenario.cut_off_at {
        let cut_off = cluster.node(victim).cut_off_handle();
        cluster
            .node("cloud")
            .manager()
            .faults
            .arm_with(step, move || {
                cut_off.store(true, std::sync::atomic::Ordering::SeqCst);
            });
    }
    let attempt = cluster.force_offload("milan", "s").await;
    let status = attempt.status();
    let body = attempt.text().await.unwrap();
    eprintln!("offload attempt: {status} {body}");

    // The failing node dies with whatever it had stored, then comes back.
    if scenario.step.is_some() {
        cluster.node(scenario.failing).kill();
        cluster.node(scenario.failing).restart().await;
    }
    if let Some(down) = scenario.down_during {
        cluster.node(down).restart().await;
    }
    if let Some((_, victim)) = scenario.cut_off_at {
        cluster.node(victim).kill();
        cluster.node(victim).restart().await;
    }
    // Recovery, as the cron connector's next offload-trigger runs would.
    for _ in 0..2 {
        for node in ["cloud", "milan", "m1"] {
            let trigger = cluster
                .client
                .post(format!(
                    "{}/function/session-offloading-manager",
                    cluster.node(node).gateway
                ))
                .query(&[("command", "offload-trigger")])
                .send()
                .await
                .unwrap();
            assert_eq!(trigger.status(), 200, "offload-trigger on {node}");
        }
    }

    cluster.assert_indexes_exact().await;
    // Every acknowledged write, on exactly one node.
    assert_eq!(
        cluster.holders("s"),
        [(scenario.expected_holder.to_string(), WRITES)],
        "after {:?}",
        scenario.step
    );
    for node in ["cloud", "milan", "m1"] {
        assert!(
            !cluster.node(node).meta("s").contains_key("migration"),
            "a migration is still undecided on {node}"
        );
    }
    // Reached from the proprietary node within two redirects, and writable.
    let (status, body, redirects) = cluster.increment("m1", "s", 2).await;
    assert_eq!((status, body), (StatusCode::OK, (WRITES + 1).to_string()));
    assert!(redirects <= 2);
    assert_eq!(
        cluster.holders("s"),
        [(scenario.expected_holder.to_string(), WRITES + 1)]
    );

    // Garbage collection leaves the session and its tracking record, no stub.
    for node in ["cloud", "milan", "m1"] {
        cluster
            .node(node)
            .set_config("sessions_data_expiration_time", "1");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster.increment("m1", "s", 2).await; // the session is in use
    for node in ["cloud", "milan", "m1"] {
        let collected = cluster
            .client
            .post(format!(
                "{}/function/session-offloading-manager",
                cluster.node(node).gateway
            ))
            .query(&[
                ("command", "garbage-collector"),
                ("deletePolicy", "expiration"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(
            collected.text().await.unwrap(),
            "0",
            "a live session was collected on {node}"
        );
    }
    for node in ["cloud", "milan", "m1"] {
        let meta = cluster.node(node).meta("s");
        let is_holder = node == scenario.expected_holder;
        let is_proprietary = node == "m1";
        assert_eq!(
            !meta.is_empty(),
            is_holder || is_proprietary,
            "metadata on {node}: {meta:?}"
        );
    }
    cluster.assert_indexes_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_dies_after_fencing() {
    run(Scenario {
        failing: "milan",
        step: Some(Step::SourceAfterFence),
        down_during: None,
        cut_off_at: None,
        expected_holder: "milan",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_dies_before_deleting_its_copy() {
    run(Scenario {
        failing: "milan",
        step: Some(Step::SourceBeforeFinalize),
        down_during: None,
        cut_off_at: None,
        expected_holder: "cloud",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn source_is_cut_off_during_the_migration() {
    // The source goes down just as the destination pulls: nothing moves.
    run(Scenario {
        failing: "milan",
        step: None,
        down_during: None,
        cut_off_at: Some((Step::DestinationBeforeExport, "milan")),
        expected_holder: "milan",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_dies_after_the_export() {
    run(Scenario {
        failing: "cloud",
        step: Some(Step::DestinationAfterExport),
        down_during: None,
        cut_off_at: None,
        expected_holder: "milan",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_dies_after_storing_the_copy() {
    run(Scenario {
        failing: "cloud",
        step: Some(Step::DestinationAfterImport),
        down_during: None,
        cut_off_at: None,
        expected_holder: "milan",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_dies_after_the_decision() {
    run(Scenario {
        failing: "cloud",
        step: Some(Step::DestinationAfterDecision),
        down_during: None,
        cut_off_at: None,
        expected_holder: "cloud",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destination_is_cut_off_during_the_migration() {
    run(Scenario {
        failing: "cloud",
        step: None,
        down_during: Some("cloud"),
        cut_off_at: None,
        expected_holder: "milan",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proprietary_node_dies_after_deciding() {
    run(Scenario {
        failing: "m1",
        step: Some(Step::ProprietaryAfterDecision),
        down_during: None,
        cut_off_at: None,
        expected_holder: "cloud",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proprietary_node_goes_down_just_before_the_decision() {
    run(Scenario {
        failing: "m1",
        step: None,
        down_during: None,
        cut_off_at: Some((Step::DestinationAfterImport, "m1")),
        expected_holder: "milan",
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proprietary_node_is_cut_off_during_the_migration() {
    run(Scenario {
        failing: "m1",
        step: None,
        down_during: Some("m1"),
        cut_off_at: None,
        expected_holder: "milan",
    })
    .await;
}
