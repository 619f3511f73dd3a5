use edge_sdk::{Request, Session, blocking};

#[blocking]
async fn handle(mut req: Request, _: &mut Session) -> edge_sdk::Result<String> {
    *req.body_mut() = Default::default();
    Ok(req.uri().path().to_owned())
}

fn main() {}

#[edge_sdk::nonblocking]
async fn anonymous_lifetime(_req: Request, _session: &'_ Session) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}
