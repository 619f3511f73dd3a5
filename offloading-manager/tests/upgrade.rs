//! A node whose Redis holds sessions written by the previous release (no
//! indexes, the old field names and request-id keys) gets a new manager:
//! it converts and indexes them once, while calls on them are served, and
//! every decision then works on them.

mod common;

use std::time::Duration;

use common::Cluster;
use reqwest::StatusCode;
use test_support::layout_v1;

const SESSIONS: i64 = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_of_the_previous_release_is_indexed_once_while_it_serves() {
    let cluster = Cluster::start().await;
    let m1 = cluster.node("m1");
    let store = m1.store();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.layout_version().await.unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    m1.kill();
    // A Redis the new release never saw (its manager, started with the
    // cluster, found it empty and recorded the layout).
    let _: () = redis::cmd("DEL")
        .arg(edge_store::layout::LAYOUT_KEY)
        .query(&mut m1.connection())
        .unwrap();
    // The previous release's SDK wrote these, three calls each; the last
    // call of each was a counter of 3.
    let mut redis = m1.connection();
    let at = layout_v1::now_ms() - 3_600_000;
    for i in 0..SESSIONS {
        for call in 0..3 {
            let id = uuid::Uuid::new_v4().to_string();
            let value = format!("s{}", call + 1);
            layout_v1::blocking_call(
                &mut redis,
                "m1",
                &format!("old-{i}"),
                &id,
                &[("counter", value.as_bytes())],
                Some(b"200 text/plain; charset=utf-8\nok"),
                at + i,
            );
        }
    }
    assert_eq!(store.layout_version().await.unwrap(), None);

    // The new manager starts: it indexes in the background; calls go on.
    m1.restart().await;
    let mut served_during_upgrade = 0;
    for i in (0..SESSIONS).rev().step_by(97) {
        let (status, body, _) = cluster.increment("m1", &format!("old-{i}"), 0).await;
        assert_eq!((status, body.as_str()), (StatusCode::OK, "4"), "old-{i}");
        if store.layout_version().await.unwrap().is_none() {
            served_during_upgrade += 1;
        }
    }
    eprintln!("{served_during_upgrade} calls were served before the upgrade finished");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while store.layout_version().await.unwrap() != Some(2) {
        assert!(
            std::time::Instant::now() < deadline,
            "the upgrade did not finish"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (held, migrating, stubs) = store.index_sizes().await.unwrap();
    assert_eq!((held, migrating, stubs), (SESSIONS as u64, 0, 0));
    cluster.assert_indexes_exact().await;

    // Decisions now come from the indexes: the least recently used of the
    // old sessions goes first…
    m1.set_config("offload_top_threshold", "1");
    m1.set_config("offload_bottom_threshold", "1");
    let freed = cluster
        .command("m1", &[("command", "offload-trigger")], &[])
        .await
        .text()
        .await
        .unwrap();
    assert!(freed.parse::<i64>().unwrap() > 0, "{freed}");
    assert_eq!(cluster.holders("old-0"), [("milan".to_string(), 3)]);
    m1.set_config("offload_top_threshold", "999999999999");
    // …and the collector deletes the idle ones.
    m1.set_config("sessions_data_expiration_time", "1800");
    let collected = cluster
        .command(
            "m1",
            &[
                ("command", "garbage-collector"),
                ("deletePolicy", "expiration"),
            ],
            &[],
        )
        .await
        .text()
        .await
        .unwrap();
    let touched = (0..SESSIONS).rev().step_by(97).count() as u64;
    let offloaded = 100;
    assert_eq!(
        collected.parse::<u64>().unwrap(),
        SESSIONS as u64 - touched - offloaded
    );
    cluster.assert_indexes_exact().await;
}
