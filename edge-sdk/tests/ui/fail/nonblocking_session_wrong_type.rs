use edge_sdk::Request;

#[edge_sdk::nonblocking]
async fn show(_req: Request, _session: &u32) -> edge_sdk::Result<String> {
    Ok("ok".to_owned())
}

fn main() {}
