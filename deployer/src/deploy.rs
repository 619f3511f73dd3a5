//! The `deploy` command: read the files, autofill, select the nodes, then
//! deploy to them in parallel — at most `--concurrency` at a time, each
//! retried a bounded number of times — and end with a per-node table.
//!
//! For each node, in order: the two secrets (`edge-redis-password`,
//! `edge-node-token`) are created or updated, then the function is
//! deployed, through the REST API ([`crate::gateway`]) or with `faas-cli`
//! ([`crate::faas_cli`]). A node fails alone; the others go on.
//!
//! ```
//! use deployer::deploy::{NodeResult, Report};
//! use std::time::Duration;
//!
//! let report = Report {
//!     results: vec![
//!         NodeResult { path: "italy/milan".into(), level: "city".into(), outcome: Ok("created".into()), elapsed: Duration::from_millis(12) },
//!         NodeResult { path: "italy/rome".into(), level: "city".into(), outcome: Err("authentication failed".into()), elapsed: Duration::from_millis(3) },
//!     ],
//! };
//! assert_eq!(report.failed(), 1);
//! assert!(report.render_table().starts_with("NODE         LEVEL  RESULT   TIME  DETAIL\n"));
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use edge_sdk::hierarchy::Infrastructure;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use openfaas_stack::{DEFAULT_STACK_FILE, FunctionDeployment, StackFile};
use tokio::sync::Semaphore;

use crate::autofill::{Kubectl, autofill, nodes_without_gateway};
use crate::cli::DeployArgs;
use crate::display::plural;
use crate::faas_cli::FaasCli;
use crate::gateway::{GatewayClient, GatewayError, Upsert};
use crate::plan::{EDGE_INFRASTRUCTURE, Plan, Target};
use crate::select::{Selection, select_nodes};
use crate::token::{NODE_TOKEN_VAR, resolve_node_token};
use crate::{Error, Result};

/// The first pause before retrying a node; it doubles with each retry.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(200);
/// The longest pause between two attempts on a node.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(5);

/// How the nodes are deployed to.
#[derive(Debug, Clone)]
pub struct DeployOptions {
    /// At most this many nodes at once.
    pub concurrency: usize,
    /// Retries per node after a retryable error.
    pub retries: u32,
    /// The pause before the first retry; doubled for each further one.
    pub backoff: Duration,
    /// With `faas-cli` instead of the REST API.
    pub faas_cli: Option<FaasCli>,
}

/// What happened on one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeResult {
    /// The node's path, e.g. `italy/milan/m1`.
    pub path: String,
    /// The node's level.
    pub level: String,
    /// What was done, or why it failed.
    pub outcome: std::result::Result<String, String>,
    /// How long the node took, retries included.
    pub elapsed: Duration,
}

/// The results of a deploy, in the order of the selected nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// One per selected node.
    pub results: Vec<NodeResult>,
}

impl Report {
    /// How many nodes failed.
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| r.outcome.is_err()).count()
    }

    /// The table: node path, level, `ok`/`failed`, time in ms, and what was
    /// done or why it failed.
    pub fn render_table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .results
            .iter()
            .map(|result| {
                let (status, detail) = match &result.outcome {
                    Ok(detail) => ("ok", detail.as_str()),
                    Err(reason) => ("failed", reason.as_str()),
                };
                [
                    result.path.clone(),
                    result.level.clone(),
                    status.to_owned(),
                    format!("{} ms", result.elapsed.as_millis()),
                    detail.to_owned(),
                ]
            })
            .collect();
        let header = ["NODE", "LEVEL", "RESULT", "TIME", "DETAIL"].map(str::to_owned);
        let widths: Vec<usize> = (0..4)
            .map(|column| {
                std::iter::once(&header)
                    .chain(&rows)
                    .map(|row| row[column].chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in std::iter::once(&header).chain(&rows) {
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {}",
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2],
                w3 = widths[3],
            );
        }
        out
    }

    /// `10 nodes: 9 ok, 1 failed`.
    pub fn summary(&self) -> String {
        let failed = self.failed();
        format!(
            "{}: {} ok, {failed} failed",
            plural(self.results.len(), "node"),
            self.results.len() - failed
        )
    }
}

