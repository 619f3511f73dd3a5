//! Prints the Redis Functions library of the store, for `FUNCTION LOAD`:
//! `cargo run -p edge-store --example functions | redis-cli -x FUNCTION LOAD`.

fn main() {
    print!("{}", edge_store::functions_library());
}
