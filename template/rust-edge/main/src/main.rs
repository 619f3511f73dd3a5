//! Starts the edge-sdk runtime with the function's handler. The runtime reads
//! its configuration from the environment the deployer gives the function,
//! listens on EDGE_LISTEN (127.0.0.1:3000, the watchdog's upstream_url) and
//! drains calls in flight on SIGTERM.

fn main() -> std::process::ExitCode {
    edge_sdk::runtime::start(function::handle)
}
