use edge_sdk::Session;

#[edge_sdk::blocking]
async fn handle(_req: String, _session: &mut Session) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
