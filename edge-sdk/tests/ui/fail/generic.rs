use edge_sdk::{Request, Session};

#[edge_sdk::blocking]
async fn handle<T: Default>(_req: Request, _session: &mut Session) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

#[edge_sdk::nonblocking]
async fn lifetime<'a>(_req: Request, _session: &'a Session) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

#[edge_sdk::blocking]
async fn bounded(_req: Request, _session: &mut Session) -> edge_sdk::Result<String>
where
    String: Clone,
{
    Ok("ok".to_owned())
}

#[edge_sdk::blocking]
async fn impl_trait(_req: impl Into<Request>, _session: &mut Session) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
