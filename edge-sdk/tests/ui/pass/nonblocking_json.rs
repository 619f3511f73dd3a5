use edge_sdk::{Json, Request, Session, nonblocking};

#[nonblocking]
async fn show(_req: Request, _session: &Session) -> edge_sdk::Result<Json<Vec<String>>> {
    Ok(Json(vec!["apple".to_owned(), "pear".to_owned()]))
}

fn main() {}
