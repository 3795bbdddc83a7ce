//! README, "Use it": the crates otel-monitor builds against are re-exported, so a user's own
//! instrumentation uses the same versions. This file names them only through `otel_monitor::`:
//! a handler's own `tracing` span and event, bridged with the re-exported `tracing_opentelemetry`
//! and `opentelemetry_appender_tracing`, land in the layer's trace; the attribute keys are the
//! re-exported semantic conventions'. It stops compiling if a re-export goes or its version
//! parts from the one the layer uses.

use axum::{Router, body::Body, http::Request, routing::get};
use otel_monitor::{
    MonitorLayer,
    opentelemetry::trace::{SpanKind, TracerProvider as _},
    opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge,
    opentelemetry_otlp::{SpanExporter, WithExportConfig as _},
    opentelemetry_sdk::{
        logs::{InMemoryLogExporter, SdkLoggerProvider},
        trace::{InMemorySpanExporter, SdkTracerProvider},
    },
    opentelemetry_semantic_conventions::attribute::{HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE},
    tracing_opentelemetry,
};
use tower::ServiceExt as _;
use tracing_subscriber::layer::SubscriberExt as _;

#[tokio::test]
async fn a_users_own_instrumentation_through_the_reexports_joins_the_request_trace() {
    let spans = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let logs = InMemoryLogExporter::default();
    let logger_provider = SdkLoggerProvider::builder()
        .with_simple_exporter(logs.clone())
        .build();
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(tracer_provider.tracer("app")))
        .with(OpenTelemetryTracingBridge::new(&logger_provider));
    let _subscriber = tracing::subscriber::set_default(subscriber);
    // The OTLP exporter is the one `Telemetry` builds on: a user configuring their own gets the
    // same version.
    SpanExporter::builder()
        .with_http()
        .with_endpoint("http://127.0.0.1:4318/v1/traces")
        .build()
        .expect("an OTLP span exporter from the re-exported crate");

    let app = Router::new()
        .route(
            "/users/{id}",
            get(|| async {
                let span = tracing::info_span!("load_user");
                let _entered = span.enter();
                tracing::info!("user loaded");
                "ok"
            }),
        )
        .layer(
            MonitorLayer::builder()
                .tracer(tracer_provider.tracer("otel-monitor"))
                .build(),
        );
    let response = app
        .oneshot(Request::get("/users/7").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    drop(response);

    let spans = spans.get_finished_spans().unwrap();
    let server = spans
        .iter()
        .find(|span| span.span_kind == SpanKind::Server)
        .expect("the layer's server span");
    assert_eq!(server.name, "GET /users/{id}");
    let value = |key: &str| {
        server
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(value(HTTP_ROUTE).as_deref(), Some("/users/{id}"));
    assert_eq!(value(HTTP_RESPONSE_STATUS_CODE).as_deref(), Some("200"));
    let own = spans
        .iter()
        .find(|span| span.name == "load_user")
        .expect("the handler's own span");
    assert_eq!(own.span_context.trace_id(), server.span_context.trace_id());
    assert_eq!(own.parent_span_id, server.span_context.span_id());

    let logs = logs.get_emitted_logs().unwrap();
    let event = logs
        .iter()
        .find(|log| format!("{:?}", log.record.body()).contains("user loaded"))
        .expect("the handler's event as a log record");
    let context = event
        .record
        .trace_context()
        .expect("the event's trace context");
    assert_eq!(context.trace_id, server.span_context.trace_id());
    assert_eq!(context.span_id, own.span_context.span_id());
}
