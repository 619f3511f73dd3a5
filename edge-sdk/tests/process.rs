//! The runtime as a real process, as the template's `main` runs it:
//! configuration from the environment, `EDGE_LISTEN`, startup errors that
//! name the variable, and a graceful drain on SIGTERM.
//!
//! The test re-runs its own executable with `EDGE_SDK_TEST_CHILD=1`, in
//! which case [`child_process`] becomes the function's `main`.

mod common;

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::{RedisServer, chain_hierarchy, request_id, tempdir};
use edge_sdk::{Request, Session, blocking};

#[blocking]
async fn slow_hello(req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    let millis: u64 = req.uri().query().and_then(|q| q.parse().ok()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(millis)).await;
    session.set("hello", "world");
    Ok(format!("slept {millis} ms"))
}

/// Not a test of its own: the function process of the tests below.
#[test]
fn child_process() {
    if std::env::var_os("EDGE_SDK_TEST_CHILD").is_some() {
        std::process::exit(match edge_sdk::runtime::start(slow_hello) {
            code if code == std::process::ExitCode::SUCCESS => 0,
            _ => 3,
        });
    }
}

fn function_process(env: &[(&str, String)]) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--exact",
            "child_process",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("EDGE_SDK_TEST_CHILD", "1")
        .env_remove("EDGE_LOCATION")
        .env_remove("EDGE_FUNCTION")
        .env_remove("EDGE_INFRASTRUCTURE")
        .env_remove("EDGE_REDIS_URL")
        .env_remove("EDGE_LISTEN")
        .env_remove("exec_timeout")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

fn valid_env(redis: &RedisServer, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("EDGE_LOCATION", "edge".into()),
        ("EDGE_FUNCTION", "hello".into()),
        (
            "EDGE_INFRASTRUCTURE",
            chain_hierarchy(&[
                ("cloud", "http://127.0.0.1:1"),
                ("edge", "http://127.0.0.1:2"),
            ]),
        ),
        ("EDGE_REDIS_URL", redis.url()),
        ("EDGE_SECRETS_DIR", tempdir().display().to_string()),
        ("EDGE_LISTEN", format!("127.0.0.1:{port}")),
    ]
}

fn wait_exit(child: &mut std::process::Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the function process did not exit within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn bad_configuration_stops_the_process_with_a_message_naming_the_variable() {
    let redis = RedisServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cases: Vec<(&str, Option<&str>, &str)> = vec![
        ("EDGE_LOCATION", None, "EDGE_LOCATION"),
        ("EDGE_LOCATION", Some("atlantis"), "EDGE_LOCATION"),
        (
            "EDGE_INFRASTRUCTURE",
            Some("{not json"),
            "EDGE_INFRASTRUCTURE",
        ),
        (
            "EDGE_REDIS_URL",
            Some("http://127.0.0.1:6379"),
            "EDGE_REDIS_URL",
        ),
        ("EDGE_LISTEN", Some("port 3000"), "EDGE_LISTEN"),
        ("exec_timeout", Some("soon"), "exec_timeout"),
        ("EDGE_MAX_BODY_BYTES", Some("-1"), "EDGE_MAX_BODY_BYTES"),
    ];
    for (variable, value, named) in cases {
        let mut env = valid_env(&redis, port);
        env.retain(|(name, _)| *name != variable);
        if let Some(value) = value {
            env.push((variable, value.to_string()));
        }
        let mut child = function_process(&env).spawn().unwrap();
        let status = wait_exit(&mut child, Duration::from_secs(20));
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        assert!(!status.success(), "{variable}={value:?} was accepted");
        assert!(
            stderr.contains(named),
            "{variable}={value:?}: stderr does not name {named}: {stderr}"
        );
        assert!(
            !stderr.contains("panicked"),
            "{variable}={value:?} panicked: {stderr}"
        );
    }
}

#[test]
fn sigterm_drains_calls_in_flight_then_exits_cleanly() {
    let redis = RedisServer::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = function_process(&valid_env(&redis, port)).spawn().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let health = format!("http://127.0.0.1:{port}/_/health");
        let deadline = Instant::now() + Duration::from_secs(20);
        while client.get(&health).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the function never listened on EDGE_LISTEN"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Concurrent calls are served side by side.
        let calls: Vec<_> = (0..4)
            .map(|i| {
                client
                    .post(format!("http://127.0.0.1:{port}/?800"))
                    .header("X-session", format!("term-{i}"))
                    .header("X-session-request-id", request_id())
                    .send()
            })
            .collect();
        let in_flight = tokio::spawn(futures_util::future::join_all(calls));
        let lock = edge_store::SessionKeys::new("term-3").lock().to_string();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis::Commands::exists::<_, bool>(&mut redis.connection(), &lock).unwrap() {
            assert!(Instant::now() < deadline, "the calls never started");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let kill = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        for response in in_flight.await.unwrap() {
            let response = response.expect("a call in flight was cut off by SIGTERM");
            assert_eq!(response.status(), 200);
            assert_eq!(response.text().await.unwrap(), "slept 800 ms");
        }
    });
    let status = wait_exit(&mut child, Duration::from_secs(20));
    assert!(status.success(), "exit status after SIGTERM: {status}");
}
