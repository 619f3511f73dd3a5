//! Big values through the call path: how a blocking upload and a
//! non-blocking read grow with the value's size.
//!
//! ```text
//! cargo bench -p edge-sdk --bench big_values [-- --runs 20]
//! ```
//!
//! It starts its own `redis-server` on a free port and two function servers
//! on `127.0.0.1:0`: **upload** (`#[blocking]`, stores the request body
//! under one key) and **read** (`#[nonblocking]`, answers that key's
//! value). For values of 1, 2, 5, 10 and 100 MiB it uploads `--runs`
//! sessions (default 20; 3 at 100 MiB), each a fresh one, then reads each
//! back, and prints p50/p90 of each, with the upload time per MiB: a cost
//! that grows linearly with the size keeps that figure flat. It checks every
//! read against what was uploaded. Client, servers and Redis share the
//! machine's cores and this process.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{NodeOptions, RedisServer, TestNode};
use edge_sdk::{Request, Session, blocking, nonblocking};

/// Stores the body under `payload`.
#[blocking]
async fn upload(req: Request, session: &mut Session) -> edge_sdk::Result<&'static str> {
    session.set_bytes("payload", req.body());
    Ok("ok")
}

/// Answers the stored payload.
#[nonblocking]
async fn read(_req: Request, session: &Session) -> edge_sdk::Result<Vec<u8>> {
    Ok(session
        .get_bytes("payload")
        .await?
        .map(Vec::<u8>::from)
        .unwrap_or_default())
}

const MIB: usize = 1 << 20;

fn percentile(samples: &mut [Duration], p: f64) -> f64 {
    samples.sort();
    let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
    samples[rank - 1].as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut runs = 20usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().and_then(|v| v.parse().ok()).expect("--runs N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let redis = RedisServer::start();
    let options = || NodeOptions {
        extra_env: vec![
            ("EDGE_MAX_BODY_BYTES", (128 * MIB).to_string()),
            ("EDGE_REDIS_TIMEOUT_MS", "30000".to_string()),
        ],
        ..NodeOptions::edge()
    };
    let uploader = TestNode::start(upload, &redis, options()).await;
    let reader = TestNode::start(read, &redis, options()).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    println!("big values, one fresh session per upload (p50 / p90, ms):");
    println!(
        "{:>8} {:>5} {:>10} {:>10} {:>12} {:>10} {:>10}",
        "size", "runs", "upload", "", "upload/MiB", "read", ""
    );
    let mut p50s = Vec::new();
    for mib in [1usize, 2, 5, 10, 100] {
        let runs = if mib >= 100 { runs.min(3) } else { runs };
        let body = Bytes::from((0..mib * MIB).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let (mut uploads, mut reads) = (Vec::new(), Vec::new());
        for run in 0..runs {
            let session = format!("big-{mib}-{run}");
            let started = Instant::now();
            let answer = client
                .post(uploader.url("/"))
                .header("X-session", &session)
                .header("X-session-request-id", uuid::Uuid::new_v4().to_string())
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let status = answer.status();
            let text = answer.text().await.unwrap();
            uploads.push(started.elapsed());
            assert_eq!(status, 200, "{mib} MiB upload: {text}");
            let started = Instant::now();
            let answer = client
                .get(reader.url("/"))
                .header("X-session", &session)
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            let value = answer.bytes().await.unwrap();
            reads.push(started.elapsed());
            assert!(value == body, "{mib} MiB read back something else");
        }
        let upload_p50 = percentile(&mut uploads, 0.5);
        p50s.push((mib, upload_p50));
        println!(
            "{:>5} MiB {runs:>5} {upload_p50:>10.2} {:>10.2} {:>12.2} {:>10.2} {:>10.2}",
            mib,
            percentile(&mut uploads, 0.9),
            upload_p50 / mib as f64,
            percentile(&mut reads, 0.5),
            percentile(&mut reads, 0.9),
        );
        // The sessions go before the next size, so that Redis holds one size at a time.
        let _: () = redis::cmd("FLUSHALL")
            .query(&mut redis.connection())
            .unwrap();
    }
    let p50 = |mib: usize| p50s.iter().find(|(m, _)| *m == mib).unwrap().1;
    println!(
        "10 MiB upload p50 {:.2} ms against 4 x 1 MiB + 20 ms = {:.2} ms",
        p50(10),
        4.0 * p50(1) + 20.0
    );
}
