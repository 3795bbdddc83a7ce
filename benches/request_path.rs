//! The cost `MonitorLayer` adds to a request, in-process: the same axum route called as a tower
//! service, bare and behind the layer with each part of the pipeline on.
//!
//! - `bare`: no layer, the baseline every ratio in BENCHMARKS.md divides by.
//! - `noop`: the layer with no provider installed (OpenTelemetry's no-op tracer and meter).
//! - `traces`: a real SDK tracer provider; its processor encodes every 512 spans into an OTLP
//!   protobuf request on the calling thread, as otel-monitor's span exporter does (straight from
//!   `SpanData`), and sends it nowhere.
//! - `metrics`: a real SDK meter provider (periodic reader, exporter encoding to OTLP protobuf).
//! - `full`: traces and metrics.
//! - `full_stock_encoding`: full, its spans encoded as `opentelemetry-otlp`'s stock exporter does
//!   (conversion to `opentelemetry-proto`'s structs, then prost).
//! - `sampled_out`: full, with a sampler that drops every trace.
//!
//! Peers on the same opentelemetry 0.33, each with its own providers built exactly like the ones
//! of `full` (the same encoding span processor, the same periodic reader and metric exporter),
//! and again with the stock span encoding, as their users export (rows ending in `_stock`):
//!
//! - `peer_instrumentation_tower`: `opentelemetry-instrumentation-tower`'s HTTP server layer
//!   (`http::server::Layer`, feature `axum` for the route), span and metrics. It reads the global
//!   tracer and meter providers when it is built, so they are installed just before.
//! - `peer_axum_tracing_otel`: `axum-tracing-opentelemetry`'s `OtelAxumLayer`, whose `tracing`
//!   span becomes an OpenTelemetry span through a `tracing-opentelemetry` layer bound to an SDK
//!   tracer. It records no HTTP metrics. Its subscriber is the thread's default only while its
//!   rows run, so the other rows run with no subscriber at all.
//!
//! Run with `cargo bench --bench request_path`. BENCHMARKS.md has the figures and what they say.
//! The last run, on 2 shared vCPUs (AMD EPYC), Debian 12, Rust 1.95, 2026-11-24, commit
//! `16b48cb`, gave per request:
//!
//! | row | time | added over `bare` |
//! |---|---|---|
//! | `bare` | 1.158 µs | — |
//! | `noop` | 1.679 µs | +0.52 µs |
//! | `metrics` | 1.745 µs | +0.59 µs |
//! | `sampled_out` | 1.917 µs | +0.76 µs |
//! | `traces` | 2.440 µs | +1.28 µs |
//! | `full` | 2.489 µs | +1.33 µs |
//! | `full_stock_encoding` | 3.689 µs | +2.53 µs |
//! | `peer_instrumentation_tower` | 3.317 µs | +2.16 µs |
//! | `peer_instrumentation_tower_stock` | 4.224 µs | +3.07 µs |
//! | `peer_axum_tracing_otel` | 4.132 µs | +2.97 µs |
//! | `peer_axum_tracing_otel_stock` | 6.149 µs | +4.99 µs |

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Body, extract::Path, routing::get};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use opentelemetry::{
    Context,
    metrics::MeterProvider as _,
    trace::{SpanKind, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{
        PeriodicReader, SdkMeterProvider, Temporality, data::ResourceMetrics,
        exporter::PushMetricExporter,
    },
    trace::{Sampler, SdkTracerProvider, Span, SpanData, SpanProcessor},
};
use otel_monitor::MonitorLayer;
use support::{EncodingMetricExporter, EncodingProcessor, SpanEncoding};
use tower::ServiceExt;
use tracing_subscriber::layer::SubscriberExt as _;

fn tracer_provider(sampler: Sampler, encoding: SpanEncoding) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(EncodingProcessor::new(encoding))
        .with_resource(Resource::builder().with_service_name("bench").build())
        .build()
}

fn meter_provider() -> SdkMeterProvider {
    SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(EncodingMetricExporter)
                .with_interval(Duration::from_secs(1))
                .build(),
        )
        .build()
}

fn app() -> Router {
    Router::new().route(
        "/users/{id}",
        get(|Path(id): Path<u64>| async move { format!("{{\"id\":{id}}}") }),
    )
}

fn request() -> http::Request<Body> {
    http::Request::get("/users/42")
        .header("host", "localhost:3000")
        .header("user-agent", "bench/1.0")
        .body(Body::empty())
        .unwrap()
}

