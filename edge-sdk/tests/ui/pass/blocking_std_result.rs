#[edge_sdk::blocking]
async fn handle(
    _req: edge_sdk::Request,
    _session: &mut edge_sdk::Session,
) -> std::result::Result<String, edge_sdk::Error> {
    Ok("ok".to_owned())
}

fn main() {}
