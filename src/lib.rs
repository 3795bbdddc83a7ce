//! Make a tower or axum service observable in one line.
//!
//! `otel-monitor` traces every request as an OpenTelemetry server span, records the HTTP server
//! metrics, and exports both over OTLP to the collector in front of your APM, all named as the
//! OpenTelemetry semantic conventions name them.
//!
//! - [`Telemetry`] builds the pipeline from the standard `OTEL_*` environment variables and
//!   flushes it on shutdown.
//! - [`MonitorLayer`] instruments requests; it works on any `tower::Service<http::Request<B>>`.
//! - [`MonitorClientLayer`] instruments the calls the service makes (any tower HTTP client, and
//!   reqwest with the feature `reqwest`), and sends the trace context with them, so that the
//!   services it calls continue the trace.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use otel_monitor::{MonitorLayer, Telemetry};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let telemetry = Telemetry::builder().service_name("checkout").init()?;
//!
//!     let app = Router::new()
//!         .route("/users/{id}", get(|| async { "user" }))
//!         .layer(MonitorLayer::new());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app).await?;
//!
//!     telemetry.shutdown()?;
//!     Ok(())
//! }
//! ```
//!
//! The crates this one builds against are re-exported, so that the versions you use to add your
//! own instrumentation are the ones the pipeline was built with.
#![deny(missing_docs, unreachable_pub, unsafe_code)]
#![warn(rust_2018_idioms, missing_debug_implementations)]

mod client;
mod config;
mod console;
mod export;
mod host_metrics;
mod http_metrics;
mod layer;
#[cfg(feature = "prometheus")]
mod prometheus;
mod providers;
mod rpc;
mod scope;
mod subscriber;
mod telemetry;

pub use client::{
    ClientResponseBody, ClientResponseFuture, MonitorClient, MonitorClientLayer,
    MonitorClientLayerBuilder, ResendCount, UrlTemplate,
};
pub use config::{ConfigError, Exporter, OtlpProtocol, Propagator};
pub use host_metrics::{HostMetricGroup, register_host_metrics};
pub use layer::{
    ForwardedHeaders, MonitorLayer, MonitorLayerBuilder, MonitorService, RequestBody, ResponseBody,
    ResponseFuture,
};
#[cfg(feature = "prometheus")]
pub use prometheus::PrometheusScrape;
pub use telemetry::{InitError, ShutdownError, Telemetry, TelemetryBuilder};

pub use opentelemetry;
pub use opentelemetry_appender_tracing;
pub use opentelemetry_otlp;
pub use opentelemetry_sdk;
pub use opentelemetry_semantic_conventions;
pub use tracing_opentelemetry;

/// The README's examples, compiled as doctests so they cannot go stale.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
