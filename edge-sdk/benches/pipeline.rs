//! End-to-end cost of the edge-sdk request pipeline, over real HTTP and a
//! real Redis.
//!
//! Run it with:
//!
//! ```text
//! cargo bench -p edge-sdk --bench pipeline
//! ```
//!
//! It starts its own `redis-server` on a free port (never the system one)
//! and three servers in this process, all on `127.0.0.1:0`:
//!
//! - **blocking**: `#[blocking]` handler storing the 1 KiB request body under
//!   a key (`session.set_bytes("body", req.body())`) and answering 200 — lock,
//!   request id, buffered write and atomic commit;
//! - **non-blocking**: `#[nonblocking]` handler reading that key (filled
//!   beforehand by a blocking call on every session it reads) and answering
//!   its length;
//! - **bare**: a plain `axum` router whose only handler answers the body's
//!   length — same HTTP stack (axum/hyper), no session handling, no Redis.
//!
//! Every scenario sends the same 1 KiB body with the same shared `reqwest`
//! client (keep-alive), with 1 client or with [`CLIENTS`] concurrent tokio
//! tasks, each on its own session: first [`WARMUP`] calls that are not
//! measured, then [`REQUESTS`] measured calls. The measured calls are made
//! in [`ROUNDS`] rounds that take every scenario in turn, so that a burst of
//! load from elsewhere on the machine does not fall on one scenario only. A
//! call's latency runs from sending the request to having read the whole
//! response. It prints p50, p99 and throughput per scenario, the overhead of
//! the pipeline over the bare handler, and the Redis commands each call
//! costs:
//!
//! - *executed* commands, from `INFO commandstats` (reset with
//!   `CONFIG RESETSTAT` before each scenario's part of a round and read
//!   after it). Redis counts the commands a Lua script runs as well, so this
//!   is the work Redis does per call;
//! - *round trips* (commands sent by the runtime, not by its scripts), from
//!   a short extra pass of [`ROUND_TRIP_CALLS`] sequential calls watched
//!   with `MONITOR`, which tells a client's commands from a script's.
//!   `MONITOR` slows Redis down, so this pass is never timed.
//!
//! - **floor**: a plain `axum` handler that makes two Redis round trips
//!   (`PING`) and answers the body's length: what a blocking call cannot
//!   go below (one round trip before the handler, one after). Ratios to it
//!   and to the bare handler are printed.
//!
//! Client, servers and Redis share the machine's cores: the figures are for
//! comparing the scenarios with each other, not absolute capacity. The load
//! average is printed before and after, as a hint of other work running.
//!
//! **Instruction counts** (repeatable on a noisy machine): unless
//! `--no-instructions` is given, it then runs `redis-server`, a blocking
//! function server and the bare server again under `valgrind
//! --tool=callgrind`, makes [`COUNTED_CALLS`] sequential calls after a
//! warm-up, and prints the instructions each process spent per call
//! (counters zeroed with `callgrind_control -z` before, read with `-d`
//! after), beside those of a `PING`. `--only-instructions` prints only
//! these.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{NodeOptions, RedisServer, TestNode};
use edge_sdk::{Request, Session, StatusCode, blocking, nonblocking};

/// Measured calls per scenario (shared among the clients).
const REQUESTS: usize = 2_000;
/// The measured calls of a scenario are made in this many rounds.
const ROUNDS: usize = 5;
/// Unmeasured calls per scenario before the measured ones.
const WARMUP: usize = 200;
/// Concurrent clients of the concurrent scenarios.
const CLIENTS: usize = 16;
/// Size of every request body.
const BODY_BYTES: usize = 1024;
/// The measurements stop early (and say so) after this long.
const TIME_LIMIT: Duration = Duration::from_secs(60);
/// Sequential calls watched with `MONITOR` to count round trips.
const ROUND_TRIP_CALLS: usize = 200;
/// The session key the handlers write and read.
const KEY: &str = "body";

