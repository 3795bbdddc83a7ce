//! `Telemetry` in the application's own process: what a failing `init()` leaves behind, and the
//! last batch of a service on a current-thread runtime. Each test sets process-wide state (the
//! environment, the global providers), which cargo-nextest keeps apart by running every test in
//! a process of its own.

mod support;

use std::{collections::HashMap, time::Duration};

use opentelemetry::{
    Context, KeyValue,
    baggage::BaggageExt,
    global,
    trace::{Tracer, TracerProvider as _},
};
use opentelemetry_sdk::{
    metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider},
    propagation::TraceContextPropagator,
    trace::{InMemorySpanExporter, SdkTracerProvider},
};
use otel_monitor::{InitError, Telemetry};
use support::OtlpReceiver;

/// Sets environment variables before the test starts any thread that could read them.
fn set_env(vars: &[(&str, &str)]) {
    for (name, value) in vars {
        // SAFETY: called first thing in a test that runs alone in its process (cargo-nextest),
        // before it starts a runtime or any other thread.
        unsafe { std::env::set_var(name, value) };
    }
}

#[test]
fn a_failing_init_leaves_the_globals_as_it_found_them() {
    set_env(&[
        // Nothing listens there: whatever init() built must never be used anyway.
        ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"),
        ("OTEL_MONITOR_HOST_METRICS", "false"),
    ]);
    // The application's own pipeline, installed before.
    let spans = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    global::set_tracer_provider(tracer_provider.clone());
    let metrics = InMemoryMetricExporter::default();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    global::set_meter_provider(meter_provider.clone());
    global::set_text_map_propagator(TraceContextPropagator::new());
    // And its own subscriber: init() fails at its last step, after it made its meter provider
    // global for the SDK's processors.
    tracing::subscriber::set_global_default(tracing_subscriber::registry()).unwrap();

    let error = Telemetry::builder().init().unwrap_err();
    assert!(matches!(error, InitError::Subscriber(_)), "{error}");

    global::tracer("app").in_span("still the application's", |_| {});
    let finished = spans.get_finished_spans().unwrap();
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0].name, "still the application's");

    global::meter("app")
        .u64_counter("still.the.applications")
        .build()
        .add(1, &[KeyValue::new("k", "v")]);
    meter_provider.force_flush().unwrap();
    let exported: Vec<String> = metrics
        .get_finished_metrics()
        .unwrap()
        .iter()
        .flat_map(|resource| resource.scope_metrics())
        .flat_map(|scope| scope.metrics())
        .map(|metric| metric.name().to_owned())
        .collect();
    assert_eq!(exported, ["still.the.applications"]);

    // init() would have installed W3C trace context and baggage: baggage is not injected.
    let context = Context::current_with_baggage([KeyValue::new("tenant", "blue")]);
    let mut headers = HashMap::new();
    global::get_text_map_propagator(|propagator| propagator.inject_context(&context, &mut headers));
    assert!(!headers.contains_key("baggage"), "{headers:?}");
}

#[test]
fn an_invalid_file_fails_init_before_anything_is_installed() {
    let error = Telemetry::builder()
        .otlp_certificate("/nonexistent/ca.pem")
        .init()
        .unwrap_err();
    let message = format!("{error}: {}", std::error::Error::source(&error).unwrap());
    assert!(
        message.contains("TelemetryBuilder::otlp_certificate: cannot read /nonexistent/ca.pem"),
        "{message}"
    );
    assert!(!tracing::dispatcher::has_been_set());
    let span = global::tracer("app").start("not recorded");
    assert!(!opentelemetry::trace::Span::span_context(&span).is_valid());
    // Nothing was left half-installed: a correct init() still succeeds.
    let telemetry = Telemetry::builder()
        .traces_exporters([])
        .metrics_exporters([])
        .logs_exporters([])
        .init()
        .unwrap();
    assert!(tracing::dispatcher::has_been_set());
    telemetry.shutdown().unwrap();
}

#[test]
fn a_current_thread_runtime_delivers_its_last_grpc_batch_at_shutdown() {
    // The receiver has a runtime of its own, so that it serves while the service's only thread
    // is inside shutdown().
    let receiver_runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = receiver_runtime.block_on(OtlpReceiver::start());
    set_env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.grpc_endpoint()),
        // The span can only leave in the final flush.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ]);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let telemetry = Telemetry::builder()
                .service_name("current-thread")
                .host_metrics(false)
                .tracing_subscriber(false)
                .init()
                .unwrap();
            let provider = telemetry.tracer_provider().unwrap().clone();
            provider.tracer("app").in_span("the last batch", |_| {});
            telemetry.shutdown().unwrap();
        });
    let spans =
        support::wait_for_blocking("the span at the receiver", Duration::from_secs(5), || {
            let spans = receiver.spans();
            (!spans.is_empty()).then_some(spans)
        });
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].span.name, "the last batch");
    assert_eq!(
        spans[0].resource_str("service.name"),
        Some("current-thread")
    );
}
