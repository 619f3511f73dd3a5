//! The HTTP server the template's `main` starts, and the request pipeline
//! of SPEC section 3 around every call.
//!
//! ```no_run
//! use edge_sdk::{blocking, Request, Session};
//!
//! #[blocking]
//! async fn handle(_req: Request, session: &mut Session) -> edge_sdk::Result<String> {
//!     session.set("greeted", "yes");
//!     Ok("hello".to_string())
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     edge_sdk::runtime::run(handle).await
//! }
//! ```
//!
//! A blocking call: validate headers (400) → read the body (413) → one
//! script that checks the location (307), the request id (208) and takes
//! the lock, or puts the call in line for it; a call in line waits until
//! the call before it hands the lock over (503 after the node's
//! `sessions_lock_wait_time`; at once for a session being migrated) → run
//! the handler (500 on error or panic, lock released at once) → one script
//! that commits if the lock is still ours (423 if not) and hands the lock
//! to the next call in line.
//! A non-blocking call: validate → read the body → read the location (307) →
//! run the handler with lock-free reads. The node's Redis being unreachable
//! is a 503 at any step; the connection heals by itself.
//!
//! `GET /_/health` answers 200 without touching Redis. SIGTERM (or Ctrl-C)
//! stops accepting connections and lets calls in flight finish.

use std::future::Future;
use std::marker::PhantomData;
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use edge_store::layout::{config as node_config, lock};
use edge_store::{Begin, CommitRecord, IdRetention, Lease, LockHolder, SessionKeys, Store, Turn};
use futures_util::FutureExt;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tokio::net::TcpListener;

pub use crate::config::Config;
use crate::dedup::{REQUEST_ID_HEADER, parse_request_id, replay, retained_form};
use crate::handler::{Handler, HandlerKind};
use crate::http::{Request, Response, json_error};
use crate::redirect::redirect;
use crate::session::{CommitOutcome, ReadConflict, Session};
use crate::{Error, Result};

/// `X-session`.
pub const SESSION_HEADER: &str = "x-session";

/// The longest accepted session name, in bytes.
pub const MAX_SESSION_NAME: usize = 128;
/// How long a blocking call waits in line for its session's lock when the
/// node sets no `sessions_lock_wait_time` (and at most half the function's
/// timeout).
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(5);
/// How long the node configuration read from Redis is trusted.
const NODE_CONFIG_REFRESH: Duration = Duration::from_secs(2);

