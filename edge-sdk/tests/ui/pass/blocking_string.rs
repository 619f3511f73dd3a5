#[edge_sdk::blocking]
async fn handle(
    _req: edge_sdk::Request,
    _session: &mut edge_sdk::Session,
) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
