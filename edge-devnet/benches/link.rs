//! Link emulation benchmark: the round-trip time (median of 30 pings) and
//! the throughput (one bulk push to a sink, less one round trip) through a
//! link proxy with the issue's `lan` and `cloud` profiles, next to the
//! configured values, and through an unshaped proxy and no proxy for
//! reference. Run with `cargo bench -p edge-devnet --bench link`.

#[path = "../tests/link_measure/mod.rs"]
mod link_measure;

use std::net::SocketAddr;

use edge_devnet::link::{Link, LinkProfile, LinkProxy};
use link_measure::*;

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let echo = echo_server().await;
        let sink = sink_server().await;
        let direct = median_rtt(echo, 30).await;
        let bytes = 64 << 20;
        let rate = throughput(bytes, push(sink, bytes).await, direct);
        println!(
            "no proxy:          RTT {:8.3} ms, throughput {:8.1} Mbit/s",
            direct.as_secs_f64() * 1e3,
            rate / 1e6
        );
        for (name, profile, bytes) in [
            ("unshaped proxy", LinkProfile::unshaped(), 64 << 20),
            ("lan", LinkProfile::lan(), 32 << 20),
            ("cloud", LinkProfile::cloud(), 16 << 20),
        ] {
            bench(name, profile, echo, sink, bytes).await;
        }
    });
}

async fn bench(name: &str, profile: LinkProfile, echo: SocketAddr, sink: SocketAddr, bytes: usize) {
    let listen: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let link = Link::symmetric(profile);
    let echo = LinkProxy::bind(listen, echo, link.clone()).await.unwrap();
    let sink = LinkProxy::bind(listen, sink, link).await.unwrap();
    let rtt = median_rtt(echo.local_addr(), 30).await;
    let elapsed = push(sink.local_addr(), bytes).await;
    let rate = throughput(bytes, elapsed, rtt);
    let expected_rtt = profile.one_way_latency * 2;
    print!(
        "{name:<18} RTT {:8.3} ms, throughput {:8.1} Mbit/s ({} MiB in {:.0} ms)",
        rtt.as_secs_f64() * 1e3,
        rate / 1e6,
        bytes >> 20,
        elapsed.as_secs_f64() * 1e3,
    );
    if profile.is_unshaped() {
        println!();
        return;
    }
    let bandwidth = profile.bandwidth_bits_per_sec.unwrap() as f64;
    println!(
        "; configured {profile}: RTT {:.3} ms ({:+.1}%), {:.0} Mbit/s ({:+.1}%)",
        expected_rtt.as_secs_f64() * 1e3,
        deviation(rtt.as_secs_f64(), expected_rtt.as_secs_f64()) * 100.0,
        bandwidth / 1e6,
        deviation(rate, bandwidth) * 100.0,
    );
}
