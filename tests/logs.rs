//! Logs as a user sees them: `tracing` events of the example service arrive as OpenTelemetry log
//! records tied to the request's trace, and print as readable console lines.

mod support;

use std::time::Duration;

use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use support::{ExampleService, OtlpReceiver, ReceivedLog, client::get};

const DEADLINE: Duration = Duration::from_secs(10);

fn attribute<'a>(log: &'a ReceivedLog, key: &str) -> Option<&'a AnyValue> {
    support::attr(&log.record.attributes, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_events_become_log_records_in_the_request_trace() {
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("OTEL_SERVICE_NAME", "checkout"),
    ]);
    get(&service.url("/users/abc"), &[]).await;
    get(&service.url("/error"), &[]).await;

    let spans = receiver
        .wait_for_spans("both request spans", DEADLINE, |spans| spans.len() >= 2)
        .await;
    let logs = receiver
        .wait_for_logs("the warning and the error", DEADLINE, |logs| {
            logs.iter().any(|log| log.record.severity_text == "WARN")
                && logs.iter().any(|log| log.record.severity_text == "ERROR")
        })
        .await;
    let span_of = |path: &str| {
        spans
            .iter()
            .find(|span| span.attr_str("url.path") == Some(path))
            .unwrap()
    };

    let warning = logs
        .iter()
        .find(|log| log.body_str() == Some("the user id is not a number"))
        .expect("the handler's warning");
    assert_eq!(warning.record.severity_text, "WARN");
    assert_eq!(warning.record.severity_number, 13);
    assert_eq!(
        attribute(warning, "user.id"),
        Some(&AnyValue::StringValue("abc".to_owned()))
    );
    assert_eq!(warning.trace_id_hex(), span_of("/users/abc").trace_id_hex());
    assert_eq!(warning.span_id_hex(), span_of("/users/abc").span_id_hex());
    assert_eq!(
        support::attr_str(&warning.resource, "service.name"),
        Some("checkout")
    );

    let error = logs
        .iter()
        .find(|log| log.body_str() == Some("An error occurred"))
        .expect("the handler's error");
    assert_eq!(error.record.severity_number, 17);
    assert_eq!(error.trace_id_hex(), span_of("/error").trace_id_hex());

    let started = logs
        .iter()
        .find(|log| log.body_str() == Some("Application started"))
        .expect("the start-up line");
    assert_eq!(started.record.severity_number, 9);
    assert!(
        matches!(attribute(started, "memory.total_mib"), Some(AnyValue::IntValue(total)) if *total > 0),
        "{:?}",
        started.record.attributes
    );
    assert!(started.trace_id_hex().chars().all(|c| c == '0') || started.record.trace_id.is_empty());

    let exit = service.stop();
    assert!(exit.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_lines_show_time_level_target_message_fields_and_trace_id() {
    let receiver = OtlpReceiver::start().await;
    let service =
        ExampleService::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint())]);
    get(&service.url("/users/abc"), &[]).await;
    let spans = receiver
        .wait_for_spans("the request span", DEADLINE, |spans| !spans.is_empty())
        .await;
    let exit = service.stop();

    let warning = exit
        .output
        .lines()
        .find(|line| line.contains("the user id is not a number"))
        .expect("the warning on the console");
    // 2026-11-24T10:00:00.123456Z  WARN service: the user id is not a number user.id=abc trace_id=...
    let (time, rest) = warning.split_once(' ').unwrap();
    assert!(
        time.len() == 27 && time.ends_with('Z') && time.as_bytes()[10] == b'T',
        "an RFC 3339 UTC time with microseconds: {time}"
    );
    assert_eq!(
        rest,
        format!(
            " WARN service: the user id is not a number user.id=abc trace_id={}",
            spans[0].trace_id_hex()
        )
    );
    let started = exit
        .output
        .lines()
        .find(|line| line.contains("Application started"))
        .unwrap();
    assert!(
        started.contains("  INFO service: Application started memory.total_mib="),
        "{started}"
    );
    assert!(
        !started.contains("trace_id="),
        "not inside a request: {started}"
    );
    assert!(exit.output.contains("INFO service: Application finished"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_log_has_one_event_per_request_in_its_trace() {
    let receiver = OtlpReceiver::start().await;
    let service =
        ExampleService::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint())]);
    get(&service.url("/users/9"), &[]).await;
    get(&service.url("/nowhere"), &[]).await;
    let spans = receiver
        .wait_for_spans("two request spans", DEADLINE, |spans| {
            spans
                .iter()
                .filter(|span| span.scope_name == "otel-monitor")
                .count()
                >= 2
        })
        .await;
    let logs = receiver
        .wait_for_logs("two access log records", DEADLINE, |logs| {
            logs.iter()
                .filter(|log| log.scope_name == "otel_monitor::access")
                .count()
                >= 2
        })
        .await;
    let access: Vec<_> = logs
        .iter()
        .filter(|log| log.scope_name == "otel_monitor::access")
        .collect();
    assert_eq!(access.len(), 2);

    let user = access
        .iter()
        .find(|log| log.attr_str("url.path") == Some("/users/9"))
        .unwrap();
    let user_span = spans
        .iter()
        .find(|span| span.attr_str("url.path") == Some("/users/9"))
        .unwrap();
    assert_eq!(user.record.severity_number, 9);
    assert_eq!(user.attr_str("http.request.method"), Some("GET"));
    assert_eq!(user.attr_str("http.route"), Some("/users/{id}"));
    assert_eq!(
        attribute(user, "http.response.status_code"),
        Some(&AnyValue::IntValue(200))
    );
    assert!(
        matches!(attribute(user, "http.server.request.duration"), Some(AnyValue::DoubleValue(seconds)) if *seconds > 0.0)
    );
    assert_eq!(user.trace_id_hex(), user_span.trace_id_hex());
    assert_eq!(user.span_id_hex(), user_span.span_id_hex());

    let unmatched = access
        .iter()
        .find(|log| log.attr_str("url.path") == Some("/nowhere"))
        .unwrap();
    assert_eq!(unmatched.attr_str("http.route"), None);
    assert_eq!(
        attribute(unmatched, "http.response.status_code"),
        Some(&AnyValue::IntValue(404))
    );
    assert!(service.stop().status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_logs_exporter_none_turns_logs_off_and_leaves_traces_on() {
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("OTEL_LOGS_EXPORTER", "none"),
    ]);
    get(&service.url("/users/abc"), &[]).await;
    let exit = service.stop();
    assert!(exit.status.success());
    assert!(
        exit.output.contains("the user id is not a number"),
        "still on the console"
    );
    // The process flushed and exited: what it was going to send has arrived.
    assert!(!receiver.spans().is_empty());
    assert!(receiver.logs().is_empty(), "{:?}", receiver.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_does_not_log_about_itself_into_itself() {
    // At debug level the gRPC client (tonic, h2, hyper, tower) logs about every export it makes,
    // partly on the service's own Tokio threads; none of it may become telemetry.
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.grpc_endpoint()),
        ("RUST_LOG", "debug"),
    ]);
    get(&service.url("/users/1"), &[]).await;
    receiver
        .wait_for_logs("the access log record", DEADLINE, |logs| {
            logs.iter()
                .any(|log| log.scope_name == "otel_monitor::access")
        })
        .await;
    let exit = service.stop();
    assert!(exit.status.success());
    assert!(
        exit.output.contains("DEBUG h2") || exit.output.contains("DEBUG hyper"),
        "the export machinery did log on the console:\n{}",
        exit.output
    );
    let machinery = [
        "opentelemetry",
        "otel_monitor::export",
        "h2",
        "hyper",
        "tonic",
        "tower",
    ];
    for log in receiver.logs() {
        assert!(
            !machinery
                .iter()
                .any(|target| log.scope_name.starts_with(target)),
            "the export machinery logged into the pipeline: {log:?}"
        );
    }
    for span in receiver.spans() {
        assert!(
            span.scope_name == "otel-monitor" || span.span.name == "load_user",
            "a span of the export machinery: {}",
            span.span.name
        );
    }
}
