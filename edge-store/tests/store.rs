//! The store against real redis-servers: every step that changes a
//! session's state keeps the indexes exact (the audit compares them with a
//! full scan after each), the audit finds what is wrong and a rebuild
//! repairs it, request ids are trimmed at their bounds, and a node written
//! by the previous release is converted and indexed while it is used.

use std::collections::HashSet;
use std::time::Duration;

use edge_store::layout::{lock, meta, node};
use edge_store::{
    Begin, CasOutcome, Collected, CommitRecord, Fence, FenceOutcome, IdRetention, ImportOutcome,
    Lease, LockHolder, SessionKeys, Store, Turn,
};
use redis::Commands;
use test_support::{RedisServer, layout_v1};

const T0: i64 = 1_764_590_400_000;
const RETENTION: IdRetention = IdRetention {
    window: Duration::from_secs(86_400),
    max_ids: 1000,
    session_replay_max: IdRetention::SESSION_REPLAY_MAX,
    node_replay_max: IdRetention::NODE_REPLAY_MAX,
};

fn store(redis: &RedisServer, node: &str) -> Store {
    Store::open(&redis.url(), None, Duration::from_secs(5), node).unwrap()
}

async fn assert_exact(store: &Store) {
    let report = store.audit_indexes().await.unwrap();
    assert!(
        report.problems.is_empty(),
        "{}: {:#?}",
        store.node(),
        report.problems
    );
}

/// A blocking call that writes `value` under `key`, at `now_ms`.
async fn call(store: &Store, session: &str, value: &[u8], now_ms: i64) -> bool {
    let keys = SessionKeys::new(session);
    let token = lock::call_token();
    let id = uuid::Uuid::new_v4().to_string();
    let (proprietary, lease) = match store
        .begin(
            &keys,
            &token,
            Duration::from_secs(30),
            &id,
            now_ms,
            Duration::ZERO,
        )
        .await
        .unwrap()
    {
        Begin::Acquired { proprietary, lease } => (proprietary, lease),
        other => panic!("{session}: {other:?}"),
    };
    store
        .commit(
            &keys,
            &token,
            &proprietary,
            &[("key", Some(value))],
            CommitRecord {
                request_id: &id,
                now_ms,
                retained: Some(b"200 text/plain\nok"),
            },
            RETENTION,
            lease,
        )
        .await
        .unwrap()
}

async fn fence(store: &Store, session: &str, now_ms: i64) -> u64 {
    match store
        .fence_out(
            session,
            &lock::migration_token(),
            Duration::from_secs(60),
            now_ms,
        )
        .await
        .unwrap()
    {
        FenceOutcome::Fenced(fenced) => {
            assert!(fenced.bytes > 100, "{session} takes {} bytes", fenced.bytes);
            fenced.epoch
        }
        other => panic!("{session}: {other:?}"),
    }
}

