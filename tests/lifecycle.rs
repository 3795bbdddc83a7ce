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
use support::{OtlpReceiver, ReceiverOptions, TestPki};

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

/// A receiver on a runtime of its own, so that it serves while the test's thread blocks (in
/// `shutdown()`, or outside any runtime).
fn receiver_on_its_own_runtime(
    options: ReceiverOptions,
) -> (tokio::runtime::Runtime, OtlpReceiver) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(OtlpReceiver::start_with(options));
    (runtime, receiver)
}

/// Every signal goes to `receiver` over HTTP, and only the final flush can send it: batch
/// delays and the metric interval are ten minutes.
fn export_only_at_shutdown(receiver: &OtlpReceiver) {
    set_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "600000"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000"),
        ("OTEL_MONITOR_HOST_METRICS", "false"),
        ("RUST_LOG", "info"),
    ]);
}

/// A span, a log record in it and a metric, made through `tracing` and the global meter.
fn make_the_last_span_log_and_metric() {
    tracing::info_span!("the last span").in_scope(|| tracing::info!("the last log record"));
    global::meter("app")
        .u64_counter("the.last.metric")
        .build()
        .add(1, &[]);
}

/// The receiver has the span, the log record and the metric of
/// [`make_the_last_span_log_and_metric`].
fn assert_the_last_span_log_and_metric_arrived(receiver: &OtlpReceiver) {
    let spans: Vec<String> = receiver.spans().into_iter().map(|s| s.span.name).collect();
    assert_eq!(spans, ["the last span"]);
    let logs: Vec<Option<String>> = receiver
        .logs()
        .iter()
        .map(|log| log.body_str().map(str::to_owned))
        .collect();
    let last = Some("the last log record".to_owned());
    assert_eq!(
        logs.iter().filter(|body| **body == last).count(),
        1,
        "{logs:?}"
    );
    assert!(
        receiver
            .metrics()
            .iter()
            .any(|metric| metric.metric.name == "the.last.metric"),
        "{:?}",
        receiver
            .metrics()
            .iter()
            .map(|metric| metric.metric.name.clone())
            .collect::<Vec<_>>()
    );
}

#[test]
fn shutdown_delivers_the_last_span_log_record_and_metric() {
    let (_runtime, receiver) = receiver_on_its_own_runtime(ReceiverOptions::default());
    export_only_at_shutdown(&receiver);
    let telemetry = Telemetry::builder().service_name("last").init().unwrap();
    make_the_last_span_log_and_metric();
    telemetry.shutdown().unwrap();
    // shutdown() returned: what it flushed has been answered by the receiver.
    assert_the_last_span_log_and_metric_arrived(&receiver);
}

#[test]
fn dropping_telemetry_delivers_the_last_span_log_record_and_metric() {
    let (_runtime, receiver) = receiver_on_its_own_runtime(ReceiverOptions::default());
    export_only_at_shutdown(&receiver);
    let telemetry = Telemetry::builder().service_name("dropped").init().unwrap();
    make_the_last_span_log_and_metric();
    drop(telemetry);
    assert_the_last_span_log_and_metric_arrived(&receiver);
}

/// What the child process of
/// [`events_after_shutdown_reach_the_console_only_and_the_sdk_does_not_complain`] runs.
#[test]
#[ignore = "run as a child process by events_after_shutdown_reach_the_console_only_and_the_sdk_does_not_complain"]
fn child_makes_events_and_spans_after_shutdown() {
    let telemetry = Telemetry::builder().service_name("after").init().unwrap();
    // One callsite, hit before and after: its interest, cached at the first hit, must not let
    // the second through.
    let one_callsite = |when: &str| tracing::info!(when, "one callsite");
    one_callsite("before");
    tracing::info!("before shutdown");
    telemetry.shutdown().unwrap();
    one_callsite("after");
    for _ in 0..3 {
        tracing::info_span!("a span after shutdown")
            .in_scope(|| tracing::info!("an event after shutdown"));
    }
}

