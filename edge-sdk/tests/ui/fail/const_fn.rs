use edge_sdk::{Request, Session};

#[edge_sdk::blocking]
const async fn handle(_req: Request, _session: &mut Session) -> edge_sdk::Result<String> {
    Ok(String::new())
}

fn main() {}
