//! Fixtures for the workspace's tests.
//!
//! - [`RedisServer`]: a real `redis-server` on a free port, in memory,
//!   killed on drop (never the machine's own server on 6379);
//! - [`free_port`], [`tempdir`], [`wait_until`];
//! - [`layout_v1`]: a node's Redis written as the previous release wrote it.

pub mod layout_v1;

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `redis-server` started for one test, in memory, killed on drop.
pub struct RedisServer {
    child: Child,
    /// The port it listens on.
    pub port: u16,
    /// Its password, if it requires one.
    pub password: Option<String>,
}

/// A TCP port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("local addr")
        .port()
}

impl RedisServer {
    /// Starts a server without a password.
    pub fn start() -> RedisServer {
        RedisServer::start_with(None, free_port())
    }

    /// Starts a server requiring `password`.
    pub fn start_with_password(password: &str) -> RedisServer {
        RedisServer::start_with(Some(password.to_string()), free_port())
    }

    /// Starts a server on `port` (for restarts on the same address).
    pub fn start_with(password: Option<String>, port: u16) -> RedisServer {
        let mut command = Command::new("redis-server");
        command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(password) = &password {
            command.args(["--requirepass", password]);
        }
        let child = command
            .spawn()
            .expect("redis-server must be installed (the README's test command installs it)");
        let server = RedisServer {
            child,
            port,
            password,
        };
        server.wait_ready();
        server
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut connection) = self.client().get_connection()
                && redis::cmd("PING").query::<String>(&mut connection).is_ok()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {} did not start",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `redis://127.0.0.1:<port>` (no password).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A client for this server, with its password.
    pub fn client(&self) -> redis::Client {
        let url = match &self.password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}", self.port),
            None => self.url(),
        };
        redis::Client::open(url).expect("redis url")
    }

    /// A synchronous connection for assertions.
    pub fn connection(&self) -> redis::Connection {
        self.client()
            .get_connection()
            .expect("connect to test redis")
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the server (its data is lost: it keeps nothing on disk).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh, empty directory under the system temp dir, removed with
/// everything in it when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Its path.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for TempDir {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh, empty directory under the system temp dir ([`TempDir`]).
pub fn tempdir() -> TempDir {
    let dir = std::env::temp_dir().join(format!("edge-test-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create a temporary directory");
    TempDir(dir)
}

/// Polls `condition` every 10 ms until it holds, failing with `what` after
/// `within`.
pub fn wait_until(within: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Peak resident set size of process `pid` since it started or since the
/// last [`reset_peak_rss`] (`VmHWM`), KiB; 0 if it cannot be read.
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Starts measuring [`peak_rss_kib`] of `pid` afresh (Linux: `5` written
/// to `/proc/<pid>/clear_refs`); whether it could.
pub fn reset_peak_rss(pid: u32) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
}
