use edge_sdk::{Request, Session};

#[edge_sdk::blocking]
async fn none() -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

#[edge_sdk::nonblocking]
async fn one(_req: Request) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

#[edge_sdk::blocking]
async fn three(_req: Request, _session: &mut Session, _extra: u32) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