/// Runs the `deploy` command.
pub async fn run(args: &DeployArgs) -> Result<()> {
    let infra = Infrastructure::from_path(&args.hierarchy).map_err(|source| Error::Hierarchy {
        file: args.hierarchy.clone(),
        source,
    })?;
    let stack_path = stack_path(args.stack.as_deref());
    let stack = StackFile::from_path_with_env(&stack_path, |name| std::env::var(name).ok())
        .map_err(|error| match error {
            openfaas_stack::Error::Io { path, source } => Error::Usage(format!(
                "cannot read the stack file {}: {source}; name it with -f",
                path.display()
            )),
            other => Error::Stack(other),
        })?;
    let spec = stack.function(&args.function)?;
    let stack_dir = match stack_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let stack_deployment = FunctionDeployment::from_stack(&args.function, spec, &stack_dir)?;

    let selection = Selection {
        level: args.in_every.clone(),
        in_areas: args.in_areas.clone(),
        except_in: args.except_in.clone(),
    };
    // Check the names before asking kubectl anything.
    select_nodes(&infra, &selection)?;

    let timeout = Duration::from_secs(args.timeout);
    let faas_cli = if args.faas_cli.is_empty() {
        None
    } else if args.dry_run {
        let located = FaasCli::locate(stack_path.clone(), args.faas_cli.clone(), timeout);
        Some(located.unwrap_or_else(|_| {
            FaasCli::new(
                "faas-cli".into(),
                stack_path.clone(),
                args.faas_cli.clone(),
                timeout,
            )
        }))
    } else {
        Some(FaasCli::locate(
            stack_path.clone(),
            args.faas_cli.clone(),
            timeout,
        )?)
    };

    let infra = autofill_hierarchy(infra).map_err(|error| match error {
        Error::Hierarchy { source, .. } => Error::Hierarchy {
            file: PathBuf::from(format!("{} (autofilled)", args.hierarchy.display())),
            source,
        },
        other => other,
    })?;
    let nodes = select_nodes(&infra, &selection)?;
    let token = resolve_node_token(
        args.node_token_file.as_deref(),
        std::env::var(NODE_TOKEN_VAR).ok(),
        &args.hierarchy,
        args.dry_run,
    )?;
    let plan = Plan::new(
        &args.function,
        stack_deployment,
        &infra,
        &nodes,
        token.value.clone(),
    )?;
    for name in &plan.overridden {
        eprintln!(
            "warning: {} sets {name} for function {:?}; the deployer's value replaces it",
            stack_path.display(),
            args.function
        );
    }

    let mut header = String::new();
    if args.dry_run {
        header.push_str("dry run: nothing is sent and no file is written\n");
    }
    let _ = writeln!(
        header,
        "function {:?} from {} (image {})",
        args.function,
        stack_path.display(),
        plan.base.image
    );
    let _ = writeln!(
        header,
        "nodes: {} at {}",
        plan.targets.len(),
        selection.describe(&infra)
    );
    let _ = writeln!(header, "{}", token.describe());
    if args.dry_run {
        crate::print(&header);
        crate::print(&render_dry_run(&plan, faas_cli.as_ref()));
        return Ok(());
    }
    let _ = writeln!(
        header,
        "deploying with concurrency {}, timeout {} s, {}\n",
        args.concurrency,
        args.timeout,
        match args.retries {
            1 => "1 retry".to_owned(),
            n => format!("{n} retries"),
        }
    );
    crate::print(&header);

    let client = GatewayClient::new(timeout).map_err(|e| Error::Tool(e.to_string()))?;
    let options = DeployOptions {
        concurrency: args.concurrency as usize,
        retries: args.retries,
        backoff: RETRY_BACKOFF,
        faas_cli,
    };
    let started = Instant::now();
    let report = deploy_to_nodes(Arc::new(plan), client, options).await;
    crate::print(&report.render_table());
    crate::print(&format!(
        "{} in {} ms\n",
        report.summary(),
        started.elapsed().as_millis()
    ));
    match report.failed() {
        0 => Ok(()),
        failed => Err(Error::DeploymentFailed {
            failed,
            total: report.results.len(),
        }),
    }
}

/// `-f` as given, else `stack.yaml`, else `stack.yml` if only that exists
/// (as faas-cli does).
fn stack_path(given: Option<&Path>) -> PathBuf {
    if let Some(path) = given {
        return path.to_path_buf();
    }
    let default = PathBuf::from(DEFAULT_STACK_FILE);
    let legacy = PathBuf::from("stack.yml");
    if !default.exists() && legacy.exists() {
        legacy
    } else {
        default
    }
}

