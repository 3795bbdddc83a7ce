//! Applications with a `tracing` setup of their own: a subscriber the application builds
//! itself, with `Telemetry::tracing_layer`, exports log records and `#[instrument]` spans
//! through the collector; `RUST_LOG` quiets the console without taking anything out of the
//! telemetry.

mod support;

use std::time::Duration;

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use support::{
    ExampleService, OtlpReceiver, ReceivedLog, ReceivedSpan, Rotel,
    client::get as http_get,
    example::{Example, SERVICE},
};

const DEADLINE: Duration = Duration::from_secs(15);

/// `examples/own_subscriber.rs`: the crate's layers in the application's own subscriber.
const OWN_SUBSCRIBER: Example<'static> = Example {
    name: "own_subscriber",
    args: &[],
};

fn is_server(span: &ReceivedSpan) -> bool {
    span.span.kind() == SpanKind::Server
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
