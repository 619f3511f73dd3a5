//! A node's functions as local processes: what a deployment to the devnet
//! runs.
//!
//! Deploying an image starts the binary `build` recorded for it, with the
//! deployment's environment, its secrets as files in `EDGE_SECRETS_DIR`,
//! and its own `EDGE_LISTEN` port. Updating restarts it; deleting stops it
//! (SIGTERM, then SIGKILL after a grace period); a process that exits on its
//! own is restarted with a capped backoff.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use openfaas_stack::{FunctionDeployment, FunctionStatus};
use tokio::process::{Child, Command};
use tokio::sync::{Mutex as AsyncMutex, oneshot};
use tokio::task::JoinHandle;

use crate::images;

/// How long a stopped function gets to drain before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Longest wait before restarting a function that keeps exiting.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(5);

/// Why a deployment was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeployError {
    /// The image was never built for the devnet.
    #[error(
        "image {0:?} is not built for this devnet: run `edge-devnet build -f <stack.yaml>` first"
    )]
    UnknownImage(String),
    /// The deployment mounts a secret the node does not have.
    #[error("secret {0:?} does not exist on this node: create it first (POST /system/secrets)")]
    UnknownSecret(String),
    /// The function is not deployed.
    #[error("function {0:?} is not deployed on this node")]
    NotFound(String),
    /// The function is already deployed (POST of an existing function).
    #[error("function {0:?} already exists: update it with PUT /system/functions")]
    Exists(String),
    /// A name that cannot be a function or secret name.
    #[error("invalid name {0:?}: use letters, digits, '-', '_' and '.'")]
    InvalidName(String),
    /// A resource limit that cannot be read.
    #[error("{0}")]
    InvalidLimit(String),
    /// Something on the machine failed (files, processes).
    #[error("{0}")]
    Internal(#[from] anyhow::Error),
}

/// What a running function looks like from outside.
#[derive(Debug, Clone)]
pub struct Running {
    /// The function's port on 127.0.0.1.
    pub port: u16,
    /// Its current process, if running.
    pub pid: Option<u32>,
    /// Restarts after exiting on its own.
    pub restarts: u32,
    /// The binary.
    pub binary: PathBuf,
    /// The deployment.
    pub deployment: FunctionDeployment,
    /// The log file.
    pub log: PathBuf,
}

struct Instance {
    deployment: FunctionDeployment,
    binary: PathBuf,
    port: u16,
    log: PathBuf,
    created_at: String,
    process: Arc<Mutex<ProcessState>>,
    invocations: Arc<AtomicU64>,
    stop: Option<oneshot::Sender<()>>,
    monitor: JoinHandle<()>,
}

#[derive(Default)]
struct ProcessState {
    pid: Option<u32>,
    restarts: u32,
}

/// The functions of one node.
pub struct Functions {
    node: String,
    devnet_dir: PathBuf,
    instances: AsyncMutex<BTreeMap<String, Instance>>,
    on_change: Arc<dyn Fn() + Send + Sync>,
    topology: std::sync::OnceLock<Arc<crate::topology::Topology>>,
}

impl Functions {
    /// The functions of node `node` of the devnet in `devnet_dir`;
    /// `on_change` is called whenever a process starts or stops.
    pub fn new(node: &str, devnet_dir: &Path, on_change: Arc<dyn Fn() + Send + Sync>) -> Functions {
        Functions {
            node: node.to_string(),
            devnet_dir: devnet_dir.to_path_buf(),
            instances: AsyncMutex::new(BTreeMap::new()),
            on_change,
            topology: std::sync::OnceLock::new(),
        }
    }

    /// Sets the devnet's emulated network: from then on, functions deployed
    /// here get `EDGE_INFRASTRUCTURE` as this node sees the others (through
    /// the links of the tree path). Set once, before any deployment.
    pub fn set_topology(&self, topology: Arc<crate::topology::Topology>) {
        let _ = self.topology.set(topology);
    }

    /// The devnet's emulated network, if it has one.
    pub fn topology(&self) -> Option<&Arc<crate::topology::Topology>> {
        self.topology.get()
    }

