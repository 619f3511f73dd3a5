//! The scale run: one node (milan, under cloud) filled with N small
//! sessions, its manager run as a process of its own, and the cost of each
//! of its decisions measured. Shared by `cargo bench -p offloading-manager
//! --bench scale` (10k, 100k, 1M sessions) and its short form in the tests.
//!
//! A small session is one 100-byte value written by three blocking calls
//! (so three request ids, each with its retained answer). A sample of
//! sessions is made through the real commit path (HTTP calls to a function
//! of the node); the rest are copies of the first one (`DUMP`/`RESTORE` of
//! each of its keys, then its own last-access time in its metadata and its
//! index), so that they are laid out exactly as the commit path lays them
//! out; a few copies are compared with the sample key by key. 1% of the
//! copies were last used two days ago (expired under the default one-day
//! expiration).
//!
//! With `legacy`, the node is filled in the previous release's layout
//! (through that release's own scripts, `test_support::layout_v1`) and the
//! manager binary given is that release's, so that both can be measured in
//! one run on one machine. No call is made to the node then (this
//! release's functions would convert the sessions they touch).

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use edge_store::SessionKeys;
use edge_store::layout::{LAYOUT_KEY, LAYOUT_VERSION, config, meta, node};
use test_support::layout_v1;

use crate::common::{Cluster, MANAGER, ManagerProcess};

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Sessions on the node.
    pub sessions: usize,
    /// Of which made through the commit path.
    pub sample: usize,
    /// The manager binary to run.
    pub manager: PathBuf,
    /// The node and the manager are the previous release's.
    pub legacy: bool,
    /// Compare the indexes with a full scan at the end.
    pub audit: bool,
}

/// What was measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    pub sessions: usize,
    pub legacy: bool,
    pub fill: Duration,
    pub bytes_per_session: f64,
    pub idle_trigger: Duration,
    pub idle_gc: Duration,
    pub lru_pick: Option<Duration>,
    pub gc_expired: Duration,
    pub gc_deleted: u64,
    pub gc_expected: u64,
    pub policy_run: Option<Duration>,
    pub policy_freed: i64,
    pub manager_peak_rss_kib: u64,
    pub calls: usize,
    pub call_p50: Option<Duration>,
    pub call_p99: Option<Duration>,
    pub calls_failed: usize,
    pub audit: Option<(Duration, usize)>,
}

const VALUE_BYTES: usize = 100;
const CALLS_PER_SESSION: usize = 3;
/// The retained answer of the `note` function ("ok", text/plain).
const RETAINED: &[u8] = b"200 text/plain; charset=utf-8\nok";
const DAY_MS: i64 = 86_400_000;

fn name(i: usize) -> String {
    format!("session-{i:07}")
}

fn now_ms() -> i64 {
    layout_v1::now_ms()
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    (!sorted.is_empty()).then(|| sorted[((sorted.len() - 1) as f64 * p).round() as usize])
}

async fn manager_command(cluster: &Cluster, query: &[(&str, &str)]) -> (Duration, String) {
    let started = Instant::now();
    let answer = cluster
        .client
        .post(format!(
            "{}/function/{MANAGER}",
            cluster.node("milan").gateway
        ))
        .query(query)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let body = answer.text().await.unwrap();
    assert!(status.is_success(), "{query:?}: {status} {body}");
    (started.elapsed(), body)
}

/// One blocking call of `note` on `session` through milan's gateway.
async fn note(cluster: &Cluster, session: &str, body: Vec<u8>) -> reqwest::StatusCode {
    cluster
        .client
        .post(format!("{}/function/note", cluster.node("milan").gateway))
        .header("X-session", session)
        .header("X-session-request-id", uuid::Uuid::new_v4().to_string())
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
}

/// The sample, through the commit path (or the previous release's).
async fn fill_sample(cluster: &Cluster, options: &Options) {
    let value = vec![b'v'; VALUE_BYTES];
    if options.legacy {
        let mut redis = cluster.node("milan").connection();
        let mut tagged = vec![b'b'];
        tagged.extend_from_slice(&value);
        for i in 0..options.sample {
            for _ in 0..CALLS_PER_SESSION {
                let id = uuid::Uuid::new_v4().to_string();
                layout_v1::blocking_call(
                    &mut redis,
                    "milan",
                    &name(i),
                    &id,
                    &[("note", &tagged)],
                    Some(RETAINED),
                    now_ms(),
                );
            }
        }
        return;
    }
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let workers = (0..8).map(|_| {
        let next = Arc::clone(&next);
        let value = value.clone();
        async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= options.sample {
                    return;
                }
                for _ in 0..CALLS_PER_SESSION {
                    assert_eq!(note(cluster, &name(i), value.clone()).await, 200);
                }
            }
        }
    });
    futures_util::future::join_all(workers).await;
}

