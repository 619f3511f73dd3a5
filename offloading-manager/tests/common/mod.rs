//! Three real nodes in one process: for each, a redis-server of its own, a
//! manager, a counter function, and a small gateway routing
//! `/function/<name>` to them that can be cut off (connections answered
//! 502) and restored, which is how the tests kill and restart a node.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use edge_sdk::runtime::Config;
use edge_sdk::{Request, Session, blocking, nonblocking};
use offloading_manager::protocol::Manager;
use redis::Commands;
use test_support::{RedisServer, tempdir};
use tokio::net::TcpListener;

pub const MANAGER: &str = "session-offloading-manager";
pub const TOKEN: &str = "test-node-token";

/// Increments the session's counter; answers the new value.
#[blocking]
pub async fn counter(_req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    let value: u64 = session.get_json("counter").await?.unwrap_or(0) + 1;
    session.set_json("counter", &value)?;
    // Some bulk, so that sessions have a size worth moving.
    if session.get_bytes("bulk").await?.is_none() {
        session.set_bytes("bulk", vec![7u8; 64 * 1024]);
    }
    Ok(value.to_string())
}

/// Reads the session's counter without a lock.
#[nonblocking]
pub async fn reader(_req: Request, session: &Session) -> edge_sdk::Result<String> {
    Ok(session
        .get_json::<u64>("counter")
        .await?
        .map(|v| v.to_string())
        .unwrap_or_default())
}

/// Stores the request body (at most a few hundred bytes: a small
/// session) under `note`; answers `ok`.
#[blocking]
pub async fn note(req: Request, session: &mut Session) -> edge_sdk::Result<&'static str> {
    session.set_bytes("note", req.body());
    Ok("ok")
}

/// One node.
pub struct Node {
    pub name: String,
    pub redis: RedisServer,
    pub gateway: String,
    routes: Arc<Mutex<HashMap<String, u16>>>,
    down: Arc<AtomicBool>,
    manager: Mutex<Option<(Arc<Manager>, tokio::task::JoinHandle<()>)>>,
    config: Config,
    /// The recovery delay of its manager; with one, the manager also
    /// settles due migrations by itself, as the manager's process does.
    /// Without (the default), recovery runs only when a test triggers it,
    /// and at once.
    recovery: Option<Duration>,
    /// The environment the manager's process would be given on this node.
    pub manager_env: Vec<(&'static str, String)>,
    _secrets: test_support::TempDir,
}

impl Node {
    /// The manager currently running on this node.
    pub fn manager(&self) -> Arc<Manager> {
        Arc::clone(
            &self
                .manager
                .lock()
                .unwrap()
                .as_ref()
                .expect("the manager is running")
                .0,
        )
    }

    /// Cuts the node off: its gateway answers nothing but 502, and its
    /// manager process is gone (its Redis keeps what was stored).
    pub fn kill(&self) {
        self.down.store(true, Ordering::SeqCst);
        if let Some((_, task)) = self.manager.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Cuts the node off from the outside without touching its manager
    /// (what `kill` does first); usable from any thread.
    pub fn cut_off_handle(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.down)
    }

    /// Stops the manager running in this process, leaving the node up (for
    /// a manager run as a process of its own, see [`Node::route`]).
    pub fn stop_manager(&self) {
        if let Some((_, task)) = self.manager.lock().unwrap().take() {
            task.abort();
        }
    }

    /// Routes `/function/<function>` of this node's gateway to `port`.
    pub fn route(&self, function: &str, port: u16) {
        self.routes
            .lock()
            .unwrap()
            .insert(function.to_string(), port);
    }

    /// Starts a fresh manager process on the node again.
    pub async fn restart(&self) {
        self.start_manager().await;
        self.down.store(false, Ordering::SeqCst);
    }