    /// Deploys (`create`) or redeploys (`!create`) a function.
    pub async fn deploy(
        &self,
        deployment: FunctionDeployment,
        secrets: &BTreeMap<String, String>,
        create: bool,
    ) -> Result<(), DeployError> {
        let name = deployment.service.clone();
        check_name(&name)?;
        let registry = images::read_registry(&self.devnet_dir)?;
        let binary = registry
            .get(&deployment.image)
            .cloned()
            .ok_or_else(|| DeployError::UnknownImage(deployment.image.clone()))?;
        for secret in &deployment.secrets {
            if !secrets.contains_key(secret) {
                return Err(DeployError::UnknownSecret(secret.clone()));
            }
        }
        let cpu_millis = match deployment
            .limits
            .as_ref()
            .map(|l| l.cpu.as_str())
            .filter(|c| !c.is_empty())
        {
            Some(cpu) => Some(crate::cpu::parse_cpu(cpu).map_err(DeployError::InvalidLimit)?),
            None => None,
        };
        let mut instances = self.instances.lock().await;
        let previous = instances.remove(&name);
        match (&previous, create) {
            (Some(_), true) => {
                instances.insert(name.clone(), previous.expect("checked above"));
                return Err(DeployError::Exists(name));
            }
            (None, false) => return Err(DeployError::NotFound(name)),
            _ => {}
        }
        let (port, created_at) = match previous {
            Some(old) => {
                let kept = (old.port, old.created_at.clone());
                stop_instance(old).await;
                kept
            }
            None => (free_port()?, chrono::Utc::now().to_rfc3339()),
        };
        let function_dir = self.function_dir(&name);
        let secrets_dir = function_dir.join("secrets");
        write_secrets(&secrets_dir, &deployment.secrets, secrets)?;
        let log = self
            .devnet_dir
            .join("logs")
            .join(&self.node)
            .join(format!("{name}.log"));
        std::fs::create_dir_all(log.parent().expect("log has a folder"))
            .map_err(anyhow::Error::from)?;
        let mut environment: BTreeMap<String, String> = BTreeMap::new();
        for inherited in ["PATH", "RUST_LOG", "RUST_BACKTRACE"] {
            if let Ok(value) = std::env::var(inherited) {
                environment.insert(inherited.to_string(), value);
            }
        }
        environment.extend(deployment.env_vars.clone());
        if let (Some(topology), Some(infrastructure)) = (
            self.topology.get(),
            environment.get_mut("EDGE_INFRASTRUCTURE"),
        ) {
            *infrastructure = topology.rewrite_infrastructure(&self.node, infrastructure);
        }
        environment.insert("EDGE_SECRETS_DIR".into(), secrets_dir.display().to_string());
        environment.insert("EDGE_LISTEN".into(), format!("127.0.0.1:{port}"));
        // The old process (if any) has exited: its cgroup is gone or reusable.
        let cpu_limit = cpu_millis.and_then(|millis| {
            match crate::cpu::CpuLimit::create(&self.node, &name, millis) {
                Ok(limit) => Some(limit),
                Err(reason) => {
                    append_log(
                        &log,
                        &format!("edge-devnet: CPU limit {millis}m not applied: {reason}"),
                    );
                    None
                }
            }
        });
        let process = Arc::new(Mutex::new(ProcessState::default()));
        let (stop, stopped) = oneshot::channel();
        let monitor = tokio::spawn(supervise_process(
            binary.clone(),
            environment,
            cpu_limit,
            log.clone(),
            Arc::clone(&process),
            stopped,
            Arc::clone(&self.on_change),
        ));
        instances.insert(
            name,
            Instance {
                deployment,
                binary,
                port,
                log,
                created_at,
                process,
                invocations: Arc::new(AtomicU64::new(0)),
                stop: Some(stop),
                monitor,
            },
        );
        Ok(())
    }

    /// Stops and removes a function.
    pub async fn remove(&self, name: &str) -> Result<(), DeployError> {
        let instance = self.instances.lock().await.remove(name);
        match instance {
            Some(instance) => {
                stop_instance(instance).await;
                (self.on_change)();
                Ok(())
            }
            None => Err(DeployError::NotFound(name.to_string())),
        }
    }

    /// Stops every function (devnet shutdown).
    pub async fn stop_all(&self) {
        let instances = std::mem::take(&mut *self.instances.lock().await);
        futures_stop(instances.into_values().collect()).await;
    }

    /// Rewrites the secret files of every function mounting `secret`.
    pub async fn refresh_secret(
        &self,
        secret: &str,
        secrets: &BTreeMap<String, String>,
    ) -> anyhow::Result<()> {
        let instances = self.instances.lock().await;
        for (name, instance) in instances.iter() {
            if instance.deployment.secrets.iter().any(|s| s == secret) {
                write_secrets(
                    &self.function_dir(name).join("secrets"),
                    &instance.deployment.secrets,
                    secrets,
                )?;
            }
        }
        Ok(())
    }

    /// Where calls to `name` go, counting the call.
    pub async fn route(&self, name: &str) -> Option<u16> {
        let instances = self.instances.lock().await;
        let instance = instances.get(name)?;
        instance.invocations.fetch_add(1, Ordering::Relaxed);
        Some(instance.port)
    }

    /// The gateway's view of every function.
    pub async fn statuses(&self) -> Vec<FunctionStatus> {
        let instances = self.instances.lock().await;
        instances.values().map(status_of).collect()
    }

    /// The gateway's view of one function.
    pub async fn status(&self, name: &str) -> Option<FunctionStatus> {
        self.instances.lock().await.get(name).map(status_of)
    }

    /// The processes, for the state file.
    pub async fn running(&self) -> Vec<(String, Running)> {
        let instances = self.instances.lock().await;
        instances
            .iter()
            .map(|(name, instance)| {
                let process = instance.process.lock().expect("process state poisoned");
                (
                    name.clone(),
                    Running {
                        port: instance.port,
                        pid: process.pid,
                        restarts: process.restarts,
                        binary: instance.binary.clone(),
                        deployment: instance.deployment.clone(),
                        log: instance.log.clone(),
                    },
                )
            })
            .collect()
    }

