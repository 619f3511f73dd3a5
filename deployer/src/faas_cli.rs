//! Deploying with the real `faas-cli` (`deploy --faas-cli <arg>…`): per
//! node, after the secrets are created through the REST API,
//!
//! ```text
//! faas-cli login --gateway <gateway> --username admin --password-stdin     (password on stdin)
//! faas-cli deploy --gateway <gateway> -f <stack> --filter <function> \
//!     --env EDGE_LOCATION=… --env EDGE_FUNCTION=… --env EDGE_INFRASTRUCTURE=… --env EDGE_REDIS_URL=… \
//!     --secret edge-redis-password --secret edge-node-token <the --faas-cli arguments>
//! ```
//!
//! Each node's two commands share a configuration folder of their own
//! (`OPENFAAS_CONFIG`), so that logins to many gateways at once do not
//! race on `~/.openfaas/config.yml` and the user's own is left alone.
//! `$FAAS_CLI` overrides the binary.
//!
//! ```
//! use deployer::faas_cli::FaasCli;
//! use std::time::Duration;
//!
//! let faas_cli = FaasCli::new("faas-cli".into(), "stack.yaml".into(), vec!["--label=a=b".into()], Duration::from_secs(30));
//! assert_eq!(
//!     faas_cli.login_args("http://10.0.0.5:31112"),
//!     ["login", "--gateway", "http://10.0.0.5:31112", "--username", "admin", "--password-stdin"]
//! );
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;

use crate::gateway::GATEWAY_USER;
use crate::plan::{NODE_TOKEN_SECRET, Plan, REDIS_PASSWORD_SECRET, Target};
use crate::{Error, Result};

/// The environment variable that overrides the `faas-cli` binary.
pub const FAAS_CLI_VAR: &str = "FAAS_CLI";

/// How many characters of a failed command's output are quoted.
const QUOTED_OUTPUT_CHARS: usize = 300;

/// How to run `faas-cli` for each node.
#[derive(Debug, Clone)]
pub struct FaasCli {
    program: PathBuf,
    stack: PathBuf,
    extra_args: Vec<String>,
    timeout: Duration,
}

impl FaasCli {
    /// Runs `program` with the stack file `stack`, appending `extra_args`
    /// to `faas-cli deploy`; each command is killed after `timeout`.
    pub fn new(
        program: PathBuf,
        stack: PathBuf,
        extra_args: Vec<String>,
        timeout: Duration,
    ) -> FaasCli {
        FaasCli {
            program,
            stack,
            extra_args,
            timeout,
        }
    }

    /// Like [`new`](Self::new) with the `faas-cli` of `$FAAS_CLI`, else of
    /// `PATH`.
    ///
    /// Fails with [`Error::Tool`] when there is none.
    pub fn locate(stack: PathBuf, extra_args: Vec<String>, timeout: Duration) -> Result<FaasCli> {
        let program = crate::tool::find_program(FAAS_CLI_VAR, "faas-cli").ok_or_else(|| {
            Error::Tool("faas-cli not found: install it or drop --faas-cli".into())
        })?;
        Ok(FaasCli::new(program, stack, extra_args, timeout))
    }

    /// The program run.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// The arguments of `faas-cli login` for `gateway`.
    pub fn login_args(&self, gateway: &str) -> Vec<String> {
        [
            "login",
            "--gateway",
            gateway,
            "--username",
            GATEWAY_USER,
            "--password-stdin",
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// The arguments of `faas-cli deploy` for `target`.
    pub fn deploy_args(&self, plan: &Plan, target: &Target) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "deploy".into(),
            "--gateway".into(),
            target.gateway.clone(),
            "-f".into(),
            self.stack.display().to_string(),
            "--filter".into(),
            plan.function.clone(),
        ];
        for (name, value) in plan.injected_environment(target) {
            args.push("--env".into());
            args.push(format!("{name}={value}"));
        }
        for secret in [REDIS_PASSWORD_SECRET, NODE_TOKEN_SECRET] {
            args.push("--secret".into());
            args.push(secret.into());
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Logs in to `target`'s gateway and deploys, with `config_dir` as
    /// faas-cli's configuration folder. The error says which command
    /// failed and quotes its output.
    pub async fn deploy(
        &self,
        plan: &Plan,
        target: &Target,
        config_dir: &Path,
    ) -> std::result::Result<(), String> {
        self.run(
            "login",
            self.login_args(&target.gateway),
            Some(&target.openfaas_password),
            config_dir,
        )
        .await?;
        self.run("deploy", self.deploy_args(plan, target), None, config_dir)
            .await
    }

    async fn run(
        &self,
        what: &str,
        args: Vec<String>,
        stdin: Option<&str>,
        config_dir: &Path,
    ) -> std::result::Result<(), String> {
        let mut child = tokio::process::Command::new(&self.program)
            .args(&args)
            .env("OPENFAAS_CONFIG", config_dir)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", self.program.display()))?;
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A program that exits without reading is reported by its status.
            let _ = pipe.write_all(text.as_bytes()).await;
        }
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                format!(
                    "faas-cli {what} did not finish within {} s",
                    self.timeout.as_secs()
                )
            })?
            .map_err(|e| format!("faas-cli {what}: {e}"))?;
        if output.status.success() {
            return Ok(());
        }
        let mut said = String::from_utf8_lossy(&output.stderr).into_owned();
        said.push(' ');
        said.push_str(&String::from_utf8_lossy(&output.stdout));
        let said: String = said
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
            .chars()
            .take(QUOTED_OUTPUT_CHARS)
            .collect();
        Err(format!(
            "faas-cli {what} failed ({}){}",
            output.status,
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        ))
    }
}
