//! A service that builds its own `tracing` subscriber and adds `otel-monitor`'s layers to it:
//! its console is its own, and its `tracing` events and `#[instrument]` spans are still
//! exported, as log records and spans in the request's trace.
//!
//! ```text
//! cargo run --example own_subscriber
//! curl localhost:3000/orders/7
//! ```
//!
//! `RUST_LOG` filters this console only (`info` when unset); `OTEL_MONITOR_EXPORT_FILTER`
//! (same syntax, `info` when unset) decides what is exported, so `RUST_LOG=warn` quiets the
//! console without taking a span or an INFO record out of the telemetry. The other variables
//! are the standard `OTEL_*` ones, as for the `service` example; `LISTEN_ADDR` (default
//! `127.0.0.1:3000`) is where it listens. SIGTERM or Ctrl-C stops it, then flushes the
//! telemetry.

use std::{error::Error, process::ExitCode, time::Duration};

use axum::{Router, extract::Path, routing::get};
use otel_monitor::{MonitorLayer, Telemetry};
use tracing_subscriber::{
    EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _,
};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let telemetry = Telemetry::builder()
        .default_service_name("own-subscriber-example")
        .tracing_subscriber(false)
        .init()?;
    // The application's subscriber: its own console, with its own filter (a per-layer filter,
    // so that it filters the console only), and the crate's layers.
    let console_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_filter(console_filter))
        .with(telemetry.tracing_layer())
        .try_init()?;

    let app = Router::new()
        .route("/orders/{id}", get(order))
        .layer(MonitorLayer::new());
    let address = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;

    telemetry.shutdown()?;
    Ok(())
}

/// `GET /orders/{id}`: an INFO event and an `#[instrument]`ed lookup, both in the request's
/// trace.
async fn order(Path(id): Path<u64>) -> String {
    tracing::info!(order.id = id, "looking the order up");
    let total = load_order(id).await;
    format!("order {id}: {total}\n")
}

/// A span of its own, a child of the request's span.
#[tracing::instrument]
async fn load_order(id: u64) -> u64 {
    tokio::time::sleep(Duration::from_millis(2)).await;
    id * 100
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
