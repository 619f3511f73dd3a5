//! `edge-bench`: runs the chapter 7 experiments and writes the report (see
//! the library's docs).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser;
use edge_bench::experiments::{Context, Experiment, Scale};
use edge_bench::net::{Net, Profile, build_functions};
use edge_bench::output::{Out, Section};
use edge_bench::report::{self, RunInfo};
use edge_demo::{Tools, spoken};

/// The thesis's chapter 7 benchmarks on a devnet with emulated links.
#[derive(Debug, Parser)]
#[command(name = "edge-bench", version)]
struct Cli {
    /// A reduced run (few samples, a short ramp): under 3 minutes.
    #[arg(long)]
    quick: bool,
    /// Where REPORT.md, data/ and charts/ go.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// The devnet's folder.
    #[arg(long, default_value = "target/bench-devnet")]
    devnet_dir: PathBuf,
    /// The repository (for the examples' stack files).
    #[arg(long, default_value = ".")]
    repository: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failed) => {
            eprintln!("edge-bench: {failed} experiment(s) failed; see the report");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("edge-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; returns how many experiments failed.
async fn run(cli: Cli) -> anyhow::Result<usize> {
    let started = Instant::now();
    let exe = std::env::current_exe()?;
    let tools = Tools::in_dir(exe.parent().context("a binary has a folder")?)?;
    let repository = std::path::absolute(&cli.repository)?;
    let devnet_dir = std::path::absolute(&cli.devnet_dir)?;
    let out = Out::new(&cli.out)?;
    let scale = Scale { quick: cli.quick };
    println!("building the examples into {}", devnet_dir.display());
    build_functions(&repository, &tools, &devnet_dir)?;
    let wav = Bytes::from(spoken(
        "please turn on the lights in the kitchen and play some music",
    )?);
    let mut summary = Vec::new();
    // Sections sort by experiment, then lan before cloud.
    let mut sections: Vec<((Experiment, bool), Section)> = Vec::new();
    let mut failures = Vec::new();
    for profile in [Profile::LAN, Profile::CLOUD] {
        let mut net = Net::up(&tools, &devnet_dir, profile)?;
        println!(
            "{} link: devnet up ({:.0} s)",
            profile.name,
            started.elapsed().as_secs_f64()
        );
        for &experiment in Experiment::on(profile) {
            let step = Instant::now();
            let mut cx = Context {
                net: &net,
                scale,
                out: &out,
                summary: &mut summary,
            };
            let name = experiment.name();
            match experiment.run(&mut cx, &wav).await {
                Ok(section) => {
                    println!(
                        "  {name} ({}): {:.1} s",
                        profile.name,
                        step.elapsed().as_secs_f64()
                    );
                    sections.push(((experiment, profile == Profile::CLOUD), section));
                }
                Err(error) => {
                    eprintln!("  {name} ({}) FAILED: {error:#}", profile.name);
                    failures.push(format!("{name} ({}): {error:#}", profile.name));
                }
            }
        }
        net.down()?;
    }
    sections.sort_by_key(|(order, _)| *order);
    let sections: Vec<Section> = sections.into_iter().map(|(_, s)| s).collect();
    let info = RunInfo {
        quick: cli.quick,
        elapsed: started.elapsed(),
        failures: failures.clone(),
    };
    report::write(&out, &info, &summary, &sections)?;
    println!(
        "report: {} ({:.1} min)",
        out.dir().join("REPORT.md").display(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(failures.len())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