#[test]
fn events_after_shutdown_reach_the_console_only_and_the_sdk_does_not_complain() {
    let (_runtime, receiver) = receiver_on_its_own_runtime(ReceiverOptions::default());
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "child_makes_events_and_spans_after_shutdown",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.http_endpoint())
        .env("OTEL_MONITOR_HOST_METRICS", "false")
        .env("OTEL_BSP_SCHEDULE_DELAY", "50")
        .env("OTEL_BLRP_SCHEDULE_DELAY", "50")
        // The SDK's own diagnostics on the console: an event or a span that reached a provider
        // after it shut down would show `...AfterShutdown`.
        .env("RUST_LOG", "info,opentelemetry_sdk=debug")
        .output()
        .unwrap();
    let console = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{console}");
    assert_eq!(
        console.matches("an event after shutdown").count(),
        3,
        "the events still reach the console:\n{console}"
    );
    assert!(!console.contains("AfterShutdown"), "{console}");
    let bodies: Vec<Option<String>> = receiver
        .logs()
        .iter()
        .map(|log| log.body_str().map(str::to_owned))
        .collect();
    assert!(
        bodies.contains(&Some("before shutdown".to_owned())),
        "{bodies:?}"
    );
    assert!(
        !bodies.contains(&Some("an event after shutdown".to_owned())),
        "{bodies:?}"
    );
    let logs = receiver.logs();
    let one_callsite: Vec<Option<&str>> = logs
        .iter()
        .filter(|log| log.body_str() == Some("one callsite"))
        .map(|log| log.attr_str("when"))
        .collect();
    assert_eq!(one_callsite, [Some("before")]);
    assert!(
        receiver
            .spans()
            .iter()
            .all(|span| span.span.name != "a span after shutdown")
    );
}

#[test]
fn grpc_init_and_shutdown_work_outside_any_tokio_runtime() {
    let (_runtime, receiver) = receiver_on_its_own_runtime(ReceiverOptions::default());
    set_env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.grpc_endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("OTEL_MONITOR_HOST_METRICS", "false"),
    ]);
    // From a thread that never saw a runtime.
    let receiver_endpoint = receiver.grpc_endpoint();
    std::thread::spawn(move || {
        assert!(tokio::runtime::Handle::try_current().is_err());
        let telemetry = Telemetry::builder()
            .service_name("no-runtime")
            .tracing_subscriber(false)
            .init()
            .unwrap();
        let provider = telemetry.tracer_provider().unwrap().clone();
        provider
            .tracer("app")
            .in_span(format!("to {receiver_endpoint}"), |_| {});
        telemetry.shutdown().unwrap();
    })
    .join()
    .unwrap();
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].span.name,
        format!("to {}", receiver.grpc_endpoint())
    );
    let (http_exports, grpc_exports) = receiver.received_requests();
    assert_eq!(http_exports, 0);
    assert!(grpc_exports > 0);
}

#[test]
fn tracing_subscriber_false_leaves_the_applications_subscriber_in_place() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tracing_subscriber::layer::SubscriberExt;

    /// The application's own layer: counts the events it sees.
    struct Counting(&'static AtomicUsize);
    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counting {
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
    static SEEN: AtomicUsize = AtomicUsize::new(0);

    let (_runtime, receiver) = receiver_on_its_own_runtime(ReceiverOptions::default());
    export_only_at_shutdown(&receiver);
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Counting(&SEEN)))
        .unwrap();
    let telemetry = Telemetry::builder()
        .service_name("own-subscriber")
        .tracing_subscriber(false)
        .init()
        .unwrap();
    let before = SEEN.load(Ordering::SeqCst);
    tracing::info_span!("not bridged").in_scope(|| tracing::info!("the application's event"));
    assert_eq!(SEEN.load(Ordering::SeqCst), before + 1);
    let provider = telemetry.tracer_provider().unwrap().clone();
    provider.tracer("app").in_span("made directly", |_| {});
    telemetry.shutdown().unwrap();
    // The pipeline works, but nothing of `tracing` was bridged into it.
    let spans: Vec<String> = receiver.spans().into_iter().map(|s| s.span.name).collect();
    assert_eq!(spans, ["made directly"]);
    assert!(
        receiver.logs().is_empty(),
        "{} log records",
        receiver.logs().len()
    );
}

