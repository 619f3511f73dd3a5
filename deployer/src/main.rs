//! `deployer`: see the crate docs of the `deployer` library and
//! `deployer --help`.

use std::process::ExitCode;

use clap::Parser as _;
use deployer::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    // clap exits with 2 on a usage error and 0 after --help or --version.
    let cli = Cli::parse();
    match deployer::run(cli).await {
        Ok(()) => ExitCode::from(deployer::EXIT_SUCCESS),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
