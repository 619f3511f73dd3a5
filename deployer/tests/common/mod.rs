//! Fixtures for the deployer's integration tests and benchmark: fake
//! OpenFaaS gateways (real HTTP servers on 127.0.0.1), hierarchy and stack
//! files, fake `faas-cli` and `kubectl` scripts, and a way to run the
//! binary.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use edge_sdk::hierarchy::{Area, Infrastructure, MainLocation};
use serde_json::Value;

/// The runtime all fake gateways of a test process run on.
pub fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime for the fake gateways")
    })
}

/// Requests in progress across every gateway that shares it, and the most
/// seen at once.
#[derive(Debug, Default)]
pub struct InFlight {
    current: AtomicUsize,
    max: AtomicUsize,
}

impl InFlight {
    /// The most requests that were in progress at the same time.
    pub fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

struct InFlightGuard(Arc<InFlight>);

impl InFlightGuard {
    fn enter(in_flight: &Arc<InFlight>) -> InFlightGuard {
        let now = in_flight.current.fetch_add(1, Ordering::SeqCst) + 1;
        in_flight.max.fetch_max(now, Ordering::SeqCst);
        InFlightGuard(in_flight.clone())
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How a fake gateway answers.
#[derive(Debug, Clone)]
pub struct Behavior {
    /// The `admin` password it accepts.
    pub password: String,
    /// The status of a successful call (OpenFaaS answers 200 or 202).
    pub success: StatusCode,
    /// Answer every request with this status instead.
    pub fail_with: Option<StatusCode>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Behavior {
    /// Accepts `password`, answers 200 at once.
    pub fn accepting(password: &str) -> Behavior {
        Behavior {
            password: password.to_owned(),
            success: StatusCode::OK,
            fail_with: None,
            delay: Duration::ZERO,
        }
    }
}

/// One request a fake gateway received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// `POST`, `PUT`, …
    pub method: String,
    /// e.g. `/system/functions`.
    pub path: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The body as text.
    pub body: String,
}

impl Recorded {
    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).expect("a JSON body")
    }
}

#[derive(Default)]
struct Store {
    requests: Vec<Recorded>,
    /// Secrets by name: the last body received.
    secrets: BTreeMap<String, Value>,
    /// Functions by service name: the last deployment received.
    functions: BTreeMap<String, Value>,
}

struct Shared {
    behavior: Behavior,
    in_flight: Arc<InFlight>,
    store: Mutex<Store>,
}

/// A fake OpenFaaS gateway: `/system/secrets` and `/system/functions` with
/// basic auth, keeping what it is sent.
pub struct FakeGateway {
    /// Its base URL, `http://127.0.0.1:<port>`.
    pub url: String,
    shared: Arc<Shared>,
}

impl FakeGateway {
    /// Starts a gateway on a free port of 127.0.0.1.
    pub fn start(behavior: Behavior, in_flight: Arc<InFlight>) -> FakeGateway {
        Self::start_on("127.0.0.1:0".parse().unwrap(), behavior, in_flight)
    }

    /// Starts a gateway on `address`.
    pub fn start_on(
        address: SocketAddr,
        behavior: Behavior,
        in_flight: Arc<InFlight>,
    ) -> FakeGateway {
        let shared = Arc::new(Shared {
            behavior,
            in_flight,
            store: Mutex::default(),
        });
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind(address))
            .unwrap_or_else(|e| panic!("bind {address}: {e}"));
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = Router::new().fallback(answer).with_state(shared.clone());
        runtime().spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeGateway { url, shared }
    }

    /// Every request received, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.store.lock().unwrap().requests.clone()
    }

    /// `METHOD /path` of every request, in order.
    pub fn calls(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect()
    }

    /// The secrets it holds, by name (the request bodies).
    pub fn secrets(&self) -> BTreeMap<String, Value> {
        self.shared.store.lock().unwrap().secrets.clone()
    }

    /// The functions it holds, by name (the deployments).
    pub fn functions(&self) -> BTreeMap<String, Value> {
        self.shared.store.lock().unwrap().functions.clone()
    }

    /// Pretends the function `name` is deployed already.
    pub fn preload_function(&self, name: &str) {
        self.shared
            .store
            .lock()
            .unwrap()
            .functions
            .insert(name.to_owned(), Value::Null);
    }

    /// Pretends the secret `name` exists already.
    pub fn preload_secret(&self, name: &str) {
        self.shared
            .store
            .lock()
            .unwrap()
            .secrets
            .insert(name.to_owned(), Value::Null);
    }
}

