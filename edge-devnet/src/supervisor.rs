//! The supervisor: the one process that owns a devnet. It starts a
//! `redis-server` and a gateway per node, writes the resolved hierarchy and
//! the state file, runs the cron connectors, and on SIGTERM (or Ctrl-C)
//! stops the functions, the gateways and the Redis servers, in that order.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use edge_sdk::hierarchy::{Area, Infrastructure, MainLocation};
use tokio::net::TcpListener;

use crate::functions::{Functions, free_port};
use crate::gateway::Gateway;
use crate::state::{DevnetState, FunctionState, NodeState};
use crate::topology::{LinkPlan, NodeAddress, Topology};
use crate::{cron, redis};

/// The resolved hierarchy file in a devnet folder.
pub fn hierarchy_path(dir: &Path) -> PathBuf {
    dir.join("hierarchy.json")
}

/// The gateways of the nodes, by name, once they are all up.
type Gateways = std::sync::OnceLock<Vec<(String, Arc<Gateway>)>>;

struct Node {
    name: String,
    level: String,
    gateway: Arc<Gateway>,
    port: u16,
    password: String,
    redis_port: u16,
    redis_password: String,
    redis: tokio::process::Child,
    listener: Option<TcpListener>,
}

/// Brings up the hierarchy in `hierarchy_file` in the folder `dir` and runs
/// it until SIGTERM or Ctrl-C.
pub async fn run(hierarchy_file: &Path, dir: &Path, plan: &LinkPlan) -> anyhow::Result<()> {
    let infrastructure = Infrastructure::from_path(hierarchy_file)
        .with_context(|| format!("invalid hierarchy {}", hierarchy_file.display()))?;
    std::fs::create_dir_all(dir.join("logs"))?;
    let dir = std::path::absolute(dir)?;
    let state: Arc<Mutex<Option<DevnetState>>> = Arc::new(Mutex::new(None));
    let nodes_cell: Arc<Gateways> = Arc::new(std::sync::OnceLock::new());
    // Changes are announced from many tasks; one writer task refreshes the
    // state file after each announcement, so writes never overtake each
    // other and a burst of changes costs one write.
    let changed = Arc::new(tokio::sync::Notify::new());
    let persist = {
        let changed = Arc::clone(&changed);
        Arc::new(move || changed.notify_one()) as Arc<dyn Fn() + Send + Sync>
    };
    {
        let state = Arc::clone(&state);
        let nodes_cell = Arc::clone(&nodes_cell);
        let dir = dir.clone();
        tokio::spawn(async move {
            loop {
                changed.notified().await;
                refresh_state(&state, &nodes_cell, &dir).await;
            }
        });
    }

    let mut nodes = Vec::new();
    let starts = infrastructure.nodes().map(|node| {
        let name = node.name().to_string();
        let level = node.level.to_string();
        let dir = dir.clone();
        let persist = Arc::clone(&persist);
        async move {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("cannot listen on 127.0.0.1")?;
            let port = listener.local_addr()?.port();
            let password = random_secret();
            let redis_password = random_secret();
            // A free port can be taken by someone else before redis-server
            // binds it: try another one.
            let mut attempt = 0;
            let (redis_port, redis) = loop {
                attempt += 1;
                let port = free_port()?;
                let log = dir.join("logs").join(format!("redis-{name}.log"));
                match redis::start(port, &redis_password, &log).await {
                    Ok(redis) => break (port, redis),
                    Err(error) if attempt < 3 => tracing::warn!(node = %name, "redis-server on port {port}: {error:#}; trying another port"),
                    Err(error) => return Err(error),
                }
            };
            let functions = Functions::new(&name, &dir, Arc::clone(&persist));
            let gateway = Arc::new(Gateway::new(&name, &password, functions, persist));
            anyhow::Ok(Node {
                name,
                level,
                gateway,
                port,
                password,
                redis_port,
                redis_password,
                redis,
                listener: Some(listener),
            })
        }
    });
    for started in futures_join(starts.collect()).await {
        nodes.push(started?);
    }

    // The hierarchy the deployer will use, with this devnet's addresses.
    let resolved = resolve(&infrastructure, &nodes)?;
    let topology = if plan.is_empty() {
        None
    } else {
        let addresses: Vec<NodeAddress> = nodes
            .iter()
            .map(|n| NodeAddress {
                name: n.name.clone(),
                gateway_port: n.port,
                redis_port: n.redis_port,
            })
            .collect();
        let topology = Arc::new(Topology::start(&infrastructure, &addresses, plan).await?);
        tracing::info!(
            proxies = topology.proxy_count(),
            "emulated links: {}",
            topology
                .links()
                .iter()
                .map(|l| format!("{}–{} {}", l.node, l.peer, l.up))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for node in &nodes {
            node.gateway.set_topology(Arc::clone(&topology));
        }
        Some(topology)
    };
    std::fs::write(hierarchy_path(&dir), resolved.to_json_pretty())?;

    let mut servers = Vec::new();
    for node in &mut nodes {
        let listener = node.listener.take().expect("each gateway is served once");
        let router = Arc::clone(&node.gateway).router();
        // TCP_NODELAY: a gateway relays small answers; none should wait
        // for the previous segment's acknowledgement.
        let listener = axum::serve::ListenerExt::tap_io(listener, |stream| {
            let _ = stream.set_nodelay(true);
        });
        servers.push(tokio::spawn(
            async move { axum::serve(listener, router).await },
        ));
        tokio::spawn(cron::run(Arc::clone(&node.gateway), node.port));
    }
    let _ = nodes_cell.set(
        nodes
            .iter()
            .map(|n| (n.name.clone(), Arc::clone(&n.gateway)))
            .collect(),
    );
    *state.lock().expect("state poisoned") = Some(DevnetState {
        supervisor_pid: std::process::id(),
        ready: true,
        started_at: chrono::Utc::now().to_rfc3339(),
        hierarchy_file: hierarchy_path(&dir),
        nodes: nodes
            .iter()
            .map(|n| NodeState {
                name: n.name.clone(),
                level: n.level.clone(),
                gateway: format!("http://127.0.0.1:{}", n.port),
                password: n.password.clone(),
                redis_port: n.redis_port,
                redis_password: n.redis_password.clone(),
                redis_pid: n.redis.id().unwrap_or_default(),
                functions: Vec::new(),
                clients: topology
                    .as_ref()
                    .map(|t| t.client_gateways(&n.name))
                    .unwrap_or_default(),
            })
            .collect(),
        links: topology.as_ref().map(|t| t.links()).unwrap_or_default(),
    });
    refresh_state(&state, &nodes_cell, &dir).await;
    tracing::info!(nodes = nodes.len(), "devnet up");

    shutdown_signal().await;
    tracing::info!("stopping the devnet");
    for node in &nodes {
        node.gateway.functions.stop_all().await;
    }
    crate::cpu::remove_all();
    for server in servers {
        server.abort();
    }
    drop(topology);
    for node in &mut nodes {
        let _ = node.redis.start_kill();
        let _ = node.redis.wait().await;
    }
    let _ = std::fs::remove_file(DevnetState::path(&dir));
    Ok(())
}

async fn refresh_state(state: &Mutex<Option<DevnetState>>, nodes: &Gateways, dir: &Path) {
    let Some(nodes) = nodes.get() else { return };
    let mut functions = Vec::new();
    for (name, gateway) in nodes {
        let running = gateway.functions.running().await;
        functions.push((name.clone(), running));
    }
    let links = nodes
        .first()
        .and_then(|(_, gateway)| gateway.functions.topology())
        .map(|topology| topology.links());
    let snapshot = {
        let mut guard = state.lock().expect("state poisoned");
        let Some(current) = guard.as_mut() else {
            return;
        };
        if let Some(links) = links {
            current.links = links;
        }
        for node in &mut current.nodes {
            if let Some((_, running)) = functions.iter().find(|(name, _)| *name == node.name) {
                node.functions = running
                    .iter()
                    .map(|(name, r)| FunctionState {
                        name: name.clone(),
                        image: r.deployment.image.clone(),
                        binary: r.binary.clone(),
                        pid: r.pid,
                        port: r.port,
                        restarts: r.restarts,
                        log: r.log.clone(),
                    })
                    .collect();
            }
        }
        current.clone()
    };
    if let Err(error) = snapshot.write(dir) {
        tracing::error!("cannot write the state file: {error:#}");
    }
}

fn resolve(infrastructure: &Infrastructure, nodes: &[Node]) -> anyhow::Result<Infrastructure> {
    fn fill(area: &Area, nodes: &[Node]) -> Area {
        let node = nodes
            .iter()
            .find(|n| n.name == area.area_name)
            .expect("every area was started");
        Area {
            area_name: area.area_name.clone(),
            main_location: MainLocation {
                openfaas_gateway: Some(format!("http://127.0.0.1:{}", node.port)),
                openfaas_password: Some(node.password.clone()),
                redis_host: Some("127.0.0.1".to_string()),
                redis_port: Some(node.redis_port),
                redis_password: Some(node.redis_password.clone()),
            },
            areas: area.areas.iter().map(|child| fill(child, nodes)).collect(),
        }
    }
    Ok(Infrastructure::new(
        infrastructure.area_types_identifiers().to_vec(),
        fill(infrastructure.root(), nodes),
    )?)
}

async fn futures_join<T: Send + 'static>(
    futures: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await.expect("a node's start task panicked"));
    }
    results
}

fn random_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

async fn shutdown_signal() {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = terminate.recv() => {},
    }
}
