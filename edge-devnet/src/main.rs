//! `edge-devnet`: see the crate docs of `edge_devnet`.

fn main() -> std::process::ExitCode {
    edge_devnet::cli::run()
}
