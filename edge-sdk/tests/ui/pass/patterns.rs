use edge_sdk::{Request, Session, blocking, nonblocking};

#[blocking]
async fn handle(mut req: Request, _: &mut Session) -> edge_sdk::Result<String> {
    *req.body_mut() = Default::default();
    Ok(req.uri().path().to_owned())
}

#[nonblocking]
async fn show(_: Request, _session: &'_ Session) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
