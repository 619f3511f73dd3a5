use edge_sdk::{Request, Session};

struct Counter;

impl Counter {
    #[edge_sdk::blocking]
    async fn handle(&self, _req: Request, _session: &mut Session) -> edge_sdk::Result<String> {
        Ok("ok".to_owned())
    }
}

fn main() {}
