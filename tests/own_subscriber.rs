//! Applications with a `tracing` setup of their own: layers below `MonitorLayer` (tower-http's
//! `TraceLayer`, custom middleware) join the request's trace; a subscriber the application
//! builds itself, with `Telemetry::tracing_layer`, exports log records and `#[instrument]` spans
//! through the collector; `RUST_LOG` quiets the console without taking anything out of the
//! telemetry; the crate reports the layer's spans and metrics under one instrumentation scope.

mod support;

use std::time::Duration;

use axum::{Router, body::Body, routing::get};
use http::Request;
use http_body_util::BodyExt as _;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use otel_monitor::{MonitorLayer, Telemetry};
use support::{
    ExampleService, OtlpReceiver, ReceivedLog, ReceivedScope, ReceivedSpan, Rotel,
    client::get as http_get,
    example::{Example, SERVICE},
};
use tower::{ServiceBuilder, ServiceExt as _, util::MapRequestLayer};
use tower_http::trace::TraceLayer;
use tracing_subscriber::{layer::SubscriberExt as _, util::SubscriberInitExt as _};

const DEADLINE: Duration = Duration::from_secs(15);

/// `examples/own_subscriber.rs`: the crate's layers in the application's own subscriber.
const OWN_SUBSCRIBER: Example<'static> = Example {
    name: "own_subscriber",
    args: &[],
};

/// Sets environment variables for `Telemetry::init` in this test's own process.
fn set_env(vars: &[(&str, &str)]) {
    for (name, value) in vars {
        // SAFETY: the test runs alone in its process (cargo-nextest); the only other threads
        // are the receiver's, which read no environment.
        unsafe { std::env::set_var(name, value) };
    }
}

/// The pipeline of this process, exporting to `receiver`, with the crate's layers in a
/// subscriber built here, as an application builds its own.
fn telemetry_into(receiver: &OtlpReceiver, env: &[(&str, &str)]) -> Telemetry {
    set_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("OTEL_SERVICE_NAME", "own-subscriber"),
    ]);
    set_env(env);
    let telemetry = Telemetry::builder()
        .tracing_subscriber(false)
        .init()
        .unwrap();
    tracing_subscriber::registry()
        .with(telemetry.tracing_layer())
        .init();
    telemetry
}

/// Sends `GET path` through `app` and reads the whole response.
async fn send(app: &Router, path: &str) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    response.into_body().collect().await.unwrap();
}

fn is_server(span: &ReceivedSpan) -> bool {
    span.span.kind() == SpanKind::Server
}

/// tower-http's `TraceLayer` makes its span in `call()`, and the custom middleware logs there,
/// before the inner service runs: requests through `app` give one trace each, the SERVER span
/// with `TraceLayer`'s span as its child, and the middleware's event in the SERVER span.
fn trace_layer_and_middleware_join_the_request_trace(app: impl FnOnce(MonitorLayer) -> Router) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(OtlpReceiver::start());
    // TraceLayer's spans are DEBUG; the export filter takes them.
    let telemetry = telemetry_into(
        &receiver,
        &[
            ("OTEL_MONITOR_EXPORT_FILTER", "info,tower_http=debug"),
            ("OTEL_MONITOR_HOST_METRICS", "false"),
        ],
    );
    let app = app(MonitorLayer::new());
    runtime.block_on(async {
        send(&app, "/users/1").await;
        send(&app, "/users/2").await;
    });
    telemetry.shutdown().unwrap();

    // Shut down: everything that was going to be exported has been sent.
    let spans = support::wait_for_blocking("four spans", DEADLINE, || {
        let spans = receiver.spans();
        (spans.len() >= 4).then_some(spans)
    });
    let logs = receiver.logs();
    let servers: Vec<&ReceivedSpan> = spans.iter().filter(|span| is_server(span)).collect();
    assert_eq!(servers.len(), 2, "{spans:#?}");
    let mut traces: Vec<String> = spans.iter().map(ReceivedSpan::trace_id_hex).collect();
    traces.sort_unstable();
    traces.dedup();
    assert_eq!(traces.len(), 2, "one trace per request: {spans:#?}");
    for server in servers {
        let children: Vec<&ReceivedSpan> = spans
            .iter()
            .filter(|span| span.parent_span_id_hex() == server.span_id_hex())
            .collect();
        assert_eq!(children.len(), 1, "{spans:#?}");
        let trace_layer = children[0];
        assert_eq!(trace_layer.span.name, "request");
        assert_eq!(trace_layer.scope_name, "otel-monitor/tracing");
        assert_eq!(trace_layer.trace_id_hex(), server.trace_id_hex());

        let path = server.attr_str("url.path").unwrap();
        let logged = logs
            .iter()
            .find(|log| {
                log.body_str() == Some("middleware call") && log.attr_str("url.path") == Some(path)
            })
            .unwrap_or_else(|| panic!("the middleware's event of {path}: {logs:#?}"));
        assert_eq!(logged.trace_id_hex(), server.trace_id_hex());
        assert_eq!(logged.span_id_hex(), server.span_id_hex());
    }
}

