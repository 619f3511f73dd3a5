//! What the link self-test, the topology test and the link benchmark
//! share: an echo server, a sink server, and round-trip and throughput
//! measurements through a link proxy.

#![allow(
    dead_code,
    reason = "each test or bench that includes this module uses a part of it"
)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A server on 127.0.0.1 that sends back whatever it receives, and
/// half-closes when its client does.
pub async fn echo_server() -> SocketAddr {
    serve(|stream| async move {
        let (mut read, mut write) = stream.into_split();
        if tokio::io::copy(&mut read, &mut write).await.is_ok() {
            let _ = write.shutdown().await;
        }
    })
    .await
}

/// A server on 127.0.0.1 that reads until its client half-closes, then
/// answers with the number of bytes it read (8 bytes, big-endian).
pub async fn sink_server() -> SocketAddr {
    serve(|mut stream| async move {
        let mut buffer = vec![0; 64 * 1024];
        let mut total: u64 = 0;
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) => break,
                Ok(read) => total += read as u64,
                Err(_) => return,
            }
        }
        let _ = stream.write_all(&total.to_be_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await
}

async fn serve<F, Fut>(handle: F) -> SocketAddr
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(handle(stream));
        }
    });
    addr
}

/// The median of `samples` round trips of a 64-byte message through an
/// echo server at `addr` (after a few to warm up).
pub async fn median_rtt(addr: SocketAddr, samples: usize) -> Duration {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let message = [7u8; 64];
    let mut answer = [0u8; 64];
    let mut rtts = Vec::with_capacity(samples);
    for i in 0..samples + 3 {
        let start = Instant::now();
        stream.write_all(&message).await.unwrap();
        stream.read_exact(&mut answer).await.unwrap();
        if i >= 3 {
            rtts.push(start.elapsed());
        }
    }
    rtts.sort();
    rtts[rtts.len() / 2]
}

/// Sends `bytes` bytes to a sink server at `addr`, half-closes, and returns
/// how long until the sink's answer (which it checks) arrived.
pub async fn push(addr: SocketAddr, bytes: usize) -> Duration {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let piece = vec![42u8; 64 * 1024];
    let start = Instant::now();
    let mut left = bytes;
    while left > 0 {
        let now = left.min(piece.len());
        stream.write_all(&piece[..now]).await.unwrap();
        left -= now;
    }
    stream.shutdown().await.unwrap();
    let mut answer = [0u8; 8];
    stream.read_exact(&mut answer).await.unwrap();
    let elapsed = start.elapsed();
    assert_eq!(
        u64::from_be_bytes(answer),
        bytes as u64,
        "the sink got every byte"
    );
    elapsed
}

/// Bits per second of a push of `bytes` bytes that took `elapsed`, less
/// the round trip `rtt` it also includes (its last bytes' trip there, and
/// the answer's back).
pub fn throughput(bytes: usize, elapsed: Duration, rtt: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.saturating_sub(rtt).as_secs_f64()
}

/// `measured` relative to `expected`, as a signed fraction.
pub fn deviation(measured: f64, expected: f64) -> f64 {
    (measured - expected) / expected
}