/// Reads the configuration from the environment, binds `EDGE_LISTEN` and
/// serves `handler` until SIGTERM. Configuration errors are printed naming
/// the variable, and the process exits with status 78 (`EX_CONFIG`).
pub async fn run<H: Handler<K>, K: 'static>(handler: H) -> ExitCode {
    init_logging();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("edge-sdk: {error}");
            return ExitCode::from(78);
        }
    };
    let listener = match TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "edge-sdk: configuration error in EDGE_LISTEN: cannot listen on {}: {error}",
                config.listen
            );
            return ExitCode::from(78);
        }
    };
    match serve(handler, config, listener, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("edge-sdk: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`), with colours
/// only on a terminal (OpenFaaS collects logs from a pipe). [`run`] calls
/// it; other processes of a node (the offloading manager) use it too.
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// [`run`] on a multi-threaded Tokio runtime of its own, for a `main`
/// that is not async: `fn main() -> ExitCode { edge_sdk::runtime::start(handle) }`.
pub fn start<H: Handler<K>, K: 'static>(handler: H) -> ExitCode {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run(handler)),
        Err(error) => {
            eprintln!("edge-sdk: cannot start the Tokio runtime: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Serves `handler` on `listener` until `shutdown` completes, then drains
/// the calls in flight. For tests and embedding; [`run`] is the usual entry.
pub async fn serve<H, K>(
    handler: H,
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()>
where
    H: Handler<K>,
    K: 'static,
{
    let store = Store::open(
        &config.redis_url,
        config.redis_password.as_deref(),
        config.redis_timeout,
        config.location.as_str(),
    )
    .map_err(|e| Error::config("EDGE_REDIS_URL", e.to_string()))?;
    let shared = Arc::new(Shared {
        handler,
        node_settings: NodeSettings::new(store.clone()),
        store,
        config,
        kind: PhantomData,
    });
    shared.node_settings.refresh().await;
    tracing::info!(
        node = %shared.config.location,
        function = %shared.config.function,
        kind = ?H::KIND,
        address = %listener.local_addr()?,
        "edge-sdk runtime listening"
    );
    let router = Router::new()
        .route("/_/health", get(|| async { "OK" }))
        .fallback(move |request: axum::extract::Request| {
            let shared = Arc::clone(&shared);
            async move { shared.call(request).await.map(axum::body::Body::from) }
        });
    axum::serve(with_nodelay(listener), router)
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

/// `listener`, with `TCP_NODELAY` on every accepted connection: a response
/// leaves at once instead of waiting for the client's acknowledgement of
/// the previous segment (Nagle's algorithm).
pub fn with_nodelay(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = std::net::SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|stream| {
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on a connection: {error}");
        }
    })
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: draining calls in flight");
}

struct Shared<H, K> {
    handler: H,
    config: Config,
    store: Store,
    node_settings: Arc<NodeSettings>,
    kind: PhantomData<fn() -> K>,
}

impl<H: Handler<K>, K> Shared<H, K> {
    async fn call(&self, request: axum::extract::Request) -> Response {
        let (parts, body) = request.into_parts();
        let session_id = match session_header(&parts.headers) {
            Ok(id) => id,
            Err(message) => return json_error(StatusCode::BAD_REQUEST, &message),
        };
        // Blocking calls need a request id; non-blocking ones only check it.
        let blocking_request_id = match (H::KIND, request_id_header(&parts.headers)) {
            (_, Err(message)) => return json_error(StatusCode::BAD_REQUEST, &message),
            (HandlerKind::Blocking, Ok(None)) => {
                return json_error(StatusCode::BAD_REQUEST, MISSING_REQUEST_ID);
            }
            (HandlerKind::Blocking, Ok(Some(id))) => Some(id),
            (HandlerKind::NonBlocking, Ok(_)) => None,
        };
        let body = match read_body(&parts.headers, body, self.config.max_body_bytes).await {
            Ok(body) => body,
            Err(response) => return response,
        };
        let request = Request::from_parts(parts, body);
        match blocking_request_id {
            Some(request_id) => self.blocking_call(session_id, request_id, request).await,
            None => self.nonblocking_call(session_id, request).await,
        }
    }

    async fn blocking_call(
        &self,
        session_id: String,
        request_id: String,
        request: Request,
    ) -> Response {
        let keys = SessionKeys::new(&session_id);
        let token = lock::call_token();
        let limits = self.node_settings.limits();
        let ttl = limits.lock_ttl.unwrap_or(self.config.default_lock_ttl);
        // A call waits in line at most this long, and never so long that it
        // could not run within the function's timeout.
        let wait = limits
            .lock_wait
            .unwrap_or(DEFAULT_LOCK_WAIT)
            .min(self.config.default_lock_ttl / 2);
        let deadline = Instant::now() + wait;
        // The call's time, as its records keep it: when it took the lock.
        let mut began_ms;
        let (proprietary, lease) = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            began_ms = now_ms();
            let begin = self
                .store
                .begin(&keys, &token, ttl, &request_id, began_ms, left)
                .await;
            match begin {
                Err(error) => return failed_store_step(&error, "taking the session lock"),
                Ok(Begin::Moved { location }) => return self.redirect_to(&location, &request),
                Ok(Begin::Completed(retained)) => return replay(retained),
                Ok(Begin::Locked { holder, .. }) => {
                    let reason = match holder {
                        LockHolder::Migration => "the session is being migrated to another node",
                        LockHolder::Call => "the session is locked by another call",
                    };
                    // The holder usually finishes long before its lock
                    // would expire: a short wait rather than the TTL left.
                    return retry_later(reason, 1);
                }
                Ok(Begin::Acquired { proprietary, lease }) => break (proprietary, lease),
                Ok(Begin::Queued {
                    proprietary,
                    lock_expires_in,
                }) => {
                    // Until the hand-over, or until the holder's lock
                    // expires (its call died: no hand-over will come).
                    let until = left.min(lock_expires_in + Duration::from_millis(20));
                    match self.store.wait_turn(&keys, &token, until).await {
                        Ok(Turn::Go) => break (proprietary, Lease::default()),
                        // Begin again: its request id completed meanwhile,
                        // the session moved or is being migrated, or the
                        // holder's lock expired.
                        Ok(Turn::Again | Turn::TimedOut) if Instant::now() < deadline => continue,
                        Ok(_) => {
                            return retry_later(
                                &format!(
                                    "the session is locked by another call (waited {} ms in line)",
                                    wait.as_millis()
                                ),
                                1,
                            );
                        }
                        Err(error) => {
                            return failed_store_step(&error, "waiting for the session lock");
                        }
                    }
                }
            }
        };
        let mut session = Session::new(
            keys,
            proprietary,
            Arc::clone(&self.config.infrastructure),
            HandlerKind::Blocking,
            self.store.clone(),
        );
        let result = AssertUnwindSafe(self.handler.call(request, &mut session))
            .catch_unwind()
            .await;
        let response = match result {
            Ok(Ok(response)) => response,
            failed => {
                if let Err(error) = self.store.release(session.keys(), &token, now_ms()).await {
                    tracing::warn!(
                        session = session.id(),
                        "could not release the lock: {error}"
                    );
                }
                return match failed {
                    // The node's Redis failed under the handler's reads:
                    // nothing was written; the client may retry.
                    Ok(Err(Error::Redis(error))) => {
                        unavailable(&error, "reading the session (nothing was written)")
                    }
                    Err(panic) => {
                        let message = format!("the handler panicked: {}", panic_message(&*panic));
                        tracing::error!(session = session.id(), "{message}; nothing written");
                        json_error(StatusCode::INTERNAL_SERVER_ERROR, &message)
                    }
                    Ok(Err(error)) => {
                        let message = format!("the handler failed: {error}");
                        tracing::error!(session = session.id(), "{message}; nothing written");
                        json_error(StatusCode::INTERNAL_SERVER_ERROR, &message)
                    }
                    Ok(Ok(_)) => unreachable!("handled above"),
                };
            }
        };
        let retained = retained_form(&response, self.config.replay_max_bytes);
        let record = CommitRecord {
            request_id: &request_id,
            now_ms: began_ms,
            retained: retained.as_deref(),
        };
        let retention = IdRetention {
            window: self.config.request_id_retention,
            max_ids: self.config.request_id_max,
            session_replay_max: limits.session_replay_max,
            node_replay_max: limits.node_replay_max,
        };
        match session.commit(&token, record, retention, lease).await {
            Ok(CommitOutcome::Committed) => response,
            Ok(CommitOutcome::LockLost) => json_error(
                StatusCode::LOCKED,
                "the call's session lock expired or was taken over before the commit: nothing was \
                 written; retry with the same X-session-request-id",
            ),
            Err(error) => failed_step(
                &error,
                "committing (retry with the same X-session-request-id)",
            ),
        }
    }

    async fn nonblocking_call(&self, session_id: String, request: Request) -> Response {
        let keys = SessionKeys::new(&session_id);
        let proprietary = match self.store.locate_for_read(&keys).await {
            Err(error) => return failed_store_step(&error, "reading the session's location"),
            // Fenced by a migration with the data here: a frozen copy to read.
            Ok(found) if found.frozen => found.proprietary.unwrap_or_default(),
            Ok(found) => match found.location {
                Some(current) if *current != *self.store.node() => {
                    return self.redirect_to(&current, &request);
                }
                _ => found.proprietary.unwrap_or_default(),
            },
        };
        let mut session = Session::new(
            keys,
            proprietary,
            Arc::clone(&self.config.infrastructure),
            HandlerKind::NonBlocking,
            self.store.clone(),
        );
        let uri = request.uri().clone();
        let result = AssertUnwindSafe(self.handler.call(request, &mut session))
            .catch_unwind()
            .await;
        match session.read_conflict() {
            Some(ReadConflict::Moved(location)) => return self.redirect_to_uri(&location, &uri),
            Some(ReadConflict::Changed) => {
                return retry_later(
                    "the session was committed to while this read-only call read it",
                    1,
                );
            }
            None => {}
        }
        match result {
            Ok(Ok(response)) => response,
            Ok(Err(Error::Redis(error))) => unavailable(&error, "reading the session"),
            Ok(Err(error)) => {
                tracing::error!(session = session.id(), "the handler failed: {error}");
                json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the handler failed: {error}"),
                )
            }
            Err(panic) => {
                let message = format!("the handler panicked: {}", panic_message(&*panic));
                tracing::error!(session = session.id(), "{message}");
                json_error(StatusCode::INTERNAL_SERVER_ERROR, &message)
            }
        }
    }

    fn redirect_to(&self, location: &str, request: &Request) -> Response {
        self.redirect_to_uri(location, request.uri())
    }

    fn redirect_to_uri(&self, location: &str, uri: &http::Uri) -> Response {
        redirect(
            &self.config.infrastructure,
            location,
            &self.config.function,
            uri,
        )
    }
}

/// What the node's configuration (its Redis hash `edge:config`) sets for
/// the call path; missing fields take their defaults.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// `sessions_locks_expiration_time` (else the function's timeout).
    lock_ttl: Option<Duration>,
    /// `sessions_lock_wait_time` (else [`DEFAULT_LOCK_WAIT`]).
    lock_wait: Option<Duration>,
    /// `sessions_replay_max_bytes`.
    session_replay_max: u64,
    /// `node_replay_max_bytes`.
    node_replay_max: u64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            lock_ttl: None,
            lock_wait: None,
            session_replay_max: IdRetention::SESSION_REPLAY_MAX,
            node_replay_max: IdRetention::NODE_REPLAY_MAX,
        }
    }
}