#[tokio::test]
async fn every_step_keeps_the_indexes_exact() {
    let (milan_redis, cloud_redis) = (RedisServer::start(), RedisServer::start());
    let (milan, cloud) = (store(&milan_redis, "milan"), store(&cloud_redis, "cloud"));
    for (i, session) in ["s1", "s2", "s3"].into_iter().enumerate() {
        assert!(call(&milan, session, b"sv", T0 + i as i64).await);
    }
    assert_exact(&milan).await;
    let lru = milan
        .least_recently_used(&HashSet::new())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((lru.session.as_str(), lru.accessed_ms), ("s1", T0));
    let skip = HashSet::from(["s1".to_string()]);
    assert_eq!(
        milan
            .least_recently_used(&skip)
            .await
            .unwrap()
            .unwrap()
            .session,
        "s2"
    );
    let recent: Vec<String> = milan
        .most_recently_used(&["milan".into()], 2)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.session)
        .collect();
    assert_eq!(recent, ["s3", "s2"]);
    // A commit moves the session to the young end.
    // (The last access moves once a second.)
    assert!(call(&milan, "s1", b"sv2", T0 + 2000).await);
    assert_eq!(
        milan
            .least_recently_used(&HashSet::new())
            .await
            .unwrap()
            .unwrap()
            .session,
        "s2"
    );

    // A whole offload of s1: fence, export, import, decision, activation, deletion.
    let epoch = fence(&milan, "s1", T0 + 20).await;
    assert_exact(&milan).await;
    assert_eq!(milan.index_sizes().await.unwrap(), (2, 1, 0));
    let exported = milan.export("s1", epoch).await.unwrap().unwrap();
    assert_eq!(milan.export("s1", epoch + 1).await.unwrap(), None);
    let stored = cloud
        .import(
            "s1",
            &lock::migration_token(),
            Duration::from_secs(60),
            "milan",
            epoch,
            T0 + 21,
            &exported,
        )
        .await
        .unwrap();
    assert_eq!(stored, ImportOutcome::Stored);
    assert_exact(&cloud).await;
    assert_eq!(cloud.index_sizes().await.unwrap(), (0, 1, 0));
    // The data was staged with plain commands and renamed into place; an
    // import under another lock meanwhile is refused and leaves no stage.
    let s1 = SessionKeys::new("s1");
    let copied: Vec<(Vec<u8>, Vec<u8>)> = cloud_redis.connection().hgetall(s1.data()).unwrap();
    let sent: Vec<(Vec<u8>, Vec<u8>)> = exported
        .data
        .iter()
        .map(|(field, value)| (field.to_vec(), value.to_vec()))
        .collect();
    assert_eq!(copied, sent);
    let ttl: i64 = cloud_redis.connection().pttl(s1.data()).unwrap();
    assert_eq!(ttl, -1, "the data does not expire with the stage");
    let intruder = lock::migration_token();
    let refused = cloud
        .import(
            "s1",
            &intruder,
            Duration::from_secs(60),
            "rome",
            epoch,
            T0 + 21,
            &exported,
        )
        .await
        .unwrap();
    assert_eq!(refused, ImportOutcome::Busy);
    let stages: Vec<String> = cloud_redis.connection().keys("edge:{s1}:stage:*").unwrap();
    assert!(stages.is_empty(), "{stages:?}");
    let decided = milan
        .compare_and_set_location("s1", ("milan", epoch - 1), ("cloud", epoch), T0 + 22)
        .await
        .unwrap();
    assert_eq!(decided, CasOutcome::Done("cloud".into(), epoch));
    assert!(cloud.activate("s1", epoch).await.unwrap());
    assert!(milan.finalize("s1", epoch, "cloud", T0 + 23).await.unwrap());
    assert_exact(&milan).await;
    assert_exact(&cloud).await;
    assert_eq!(milan.index_sizes().await.unwrap(), (2, 0, 1));
    assert_eq!(cloud.index_sizes().await.unwrap(), (1, 0, 0));
    // At the cloud it is held under its proprietary node, at its own last access.
    let moved = cloud.meta("s1").await.unwrap().unwrap();
    assert_eq!(
        (moved.proprietary.as_str(), moved.accessed_ms),
        ("milan", T0 + 2000)
    );
    assert_eq!(cloud.owners().await.unwrap(), ["milan"]);
    // A session becomes held somewhere only by a migration that fenced it:
    // a decision pointing an unfenced record at its own node is refused…
    let epoch = cloud.meta("s1").await.unwrap().unwrap().epoch;
    assert_eq!(
        milan
            .compare_and_set_location("s1", ("cloud", epoch), ("milan", epoch + 1), T0 + 24)
            .await
            .unwrap(),
        CasOutcome::Conflict("cloud".into(), epoch)
    );
    // …and so is moving a session held here, unfenced, away.
    assert_eq!(
        cloud
            .compare_and_set_location("s1", ("cloud", epoch), ("rome", epoch + 1), T0 + 24)
            .await
            .unwrap(),
        CasOutcome::Conflict("cloud".into(), epoch)
    );
    assert_exact(&milan).await;

    // An aborted migration: the source holds the session again.
    let epoch = fence(&milan, "s2", T0 + 30).await;
    assert!(milan.abort_out("s2", epoch).await.unwrap());
    assert_exact(&milan).await;
    assert_eq!(milan.meta("s2").await.unwrap().unwrap().epoch, epoch);
    // A dropped copy at the destination leaves a stub there.
    let epoch = fence(&milan, "s3", T0 + 40).await;
    let exported = milan.export("s3", epoch).await.unwrap().unwrap();
    cloud
        .import(
            "s3",
            &lock::migration_token(),
            Duration::from_secs(60),
            "milan",
            epoch,
            T0 + 41,
            &exported,
        )
        .await
        .unwrap();
    assert!(cloud.drop_in("s3", epoch, T0 + 42).await.unwrap());
    assert!(milan.abort_out("s3", epoch).await.unwrap());
    assert_exact(&milan).await;
    assert_exact(&cloud).await;
    assert_eq!(cloud.index_sizes().await.unwrap(), (1, 0, 1));

    // Collection: a locked session is spared, an idle one goes.
    let keys = SessionKeys::new("s2");
    let token = lock::call_token();
    let id = uuid::Uuid::new_v4().to_string();
    assert!(matches!(
        milan
            .begin(
                &keys,
                &token,
                Duration::from_secs(30),
                &id,
                T0 + 50,
                Duration::ZERO
            )
            .await
            .unwrap(),
        Begin::Acquired { .. }
    ));
    let idle = milan.idle_since("milan", T0 + 100, 0, 10).await.unwrap();
    assert_eq!(idle, ["s2", "s3"]);
    let collected = milan.collect_if_expired(&idle, T0 + 100).await.unwrap();
    let deleted = Collected::Deleted {
        proprietary: "milan".into(),
    };
    assert_eq!(collected, [Collected::Locked, deleted.clone()]);
    assert!(milan.release(&keys, &token, T0 + 60).await.unwrap());
    // Used since the cut-off (its last commit was at T0 + 1): not collected.
    assert_eq!(
        milan.collect_if_expired(&["s2".into()], T0).await.unwrap(),
        [Collected::Gone]
    );
    assert_eq!(
        milan
            .collect_if_expired(&["s2".into()], T0 + 100)
            .await
            .unwrap(),
        [deleted]
    );
    assert_exact(&milan).await;
    // Stubs and forced deletion.
    assert_eq!(milan.stubs_due(T0 + 100, 0, 10).await.unwrap(), ["s1"]);
    assert!(milan.delete_stub("s1").await.unwrap());
    assert!(cloud.delete_stub("s3").await.unwrap());
    assert!(cloud.delete_session("s1").await.unwrap());
    assert!(!cloud.delete_session("s1").await.unwrap());
    for store in [&milan, &cloud] {
        assert_exact(store).await;
        assert_eq!(store.index_sizes().await.unwrap(), (0, 0, 0));
        assert!(store.owners().await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn the_audit_finds_what_is_wrong_and_a_rebuild_repairs_it() {
    let redis = RedisServer::start();
    let milan = store(&redis, "milan");
    for i in 0..20 {
        assert!(call(&milan, &format!("s{i}"), b"sv", T0 + i).await);
    }
    fence(&milan, "s0", T0 + 100).await;
    assert_exact(&milan).await;
    let mut connection = redis.connection();
    let lru = node::lru("milan");
    let _: () = connection.zrem(&lru, "s5").unwrap();
    let _: () = connection.zadd(&lru, "s6", 1).unwrap();
    let _: () = connection.zadd(node::STUBS, "ghost", 1).unwrap();
    let _: () = connection.zadd(node::MIGRATING, "s7", 1).unwrap();
    let _: () = connection.zadd(node::lru("rome"), "s8", 1).unwrap();
    let problems = milan.audit_indexes().await.unwrap().problems;
    for expected in [
        "s5: missing",
        "s6: scored 1",
        "ghost: stray",
        "s7: wrongly in",
        "s8: stray entry of edge:idx:lru:rome",
    ] {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{expected:?} not reported in {problems:#?}"
        );
    }
    let report = milan.rebuild_indexes(7, T0 + 200).await.unwrap();
    assert_eq!(report.sessions, 20);
    // s7 is taken out of `migrating` when it is re-indexed; ghost (no
    // session) and s8 (in another node's index) are found by the walk of
    // the indexes.
    assert_eq!(report.stale_entries, 2);
    assert_exact(&milan).await;
    assert_eq!(milan.owners().await.unwrap(), ["milan"]);
}

#[tokio::test]
async fn request_ids_are_trimmed_only_when_a_bound_is_reached() {
    let redis = RedisServer::start();
    let milan = store(&redis, "milan");
    let keys = SessionKeys::new("busy");
    let id = |i: i64| format!("00000000-0000-4000-8000-{i:012}");
    let commit = |id: String, now_ms: i64, retention: IdRetention| {
        let milan = milan.clone();
        let keys = keys.clone();
        async move {
            let token = lock::call_token();
            let Begin::Acquired { proprietary, lease } = milan
                .begin(
                    &keys,
                    &token,
                    Duration::from_secs(30),
                    &id,
                    now_ms,
                    Duration::ZERO,
                )
                .await
                .unwrap()
            else {
                panic!("not acquired");
            };
            assert!(
                milan
                    .commit(
                        &keys,
                        &token,
                        &proprietary,
                        &[],
                        CommitRecord {
                            request_id: &id,
                            now_ms,
                            retained: None
                        },
                        retention,
                        lease
                    )
                    .await
                    .unwrap()
            );
        }
    };
    // Records live in the metadata while few, then in the ids hash.
    let ids = |redis: &RedisServer| -> usize {
        let mut fields: Vec<String> = redis.connection().hkeys(keys.meta()).unwrap();
        fields.extend(
            redis
                .connection()
                .hkeys::<_, Vec<String>>(&keys.ids())
                .unwrap(),
        );
        fields
            .iter()
            .filter(|f| edge_store::layout::is_request_id(f.as_bytes()))
            .count()
    };
    let kept = |redis: &RedisServer, id: &str| -> bool {
        redis.connection().hexists(keys.meta(), id).unwrap()
            || redis.connection().hexists(keys.ids(), id).unwrap()
    };
    let by_count = IdRetention {
        window: Duration::from_secs(3600),
        max_ids: 16,
        ..RETENTION
    };
    for i in 0..16 {
        commit(id(i), T0 + i, by_count).await;
    }
    assert_eq!(ids(&redis), 16);
    // Over the bound: down to seven eighths of it, the oldest first.
    commit(id(16), T0 + 16, by_count).await;
    assert_eq!(ids(&redis), 14);
    assert!(!kept(&redis, &id(2)));
    assert!(kept(&redis, &id(3)));
    // Past the first 16, the records moved to a hash Redis keeps as a table.
    let encoding: String = redis::cmd("OBJECT")
        .arg("ENCODING")
        .arg(keys.ids())
        .query(&mut redis.connection())
        .unwrap();
    assert_eq!(encoding, "hashtable");
    assert_eq!(
        redis.connection().hlen::<_, usize>(&keys.ids()).unwrap(),
        14 + 1
    );
    // By age: kept for the window, trimmed once past it by an eighth.
    let by_age = IdRetention {
        window: Duration::from_millis(800),
        ..RETENTION
    };
    let counters = |redis: &RedisServer| -> edge_store::layout::Counters {
        let text: Vec<u8> = redis
            .connection()
            .hget(keys.meta(), meta::COUNTERS)
            .unwrap();
        edge_store::layout::Counters::parse(&text)
    };
    let trim_at = counters(&redis).trim_at;
    // Rescheduled by the count trim: from the oldest kept id, plus the window
    // and an eighth of it.
    assert_eq!(trim_at, T0 + 3 + 3600 * 1000 + 450 * 1000);
    commit(id(100), trim_at, by_age).await;
    assert_eq!(ids(&redis), 1, "every id older than the window went");
    let trim_at = counters(&redis).trim_at;
    commit(id(101), trim_at - 1, by_age).await;
    assert_eq!(ids(&redis), 2, "not due yet: nothing trimmed");
}

#[tokio::test]
async fn a_node_written_by_the_previous_release_is_converted_while_it_serves() {
    let redis = RedisServer::start();
    let mut connection = redis.connection();
    let at = layout_v1::now_ms() - 60_000;
    for i in 0..40 {
        for call in 0..3 {
            let id = format!("00000000-0000-4000-8000-{:012}", i * 10 + call);
            let answer = layout_v1::blocking_call(
                &mut connection,
                "milan",
                &format!("old-{i}"),
                &id,
                &[("cart", b"s[\"apple\"]"), ("photo", &[b'b', 0, 1, 2])],
                Some(b"200 text/plain\nadded"),
                at + i * 10 + call,
            );
            assert_eq!(answer, "acquired");
        }
    }
    // A migration left undecided, and a stub of a session that moved on.
    let fenced_epoch = layout_v1::fence_out(&mut connection, "milan", "old-38", at + 500);
    let moved_epoch = layout_v1::fence_out(&mut connection, "milan", "old-39", at + 501);
    layout_v1::finalize(&mut connection, "old-39", moved_epoch, "italy");

    let milan = store(&redis, "milan");
    assert_eq!(milan.layout_version().await.unwrap(), None);
    // Served before the upgrade ran: a repeated request id replays its answer…
    let keys = SessionKeys::new("old-0");
    let repeat = milan
        .begin(
            &keys,
            &lock::call_token(),
            Duration::from_secs(30),
            "00000000-0000-4000-8000-000000000001",
            layout_v1::now_ms(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(
        repeat,
        Begin::Completed(Some(b"200 text/plain\nadded".to_vec()))
    );
    // …a call on a stub of that layout is sent where the session went, and
    // the lock its pipelined begin took goes back…
    let stub_keys = SessionKeys::new("old-39");
    let redirected = milan
        .begin(
            &stub_keys,
            &lock::call_token(),
            Duration::from_secs(30),
            "00000000-0000-4000-8000-000000000039",
            layout_v1::now_ms(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(
        redirected,
        Begin::Moved {
            location: "italy".into()
        }
    );
    let locked: bool = connection.exists(stub_keys.lock()).unwrap();
    assert!(!locked, "the stub's lock was given back");
    // …a new call commits on the converted session…
    assert!(call(&milan, "old-1", b"snew", layout_v1::now_ms()).await);
    // …and a read-only call finds the session.
    let located = milan
        .locate_for_read(&SessionKeys::new("old-2"))
        .await
        .unwrap();
    assert_eq!(located.location.as_deref(), Some("milan"));

    // …and a migration the previous manager left undecided goes on.
    let exported = milan
        .export("old-38", fenced_epoch)
        .await
        .unwrap()
        .expect("the fenced session is exported");
    assert_eq!((exported.data.len(), exported.ids.len()), (2, 3));

    let report = milan.upgrade(16).await.unwrap();
    // The five sessions the calls above met are converted already.
    assert_eq!((report.sessions, report.converted), (40, 35));
    assert_eq!(milan.layout_version().await.unwrap(), Some(2));
    assert!(milan.upgrade(16).await.unwrap().already_current);
    assert_exact(&milan).await;
    assert_eq!(milan.index_sizes().await.unwrap(), (38, 1, 1));

    let old = milan.meta("old-7").await.unwrap().unwrap();
    assert_eq!(
        (
            old.proprietary.as_str(),
            old.location.as_str(),
            old.created_ms,
            old.accessed_ms,
            old.version
        ),
        ("milan", "milan", at + 70, at + 72, 3)
    );
    let data = milan.data("old-7").await.unwrap();
    assert_eq!(data.len(), 2);
    assert!(data.contains(&("photo".to_string(), vec![b'b', 0, 1, 2])));
    let fenced = milan.meta("old-38").await.unwrap().unwrap();
    assert_eq!(fenced.fence, Some(Fence::Out(fenced_epoch)));
    assert_eq!(fenced.fenced_at_ms, at + 500);
    let stub = milan.meta("old-39").await.unwrap().unwrap();
    assert_eq!((stub.location.as_str(), stub.has_data), ("italy", false));
    // Nothing of the old layout is left.
    let leftovers: Vec<String> = connection.keys("edge:{*}:re*").unwrap();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The converted ids keep at-most-once: each replays its answer.
    let keys = SessionKeys::new("old-20");
    let repeat = milan
        .begin(
            &keys,
            &lock::call_token(),
            Duration::from_secs(30),
            "00000000-0000-4000-8000-000000000202",
            layout_v1::now_ms(),
            Duration::ZERO,
        )
        .await
        .unwrap();
    assert_eq!(
        repeat,
        Begin::Completed(Some(b"200 text/plain\nadded".to_vec()))
    );
}

#[tokio::test]
async fn retained_responses_are_bounded_per_session_and_per_node() {
    let redis = RedisServer::start();
    let milan = store(&redis, "milan");
    let bounded = IdRetention {
        session_replay_max: 1000,
        node_replay_max: 1400,
        ..RETENTION
    };
    let response = vec![b'r'; 300];
    let commit = |session: &'static str, id: String, now_ms: i64, retention: IdRetention| {
        let (milan, response) = (milan.clone(), response.clone());
        async move {
            let keys = SessionKeys::new(session);
            let token = lock::call_token();
            let Begin::Acquired { proprietary, lease } = milan
                .begin(
                    &keys,
                    &token,
                    Duration::from_secs(30),
                    &id,
                    now_ms,
                    Duration::ZERO,
                )
                .await
                .unwrap()
            else {
                panic!("not acquired");
            };
            let record = CommitRecord {
                request_id: &id,
                now_ms,
                retained: Some(&response),
            };
            assert!(
                milan
                    .commit(&keys, &token, &proprietary, &[], record, retention, lease)
                    .await
                    .unwrap()
            );
        }
    };
    let id = |i: i64| format!("00000000-0000-4000-8000-{i:012}");
    let replay_bytes = |session: &str| -> (u64, u64) {
        let mut connection = redis.connection();
        let text: Vec<u8> = connection
            .hget(SessionKeys::new(session).meta(), meta::COUNTERS)
            .unwrap();
        let session = edge_store::layout::Counters::parse(&text).replay_bytes;
        let node: u64 = connection.get(node::REPLAY_BYTES).unwrap();
        (session, node)
    };
    for i in 0..3 {
        commit("cart", id(i), T0 + i, bounded).await;
    }
    assert_eq!(replay_bytes("cart"), (900, 900));
    // Over the session's 1,000 bytes: the oldest lose their bodies, down to 750.
    commit("cart", id(3), T0 + 3, bounded).await;
    assert_eq!(replay_bytes("cart"), (600, 600));
    let replayed = |i: i64| {
        let milan = milan.clone();
        async move {
            match milan
                .begin(
                    &SessionKeys::new("cart"),
                    &lock::call_token(),
                    Duration::from_secs(30),
                    &id(i),
                    T0 + 10,
                    Duration::ZERO,
                )
                .await
                .unwrap()
            {
                Begin::Completed(retained) => retained,
                other => panic!("{other:?}"),
            }
        }
    };
    assert_eq!(
        replayed(0).await,
        None,
        "the oldest keeps its id, not its body"
    );
    assert_eq!(replayed(3).await.as_deref(), Some(&response[..]));
    // The node's 1,400 bytes: another session's responses fit until then.
    commit("other", id(10), T0 + 20, bounded).await;
    commit("other", id(11), T0 + 21, bounded).await;
    commit("other", id(12), T0 + 22, bounded).await;
    assert_eq!(replay_bytes("other"), (600, 1200), "the third did not fit");
    assert_exact(&milan).await;
    // Deleting a session gives its bytes back.
    assert!(milan.delete_session("cart").await.unwrap());
    assert_eq!(replay_bytes("other"), (600, 600));
    assert_exact(&milan).await;
}

#[tokio::test]
async fn calls_wait_in_line_and_are_handed_the_lock_in_order() {
    let redis = RedisServer::start();
    let milan = store(&redis, "milan");
    let keys = SessionKeys::new("hot");
    let id = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
    let ttl = Duration::from_secs(30);
    let wait = Duration::from_secs(20);
    let holder = lock::call_token();
    let now = layout_v1::now_ms();
    assert!(matches!(
        milan
            .begin(&keys, &holder, ttl, &id(0), now, wait)
            .await
            .unwrap(),
        Begin::Acquired { .. }
    ));
    // Three calls get in line, in this order.
    let tokens: Vec<String> = (1..=3).map(|_| lock::call_token()).collect();
    for (i, token) in tokens.iter().enumerate() {
        assert!(matches!(
            milan
                .begin(&keys, token, ttl, &id(i + 1), now, wait)
                .await
                .unwrap(),
            Begin::Queued { .. }
        ));
    }
    let waiting: Vec<_> = tokens
        .iter()
        .map(|token| {
            let (milan, keys, token) = (milan.clone(), keys.clone(), token.clone());
            tokio::spawn(async move {
                let turn = milan.wait_turn(&keys, &token, wait).await.unwrap();
                (token, turn)
            })
        })
        .collect();
    // Each release hands the lock to the next in line, who releases it in turn.
    let mut order = Vec::new();
    let mut current = holder;
    for waiter in waiting {
        assert!(
            milan
                .release(&keys, &current, layout_v1::now_ms())
                .await
                .unwrap()
        );
        let (token, turn) = waiter.await.unwrap();
        assert_eq!(turn, Turn::Go);
        let lock: String = redis.connection().get(keys.lock()).unwrap();
        assert_eq!(
            lock,
            format!("{token}{}", lock::QUEUED_MARK),
            "the lock was handed to the woken call (marked: it hands over in turn)"
        );
        order.push(token.clone());
        current = token;
    }
    assert_eq!(order, tokens);
    assert!(
        milan
            .release(&keys, &current, layout_v1::now_ms())
            .await
            .unwrap()
    );
    let free: bool = redis.connection().exists(keys.lock()).unwrap();
    assert!(!free, "with nobody in line the lock is deleted");

    // The wait is bounded: a holder that never lets go, a waiter that gives up.
    let stuck = lock::call_token();
    milan
        .begin(&keys, &stuck, ttl, &id(10), layout_v1::now_ms(), wait)
        .await
        .unwrap();
    let patient = lock::call_token();
    let short = Duration::from_millis(300);
    assert!(matches!(
        milan
            .begin(&keys, &patient, ttl, &id(11), layout_v1::now_ms(), short)
            .await
            .unwrap(),
        Begin::Queued { .. }
    ));
    let started = std::time::Instant::now();
    assert_eq!(
        milan.wait_turn(&keys, &patient, short).await.unwrap(),
        Turn::TimedOut
    );
    assert!(started.elapsed() >= short);
    let queue: usize = redis.connection().llen(keys.queue()).unwrap();
    assert_eq!(queue, 0, "a call that gave up left the line");
    // A call whose request id completed while it waited is told to begin
    // again (and then replays the answer).
    let repeat = lock::call_token();
    assert!(matches!(
        milan
            .begin(&keys, &repeat, ttl, &id(10), layout_v1::now_ms(), wait)
            .await
            .unwrap(),
        Begin::Queued { .. }
    ));
    let record = CommitRecord {
        request_id: &id(10),
        now_ms: layout_v1::now_ms(),
        retained: Some(b"200 text/plain\nfirst"),
    };
    assert!(
        milan
            .commit(
                &keys,
                &stuck,
                "milan",
                &[],
                record,
                RETENTION,
                Lease::default()
            )
            .await
            .unwrap()
    );
    assert_eq!(
        milan.wait_turn(&keys, &repeat, wait).await.unwrap(),
        Turn::Again
    );
    assert_eq!(
        milan
            .begin(&keys, &repeat, ttl, &id(10), layout_v1::now_ms(), wait)
            .await
            .unwrap(),
        Begin::Completed(Some(b"200 text/plain\nfirst".to_vec()))
    );
    // Never in line behind a migration: that is answered at once.
    let epoch = fence(&milan, "hot", layout_v1::now_ms()).await;
    assert!(matches!(
        milan
            .begin(
                &keys,
                &lock::call_token(),
                ttl,
                &id(12),
                layout_v1::now_ms(),
                wait
            )
            .await
            .unwrap(),
        Begin::Locked {
            holder: LockHolder::Migration,
            ..
        }
    ));
    assert!(milan.abort_out("hot", epoch).await.unwrap());
    assert_exact(&milan).await;
}

/// The commit of a call that took its lock with the pipelined begin is a
/// watched transaction: it writes nothing once the lock was lost, and when
/// a call got in line meanwhile it hands the lock over like the script.
#[tokio::test]
async fn a_transaction_commit_is_fenced_and_hands_the_lock_over() {
    let redis = RedisServer::start();
    let milan = store(&redis, "milan");
    let keys = SessionKeys::new("watched");
    // The first call creates the session (by the script); later ones take
    // the pipelined way.
    assert!(call(&milan, "watched", b"first", layout_v1::now_ms()).await);
    let ttl = Duration::from_secs(30);
    let wait = Duration::from_secs(20);
    let id = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
    let record = |i: usize| CommitRecord {
        request_id: Box::leak(id(i).into_boxed_str()),
        now_ms: layout_v1::now_ms(),
        retained: None,
    };
    let begin = |token: String, i: usize, wait: Duration| {
        let milan = milan.clone();
        let keys = keys.clone();
        async move {
            milan
                .begin(&keys, &token, ttl, &id(i), layout_v1::now_ms(), wait)
                .await
                .unwrap()
        }
    };
    let lost = lock::call_token();
    let Begin::Acquired { lease, .. } = begin(lost.clone(), 1, Duration::ZERO).await else {
        panic!("the lock was free");
    };
    // Its lock expires and another call takes it.
    let _: () = redis.connection().del(keys.lock()).unwrap();
    let thief = lock::call_token();
    let Begin::Acquired {
        lease: thief_lease, ..
    } = begin(thief.clone(), 2, Duration::ZERO).await
    else {
        panic!("the lock was free again");
    };
    let writes: [(&str, Option<&[u8]>); 1] = [("key", Some(b"late"))];
    assert!(
        !milan
            .commit(&keys, &lost, "milan", &writes, record(1), RETENTION, lease)
            .await
            .unwrap(),
        "a call that lost its lock commits nothing"
    );
    let value: Vec<u8> = redis.connection().hget(keys.data(), "key").unwrap();
    assert_eq!(value, b"first");
    let holder: String = redis.connection().get(keys.lock()).unwrap();
    assert_eq!(holder, thief, "nor does it touch the new holder's lock");
    // A call gets in line behind the thief, whose commit hands it the lock.
    let patient = lock::call_token();
    assert!(matches!(
        begin(patient.clone(), 3, wait).await,
        Begin::Queued { .. }
    ));
    let turn = {
        let (milan, keys, patient) = (milan.clone(), keys.clone(), patient.clone());
        tokio::spawn(async move { milan.wait_turn(&keys, &patient, wait).await.unwrap() })
    };
    let writes: [(&str, Option<&[u8]>); 1] = [("key", Some(b"second"))];
    assert!(
        milan
            .commit(
                &keys,
                &thief,
                "milan",
                &writes,
                record(2),
                RETENTION,
                thief_lease
            )
            .await
            .unwrap()
    );
    assert_eq!(turn.await.unwrap(), Turn::Go);
    let holder: String = redis.connection().get(keys.lock()).unwrap();
    assert_eq!(holder, format!("{patient}{}", lock::QUEUED_MARK));
    let writes: [(&str, Option<&[u8]>); 1] = [("key", Some(b"third"))];
    assert!(
        milan
            .commit(
                &keys,
                &patient,
                "milan",
                &writes,
                record(3),
                RETENTION,
                Lease::default()
            )
            .await
            .unwrap()
    );
    let value: Vec<u8> = redis.connection().hget(keys.data(), "key").unwrap();
    assert_eq!(value, b"third");
    let free: bool = redis.connection().exists(keys.lock()).unwrap();
    assert!(!free);
    assert_exact(&milan).await;
}

/// Big values are committed by a watched transaction even by a call whose
/// begin took the script's way (a new session), fenced like any commit,
/// and moved byte-exact by a migration.
#[tokio::test]
async fn big_values_are_committed_fenced_and_moved_byte_exact() {
    let (milan_redis, cloud_redis) = (RedisServer::start(), RedisServer::start());
    let (milan, cloud) = (store(&milan_redis, "milan"), store(&cloud_redis, "cloud"));
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i % 251) as u8).collect();
    let ttl = Duration::from_secs(30);
    let id = |i: usize| format!("00000000-0000-4000-8000-{i:012}");
    let begin = |session: &'static str, token: String, i: usize| {
        let milan = milan.clone();
        async move {
            let keys = SessionKeys::new(session);
            match milan
                .begin(
                    &keys,
                    &token,
                    ttl,
                    &id(i),
                    layout_v1::now_ms(),
                    Duration::ZERO,
                )
                .await
                .unwrap()
            {
                Begin::Acquired { proprietary, lease } => (proprietary, lease),
                other => panic!("{other:?}"),
            }
        }
    };
    let record = |i: usize| CommitRecord {
        request_id: Box::leak(id(i).into_boxed_str()),
        now_ms: layout_v1::now_ms(),
        retained: None,
    };
    let writes: [(&str, Option<&[u8]>); 2] = [("big", Some(&big)), ("small", Some(b"s"))];
    // A new session: the begin is the script's, the commit a transaction.
    let token = lock::call_token();
    let (proprietary, lease) = begin("big", token.clone(), 1).await;
    let keys = SessionKeys::new("big");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query(&mut milan_redis.connection())
        .unwrap();
    assert!(
        milan
            .commit(
                &keys,
                &token,
                &proprietary,
                &writes,
                record(1),
                RETENTION,
                lease
            )
            .await
            .unwrap()
    );
    let stats: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut milan_redis.connection())
        .unwrap();
    assert!(!stats.contains("cmdstat_fcall"), "no script: {stats}");
    assert!(stats.contains("cmdstat_exec:calls=1,"), "{stats}");
    let stored: Vec<u8> = milan_redis.connection().hget(keys.data(), "big").unwrap();
    assert!(stored == big, "the big value is stored byte-exact");
    // A call that lost its lock writes nothing, big values included.
    let lost = lock::call_token();
    let (_, lease) = begin("big-lost", lost.clone(), 2).await;
    let lost_keys = SessionKeys::new("big-lost");
    let _: () = milan_redis.connection().del(lost_keys.lock()).unwrap();
    let thief = lock::call_token();
    let _thief_lease = begin("big-lost", thief.clone(), 3).await;
    let received = |redis: &RedisServer| -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query(&mut redis.connection())
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_net_input_bytes:"))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let before = received(&milan_redis);
    assert!(
        !milan
            .commit(
                &lost_keys,
                &lost,
                "milan",
                &writes,
                record(2),
                RETENTION,
                lease
            )
            .await
            .unwrap()
    );
    let sent = received(&milan_redis) - before;
    assert!(
        sent < 16 * 1024,
        "a call that lost its lock does not even send its values ({sent} bytes)"
    );
    let written: bool = milan_redis
        .connection()
        .hexists(lost_keys.data(), "big")
        .unwrap();
    assert!(!written);
    let holder: String = milan_redis.connection().get(lost_keys.lock()).unwrap();
    assert_eq!(holder, thief);
    // A call gets in line meanwhile: the script hands the lock over, in
    // one transaction beside the big writes (never through its arguments).
    // The same on a Redis that lost the library meanwhile (a new release's
    // library, say): it is loaded before the transaction, which would
    // otherwise write the values without their commit.
    let bigger: Vec<u8> = big.iter().rev().copied().collect();
    for (i, value, flush) in [(4, &bigger, false), (6, &big, true)] {
        let holder = lock::call_token();
        let (_, lease) = begin("big", holder.clone(), i).await;
        let patient = lock::call_token();
        let wait = Duration::from_secs(20);
        let queued = milan
            .begin(&keys, &patient, ttl, &id(i + 1), layout_v1::now_ms(), wait)
            .await
            .unwrap();
        assert!(matches!(queued, Begin::Queued { .. }));
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query(&mut milan_redis.connection())
            .unwrap();
        if flush {
            let _: () = redis::cmd("FUNCTION")
                .arg("FLUSH")
                .query(&mut milan_redis.connection())
                .unwrap();
        }
        let writes: [(&str, Option<&[u8]>); 1] = [("big", Some(value))];
        let committed = milan
            .commit(
                &keys,
                &holder,
                "milan",
                &writes,
                record(i),
                RETENTION,
                lease,
            )
            .await
            .unwrap();
        assert!(committed, "flush {flush}");
        let stats: String = redis::cmd("INFO")
            .arg("commandstats")
            .query(&mut milan_redis.connection())
            .unwrap();
        assert!(
            stats.contains("cmdstat_multi:calls=2,"),
            "the watched transaction, refused, then the one beside the script: {stats}"
        );
        let turn = milan.wait_turn(&keys, &patient, Duration::from_secs(5));
        assert_eq!(turn.await.unwrap(), Turn::Go);
        let stored: Vec<u8> = milan_redis.connection().hget(keys.data(), "big").unwrap();
        assert!(stored == *value);
        let recorded: bool = milan_redis
            .connection()
            .hexists(keys.meta(), id(i))
            .unwrap();
        assert!(
            recorded,
            "the commit's request id is recorded with its writes"
        );
        let now = layout_v1::now_ms();
        assert!(milan.release(&keys, &patient, now).await.unwrap());
    }
    // The migration copies it byte-exact, and leaves no stage behind.
    let epoch = fence(&milan, "big", layout_v1::now_ms()).await;
    let exported = milan.export("big", epoch).await.unwrap().unwrap();
    let stored = cloud
        .import(
            "big",
            &lock::migration_token(),
            Duration::from_secs(60),
            "milan",
            epoch,
            layout_v1::now_ms(),
            &exported,
        )
        .await
        .unwrap();
    assert_eq!(stored, ImportOutcome::Stored);
    let copied: Vec<u8> = cloud_redis.connection().hget(keys.data(), "big").unwrap();
    assert!(copied == big, "the big value arrives byte-exact");
    let stages: Vec<String> = cloud_redis.connection().keys("edge:{big}:stage:*").unwrap();
    assert!(stages.is_empty(), "{stages:?}");
    assert_exact(&cloud).await;
}

#[tokio::test]
async fn many_request_ids_move_with_their_session() {
    let (milan_redis, cloud_redis) = (RedisServer::start(), RedisServer::start());
    let (milan, cloud) = (store(&milan_redis, "milan"), store(&cloud_redis, "cloud"));
    let keys = SessionKeys::new("busy");
    let id = |i: i64| format!("00000000-0000-4000-8000-{i:012}");
    for i in 0..20 {
        let token = lock::call_token();
        let begun = milan
            .begin(
                &keys,
                &token,
                Duration::from_secs(30),
                &id(i),
                T0 + i,
                Duration::ZERO,
            )
            .await
            .unwrap();
        let Begin::Acquired { lease, .. } = begun else {
            panic!("not acquired: {begun:?}");
        };
        let answer = format!("200 text/plain\nanswer {i}");
        let record = CommitRecord {
            request_id: &id(i),
            now_ms: T0 + i,
            retained: Some(answer.as_bytes()),
        };
        assert!(
            milan
                .commit(&keys, &token, "milan", &[], record, RETENTION, lease)
                .await
                .unwrap()
        );
    }
    let epoch = fence(&milan, "busy", T0 + 100).await;
    let exported = milan.export("busy", epoch).await.unwrap().unwrap();
    assert_eq!(exported.ids.len(), 20);
    let stored = cloud
        .import(
            "busy",
            &lock::migration_token(),
            Duration::from_secs(60),
            "milan",
            epoch,
            T0 + 101,
            &exported,
        )
        .await
        .unwrap();
    assert_eq!(stored, ImportOutcome::Stored);
    assert!(cloud.activate("busy", epoch).await.unwrap());
    assert!(
        milan
            .finalize("busy", epoch, "cloud", T0 + 102)
            .await
            .unwrap()
    );
    for i in [0, 7, 19] {
        let replay = cloud
            .begin(
                &keys,
                &lock::call_token(),
                Duration::from_secs(30),
                &id(i),
                T0 + 200,
                Duration::ZERO,
            )
            .await
            .unwrap();
        assert_eq!(
            replay,
            Begin::Completed(Some(format!("200 text/plain\nanswer {i}").into_bytes()))
        );
    }
    let left: bool = milan_redis.connection().exists(keys.ids()).unwrap();
    assert!(!left, "the source's records went with the data");
    assert_exact(&milan).await;
    assert_exact(&cloud).await;
}
