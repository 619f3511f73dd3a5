//! One regression test per weakness of the original prototype that the SDK
//! owns (SPEC section 10, items 1, 2, 3, 4, 7 and 8). Items 5, 6, 9 and 10
//! belong to the offloading manager and the deployer.

mod common;

use std::collections::HashMap;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{NodeOptions, RedisServer, TestNode, http_client, request_id};
use edge_sdk::{Request, Session, blocking, nonblocking};
use edge_store::SessionKeys;
use edge_store::layout::meta;
use redis::Commands;
use tokio::sync::{Barrier, Notify};

async fn post(node: &TestNode, session: &str, body: &'static str) -> reqwest::Response {
    http_client()
        .post(node.url("/"))
        .header("X-session", session)
        .header("X-session-request-id", request_id())
        .body(body)
        .send()
        .await
        .unwrap()
}

fn data(redis: &RedisServer, session: &str) -> HashMap<String, Vec<u8>> {
    redis
        .connection()
        .hgetall(SessionKeys::new(session).data())
        .unwrap()
}

fn counters(redis: &RedisServer, session: &str) -> Vec<u8> {
    redis
        .connection()
        .hget(SessionKeys::new(session).meta(), meta::COUNTERS)
        .unwrap()
}

/// The text fields of the session's metadata (the counters are binary).
fn meta(redis: &RedisServer, session: &str) -> HashMap<String, String> {
    let stored: HashMap<String, Vec<u8>> = redis
        .connection()
        .hgetall(SessionKeys::new(session).meta())
        .unwrap();
    stored
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect()
}

#[blocking]
async fn set_or_delete(req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    let missing = session.get("never-written").await?;
    match req.body().as_ref() {
        b"set" => session.set("gone", "here"),
        _ => session.delete("gone"),
    }
    // A read after a buffered delete sees the delete.
    Ok(format!("{:?} {:?}", missing, session.get("gone").await?))
}

/// SPEC 10.1: `delete` stored the string "null"; a read of a missing key
/// wrote "null" back.
#[tokio::test]
async fn item_1_delete_removes_the_key_and_reads_of_missing_keys_write_nothing() {
    let redis = RedisServer::start();
    let node = TestNode::start(set_or_delete, &redis, NodeOptions::edge()).await;
    let set = post(&node, "null", "set").await;
    assert_eq!(set.text().await.unwrap(), "None Some(\"here\")");
    assert_eq!(
        data(&redis, "null").keys().collect::<Vec<_>>(),
        vec!["gone"]
    );
    let deleted = post(&node, "null", "delete").await;
    assert_eq!(deleted.text().await.unwrap(), "None None");
    assert!(
        data(&redis, "null").is_empty(),
        "{:?}",
        data(&redis, "null")
    );
    let exists: bool = redis
        .connection()
        .exists(SessionKeys::new("null").data())
        .unwrap();
    assert!(!exists);
}

#[blocking]
async fn store_under_body(req: Request, session: &mut Session) -> edge_sdk::Result<&'static str> {
    let text = String::from_utf8(req.body().to_vec())?;
    session.set(&text, &text);
    session.set_list(&format!("{text}-list"), [&text, &text]);
    Ok("ok")
}

/// SPEC 10.2: the commit script was built by pasting user values into Lua
/// source; a quote broke it and allowed injection.
#[tokio::test]
async fn item_2_user_values_never_reach_script_source() {
    let redis = RedisServer::start();
    let _: () = redis.connection().set("bystander", "still here").unwrap();
    let node = TestNode::start(store_under_body, &redis, NodeOptions::edge()).await;
    let attacks = [
        "it's",
        "\"quoted\"",
        "']] redis.call('FLUSHALL') --[['",
        "\"); redis.call(\"FLUSHALL\"); --",
        "]]..redis.call('DEL','bystander')..[[",
    ];
    for attack in attacks {
        let response = post(&node, "inject", attack).await;
        assert_eq!(response.status(), 200, "value {attack:?}");
    }
    let stored = data(&redis, "inject");
    for attack in attacks {
        assert_eq!(stored[attack][1..], *attack.as_bytes());
    }
    let bystander: String = redis.connection().get("bystander").unwrap();
    assert_eq!(bystander, "still here");
    // The scripts are constant: five different values loaded one library of
    // functions, once, and no script built from a value.
    assert_eq!(cached_scripts(&redis), 0);
    let libraries: Vec<redis::Value> = redis::cmd("FUNCTION")
        .arg("LIST")
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(libraries.len(), 1);
}