    async fn start_manager(&self) {
        let delay = self.recovery.unwrap_or(Duration::ZERO);
        let manager = offloading_manager::manager(&self.config, delay).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let router = offloading_manager::api::router(Arc::clone(&manager));
        // As the manager's process does: serve, index the store meanwhile,
        // and (with a recovery delay) settle due migrations by itself.
        let upgrading = Arc::clone(&manager);
        let recovering = self.recovery.map(|_| Arc::clone(&manager));
        let task = tokio::spawn(async move {
            let upgrade = async move { upgrading.upgrade_store().await.unwrap() };
            let serve = async move {
                let _ = axum::serve(listener, router).await;
            };
            let recover = async move {
                if let Some(manager) = recovering {
                    manager.recover_when_due(Duration::from_millis(100)).await;
                }
            };
            tokio::join!(upgrade, serve, recover);
        });
        self.routes
            .lock()
            .unwrap()
            .insert(MANAGER.to_string(), port);
        *self.manager.lock().unwrap() = Some((manager, task));
    }

    pub fn connection(&self) -> redis::Connection {
        self.redis.connection()
    }

    /// The session's data field on this node, if any.
    pub fn counter(&self, session: &str) -> Option<u64> {
        let keys = edge_store::SessionKeys::new(session);
        let stored: Option<Vec<u8>> = self.connection().hget(keys.data(), "counter").unwrap();
        stored.map(|v| std::str::from_utf8(&v[1..]).unwrap().parse().unwrap())
    }

    /// The session's metadata on this node, under the thesis's names
    /// (`currentLocation`, `proprietaryLocation`, `epoch`, `migration`);
    /// empty if there is none.
    pub fn meta(&self, session: &str) -> HashMap<String, String> {
        use edge_store::layout::meta;
        let stored: HashMap<String, Vec<u8>> = self
            .connection()
            .hgetall(edge_store::SessionKeys::new(session).meta())
            .unwrap();
        [
            (meta::LOCATION, "currentLocation"),
            (meta::PROPRIETARY, "proprietaryLocation"),
            (meta::EPOCH, "epoch"),
            (meta::FENCE, "migration"),
        ]
        .into_iter()
        .filter_map(|(field, name)| {
            let value = stored.get(field)?;
            Some((
                name.to_string(),
                String::from_utf8_lossy(value).into_owned(),
            ))
        })
        .collect()
    }

    /// This node's store (whether its manager runs or not).
    pub fn store(&self) -> edge_store::Store {
        edge_store::Store::open(
            &self.config.redis_url,
            self.config.redis_password.as_deref(),
            Duration::from_secs(5),
            self.name.as_str(),
        )
        .unwrap()
    }

    pub fn set_config(&self, field: &str, value: &str) {
        let _: () = self.connection().hset("edge:config", field, value).unwrap();
    }
}

/// Three nodes in a chain: cloud (root) → milan → m1.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub client: reqwest::Client,
}

#[derive(Clone)]
struct GatewayState {
    routes: Arc<Mutex<HashMap<String, u16>>>,
    down: Arc<AtomicBool>,
    client: reqwest::Client,
}

