use std::rc::Rc;

use edge_sdk::{Request, Session};

async fn yield_now() {}

#[edge_sdk::blocking]
async fn handle(_req: Request, _session: &mut Session) -> edge_sdk::Result<String> {
    let shared = Rc::new("ok".to_owned());
    yield_now().await;
    Ok(shared.to_string())
}

fn main() {}
