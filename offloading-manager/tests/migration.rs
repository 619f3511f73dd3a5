//! Offload, onload, tracking and garbage collection across three nodes
//! (cloud → milan → m1), each with its own redis-server.

mod common;

use common::{Cluster, MANAGER};
use reqwest::StatusCode;
use serde_json::Value;

async fn json(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offload_one_level_then_past_a_rejecting_parent_then_onload_back() {
    let cluster = Cluster::start().await;
    for expected in 1..=3 {
        assert_eq!(
            cluster.increment("m1", "alice", 0).await,
            (StatusCode::OK, expected.to_string(), 0)
        );
    }

    // Offload one level: m1 → milan.
    let answer = cluster.force_offload("m1", "alice").await;
    assert_eq!(answer.status(), 200);
    let moved = json(answer).await;
    assert_eq!(moved["movedTo"], "milan");
    assert_eq!(cluster.holders("alice"), [("milan".to_string(), 3)]);
    let m1 = cluster.node("m1").meta("alice");
    assert_eq!(
        (m1["currentLocation"].as_str(), m1["epoch"].as_str()),
        ("milan", "1")
    );
    assert!(!m1.contains_key("migration"));
    // A client of the proprietary node is redirected once, and the writes go on.
    assert_eq!(
        cluster.increment("m1", "alice", 2).await,
        (StatusCode::OK, "4".to_string(), 1)
    );
    // Read-only calls follow the same way.
    let read = cluster
        .client
        .get(format!("{}/function/reader", cluster.node("m1").gateway))
        .header("X-session", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 307);
    assert_eq!(read.headers()["x-session-location"], "milan");

    // The parent rejects: the offer goes on to the grandparent.
    let answer = cluster
        .command(
            "milan",
            &[("command", "set-offload-status"), ("status", "reject")],
            &[],
        )
        .await;
    assert_eq!(answer.status(), 200);
    for _ in 0..2 {
        cluster.increment("m1", "bob", 0).await;
    }
    let moved = json(cluster.force_offload("m1", "bob").await).await;
    assert_eq!(moved["movedTo"], "cloud");
    assert_eq!(cluster.holders("bob"), [("cloud".to_string(), 2)]);
    assert_eq!(
        cluster.increment("m1", "bob", 2).await,
        (StatusCode::OK, "3".to_string(), 1)
    );

    // Onload: m1 asks milan, which has alice (proprietary m1, in m1's subtree).
    let onloaded = cluster
        .command("m1", &[("command", "force-onload")], &[])
        .await;
    assert_eq!(onloaded.status(), 200);
    assert_eq!(json(onloaded).await["onloadedTo"], "m1");
    assert_eq!(cluster.holders("alice"), [("m1".to_string(), 4)]);
    assert_eq!(
        cluster.increment("m1", "alice", 0).await,
        (StatusCode::OK, "5".to_string(), 0)
    );
    // milan keeps a stub pointing back at m1.
    assert_eq!(cluster.node("milan").meta("alice")["currentLocation"], "m1");
    // The next onload comes from above milan: bob, from the cloud.
    let onloaded = cluster
        .command("m1", &[("command", "force-onload")], &[])
        .await;
    assert_eq!(onloaded.status(), 200);
    assert_eq!(cluster.holders("bob"), [("m1".to_string(), 3)]);
    // Nothing left above whose proprietary node is in m1's subtree: 400.
    let none = cluster
        .command("m1", &[("command", "force-onload")], &[])
        .await;
    assert_eq!(none.status(), 400);
    assert!(
        json(none).await["message"]
            .as_str()
            .unwrap()
            .contains("no session available")
    );
    cluster.assert_indexes_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_policy_offloads_least_recently_used_first_and_onloads_when_low() {
    let cluster = Cluster::start().await;
    cluster.increment("m1", "old", 0).await;
    cluster.increment("m1", "new", 0).await;
    let m1 = cluster.node("m1");
    // A megabyte each, so that one move is far above the measurement noise.
    for session in ["old", "new"] {
        let keys = edge_store::SessionKeys::new(session);
        let mut value = vec![b'b'];
        value.extend(vec![1u8; 1024 * 1024]);
        let _: () =
            redis::Commands::hset(&mut m1.connection(), keys.data(), "megabyte", value).unwrap();
    }
    let used = cluster.node("m1").manager().used_memory().await.unwrap();
    // Over the top threshold; moving one session brings it under the bottom one.
    m1.set_config("offload_top_threshold", &(used - 1).to_string());
    m1.set_config("offload_bottom_threshold", &(used - 512 * 1024).to_string());
    let freed = cluster
        .command("m1", &[("command", "offload-trigger")], &[])
        .await;
    assert_eq!(freed.status(), 200);
    let freed: i64 = freed.text().await.unwrap().parse().unwrap();
    assert!(freed > 0, "bytes freed: {freed}");
    assert_eq!(cluster.holders("old"), [("milan".to_string(), 1)]);
    assert_eq!(cluster.holders("new"), [("m1".to_string(), 1)]);

    // Memory low: one onload, answered -1.
    m1.set_config("offload_top_threshold", "999999999999");
    m1.set_config("onload_threshold", "999999999999");
    let onloaded = cluster
        .command("m1", &[("command", "offload-trigger")], &[])
        .await;
    assert_eq!(onloaded.text().await.unwrap(), "-1");
    assert_eq!(cluster.holders("old"), [("m1".to_string(), 1)]);
    // Nothing else to onload: 0.
    let nothing = cluster
        .command("m1", &[("command", "offload-trigger")], &[])
        .await;
    assert_eq!(nothing.text().await.unwrap(), "0");
    cluster.assert_indexes_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_by_expiration_and_forced_including_stubs() {
    let cluster = Cluster::start().await;
    for session in ["idle", "offloaded", "forced"] {
        cluster.increment("m1", session, 0).await;
    }
    let moved = json(cluster.force_offload("m1", "offloaded").await).await;
    assert_eq!(moved["movedTo"], "milan");
    for node in ["cloud", "milan", "m1"] {
        cluster
            .node(node)
            .set_config("sessions_data_expiration_time", "1");
    }
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;

    // milan holds "offloaded": collected there, and its tracking record at m1 too.
    let collected = cluster
        .command(
            "milan",
            &[
                ("command", "garbage-collector"),
                ("deletePolicy", "expiration"),
            ],
            &[],
        )
        .await;
    assert_eq!(collected.text().await.unwrap(), "1");
    assert!(cluster.node("milan").meta("offloaded").is_empty());
    assert!(
        cluster.node("m1").meta("offloaded").is_empty(),
        "the proprietary node's record was left behind"
    );
    // m1 collects its own idle sessions.
    let collected = cluster
        .command(
            "m1",
            &[
                ("command", "garbage-collector"),
                ("deletePolicy", "expiration"),
            ],
            &[],
        )
        .await;
    assert_eq!(collected.text().await.unwrap(), "2");
    assert!(cluster.holders("idle").is_empty());

    // A stub left by an onload is collected where it is.
    for node in ["cloud", "milan", "m1"] {
        cluster
            .node(node)
            .set_config("sessions_data_expiration_time", "86400");
    }
    cluster.increment("m1", "roamer", 0).await;
    cluster.force_offload("m1", "roamer").await;
    cluster.force_offload("milan", "roamer").await;
    assert_eq!(cluster.holders("roamer"), [("cloud".to_string(), 1)]);
    assert_eq!(
        cluster.node("milan").meta("roamer")["currentLocation"],
        "cloud"
    );
    cluster
        .node("milan")
        .set_config("sessions_data_expiration_time", "0");
    let collected = cluster
        .command(
            "milan",
            &[
                ("command", "garbage-collector"),
                ("deletePolicy", "expiration"),
            ],
            &[],
        )
        .await;
    assert_eq!(
        collected.text().await.unwrap(),
        "0",
        "a stub is not a session"
    );
    assert!(
        cluster.node("milan").meta("roamer").is_empty(),
        "the stub at milan was not collected"
    );
    assert_eq!(cluster.increment("m1", "roamer", 2).await.0, StatusCode::OK);

    // Forced: every trace, on every node.
    cluster.increment("m1", "forced2", 0).await;
    cluster.force_offload("m1", "forced2").await;
    let forced = cluster
        .command(
            "cloud",
            &[
                ("command", "garbage-collector"),
                ("deletePolicy", "forced"),
                ("sessionId", "forced2"),
            ],
            &[],
        )
        .await;
    assert_eq!(forced.text().await.unwrap(), "1");
    for node in ["cloud", "milan", "m1"] {
        assert!(
            cluster.node(node).meta("forced2").is_empty(),
            "trace left on {node}"
        );
    }
    assert!(cluster.holders("forced2").is_empty());
    cluster.assert_indexes_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_token_is_required_and_bad_input_is_named() {
    let cluster = Cluster::start().await;
    let url = format!("{}/function/{MANAGER}", cluster.node("m1").gateway);
    for command in [
        "force-offload",
        "force-onload",
        "set-offload-status",
        "offload-session",
        "onload-session",
        "migrate-session",
        "update-session",
        "test-function",
    ] {
        let answer = cluster
            .client
            .post(&url)
            .query(&[("command", command)])
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401, "{command} without the token");
        let answer = cluster
            .client
            .post(&url)
            .query(&[("command", command)])
            .header("x-edge-token", "wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401, "{command} with a wrong token");
    }
    let forced = cluster
        .client
        .post(&url)
        .query(&[
            ("command", "garbage-collector"),
            ("deletePolicy", "forced"),
            ("sessionId", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forced.status(), 401);
    // The cron connector's run (no query string) and its two commands need no token.
    let cron = cluster
        .client
        .post(&url)
        .header("X-Connector", "cron-connector")
        .send()
        .await
        .unwrap();
    assert_eq!(cron.status(), 200);
    assert_eq!(
        json(cron).await,
        serde_json::json!({"offloadTrigger": 0, "garbageCollector": 0})
    );
    let trigger = cluster
        .client
        .post(&url)
        .query(&[("command", "offload-trigger")])
        .send()
        .await
        .unwrap();
    assert_eq!(trigger.status(), 200);
    let gc = cluster
        .client
        .post(&url)
        .query(&[
            ("command", "garbage-collector"),
            ("deletePolicy", "expiration"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(gc.status(), 200);

    // (query, headers, what the message must name)
    type Case<'a> = (Vec<(&'a str, &'a str)>, Vec<(&'a str, &'a str)>, &'a str);
    let cases: Vec<Case> = vec![
        (vec![], vec![], "command"),
        (vec![("command", "nope")], vec![], "nope"),
        (
            vec![("command", "force-offload")],
            vec![],
            "x-forced-session",
        ),
        (vec![("command", "set-offload-status")], vec![], "status"),
        (
            vec![("command", "set-offload-status"), ("status", "maybe")],
            vec![],
            "status",
        ),
        (
            vec![("command", "offload-session")],
            vec![],
            "x-session-token",
        ),
        (
            vec![("command", "offload-session")],
            vec![("x-session-token", "{not json")],
            "x-session-token",
        ),
        (
            vec![("command", "onload-session"), ("action", "get-session")],
            vec![],
            "x-onload-location",
        ),
        (
            vec![("command", "onload-session"), ("action", "dance")],
            vec![("x-onload-location", "m1")],
            "action",
        ),
        (
            vec![("command", "onload-session"), ("action", "release-session")],
            vec![("x-onload-location", "m1")],
            "session",
        ),
        (
            vec![
                ("command", "onload-session"),
                ("action", "release-session"),
                ("session", "s"),
            ],
            vec![("x-onload-location", "m1")],
            "random-value",
        ),
        (vec![("command", "migrate-session")], vec![], "session"),
        (
            vec![
                ("command", "migrate-session"),
                ("session", "s"),
                ("epoch", "zero"),
            ],
            vec![],
            "epoch",
        ),
        (
            vec![("command", "update-session")],
            vec![],
            "x-session-token",
        ),
        (
            vec![("command", "garbage-collector")],
            vec![],
            "deletePolicy",
        ),
        (
            vec![("command", "garbage-collector"), ("deletePolicy", "soon")],
            vec![],
            "deletePolicy",
        ),
        (
            vec![("command", "garbage-collector"), ("deletePolicy", "forced")],
            vec![],
            "sessionId",
        ),
        (vec![("command", "test-function")], vec![], "type"),
        (
            vec![("command", "test-function"), ("type", "session")],
            vec![],
            "value",
        ),
        (
            vec![
                ("command", "test-function"),
                ("type", "weird"),
                ("value", "v"),
            ],
            vec![],
            "type",
        ),
    ];
    for (query, headers, named) in cases {
        let answer = cluster.command("m1", &query, &headers).await;
        assert_eq!(answer.status(), 400, "{query:?} {headers:?}");
        let message = json(answer).await["message"]
            .as_str()
            .unwrap()
            .to_lowercase();
        assert!(
            message.contains(&named.to_lowercase()),
            "{query:?}: {message:?} should name {named}"
        );
    }
    // test-function shows configuration and a session.
    cluster.increment("m1", "shown", 0).await;
    cluster.node("m1").set_config("offloading", "accept");
    let config = json(
        cluster
            .command(
                "m1",
                &[("command", "test-function"), ("type", "configuration")],
                &[],
            )
            .await,
    )
    .await;
    assert_eq!(config["offloading"], "accept");
    let session = json(
        cluster
            .command(
                "m1",
                &[
                    ("command", "test-function"),
                    ("type", "session"),
                    ("value", "shown"),
                ],
                &[],
            )
            .await,
    )
    .await;
    assert_eq!(session["data"]["counter"], "1");
    assert_eq!(session["metadata"]["proprietaryLocation"], "m1");
    let missing = cluster
        .command(
            "m1",
            &[
                ("command", "test-function"),
                ("type", "session"),
                ("value", "ghost"),
            ],
            &[],
        )
        .await;
    assert_eq!(missing.status(), 404);
    cluster.assert_indexes_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_proprietary_node_costs_the_collector_bounded_retries_and_is_cleaned_later() {
    let cluster = Cluster::start().await;
    cluster.increment("m1", "orphan", 0).await;
    cluster.force_offload("m1", "orphan").await;
    cluster.node("m1").kill();
    cluster
        .node("milan")
        .set_config("sessions_data_expiration_time", "1");
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let started = std::time::Instant::now();
    let collected = cluster
        .command(
            "milan",
            &[
                ("command", "garbage-collector"),
                ("deletePolicy", "expiration"),
            ],
            &[],
        )
        .await;
    assert_eq!(collected.text().await.unwrap(), "1");
    assert!(
        started.elapsed() < offloading_manager::PEER_TIMEOUT * 4,
        "the collector waited on the dead node"
    );
    assert!(cluster.holders("orphan").is_empty());
    // Its record at the proprietary node is cleaned by that node's own
    // collector once it is back: the holder it points at has no trace.
    cluster.node("m1").restart().await;
    assert_eq!(
        cluster.node("m1").meta("orphan")["currentLocation"],
        "milan"
    );
    cluster
        .node("m1")
        .set_config("sessions_data_expiration_time", "1");
    let collected = cluster
        .command(
            "m1",
            &[
                ("command", "garbage-collector"),
                ("deletePolicy", "expiration"),
            ],
            &[],
        )
        .await;
    assert_eq!(collected.text().await.unwrap(), "0");
    assert!(
        cluster.node("m1").meta("orphan").is_empty(),
        "the tracking record was left behind"
    );
    cluster.assert_indexes_exact().await;
}
