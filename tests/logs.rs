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
    assert_eq!(user.attr_str("client.address"), Some("127.0.0.1"));
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
        ("OTEL_MONITOR_EXPORT_FILTER", "debug"),
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_log_filters_the_console_and_the_export_filter_the_log_records() {
    // The access log is INFO under `otel_monitor::access`: below `RUST_LOG`'s `warn`, so not on
    // the console, and turned off by the export filter, so not a log record. The service's own
    // INFO and WARN events pass both.
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("RUST_LOG", "warn,service=info"),
        (
            "OTEL_MONITOR_EXPORT_FILTER",
            "info,otel_monitor::access=off",
        ),
    ]);
    let (status, _, _) = get(&service.url("/users/abc"), &[]).await;
    assert_eq!(status, http::StatusCode::BAD_REQUEST);
    // Stopping flushes the log records: what was going to be exported has arrived.
    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");

    let records = receiver
        .wait_for_logs("the warning", DEADLINE, |logs| {
            logs.iter()
                .any(|log| log.body_str() == Some("the user id is not a number"))
        })
        .await;
    let bodies: Vec<&str> = records.iter().filter_map(ReceivedLog::body_str).collect();
    for above in ["the user id is not a number", "Application started"] {
        assert!(
            exit.output.contains(above),
            "{above:?} passes RUST_LOG, on the console:\n{}",
            exit.output
        );
        assert!(
            bodies.contains(&above),
            "{above:?} passes the export filter, as a log record: {bodies:?}"
        );
    }
    assert!(
        !exit.output.contains("otel_monitor::access"),
        "the access log is below RUST_LOG, not on the console:\n{}",
        exit.output
    );
    assert!(
        !records
            .iter()
            .any(|log| log.scope_name == "otel_monitor::access"),
        "the access log is off in the export filter, not a log record: {records:?}"
    );
}

/// Sets environment variables for `Telemetry::init` in this test's own process.
fn set_env(vars: &[(&str, &str)]) {
    for (name, value) in vars {
        // SAFETY: the test runs alone in its process (cargo-nextest); the only other threads
        // are the receiver's, which read no environment.
        unsafe { std::env::set_var(name, value) };
    }
}

#[test]
fn debug_events_become_severity_5_when_the_export_filter_allows_them_and_trace_events_do_not_pass()
{
    // The receiver serves on a runtime of its own; `Telemetry` lives on this thread, as in a
    // service's `main`.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(OtlpReceiver::start());
    set_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("OTEL_MONITOR_EXPORT_FILTER", "warn,logs=debug"),
    ]);
    let telemetry = otel_monitor::Telemetry::builder()
        .service_name("severity")
        .host_metrics(false)
        .traces_exporters([])
        .metrics_exporters([])
        .init()
        .unwrap();
    tracing::trace!("a trace event, below debug");
    tracing::debug!(answer = 42, "a debug event");
    tracing::info!(target: "elsewhere", "an info event of a target held at warn");
    tracing::warn!(target: "elsewhere", "a warning of that target");
    telemetry.shutdown().unwrap();

    // Shut down: everything that was going to be exported has been sent; the last event marks
    // that it has arrived.
    let records = support::wait_for_blocking("the last warning", DEADLINE, || {
        let logs = receiver.logs();
        logs.iter()
            .any(|log| log.body_str() == Some("a warning of that target"))
            .then_some(logs)
    });
    // Grouped by scope (the target) in the export: compared in order of their bodies.
    let mut summary: Vec<(&str, &str, i32)> = records
        .iter()
        .map(|log| {
            (
                log.body_str().unwrap_or_default(),
                log.record.severity_text.as_str(),
                log.record.severity_number,
            )
        })
        .collect();
    summary.sort_unstable();
    assert_eq!(
        summary,
        [
            ("a debug event", "DEBUG", 5),
            ("a warning of that target", "WARN", 13),
        ]
    );
    let debug = records
        .iter()
        .find(|log| log.record.severity_number == 5)
        .unwrap();
    assert_eq!(debug.scope_name, "logs");
    assert_eq!(attribute(debug, "answer"), Some(&AnyValue::IntValue(42)));
}