/// Blocking handler: stores the body, answers 200 with an empty body.
#[blocking]
async fn store_body(req: Request, session: &mut Session) -> edge_sdk::Result<StatusCode> {
    session.set_bytes(KEY, req.body());
    Ok(StatusCode::OK)
}

/// Non-blocking handler: reads one key, answers its length.
#[nonblocking]
async fn read_key(_req: Request, session: &Session) -> edge_sdk::Result<String> {
    let value = session.get_bytes(KEY).await?;
    Ok(value.map_or(0, |v| v.len()).to_string())
}

/// Calls counted under callgrind, after as many unmeasured ones.
const COUNTED_CALLS: usize = 300;

/// The server a scenario calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bare,
    Floor,
    Blocking,
    NonBlocking,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Bare => "bare axum",
            Kind::Floor => "floor",
            Kind::Blocking => "blocking",
            Kind::NonBlocking => "non-blocking",
        }
    }

    /// The response body a successful call answers.
    fn expected_body(self) -> String {
        match self {
            Kind::Blocking => String::new(),
            Kind::Bare | Kind::Floor | Kind::NonBlocking => BODY_BYTES.to_string(),
        }
    }
}

/// A server and the sessions its clients use (client `i` uses `sessions[i]`).
#[derive(Debug, Clone)]
struct Target {
    kind: Kind,
    url: Arc<str>,
    sessions: Arc<[String]>,
}

/// One scenario (a server and a number of clients) and its measurements.
#[derive(Debug)]
struct Scenario {
    target: Target,
    clients: usize,
    /// Latencies of the measured calls (sorted by [`Scenario::finish`]).
    latencies: Vec<Duration>,
    /// Wall time of the measured calls.
    elapsed: Duration,
    /// Commands executed by Redis during the measured calls, by name.
    commands: BTreeMap<String, u64>,
}

impl Scenario {
    fn new(target: &Target, clients: usize) -> Scenario {
        Scenario {
            target: target.clone(),
            clients,
            latencies: Vec::with_capacity(REQUESTS),
            elapsed: Duration::ZERO,
            commands: BTreeMap::new(),
        }
    }

    fn kind(&self) -> Kind {
        self.target.kind
    }

    /// Makes `calls` measured calls, counting the Redis commands they cost.
    async fn measure(
        &mut self,
        client: &reqwest::Client,
        redis: &mut redis::aio::MultiplexedConnection,
        calls: usize,
        body: &Bytes,
        deadline: Instant,
    ) {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(redis)
            .await
            .expect("CONFIG RESETSTAT");
        let (latencies, elapsed) =
            load(client, &self.target, self.clients, calls, body, deadline).await;
        for (name, count) in command_stats(redis).await {
            *self.commands.entry(name).or_default() += count;
        }
        self.latencies.extend(latencies);
        self.elapsed += elapsed;
    }

    /// Sorts the latencies; says if the time limit cut the scenario short.
    fn finish(&mut self) {
        self.latencies.sort_unstable();
        if self.calls() < REQUESTS {
            eprintln!(
                "note: {} with {} client(s) made {} of {REQUESTS} calls ({TIME_LIMIT:?} limit)",
                self.kind().label(),
                self.clients,
                self.calls()
            );
        }
    }

    fn calls(&self) -> usize {
        self.latencies.len()
    }

    /// Nearest-rank percentile, `p` in (0, 1].
    fn percentile(&self, p: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p * self.calls() as f64).ceil() as usize).clamp(1, self.calls());
        self.latencies[rank - 1]
    }

    fn throughput(&self) -> f64 {
        self.calls() as f64 / self.elapsed.as_secs_f64()
    }

    fn commands_per_call(&self) -> f64 {
        self.commands.values().sum::<u64>() as f64 / self.calls() as f64
    }
}

