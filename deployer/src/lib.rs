//! The `deployer` CLI: checks, shows and deploys to an edge-to-cloud
//! hierarchy of OpenFaaS nodes (SPEC §6, thesis A.6).
//!
//! ```text
//! deployer check-infrastructure <hierarchy.json>
//! deployer display-infrastructure <hierarchy.json> [--format json]
//! deployer deploy <function> <hierarchy.json> [-f stack.yaml] [--inEvery LEVEL]
//!     [--inAreas AREA]… [--exceptIn AREA]… [--faas-cli ARG]… [--dry-run]
//! deployer help
//! ```
//!
//! The binary is a thin shell over this library: it parses a [`Cli`], runs
//! it with [`run`] and exits with [`Error::exit_code`]. One module per
//! concept:
//!
//! - [`cli`]: the command line and its help text;
//! - [`select`]: which nodes `--inEvery`, `--inAreas`, `--exceptIn` pick;
//! - [`autofill`]: omitted `mainLocation` fields filled in (kubectl);
//! - [`token`]: the node token shared by all nodes;
//! - [`plan`]: the deployment and secrets each node gets (SPEC §7);
//! - [`gateway`]: the OpenFaaS gateway REST client;
//! - [`faas_cli`]: deploying with the real `faas-cli` instead;
//! - [`deploy`]: the orchestration — concurrency, retries, progress, table;
//! - [`display`]: the output of `check-infrastructure` and
//!   `display-infrastructure`.
//!
//! ```
//! use clap::Parser;
//!
//! let cli = deployer::Cli::try_parse_from(["deployer", "check-infrastructure", "hierarchy.json"])?;
//! assert!(matches!(cli.command, deployer::Command::CheckInfrastructure { .. }));
//! # Ok::<(), clap::Error>(())
//! ```

pub mod autofill;
pub mod cli;
pub mod deploy;
pub mod display;
mod error;
pub mod faas_cli;
pub mod gateway;
pub mod plan;
pub mod select;
pub mod token;
mod tool;

use std::io::Write as _;
use std::path::Path;

pub use cli::{Cli, Command, DeployArgs, Format};
pub use error::{EXIT_DEPLOYMENT_FAILED, EXIT_SUCCESS, EXIT_USAGE, Error, Result};

use edge_sdk::hierarchy::Infrastructure;

/// Runs one command, printing its output on stdout (and warnings on
/// stderr).
pub async fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::CheckInfrastructure { file } => {
            let infra = read_hierarchy(&file)?;
            print(&format!(
                "{}: OK, {}\n",
                file.display(),
                display::summary(&infra)
            ));
            Ok(())
        }
        Command::DisplayInfrastructure { file, format } => {
            let infra = read_hierarchy(&file)?;
            match format {
                Format::Text => print(&display::render_text(&infra)),
                Format::Json => print(&(display::render_json(&infra) + "\n")),
            }
            Ok(())
        }
        Command::Deploy(args) => deploy::run(&args).await,
    }
}

/// Reads and validates a hierarchy file; the error names every problem.
pub fn read_hierarchy(file: &Path) -> Result<Infrastructure> {
    Infrastructure::from_path(file).map_err(|source| Error::Hierarchy {
        file: file.to_path_buf(),
        source,
    })
}

/// Writes to stdout; a closed pipe (`deployer … | head`) is not an error.
pub(crate) fn print(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes());
    let _ = stdout.flush();
}
