use edge_sdk::{Request, Session};

struct NotAResponse;

#[edge_sdk::blocking]
async fn handle(_req: Request, _session: &mut Session) -> edge_sdk::Result<NotAResponse> {
    Ok(NotAResponse)
}

fn main() {}