/// One call: sends `body`, checks the answer, returns its latency.
async fn call(client: &reqwest::Client, target: &Target, session: &str, body: Bytes) -> Duration {
    let mut request = client
        .post(&*target.url)
        .header("X-session", session)
        .body(body);
    if target.kind == Kind::Blocking {
        request = request.header("X-session-request-id", common::request_id());
    }
    let start = Instant::now();
    let response = request.send().await.expect("send the request");
    let status = response.status();
    let answer = response.bytes().await.expect("read the response");
    let latency = start.elapsed();
    let expected = target.kind.expected_body();
    assert!(
        status == reqwest::StatusCode::OK && answer == expected.as_bytes(),
        "{} call on session {session}: got {status} {:?}, expected 200 {expected:?}",
        target.kind.label(),
        String::from_utf8_lossy(&answer),
    );
    latency
}

/// Makes `total` calls from `clients` concurrent tasks (each on its own
/// session, taking calls from a shared counter until `total` are made or
/// `deadline` is past). Returns the latencies and the wall time.
async fn load(
    client: &reqwest::Client,
    target: &Target,
    clients: usize,
    total: usize,
    body: &Bytes,
    deadline: Instant,
) -> (Vec<Duration>, Duration) {
    let issued = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|i| {
            let (client, target, body, issued) = (
                client.clone(),
                target.clone(),
                body.clone(),
                Arc::clone(&issued),
            );
            tokio::spawn(async move {
                let session = &target.sessions[i];
                let mut latencies = Vec::with_capacity(total / clients + 1);
                while Instant::now() < deadline && issued.fetch_add(1, Ordering::Relaxed) < total {
                    latencies.push(call(&client, &target, session, body.clone()).await);
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await.expect("a client task failed"));
    }
    (latencies, start.elapsed())
}

/// Calls per command name from `INFO commandstats`, without the benchmark's
/// own `CONFIG` and `INFO`.
async fn command_stats(redis: &mut redis::aio::MultiplexedConnection) -> BTreeMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(redis)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?;
            Some((name.to_string(), calls.parse().ok()?))
        })
        .filter(|(name, _): &(String, u64)| {
            !name.starts_with("config") && !name.starts_with("info")
        })
        .collect()
}

/// Commands seen by `MONITOR`, by who sent them.
#[derive(Debug, Default)]
struct RoundTrips {
    /// Sent by a client (the runtime): one round trip each.
    client: BTreeMap<String, u64>,
    /// Run by a Lua script.
    script: BTreeMap<String, u64>,
    calls: usize,
}

/// Makes [`ROUND_TRIP_CALLS`] sequential calls (after a warm-up) while
/// watching Redis with `MONITOR`.
async fn round_trips(
    client: &reqwest::Client,
    redis_server: &RedisServer,
    redis: &mut redis::aio::MultiplexedConnection,
    target: &Target,
    body: &Bytes,
) -> RoundTrips {
    const END: &str = "edge-sdk-bench-monitor-end";
    load(client, target, 1, WARMUP, body, Instant::now() + TIME_LIMIT).await;
    let mut monitor =
        TcpStream::connect(("127.0.0.1", redis_server.port)).expect("connect MONITOR");
    monitor.write_all(b"MONITOR\r\n").expect("send MONITOR");
    let mut lines = BufReader::new(monitor).lines();
    let ok = lines.next().transpose().expect("read MONITOR reply");
    assert_eq!(ok.as_deref(), Some("+OK"), "MONITOR refused");
    // A plain thread with blocking reads: MONITOR output is one line per
    // command, arguments quoted and escaped.
    let watcher = std::thread::spawn(move || {
        let mut seen = RoundTrips::default();
        for line in lines {
            let line = line.expect("read MONITOR");
            // +1700000000.123456 [0 127.0.0.1:40000] "EVALSHA" "…" …
            // +1700000000.123457 [0 lua] "HGET" "…" …
            if line.contains(END) {
                break;
            }
            let Some((source, rest)) = line
                .split_once('[')
                .and_then(|(_, rest)| rest.split_once(']'))
            else {
                continue;
            };
            let command = rest
                .trim_start()
                .split('"')
                .nth(1)
                .unwrap_or("?")
                .to_ascii_lowercase();
            let by = if source.ends_with(" lua") {
                &mut seen.script
            } else {
                &mut seen.client
            };
            *by.entry(command).or_default() += 1;
        }
        seen
    });
    let (latencies, _) = load(
        client,
        target,
        1,
        ROUND_TRIP_CALLS,
        body,
        Instant::now() + TIME_LIMIT,
    )
    .await;
    let _: String = redis::cmd("ECHO")
        .arg(END)
        .query_async(redis)
        .await
        .expect("ECHO");
    let mut seen = watcher.join().expect("MONITOR watcher");
    seen.calls = latencies.len();
    seen
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

/// `evalsha 2.00, hget 1.00, …` per call, most frequent first.
fn per_call(counts: &BTreeMap<String, u64>, calls: usize) -> String {
    let mut sorted: Vec<_> = counts.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then_with(|| a.0.cmp(b.0)));
    let listed: Vec<String> = sorted
        .iter()
        .map(|(name, count)| format!("{name} {:.2}", **count as f64 / calls as f64))
        .collect();
    if listed.is_empty() {
        "none".to_string()
    } else {
        listed.join(", ")
    }
}

