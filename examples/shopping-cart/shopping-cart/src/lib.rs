//! A shopping cart kept in the caller's session, as a small JSON API:
//!
//! | request | answer |
//! |---|---|
//! | `GET /items` | 200, the cart: `[{"item":"apple","quantity":3}, …]`, by item name |
//! | `POST /items` with `{"item":"apple","quantity":2}` | 201 with the new line, or 200 with the line's new total when the item was in the cart already; `quantity` defaults to 1 |
//! | `DELETE /items/<item>` | 200 with the removed line; 404 when the cart has no such item |
//! | `DELETE /items` | 200, the cart emptied |
//!
//! Bad JSON, an empty item name or a zero quantity: 400. Other paths: 404;
//! other methods: 405. Errors are JSON `{"statusCode":…,"message":"…"}`.
//!
//! The cart is one JSON value under the session key `cart`. `#[blocking]`:
//! every call holds the session's lock, so two calls never interleave their
//! read-modify-write of the cart; a concurrent call is answered 503 with
//! `Retry-After` and can be retried with the same request id.

use std::collections::BTreeMap;

use edge_sdk::{IntoResponse, Json, Request, Response, Session, StatusCode, blocking};
use serde::{Deserialize, Serialize};

/// The session key holding the cart.
const CART: &str = "cart";

/// Item name → quantity.
type Cart = BTreeMap<String, u64>;

/// A line of the cart, as sent and answered.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Line {
    item: String,
    #[serde(default = "one")]
    quantity: u64,
}

fn one() -> u64 {
    1
}

/// Routes the call to the cart operation its method and path name.
#[blocking]
pub async fn handle(req: Request, session: &mut Session) -> edge_sdk::Result<Response> {
    let path = req.uri().path();
    // `None` for the cart itself (`/items`), `Some(item)` for one item.
    let route = path.strip_prefix("/items").and_then(|rest| match rest {
        "" => Some(None),
        _ => rest.strip_prefix('/').map(Some),
    });
    let Some(item) = route else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            &format!("no route {path:?}: use /items or /items/<item>"),
        ));
    };
    let mut cart: Cart = session.get_json(CART).await?.unwrap_or_default();
    let method = req.method().as_str();
    let response = match (method, item) {
        ("GET", None) => Json(lines(&cart)).into_response(),
        ("POST", None) => add(&mut cart, req.body()),
        ("DELETE", None) => {
            cart.clear();
            Json(lines(&cart)).into_response()
        }
        ("DELETE", Some(item)) => remove(&mut cart, item),
        (_, None) => return Ok(method_not_allowed("GET, POST or DELETE")),
        (_, Some(_)) => return Ok(method_not_allowed("DELETE")),
    };
    if method != "GET" && response.status().is_success() {
        session.set_json(CART, &cart)?;
    }
    Ok(response)
}

/// `POST /items`: adds the line's quantity to the cart.
fn add(cart: &mut Cart, body: &[u8]) -> Response {
    let line: Line = match serde_json::from_slice(body) {
        Ok(line) => line,
        Err(problem) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "the body must be JSON like {{\"item\":\"apple\",\"quantity\":2}}: {problem}"
                ),
            );
        }
    };
    if line.item.is_empty() {
        return error(StatusCode::BAD_REQUEST, "\"item\" must not be empty");
    }
    if line.quantity == 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "\"quantity\" must be at least 1; remove an item with DELETE /items/<item>",
        );
    }
    let existing = cart.get(&line.item).copied();
    let Some(total) = existing.unwrap_or(0).checked_add(line.quantity) else {
        return error(StatusCode::BAD_REQUEST, "\"quantity\" is too large");
    };
    cart.insert(line.item.clone(), total);
    let status = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let answer = Line {
        item: line.item,
        quantity: total,
    };
    (status, Json(answer)).into_response()
}

/// `DELETE /items/<item>`: removes the item's line.
fn remove(cart: &mut Cart, encoded_item: &str) -> Response {
    let item = percent_encoding::percent_decode_str(encoded_item).decode_utf8_lossy();
    match cart.remove_entry(item.as_ref()) {
        Some((item, quantity)) => Json(Line { item, quantity }).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &format!("the cart has no item {item:?}"),
        ),
    }
}

/// The cart as the list of its lines.
fn lines(cart: &Cart) -> Vec<Line> {
    cart.iter()
        .map(|(item, &quantity)| Line {
            item: item.clone(),
            quantity,
        })
        .collect()
}

/// A 405 answer naming the methods the path accepts.
fn method_not_allowed(allowed: &str) -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("this path accepts {allowed}"),
    )
}

/// An error answer in the SDK's JSON error shape.
fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "statusCode": status.as_u16(), "message": message });
    (status, Json(body)).into_response()
}