    /// `(name, schedule)` of every function annotated for the cron
    /// connector (`topic: cron-function`, `schedule: …`).
    pub async fn cron_schedules(&self) -> Vec<(String, String)> {
        let instances = self.instances.lock().await;
        instances
            .iter()
            .filter_map(|(name, instance)| {
                let annotations = instance.deployment.annotations.as_ref()?;
                let cron = annotations
                    .get("topic")?
                    .split(',')
                    .any(|topic| topic.trim() == "cron-function");
                let schedule = annotations.get("schedule")?;
                cron.then(|| (name.clone(), schedule.clone()))
            })
            .collect()
    }

    fn function_dir(&self, name: &str) -> PathBuf {
        self.devnet_dir
            .join("nodes")
            .join(&self.node)
            .join("functions")
            .join(name)
    }
}

fn status_of(instance: &Instance) -> FunctionStatus {
    let running = instance
        .process
        .lock()
        .expect("process state poisoned")
        .pid
        .is_some();
    FunctionStatus {
        name: instance.deployment.service.clone(),
        image: instance.deployment.image.clone(),
        namespace: instance.deployment.namespace.clone(),
        env_process: instance.deployment.env_process.clone(),
        env_vars: instance.deployment.env_vars.clone(),
        secrets: instance.deployment.secrets.clone(),
        labels: instance.deployment.labels.clone(),
        annotations: instance.deployment.annotations.clone(),
        invocation_count: instance.invocations.load(Ordering::Relaxed) as f64,
        replicas: 1,
        available_replicas: u64::from(running),
        created_at: Some(instance.created_at.clone()),
    }
}

async fn futures_stop(instances: Vec<Instance>) {
    let stops: Vec<_> = instances
        .into_iter()
        .map(|i| tokio::spawn(stop_instance(i)))
        .collect();
    for stop in stops {
        let _ = stop.await;
    }
}

async fn stop_instance(mut instance: Instance) {
    if let Some(stop) = instance.stop.take() {
        let _ = stop.send(());
    }
    let _ = (&mut instance.monitor).await;
}

/// Runs the function's process, restarting it when it exits on its own,
/// until told to stop.
async fn supervise_process(
    binary: PathBuf,
    environment: BTreeMap<String, String>,
    cpu_limit: Option<crate::cpu::CpuLimit>,
    log: PathBuf,
    state: Arc<Mutex<ProcessState>>,
    mut stop: oneshot::Receiver<()>,
    on_change: Arc<dyn Fn() + Send + Sync>,
) {
    let mut backoff = Duration::from_millis(200);
    loop {
        let child = spawn(&binary, &environment, &log);
        let mut child = match child {
            Ok(child) => child,
            Err(error) => {
                append_log(
                    &log,
                    &format!("edge-devnet: cannot start {}: {error:#}", binary.display()),
                );
                tokio::select! {
                    _ = &mut stop => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
                continue;
            }
        };
        if let (Some(limit), Some(pid)) = (&cpu_limit, child.id())
            && let Err(reason) = limit.add(pid)
        {
            append_log(
                &log,
                &format!("edge-devnet: CPU limit not applied: {reason}"),
            );
        }
        state.lock().expect("process state poisoned").pid = child.id();
        on_change();
        tokio::select! {
            exit = child.wait() => {
                let description = exit.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                append_log(&log, &format!("edge-devnet: the function exited ({description}); restarting in {backoff:?}"));
                {
                    let mut state = state.lock().expect("process state poisoned");
                    state.pid = None;
                    state.restarts += 1;
                }
                on_change();
                tokio::select! {
                    _ = &mut stop => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
            }
            _ = &mut stop => {
                terminate(&mut child).await;
                state.lock().expect("process state poisoned").pid = None;
                on_change();
                return;
            }
        }
    }
}

fn spawn(
    binary: &Path,
    environment: &BTreeMap<String, String>,
    log: &Path,
) -> anyhow::Result<Child> {
    let out = OpenOptions::new().create(true).append(true).open(log)?;
    let err = out.try_clone()?;
    Ok(Command::new(binary)
        .env_clear()
        .envs(environment)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()?)
}

/// SIGTERM, then SIGKILL if it has not exited after [`STOP_GRACE`].
async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

fn append_log(log: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(log) {
        let _ = writeln!(file, "{line}");
    }
}

fn write_secrets(
    dir: &Path,
    names: &[String],
    secrets: &BTreeMap<String, String>,
) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    for name in names {
        let Some(value) = secrets.get(name) else {
            continue;
        };
        let path = dir.join(name);
        std::fs::write(&path, value)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Function and secret names become file names: keep them tame.
pub fn check_name(name: &str) -> Result<(), DeployError> {
    let ok = !name.is_empty()
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(DeployError::InvalidName(name.to_string()))
    }
}

/// A port that was free on 127.0.0.1 a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