impl Limits {
    fn from_config(settings: &std::collections::HashMap<String, String>) -> Limits {
        let field = |name: &str, what: &str, parse: &dyn Fn(&str) -> Option<f64>| {
            let value = settings.get(name)?;
            let parsed = parse(value.trim());
            if parsed.is_none() {
                tracing::warn!(
                    "ignoring {name}={value:?} in {}: not {what}",
                    edge_store::layout::node::CONFIG
                );
            }
            parsed
        };
        let seconds = |name: &str| {
            field(name, "a positive number of seconds", &|v| {
                v.parse::<f64>().ok().filter(|s| *s > 0.0 && s.is_finite())
            })
            .map(Duration::from_secs_f64)
        };
        let bytes = |name: &str, default: u64| {
            field(name, "a number of bytes", &|v| {
                v.parse::<u64>().ok().map(|b| b as f64)
            })
            .map_or(default, |b| b as u64)
        };
        Limits {
            lock_ttl: seconds(node_config::SESSIONS_LOCKS_EXPIRATION_TIME),
            lock_wait: seconds(node_config::SESSIONS_LOCK_WAIT_TIME),
            session_replay_max: bytes(
                node_config::SESSIONS_REPLAY_MAX_BYTES,
                IdRetention::SESSION_REPLAY_MAX,
            ),
            node_replay_max: bytes(
                node_config::NODE_REPLAY_MAX_BYTES,
                IdRetention::NODE_REPLAY_MAX,
            ),
        }
    }
}

