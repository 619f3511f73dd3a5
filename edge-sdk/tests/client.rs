//! The client against real nodes: retries with one request id through a
//! locked session (the call runs once), redirects followed and remembered.

mod common;

use std::time::Duration;

use common::{NodeOptions, RedisServer, TestNode, chain_hierarchy};
use edge_sdk::client::{Client, ClientOptions};
use edge_sdk::{Request, Session, blocking};
use edge_store::layout::meta;
use redis::Commands;

#[blocking]
async fn count(_req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    let value: u64 = session.get_json("n").await?.unwrap_or(0) + 1;
    session.set_json("n", &value)?;
    Ok(value.to_string())
}

#[tokio::test]
async fn a_locked_session_is_retried_with_the_same_id_and_runs_once() {
    let redis = RedisServer::start();
    // Calls wait in line only briefly here, so that the client's own
    // retries are what is tested.
    let _: () = redis
        .connection()
        .hset("edge:config", "sessions_lock_wait_time", "0.05")
        .unwrap();
    let node = TestNode::start(count, &redis, NodeOptions::edge()).await;
    let client = Client::new();
    let url = node.url("/");
    assert_eq!(client.post(&url, "c", "").await.unwrap().text(), "1");
    // Another holder keeps the lock for 300 ms: the client waits it out.
    let keys = edge_store::SessionKeys::new("c");
    let lock = keys.lock();
    let _: () = redis::cmd("SET")
        .arg(lock)
        .arg("someone")
        .arg("PX")
        .arg(300)
        .query(&mut redis.connection())
        .unwrap();
    let answer = client.post(&url, "c", "").await.unwrap();
    assert_eq!(answer.status, 200);
    assert_eq!(answer.text(), "2");
    assert!(answer.attempts > 1, "the lock was not in the way?");
    let n: Vec<u8> = redis
        .connection()
        .hget(edge_store::SessionKeys::new("c").data(), "n")
        .unwrap();
    assert_eq!(&n[1..], b"2");
    // A bounded number of attempts: a lock that stays gives up with the 503.
    let _: () = redis.connection().set_ex(lock, "forever", 60).unwrap();
    let patient = Client::with_options({
        let mut options = ClientOptions::default();
        options.attempts = 3;
        options.max_backoff = Duration::from_millis(20);
        options
    });
    let answer = patient.post(&url, "c", "").await.unwrap();
    assert_eq!((answer.status.as_u16(), answer.attempts), (503, 3));
}

#[tokio::test]
async fn redirects_are_followed_and_remembered() {
    let redis_cloud = RedisServer::start();
    let redis_edge = RedisServer::start();
    // The cloud node serves the session; the edge node's metadata points there.
    let cloud = TestNode::start(count, &redis_cloud, NodeOptions::edge_named("cloud")).await;
    let mut options = NodeOptions::edge();
    options.infrastructure =
        chain_hierarchy(&[("cloud", &cloud.url("")), ("edge", "http://127.0.0.1:9")]);
    let edge = TestNode::start(count, &redis_edge, options).await;
    let keys = edge_store::SessionKeys::new("roaming");
    let _: () = redis_edge
        .connection()
        .hset_multiple(
            keys.meta(),
            &[(meta::PROPRIETARY, "edge"), (meta::LOCATION, "cloud")],
        )
        .unwrap();
    let client = Client::new();
    let first = client.post(&edge.url("/"), "roaming", "").await.unwrap();
    assert_eq!((first.status.as_u16(), first.redirects), (200, 1));
    assert_eq!(first.location.as_deref(), Some("cloud"));
    assert_eq!(client.location_of("roaming").as_deref(), Some("cloud"));
    // The next call goes to the cloud directly.
    let second = client.post(&edge.url("/"), "roaming", "").await.unwrap();
    assert_eq!(
        (second.status.as_u16(), second.redirects, second.text()),
        (200, 0, "2".to_string())
    );
    // A remembered node that disappears is forgotten: the call starts over from the URL.
    cloud.stop().await.unwrap();
    let _: () = redis_edge
        .connection()
        .hset(keys.meta(), meta::LOCATION, "edge")
        .unwrap();
    let third = client.post(&edge.url("/"), "roaming", "").await.unwrap();
    assert_eq!(third.status, 200);
    assert!(third.attempts > 1);
    assert_eq!(client.location_of("roaming"), None);
}

#[tokio::test]
async fn a_client_with_its_own_route_to_a_node_uses_it_on_redirects() {
    let redis_cloud = RedisServer::start();
    let redis_edge = RedisServer::start();
    let cloud = TestNode::start(count, &redis_cloud, NodeOptions::edge_named("cloud")).await;
    // The edge advertises an address of the cloud this client cannot reach.
    let mut options = NodeOptions::edge();
    options.infrastructure = chain_hierarchy(&[
        ("cloud", "http://127.0.0.1:9"),
        ("edge", "http://127.0.0.1:9"),
    ]);
    let edge = TestNode::start(count, &redis_edge, options).await;
    let _: () = redis_edge
        .connection()
        .hset_multiple(
            edge_store::SessionKeys::new("routed").meta(),
            &[(meta::PROPRIETARY, "edge"), (meta::LOCATION, "cloud")],
        )
        .unwrap();
    let client = Client::with_options({
        let mut options = ClientOptions::default();
        options.attempts = 1;
        options
            .node_origins
            .insert("cloud".into(), cloud.url("").trim_end_matches('/').into());
        options
    });
    let first = client
        .post(&edge.url("/x?y=1"), "routed", "")
        .await
        .unwrap();
    assert_eq!(
        (first.status.as_u16(), first.redirects, first.text()),
        (200, 1, "1".to_string())
    );
    let second = client
        .post(&edge.url("/x?y=1"), "routed", "")
        .await
        .unwrap();
    assert_eq!((second.redirects, second.text()), (0, "2".to_string()));
}
