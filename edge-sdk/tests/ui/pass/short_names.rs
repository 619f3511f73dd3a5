use edge_sdk::{IntoResponse, Request, Result, Session, blocking, nonblocking};

#[blocking]
async fn write(_req: Request, _session: &mut Session) -> Result<impl IntoResponse> {
    Ok("ok")
}

#[nonblocking]
async fn read(_req: Request, _session: &Session) -> Result<&'static str> {
    Ok("ok")
}

fn main() {}
