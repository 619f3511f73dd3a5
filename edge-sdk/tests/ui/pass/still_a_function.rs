use edge_sdk::{Request, Session, blocking, nonblocking};

#[blocking]
async fn write(_req: Request, _session: &mut Session) -> edge_sdk::Result<&'static str> {
    Ok("written")
}

#[nonblocking]
async fn read(_req: Request, _session: &Session) -> edge_sdk::Result<&'static str> {
    Ok("read")
}

// The functions stay plain async fns: they can be called directly and passed
// to anything that takes a handler.
async fn both(session: &mut Session) -> edge_sdk::Result<&'static str> {
    read(Request::default(), session).await?;
    write(Request::default(), session).await
}

fn serve<Kind, H: edge_sdk::handler::Handler<Kind>>(_handler: H) {}

fn main() {
    serve(write);
    serve(read);
    let _ = both;
}
