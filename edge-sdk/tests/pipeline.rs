//! The request pipeline of SPEC section 3 against a real redis-server: one
//! test per row of the status table, plus concurrency, fencing and
//! byte-exactness.

mod common;

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{NodeOptions, RedisServer, TestNode, http_client, request_id};
use edge_sdk::{IntoResponse, Json, Request, Session, StatusCode, blocking, nonblocking};
use edge_store::layout::meta;
use redis::Commands;
use tokio::sync::Notify;

#[blocking]
async fn store_body(req: Request, session: &mut Session) -> edge_sdk::Result<impl IntoResponse> {
    let key = req.uri().query().unwrap_or("value").to_string();
    session.set_bytes(&key, req.body());
    Ok((
        StatusCode::CREATED,
        format!("stored {} bytes", req.body().len()),
    ))
}

#[nonblocking]
async fn read_value(req: Request, session: &Session) -> edge_sdk::Result<edge_sdk::Response> {
    let key = req.uri().query().unwrap_or("value");
    Ok(match session.get_bytes(key).await? {
        Some(bytes) => bytes.into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    })
}

fn hget(redis: &RedisServer, session: &str, field: &str) -> Option<Vec<u8>> {
    let keys = edge_store::SessionKeys::new(session);
    redis.connection().hget(keys.data(), field).unwrap()
}

#[tokio::test]
async fn handler_status_is_returned_and_writes_are_committed() {
    let redis = RedisServer::start();
    let node = TestNode::start(store_body, &redis, NodeOptions::edge()).await;
    let response = http_client()
        .post(node.url("/?greeting"))
        .header("X-session", "s1")
        .header("X-session-request-id", request_id())
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(response.text().await.unwrap(), "stored 5 bytes");
    let stored = hget(&redis, "s1", "greeting").unwrap();
    assert_eq!(&stored[1..], b"hello");
    let meta: std::collections::HashMap<String, Vec<u8>> = redis
        .connection()
        .hgetall(edge_store::SessionKeys::new("s1").meta())
        .unwrap();
    assert_eq!(meta[meta::PROPRIETARY], b"edge");
    assert_eq!(meta[meta::LOCATION], b"edge");
    let created: i64 = String::from_utf8_lossy(&meta[meta::CREATED])
        .parse()
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!(
        (now - 60_000..=now).contains(&created),
        "created {created}, now {now}"
    );
    node.stop().await.unwrap();
}

async fn assert_400(response: reqwest::Response, naming: &str) {
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["statusCode"], 400);
    let message = body["message"].as_str().unwrap();
    assert!(message.contains(naming), "{message:?} should name {naming}");
}

#[tokio::test]
async fn bad_headers_are_400_naming_the_header() {
    let redis = RedisServer::start();
    let blocking_node = TestNode::start(store_body, &redis, NodeOptions::edge()).await;
    let reading_node = TestNode::start(read_value, &redis, NodeOptions::edge()).await;
    let client = http_client();
    let url = blocking_node.url("/");
    assert_400(
        client
            .post(&url)
            .header("X-session-request-id", request_id())
            .send()
            .await
            .unwrap(),
        "X-session",
    )
    .await;
    for bad in ["has space", "", &"x".repeat(129), "caf\u{e9}"] {
        let response = client
            .post(&url)
            .header("X-session", bad)
            .header("X-session-request-id", request_id())
            .send()
            .await
            .unwrap();
        assert_400(response, "X-session").await;
    }
    assert_400(
        client
            .post(&url)
            .header("X-session", "s")
            .send()
            .await
            .unwrap(),
        "X-session-request-id",
    )
    .await;
    assert_400(
        client
            .post(&url)
            .header("X-session", "s")
            .header("X-session-request-id", "42")
            .send()
            .await
            .unwrap(),
        "X-session-request-id",
    )
    .await;
    // 128 visible characters is the longest valid name.
    let longest = "~".repeat(128);
    let ok = client
        .post(&url)
        .header("X-session", &longest)
        .header("X-session-request-id", request_id())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 201);
    // Non-blocking: the request id is optional but must be a UUID when given.
    let read_url = reading_node.url("/");
    let response = client
        .get(&read_url)
        .header("X-session", "s")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_400(
        client
            .get(&read_url)
            .header("X-session", "s")
            .header("X-session-request-id", "nope")
            .send()
            .await
            .unwrap(),
        "X-session-request-id",
    )
    .await;
    // Nothing was created by the rejected calls.
    let count: usize = redis
        .connection()
        .keys::<_, Vec<String>>("edge:{s}:*")
        .unwrap()
        .len();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_session_living_elsewhere_is_a_307_to_that_node() {
    let redis = RedisServer::start();
    let blocking_node = TestNode::start(store_body, &redis, NodeOptions::edge()).await;
    let reading_node = TestNode::start(read_value, &redis, NodeOptions::edge()).await;
    let keys = edge_store::SessionKeys::new("moved");
    let _: () = redis
        .connection()
        .hset_multiple(
            keys.meta(),
            &[(meta::PROPRIETARY, "edge"), (meta::LOCATION, "cloud")],
        )
        .unwrap();
    let client = http_client();
    for (node, method) in [
        (&blocking_node, reqwest::Method::POST),
        (&reading_node, reqwest::Method::GET),
    ] {
        let response = client
            .request(method, node.url("/files/a?file=x.mp4"))
            .header("X-session", "moved")
            .header("X-session-request-id", request_id())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 307);
        assert_eq!(
            response.headers()["location"],
            "http://cloud.test:8080/function/fn/files/a?file=x.mp4"
        );
        assert_eq!(response.headers()["x-session-location"], "cloud");
    }
    assert!(hget(&redis, "moved", "file=x.mp4").is_none());
}

