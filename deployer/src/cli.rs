//! The command line: the [`Cli`] parser, whose doc comments are the help
//! text, and its [`Command`]s.
//!
//! ```
//! use clap::Parser;
//! use deployer::{Cli, Command};
//!
//! let cli = Cli::try_parse_from([
//!     "deployer", "deploy", "cart", "hierarchy.json", "--inEvery", "city", "--inAreas", "milan",
//!     "--inArea", "rome", "--exceptIn", "rome-center", "--faas-cli", "--label=team=edge",
//! ])?;
//! let Command::Deploy(args) = cli.command else { unreachable!() };
//! assert_eq!(args.in_every.as_deref(), Some("city"));
//! assert_eq!(args.in_areas, ["milan", "rome"]);
//! assert_eq!(args.faas_cli, ["--label=team=edge"]);
//! # Ok::<(), clap::Error>(())
//! ```

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Deploys stateful OpenFaaS functions across an edge-to-cloud hierarchy of
/// OpenFaaS nodes.
///
/// The hierarchy file describes the nodes (thesis Listing 6.3); the stack
/// file describes the function, as for faas-cli.
#[derive(Debug, Parser)]
#[command(
    name = "deployer",
    version,
    arg_required_else_help = true,
    after_help = "Exit codes: 0 success, 1 the deployment failed on some node, 2 usage error or invalid file."
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The deployer's commands (thesis A.6.1).
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Checks a hierarchy file and reports every problem at once, each with
    /// the path of its node (or the line and column of a JSON syntax error)
    #[command(name = "check-infrastructure")]
    CheckInfrastructure {
        /// The hierarchy file (JSON)
        #[arg(value_name = "HIERARCHY")]
        file: PathBuf,
    },
    /// Shows a hierarchy file as a tree of area names with their level, and
    /// how many nodes each level has
    #[command(name = "display-infrastructure")]
    DisplayInfrastructure {
        /// The hierarchy file (JSON)
        #[arg(value_name = "HIERARCHY")]
        file: PathBuf,
        /// How to print it
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
    },
    /// Deploys a function of a stack file to every node of one level of the
    /// hierarchy, in the chosen areas
    #[command(after_help = DEPLOY_AFTER_HELP)]
    Deploy(DeployArgs),
}

const DEPLOY_AFTER_HELP: &str = "\
Each selected node first gets the secrets edge-redis-password (its redis_password) and \
edge-node-token (shared by all nodes), then the function, with EDGE_LOCATION, EDGE_FUNCTION, \
EDGE_INFRASTRUCTURE (the hierarchy without passwords) and EDGE_REDIS_URL in its environment.

The node token comes from --node-token-file, else $EDGE_NODE_TOKEN, else <HIERARCHY>.node-token \
(generated on first use, mode 0600).

Examples:
  deployer deploy cart hierarchy.json
  deployer deploy session-offloading-manager hierarchy.json --inEvery city --exceptIn rome
  deployer deploy cart hierarchy.json -f functions.yaml --inAreas milan --inAreas turin --dry-run
  deployer deploy cart hierarchy.json --faas-cli --label=team=edge --faas-cli --update=true";

/// Output format of `display-infrastructure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A tree drawn with box-drawing characters, then the levels
    Text,
    /// `{"levels": [{"name", "nodes"}…], "tree": {"name", "level", "children"}}`
    Json,
}

/// The arguments of `deploy` (thesis A.6.2).
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// The function to deploy: a name under `functions:` in the stack file
    #[arg(value_name = "FUNCTION")]
    pub function: String,

    /// The hierarchy file (JSON)
    #[arg(value_name = "HIERARCHY")]
    pub hierarchy: PathBuf,

    /// The stack file that defines the function, as for faas-cli
    /// [default: stack.yaml, else stack.yml]
    #[arg(short = 'f', long = "yaml", value_name = "STACK")]
    pub stack: Option<PathBuf>,

    /// The level (an areaTypesIdentifiers entry) to deploy on [default: the
    /// lowest]
    #[arg(long = "inEvery", value_name = "LEVEL")]
    pub in_every: Option<String>,

    /// Deploy only in the subtree of this area (repeatable) [default: the
    /// root]
    #[arg(long = "inAreas", visible_alias = "inArea", value_name = "AREA")]
    pub in_areas: Vec<String>,

    /// Never deploy in the subtree of this area (repeatable; wins over
    /// --inAreas)
    #[arg(long = "exceptIn", value_name = "AREA")]
    pub except_in: Vec<String>,

    /// Deploy with the real `faas-cli deploy` and pass it this argument
    /// (repeatable); $FAAS_CLI overrides the binary
    #[arg(long = "faas-cli", value_name = "ARG", allow_hyphen_values = true)]
    pub faas_cli: Vec<String>,

    /// How many nodes to deploy to at the same time
    #[arg(long, value_name = "N", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub concurrency: u32,

    /// Timeout of each HTTP request to a gateway, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout: u64,

    /// How many times to retry a node after a connection error, a timeout or
    /// a 5xx answer (never after a 4xx)
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub retries: u32,

    /// The file holding the node token shared by all nodes' managers
    #[arg(long, value_name = "PATH")]
    pub node_token_file: Option<PathBuf>,

    /// Print the plan (nodes, gateways, payloads without secret values) and
    /// change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn deploy_flags_have_the_thesis_spellings_and_defaults() {
        let cli = Cli::try_parse_from([
            "deployer",
            "deploy",
            "cart",
            "h.json",
            "--inArea",
            "milan",
            "--inAreas",
            "rome",
            "--exceptIn",
            "r1",
            "--exceptIn",
            "m2",
            "--faas-cli",
            "--replace",
            "--faas-cli=--label=a=b",
        ])
        .unwrap();
        let Command::Deploy(args) = cli.command else {
            panic!("not a deploy")
        };
        assert_eq!(args.function, "cart");
        assert_eq!(args.hierarchy, PathBuf::from("h.json"));
        assert_eq!(args.stack, None);
        assert_eq!(args.in_every, None);
        assert_eq!(args.in_areas, ["milan", "rome"]);
        assert_eq!(args.except_in, ["r1", "m2"]);
        assert_eq!(args.faas_cli, ["--replace", "--label=a=b"]);
        assert_eq!((args.concurrency, args.timeout, args.retries), (16, 30, 2));
        assert!(!args.dry_run);
    }

    #[test]
    fn zero_concurrency_is_refused() {
        let error =
            Cli::try_parse_from(["deployer", "deploy", "f", "h.json", "--concurrency", "0"])
                .unwrap_err();
        assert_eq!(error.exit_code(), 2);
    }
}
