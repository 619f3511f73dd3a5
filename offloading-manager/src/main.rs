//! The manager's process: configuration from the environment a deployed
//! function gets (SPEC section 7), the API on `EDGE_LISTEN`, a graceful
//! drain on SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

#[tokio::main]
async fn main() -> ExitCode {
    edge_sdk::runtime::init_logging();
    let config = match edge_sdk::runtime::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("offloading-manager: {error}");
            return ExitCode::from(78);
        }
    };
    let recovery_after = match std::env::var("EDGE_MIGRATION_RECOVERY_SECS") {
        Err(_) => Duration::from_secs(30),
        Ok(text) => match text.trim().parse() {
            Ok(secs) => Duration::from_secs(secs),
            Err(_) => {
                eprintln!(
                    "offloading-manager: configuration error in EDGE_MIGRATION_RECOVERY_SECS: {text:?} is not a number of seconds"
                );
                return ExitCode::from(78);
            }
        },
    };
    if config.node_token.is_none() {
        tracing::warn!("no edge-node-token secret: every authenticated command will answer 401");
    }
    let manager = match offloading_manager::manager(&config, recovery_after) {
        Ok(manager) => manager,
        Err(error) => {
            eprintln!("offloading-manager: {error}");
            return ExitCode::from(78);
        }
    };
    let listener = match tokio::net::TcpListener::bind(config.listen).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!(
                "offloading-manager: configuration error in EDGE_LISTEN: cannot listen on {}: {error}",
                config.listen
            );
            return ExitCode::from(78);
        }
    };
    tracing::info!(node = %config.location, address = %config.listen, "session-offloading-manager listening");
    // A node whose Redis holds sessions of the previous layout is converted
    // and indexed once, while the API serves.
    let upgrading = std::sync::Arc::clone(&manager);
    tokio::spawn(async move {
        if let Err(error) = upgrading.upgrade_store().await {
            tracing::error!("could not index the node's sessions: {error}");
        }
    });
    // Undecided migrations are settled as soon as they are due.
    tokio::spawn(
        std::sync::Arc::clone(&manager).recover_when_due(offloading_manager::RECOVERY_TICK),
    );
    let served = axum::serve(
        edge_sdk::runtime::with_nodelay(listener),
        offloading_manager::api::router(manager),
    )
    .with_graceful_shutdown(edge_sdk::runtime::shutdown_signal())
    .await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("offloading-manager: {error}");
            ExitCode::FAILURE
        }
    }
}
