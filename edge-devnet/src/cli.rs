//! The `edge-devnet` command line.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::images::{BuildOptions, build};
use crate::state::{DevnetState, command_line, is_alive};
use crate::supervisor;
use crate::topology::LinkPlan;

/// A real multi-node OpenFaaS-like hierarchy on this machine: a redis-server
/// and a gateway per node, deployed functions run as local processes.
#[derive(Debug, Parser)]
#[command(name = "edge-devnet", version)]
pub struct Cli {
    /// The devnet's folder: state, resolved hierarchy, logs, built functions.
    #[arg(
        long,
        global = true,
        env = "EDGE_DEVNET_DIR",
        default_value = ".edge-devnet"
    )]
    pub dir: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Brings up every node of a hierarchy file and writes the resolved
    /// hierarchy (gateway URLs, Redis addresses, passwords) for the deployer.
    Up {
        /// The hierarchy file; mainLocation fields are replaced by the devnet's.
        hierarchy: PathBuf,
        /// Stay in the foreground until Ctrl-C instead of running in the background.
        #[arg(long)]
        foreground: bool,
        /// Emulated links.
        #[command(flatten)]
        links: LinkArgs,
    },
    /// Shows the nodes, their Redis servers and the functions with their pids and ports.
    Status {
        /// `text` or `json` (the state file).
        #[arg(long, default_value = "text")]
        format: String,
    },
    /// Stops everything `up` started, and nothing else.
    Down,
    /// Builds the functions of a stack file with cargo, laid out as
    /// `faas-cli build --shrinkwrap` does, and records image → binary.
    Build {
        /// The stack file.
        #[arg(short = 'f', long = "yaml", default_value = "stack.yaml")]
        stack: PathBuf,
        /// Only these functions (repeatable).
        #[arg(long)]
        filter: Vec<String>,
        /// Build with optimisations.
        #[arg(long)]
        release: bool,
    },
    /// Records an already built binary for an image name (e.g. the
    /// offloading manager), as `build` does for stack functions.
    #[command(name = "image-add")]
    ImageAdd {
        /// The image name deployments will use.
        image: String,
        /// The binary.
        binary: PathBuf,
    },
    /// Runs a devnet in this process (what `up` starts in the background).
    #[command(hide = true, name = "__supervise")]
    Supervise {
        /// The hierarchy file.
        hierarchy: PathBuf,
        /// Emulated links.
        #[command(flatten)]
        links: LinkArgs,
    },
}

/// `up`'s link emulation: a userspace proxy per link crossed, so that
/// node-to-node and client-to-node traffic pays each link's latency and
/// shares its bandwidth (see the `topology` module).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LinkArgs {
    /// A parent–child link's profile, `LATENCY[+JITTER][/BANDWIDTH]` one way
    /// (`55ms/160mbit`, `5ms+1ms/1gbit`) or `lan`, `cloud`, `none`:
    /// `PROFILE` for every link, `NODE=PROFILE` or `LEVEL=PROFILE` for the
    /// link between a node (or each node of a level) and its parent.
    /// Repeatable; later ones win.
    #[arg(long = "link", value_name = "[NODE=]PROFILE")]
    pub link: Vec<String>,
    /// The profile of the link between each node and its clients; clients
    /// reach the nodes through the addresses `status` lists under
    /// `clients`.
    #[arg(long, value_name = "PROFILE")]
    pub access: Option<String>,
}

impl LinkArgs {
    /// The plan these flags describe.
    pub fn plan(&self) -> anyhow::Result<LinkPlan> {
        let mut plan = LinkPlan::default();
        for link in &self.link {
            plan.add_link(link)?;
        }
        if let Some(access) = &self.access {
            plan.access = Some(
                access
                    .parse()
                    .with_context(|| format!("--access {access}"))?,
            );
        }
        Ok(plan)
    }

    fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for link in &self.link {
            args.extend(["--link".to_string(), link.clone()]);
        }
        if let Some(access) = &self.access {
            args.extend(["--access".to_string(), access.clone()]);
        }
        args
    }
}

/// Runs the command line; errors are printed and become exit status 1.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("edge-devnet: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up {
            hierarchy,
            foreground,
            links,
        } => {
            let plan = links.plan()?;
            if foreground {
                init_logging();
                runtime()?.block_on(supervisor::run(&hierarchy, &cli.dir, &plan))
            } else {
                up(&hierarchy, &cli.dir, &links)
            }
        }
        Command::Supervise { hierarchy, links } => {
            init_logging();
            runtime()?.block_on(supervisor::run(&hierarchy, &cli.dir, &links.plan()?))
        }
        Command::Status { format } => status(&cli.dir, &format),
        Command::Down => down(&cli.dir),
        Command::ImageAdd { image, binary } => {
            let stored = crate::images::add(&cli.dir, &image, &binary)?;
            println!("image {image} → {}", stored.display());
            Ok(())
        }
        Command::Build {
            stack,
            filter,
            release,
        } => {
            std::fs::create_dir_all(&cli.dir)?;
            for built in build(&stack, &cli.dir, &BuildOptions { filter, release })? {
                println!(
                    "{}: image {} → {}",
                    built.function,
                    built.image,
                    built.binary.display()
                );
            }
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(false)
        .try_init();
}

/// Whether `state`'s supervisor is still running.
fn supervisor_running(state: &DevnetState) -> bool {
    is_alive(state.supervisor_pid)
        && command_line(state.supervisor_pid).is_some_and(|c| c.contains("__supervise"))
}

