//! The manager's HTTP API, with the thesis's wire names (B.2):
//! `…/function/session-offloading-manager?command=<command>&…`.
//!
//! Every command but `offload-trigger` and
//! `garbage-collector?deletePolicy=expiration` needs the node token in
//! `X-edge-token`; without it: 401. Malformed input: 400 naming the
//! parameter. A call from the cron connector (`X-Connector`, no query
//! string) runs those two public commands, which is how the function's cron
//! annotations schedule them.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use edge_store::layout::{config, value_tag};
use serde_json::json;

use crate::peers::TOKEN_HEADER;
use crate::protocol::Manager;
use crate::wire::{LocationUpdate, SessionToken};
use crate::{Error, Result};

/// The manager's routes: every path, every method, dispatched on `command`.
pub fn router(manager: Arc<Manager>) -> Router {
    Router::new()
        .route("/_/health", axum::routing::get(|| async { "OK" }))
        .fallback(dispatch)
        .with_state(manager)
}

async fn dispatch(
    State(manager): State<Arc<Manager>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    _body: Bytes,
) -> Response {
    match handle(&manager, &query, &headers).await {
        Ok(response) => response,
        Err(error) => {
            if !matches!(
                error,
                Error::NotFound(_) | Error::Moved(_) | Error::Unauthorized(_)
            ) {
                tracing::warn!(
                    command = query.get("command").map(String::as_str).unwrap_or(""),
                    "{error}"
                );
            }
            error.into_response()
        }
    }
}

fn parameter<'a>(query: &'a HashMap<String, String>, name: &str) -> Result<&'a str> {
    match query.get(name).map(String::as_str) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(Error::BadRequest(format!(
            "missing query parameter {name:?}"
        ))),
    }
}

fn header_value<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str> {
    match headers.get(name).and_then(|v| v.to_str().ok()) {
        Some(value) if !value.is_empty() => Ok(value),
        _ => Err(Error::BadRequest(format!("missing header {name}"))),
    }
}

fn json_header<T: serde::de::DeserializeOwned>(headers: &HeaderMap, name: &str) -> Result<T> {
    serde_json::from_str(header_value(headers, name)?)
        .map_err(|e| Error::BadRequest(format!("header {name} is not the expected JSON: {e}")))
}

fn epoch_parameter(query: &HashMap<String, String>, name: &str) -> Result<u64> {
    parameter(query, name)?
        .parse()
        .ok()
        .filter(|&e: &u64| e > 0)
        .ok_or_else(|| {
            Error::BadRequest(format!(
                "query parameter {name:?} must be a positive integer"
            ))
        })
}

fn authenticate(manager: &Manager, headers: &HeaderMap) -> Result<()> {
    let Some(expected) = manager.token.as_deref() else {
        return Err(Error::Unauthorized(
            "this node has no edge-node-token secret: deploy the manager with the deployer".into(),
        ));
    };
    let given = headers
        .get(TOKEN_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    // Compare in constant time: the token is a shared secret.
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        Err(Error::Unauthorized(format!(
            "missing or wrong {TOKEN_HEADER} header"
        )))
    }
}

