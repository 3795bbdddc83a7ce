//! Metrics served for Prometheus to scrape (feature `prometheus`): for a self-hosted Prometheus
//! or Grafana Agent that pulls, with no collector in between.

use std::collections::HashSet;

use opentelemetry::Key;
use opentelemetry_prometheus::{PrometheusExporter, ResourceSelector};
use opentelemetry_semantic_conventions::resource::SERVICE_NAME;
use prometheus::{Encoder, Registry, TextEncoder};

use crate::InitError;

/// The metrics of the pipeline in the Prometheus text format, for a `/metrics` endpoint.
///
/// Present when `OTEL_METRICS_EXPORTER` includes `prometheus` (or the builder names
/// [`Exporter::Prometheus`](crate::Exporter::Prometheus)). Names follow the OpenTelemetry to
/// Prometheus conventions: `http.server.request.duration` (seconds) becomes the histogram
/// `http_server_request_duration_seconds`, counters end in `_total`, the resource becomes
/// `target_info`, and every series carries `service_name`.
///
/// ```no_run
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use otel_monitor::{Exporter, Telemetry};
///
/// let telemetry = Telemetry::builder()
///     .metrics_exporters([Exporter::Otlp, Exporter::Prometheus])
///     .init()?;
/// let mut app: axum::Router = axum::Router::new();
/// if let Some(scrape) = telemetry.prometheus() {
///     app = app.merge(scrape.router()); // GET /metrics
/// }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PrometheusScrape {
    registry: Registry,
}

/// The reader to add to the meter provider, and the scrape side of it.
pub(crate) fn reader() -> Result<(PrometheusExporter, PrometheusScrape), InitError> {
    let registry = Registry::new();
    let reader = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .with_resource_selector(ResourceSelector::KeyAllowList(HashSet::from([
            Key::from_static_str(SERVICE_NAME),
        ])))
        .build()
        .map_err(|source| InitError::Prometheus(source.to_string()))?;
    Ok((reader, PrometheusScrape { registry }))
}

impl PrometheusScrape {
    /// The content type of [`render`](Self::render)'s output.
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// Collects the metrics now and renders them in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut rendered = Vec::new();
        if let Err(error) = TextEncoder::new().encode(&self.registry.gather(), &mut rendered) {
            tracing::warn!(%error, "cannot render the metrics for Prometheus");
        }
        String::from_utf8_lossy(&rendered).into_owned()
    }

    /// An axum router serving [`render`](Self::render) at `GET /metrics`.
    ///
    /// Merged after `.layer(MonitorLayer)`, scrapes are not traced. Give the app a `fallback`
    /// before the layer then: `merge` keeps the one custom fallback, and axum's default one,
    /// which it would keep otherwise, has no layer, so requests no route matches would go
    /// unmeasured.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use axum::{Router, http::StatusCode, routing::get};
    /// use otel_monitor::{MonitorLayer, Telemetry};
    ///
    /// let telemetry = Telemetry::builder().init()?;
    /// let app: Router = Router::new()
    ///     .route("/", get(|| async { "hello" }))
    ///     .fallback(|| async { StatusCode::NOT_FOUND })
    ///     .layer(MonitorLayer::new());
    /// let app = match telemetry.prometheus() {
    ///     Some(scrape) => app.merge(scrape.router()),
    ///     None => app,
    /// };
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "axum")]
    pub fn router<S>(&self) -> axum::Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let scrape = self.clone();
        axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let scrape = scrape.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, Self::CONTENT_TYPE)],
                        scrape.render(),
                    )
                }
            }),
        )
    }
}
