//! The handler's doc comment and attributes are kept: without them, the
//! crate-level `deny`s below would fail the build.
#![deny(missing_docs, unused_variables)]

use edge_sdk::{Request, Session, blocking};

/// Stores the request.
#[blocking]
#[allow(unused_variables)]
pub async fn handle(req: Request, session: &mut Session) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
