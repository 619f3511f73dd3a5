#[edge_sdk::blocking]
async fn handle(
    _req: edge_sdk::Request,
    _session: &mut edge_sdk::Session,
) -> edge_sdk::Result<impl edge_sdk::IntoResponse> {
    Ok((edge_sdk::StatusCode::CREATED, "stored"))
}

fn main() {}
