//! Offload time and redirect cost between two local nodes (m1 → milan of a
//! cloud → milan → m1 chain), each with its own redis-server.
//!
//! `cargo bench -p offloading-manager --bench offload` prints, for sessions
//! of 1 KiB, 1 MiB, 10 MiB and 100 MiB, the p50 and p90 of 20
//! `force-offload` calls, 3 at 100 MiB (fence, offer, binary transfer,
//! decision at the proprietary node, activation, deletion at the source), and the extra latency of one
//! redirect: a call through the proprietary node (307, then the holder)
//! against a call to the holder directly.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Cluster;
use edge_store::SessionKeys;
use redis::Commands;

const RUNS: usize = 20;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let cluster = Cluster::start().await;
    println!("offload m1 → milan, {RUNS} sessions per size, 3 at 100 MiB (p50 / p90):");
    for (label, size) in [
        ("1 KiB", 1024usize),
        ("1 MiB", 1 << 20),
        ("10 MiB", 10 << 20),
        ("100 MiB", 100 << 20),
    ] {
        let mut samples = Vec::new();
        let runs = if size >= 100 << 20 { 3 } else { RUNS };
        for run in 0..runs {
            let session = format!("bench-{size}-{run}");
            cluster.increment("m1", &session, 0).await;
            let keys = SessionKeys::new(&session);
            let mut payload = vec![b'b'];
            payload.extend(std::iter::repeat_n(0xA5u8, size));
            let mut redis = cluster.node("m1").connection();
            let _: () = redis.hdel(keys.data(), "bulk").unwrap();
            let _: () = redis.hset(keys.data(), "payload", payload).unwrap();
            let started = Instant::now();
            let answer = cluster
                .command(
                    "m1",
                    &[("command", "force-offload")],
                    &[("x-forced-session", &session)],
                )
                .await;
            let elapsed = started.elapsed();
            assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
            samples.push(elapsed);
        }
        let (p50, p90) = (percentile(&mut samples, 0.5), percentile(&mut samples, 0.9));
        println!("  {label:>7}: {:8.2} ms / {:8.2} ms", ms(p50), ms(p90));
    }

    // One redirect: m1 (proprietary) → 307 → milan, against milan directly.
    let session = "bench-redirect";
    cluster.increment("m1", session, 0).await;
    cluster
        .command(
            "m1",
            &[("command", "force-offload")],
            &[("x-forced-session", session)],
        )
        .await;
    let mut direct = Vec::new();
    let mut redirected = Vec::new();
    for _ in 0..200 {
        let started = Instant::now();
        let (status, _, redirects) = cluster.increment("milan", session, 0).await;
        assert_eq!((status.as_u16(), redirects), (200, 0));
        direct.push(started.elapsed());
        let started = Instant::now();
        let (status, _, redirects) = cluster.increment("m1", session, 1).await;
        assert_eq!((status.as_u16(), redirects), (200, 1));
        redirected.push(started.elapsed());
    }
    let (d50, r50) = (
        percentile(&mut direct, 0.5),
        percentile(&mut redirected, 0.5),
    );
    println!(
        "one redirect: {:.2} ms extra at p50 (holder directly {:.2} ms, through the proprietary node {:.2} ms; 200 calls each)",
        ms(r50.saturating_sub(d50)),
        ms(d50),
        ms(r50)
    );
}