async fn answer(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let _in_flight = InFlightGuard::enter(&shared.in_flight);
    let behavior = &shared.behavior;
    if !behavior.delay.is_zero() {
        tokio::time::sleep(behavior.delay).await;
    }
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = String::from_utf8_lossy(&body).into_owned();
    let mut store = shared.store.lock().unwrap();
    store.requests.push(Recorded {
        method: method.to_string(),
        path: uri.path().to_owned(),
        authorization: authorization.clone(),
        body: body.clone(),
    });
    if let Some(status) = behavior.fail_with {
        return (status, format!("fake failure {}\n", status.as_u16()));
    }
    if authorization != Some(basic_auth("admin", &behavior.password)) {
        return (StatusCode::UNAUTHORIZED, "unauthorized\n".into());
    }
    let Ok(json) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON".into());
    };
    let ok = (behavior.success, String::new());
    match (method.as_str(), uri.path()) {
        ("POST", "/system/secrets") => {
            let name = json["name"].as_str().unwrap_or_default().to_owned();
            if store.secrets.contains_key(&name) {
                return (StatusCode::CONFLICT, format!("secret {name} exists"));
            }
            store.secrets.insert(name, json);
            ok
        }
        ("PUT", "/system/secrets") => {
            let name = json["name"].as_str().unwrap_or_default().to_owned();
            if !store.secrets.contains_key(&name) {
                return (StatusCode::NOT_FOUND, format!("secret {name} not found"));
            }
            store.secrets.insert(name, json);
            ok
        }
        ("PUT", "/system/functions") => {
            let name = json["service"].as_str().unwrap_or_default().to_owned();
            if !store.functions.contains_key(&name) {
                return (StatusCode::NOT_FOUND, format!("function {name} not found"));
            }
            store.functions.insert(name, json);
            ok
        }
        ("POST", "/system/functions") => {
            let name = json["service"].as_str().unwrap_or_default().to_owned();
            store.functions.insert(name, json);
            ok
        }
        _ => (StatusCode::NOT_FOUND, "no such route".into()),
    }
}