static RUNS: AtomicUsize = AtomicUsize::new(0);

#[blocking]
async fn count_runs(req: Request, session: &mut Session) -> edge_sdk::Result<edge_sdk::Response> {
    RUNS.fetch_add(1, Ordering::SeqCst);
    session.set("last", "run");
    let size: usize = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(3);
    Ok(http::Response::builder()
        .status(202)
        .header("content-type", "text/x-run")
        .body(bytes::Bytes::from(vec![b'r'; size]))
        .unwrap())
}

#[tokio::test]
async fn a_completed_request_id_is_a_208_replaying_the_original_response() {
    let redis = RedisServer::start();
    let mut options = NodeOptions::edge();
    options
        .extra_env
        .push(("EDGE_REPLAY_MAX_BYTES", "100".into()));
    let node = TestNode::start(count_runs, &redis, options).await;
    let client = http_client();
    let id = request_id();
    let send = |id: String, size: usize| {
        client
            .post(node.url(&format!("/?{size}")))
            .header("X-session", "dedup")
            .header("X-session-request-id", id)
            .send()
    };
    let first = send(id.clone(), 3).await.unwrap();
    assert_eq!(first.status(), 202);
    let again = send(id.to_uppercase(), 3).await.unwrap();
    assert_eq!(again.status(), 208);
    assert_eq!(again.headers()["x-session-original-status"], "202");
    assert_eq!(again.headers()["x-session-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "text/x-run");
    assert_eq!(again.bytes().await.unwrap().as_ref(), b"rrr");
    assert_eq!(RUNS.load(Ordering::SeqCst), 1, "the handler ran again");
    // A response over EDGE_REPLAY_MAX_BYTES is not kept: 208 with no body.
    let big = request_id();
    assert_eq!(send(big.clone(), 101).await.unwrap().status(), 202);
    let replayed = send(big, 101).await.unwrap();
    assert_eq!(replayed.status(), 208);
    assert_eq!(replayed.headers()["x-session-replayed"], "false");
    assert!(replayed.bytes().await.unwrap().is_empty());
    assert_eq!(RUNS.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn request_ids_are_bounded_per_session() {
    let redis = RedisServer::start();
    let mut options = NodeOptions::edge();
    options.extra_env.push(("EDGE_REQUEST_ID_MAX", "5".into()));
    let node = TestNode::start(store_body, &redis, options).await;
    let client = http_client();
    for _ in 0..12 {
        let response = client
            .post(node.url("/"))
            .header("X-session", "bounded")
            .header("X-session-request-id", request_id())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let keys = edge_store::SessionKeys::new("bounded");
    let mut records: std::collections::HashMap<String, Vec<u8>> =
        redis.connection().hgetall(keys.meta()).unwrap();
    records.retain(|field, _| edge_store::layout::is_request_id(field.as_bytes()));
    assert_eq!(records.len(), 5);
    // Each kept with its retained response (the 201 and its body).
    for record in records.values() {
        assert!(
            record.windows(4).any(|w| w == b" 201"),
            "{:?}",
            String::from_utf8_lossy(record)
        );
    }
}

#[tokio::test]
async fn a_session_locked_past_the_wait_or_migrating_is_a_503_with_retry_after() {
    let redis = RedisServer::start();
    let _: () = redis
        .connection()
        .hset("edge:config", "sessions_lock_wait_time", "0.3")
        .unwrap();
    let node = TestNode::start(store_body, &redis, NodeOptions::edge()).await;
    let keys = edge_store::SessionKeys::new("busy");
    let client = http_client();
    for (token, reason) in [
        ("someone-else", "locked by another call"),
        ("migration:x", "being migrated"),
    ] {
        let _: () = redis.connection().set_ex(keys.lock(), token, 20).unwrap();
        let response = client
            .post(node.url("/"))
            .header("X-session", "busy")
            .header("X-session-request-id", request_id())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 503);
        let retry_after: u64 = response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&retry_after));
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(reason));
    }
    assert!(hget(&redis, "busy", "value").is_none());
}

#[tokio::test]
async fn a_call_waits_in_line_for_a_locked_session_and_is_served_next() {
    let redis = RedisServer::start();
    let node = TestNode::start(store_body, &redis, NodeOptions::edge()).await;
    let store =
        edge_store::Store::open(&redis.url(), None, Duration::from_secs(5), "edge").unwrap();
    let keys = edge_store::SessionKeys::new("line");
    let holder = edge_store::layout::lock::call_token();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    let begun = store
        .begin(
            &keys,
            &holder,
            Duration::from_secs(30),
            &request_id(),
            now(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert!(matches!(begun, edge_store::Begin::Acquired { .. }));
    let waiting = tokio::spawn(
        http_client()
            .post(node.url("/?value"))
            .header("X-session", "line")
            .header("X-session-request-id", request_id())
            .body("after the holder")
            .send(),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis.connection().llen::<_, usize>(&keys.queue()).unwrap() == 0 {
        assert!(Instant::now() < deadline, "the call never got in line");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!waiting.is_finished(), "the call waits, it is not bounced");
    // The holder lets go: the lock passes to the call in line, which runs.
    assert!(store.release(&keys, &holder, now()).await.unwrap());
    let response = waiting.await.unwrap().unwrap();
    assert_eq!(response.status(), 201);
    assert_eq!(hget(&redis, "line", "value").unwrap(), b"bafter the holder");
}

static FAIL_MODE: AtomicUsize = AtomicUsize::new(0);

#[blocking]
async fn failing(_req: Request, session: &mut Session) -> edge_sdk::Result<&'static str> {
    session.set("written", "yes");
    session.set_json("counter", &1)?;
    match FAIL_MODE.load(Ordering::SeqCst) {
        1 => Err(edge_sdk::Error::custom("deliberate failure")),
        2 => panic!("deliberate panic"),
        _ => Ok("fine"),
    }
}

#[tokio::test]
async fn a_failing_or_panicking_handler_is_a_500_writes_nothing_and_frees_the_lock() {
    let redis = RedisServer::start();
    // A long lock TTL: if the lock were left held, the next call would be 503.
    let mut options = NodeOptions::edge();
    options.extra_env.push(("exec_timeout", "5m".into()));
    let node = TestNode::start(failing, &redis, options).await;
    let client = http_client();
    let keys = edge_store::SessionKeys::new("fails");
    for (mode, message) in [(1, "deliberate failure"), (2, "deliberate panic")] {
        FAIL_MODE.store(mode, Ordering::SeqCst);
        let id = request_id();
        let response = client
            .post(node.url("/"))
            .header("X-session", "fails")
            .header("X-session-request-id", &id)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(body["message"].as_str().unwrap().contains(message));
        assert!(hget(&redis, "fails", "written").is_none());
        let lock_exists: bool = redis.connection().exists(keys.lock()).unwrap();
        assert!(!lock_exists, "the lock must be released at once");
        let recorded: bool = redis.connection().hexists(keys.meta(), &id).unwrap();
        assert!(!recorded, "a failed call's id is not recorded");
    }
    // The very next call gets the lock at once, and a retry of a failed id runs.
    FAIL_MODE.store(0, Ordering::SeqCst);
    let response = client
        .post(node.url("/"))
        .header("X-session", "fails")
        .header("X-session-request-id", request_id())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(hget(&redis, "fails", "written").unwrap(), b"syes");
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413() {
    let redis = RedisServer::start();
    let mut options = NodeOptions::edge();
    options
        .extra_env
        .push(("EDGE_MAX_BODY_BYTES", "1024".into()));
    let node = TestNode::start(store_body, &redis, options).await;
    let client = http_client();
    let response = client
        .post(node.url("/"))
        .header("X-session", "big")
        .header("X-session-request-id", request_id())
        .body(vec![0u8; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    // Also without a Content-Length (chunked upload).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![1u8; 800]), Ok(vec![2u8; 800])];
    let response = client
        .post(node.url("/"))
        .header("X-session", "big")
        .header("X-session-request-id", request_id())
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(hget(&redis, "big", "value").is_none());
    let exact = client
        .post(node.url("/"))
        .header("X-session", "big")
        .header("X-session-request-id", request_id())
        .body(vec![0u8; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(exact.status(), 201);
}

static SLOW_RELEASE: LazyLock<Notify> = LazyLock::new(Notify::new);

#[blocking]
async fn slow_or_fast(req: Request, session: &mut Session) -> edge_sdk::Result<&'static str> {
    let who = String::from_utf8(req.body().to_vec())?;
    session.set("writer", &who);
    if who == "slow" {
        SLOW_RELEASE.notified().await;
    }
    Ok("done")
}

#[tokio::test]
async fn a_handler_that_outlives_its_lock_is_a_423_and_writes_nothing() {
    let redis = RedisServer::start();
    let _: () = redis
        .connection()
        .hset("edge:config", "sessions_locks_expiration_time", 1)
        .unwrap();
    let node = TestNode::start(slow_or_fast, &redis, NodeOptions::edge()).await;
    let client = http_client();
    let call = |body: &'static str, id: String| {
        client
            .post(node.url("/"))
            .header("X-session", "fenced")
            .header("X-session-request-id", id)
            .body(body)
            .send()
    };
    let slow = tokio::spawn(call("slow", request_id()));
    let lock = edge_store::SessionKeys::new("fenced").lock().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis.connection().exists::<_, bool>(&lock).unwrap() {
        assert!(
            Instant::now() < deadline,
            "the slow call never took the lock"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // The fast writer retries (same id) until the slow call's lock expires.
    let fast_id = request_id();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = call("fast", fast_id.clone()).await.unwrap();
        if response.status() == 200 {
            break;
        }
        assert_eq!(response.status(), 503);
        assert!(
            Instant::now() < deadline,
            "the expired lock was never taken over"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    SLOW_RELEASE.notify_one();
    let slow = slow.await.unwrap().unwrap();
    assert_eq!(slow.status(), 423);
    let body: serde_json::Value = slow.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nothing was written")
    );
    assert_eq!(hget(&redis, "fenced", "writer").unwrap(), b"sfast");
}

#[blocking]
async fn increment(_req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    let value: u64 = session.get_json("counter").await?.unwrap_or(0);
    // Give other calls a chance to interleave if the lock did not exclude them.
    tokio::task::yield_now().await;
    session.set_json("counter", &(value + 1))?;
    Ok((value + 1).to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_increments_are_neither_lost_nor_applied_twice() {
    const CLIENTS: usize = 32;
    const INCREMENTS: usize = 50;
    let redis = RedisServer::start();
    let node = TestNode::start(increment, &redis, NodeOptions::edge()).await;
    let url = node.url("/");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for worker in 0..CLIENTS {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = Vec::new();
            for i in 0..INCREMENTS {
                let id = request_id();
                let mut attempt = 0u64;
                loop {
                    attempt += 1;
                    assert!(
                        attempt < 10_000,
                        "worker {worker} call {i} never acknowledged"
                    );
                    match client
                        .post(&url)
                        .header("X-session", "counter")
                        .header("X-session-request-id", &id)
                        .send()
                        .await
                    {
                        Ok(r) if r.status() == 200 || r.status() == 208 => {
                            acknowledged.push(id.clone());
                            break;
                        }
                        // Calls wait in line: never bounced with a 503.
                        Ok(r) => panic!("unexpected status {}", r.status()),
                        Err(e) if e.is_timeout() => {}
                        Err(e) => panic!("request failed: {e}"),
                    }
                    let backoff = 1 + (attempt.min(20) * (worker as u64 % 7 + 1)) % 25;
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                }
            }
            acknowledged
        }));
    }
    let mut distinct = std::collections::HashSet::new();
    for task in tasks {
        distinct.extend(task.await.unwrap());
    }
    let stored = hget(&redis, "counter", "counter").unwrap();
    let final_value: usize = std::str::from_utf8(&stored[1..]).unwrap().parse().unwrap();
    assert_eq!(distinct.len(), CLIENTS * INCREMENTS);
    assert_eq!(final_value, distinct.len());
}

#[blocking]
async fn store_all_kinds(req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    let text = String::from_utf8(req.body().to_vec()).unwrap_or_default();
    session.set("text", &text);
    session.set_bytes("bytes", req.body());
    session.set_list("list", [text.as_str(), "", "second\n"]);
    session.set_json("json", &serde_json::json!({ "text": text }))?;
    // Reads inside the call see its own buffered writes.
    let echoed = session.get_bytes("bytes").await?.unwrap();
    assert_eq!(echoed.as_ref(), req.body().as_ref());
    Ok("ok".into())
}

#[nonblocking]
async fn read_all_kinds(
    req: Request,
    session: &Session,
) -> edge_sdk::Result<Json<serde_json::Value>> {
    let which = req.uri().query().unwrap_or("");
    Ok(Json(match which {
        "bytes" => {
            let bytes = session.get_bytes("bytes").await?.unwrap_or_default();
            serde_json::json!({ "len": bytes.len(), "sum": bytes.iter().map(|&b| b as u64).sum::<u64>() })
        }
        _ => serde_json::json!({
            "text": session.get("text").await?,
            "list": session.get_list("list").await?,
            "json": session.get_json::<serde_json::Value>("json").await?,
            "missing": session.get("missing").await?,
        }),
    }))
}

#[tokio::test]
async fn values_round_trip_byte_exact() {
    let redis = RedisServer::start();
    let writer = TestNode::start(store_all_kinds, &redis, NodeOptions::edge()).await;
    let reader = TestNode::start(read_all_kinds, &redis, NodeOptions::edge()).await;
    let client = http_client();
    let tricky = "quote ' \" ]] end -- \n newline \0 nul \r\n ünïcødé \\ backslash";
    let response = client
        .post(writer.url("/"))
        .header("X-session", "kinds")
        .header("X-session-request-id", request_id())
        .body(tricky)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let read: serde_json::Value = client
        .get(reader.url("/"))
        .header("X-session", "kinds")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["text"], tricky);
    assert_eq!(read["list"], serde_json::json!([tricky, "", "second\n"]));
    assert_eq!(read["json"]["text"], tricky);
    assert_eq!(read["missing"], serde_json::Value::Null);
    assert_eq!(
        &hget(&redis, "kinds", "bytes").unwrap()[1..],
        tricky.as_bytes()
    );

    // 5 MiB of binary, every byte value, through a blocking write and a
    // non-blocking read.
    let big: Vec<u8> = (0..5 * 1024 * 1024)
        .map(|i: usize| (i * 7 + i / 251) as u8)
        .collect();
    let response = client
        .post(writer.url("/"))
        .header("X-session", "big-binary")
        .header("X-session-request-id", request_id())
        .body(big.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&hget(&redis, "big-binary", "bytes").unwrap()[1..], &big[..]);
    let read: serde_json::Value = client
        .get(reader.url("/?bytes"))
        .header("X-session", "big-binary")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["len"], big.len());
    assert_eq!(read["sum"], big.iter().map(|&b| b as u64).sum::<u64>());
}

#[tokio::test]
async fn an_unreachable_redis_is_a_503_and_the_node_recovers_by_itself() {
    let mut redis = RedisServer::start_with_password("s3cret pass");
    let node = TestNode::start(store_body, &redis, NodeOptions::edge()).await;
    let client = http_client();
    let call = || {
        client
            .post(node.url("/"))
            .header("X-session", "heal")
            .header("X-session-request-id", request_id())
            .body("x")
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 201);
    let port = redis.port;
    let password = redis.password.clone();
    redis.kill();
    let response = call().await.unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("Redis is unreachable"),
        "{body}"
    );
    let _restarted = RedisServer::start_with(password.clone(), port);
    // The very first call once Redis is back succeeds: the broken
    // connection is re-established before it is used again.
    assert_eq!(call().await.unwrap().status(), 201);
    // And again after a restart the node never noticed (no call failed
    // while Redis was down).
    drop(_restarted);
    let _again = RedisServer::start_with(password, port);
    assert_eq!(call().await.unwrap().status(), 201);
}

static REDIS_DIES: LazyLock<Notify> = LazyLock::new(Notify::new);
static HANDLER_WAITS: LazyLock<Notify> = LazyLock::new(Notify::new);

#[blocking]
async fn read_after_redis_dies(
    _req: Request,
    session: &mut Session,
) -> edge_sdk::Result<&'static str> {
    HANDLER_WAITS.notify_one();
    REDIS_DIES.notified().await;
    session.get("anything").await?;
    Ok("read")
}

#[tokio::test]
async fn redis_failing_under_a_blocking_handler_is_a_503() {
    let mut redis = RedisServer::start();
    let node = TestNode::start(read_after_redis_dies, &redis, NodeOptions::edge()).await;
    let call = http_client()
        .post(node.url("/"))
        .header("X-session", "dying")
        .header("X-session-request-id", request_id())
        .send();
    let call = tokio::spawn(call);
    HANDLER_WAITS.notified().await;
    redis.kill();
    REDIS_DIES.notify_one();
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("nothing was written"),
        "{body}"
    );
}

/// Answers a 60 KiB body, as a large shopping cart would.
#[blocking]
async fn large_answer(_req: Request, session: &mut Session) -> edge_sdk::Result<Vec<u8>> {
    session.set("seen", "yes");
    Ok(vec![b'c'; 60 * 1024])
}

#[tokio::test]
async fn retained_responses_are_bounded_in_bytes_per_session() {
    let redis = RedisServer::start();
    let mut options = NodeOptions::edge();
    options
        .extra_env
        .push(("EDGE_REPLAY_MAX_BYTES", (64 * 1024).to_string()));
    let node = TestNode::start(large_answer, &redis, options).await;
    let client = http_client();
    let call = |id: String| {
        client
            .post(node.url("/"))
            .header("X-session", "big-cart")
            .header("X-session-request-id", id)
            .send()
    };
    let ids: Vec<String> = (0..40).map(|_| request_id()).collect();
    for id in &ids {
        assert_eq!(call(id.clone()).await.unwrap().status(), 200);
    }
    let keys = edge_store::SessionKeys::new("big-cart");
    let counters: Vec<u8> = redis
        .connection()
        .hget(keys.meta(), meta::COUNTERS)
        .unwrap();
    let retained = edge_store::layout::Counters::parse(&counters).replay_bytes;
    assert!(
        retained <= 1024 * 1024,
        "{retained} bytes retained, over the default 1 MiB per session"
    );
    assert!(retained >= 12 * 60 * 1024, "{retained}: too few kept");
    // The latest answers replay whole; the oldest only as "done".
    let latest = call(ids[39].clone()).await.unwrap();
    assert_eq!(latest.status(), 208);
    assert_eq!(latest.headers()["x-session-replayed"], "true");
    assert_eq!(latest.bytes().await.unwrap().len(), 60 * 1024);
    let oldest = call(ids[0].clone()).await.unwrap();
    assert_eq!(oldest.status(), 208);
    assert_eq!(oldest.headers()["x-session-replayed"], "false");
}

#[tokio::test]
async fn health_answers_without_redis_and_shutdown_drains() {
    let mut redis = RedisServer::start();
    let node = TestNode::start(store_body, &redis, NodeOptions::edge()).await;
    redis.kill();
    let response = http_client()
        .get(node.url("/_/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    node.stop().await.unwrap();
}

#[blocking]
async fn read_three_write_two(
    _req: Request,
    session: &mut Session,
) -> edge_sdk::Result<&'static str> {
    for key in ["a", "b", "c", "a", "b"] {
        session.get(key).await?;
    }
    session.set("a", "1");
    session.set("d", "2");
    // Reading a key after writing it costs nothing.
    session.get("d").await?;
    Ok("ok")
}

#[nonblocking]
async fn read_two_twice(_req: Request, session: &Session) -> edge_sdk::Result<&'static str> {
    for key in ["a", "b", "a", "b"] {
        session.get(key).await?;
    }
    Ok("ok")
}

/// Records the commands clients send to `redis` (not those scripts run)
/// until [`Monitor::finish`]; `MONITOR` marks script commands `lua`.
struct Monitor {
    thread: std::thread::JoinHandle<Vec<String>>,
    client: redis::Client,
}

const END_MARKER: &str = "end-of-recording";

impl Monitor {
    fn start(redis: &RedisServer) -> Monitor {
        let mut connection = redis.connection();
        connection
            .send_packed_command(&redis::cmd("MONITOR").get_packed_command())
            .unwrap();
        assert_eq!(connection.recv_response().unwrap(), redis::Value::Okay);
        let thread = std::thread::spawn(move || {
            let mut commands = Vec::new();
            loop {
                let line = match connection.recv_response().unwrap() {
                    redis::Value::SimpleString(line) => line,
                    other => panic!("unexpected MONITOR output {other:?}"),
                };
                if line.contains(END_MARKER) {
                    return commands;
                }
                if !line.contains(" lua]") && !line.contains("\"hgetall\" \"edge:config\"") {
                    // `<time> [0 127.0.0.1:port] "command" "args"…`
                    let command = line.split('"').nth(1).unwrap_or("").to_lowercase();
                    commands.push(command);
                }
            }
        });
        Monitor {
            thread,
            client: redis.client(),
        }
    }

    fn finish(self) -> Vec<String> {
        let mut connection = self.client.get_connection().unwrap();
        let _: String = redis::cmd("ECHO")
            .arg(END_MARKER)
            .query(&mut connection)
            .unwrap();
        let mut commands = self.thread.join().unwrap();
        commands.sort();
        commands
    }
}

#[tokio::test]
async fn round_trips_per_call_are_reads_plus_two_or_plus_one() {
    let redis = RedisServer::start();
    let writer = TestNode::start(read_three_write_two, &redis, NodeOptions::edge()).await;
    let reader = TestNode::start(read_two_twice, &redis, NodeOptions::edge()).await;
    let client = http_client();
    let blocking = || {
        client
            .post(writer.url("/"))
            .header("X-session", "rtt")
            .header("X-session-request-id", request_id())
            .send()
    };
    // Warm up: the library is loaded on first use (FUNCTION LOAD).
    assert_eq!(blocking().await.unwrap().status(), 200);
    let warm_up = client
        .get(reader.url("/"))
        .header("X-session", "rtt")
        .send()
        .await
        .unwrap();
    assert_eq!(warm_up.status(), 200);

    let monitor = Monitor::start(&redis);
    assert_eq!(blocking().await.unwrap().status(), 200);
    // Begin is one pipeline (SET NX of the lock, WATCH of it, HMGET of the
    // metadata, HGET of the overflow request ids), the commit one watched
    // transaction (MULTI, HSET of the data, HSET of the metadata, INCRBY of
    // the node's retained bytes, DEL of the lock, EXEC), and one HGET for
    // each of the three keys first read: 1 + 1 + 3 round trips. No script.
    // The UNWATCH heads the begin's pipeline because the warm-up (the
    // session's first call, which the begin script creates) gave the
    // connection back with its WATCH still set.
    assert_eq!(
        monitor.finish(),
        [
            "del", "exec", "hget", "hget", "hget", "hget", "hmget", "hset", "hset", "incrby",
            "multi", "set", "unwatch", "watch"
        ]
    );

    let monitor = Monitor::start(&redis);
    let response = client
        .get(reader.url("/"))
        .header("X-session", "rtt")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // the location check (a script), and one transaction of plain reads
    // (metadata, data, the value) for each of the two keys.
    assert_eq!(
        monitor.finish(),
        [
            "exec", "exec", "exists", "exists", "fcall", "hget", "hget", "hmget", "hmget", "multi",
            "multi"
        ]
    );
}

static DRAIN_RELEASE: LazyLock<Notify> = LazyLock::new(Notify::new);

#[blocking]
async fn held_until_released(
    _req: Request,
    session: &mut Session,
) -> edge_sdk::Result<&'static str> {
    session.set("drained", "yes");
    DRAIN_RELEASE.notified().await;
    Ok("finished")
}

#[tokio::test]
async fn shutdown_lets_calls_in_flight_finish() {
    let redis = RedisServer::start();
    let node = TestNode::start(held_until_released, &redis, NodeOptions::edge()).await;
    let call = tokio::spawn(
        http_client()
            .post(node.url("/"))
            .header("X-session", "drain")
            .header("X-session-request-id", request_id())
            .send(),
    );
    let lock = edge_store::SessionKeys::new("drain").lock().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis.connection().exists::<_, bool>(&lock).unwrap() {
        assert!(Instant::now() < deadline, "the call never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let addr = node.addr;
    let stopping = tokio::spawn(node.stop());
    // The server no longer accepts new connections…
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "the listener was not closed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(!stopping.is_finished());
    // …but the call in flight completes and commits.
    DRAIN_RELEASE.notify_one();
    let response = call.await.unwrap().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "finished");
    stopping.await.unwrap().unwrap();
    assert_eq!(hget(&redis, "drain", "drained").unwrap(), b"syes");
}

#[tokio::test]
async fn request_ids_are_forgotten_after_the_retention_window() {
    let redis = RedisServer::start();
    let mut options = NodeOptions::edge();
    options
        .extra_env
        .push(("EDGE_REQUEST_ID_RETENTION_SECS", "1".into()));
    let node = TestNode::start(store_body, &redis, options).await;
    let client = http_client();
    let call = |id: &str| {
        client
            .post(node.url("/"))
            .header("X-session", "window")
            .header("X-session-request-id", id)
            .send()
    };
    let old = request_id();
    assert_eq!(call(&old).await.unwrap().status(), 201);
    assert_eq!(call(&old).await.unwrap().status(), 208);
    // The window is measured in time; let it pass (and the eighth of it
    // by which trimming is put off, so that it is rare), then commit
    // another call, which trims ids older than the window.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert_eq!(call(&request_id()).await.unwrap().status(), 201);
    let keys = edge_store::SessionKeys::new("window");
    let kept: bool = redis.connection().hexists(keys.meta(), &old).unwrap();
    assert!(
        !kept,
        "an id older than the window (and its response) was kept"
    );
    assert_eq!(
        call(&old).await.unwrap().status(),
        201,
        "a forgotten id runs again"
    );
}

static FENCE_RELEASE: LazyLock<Notify> = LazyLock::new(Notify::new);

#[blocking]
async fn write_after_signal(
    _req: Request,
    session: &mut Session,
) -> edge_sdk::Result<&'static str> {
    session.set("late", "write");
    FENCE_RELEASE.notified().await;
    Ok("done")
}

#[tokio::test]
async fn a_migration_fence_closes_the_session_to_writes_even_without_a_lock() {
    let redis = RedisServer::start();
    let node = TestNode::start(write_after_signal, &redis, NodeOptions::edge()).await;
    let keys = edge_store::SessionKeys::new("moving");
    let client = http_client();
    let call = || {
        client
            .post(node.url("/"))
            .header("X-session", "moving")
            .header("X-session-request-id", request_id())
            .send()
    };
    // A call in flight when a migration fences the session cannot commit.
    let in_flight = tokio::spawn(call());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !redis.connection().exists::<_, bool>(&keys.lock()).unwrap() {
        assert!(Instant::now() < deadline, "the call never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _: () = redis
        .connection()
        .hset(keys.meta(), meta::FENCE, "out:1")
        .unwrap();
    FENCE_RELEASE.notify_one();
    assert_eq!(in_flight.await.unwrap().unwrap().status(), 423);
    assert!(hget(&redis, "moving", "late").is_none());
    // With no lock left, the fence alone answers 503 "being migrated".
    let lock_left: bool = redis.connection().exists(keys.lock()).unwrap();
    assert!(!lock_left);
    let response = call().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("being migrated"));
}

#[tokio::test]
async fn during_a_migration_writers_wait_and_readers_read_the_frozen_copy() {
    let redis = RedisServer::start();
    let writer = TestNode::start(store_body, &redis, NodeOptions::edge()).await;
    let reader = TestNode::start(read_value, &redis, NodeOptions::edge()).await;
    let client = http_client();
    let write = || {
        client
            .post(writer.url("/?value"))
            .header("X-session", "frozen")
            .header("X-session-request-id", request_id())
            .body("before the move")
            .send()
    };
    assert_eq!(write().await.unwrap().status(), 201);
    let keys = edge_store::SessionKeys::new("frozen");
    // Mid-migration both ends may point at each other; the fence decides.
    let _: () = redis
        .connection()
        .hset_multiple(
            keys.meta(),
            &[(meta::FENCE, "out:1"), (meta::LOCATION, "cloud")],
        )
        .unwrap();
    let blocked = write().await.unwrap();
    assert_eq!(
        blocked.status(),
        503,
        "a write during a migration waits, not redirected"
    );
    let read = client
        .get(reader.url("/?value"))
        .header("X-session", "frozen")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.text().await.unwrap(), "before the move");
    // Once the migration is over here (data gone, no fence), readers are redirected.
    let _: () = redis.connection().hdel(keys.meta(), meta::FENCE).unwrap();
    let _: () = redis.connection().del(keys.data()).unwrap();
    let read = client
        .get(reader.url("/?value"))
        .header("X-session", "frozen")
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 307);
}
