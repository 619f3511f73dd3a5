//! A node's gateway: the part of the OpenFaaS gateway API that faas-cli and
//! the deployer use, over the node's [`Functions`].
//!
//! | route | what |
//! |---|---|
//! | `GET /healthz` | 200, no auth |
//! | `GET /system/info` | provider and version |
//! | `GET/POST/PUT/DELETE /system/functions` | list, create, update, delete |
//! | `GET /system/function/{name}` | one function |
//! | `GET/POST/PUT/DELETE /system/secrets` | list (names), create, update, delete |
//! | `GET /system/links` | the devnet's emulated links and the bytes that crossed them (404 without `--link`/`--access`); not part of OpenFaaS |
//! | `* /function/{name}[/…]` | the call, forwarded with method, path, query, headers and body; the answer (3xx included) passed back unfollowed |
//!
//! Everything under `/system/` needs basic auth `admin:<openfaas_password>`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{any, get};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use openfaas_stack::{DeleteFunctionRequest, FunctionDeployment, Secret};
use tokio::sync::Mutex;

use crate::functions::{DeployError, Functions, check_name};

/// Largest request body forwarded to a function or accepted by the API.
const MAX_BODY: usize = 64 * 1024 * 1024;
/// How long a call waits for a function that is (re)starting.
const START_WAIT: Duration = Duration::from_secs(15);
/// How long a function may take to answer.
const CALL_TIMEOUT: Duration = Duration::from_secs(300);

/// One node's gateway.
pub struct Gateway {
    /// The node's `areaName`.
    pub node: String,
    expected_authorization: String,
    /// The node's functions.
    pub functions: Functions,
    secrets: Mutex<BTreeMap<String, String>>,
    client: reqwest::Client,
    on_change: Arc<dyn Fn() + Send + Sync>,
}

impl Gateway {
    /// A gateway for `node` whose `admin` password is `password`.
    pub fn new(
        node: &str,
        password: &str,
        functions: Functions,
        on_change: Arc<dyn Fn() + Send + Sync>,
    ) -> Gateway {
        Gateway {
            node: node.to_string(),
            expected_authorization: format!("Basic {}", BASE64.encode(format!("admin:{password}"))),
            functions,
            secrets: Mutex::new(BTreeMap::new()),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(CALL_TIMEOUT)
                .build()
                .expect("an HTTP client with default TLS settings"),
            on_change,
        }
    }

    /// Gives the gateway the devnet's emulated network (see
    /// [`Functions::set_topology`]).
    pub fn set_topology(&self, topology: Arc<crate::topology::Topology>) {
        self.functions.set_topology(topology);
    }

    /// The gateway's routes.
    pub fn router(self: Arc<Self>) -> Router {
        let system = Router::new()
            .route("/system/info", get(info))
            .route(
                "/system/functions",
                get(list_functions)
                    .post(create_function)
                    .put(update_function)
                    .delete(delete_function),
            )
            .route("/system/function/{name}", get(get_function))
            .route("/system/links", get(links))
            .route(
                "/system/secrets",
                get(list_secrets)
                    .post(create_secret)
                    .put(update_secret)
                    .delete(delete_secret),
            )
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&self),
                require_auth,
            ));
        Router::new()
            .route("/healthz", get(|| async { "OK" }))
            .route("/function/{name}", any(invoke))
            .route("/function/{name}/", any(invoke))
            .route("/function/{name}/{*rest}", any(invoke))
            .merge(system)
            .layer(DefaultBodyLimit::max(MAX_BODY))
            .with_state(self)
    }
}

async fn links(State(gateway): State<Arc<Gateway>>) -> Response {
    match gateway.functions.topology() {
        Some(topology) => Json(topology.links()).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            "this devnet emulates no links: start it with --link or --access\n",
        )
            .into_response(),
    }
}

async fn require_auth(
    State(gateway): State<Arc<Gateway>>,
    request: Request,
    next: axum::middleware::Next,
) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given == Some(gateway.expected_authorization.as_str()) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Basic realm=\"Restricted\"")],
            "invalid credentials: use basic auth as admin with the node's openfaas_password\n",
        )
            .into_response()
    }
}

async fn info() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "provider": {
            "provider": "edge-devnet",
            "orchestration": "local processes",
            "version": { "release": env!("CARGO_PKG_VERSION"), "sha": "" }
        },
        "version": { "release": env!("CARGO_PKG_VERSION"), "sha": "", "commit_message": "" },
        "arch": std::env::consts::ARCH
    }))
}

fn deploy_error(error: DeployError) -> Response {
    let status = match &error {
        DeployError::UnknownImage(_)
        | DeployError::UnknownSecret(_)
        | DeployError::InvalidName(_)
        | DeployError::InvalidLimit(_) => StatusCode::BAD_REQUEST,
        DeployError::NotFound(_) => StatusCode::NOT_FOUND,
        DeployError::Exists(_) => StatusCode::CONFLICT,
        DeployError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (status, format!("{error}\n")).into_response()
}

/// A refusal: a status and a message, answered as text.
type Refusal = (StatusCode, String);

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes, what: &str) -> Result<T, Refusal> {
    serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!("invalid {what} JSON: {e}\n"),
        )
    })
}

async fn list_functions(State(gateway): State<Arc<Gateway>>) -> Response {
    Json(gateway.functions.statuses().await).into_response()
}

async fn get_function(State(gateway): State<Arc<Gateway>>, Path(name): Path<String>) -> Response {
    match gateway.functions.status(&name).await {
        Some(status) => Json(status).into_response(),
        None => deploy_error(DeployError::NotFound(name)),
    }
}