/// `Basic base64(user:password)`.
pub fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::from("Basic ");
    for chunk in input.chunks(3) {
        let bytes = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(bytes[0]) << 16) | (u32::from(bytes[1]) << 8) | u32::from(bytes[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A `mainLocation` for node `name` at `gateway`: password
/// `<name>-admin-pw`, Redis `redis.<name>.test:6379` with password
/// `<name>-redis-pw`.
pub fn location(name: &str, gateway: &str) -> MainLocation {
    MainLocation {
        openfaas_gateway: Some(gateway.to_owned()),
        openfaas_password: Some(format!("{name}-admin-pw")),
        redis_host: Some(format!("redis.{name}.test")),
        redis_port: Some(6379),
        redis_password: Some(format!("{name}-redis-pw")),
    }
}

/// A gateway URL where nothing listens: connections are refused.
pub fn dead_gateway() -> String {
    format!("http://127.0.0.1:{}", test_support::free_port())
}

/// Writes `infra` as the file `hierarchy.json` in `dir`.
pub fn write_hierarchy(dir: &Path, infra: &Infrastructure) -> PathBuf {
    let path = dir.join("hierarchy.json");
    std::fs::write(&path, infra.to_json_pretty()).unwrap();
    path
}

/// The stack file of the tests: function `cart` with every field
/// `faas-cli deploy` reads, plus an `environment_file`.
pub const STACK: &str = r#"version: 1.0
provider:
  name: openfaas
functions:
  cart:
    lang: rust-edge
    handler: ./cart
    image: ghcr.io/acme/cart:${CART_TAG:-0.1.0}
    fprocess: ./handler
    namespace: openfaas-fn
    environment:
      RUST_LOG: info
      EDGE_REDIS_URL: redis://set-by-the-stack:1
    environment_file:
      - cart-env.yml
    labels:
      com.openfaas.scale.min: 1
    annotations:
      topic: cron-function
      schedule: "*/1 * * * *"
    limits:
      memory: 128Mi
      cpu: 500m
    requests:
      memory: 64Mi
    secrets:
      - api-key
  other:
    image: ghcr.io/acme/other:1
"#;

/// Writes [`STACK`] (and its environment file) into `dir`.
pub fn write_stack(dir: &Path) -> PathBuf {
    std::fs::write(
        dir.join("cart-env.yml"),
        "environment:\n  FROM_ENV_FILE: yes\n",
    )
    .unwrap();
    let path = dir.join("stack.yaml");
    std::fs::write(&path, STACK).unwrap();
    path
}

/// The deployer binary, in `dir`, with none of the variables it reads set.
pub fn deployer(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_deployer"));
    command.current_dir(dir);
    for var in ["EDGE_NODE_TOKEN", "FAAS_CLI", "KUBECTL", "CART_TAG"] {
        command.env_remove(var);
    }
    command
}

/// Runs `command`, returning its output (the test fails if it cannot start).
pub fn run(command: &mut Command) -> Output {
    command.output().expect("run the deployer")
}

/// The output's stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The output's stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Writes an executable shell script.
pub fn write_script(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

/// A flat hierarchy `cloud` → `edge-0` … `edge-<n-1>`, each edge on its own
/// gateway; the cloud's gateway is dead (it is never selected).
pub fn flat_hierarchy(gateways: &[FakeGateway]) -> Infrastructure {
    let root = gateways.iter().enumerate().fold(
        Area::new("cloud").with_main_location(location("cloud", &dead_gateway())),
        |root, (i, gateway)| {
            let name = format!("edge-{i}");
            root.with_area(Area::new(&name).with_main_location(location(&name, &gateway.url)))
        },
    );
    Infrastructure::new(["cloud", "edge"], root).unwrap()
}

/// Text of a hierarchy file `cloud` → `region-0…` → `edge-r-e…` with
/// `regions × edges_per_region + regions + 1` nodes.
pub fn generated_hierarchy(regions: usize, edges_per_region: usize) -> String {
    use std::fmt::Write as _;
    let mut text = String::from(
        r#"{"areaTypesIdentifiers":["cloud","region","edge"],"hierarchy":[{"areaName":"cloud","mainLocation":{"openfaas_gateway":"http://cloud.test:31112"},"areas":["#,
    );
    for region in 0..regions {
        if region > 0 {
            text.push(',');
        }
        write!(text, r#"{{"areaName":"region-{region}","areas":["#).unwrap();
        for edge in 0..edges_per_region {
            if edge > 0 {
                text.push(',');
            }
            write!(
                text,
                r#"{{"areaName":"edge-{region}-{edge}","mainLocation":{{"openfaas_gateway":"http://edge-{region}-{edge}.test:31112","openfaas_password":"pw","redis_port":6379}}}}"#,
            )
            .unwrap();
        }
        text.push_str("]}");
    }
    text.push_str("]}]}");
    text
}

/// `count` gateways that accept everything (admin password
/// `edge-<i>-admin-pw`), and a project folder with a flat hierarchy of
/// them and the `cart` stack file.
pub fn accepting_project(
    count: usize,
    in_flight: &std::sync::Arc<InFlight>,
) -> (Vec<FakeGateway>, test_support::TempDir) {
    let gateways: Vec<FakeGateway> = (0..count)
        .map(|i| {
            FakeGateway::start(
                Behavior::accepting(&format!("edge-{i}-admin-pw")),
                in_flight.clone(),
            )
        })
        .collect();
    let dir = test_support::tempdir();
    write_hierarchy(&dir, &flat_hierarchy(&gateways));
    write_stack(&dir);
    (gateways, dir)
}