/// The keys of a session in the node's layout.
fn session_keys(session: &str, legacy: bool) -> Vec<String> {
    if legacy {
        let [meta, _lock, data, reqs, resp] = layout_v1::keys(session);
        vec![meta, data, reqs, resp]
    } else {
        let keys = SessionKeys::new(session);
        vec![keys.meta().to_string(), keys.data().to_string()]
    }
}

fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Copies of the first sample session for the rest, in pipelines.
fn fill_copies(cluster: &Cluster, options: &Options) -> u64 {
    let mut redis = cluster.node("milan").connection();
    let template: Vec<Vec<u8>> = session_keys(&name(0), options.legacy)
        .iter()
        .map(|key| {
            redis::cmd("DUMP")
                .arg(key)
                .query(&mut redis)
                .unwrap_or_else(|e| panic!("{key}: {e}"))
        })
        .collect();
    let base = now_ms() - 3_600_000;
    let mut expired = 0;
    let mut pipe = redis::pipe();
    for i in options.sample..options.sessions {
        let session = name(i);
        let accessed = if i % 100 == 0 {
            expired += 1;
            base - 2 * DAY_MS
        } else {
            base + (i as i64 % 3_000_000)
        };
        let keys = session_keys(&session, options.legacy);
        for (key, dump) in keys.iter().zip(&template) {
            pipe.cmd("RESTORE").arg(key).arg(0).arg(dump).ignore();
        }
        if options.legacy {
            pipe.cmd("HSET")
                .arg(&keys[0])
                .arg("timestampCreation")
                .arg(iso(accessed))
                .arg("timestampLastAccess")
                .arg(iso(accessed))
                .ignore();
        } else {
            pipe.cmd("HSET")
                .arg(&keys[0])
                .arg(meta::CREATED)
                .arg(accessed)
                .arg(meta::ACCESSED)
                .arg(accessed)
                .ignore();
            pipe.cmd("ZADD")
                .arg(node::lru("milan"))
                .arg(accessed)
                .arg(&session)
                .ignore();
        }
        if (i + 1 - options.sample).is_multiple_of(500) {
            let () = pipe.query(&mut redis).unwrap();
            pipe = redis::pipe();
        }
    }
    if !(options.sessions - options.sample).is_multiple_of(500) {
        let () = pipe.query(&mut redis).unwrap();
    }
    if !options.legacy {
        // The node's total of retained responses counts the copies' too.
        let counters: Vec<u8> = redis::cmd("HGET")
            .arg(SessionKeys::new(&name(0)).meta())
            .arg(meta::COUNTERS)
            .query(&mut redis)
            .unwrap();
        let replay = edge_store::layout::Counters::parse(&counters).replay_bytes;
        let _: () = redis::pipe()
            .cmd("INCRBY")
            .arg(node::REPLAY_BYTES)
            .arg(replay * (options.sessions - options.sample) as u64)
            .ignore()
            .cmd("SET")
            .arg(LAYOUT_KEY)
            .arg(LAYOUT_VERSION)
            .ignore()
            .query(&mut redis)
            .unwrap();
    }
    expired
}

/// A key's suffix, type, fields (name, value length) and memory.
type KeyShape = (String, String, Vec<(Vec<u8>, usize)>, u64);

