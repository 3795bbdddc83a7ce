//! Through a real OpenTelemetry collector: the example service exports to rotel, which forwards
//! with its own OTLP exporter to a receiver. What the backend would get (spans, metrics and log
//! records) must arrive intact.

mod support;

use std::time::Duration;

use opentelemetry_proto::tonic::{
    metrics::v1::metric::Data,
    trace::v1::{span::SpanKind, status::StatusCode as SpanStatus},
};
use support::{ExampleService, OtlpReceiver, Rotel, client::get};

const DEADLINE: Duration = Duration::from_secs(15);

/// Sends requests through `protocol` to rotel and checks what rotel forwarded.
async fn telemetry_passes_through_rotel(protocol: &str) {
    let receiver = OtlpReceiver::start().await;
    let rotel = Rotel::start_forwarding_to(&receiver.grpc_endpoint());
    let endpoint = rotel.endpoint(protocol);
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_SERVICE_NAME", "through-rotel"),
    ]);

    get(&service.url("/users/5"), &[]).await;
    get(&service.url("/error"), &[]).await;
    get(&service.url("/users/abc"), &[]).await;

    let spans = receiver
        .wait_for_spans("four spans forwarded by rotel", DEADLINE, |spans| {
            spans.len() >= 4
        })
        .await;
    let user = support::span_named(&spans, "GET /users/{id}");
    assert_eq!(user.span.kind(), SpanKind::Server);
    assert_eq!(user.resource_str("service.name"), Some("through-rotel"));
    assert_eq!(user.scope_name, "otel-monitor");
    assert_eq!(user.attr_str("http.route"), Some("/users/{id}"));
    assert_eq!(user.attr_str("url.path"), Some("/users/5"));
    assert_eq!(user.attr_int("http.response.status_code"), Some(200));
    let child = support::span_named(&spans, "load_user");
    assert_eq!(child.parent_span_id_hex(), user.span_id_hex());
    assert_eq!(child.trace_id_hex(), user.trace_id_hex());

    let error = support::span_named(&spans, "GET /error");
    assert_eq!(error.attr_int("http.response.status_code"), Some(500));
    assert_eq!(error.attr_str("error.type"), Some("500"));
    assert_eq!(
        error.span.status.as_ref().map(|status| status.code()),
        Some(SpanStatus::Error)
    );

    let duration = receiver
        .wait_for_metric("http.server.request.duration", DEADLINE)
        .await;
    assert_eq!(duration.metric.unit, "s");
    assert_eq!(
        support::attr_str(&duration.resource, "service.name"),
        Some("through-rotel")
    );
    let Some(Data::Histogram(histogram)) = &duration.metric.data else {
        panic!("not a histogram: {:?}", duration.metric);
    };
    assert!(histogram.data_points.iter().any(|point| {
        support::attr_str(&point.attributes, "http.route") == Some("/users/{id}")
            && support::attr_int(&point.attributes, "http.response.status_code") == Some(200)
            && point.count == 1
            && point.explicit_bounds.len() == 14
    }));

    // The host and process metrics travel the same way, with their units.
    let host_metrics = [
        ("system.cpu.time", "s"),
        ("system.cpu.utilization", "1"),
        ("system.cpu.logical.count", "{cpu}"),
        ("system.memory.usage", "By"),
        ("system.memory.utilization", "1"),
        ("system.memory.limit", "By"),
        ("system.network.io", "By"),
        ("system.filesystem.usage", "By"),
        ("system.cpu.load_average.1m", "{thread}"),
        ("system.uptime", "s"),
        ("process.cpu.time", "s"),
        ("process.cpu.utilization", "1"),
        ("process.memory.usage", "By"),
        ("process.memory.virtual", "By"),
        ("process.thread.count", "{thread}"),
        ("process.unix.file_descriptor.count", "{file_descriptor}"),
        ("process.uptime", "s"),
    ];
    for (name, unit) in host_metrics {
        let metric = receiver.wait_for_metric(name, DEADLINE).await;
        assert_eq!(metric.metric.unit, unit, "{name}");
        assert_eq!(
            support::attr_str(&metric.resource, "service.name"),
            Some("through-rotel")
        );
    }

    let logs = receiver
        .wait_for_logs("the handler's warning", DEADLINE, |logs| {
            logs.iter()
                .any(|log| log.body_str() == Some("the user id is not a number"))
        })
        .await;
    let warning = logs
        .iter()
        .find(|log| log.body_str() == Some("the user id is not a number"))
        .unwrap();
    let bad_request = spans
        .iter()
        .find(|span| span.attr_str("url.path") == Some("/users/abc"))
        .expect("the bad request's span");
    assert_eq!(warning.record.severity_number, 13);
    assert_eq!(warning.trace_id_hex(), bad_request.trace_id_hex());
    assert_eq!(warning.span_id_hex(), bad_request.span_id_hex());
    assert_eq!(
        support::attr_str(&warning.resource, "service.name"),
        Some("through-rotel")
    );

    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_metrics_and_logs_pass_through_the_collector_over_grpc() {
    telemetry_passes_through_rotel("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_metrics_and_logs_pass_through_the_collector_over_http_protobuf() {
    telemetry_passes_through_rotel("http/protobuf").await;
}