async fn deploy(gateway: &Gateway, body: &Bytes, create: bool) -> Response {
    let deployment: FunctionDeployment = match parse_json(body, "function deployment") {
        Ok(deployment) => deployment,
        Err(refusal) => return refusal.into_response(),
    };
    if deployment.service.is_empty() || deployment.image.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "a deployment needs \"service\" and \"image\"\n",
        )
            .into_response();
    }
    let secrets = gateway.secrets.lock().await.clone();
    let name = deployment.service.clone();
    match gateway.functions.deploy(deployment, &secrets, create).await {
        Ok(()) => {
            tracing::info!(node = %gateway.node, function = %name, create, "deployed");
            (gateway.on_change)();
            StatusCode::ACCEPTED.into_response()
        }
        Err(error) => deploy_error(error),
    }
}

async fn create_function(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    deploy(&gateway, &body, true).await
}

async fn update_function(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    deploy(&gateway, &body, false).await
}

async fn delete_function(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    let request: DeleteFunctionRequest = match parse_json(&body, "delete") {
        Ok(request) => request,
        Err(refusal) => return refusal.into_response(),
    };
    match gateway.functions.remove(&request.function_name).await {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(error) => deploy_error(error),
    }
}

async fn list_secrets(State(gateway): State<Arc<Gateway>>) -> Response {
    let secrets = gateway.secrets.lock().await;
    let names: Vec<Secret> = secrets
        .keys()
        .map(|name| Secret {
            name: name.clone(),
            ..Secret::default()
        })
        .collect();
    Json(names).into_response()
}

fn secret_value(secret: &Secret) -> Result<String, Refusal> {
    match &secret.raw_value {
        Some(raw) if secret.value.is_empty() => BASE64
            .decode(raw)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    "rawValue is not base64 of UTF-8 text\n".to_string(),
                )
            }),
        _ => Ok(secret.value.clone()),
    }
}

async fn write_secret(gateway: &Gateway, body: &Bytes, create: bool) -> Response {
    let secret: Secret = match parse_json(body, "secret") {
        Ok(secret) => secret,
        Err(refusal) => return refusal.into_response(),
    };
    if let Err(error) = check_name(&secret.name) {
        return deploy_error(error);
    }
    let value = match secret_value(&secret) {
        Ok(value) => value,
        Err(refusal) => return refusal.into_response(),
    };
    let snapshot = {
        let mut secrets = gateway.secrets.lock().await;
        match (secrets.contains_key(&secret.name), create) {
            (true, true) => {
                return (
                    StatusCode::CONFLICT,
                    format!("secret {:?} already exists\n", secret.name),
                )
                    .into_response();
            }
            (false, false) => {
                return (
                    StatusCode::NOT_FOUND,
                    format!("secret {:?} not found\n", secret.name),
                )
                    .into_response();
            }
            _ => {}
        }
        secrets.insert(secret.name.clone(), value);
        secrets.clone()
    };
    if let Err(error) = gateway
        .functions
        .refresh_secret(&secret.name, &snapshot)
        .await
    {
        return deploy_error(DeployError::Internal(error));
    }
    if create {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
    .into_response()
}

async fn create_secret(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    write_secret(&gateway, &body, true).await
}

async fn update_secret(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    write_secret(&gateway, &body, false).await
}

async fn delete_secret(State(gateway): State<Arc<Gateway>>, body: Bytes) -> Response {
    let secret: Secret = match parse_json(&body, "secret") {
        Ok(secret) => secret,
        Err(refusal) => return refusal.into_response(),
    };
    match gateway.secrets.lock().await.remove(&secret.name) {
        Some(_) => StatusCode::OK.into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("secret {:?} not found\n", secret.name),
        )
            .into_response(),
    }
}

/// Headers that belong to one hop, not to the call.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

async fn invoke(
    State(gateway): State<Arc<Gateway>>,
    Path(params): Path<HashMap<String, String>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let name = params.get("name").cloned().unwrap_or_default();
    let Some(port) = gateway.functions.route(&name).await else {
        return (
            StatusCode::NOT_FOUND,
            format!(
                "function {name:?} is not deployed on node {}\n",
                gateway.node
            ),
        )
            .into_response();
    };
    let rest = params.get("rest").map(String::as_str).unwrap_or("");
    let mut url = format!("http://127.0.0.1:{port}/{rest}");
    if let Some(query) = uri.query() {
        url.push('?');
        url.push_str(query);
    }
    let started = Instant::now();
    loop {
        let mut request = gateway
            .client
            .request(method.clone(), &url)
            .body(body.clone());
        for (header_name, value) in &headers {
            if !hop_by_hop(header_name) {
                request = request.header(header_name, value);
            }
        }
        match request.send().await {
            Ok(answer) => return pass_back(answer).await,
            // The function is starting (or restarting): wait for it.
            Err(error) if error.is_connect() && started.elapsed() < START_WAIT => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => {
                return (
                    StatusCode::BAD_GATEWAY,
                    format!("function {name:?} did not answer: {error}\n"),
                )
                    .into_response();
            }
        }
    }
}

async fn pass_back(answer: reqwest::Response) -> Response {
    let status = answer.status();
    let mut headers = HeaderMap::new();
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    match answer.bytes().await {
        Ok(body) => {
            let mut response = Response::new(axum::body::Body::from(body));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            [(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"))],
            format!("the function's answer broke off: {error}\n"),
        )
            .into_response(),
    }
}