fn bench_request_path(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let traces = tracer_provider(Sampler::AlwaysOn, SpanEncoding::Direct);
    let stock_traces = tracer_provider(Sampler::AlwaysOn, SpanEncoding::Stock);
    let sampled_out = tracer_provider(Sampler::AlwaysOff, SpanEncoding::Direct);
    let metrics = meter_provider();
    let noop_meter = opentelemetry::metrics::noop::NoopMeterProvider::new().meter("bench");
    let noop_tracer = opentelemetry::trace::noop::NoopTracerProvider::new().tracer("bench");

    let layer = |tracer: Option<&SdkTracerProvider>, meter: Option<&SdkMeterProvider>| {
        let builder = MonitorLayer::builder();
        let builder = match tracer {
            Some(provider) => builder.tracer(provider.tracer("otel-monitor")),
            None => builder.tracer(noop_tracer.clone()),
        };
        let builder = match meter {
            Some(provider) => builder.meter(provider.meter("otel-monitor")),
            None => builder.meter(noop_meter.clone()),
        };
        builder.build()
    };
    let variants = [
        ("bare", app()),
        ("noop", app().layer(layer(None, None))),
        ("traces", app().layer(layer(Some(&traces), None))),
        ("metrics", app().layer(layer(None, Some(&metrics)))),
        ("full", app().layer(layer(Some(&traces), Some(&metrics)))),
        (
            "full_stock_encoding",
            app().layer(layer(Some(&stock_traces), Some(&metrics))),
        ),
        (
            "sampled_out",
            app().layer(layer(Some(&sampled_out), Some(&metrics))),
        ),
    ];

    let mut group = c.benchmark_group("request_path");
    for (name, router) in variants {
        bench_router(&mut group, &runtime, name, router);
    }

    // The peers, each with providers of its own, built like the ones above.
    check_peers_record(&runtime);
    for (suffix, encoding) in [("", SpanEncoding::Direct), ("_stock", SpanEncoding::Stock)] {
        let tower_traces = tracer_provider(Sampler::AlwaysOn, encoding);
        let tower_metrics = meter_provider();
        bench_router(
            &mut group,
            &runtime,
            &format!("peer_instrumentation_tower{suffix}"),
            peer_instrumentation_tower(&tower_traces, &tower_metrics),
        );
        let tracing_traces = tracer_provider(Sampler::AlwaysOn, encoding);
        let (router, subscriber) = peer_axum_tracing_otel(&tracing_traces);
        let subscriber_guard = tracing::subscriber::set_default(subscriber);
        bench_router(
            &mut group,
            &runtime,
            &format!("peer_axum_tracing_otel{suffix}"),
            router,
        );
        drop(subscriber_guard);
    }
    group.finish();
}

/// `opentelemetry-instrumentation-tower`'s HTTP server layer on the route. It takes its tracer
/// and meter from the global providers when it is built, so `traces` and `metrics` are installed
/// globally first.
fn peer_instrumentation_tower(traces: &SdkTracerProvider, metrics: &SdkMeterProvider) -> Router {
    opentelemetry::global::set_tracer_provider(traces.clone());
    opentelemetry::global::set_meter_provider(metrics.clone());
    app().layer(opentelemetry_instrumentation_tower::http::server::Layer::new())
}

/// `axum-tracing-opentelemetry`'s layer on the route, and the subscriber that turns its `tracing`
/// span into an OpenTelemetry span with a tracer of `traces` (tracing-opentelemetry). The
/// benchmark's runtime runs on the calling thread, so a thread-default subscriber sees every
/// request.
fn peer_axum_tracing_otel(
    traces: &SdkTracerProvider,
) -> (Router, impl tracing::Subscriber + Send + Sync + 'static) {
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(traces.tracer("tracing")));
    let router = app().layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default());
    (router, subscriber)
}

/// Keeps every span that ends, for [`check_peers_record`].
#[derive(Debug, Clone, Default)]
struct KeptSpans(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for KeptSpans {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap().push(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// Keeps the names of the metrics each export holds, for [`check_peers_record`].
#[derive(Debug, Clone, Default)]
struct KeptMetricNames(Arc<Mutex<Vec<String>>>);

impl PushMetricExporter for KeptMetricNames {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let mut names = self.0.lock().unwrap();
        for scope in metrics.scope_metrics() {
            names.extend(scope.metrics().map(|metric| metric.name().to_owned()));
        }
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}

/// Before the peers are timed (after the other rows, which it would otherwise disturb: it installs
/// global providers and a scoped subscriber): one request through each peer, as set up for its
/// row, ends exactly one server span named after the route, and the tower peer records the
/// request duration. A row whose middleware silently recorded nothing would look fast.
fn check_peers_record(runtime: &tokio::runtime::Runtime) {
    let one_request = |router: Router| {
        runtime.block_on(async {
            let response = router.oneshot(request()).await.unwrap();
            response.into_body().collect().await.unwrap().to_bytes()
        })
    };
    let assert_one_server_span = |peer: &str, spans: &KeptSpans| {
        let spans = spans.0.lock().unwrap();
        assert_eq!(spans.len(), 1, "{peer}: spans ended");
        assert_eq!(spans[0].name, "GET /users/{id}", "{peer}: span name");
        assert_eq!(spans[0].span_kind, SpanKind::Server, "{peer}: span kind");
    };
    let kept_provider = |spans: &KeptSpans| {
        SdkTracerProvider::builder()
            .with_span_processor(spans.clone())
            .build()
    };

    let spans = KeptSpans::default();
    let metric_names = KeptMetricNames::default();
    let metrics = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metric_names.clone()).build())
        .build();
    one_request(peer_instrumentation_tower(&kept_provider(&spans), &metrics));
    assert_one_server_span("peer_instrumentation_tower", &spans);
    metrics.force_flush().unwrap();
    assert!(
        metric_names
            .0
            .lock()
            .unwrap()
            .iter()
            .any(|name| name == "http.server.request.duration"),
        "peer_instrumentation_tower: http.server.request.duration not recorded"
    );

    let spans = KeptSpans::default();
    let (router, subscriber) = peer_axum_tracing_otel(&kept_provider(&spans));
    tracing::subscriber::with_default(subscriber, || one_request(router));
    assert_one_server_span("peer_axum_tracing_otel", &spans);
}

/// One row: the router called as a tower service, the response body collected.
fn bench_router(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    router: Router,
) {
    group.bench_function(name, |b| {
        b.to_async(runtime).iter(|| {
            let router = router.clone();
            async move {
                let response = router.oneshot(request()).await.unwrap();
                response.into_body().collect().await.unwrap().to_bytes()
            }
        });
    });
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench_request_path
}
criterion_main!(benches);