fn autofill_hierarchy(infra: Infrastructure) -> Result<Infrastructure> {
    let missing = nodes_without_gateway(&infra);
    let kubectl = if missing.is_empty() {
        None
    } else {
        Some(Kubectl::locate().ok_or_else(|| {
            Error::Tool(format!(
                "kubectl not found: it is needed to fill in the openfaas_gateway that {} omit{} ({}); \
                 install it, set KUBECTL to its path, or write the gateways into the hierarchy file",
                plural(missing.len(), "node"),
                if missing.len() == 1 { "s" } else { "" },
                missing.join(", ")
            ))
        })?)
    };
    let (filled, report) = autofill(infra, |name| match &kubectl {
        Some(kubectl) => kubectl.node_address(name),
        None => Err("no kubectl".into()),
    })?;
    if !report.is_empty() {
        eprintln!(
            "note: filled in omitted mainLocation fields: {}",
            report.describe()
        );
    }
    Ok(filled)
}

fn render_dry_run(plan: &Plan, faas_cli: Option<&FaasCli>) -> String {
    let hierarchy = &plan.base.env_vars[EDGE_INFRASTRUCTURE];
    let mut out = format!(
        "{EDGE_INFRASTRUCTURE} (the same on every node, passwords removed):\n  {hierarchy}\n"
    );
    for target in &plan.targets {
        let _ = writeln!(
            out,
            "\n{} ({}) at {}",
            target.path, target.level, target.gateway
        );
        let secrets: Vec<String> = plan
            .secrets_for(target)
            .into_iter()
            .map(|s| s.name)
            .collect();
        let _ = writeln!(
            out,
            "  secrets (values not shown): {} — POST /system/secrets, PUT if it exists",
            secrets.join(", ")
        );
        match faas_cli {
            None => {
                let _ = writeln!(
                    out,
                    "  function: PUT /system/functions, POST if it does not exist, with"
                );
                let mut deployment = plan.deployment_for(target);
                // Shown once above rather than in every payload.
                deployment.env_vars.insert(
                    EDGE_INFRASTRUCTURE.to_owned(),
                    format!("<{EDGE_INFRASTRUCTURE} above, {} bytes>", hierarchy.len()),
                );
                let json = serde_json::to_string_pretty(&deployment).unwrap_or_default();
                for line in json.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
            Some(faas_cli) => {
                let program = faas_cli.program().display().to_string();
                let environment_prefix = format!("{EDGE_INFRASTRUCTURE}=");
                for args in [
                    faas_cli.login_args(&target.gateway),
                    faas_cli.deploy_args(plan, target),
                ] {
                    let quoted: Vec<String> = std::iter::once(program.clone())
                        .chain(args)
                        .map(|arg| {
                            if arg.starts_with(&environment_prefix) {
                                format!("{environment_prefix}\"${EDGE_INFRASTRUCTURE}\"")
                            } else {
                                crate::tool::shell_quote(&arg)
                            }
                        })
                        .collect();
                    let _ = writeln!(out, "  $ {}", quoted.join(" "));
                }
            }
        }
    }
    out
}

/// Deploys `plan` to all its targets, at most `options.concurrency` at
/// once, showing a progress bar on stderr when it is a terminal.
pub async fn deploy_to_nodes(
    plan: Arc<Plan>,
    client: GatewayClient,
    options: DeployOptions,
) -> Report {
    let total = plan.targets.len();
    let progress = ProgressBar::with_draw_target(Some(total as u64), ProgressDrawTarget::stderr());
    if !progress.is_hidden() {
        if let Ok(style) =
            ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} nodes {elapsed} {msg}")
        {
            progress.set_style(style.progress_chars("=> "));
        }
        progress.enable_steady_tick(Duration::from_millis(120));
    }
    let config_root = std::env::temp_dir().join(format!(
        "edge-deployer-faas-cli-{}-{}",
        std::process::id(),
        started_nanos()
    ));
    let options = Arc::new(options);
    let permits = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..total {
        let (plan, client, options, permits, progress) = (
            plan.clone(),
            client.clone(),
            options.clone(),
            permits.clone(),
            progress.clone(),
        );
        let config_dir = config_root.join(index.to_string());
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let target = &plan.targets[index];
            let started = Instant::now();
            let outcome = deploy_node(&plan, target, &client, &options, &config_dir).await;
            let elapsed = started.elapsed();
            if let Err(reason) = &outcome {
                progress.println(format!("failed: {}: {reason}", target.path));
            }
            progress.set_message(target.path.clone());
            progress.inc(1);
            (index, outcome, elapsed)
        });
    }
    let mut results: Vec<Option<NodeResult>> = vec![None; total];
    while let Some(joined) = tasks.join_next().await {
        let Ok((index, outcome, elapsed)) = joined else {
            continue;
        };
        let target = &plan.targets[index];
        results[index] = Some(NodeResult {
            path: target.path.clone(),
            level: target.level.clone(),
            outcome,
            elapsed,
        });
    }
    progress.finish_and_clear();
    if options.faas_cli.is_some() {
        let _ = std::fs::remove_dir_all(&config_root);
    }
    Report {
        results: results
            .into_iter()
            .enumerate()
            .map(|(index, result)| {
                result.unwrap_or_else(|| NodeResult {
                    path: plan.targets[index].path.clone(),
                    level: plan.targets[index].level.clone(),
                    outcome: Err("the deploy task panicked".into()),
                    elapsed: Duration::ZERO,
                })
            })
            .collect(),
    }
}