fn cached_scripts(redis: &RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut redis.connection())
        .unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("number_of_cached_scripts:"))
        .map(|n| n.trim().parse().unwrap())
        .unwrap_or(0)
}

static SHOULD_FAIL: AtomicUsize = AtomicUsize::new(1);

#[blocking]
async fn fail_once(_req: Request, session: &mut Session) -> edge_sdk::Result<&'static str> {
    session.set("touched", "yes");
    if SHOULD_FAIL.swap(0, Ordering::SeqCst) == 1 {
        return Err(edge_sdk::Error::custom("boom"));
    }
    Ok("ok")
}

/// SPEC 10.3: a handler exception left the lock held until its one-hour TTL.
#[tokio::test]
async fn item_3_a_handler_error_releases_the_lock_at_once() {
    let redis = RedisServer::start();
    let mut options = NodeOptions::edge();
    options.extra_env.push(("exec_timeout", "1h".into()));
    let node = TestNode::start(fail_once, &redis, options).await;
    assert_eq!(post(&node, "exc", "").await.status(), 500);
    let held: bool = redis
        .connection()
        .exists(SessionKeys::new("exc").lock())
        .unwrap();
    assert!(!held);
    assert_eq!(post(&node, "exc", "").await.status(), 200);
}

static BARRIER: LazyLock<Barrier> = LazyLock::new(|| Barrier::new(16));

#[blocking]
async fn wait_for_all(_req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    let me = session.id().to_string();
    session.set("me", &me);
    // Every call holds its own session's lock at the same time as the others.
    BARRIER.wait().await;
    Ok(me)
}

/// SPEC 10.4: lock state lived in static fields, unsafe with concurrent
/// requests. Here 16 calls on 16 sessions hold their locks at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_4_concurrent_calls_on_distinct_sessions_do_not_share_lock_state() {
    let redis = RedisServer::start();
    let node = TestNode::start(wait_for_all, &redis, NodeOptions::edge()).await;
    let client = http_client();
    let calls = (0..16).map(|i| {
        let request = client
            .post(node.url("/"))
            .header("X-session", format!("parallel-{i}"))
            .header("X-session-request-id", request_id())
            .timeout(Duration::from_secs(20))
            .send();
        async move {
            let response = request.await.unwrap();
            (response.status(), response.text().await.unwrap())
        }
    });
    let answers = futures_util::future::join_all(calls).await;
    for (i, (status, body)) in answers.into_iter().enumerate() {
        assert_eq!(status, 200);
        assert_eq!(body, format!("parallel-{i}"));
        assert_eq!(
            data(&redis, &format!("parallel-{i}"))["me"][1..],
            *format!("parallel-{i}").as_bytes()
        );
    }
}

static LAST_ACCESS_MODE: AtomicUsize = AtomicUsize::new(0);

#[blocking]
async fn touch(_req: Request, session: &mut Session) -> edge_sdk::Result<&'static str> {
    session.set("x", "y");
    match LAST_ACCESS_MODE.load(Ordering::SeqCst) {
        1 => Err(edge_sdk::Error::custom("fails")),
        _ => Ok("ok"),
    }
}

/// SPEC 10.7: the last-access timestamp was written outside the atomic
/// commit. It must change exactly when a commit lands.
#[tokio::test]
async fn item_7_last_access_changes_only_with_a_commit() {
    let redis = RedisServer::start();
    let _: () = redis
        .connection()
        .hset("edge:config", "sessions_lock_wait_time", "0.2")
        .unwrap();
    let node = TestNode::start(touch, &redis, NodeOptions::edge()).await;
    assert_eq!(post(&node, "clock", "").await.status(), 200);
    let first = meta(&redis, "clock");
    tokio::time::sleep(Duration::from_millis(5)).await;
    LAST_ACCESS_MODE.store(1, Ordering::SeqCst);
    assert_eq!(post(&node, "clock", "").await.status(), 500);
    assert_eq!(meta(&redis, "clock")[meta::ACCESSED], first[meta::ACCESSED]);
    // A call that finds the session locked touches nothing either.
    let _: () = redis
        .connection()
        .set_ex(SessionKeys::new("clock").lock(), "other", 30)
        .unwrap();
    assert_eq!(post(&node, "clock", "").await.status(), 503);
    assert_eq!(meta(&redis, "clock")[meta::ACCESSED], first[meta::ACCESSED]);
    let _: () = redis
        .connection()
        .del(SessionKeys::new("clock").lock())
        .unwrap();
    LAST_ACCESS_MODE.store(0, Ordering::SeqCst);
    // The last access is kept to the second: a commit a second later moves it.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(post(&node, "clock", "").await.status(), 200);
    let last = meta(&redis, "clock");
    let accessed = |m: &std::collections::HashMap<String, String>| -> i64 {
        m[meta::ACCESSED].parse().unwrap()
    };
    assert!(accessed(&last) > accessed(&first));
    assert_eq!(last[meta::CREATED], first[meta::CREATED]);
    assert_eq!(
        edge_store::layout::Counters::parse(&counters(&redis, "clock")).version,
        2
    );
}