/// Each copy checked has the keys, types, fields and sizes of a sample
/// session, and the same memory to within a few bytes.
fn check_copies(cluster: &Cluster, options: &Options) -> usize {
    let mut redis = cluster.node("milan").connection();
    let mut shape = |session: &str| -> Vec<KeyShape> {
        session_keys(session, options.legacy)
            .iter()
            .map(|key| {
                let kind: String = redis::cmd("TYPE").arg(key).query(&mut redis).unwrap();
                let fields: Vec<(Vec<u8>, usize)> = match kind.as_str() {
                    "hash" => {
                        let mut all: Vec<(Vec<u8>, Vec<u8>)> =
                            redis::cmd("HGETALL").arg(key).query(&mut redis).unwrap();
                        all.sort();
                        all.into_iter().map(|(f, v)| (f, v.len())).collect()
                    }
                    "zset" => {
                        let n: usize = redis::cmd("ZCARD").arg(key).query(&mut redis).unwrap();
                        vec![(b"zcard".to_vec(), n)]
                    }
                    other => panic!("{key} is a {other}"),
                };
                let bytes: u64 = redis::cmd("MEMORY")
                    .arg("USAGE")
                    .arg(key)
                    .arg("SAMPLES")
                    .arg(0)
                    .query(&mut redis)
                    .unwrap();
                let suffix = key.rsplit(':').next().unwrap().to_string();
                // Request ids differ from session to session; their number
                // and sizes do not.
                let mut fields: Vec<(Vec<u8>, usize)> = fields
                    .into_iter()
                    .map(|(field, len)| {
                        let id = edge_store::layout::is_request_id(&field)
                            || suffix == "reqs"
                            || suffix == "resp";
                        (if id { b"<request id>".to_vec() } else { field }, len)
                    })
                    .collect();
                fields.sort();
                (suffix, kind, fields, bytes)
            })
            .collect()
    };
    let reference = shape(&name(options.sample.min(2) - 1));
    let mut checked = 0;
    for i in (options.sample..options.sessions).step_by((options.sessions / 50).max(1)) {
        let copy = shape(&name(i));
        assert_eq!(copy.len(), reference.len());
        for (a, b) in copy.iter().zip(&reference) {
            assert_eq!(
                (&a.0, &a.1, &a.2),
                (&b.0, &b.1, &b.2),
                "{} differs",
                name(i)
            );
            assert!(
                a.3.abs_diff(b.3) <= 16,
                "{}: {} bytes, the sample {}",
                name(i),
                a.3,
                b.3
            );
        }
        checked += 1;
    }
    checked
}

/// Redis's memory without what its clients' connections take (their
/// buffers are the connections', not the sessions').
fn session_memory(node: &crate::common::Node) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query(&mut node.connection())
        .unwrap();
    let field = |name: &str| -> u64 {
        info.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0)
    };
    field("used_memory").saturating_sub(field("mem_clients_normal"))
}