fn up(hierarchy: &Path, dir: &Path, links: &LinkArgs) -> anyhow::Result<()> {
    // Validate here, so that a bad file or flag is reported at once and by name.
    let infrastructure = edge_sdk::hierarchy::Infrastructure::from_path(hierarchy)
        .with_context(|| format!("invalid hierarchy {}", hierarchy.display()))?;
    links.plan()?.check(&infrastructure)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some(state) = DevnetState::read(dir)? {
        if supervisor_running(&state) {
            bail!(
                "a devnet is already up in {} (supervisor pid {}): run `edge-devnet down --dir {}` first",
                dir.display(),
                state.supervisor_pid,
                dir.display()
            );
        }
        stop_leftovers(&state);
        std::fs::remove_file(DevnetState::path(dir))?;
    }
    let started = Instant::now();
    let log_path = dir.join("devnet.log");
    let log = std::fs::File::create(&log_path)?;
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .arg("--dir")
        .arg(dir)
        .arg("__supervise")
        .arg(std::path::absolute(hierarchy)?)
        .args(links.to_args())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("cannot start the devnet supervisor")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let state = loop {
        if let Some(state) = DevnetState::read(dir)?.filter(|s| s.ready) {
            break state;
        }
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("the devnet did not start ({status}):\n{}", log.trim_end());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the devnet did not come up within 60 s; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    println!(
        "devnet up in {:.0} ms: {} nodes (supervisor pid {})",
        started.elapsed().as_secs_f64() * 1000.0,
        state.nodes.len(),
        state.supervisor_pid
    );
    print_nodes(&state);
    print_links(&state);
    println!(
        "hierarchy for the deployer: {}",
        state.hierarchy_file.display()
    );
    println!("stop it with: edge-devnet down --dir {}", dir.display());
    Ok(())
}

fn print_nodes(state: &DevnetState) {
    println!(
        "{:<16} {:<12} {:<24} {:<18} functions",
        "node", "level", "gateway", "redis"
    );
    for node in &state.nodes {
        let functions: Vec<String> = node
            .functions
            .iter()
            .map(|f| match f.pid {
                Some(pid) if is_alive(pid) => format!(
                    "{} (pid {pid}, port {}, restarts {})",
                    f.name, f.port, f.restarts
                ),
                _ => format!("{} (not running, restarts {})", f.name, f.restarts),
            })
            .collect();
        let redis = if is_alive(node.redis_pid) {
            format!("127.0.0.1:{} pid {}", node.redis_port, node.redis_pid)
        } else {
            format!("127.0.0.1:{} DOWN", node.redis_port)
        };
        println!(
            "{:<16} {:<12} {:<24} {:<18} {}",
            node.name,
            node.level,
            node.gateway,
            redis,
            if functions.is_empty() {
                "-".to_string()
            } else {
                functions.join(", ")
            }
        );
    }
}

fn print_links(state: &DevnetState) {
    if state.links.is_empty() {
        return;
    }
    println!();
    println!(
        "{:<16} {:<16} {:<20} {:<20} connections",
        "link", "to", "up", "down"
    );
    for link in &state.links {
        println!(
            "{:<16} {:<16} {:<20} {:<20} {}",
            link.node, link.peer, link.up, link.down, link.connections
        );
    }
    if let Some(node) = state.nodes.first() {
        println!();
        println!(
            "clients attached to {} reach the nodes at: {}",
            node.name,
            node.clients
                .iter()
                .map(|(to, url)| format!("{to} {url}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        println!("(every node's view: status --format json, nodes[].clients)");
    }
}

fn status(dir: &Path, format: &str) -> anyhow::Result<()> {
    let Some(state) = DevnetState::read(dir)? else {
        bail!(
            "no devnet in {}: start one with `edge-devnet up <hierarchy.json>`",
            dir.display()
        );
    };
    match format {
        "json" => println!("{}", serde_json::to_string_pretty(&state)?),
        "text" => {
            let running = supervisor_running(&state);
            println!(
                "devnet in {}: supervisor pid {} {}",
                dir.display(),
                state.supervisor_pid,
                if running {
                    "running"
                } else {
                    "NOT running (run `down` to clean up)"
                }
            );
            print_nodes(&state);
            print_links(&state);
        }
        other => bail!("unknown format {other:?}: use text or json"),
    }
    Ok(())
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let Some(state) = DevnetState::read(dir)? else {
        println!("no devnet in {}", dir.display());
        return Ok(());
    };
    let pids = state.pids();
    if supervisor_running(&state) {
        let _ = kill(Pid::from_raw(state.supervisor_pid as i32), Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while is_alive(state.supervisor_pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let killed = stop_leftovers(&state);
    let _ = std::fs::remove_file(DevnetState::path(dir));
    let left: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|&pid| is_ours(&state, pid))
        .collect();
    if !left.is_empty() {
        bail!("processes still running after down: {left:?}");
    }
    println!(
        "devnet in {} stopped: {} processes{}",
        dir.display(),
        pids.len(),
        if killed > 0 {
            format!(" ({killed} had to be killed)")
        } else {
            String::new()
        }
    );
    Ok(())
}

/// Whether `pid` is alive and still one of the processes `state` records
/// (not a reused pid).
fn is_ours(state: &DevnetState, pid: u32) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let Some(command) = command_line(pid) else {
        return false;
    };
    if pid == state.supervisor_pid {
        return command.contains("__supervise");
    }
    state.nodes.iter().any(|node| {
        (pid == node.redis_pid
            && command.contains("redis-server")
            && command.contains(&node.redis_port.to_string()))
            || node
                .functions
                .iter()
                .any(|f| f.pid == Some(pid) && command.contains(&f.binary.display().to_string()))
    })
}

/// SIGKILLs what is left of a devnet whose supervisor is gone; returns how
/// many processes it killed.
fn stop_leftovers(state: &DevnetState) -> usize {
    let mut killed = 0;
    for pid in state.pids() {
        if is_ours(state, pid) {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            killed += 1;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while state.pids().iter().any(|&pid| is_alive(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    killed
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        super::Cli::command().debug_assert();
    }
}