/// Custom middleware's work in its `call()`.
fn log_in_call<B>(request: Request<B>) -> Request<B> {
    tracing::info!(url.path = request.uri().path(), "middleware call");
    request
}

#[test]
fn trace_layer_and_middleware_in_one_service_builder_under_monitor_layer_join_the_request_trace() {
    // One stack: each layer's `call()` runs inside the one above's.
    trace_layer_and_middleware_join_the_request_trace(|monitor| {
        Router::new()
            .route("/users/{id}", get(|| async { "user" }))
            .layer(
                ServiceBuilder::new()
                    .layer(monitor)
                    .layer(MapRequestLayer::new(log_in_call))
                    .layer(TraceLayer::new_for_http()),
            )
    });
}

#[test]
fn trace_layer_and_middleware_as_router_layers_under_monitor_layer_join_the_request_trace() {
    // Each `Router::layer` boxes the route again; axum calls the inner route when its future is
    // first polled, inside the context the response future attaches. So this form passes even
    // without the context attached during `call()` (the test above is the one that fails then):
    // it keeps the usual way of stacking layers on a router from regressing.
    trace_layer_and_middleware_join_the_request_trace(|monitor| {
        Router::new()
            .route("/users/{id}", get(|| async { "user" }))
            .layer(TraceLayer::new_for_http())
            .layer(MapRequestLayer::new(log_in_call))
            .layer(monitor)
    });
}

#[test]
fn the_layers_spans_and_metrics_and_the_host_metrics_share_one_scope() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(OtlpReceiver::start());
    let telemetry = telemetry_into(
        &receiver,
        &[
            ("OTEL_MONITOR_HOST_METRICS_GROUPS", "process"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ],
    );
    let app = Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(MonitorLayer::new());
    runtime.block_on(send(&app, "/"));
    support::wait_for_blocking("the host metrics", DEADLINE, || {
        receiver.latest_metric("process.thread.count")
    });
    telemetry.shutdown().unwrap();

    let spans = receiver.spans();
    let metrics = receiver.metrics();
    let server = spans.iter().find(|span| is_server(span)).unwrap();
    let scope_of_metric = |name: &str| {
        metrics
            .iter()
            .find(|metric| metric.metric.name == name)
            .unwrap_or_else(|| panic!("{name}"))
            .scope_name
            .clone()
    };
    assert_eq!(server.scope_name, "otel-monitor");
    assert_eq!(
        scope_of_metric("http.server.request.duration"),
        "otel-monitor"
    );
    assert_eq!(scope_of_metric("process.thread.count"), "otel-monitor");
    let ours: Vec<ReceivedScope> = receiver
        .scopes()
        .into_iter()
        .filter(|scope| scope.name == "otel-monitor")
        .collect();
    let expected = |signal| ReceivedScope {
        signal,
        name: "otel-monitor".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        schema_url: otel_monitor::opentelemetry_semantic_conventions::SCHEMA_URL.to_owned(),
    };
    assert_eq!(ours, [expected("traces"), expected("metrics")]);
}

