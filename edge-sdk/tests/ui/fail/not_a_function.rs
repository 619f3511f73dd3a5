#[edge_sdk::blocking]
struct Handler;

fn main() {}
