use edge_sdk::{Request, Session};

#[edge_sdk::blocking]
async fn handle(_req: Request, _session: &mut Session) {}

fn main() {}
