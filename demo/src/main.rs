//! `edge-demo`: the narrated demo (see `scripts/demo`). Pass `--keep` to
//! leave the devnet running afterwards.

use std::process::ExitCode;

use edge_demo::{Demo, Tools, spoken};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("edge-demo: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let keep = std::env::args().any(|a| a == "--keep");
    let exe = std::env::current_exe()?;
    let bin_dir = exe.parent().expect("a binary has a folder");
    let tools = Tools::in_dir(bin_dir)?;
    let repository = std::env::current_dir()?;
    let dir = repository.join("target/demo-devnet");
    let mut demo = Demo::set_up(&repository, &dir, tools, &mut |line| println!("• {line}"))?;
    let wav = spoken("one two three four five")?;
    println!();
    let mut n = 0;
    let outcomes = demo
        .scenario(&wav, &mut |o| {
            n += 1;
            let via = match (&o.served_by, o.redirects) {
                (Some(node), r) if r > 0 => format!(" via {r} redirect(s), served by {node}"),
                _ => String::new(),
            };
            println!(
                "{n:>2}. {}\n    → {} in {:.1} ms{via}\n      {}",
                o.title,
                o.status,
                o.elapsed.as_secs_f64() * 1000.0,
                o.detail
            );
        })
        .await;
    if let Err(error) = &outcomes {
        eprintln!("the scenario stopped: {error:#}");
    }
    println!();
    if keep {
        std::mem::forget(demo);
        println!(
            "The devnet is still up in {}: target/debug/edge-devnet --dir {} status | down",
            dir.display(),
            dir.display()
        );
    } else {
        demo.down()?;
        println!("Everything stopped (edge-devnet down).");
    }
    outcomes.map(drop)
}
