//! Release size and cold start of a function built from the `rust-edge`
//! template, the way its Dockerfile builds it.
//!
//! `cargo bench -p openfaas-stack --bench template` lays out a project with
//! `faas-cli new` and `build --shrinkwrap` (as this crate reproduces them),
//! runs the template's `build-function.sh build` (release, stripped, as in
//! the Docker build stage) with edge-sdk taken from this checkout, then
//! prints the binary's size and the time from process start to the first
//! 200 answer, over 20 starts against a real redis-server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openfaas_stack::{NewOptions, install_templates, new_function, shrinkwrap};
use test_support::{RedisServer, free_port};

const STARTS: usize = 20;

fn main() {
    let repository = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let project = repository.join("target/template-bench");
    let _ = std::fs::remove_dir_all(&project);
    std::fs::create_dir_all(&project).unwrap();
    install_templates(&repository, &project).unwrap();
    new_function(&project, "rust-edge", "bench", &NewOptions::default()).unwrap();
    let context = shrinkwrap(&project.join("stack.yaml"), "bench").unwrap();
    std::fs::copy(repository.join("Cargo.lock"), context.join("Cargo.lock")).unwrap();

    let binary: PathBuf = project.join("handler");
    println!(
        "building {} (release, as the Dockerfile does) …",
        context.display()
    );
    let started = Instant::now();
    let status = Command::new("sh")
        .arg(context.join("build-function.sh"))
        .arg("build")
        .current_dir(&context)
        .env("TARGETARCH", "amd64")
        .env("EDGE_SDK_PATH", repository.join("edge-sdk"))
        .env("HANDLER_OUT", &binary)
        .env(
            "CARGO_TARGET_DIR",
            repository.join("target/function-builds"),
        )
        .status()
        .unwrap();
    assert!(status.success(), "build-function.sh build failed");
    println!("built in {:.0} s", started.elapsed().as_secs_f64());
    let size = std::fs::metadata(&binary).unwrap().len();
    println!(
        "release binary (stripped): {size} bytes = {:.2} MiB",
        size as f64 / 1048576.0
    );

    let redis = RedisServer::start();
    let secrets = test_support::tempdir();
    let hierarchy = r#"{"areaTypesIdentifiers":["city"],"hierarchy":[{"areaName":"edge","mainLocation":{"openfaas_gateway":"http://127.0.0.1:8080"},"areas":[]}]}"#;
    let mut samples = Vec::new();
    for i in 0..STARTS {
        let port = free_port();
        let started = Instant::now();
        let mut child = Command::new(&binary)
            .env("EDGE_LOCATION", "edge")
            .env("EDGE_FUNCTION", "bench")
            .env("EDGE_INFRASTRUCTURE", hierarchy)
            .env("EDGE_REDIS_URL", redis.url())
            .env("EDGE_SECRETS_DIR", &secrets)
            .env("EDGE_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let elapsed = loop {
            if let Some(status) = first_call(port, i) {
                assert_eq!(status, 200);
                break started.elapsed();
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no answer within 10 s"
            );
            std::thread::sleep(Duration::from_micros(200));
        };
        samples.push(elapsed);
        let _ = child.kill();
        let _ = child.wait();
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "cold start, process start to first 200 ({STARTS} starts): min {:.1} ms, p50 {:.1} ms, max {:.1} ms",
        ms(samples[0]),
        ms(samples[STARTS / 2]),
        ms(samples[STARTS - 1])
    );
}

/// One blocking call over a plain TCP connection; `None` while the port is
/// not listening yet.
fn first_call(port: u16, i: usize) -> Option<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: bench\r\nX-session: cold-{i}\r\nX-session-request-id: {}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n",
        uuid_like(i)
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_whitespace().nth(1)?.parse().ok()
}

fn uuid_like(i: usize) -> String {
    format!("00000000-0000-4000-8000-{i:012}")
}