async fn proxy(
    State(state): State<GatewayState>,
    Path(params): Path<HashMap<String, String>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.down.load(Ordering::SeqCst) {
        return (StatusCode::BAD_GATEWAY, "node down").into_response();
    }
    let name = params.get("name").cloned().unwrap_or_default();
    let Some(port) = state.routes.lock().unwrap().get(&name).copied() else {
        return (StatusCode::NOT_FOUND, "no such function").into_response();
    };
    let rest = params.get("rest").cloned().unwrap_or_default();
    let mut url = format!("http://127.0.0.1:{port}/{rest}");
    if let Some(query) = uri.query() {
        url.push('?');
        url.push_str(query);
    }
    let mut request = state.client.request(method, url).body(body);
    for (name, value) in &headers {
        if name != "host" && name != "content-length" {
            request = request.header(name, value);
        }
    }
    match request.send().await {
        Ok(answer) => {
            let status = answer.status();
            let mut response_headers = HeaderMap::new();
            for (name, value) in answer.headers() {
                if name != "transfer-encoding" && name != "content-length" {
                    response_headers.insert(name.clone(), value.clone());
                }
            }
            let body = answer.bytes().await.unwrap_or_default();
            let mut response = Response::new(axum::body::Body::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = response_headers;
            response
        }
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

impl Cluster {
    pub async fn start() -> Cluster {
        Cluster::start_with(None).await
    }

    /// [`Cluster::start`], with managers whose recovery delay is
    /// `recovery` and that settle due migrations by themselves.
    pub async fn start_with_recovery(recovery: Duration) -> Cluster {
        Cluster::start_with(Some(recovery)).await
    }

    async fn start_with(recovery: Option<Duration>) -> Cluster {
        let names = ["cloud", "milan", "m1"];
        let mut listeners = Vec::new();
        for _ in names {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listeners.push(listener);
        }
        let gateways: Vec<String> = listeners
            .iter()
            .map(|l| format!("http://127.0.0.1:{}", l.local_addr().unwrap().port()))
            .collect();
        let hierarchy = serde_json::json!({
            "areaTypesIdentifiers": ["cloud", "city", "district"],
            "hierarchy": [{ "areaName": "cloud", "mainLocation": { "openfaas_gateway": gateways[0] }, "areas": [
                { "areaName": "milan", "mainLocation": { "openfaas_gateway": gateways[1] }, "areas": [
                    { "areaName": "m1", "mainLocation": { "openfaas_gateway": gateways[2] } } ] } ] }]
        })
        .to_string();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap();
        let mut nodes = Vec::new();
        for (i, listener) in listeners.into_iter().enumerate() {
            let name = names[i];
            let redis = RedisServer::start_with_password(&format!("{name}-pw"));
            let secrets = tempdir();
            std::fs::write(secrets.join("edge-redis-password"), format!("{name}-pw")).unwrap();
            std::fs::write(secrets.join("edge-node-token"), TOKEN).unwrap();
            let env_for = |function: &str| {
                vec![
                    ("EDGE_LOCATION", name.to_string()),
                    ("EDGE_FUNCTION", function.to_string()),
                    ("EDGE_INFRASTRUCTURE", hierarchy.clone()),
                    ("EDGE_REDIS_URL", redis.url()),
                    ("EDGE_SECRETS_DIR", secrets.display().to_string()),
                    ("EDGE_REDIS_TIMEOUT_MS", "2000".to_string()),
                ]
            };
            let config_for = |function: &str| {
                let env = env_for(function);
                Config::from_lookup(|n| env.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()))
                    .unwrap()
            };
            let routes = Arc::new(Mutex::new(HashMap::new()));
            // The functions.
            for (function, port) in [
                (
                    "counter",
                    serve_function(counter, config_for("counter")).await,
                ),
                ("reader", serve_function(reader, config_for("reader")).await),
                ("note", serve_function(note, config_for("note")).await),
            ] {
                routes.lock().unwrap().insert(function.to_string(), port);
            }
            let down = Arc::new(AtomicBool::new(false));
            let state = GatewayState {
                routes: Arc::clone(&routes),
                down: Arc::clone(&down),
                client: client.clone(),
            };
            let router = Router::new()
                .route("/function/{name}", axum::routing::any(proxy))
                .route("/function/{name}/{*rest}", axum::routing::any(proxy))
                .layer(axum::extract::DefaultBodyLimit::max(256 * 1024 * 1024))
                .with_state(state);
            tokio::spawn(async move {
                let _ = axum::serve(listener, router).await;
            });
            let config = config_for(MANAGER);
            let manager_env = env_for(MANAGER);
            let node = Node {
                name: name.to_string(),
                redis,
                gateway: gateways[i].clone(),
                routes,
                down,
                manager: Mutex::new(None),
                config,
                recovery,
                manager_env,
                _secrets: secrets,
            };
            node.start_manager().await;
            nodes.push(node);
        }
        Cluster { nodes, client }
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// Compares every node's indexes with a full scan of its sessions.
    pub async fn assert_indexes_exact(&self) {
        for node in &self.nodes {
            let report = node.store().audit_indexes().await.unwrap();
            assert!(
                report.problems.is_empty(),
                "the indexes of {} differ from its sessions: {:#?}",
                node.name,
                report.problems
            );
        }
    }

    /// A manager command on `node`, with the node token.
    pub async fn command(
        &self,
        node: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}/function/{MANAGER}", self.node(node).gateway))
            .query(query)
            .header("x-edge-token", TOKEN);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// A blocking call to the counter through `node`, following redirects
    /// (at most `max_redirects`); returns the status, body and the number
    /// of redirects taken.
    pub async fn increment(
        &self,
        node: &str,
        session: &str,
        max_redirects: usize,
    ) -> (StatusCode, String, usize) {
        let id = uuid::Uuid::new_v4().to_string();
        let mut url = format!("{}/function/counter", self.node(node).gateway);
        for redirects in 0..=max_redirects {
            let answer = self
                .client
                .post(&url)
                .header("X-session", session)
                .header("X-session-request-id", &id)
                .send()
                .await
                .unwrap();
            if answer.status() == StatusCode::TEMPORARY_REDIRECT {
                url = answer.headers()["location"].to_str().unwrap().to_string();
                continue;
            }
            let status = answer.status();
            return (status, answer.text().await.unwrap(), redirects);
        }
        panic!("more than {max_redirects} redirects for session {session} from {node}");
    }

    /// `force-offload` of `session` at `node`.
    pub async fn force_offload(&self, node: &str, session: &str) -> reqwest::Response {
        self.command(
            node,
            &[("command", "force-offload")],
            &[("x-forced-session", session)],
        )
        .await
    }

    /// Creates `session` at m1 with `writes` increments, then moves it to
    /// milan with a clean offload, so that a migration from milan has
    /// three different nodes as source, destination (cloud) and
    /// proprietary node (m1).
    pub async fn session_at_milan(&self, session: &str, writes: u64) {
        for expected in 1..=writes {
            assert_eq!(
                self.increment("m1", session, 0).await.1,
                expected.to_string()
            );
        }
        let first = self.force_offload("m1", session).await;
        assert_eq!(first.status(), 200);
        assert_eq!(self.holders(session), [("milan".to_string(), writes)]);
    }

    /// Which nodes hold the session's data.
    pub fn holders(&self, session: &str) -> Vec<(String, u64)> {
        self.nodes
            .iter()
            .filter_map(|n| n.counter(session).map(|c| (n.name.clone(), c)))
            .collect()
    }
}

async fn serve_function<H: edge_sdk::handler::Handler<K>, K: 'static>(
    handler: H,
    config: Config,
) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(edge_sdk::runtime::serve(
        handler,
        config,
        listener,
        std::future::pending(),
    ));
    port
}

/// A node's manager as a process of its own (the binary at `binary`),
/// given the node's manager environment plus `env`; killed when dropped.
pub struct ManagerProcess {
    child: std::process::Child,
}

impl ManagerProcess {
    pub async fn start(
        cluster: &Cluster,
        node: &str,
        binary: &std::path::Path,
        env: &[(&str, String)],
    ) -> ManagerProcess {
        let node = cluster.node(node);
        node.stop_manager();
        let port = test_support::free_port();
        let child = std::process::Command::new(binary)
            .envs(node.manager_env.iter().map(|(k, v)| (*k, v.as_str())))
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("EDGE_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        node.route(MANAGER, port);
        let health = format!("http://127.0.0.1:{port}/_/health");
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while cluster.client.get(&health).send().await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the manager did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        ManagerProcess { child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Peak resident set size so far (`VmHWM`), KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        test_support::peak_rss_kib(self.child.id())
    }
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
