//! The deployer's one error type, [`Error`], and the exit codes it maps to
//! (SPEC §6): 0 success, 1 a deployment failed on some node, 2 a usage
//! error or an invalid file.
//!
//! ```
//! use deployer::{EXIT_DEPLOYMENT_FAILED, EXIT_USAGE, Error};
//!
//! assert_eq!(Error::Usage("no level named \"block\"".into()).exit_code(), EXIT_USAGE);
//! assert_eq!(Error::DeploymentFailed { failed: 1, total: 3 }.exit_code(), EXIT_DEPLOYMENT_FAILED);
//! ```

use std::fmt::Write as _;
use std::path::PathBuf;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Exit code of a command that did everything it was asked.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code of a deploy that failed on at least one node.
pub const EXIT_DEPLOYMENT_FAILED: u8 = 1;
/// Exit code of a usage error or an invalid file (also clap's own).
pub const EXIT_USAGE: u8 = 2;

/// Everything that can stop a deployer command.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The hierarchy file cannot be read, is not JSON, or breaks a rule of
    /// the format; every problem is listed with the node's path.
    #[error("{}", hierarchy_message(file, source))]
    Hierarchy {
        /// The hierarchy file as given on the command line.
        file: PathBuf,
        /// What is wrong with it.
        source: edge_sdk::Error,
    },
    /// The stack file cannot be read or parsed, has no such function, or
    /// the function lacks a field the deployment needs.
    #[error("{0}")]
    Stack(#[from] openfaas_stack::Error),
    /// An argument does not match the files: an unknown level, area or
    /// function, or a selection without nodes.
    #[error("{0}")]
    Usage(String),
    /// A local tool the command needs (`kubectl`, `faas-cli`) is missing or
    /// failed before any node was touched.
    #[error("{0}")]
    Tool(String),
    /// A file of the deployer's own (the node token) could not be read or
    /// written.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong and what to do.
        message: String,
    },
    /// The deploy ran, and failed on some nodes (the table says which).
    #[error("{failed} of {total} node(s) failed; see the table above")]
    DeploymentFailed {
        /// How many nodes failed.
        failed: usize,
        /// How many nodes were selected.
        total: usize,
    },
}

impl Error {
    /// The process exit code for this error: [`EXIT_DEPLOYMENT_FAILED`] for
    /// a deployment that failed on some node, [`EXIT_USAGE`] for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::DeploymentFailed { .. } => EXIT_DEPLOYMENT_FAILED,
            _ => EXIT_USAGE,
        }
    }
}

fn hierarchy_message(file: &std::path::Path, error: &edge_sdk::Error) -> String {
    let file = file.display();
    match error {
        edge_sdk::Error::HierarchySyntax {
            line,
            column,
            message,
        } => format!(
            "{file}:{line}:{column}: not valid JSON (line {line}, column {column}): {message}"
        ),
        edge_sdk::Error::InvalidHierarchy(problems) => {
            let count = problems.len();
            let mut text = format!(
                "{file} is not a valid hierarchy file ({count} problem{}):",
                if count == 1 { "" } else { "s" }
            );
            for problem in problems {
                let path = if problem.path.is_empty() {
                    "(file)"
                } else {
                    problem.path.as_str()
                };
                let _ = write!(text, "\n  {path}: {}", problem.message);
            }
            text
        }
        // The I/O error already names the file.
        edge_sdk::Error::Io(io) => io.to_string(),
        other => format!("{file}: {other}"),
    }
}
