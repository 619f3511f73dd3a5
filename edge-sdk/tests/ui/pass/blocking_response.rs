#[edge_sdk::blocking]
async fn handle(
    req: edge_sdk::Request,
    session: &mut edge_sdk::Session,
) -> edge_sdk::Result<edge_sdk::Response> {
    let _ = (req, session);
    Ok(edge_sdk::Response::new(Default::default()))
}

fn main() {}
