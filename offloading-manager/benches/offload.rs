//! Offload time and redirect cost between two local nodes (m1 → milan of a
//! cloud → milan → m1 chain), each with its own redis-server.
//!
//! `cargo bench -p offloading-manager --bench offload` prints, for sessions
//! of 1 KiB, 1 MiB, 10 MiB and 100 MiB, the p50 and p90 of 20
//! `force-offload` calls, 3 at 100 MiB (fence, offer, binary transfer,
//! decision at the proprietary node, activation, deletion at the source),
//! and the extra latency of one redirect: a call through the proprietary
//! node (307, then the holder) against a call to the holder directly.
//!
//! Then a 100 MiB session's memory: on a fresh chain whose m1 and milan
//! managers are processes of their own (the release binary) and whose m1
//! runs a blocking upload function as a process of its own (this binary,
//! `--serve-upload`), it uploads a 100 MiB value to m1, offloads the
//! session to milan and onloads it back, and prints for each step its time
//! and the peak RSS (`VmHWM`, reset before each step) of every process the
//! session passes through: the function, both managers, both Redis servers.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use common::{Cluster, ManagerProcess};
use edge_sdk::{Request, Session, blocking};
use edge_store::SessionKeys;
use redis::Commands;
use test_support::{free_port, peak_rss_kib, reset_peak_rss};

/// The upload function of the memory run: stores the body.
#[blocking]
async fn upload(req: Request, session: &mut Session) -> edge_sdk::Result<&'static str> {
    session.set_bytes("payload", req.body());
    Ok("ok")
}

const RUNS: usize = 20;

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() -> ExitCode {
    if std::env::args().any(|arg| arg == "--serve-upload") {
        return edge_sdk::runtime::start(upload);
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime")
        .block_on(async {
            offloads().await;
            big_session_memory().await;
        });
    ExitCode::SUCCESS
}

const MIB: usize = 1 << 20;

/// Upload, offload and onload of a 100 MiB session, each process's peak RSS.
async fn big_session_memory() {
    let size = 100 * MIB;
    let cluster = Cluster::start().await;
    let binary = PathBuf::from(env!("CARGO_BIN_EXE_offloading-manager"));
    let m1_manager = ManagerProcess::start(&cluster, "m1", &binary, &[]).await;
    let milan_manager = ManagerProcess::start(&cluster, "milan", &binary, &[]).await;
    let m1 = cluster.node("m1");
    let port = free_port();
    let mut function = Command::new(std::env::current_exe().expect("this binary"))
        .arg("--serve-upload")
        .envs(m1.manager_env.iter().map(|(k, v)| (*k, v.as_str())))
        .env("EDGE_FUNCTION", "upload")
        .env("EDGE_LISTEN", format!("127.0.0.1:{port}"))
        .env("EDGE_MAX_BODY_BYTES", (2 * size).to_string())
        .env("EDGE_REDIS_TIMEOUT_MS", "30000")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("the upload function");
    let health = format!("http://127.0.0.1:{port}/_/health");
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.client.get(&health).send().await.is_err() {
        assert!(
            Instant::now() < deadline && function.try_wait().unwrap().is_none(),
            "the upload function did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    m1.route("upload", port);
    let processes = [
        ("function", function.id()),
        ("m1 manager", m1_manager.pid()),
        ("milan manager", milan_manager.pid()),
        ("m1 redis", m1.redis.pid()),
        ("milan redis", cluster.node("milan").redis.pid()),
    ];
    let target = 2 * size / MIB + 32;
    println!("a 100 MiB session, peak RSS per process in MiB (target: at most {target}):");
    print!("{:>8} {:>10}", "step", "time ms");
    for (name, _) in processes {
        print!(" {name:>14}");
    }
    println!();
    let body = bytes::Bytes::from(vec![0xA5u8; size]);
    let session = "big-rss";
    for step in ["upload", "offload", "onload"] {
        for (_, pid) in processes {
            assert!(reset_peak_rss(pid), "cannot reset the peak RSS of {pid}");
        }
        let started = Instant::now();
        let answer = match step {
            "upload" => cluster
                .client
                .post(format!("{}/function/upload", m1.gateway))
                .header("X-session", session)
                .header("X-session-request-id", uuid::Uuid::new_v4().to_string())
                .timeout(Duration::from_secs(120))
                .body(body.clone())
                .send()
                .await
                .unwrap(),
            "offload" => cluster.force_offload("m1", session).await,
            _ => {
                cluster
                    .command("m1", &[("command", "force-onload")], &[])
                    .await
            }
        };
        let elapsed = started.elapsed();
        assert_eq!(
            answer.status(),
            200,
            "{step}: {}",
            answer.text().await.unwrap()
        );
        print!("{step:>8} {:>10.1}", ms(elapsed));
        for (_, pid) in processes {
            print!(" {:>14.1}", peak_rss_kib(pid) as f64 / 1024.0);
        }
        println!();
    }
    let stored: Vec<u8> = m1
        .connection()
        .hget(SessionKeys::new(session).data(), "payload")
        .unwrap();
    assert!(
        stored.len() == size + 1 && stored[1..] == body[..],
        "the session came back whole"
    );
    let _ = function.kill();
    let _ = function.wait();
}

/// Offload times by size, and the cost of a redirect.
async fn offloads() {
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
            let answer = cluster.force_offload("m1", &session).await;
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
    cluster.force_offload("m1", session).await;
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
