use edge_sdk::{Request, Session};

#[edge_sdk::blocking]
fn handle(_req: Request, _session: &mut Session) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