#[blocking]
async fn write_pair(req: Request, session: &mut Session) -> edge_sdk::Result<&'static str> {
    let value = String::from_utf8(req.body().to_vec())?;
    session.set("a", &value);
    session.set("b", &value);
    Ok("ok")
}

static PAUSE_BETWEEN_READS: LazyLock<Notify> = LazyLock::new(Notify::new);
static PAUSING: AtomicUsize = AtomicUsize::new(0);

#[nonblocking]
async fn read_pair(_req: Request, session: &Session) -> edge_sdk::Result<String> {
    let a = session.get("a").await?;
    if PAUSING.load(Ordering::SeqCst) == 1 {
        PAUSING.store(2, Ordering::SeqCst);
        PAUSE_BETWEEN_READS.notified().await;
    } else {
        tokio::task::yield_now().await;
    }
    let b = session.get("b").await?;
    Ok(format!(
        "{}|{}",
        a.unwrap_or_default(),
        b.unwrap_or_default()
    ))
}

/// SPEC 10.8: non-blocking reads could see a half-applied commit, or empty
/// data during a migration instead of a redirect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item_8_non_blocking_reads_see_whole_commits_or_a_redirect() {
    let redis = RedisServer::start();
    let writer = TestNode::start(write_pair, &redis, NodeOptions::edge()).await;
    let reader = TestNode::start(read_pair, &redis, NodeOptions::edge()).await;
    let client = http_client();
    assert_eq!(post(&writer, "pair", "0").await.status(), 200);

    // Reads racing 300 commits: every answer is one state, or a 503 retry.
    let writes = {
        let client = client.clone();
        let url = writer.url("/");
        tokio::spawn(async move {
            for i in 1..=300 {
                let response = client
                    .post(&url)
                    .header("X-session", "pair")
                    .header("X-session-request-id", request_id())
                    .body(i.to_string())
                    .send()
                    .await
                    .unwrap();
                assert!(response.status() == 200 || response.status() == 503);
            }
        })
    };
    let (mut whole, mut retried) = (0, 0);
    while !writes.is_finished() {
        let response = client
            .get(reader.url("/"))
            .header("X-session", "pair")
            .send()
            .await
            .unwrap();
        match response.status().as_u16() {
            200 => {
                let body = response.text().await.unwrap();
                let (a, b) = body.split_once('|').unwrap();
                assert_eq!(a, b, "a read saw two states of the session");
                whole += 1;
            }
            503 => retried += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    writes.await.unwrap();
    assert!(whole > 0, "no read completed ({retried} retried)");

    // The session moves away between two reads: a redirect, never empty data.
    PAUSING.store(1, Ordering::SeqCst);
    let read = tokio::spawn({
        let request = client
            .get(reader.url("/"))
            .header("X-session", "pair")
            .send();
        async move { request.await.unwrap() }
    });
    while PAUSING.load(Ordering::SeqCst) != 2 {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let keys = SessionKeys::new("pair");
    let _: () = redis
        .connection()
        .hset(keys.meta(), meta::LOCATION, "cloud")
        .unwrap();
    let _: () = redis.connection().del(keys.data()).unwrap();
    PAUSE_BETWEEN_READS.notify_one();
    let response = read.await.unwrap();
    assert_eq!(response.status(), 307);
    assert_eq!(response.headers()["x-session-location"], "cloud");
    // And a read that starts after the move is redirected before the handler runs.
    let response = client
        .get(reader.url("/"))
        .header("X-session", "pair")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 307);
}