/// The node's [`Limits`], refreshed in the background so that reading them
/// costs the request path nothing.
struct NodeSettings {
    store: Store,
    cached: Mutex<(Limits, Instant)>,
    refreshing: AtomicBool,
}

impl NodeSettings {
    fn new(store: Store) -> Arc<NodeSettings> {
        Arc::new(NodeSettings {
            store,
            cached: Mutex::new((Limits::default(), Instant::now())),
            refreshing: AtomicBool::new(false),
        })
    }

    fn limits(self: &Arc<Self>) -> Limits {
        let (limits, read_at) = *self.cached.lock().expect("node settings poisoned");
        if read_at.elapsed() > NODE_CONFIG_REFRESH && !self.refreshing.swap(true, Ordering::AcqRel)
        {
            let this = Arc::clone(self);
            tokio::spawn(async move { this.refresh().await });
        }
        limits
    }

    async fn refresh(&self) {
        match self.store.config().await {
            Ok(settings) => {
                let limits = Limits::from_config(&settings);
                *self.cached.lock().expect("node settings poisoned") = (limits, Instant::now());
            }
            // Keep the last known values; try again at the next call.
            Err(error) => tracing::debug!("could not read the node configuration: {error}"),
        }
        self.refreshing.store(false, Ordering::Release);
    }
}

