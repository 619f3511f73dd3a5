use edge_sdk::Request;

#[edge_sdk::blocking]
async fn handle(_req: Request, _session: &mut String) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