/// Waits for the `#[instrument]` span `name`, a child of the request's SERVER span, and for the
/// INFO log record `record` picks, in that request's trace, arrived through the collector.
async fn instrumented_span_and_record_of_one_request(
    receiver: &OtlpReceiver,
    name: &str,
    record: impl Fn(&ReceivedLog) -> bool,
) -> (ReceivedSpan, ReceivedLog) {
    let spans = receiver
        .wait_for_spans("the request and its instrumented span", DEADLINE, |spans| {
            spans.iter().any(is_server) && spans.iter().any(|span| span.span.name == name)
        })
        .await;
    let logs = receiver
        .wait_for_logs("the handler's INFO record", DEADLINE, |logs| {
            logs.iter().any(&record)
        })
        .await;
    let server = spans.iter().find(|span| is_server(span)).unwrap();
    let instrumented = spans.iter().find(|span| span.span.name == name).unwrap();
    assert_eq!(instrumented.trace_id_hex(), server.trace_id_hex());
    assert_eq!(instrumented.parent_span_id_hex(), server.span_id_hex());
    let record = logs.iter().find(|log| record(log)).unwrap();
    assert_eq!(record.record.severity_text, "INFO");
    assert_eq!(record.trace_id_hex(), server.trace_id_hex());
    (instrumented.clone(), record.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_built_subscriber_exports_records_and_instrument_spans_through_the_collector() {
    let receiver = OtlpReceiver::start().await;
    let rotel = Rotel::start_forwarding_to(&receiver.grpc_endpoint());
    let service = ExampleService::start_example(
        OWN_SUBSCRIBER,
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &rotel.http_endpoint())],
    );
    let (status, _, _) = http_get(&service.url("/orders/7"), &[]).await;
    assert_eq!(status, http::StatusCode::OK);

    let (span, record) =
        instrumented_span_and_record_of_one_request(&receiver, "load_order", looking_the_order_up)
            .await;
    assert_eq!(span.scope_name, "otel-monitor/tracing");
    assert_eq!(
        span.resource_str("service.name"),
        Some("own-subscriber-example")
    );
    assert_eq!(record.scope_name, "own_subscriber", "the event's target");
    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    assert!(
        exit.output
            .lines()
            .any(|line| line.contains("INFO") && line.contains("looking the order up")),
        "the application's own console, at RUST_LOG=info:\n{}",
        exit.output
    );
}

fn looking_the_order_up(log: &ReceivedLog) -> bool {
    log.body_str() == Some("looking the order up")
}

/// Runs `example` with `RUST_LOG=warn`, through rotel to a receiver; `GET path` makes the
/// `#[instrument]` span `span` and the INFO record `record` picks.
async fn rust_log_warn_keeps_spans_and_info_records(
    example: Example<'static>,
    path: &str,
    span: &str,
    record: impl Fn(&ReceivedLog) -> bool,
) {
    let receiver = OtlpReceiver::start().await;
    let rotel = Rotel::start_forwarding_to(&receiver.grpc_endpoint());
    let service = ExampleService::start_example(
        example,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &rotel.http_endpoint()),
            ("RUST_LOG", "warn"),
        ],
    );
    http_get(&service.url(path), &[]).await;
    instrumented_span_and_record_of_one_request(&receiver, span, record).await;
    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    assert!(
        !exit.output.contains("INFO"),
        "RUST_LOG=warn: no INFO line on the console:\n{}",
        exit.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_warn_quiets_the_crates_console_and_keeps_spans_and_info_records() {
    // The service's access log: INFO records of the target `otel_monitor::access`.
    rust_log_warn_keeps_spans_and_info_records(SERVICE, "/users/7", "load_user", |log| {
        log.scope_name == "otel_monitor::access" && log.attr_str("url.path") == Some("/users/7")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_warn_quiets_an_app_built_console_and_keeps_spans_and_info_records() {
    rust_log_warn_keeps_spans_and_info_records(
        OWN_SUBSCRIBER,
        "/orders/7",
        "load_order",
        looking_the_order_up,
    )
    .await;
}
