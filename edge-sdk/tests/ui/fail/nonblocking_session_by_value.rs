use edge_sdk::{Request, Session};

#[edge_sdk::nonblocking]
async fn show(_req: Request, _session: Session) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