#[test]
fn host_metrics_false_in_code_turns_the_host_and_process_metrics_off() {
    let (_runtime, receiver) = receiver_on_its_own_runtime(ReceiverOptions::default());
    export_only_at_shutdown(&receiver);
    // The variable says on; the builder says off.
    set_env(&[("OTEL_MONITOR_HOST_METRICS", "true")]);
    for (service, host_metrics) in [("default", None), ("off", Some(false))] {
        let mut builder = Telemetry::builder()
            .service_name(service)
            .tracing_subscriber(false);
        if let Some(enabled) = host_metrics {
            builder = builder.host_metrics(enabled);
        }
        let telemetry = builder.init().unwrap();
        global::meter("app")
            .u64_counter("app.counter")
            .build()
            .add(1, &[]);
        telemetry.shutdown().unwrap();
        let names: Vec<String> = receiver
            .metrics()
            .into_iter()
            .filter(|metric| support::attr_str(&metric.resource, "service.name") == Some(service))
            .map(|metric| metric.metric.name)
            .collect();
        assert!(names.iter().any(|name| name == "app.counter"), "{names:?}");
        let host: Vec<&String> = names
            .iter()
            .filter(|name| name.starts_with("system.") || name.starts_with("process."))
            .collect();
        match host_metrics {
            None => assert!(
                host.iter().any(|name| *name == "system.memory.usage"),
                "on by default: {names:?}"
            ),
            Some(_) => assert!(host.is_empty(), "{host:?}"),
        }
    }
}

/// Sends one span through `builder` (traces only, no subscriber) and shuts down.
fn one_span_through(builder: otel_monitor::TelemetryBuilder) {
    let telemetry = builder
        .metrics_exporters([])
        .logs_exporters([])
        .tracing_subscriber(false)
        .init()
        .unwrap();
    let provider = telemetry.tracer_provider().unwrap().clone();
    provider
        .tracer("app")
        .in_span("over the builder's transport", |_| {});
    telemetry.shutdown().unwrap();
}

#[test]
fn otlp_certificate_in_code_trusts_that_ca() {
    let pki = TestPki::generate();
    let (_runtime, receiver) = receiver_on_its_own_runtime(ReceiverOptions {
        tls: Some(pki.server_tls()),
        ..ReceiverOptions::default()
    });
    set_env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint())]);
    one_span_through(Telemetry::builder().otlp_certificate(pki.ca_path()));
    let spans: Vec<String> = receiver.spans().into_iter().map(|s| s.span.name).collect();
    assert_eq!(spans, ["over the builder's transport"]);
    assert_eq!(receiver.failed_handshakes(), 0);
}

#[test]
fn otlp_client_identity_in_code_is_presented_for_mutual_tls() {
    let pki = TestPki::generate();
    let (_runtime, receiver) = receiver_on_its_own_runtime(ReceiverOptions {
        tls: Some(pki.mutual_server_tls()),
        ..ReceiverOptions::default()
    });
    set_env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.grpc_endpoint()),
    ]);
    one_span_through(
        Telemetry::builder()
            .otlp_certificate(pki.ca_path())
            .otlp_client_identity(pki.client_cert_path(), pki.client_key_path()),
    );
    let spans: Vec<String> = receiver.spans().into_iter().map(|s| s.span.name).collect();
    assert_eq!(spans, ["over the builder's transport"]);
    assert_eq!(receiver.failed_handshakes(), 0);
}

#[test]
fn otlp_insecure_in_code_sends_plain_text_to_a_grpc_endpoint_without_scheme() {
    let (_runtime, receiver) = receiver_on_its_own_runtime(ReceiverOptions::default());
    let without_scheme = receiver.grpc_endpoint().replace("http://", "");
    set_env(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &without_scheme),
        // The variable says TLS; the builder wins.
        ("OTEL_EXPORTER_OTLP_INSECURE", "false"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "1000"),
    ]);
    one_span_through(Telemetry::builder().otlp_insecure(true));
    let spans: Vec<String> = receiver.spans().into_iter().map(|s| s.span.name).collect();
    assert_eq!(spans, ["over the builder's transport"]);
}
