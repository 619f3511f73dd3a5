// Every problem is reported at once.
#[edge_sdk::nonblocking(fast)]
unsafe fn handle<T>(_req: T) {}

fn main() {}
