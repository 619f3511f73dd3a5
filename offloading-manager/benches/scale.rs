//! The manager's decisions on a node holding many sessions.
//!
//! ```text
//! cargo bench -p offloading-manager --bench scale [-- --sessions 10000,100000,1000000]
//!     [--sample 1000] [--legacy-manager PATH [--legacy-sessions 10000,100000]]
//! ```
//!
//! For each size: bytes of Redis memory per small session (indexes
//! included, the clients' connection buffers not), an idle `offload-trigger`, an idle expiration GC, one LRU
//! pick, the GC of 1% expired sessions, a policy run moving about 50
//! sessions, the manager's peak RSS, and p50/p99 of blocking calls made
//! while the GC and the policy ran. See `tests/scale_run/mod.rs` for how
//! the node is filled. With `--legacy-manager`, the previous release's
//! manager binary (built from its commit) is measured the same way on a
//! node in its own layout, in the same run.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/scale_run/mod.rs"]
mod scale_run;

use std::path::PathBuf;

fn sizes(text: &str) -> Vec<usize> {
    text.split(',')
        .map(|n| {
            n.trim()
                .replace('_', "")
                .parse()
                .expect("a list of sizes, e.g. 10000,100000")
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut sessions = vec![10_000, 100_000, 1_000_000];
    let mut legacy_sessions = vec![10_000, 100_000];
    let mut sample = 1000;
    let mut legacy: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--sessions" => sessions = sizes(&args.next().expect("--sessions N,N")),
            "--legacy-sessions" => {
                legacy_sessions = sizes(&args.next().expect("--legacy-sessions N,N"))
            }
            "--sample" => {
                sample = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--sample N")
            }
            "--legacy-manager" => legacy = Some(args.next().expect("--legacy-manager PATH").into()),
            "--bench" => {}
            other => panic!("unknown argument {other:?}"),
        }
    }
    let manager = PathBuf::from(env!("CARGO_BIN_EXE_offloading-manager"));
    let mut rows = Vec::new();
    for &n in &sessions {
        eprintln!("this release, {n} sessions:");
        let options = scale_run::Options {
            sessions: n,
            sample: sample.min(n),
            manager: manager.clone(),
            legacy: false,
            audit: true,
        };
        let figures = scale_run::run(&options).await;
        if let Some((took, seen)) = figures.audit {
            eprintln!(
                "  indexes exact: audited {seen} sessions in {:.1} s",
                took.as_secs_f64()
            );
        }
        rows.push(figures);
    }
    if let Some(binary) = &legacy {
        for &n in &legacy_sessions {
            eprintln!("previous release ({}), {n} sessions:", binary.display());
            let options = scale_run::Options {
                sessions: n,
                sample: sample.min(n),
                manager: binary.clone(),
                legacy: true,
                audit: false,
            };
            rows.push(scale_run::run(&options).await);
        }
    }
    println!("{}", scale_run::table(&rows));
}
