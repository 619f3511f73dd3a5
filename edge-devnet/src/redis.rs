//! A node's `redis-server`: in memory, password set, on a free port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// Starts `redis-server` on `127.0.0.1:port` requiring `password`, logging
/// to `log`, and waits until it answers.
pub async fn start(port: u16, password: &str, log: &Path) -> anyhow::Result<Child> {
    let mut child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            password,
        ])
        .args(["--logfile", &log.display().to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A supervisor that fails half-way through starting must not leave
        // servers behind that no state file records.
        .kill_on_drop(true)
        .spawn()
        .context("cannot start redis-server (install it, e.g. apt-get install redis-server)")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if ping(port, password).is_ok() {
            return Ok(child);
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "redis-server on port {port} exited ({status}); see {}",
                log.display()
            );
        }
        if Instant::now() > deadline {
            let _ = child.start_kill();
            bail!("redis-server on port {port} did not answer within 10 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// `AUTH` + `PING` over a raw connection.
pub fn ping(port: u16, password: &str) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(1)))?;
    let command = format!(
        "*2\r\n$4\r\nAUTH\r\n${}\r\n{password}\r\n*1\r\n$4\r\nPING\r\n",
        password.len()
    );
    stream.write_all(command.as_bytes())?;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 64];
    while !answer.ends_with(b"+PONG\r\n") {
        let n = stream.read(&mut buffer)?;
        if n == 0 {
            bail!("connection closed");
        }
        answer.extend_from_slice(&buffer[..n]);
        if answer.starts_with(b"-") {
            bail!("{}", String::from_utf8_lossy(&answer).trim());
        }
    }
    Ok(())
}
