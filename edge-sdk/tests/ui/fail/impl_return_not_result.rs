use edge_sdk::{IntoResponse, Request, Session};

#[edge_sdk::blocking]
async fn handle(_req: Request, _session: &mut Session) -> impl IntoResponse {
    "ok"
}

fn main() {}