/// Fills the node, starts its manager and measures.
pub async fn run(options: &Options) -> Figures {
    assert!(options.sample >= 1 && options.sample <= options.sessions);
    let cluster = Cluster::start().await;
    let milan = cluster.node("milan");
    let store = milan.store();
    let before = session_memory(milan);
    let started = Instant::now();
    fill_sample(&cluster, options).await;
    let expected_expired = fill_copies(&cluster, options);
    let fill = started.elapsed();
    let checked = check_copies(&cluster, options);
    let bytes = session_memory(milan).saturating_sub(before);
    eprintln!(
        "  {} sessions in {:.1} s ({} through the commit path); {checked} copies checked against the sample",
        options.sessions,
        fill.as_secs_f64(),
        options.sample
    );
    let mut figures = Figures {
        sessions: options.sessions,
        legacy: options.legacy,
        fill,
        bytes_per_session: bytes as f64 / options.sessions as f64,
        gc_expected: expected_expired,
        ..Figures::default()
    };

    let manager = ManagerProcess::start(&cluster, "milan", &options.manager, &[]).await;
    let used = store.used_memory().await.unwrap();
    milan.set_config(config::OFFLOAD_TOP_THRESHOLD, &(used * 4).to_string());
    milan.set_config(
        config::SESSIONS_DATA_EXPIRATION_TIME,
        &(10 * 86_400).to_string(),
    );
    let mut trigger = Vec::new();
    let mut gc = Vec::new();
    // The previous release's runs take minutes at 100k sessions: fewer.
    for _ in 0..if options.legacy { 3 } else { 5 } {
        let (took, body) = manager_command(&cluster, &[("command", "offload-trigger")]).await;
        assert_eq!(body, "0", "an idle trigger moves nothing");
        trigger.push(took);
        let (took, body) = manager_command(
            &cluster,
            &[
                ("command", "garbage-collector"),
                ("deletePolicy", "expiration"),
            ],
        )
        .await;
        assert_eq!(body, "0", "nothing is expired yet");
        gc.push(took);
    }
    figures.idle_trigger = median(trigger);
    figures.idle_gc = median(gc);
    if !options.legacy {
        let oldest: Vec<(String, f64)> = redis::cmd("ZRANGE")
            .arg(node::lru("milan"))
            .arg(0)
            .arg(0)
            .arg("WITHSCORES")
            .query(&mut milan.connection())
            .unwrap();
        let mut picks = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let pick = store
                .least_recently_used(&Default::default())
                .await
                .unwrap()
                .expect("a session to pick");
            picks.push(started.elapsed());
            assert_eq!(
                pick.accessed_ms, oldest[0].1 as i64,
                "the pick is the oldest"
            );
        }
        figures.lru_pick = Some(median(picks));
    }

    // Blocking calls go on while the collector and the policy run.
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = if options.legacy {
        Vec::new()
    } else {
        (0..4)
            .map(|c| {
                let stop = Arc::clone(&stop);
                let client = cluster.client.clone();
                let url = format!("{}/function/note", milan.gateway);
                let sample = options.sample;
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut failed = 0;
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let status = client
                            .post(&url)
                            .header("X-session", name(i % sample))
                            .header("X-session-request-id", uuid::Uuid::new_v4().to_string())
                            .body(vec![b'w'; VALUE_BYTES])
                            .send()
                            .await
                            .map(|r| r.status());
                        match status {
                            Ok(s) if s.is_success() => latencies.push(started.elapsed()),
                            _ => failed += 1,
                        }
                        i += 4;
                    }
                    (latencies, failed)
                })
            })
            .collect()
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    milan.set_config(config::SESSIONS_DATA_EXPIRATION_TIME, "86400");
    let (took, deleted) = manager_command(
        &cluster,
        &[
            ("command", "garbage-collector"),
            ("deletePolicy", "expiration"),
        ],
    )
    .await;
    figures.gc_expired = took;
    figures.gc_deleted = deleted.parse().unwrap();
    if !options.legacy {
        // Over the top threshold whatever used_memory does meanwhile, and
        // about 50 sessions' worth over the bottom one.
        let used = store.used_memory().await.unwrap();
        let fifty = (50.0 * figures.bytes_per_session) as u64;
        milan.set_config(config::OFFLOAD_TOP_THRESHOLD, "1");
        milan.set_config(
            config::OFFLOAD_BOTTOM_THRESHOLD,
            &(used - fifty).to_string(),
        );
        eprintln!("  policy: used_memory {used}, bottom {}", used - fifty);
        let (took, freed) = manager_command(&cluster, &[("command", "offload-trigger")]).await;
        figures.policy_run = Some(took);
        figures.policy_freed = freed.parse().unwrap();
        milan.set_config(config::OFFLOAD_TOP_THRESHOLD, &(used * 4).to_string());
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for client in clients {
        let (mine, failed) = client.await.unwrap();
        latencies.extend(mine);
        figures.calls_failed += failed;
    }
    latencies.sort();
    figures.calls = latencies.len();
    figures.call_p50 = percentile(&latencies, 0.5);
    figures.call_p99 = percentile(&latencies, 0.99);
    figures.manager_peak_rss_kib = manager.peak_rss_kib();
    drop(manager);
    if options.audit && !options.legacy {
        let started = Instant::now();
        let report = store.audit_indexes().await.unwrap();
        assert!(
            report.problems.is_empty(),
            "{:#?}",
            &report.problems[..report.problems.len().min(20)]
        );
        figures.audit = Some((started.elapsed(), report.sessions));
    }
    figures
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.2} ms")
    }
}

/// The figures as rows of a Markdown table.
pub fn table(rows: &[Figures]) -> String {
    let mut out = String::from(
        "| layout | sessions | bytes/session | idle offload-trigger | idle GC | one LRU pick | GC of 1% expired | policy run (bytes freed) | manager peak RSS | blocking calls meanwhile: n, p50, p99 (failed) |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for f in rows {
        let calls = match (f.call_p50, f.call_p99) {
            (Some(p50), Some(p99)) => {
                format!("{}, {}, {} ({})", f.calls, ms(p50), ms(p99), f.calls_failed)
            }
            _ => "—".into(),
        };
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} | {} | {} | {} ({} deleted of {}) | {} | {:.1} MiB | {} |\n",
            if f.legacy {
                "previous release"
            } else {
                "this release"
            },
            f.sessions,
            f.bytes_per_session,
            ms(f.idle_trigger),
            ms(f.idle_gc),
            f.lru_pick.map_or("—".into(), ms),
            ms(f.gc_expired),
            f.gc_deleted,
            f.gc_expected,
            f.policy_run
                .map_or("—".into(), |d| format!("{} ({})", ms(d), f.policy_freed)),
            f.manager_peak_rss_kib as f64 / 1024.0,
            calls,
        ));
    }
    out
}
