//! One busy session: many clients calling a blocking function on the same
//! session at once.
//!
//! ```text
//! cargo bench -p edge-sdk --features client --bench hot_session [-- --seconds 15 --clients 16]
//! ```
//!
//! It starts its own `redis-server` on a free port and one function server
//! (a counter: read, add one, write) on `127.0.0.1:0`, then, for the given
//! time each:
//!
//! 1. **serial**: one client calls the session again and again;
//! 2. **concurrent**: `--clients` clients (default 16) call the same
//!    session at once, each with the SDK's own client (`edge_sdk::client`),
//!    which retries a 503 after its `Retry-After` (up to 2 s) with the same
//!    request id.
//!
//! It prints, for both, the throughput, p50/p99/p99.9 of a call as the
//! client sees it (retries included), the retries the server asked for
//! (503 or 423 answers that the client then retried), the calls that gave
//! up, and the concurrent throughput as a share of the serial one. The
//! counter is checked against the acknowledged calls (none lost, none
//! doubled). Client, server and Redis share the machine's cores.

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{NodeOptions, RedisServer, TestNode};
use edge_sdk::client::Client;
use edge_sdk::{Request, Session, blocking};

/// Adds one to the session's counter; answers the new value.
#[blocking]
async fn count(_req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    let value: u64 = session.get_json("n").await?.unwrap_or(0) + 1;
    session.set_json("n", &value)?;
    Ok(value.to_string())
}

#[derive(Default)]
struct Run {
    latencies: Vec<Duration>,
    retries: u64,
    gave_up: u64,
    elapsed: Duration,
}

impl Run {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank =
            ((p * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }

    fn throughput(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

async fn run(url: &str, clients: usize, duration: Duration) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (url, stop) = (url.to_string(), Arc::clone(&stop));
            tokio::spawn(async move {
                let client = Client::new();
                let mut run = Run::default();
                while !stop.load(Ordering::Relaxed) {
                    let called = Instant::now();
                    let answer = client.post(&url, "hot", "").await.expect("a call");
                    run.retries += u64::from(answer.attempts - 1);
                    if answer.status.is_success() {
                        run.latencies.push(called.elapsed());
                    } else {
                        run.gave_up += 1;
                    }
                }
                run
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = Run::default();
    for task in tasks {
        let run = task.await.expect("a client");
        total.latencies.extend(run.latencies);
        total.retries += run.retries;
        total.gave_up += run.gave_up;
    }
    total.elapsed = started.elapsed();
    total.latencies.sort_unstable();
    total
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (mut seconds, mut clients) = (15u64, 16usize);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--seconds N")
            }
            "--clients" => {
                clients = args
                    .next()
                    .and_then(|s| s.parse().ok())
                    .expect("--clients N")
            }
            "--bench" => {}
            other => panic!("unknown argument {other:?}"),
        }
    }
    let redis = RedisServer::start();
    let node = TestNode::start(count, &redis, NodeOptions::edge()).await;
    let url = node.url("/");
    let duration = Duration::from_secs(seconds);
    // Warm-up: connections, scripts loaded.
    let warm = run(&url, clients, Duration::from_millis(500)).await;
    let serial = run(&url, 1, duration).await;
    let concurrent = run(&url, clients, duration).await;
    let acknowledged: u64 = [&warm, &serial, &concurrent]
        .iter()
        .map(|run| run.latencies.len() as u64)
        .sum();
    let gave_up: u64 = [&warm, &serial, &concurrent]
        .iter()
        .map(|run| run.gave_up)
        .sum();
    println!("one session, {seconds} s each, the SDK's client (Retry-After honoured, up to 2 s):");
    println!(
        "{:<22} {:>8} {:>9} {:>9} {:>9} {:>10} {:>8} {:>8}",
        "", "calls", "req/s", "p50 ms", "p99 ms", "p99.9 ms", "retries", "gave up"
    );
    for (label, run) in [
        ("1 client (serial)", &serial),
        (&*format!("{clients} clients"), &concurrent),
    ] {
        println!(
            "{:<22} {:>8} {:>9.0} {:>9.2} {:>9.2} {:>10.2} {:>8} {:>8}",
            label,
            run.latencies.len(),
            run.throughput(),
            run.percentile(0.5),
            run.percentile(0.99),
            run.percentile(0.999),
            run.retries,
            run.gave_up,
        );
    }
    println!(
        "{clients} clients' throughput: {:.0}% of one client's serial throughput",
        100.0 * concurrent.throughput() / serial.throughput()
    );
    // One more call reads the counter: every acknowledged call counted once.
    let last = Client::new().post(&url, "hot", "").await.expect("a call");
    let counter: u64 = last.text().parse::<u64>().expect("the counter") - 1;
    let verdict = if counter == acknowledged || (gave_up > 0 && counter >= acknowledged) {
        "none lost, none doubled"
    } else {
        "MISMATCH"
    };
    println!("counter {counter}, acknowledged calls {acknowledged} (warm-up included): {verdict}");
    node.stop().await.expect("stop the server");
}