async fn handle(
    manager: &Manager,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> Result<Response> {
    // The cron connector calls with no query string: its run is the memory
    // policy and the garbage collector.
    if !query.contains_key("command") && headers.contains_key("x-connector") {
        let freed = manager.offload_trigger().await?;
        let collected = manager.collect_expired().await?;
        return Ok(
            Json(json!({ "offloadTrigger": freed, "garbageCollector": collected })).into_response(),
        );
    }
    let command = parameter(query, "command")?;
    let public = command == "offload-trigger"
        || (command == "garbage-collector"
            && query.get("deletePolicy").map(String::as_str) == Some("expiration"));
    if !public {
        authenticate(manager, headers)?;
    }
    match command {
        "force-offload" => {
            let session = header_value(headers, "x-forced-session")?;
            let moved = manager.force_offload(session).await?;
            Ok(Json(json!({
                "session": session,
                "movedTo": moved.location.current_location,
                "epoch": moved.location.epoch,
                "bytes": moved.bytes,
            }))
            .into_response())
        }
        "force-onload" => {
            let location = manager.force_onload().await?;
            Ok(
                Json(json!({ "onloadedTo": location.current_location, "epoch": location.epoch }))
                    .into_response(),
            )
        }
        "set-offload-status" => {
            let status = parameter(query, "status")?;
            if status != "accept" && status != "reject" {
                return Err(Error::BadRequest(format!(
                    "query parameter \"status\" must be accept or reject, not {status:?}"
                )));
            }
            manager
                .store
                .set_config_value(config::OFFLOADING, status)
                .await?;
            Ok(status.to_string().into_response())
        }
        "offload-session" => {
            let token: SessionToken = json_header(headers, "x-session-token")?;
            Ok(Json(manager.offload_session(&token).await?).into_response())
        }
        "onload-session" => {
            let requester = header_value(headers, "x-onload-location")?;
            match parameter(query, "action")? {
                "get-session" => Ok(Json(manager.onload_get(requester).await?).into_response()),
                "release-session" => {
                    let session = parameter(query, "session")?;
                    let epoch = epoch_parameter(query, "random-value")?;
                    manager.onload_release(requester, session, epoch).await?;
                    Ok(StatusCode::OK.into_response())
                }
                other => Err(Error::BadRequest(format!(
                    "query parameter \"action\" must be get-session or release-session, not {other:?}"
                ))),
            }
        }
        "migrate-session" => {
            let session = parameter(query, "session")?;
            let epoch = epoch_parameter(query, "epoch")?;
            let Some(exported) = manager.store.export(session, epoch).await? else {
                return Err(Error::Conflict(format!(
                    "session {session:?} is not being migrated with epoch {epoch} here"
                )));
            };
            let chunks = crate::wire::encode_transfer(&exported)
                .map_err(|error| Error::Conflict(format!("session {session:?}: {error}")))?;
            let length: usize = chunks.iter().map(Bytes::len).sum();
            // Streamed from the exported buffer: no copy of the session.
            let body = axum::body::Body::from_stream(futures_util::stream::iter(
                chunks.into_iter().map(Ok::<_, std::convert::Infallible>),
            ));
            Ok((
                [
                    (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                    (header::CONTENT_LENGTH, length.to_string()),
                ],
                body,
            )
                .into_response())
        }
        "update-session" => {
            let update: LocationUpdate = json_header(headers, "x-session-token")?;
            if update.session.is_empty() || update.current_location.is_empty() {
                return Err(Error::BadRequest(
                    "X-session-token: session and currentLocation are required".into(),
                ));
            }
            if !manager.infrastructure.contains(&update.current_location) {
                return Err(Error::BadRequest(format!(
                    "X-session-token: currentLocation {:?} is not a node of the hierarchy",
                    update.current_location
                )));
            }
            Ok(Json(manager.update_session(&update).await?).into_response())
        }
        "offload-trigger" => Ok(manager.offload_trigger().await?.to_string().into_response()),
        "garbage-collector" => match parameter(query, "deletePolicy")? {
            "expiration" => Ok(manager.collect_expired().await?.to_string().into_response()),
            "forced" => {
                let session = parameter(query, "sessionId")?;
                let count = if query.get("scope").map(String::as_str) == Some("local") {
                    u64::from(manager.delete_everything(session).await?)
                } else {
                    manager.delete_everywhere(session).await?
                };
                Ok(count.to_string().into_response())
            }
            other => Err(Error::BadRequest(format!(
                "query parameter \"deletePolicy\" must be expiration or forced, not {other:?}"
            ))),
        },
        "test-function" => test_function(manager, query).await,
        other => Err(Error::BadRequest(format!(
            "unknown command {other:?}: use force-offload, force-onload, set-offload-status, offload-session, \
             onload-session, migrate-session, update-session, offload-trigger, garbage-collector or test-function"
        ))),
    }
}

async fn test_function(manager: &Manager, query: &HashMap<String, String>) -> Result<Response> {
    let kind = parameter(query, "type")?;
    if kind == "configuration" {
        return Ok(Json(manager.store.config().await?).into_response());
    }
    const TYPES: [&str; 4] = [
        "sessionMetadata",
        "sessionMetadataLocations",
        "sessionData",
        "session",
    ];
    if !TYPES.contains(&kind) {
        return Err(Error::BadRequest(format!(
            "query parameter \"type\" must be configuration, {}, not {kind:?}",
            TYPES.join(", ")
        )));
    }
    let session = parameter(query, "value")?;
    let meta = manager.store.meta(session).await?;
    let data = manager.store.data(session).await?;
    if meta.is_none() && data.is_empty() {
        return Err(Error::NotFound(format!(
            "no trace of session {session:?} on {}",
            manager.node
        )));
    }
    let data_json = || -> serde_json::Value {
        data.iter()
            .map(|(key, stored)| {
                let value = match stored.split_first() {
                    Some((&value_tag::STRING, text)) => json!(String::from_utf8_lossy(text)),
                    Some((&value_tag::LIST, list)) => {
                        serde_json::from_slice(list).unwrap_or(json!(null))
                    }
                    Some((&value_tag::BYTES, bytes)) => json!({ "bytes": bytes.len() }),
                    _ => json!(null),
                };
                (key.clone(), value)
            })
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    // The thesis's names (B.2), whatever the store calls them.
    let metadata = meta.as_ref().map(|meta| {
        json!({
            "proprietaryLocation": meta.proprietary,
            "currentLocation": meta.location,
            "timestampCreation": crate::protocol::iso(meta.created_ms),
            "timestampLastAccess": crate::protocol::iso(meta.accessed_ms),
            "epoch": meta.epoch,
            "version": meta.version,
            "migration": meta.fence.as_ref().map(ToString::to_string),
        })
    });
    let body = match kind {
        "sessionMetadata" => metadata.unwrap_or_else(|| json!({})),
        "sessionMetadataLocations" => json!({
            "proprietaryLocation": meta.as_ref().map(|m| &m.proprietary),
            "currentLocation": meta.as_ref().map(|m| &m.location),
            "epoch": meta.as_ref().map(|m| m.epoch),
            "migration": meta.as_ref().and_then(|m| m.fence.as_ref()).map(ToString::to_string),
            "hasData": !data.is_empty(),
        }),
        "sessionData" => data_json(),
        _ => json!({ "metadata": metadata, "data": data_json() }),
    };
    Ok(Json(body).into_response())
}
