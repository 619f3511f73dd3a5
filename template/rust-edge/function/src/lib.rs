//! Your function. `faas-cli new` copied this folder; `faas-cli build` puts it
//! back into the template as `function/`, where the template's `main` calls
//! `function::handle`. Keep that name, or change `main` too.

use edge_sdk::{Request, Session, blocking};

/// Counts the calls of each session and keeps the last body sent.
///
/// `#[blocking]`: the call holds the session's lock, reads are cached, and
/// the writes are committed atomically when the handler returns `Ok` — with
/// the request id, so a client retrying with the same `X-session-request-id`
/// gets the original answer (HTTP 208) instead of a second run. Returning an
/// error (or panicking) writes nothing and answers 500.
///
/// For a read-only handler that takes no lock, write
/// `#[nonblocking] pub async fn handle(req: Request, session: &Session)`.
#[blocking]
pub async fn handle(req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    let calls: u64 = session.get_json("calls").await?.unwrap_or(0) + 1;
    session.set_json("calls", &calls)?;
    if !req.body().is_empty() {
        session.set_bytes("last-body", req.body());
    }
    Ok(format!(
        "call {calls} of session {} on node {}\n",
        session.id(),
        session.node()
    ))
}