fn started_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// One node: the secrets, then the function, retrying the whole sequence
/// (every step is idempotent) after a retryable error.
async fn deploy_node(
    plan: &Plan,
    target: &Target,
    client: &GatewayClient,
    options: &DeployOptions,
    config_dir: &Path,
) -> std::result::Result<String, String> {
    let mut attempt: u32 = 1;
    let detail = loop {
        match rest_steps(plan, target, client, options.faas_cli.is_none()).await {
            Ok(detail) => break detail,
            Err(error) if error.is_retryable() && attempt <= options.retries => {
                let backoff = options
                    .backoff
                    .saturating_mul(2u32.saturating_pow(attempt - 1));
                tokio::time::sleep(backoff.min(MAX_RETRY_BACKOFF)).await;
                attempt += 1;
            }
            Err(GatewayError::Unauthorized) => {
                return Err(format!(
                    "authentication failed (check openfaas_password of {})",
                    target.path
                ));
            }
            Err(error) => return Err(with_attempts(error.to_string(), attempt)),
        }
    };
    let detail = match &options.faas_cli {
        None => detail,
        Some(faas_cli) => {
            std::fs::create_dir_all(config_dir)
                .map_err(|e| format!("cannot create {}: {e}", config_dir.display()))?;
            faas_cli.deploy(plan, target, config_dir).await?;
            "deployed with faas-cli".to_owned()
        }
    };
    Ok(with_attempts(detail, attempt))
}

fn with_attempts(text: String, attempts: u32) -> String {
    if attempts > 1 {
        format!("{text} (after {attempts} attempts)")
    } else {
        text
    }
}

/// The REST steps of one attempt: the secrets, then (unless faas-cli
/// deploys) the function. Returns `created` or `updated`.
async fn rest_steps(
    plan: &Plan,
    target: &Target,
    client: &GatewayClient,
    deploy_function: bool,
) -> std::result::Result<String, GatewayError> {
    for secret in plan.secrets_for(target) {
        client
            .upsert_secret(&target.gateway, &target.openfaas_password, &secret)
            .await?;
    }
    if !deploy_function {
        return Ok(String::new());
    }
    let deployment = plan.deployment_for(target);
    let upsert = client
        .deploy_function(&target.gateway, &target.openfaas_password, &deployment)
        .await?;
    Ok(match upsert {
        Upsert::Created => "created".to_owned(),
        Upsert::Updated => "updated".to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_aligned() {
        let report = Report {
            results: vec![
                NodeResult {
                    path: "italy/milan/m1".into(),
                    level: "district".into(),
                    outcome: Ok("created".into()),
                    elapsed: Duration::from_millis(1234),
                },
                NodeResult {
                    path: "italy/rome/r1".into(),
                    level: "district".into(),
                    outcome: Err(
                        "authentication failed (check openfaas_password of italy/rome/r1)".into(),
                    ),
                    elapsed: Duration::from_millis(7),
                },
            ],
        };
        assert_eq!(
            report.render_table(),
            "\
NODE            LEVEL     RESULT     TIME  DETAIL
italy/milan/m1  district  ok      1234 ms  created
italy/rome/r1   district  failed     7 ms  authentication failed (check openfaas_password of italy/rome/r1)
"
        );
        assert_eq!(report.summary(), "2 nodes: 1 ok, 1 failed");
        assert_eq!(report.failed(), 1);
    }

    #[test]
    fn attempts_are_mentioned_only_after_a_retry() {
        assert_eq!(with_attempts("created".into(), 1), "created");
        assert_eq!(
            with_attempts("created".into(), 3),
            "created (after 3 attempts)"
        );
    }
}
