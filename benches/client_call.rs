//! The cost `MonitorClientLayer` adds to an outgoing call, in-process: a client that answers at
//! once (a `tower::service_fn`, no network), so the layer's own work is what the rows differ by.
//! Each call goes out from inside a sampled request's context, as from a handler under
//! `MonitorLayer`, with a `UrlTemplate`, and the W3C trace-context propagator injecting.
//!
//! - `bare`: no layer, the baseline.
//! - `noop`: the layer with OpenTelemetry's no-op tracer and meter: the context injection alone
//!   (the tracer is found a no-op on the first call).
//! - `sampled_out`: a real SDK tracer whose sampler drops every trace, and a real meter: the
//!   span is started for the sampler and not recorded; the current context is injected.
//! - `metrics`: a real SDK meter provider, the no-op tracer.
//! - `full`: a real SDK tracer provider (its processor encodes every 512 spans into an OTLP
//!   protobuf request on the calling thread, as otel-monitor's exporter does) and meter provider.
//!
//! Run with `cargo bench --bench client_call`; the figures go in BENCHMARKS.md.

mod support;

use std::{convert::Infallible, time::Duration};

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use opentelemetry::{
    Context,
    context::FutureExt as _,
    metrics::MeterProvider as _,
    trace::{
        SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
        TracerProvider as _,
    },
};
use opentelemetry_sdk::{
    Resource,
    metrics::{PeriodicReader, SdkMeterProvider},
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use otel_monitor::{MonitorClientLayer, UrlTemplate};
use support::{EncodingMetricExporter, EncodingProcessor, SpanEncoding};
use tower::{ServiceExt, util::BoxCloneSyncService};

type Client = BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<BoxBody>, Infallible>;
type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Infallible>;

/// A client whose every call is answered at once with a small JSON body.
fn answering_client() -> AnsweringClient {
    tower::service_fn(answer as _)
}

type AnsweringClient = tower::util::ServiceFn<
    fn(http::Request<Full<Bytes>>) -> std::future::Ready<Result<Answer, Infallible>>,
>;
type Answer = http::Response<Full<Bytes>>;

fn answer(_request: http::Request<Full<Bytes>>) -> std::future::Ready<Result<Answer, Infallible>> {
    std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
        b"{\"id\":42}",
    )))))
}

fn request() -> http::Request<Full<Bytes>> {
    http::Request::get("http://users.internal:8080/users/42?fields=name")
        .extension(UrlTemplate::new("/users/{id}"))
        .body(Full::default())
        .unwrap()
}

/// The context of the request the service is handling, sampled.
fn handler_context() -> Context {
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        SpanId::from_hex("b7ad6b7169203331").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    ))
}

fn tracer_provider(sampler: Sampler) -> SdkTracerProvider {
    SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_span_processor(EncodingProcessor::new(SpanEncoding::Direct))
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

fn bench_client_call(c: &mut Criterion) {
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
        let builder = MonitorClientLayer::builder().propagator(TraceContextPropagator::new());
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
    let monitored = |tracer, meter| -> Client {
        BoxCloneSyncService::new(
            tower::ServiceBuilder::new()
                .layer(layer(tracer, meter))
                .service(answering_client())
                .map_response(|response| response.map(|body| body.boxed_unsync())),
        )
    };
    let variants: [(&str, Client); 5] = [
        (
            "bare",
            BoxCloneSyncService::new(
                answering_client()
                    .map_response(|response| response.map(|body| body.boxed_unsync())),
            ),
        ),
        ("noop", monitored(None, None)),
        ("sampled_out", monitored(Some(&sampled_out), Some(&metrics))),
        ("metrics", monitored(None, Some(&metrics))),
        ("full", monitored(Some(&traces), Some(&metrics))),
    ];

    let mut group = c.benchmark_group("client_call");
    for (name, client) in variants {
        let cx = handler_context();
        group.bench_function(name, |b| {
            b.to_async(&runtime).iter(|| {
                let client = client.clone();
                async move {
                    let response = client.oneshot(request()).await.unwrap();
                    response.into_body().collect().await.unwrap().to_bytes()
                }
                .with_context(cx.clone())
            });
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench_client_call
}
criterion_main!(benches);