/// Sessions `<prefix>-0` … `<prefix>-<CLIENTS - 1>`.
fn sessions(prefix: &str) -> Arc<[String]> {
    (0..CLIENTS).map(|i| format!("{prefix}-{i}")).collect()
}

/// Serves the bare handler on `127.0.0.1:0`.
async fn start_bare() -> String {
    let router = axum::Router::new().fallback(|body: Bytes| async move { body.len().to_string() });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the bare server");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/")
}

/// Serves the floor handler on `127.0.0.1:0`: two `PING`s, then the body's
/// length.
async fn start_floor(redis: redis::aio::MultiplexedConnection) -> String {
    let router = axum::Router::new().fallback(move |body: Bytes| {
        let mut redis = redis.clone();
        async move {
            for _ in 0..2 {
                let _: String = redis::cmd("PING")
                    .query_async(&mut redis)
                    .await
                    .expect("PING");
            }
            body.len().to_string()
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the floor server");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/")
}

/// `--serve blocking|bare --redis-port P --port Q`: this binary as one of
/// the servers counted under callgrind.
async fn serve_for_count(args: &[String]) {
    let value = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .unwrap_or_else(|| panic!("{name} is required with --serve"))
            .clone()
    };
    let listener = tokio::net::TcpListener::bind(format!("127.0.0.1:{}", value("--port")))
        .await
        .expect("bind");
    match value("--serve").as_str() {
        "bare" => {
            let router =
                axum::Router::new().fallback(|body: Bytes| async move { body.len().to_string() });
            axum::serve(listener, router).await.expect("serve");
        }
        _ => {
            let env = [
                ("EDGE_LOCATION", "edge".to_string()),
                ("EDGE_FUNCTION", "fn".to_string()),
                (
                    "EDGE_INFRASTRUCTURE",
                    common::chain_hierarchy(&[
                        ("cloud", "http://127.0.0.1:1"),
                        ("edge", "http://127.0.0.1:2"),
                    ]),
                ),
                (
                    "EDGE_REDIS_URL",
                    format!("redis://127.0.0.1:{}", value("--redis-port")),
                ),
                ("EDGE_SECRETS_DIR", "/nonexistent".to_string()),
                ("EDGE_REDIS_TIMEOUT_MS", "60000".to_string()),
            ];
            let config = edge_sdk::runtime::Config::from_lookup(|name| {
                env.iter().find(|(n, _)| *n == name).map(|(_, v)| v.clone())
            })
            .expect("configuration");
            edge_sdk::runtime::serve(store_body, config, listener, std::future::pending())
                .await
                .expect("serve");
        }
    }
}

/// A process run under `valgrind --tool=callgrind`, whose instruction
/// counter can be zeroed and read.
struct Counted {
    child: std::process::Child,
    out: std::path::PathBuf,
}

impl Counted {
    fn start(
        dir: &std::path::Path,
        name: &str,
        program: &std::path::Path,
        args: &[String],
    ) -> Counted {
        let out = dir.join(name);
        let child = std::process::Command::new("valgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(program)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("valgrind (Debian's package) runs the counted servers");
        Counted { child, out }
    }

    fn control(&self, flag: &str) {
        let status = std::process::Command::new("callgrind_control")
            .arg(flag)
            .arg(self.child.id().to_string())
            .stdout(std::process::Stdio::null())
            .status()
            .expect("callgrind_control");
        assert!(status.success(), "callgrind_control {flag} failed");
    }

    /// Instructions since the last zeroing (`callgrind_control -d`, then the
    /// dump's `totals:` line).
    fn instructions(&self) -> u64 {
        self.control("-d");
        let name = self.out.file_name().unwrap().to_string_lossy().into_owned();
        let dir = self.out.parent().unwrap();
        let newest = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|entry| {
                let file = entry.ok()?.file_name().to_string_lossy().into_owned();
                let n: u32 = file.strip_prefix(&format!("{name}."))?.parse().ok()?;
                Some((n, dir.join(file)))
            })
            .max()
            .expect("a callgrind dump")
            .1;
        std::fs::read_to_string(newest)
            .unwrap()
            .lines()
            .find_map(|line| line.strip_prefix("totals:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("a totals line")
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Instructions per call of Redis and of the servers, under callgrind.
async fn count_instructions(client: &reqwest::Client, body: &Bytes) {
    let dir = std::env::temp_dir().join(format!("edge-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a folder for the dumps");
    let free_port = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    };
    let (redis_port, function_port, bare_port) = (free_port(), free_port(), free_port());
    let redis = Counted::start(
        &dir,
        "redis",
        std::path::Path::new("redis-server"),
        &[
            "--port",
            &redis_port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        .map(String::from),
    );
    let me = std::env::current_exe().expect("this benchmark's binary");
    let serve = |kind: &str, port: u16| {
        [
            "--serve",
            kind,
            "--redis-port",
            &redis_port.to_string(),
            "--port",
            &port.to_string(),
        ]
        .map(String::from)
    };
    let function = Counted::start(&dir, "function", &me, &serve("blocking", function_port));
    let bare = Counted::start(&dir, "bare", &me, &serve("bare", bare_port));
    let ready = |port: u16| async move {
        let deadline = Instant::now() + Duration::from_secs(120);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "a counted server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    for port in [redis_port, function_port, bare_port] {
        ready(port).await;
    }
    let blocking = Target {
        kind: Kind::Blocking,
        url: format!("http://127.0.0.1:{function_port}/").into(),
        sessions: sessions("counted"),
    };
    let bare_target = Target {
        kind: Kind::Bare,
        url: format!("http://127.0.0.1:{bare_port}/").into(),
        sessions: sessions("counted-bare"),
    };
    let far = Instant::now() + Duration::from_secs(3600);
    let mut ping = redis::Client::open(format!("redis://127.0.0.1:{redis_port}"))
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // Warm-up, then counted calls.
    load(client, &blocking, 1, COUNTED_CALLS, body, far).await;
    load(client, &bare_target, 1, COUNTED_CALLS, body, far).await;
    for _ in 0..COUNTED_CALLS {
        let _: String = redis::cmd("PING").query_async(&mut ping).await.unwrap();
    }
    redis.control("-z");
    for _ in 0..COUNTED_CALLS {
        let _: String = redis::cmd("PING").query_async(&mut ping).await.unwrap();
    }
    let per_ping = redis.instructions() as f64 / COUNTED_CALLS as f64;
    redis.control("-z");
    function.control("-z");
    load(client, &blocking, 1, COUNTED_CALLS, body, far).await;
    let redis_per_call = redis.instructions() as f64 / COUNTED_CALLS as f64;
    let function_per_call = function.instructions() as f64 / COUNTED_CALLS as f64;
    bare.control("-z");
    load(client, &bare_target, 1, COUNTED_CALLS, body, far).await;
    let bare_per_call = bare.instructions() as f64 / COUNTED_CALLS as f64;
    println!();
    println!(
        "instructions per call (valgrind --tool=callgrind, {COUNTED_CALLS} sequential calls after as many unmeasured):"
    );
    println!(
        "  redis-server, blocking call: {:>9.0}   (a PING: {per_ping:.0})",
        redis_per_call
    );
    println!("  function process, blocking:  {:>9.0}", function_per_call);
    println!("  bare axum handler process:   {:>9.0}", bare_per_call);
    drop((redis, function, bare));
    // EDGE_BENCH_KEEP_DUMPS: keep the dumps, for callgrind_annotate.
    if std::env::var_os("EDGE_BENCH_KEEP_DUMPS").is_some() {
        println!("  (callgrind dumps kept in {})", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--serve") {
        serve_for_count(&args).await;
        return;
    }
    let count = !args.iter().any(|a| a == "--no-instructions");
    if args.iter().any(|a| a == "--only-instructions") {
        count_instructions(&common::http_client(), &Bytes::from(vec![7u8; BODY_BYTES])).await;
        return;
    }
    let redis_server = RedisServer::start();
    let mut redis = redis_server
        .client()
        .get_multiplexed_async_connection()
        .await
        .expect("connect to the benchmark's redis");
    let blocking_node = TestNode::start(store_body, &redis_server, NodeOptions::edge()).await;
    let nonblocking_node = TestNode::start(read_key, &redis_server, NodeOptions::edge()).await;
    let client = common::http_client();
    let body = Bytes::from(
        (0..BODY_BYTES)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );

    let bare = Target {
        kind: Kind::Bare,
        url: start_bare().await.into(),
        sessions: sessions("bare"),
    };
    let floor = Target {
        kind: Kind::Floor,
        url: start_floor(redis.clone()).await.into(),
        sessions: sessions("floor"),
    };
    let blocking_1 = Target {
        kind: Kind::Blocking,
        url: blocking_node.url("/").into(),
        sessions: sessions("blocking-1"),
    };
    let blocking_n = Target {
        sessions: sessions("blocking-n"),
        ..blocking_1.clone()
    };
    let nonblocking = Target {
        kind: Kind::NonBlocking,
        url: nonblocking_node.url("/").into(),
        sessions: sessions("nonblocking"),
    };
    // The key every non-blocking call reads, on each of its sessions.
    for session in nonblocking.sessions.iter() {
        call(&client, &blocking_1, session, body.clone()).await;
    }

    let load_before = load_average();
    println!(
        "edge-sdk pipeline benchmark: {REQUESTS} measured calls per scenario in {ROUNDS} rounds after \
         {WARMUP} warm-up calls, {BODY_BYTES} B body, {} cores, Redis {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        redis_version(&mut redis).await,
    );
    let started = Instant::now();
    let deadline = started + TIME_LIMIT;
    let mut scenarios: Vec<Scenario> = [
        Scenario::new(&bare, 1),
        Scenario::new(&bare, CLIENTS),
        Scenario::new(&floor, 1),
        Scenario::new(&floor, CLIENTS),
        Scenario::new(&blocking_1, 1),
        Scenario::new(&blocking_n, CLIENTS),
        Scenario::new(&nonblocking, 1),
        Scenario::new(&nonblocking, CLIENTS),
    ]
    .into();
    for scenario in &scenarios {
        load(
            &client,
            &scenario.target,
            scenario.clients,
            WARMUP,
            &body,
            deadline,
        )
        .await;
    }
    for round in 0..ROUNDS {
        // REQUESTS split as evenly as possible over the rounds.
        let calls = REQUESTS * (round + 1) / ROUNDS - REQUESTS * round / ROUNDS;
        for scenario in &mut scenarios {
            scenario
                .measure(&client, &mut redis, calls, &body, deadline)
                .await;
        }
    }
    for scenario in &mut scenarios {
        scenario.finish();
    }
    let blocking_trips = round_trips(&client, &redis_server, &mut redis, &blocking_1, &body).await;
    let nonblocking_trips =
        round_trips(&client, &redis_server, &mut redis, &nonblocking, &body).await;

    println!();
    println!(
        "{:<14} {:>7} {:>6} {:>10} {:>10} {:>9} {:>10}",
        "scenario", "clients", "calls", "p50 µs", "p99 µs", "req/s", "redis cmd"
    );
    for scenario in &scenarios {
        println!(
            "{:<14} {:>7} {:>6} {:>10.0} {:>10.0} {:>9.0} {:>10.2}",
            scenario.kind().label(),
            scenario.clients,
            scenario.calls(),
            micros(scenario.percentile(0.50)),
            micros(scenario.percentile(0.99)),
            scenario.throughput(),
            scenario.commands_per_call(),
        );
    }

    println!();
    println!("ratios, in this run (p50, p99, throughput) to the bare handler and to the floor:");
    for clients in [1, CLIENTS] {
        let find = |kind| {
            scenarios
                .iter()
                .find(|o| o.kind() == kind && o.clients == clients)
                .expect("every scenario ran")
        };
        for kind in [Kind::Blocking, Kind::NonBlocking] {
            let scenario = find(kind);
            let ratios = |base: &Scenario| {
                format!(
                    "p50 x{:.2}, p99 x{:.2}, req/s x{:.2}",
                    scenario.percentile(0.50).as_secs_f64() / base.percentile(0.50).as_secs_f64(),
                    scenario.percentile(0.99).as_secs_f64() / base.percentile(0.99).as_secs_f64(),
                    scenario.throughput() / base.throughput(),
                )
            };
            println!(
                "  {:<12} x{clients:<2}: bare {} | floor {}",
                kind.label(),
                ratios(find(Kind::Bare)),
                ratios(find(Kind::Floor)),
            );
        }
    }

    println!();
    println!(
        "redis commands executed per call (INFO commandstats, including those run inside Lua scripts):"
    );
    for scenario in scenarios
        .iter()
        .filter(|o| o.kind() != Kind::Bare && o.kind() != Kind::Floor)
    {
        println!(
            "  {:<12} x{:<2}: {:.2} = {}",
            scenario.kind().label(),
            scenario.clients,
            scenario.commands_per_call(),
            per_call(&scenario.commands, scenario.calls()),
        );
    }
    println!(
        "redis round trips per call (MONITOR, {ROUND_TRIP_CALLS} sequential calls, not timed):"
    );
    for (kind, trips) in [
        (Kind::Blocking, &blocking_trips),
        (Kind::NonBlocking, &nonblocking_trips),
    ] {
        println!(
            "  {:<12}: sent {} | inside scripts {}",
            kind.label(),
            per_call(&trips.client, trips.calls),
            per_call(&trips.script, trips.calls),
        );
    }
    println!();
    println!(
        "measured in {:.1} s; load average before {load_before}, after {}",
        started.elapsed().as_secs_f64(),
        load_average()
    );

    if count {
        count_instructions(&client, &body).await;
    }
    blocking_node
        .stop()
        .await
        .expect("stop the blocking server");
    nonblocking_node
        .stop()
        .await
        .expect("stop the non-blocking server");
}

/// The 1, 5 and 15 minute load averages, where the system tells them.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".to_string(),
        |text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        },
    )
}

/// `redis_version` from `INFO server`.
async fn redis_version(redis: &mut redis::aio::MultiplexedConnection) -> String {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(redis)
        .await
        .expect("INFO server");
    info.lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .unwrap_or("?")
        .trim()
        .to_string()
}
