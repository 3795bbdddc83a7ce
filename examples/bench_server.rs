//! The server `scripts/load-bench` loads: `GET /users/{id}` answering a small JSON body, bare or
//! instrumented, served by one Tokio worker thread.
//!
//! ```text
//! BENCH_MODE=monitor OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318 \
//!     cargo run --release --example bench_server
//! ```
//!
//! `BENCH_MODE` (default `bare`):
//!
//! - `bare`: the route alone, no telemetry at all.
//! - `monitor`: [`Telemetry`] (OTLP as `OTEL_EXPORTER_OTLP_PROTOCOL` says, HTTP/protobuf by
//!   default; every span sampled unless `OTEL_TRACES_SAMPLER`
//!   says otherwise) and [`MonitorLayer::new`].
//! - `peer_instrumentation_tower`: the same [`Telemetry`], and
//!   `opentelemetry-instrumentation-tower`'s HTTP server layer (span and metrics) in place of
//!   `MonitorLayer`.
//! - `peer_axum_tracing_otel`: the same [`Telemetry`], whose `tracing` subscriber turns
//!   `axum-tracing-opentelemetry`'s request span into an OpenTelemetry span; that span is at
//!   `TRACE` level on the target `otel::tracing`, so the export filter must enable it
//!   (`OTEL_MONITOR_EXPORT_FILTER=info,otel::tracing=trace`): the server refuses to start when
//!   no filter does. It records no HTTP metrics.
//! - `peer_instrumentation_tower_stock`, `peer_axum_tracing_otel_stock`: the same peers on the
//!   pipeline their users build by hand instead of [`Telemetry`]: `opentelemetry-otlp`'s stock
//!   span and metric exporters (over `OTEL_EXPORTER_OTLP_PROTOCOL`), a batch span processor and a
//!   periodic metric reader, installed as the global providers; for the `tracing` peer, a
//!   subscriber of `tracing-opentelemetry`'s layer alone. No logs, no host metrics.
//!
//! `LISTEN_ADDR` (default `127.0.0.1:3000`) is where it listens. The instrumented modes export
//! to `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://localhost:4318`). SIGTERM or Ctrl-C stops
//! the server, then flushes the telemetry.

use std::{error::Error, process::ExitCode};

use axum::{Json, Router, extract::Path, routing::get};
use otel_monitor::{
    MonitorLayer, Telemetry,
    opentelemetry::{global, trace::TracerProvider as _},
    opentelemetry_otlp::{MetricExporter, SpanExporter},
    opentelemetry_sdk::{
        Resource, metrics::SdkMeterProvider, propagation::TraceContextPropagator,
        trace::SdkTracerProvider,
    },
};
use tracing_subscriber::layer::SubscriberExt as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Bare,
    Monitor,
    PeerInstrumentationTower,
    PeerAxumTracingOtel,
    PeerInstrumentationTowerStock,
    PeerAxumTracingOtelStock,
}

impl Mode {
    fn from_env() -> Result<Self, String> {
        let value = std::env::var("BENCH_MODE").unwrap_or_else(|_| "bare".to_owned());
        match value.as_str() {
            "bare" => Ok(Self::Bare),
            "monitor" => Ok(Self::Monitor),
            "peer_instrumentation_tower" => Ok(Self::PeerInstrumentationTower),
            "peer_axum_tracing_otel" => Ok(Self::PeerAxumTracingOtel),
            "peer_instrumentation_tower_stock" => Ok(Self::PeerInstrumentationTowerStock),
            "peer_axum_tracing_otel_stock" => Ok(Self::PeerAxumTracingOtelStock),
            other => Err(format!(
                "BENCH_MODE={other:?}: expected bare, monitor, peer_instrumentation_tower, \
                 peer_axum_tracing_otel, peer_instrumentation_tower_stock \
                 or peer_axum_tracing_otel_stock"
            )),
        }
    }
}

#[derive(serde::Serialize)]
struct User {
    id: u64,
    name: &'static str,
}

/// `GET /users/{id}`: `{"id":42,"name":"Ada"}`.
async fn user(Path(id): Path<u64>) -> Json<User> {
    Json(User { id, name: "Ada" })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench_server: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The pipeline a peer's user builds by hand: the stock OTLP exporters, as the global providers.
struct StockPipeline {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

impl StockPipeline {
    fn install() -> Result<Self, Box<dyn Error>> {
        let grpc = std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL").as_deref() == Ok("grpc");
        let (spans, metrics) = if grpc {
            (
                SpanExporter::builder().with_tonic().build()?,
                MetricExporter::builder().with_tonic().build()?,
            )
        } else {
            (
                SpanExporter::builder().with_http().build()?,
                MetricExporter::builder().with_http().build()?,
            )
        };
        let resource = Resource::builder()
            .with_service_name("bench-server")
            .build();
        // The meter provider first: the batch span processor counts its spans with the global
        // meter provider it finds when it is built.
        let meter_provider = SdkMeterProvider::builder()
            .with_resource(resource.clone())
            .with_periodic_exporter(metrics)
            .build();
        global::set_meter_provider(meter_provider.clone());
        let tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_batch_exporter(spans)
            .build();
        global::set_tracer_provider(tracer_provider.clone());
        global::set_text_map_propagator(TraceContextPropagator::new());
        Ok(Self {
            tracer_provider,
            meter_provider,
        })
    }

    fn shutdown(self) -> Result<(), Box<dyn Error>> {
        self.tracer_provider.shutdown()?;
        self.meter_provider.shutdown()?;
        Ok(())
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let mode = Mode::from_env()?;
    let telemetry = match mode {
        Mode::Bare | Mode::PeerInstrumentationTowerStock | Mode::PeerAxumTracingOtelStock => None,
        _ => Some(
            Telemetry::builder()
                .default_service_name("bench-server")
                .init()?,
        ),
    };
    let stock = match mode {
        Mode::PeerInstrumentationTowerStock | Mode::PeerAxumTracingOtelStock => {
            Some(StockPipeline::install()?)
        }
        _ => None,
    };
    if let (Mode::PeerAxumTracingOtelStock, Some(stock)) = (mode, &stock) {
        let tracer = stock.tracer_provider.tracer("bench-server");
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(otel_monitor::tracing_opentelemetry::layer().with_tracer(tracer)),
        )?;
    }
    if mode == Mode::PeerAxumTracingOtel
        && !tracing::enabled!(target: "otel::tracing", tracing::Level::TRACE)
    {
        return Err("peer_axum_tracing_otel: its request span is filtered out; \
                    set OTEL_MONITOR_EXPORT_FILTER=info,otel::tracing=trace"
            .into());
    }

    let app = Router::new().route("/users/{id}", get(user));
    let app = match mode {
        Mode::Bare => app,
        Mode::Monitor => app.layer(MonitorLayer::new()),
        // Built after Telemetry::init: it takes the global tracer and meter when it is built.
        Mode::PeerInstrumentationTower | Mode::PeerInstrumentationTowerStock => {
            app.layer(opentelemetry_instrumentation_tower::http::server::Layer::new())
        }
        Mode::PeerAxumTracingOtel | Mode::PeerAxumTracingOtelStock => {
            app.layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default())
        }
    };

    let address = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    eprintln!(
        "bench_server: {mode:?} listening on http://{}",
        listener.local_addr()?
    );
    // Spawned, so the accept loop runs on the worker thread with the connections.
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown_signal())
            .await
    })
    .await??;

    if let Some(telemetry) = telemetry {
        telemetry.shutdown()?;
    }
    if let Some(stock) = stock {
        stock.shutdown()?;
    }
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
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