fn session_header(headers: &HeaderMap) -> std::result::Result<String, String> {
    let value = headers
        .get(HeaderName::from_static(SESSION_HEADER))
        .ok_or("missing X-session header: name the session, e.g. X-session: cart-42")?;
    let bytes = value.as_bytes();
    if bytes.is_empty()
        || bytes.len() > MAX_SESSION_NAME
        || !bytes.iter().all(|b| (0x21..=0x7e).contains(b))
    {
        return Err(format!(
            "invalid X-session header: a session name is 1 to {MAX_SESSION_NAME} visible ASCII characters (no spaces)"
        ));
    }
    Ok(String::from_utf8_lossy(bytes).into_owned())
}

const MISSING_REQUEST_ID: &str = "missing X-session-request-id header: a blocking call needs a UUID \
     chosen by the client and reused when it retries";

fn request_id_header(headers: &HeaderMap) -> std::result::Result<Option<String>, String> {
    match headers.get(HeaderName::from_static(REQUEST_ID_HEADER)) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(parse_request_id)
            .map(Some)
            .ok_or_else(|| "invalid X-session-request-id header: expected a UUID".to_string()),
    }
}

async fn read_body(
    headers: &HeaderMap,
    body: axum::body::Body,
    limit: usize,
) -> std::result::Result<Bytes, Response> {
    let too_large = || {
        json_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("request body over the limit of {limit} bytes (EDGE_MAX_BODY_BYTES)"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => Err(too_large()),
        Err(error) => Err(json_error(
            StatusCode::BAD_REQUEST,
            &format!("could not read the request body: {error}"),
        )),
    }
}

fn retry_later(message: &str, seconds: u64) -> Response {
    let mut response = json_error(StatusCode::SERVICE_UNAVAILABLE, message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}

fn unavailable(error: &redis::RedisError, during: &str) -> Response {
    if edge_store::is_unavailable(error) {
        tracing::warn!("redis unavailable while {during}: {error}");
        retry_later(
            &format!("the node's Redis is unreachable ({during}): {error}"),
            1,
        )
    } else {
        tracing::error!("redis error while {during}: {error}");
        json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("redis error while {during}: {error}"),
        )
    }
}

fn failed_store_step(error: &edge_store::Error, during: &str) -> Response {
    match error {
        edge_store::Error::Redis(error) => unavailable(error, during),
        other => {
            tracing::error!("{during} failed: {other}");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{during} failed: {other}"),
            )
        }
    }
}

fn failed_step(error: &Error, during: &str) -> Response {
    match error {
        Error::Redis(error) => unavailable(error, during),
        other => {
            tracing::error!("{during} failed: {other}");
            json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("{during} failed: {other}"),
            )
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a non-string panic payload".to_string()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use axum::serve::Listener;

    #[tokio::test]
    async fn accepted_connections_have_nodelay() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let mut listener = super::with_nodelay(listener);
        let client = tokio::net::TcpStream::connect(address).await.unwrap();
        assert!(!client.nodelay().unwrap(), "a plain socket starts without");
        let (accepted, _) = listener.accept().await;
        assert!(accepted.nodelay().unwrap());
    }
}
