//! The cost `MonitorLayer` adds to a request, in-process: the same axum route called as a tower
//! service, bare and behind the layer with each part of the pipeline on.
//!
//! - `bare`: no layer, the baseline every ratio in BENCHMARKS.md divides by.
//! - `noop`: the layer with no provider installed (OpenTelemetry's no-op tracer and meter).
//! - `traces`: a real SDK tracer provider; its processor encodes every 512 spans into an OTLP
//!   protobuf request on the calling thread, as the batch exporter would, and sends it nowhere.
//! - `metrics`: a real SDK meter provider (periodic reader, exporter encoding to OTLP protobuf).
//! - `full`: traces and metrics.
//! - `sampled_out`: full, with a sampler that drops every trace.
//!
//! Run with `cargo bench --bench request_path`; the figures, the hardware and the command are in
//! BENCHMARKS.md.

use std::{sync::Mutex, time::Duration};

use axum::{Router, body::Body, extract::Path, routing::get};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use opentelemetry::{Context, metrics::MeterProvider as _, trace::TracerProvider as _};
use opentelemetry_proto::{
    tonic::collector::{
        metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest,
    },
    transform::{
        common::tonic::ResourceAttributesWithSchema,
        trace::tonic::group_spans_by_resource_and_scope,
    },
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
use prost::Message;
use tower::ServiceExt;

/// What the OTLP exporter does with a batch of spans, short of the network.
#[derive(Debug, Default)]
struct EncodingProcessor {
    resource: ResourceAttributesWithSchema,
    batch: Mutex<Vec<SpanData>>,
}

impl EncodingProcessor {
    const BATCH_SIZE: usize = 512;
}

impl SpanProcessor for EncodingProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let mut batch = self.batch.lock().unwrap();
        batch.push(span);
        if batch.len() == Self::BATCH_SIZE {
            let spans = std::mem::take(&mut *batch);
            let request = ExportTraceServiceRequest {
                resource_spans: group_spans_by_resource_and_scope(spans, &self.resource),
            };
            std::hint::black_box(request.encode_to_vec());
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
    }
}

/// What the OTLP metric exporter does with a collection, short of the network.
#[derive(Debug)]
struct EncodingMetricExporter;

impl PushMetricExporter for EncodingMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        std::hint::black_box(ExportMetricsServiceRequest::from(metrics).encode_to_vec());
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

fn tracer_provider(sampler: Sampler) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(EncodingProcessor::default())
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
    let traces = tracer_provider(Sampler::AlwaysOn);
    let sampled_out = tracer_provider(Sampler::AlwaysOff);
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
            "sampled_out",
            app().layer(layer(Some(&sampled_out), Some(&metrics))),
        ),
    ];

    let mut group = c.benchmark_group("request_path");
    for (name, router) in variants {
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                let router = router.clone();
                async move {
                    let response = router.oneshot(request()).await.unwrap();
                    response.into_body().collect().await.unwrap().to_bytes()
                }
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4));
    targets = bench_request_path
}
criterion_main!(benches);
