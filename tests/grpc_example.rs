//! The gRPC example (`examples/grpc.rs`) run as a user runs it, exporting through a real
//! collector (rotel) to a receiver: its tonic server's calls arrive as SERVER spans and
//! `rpc.server.call.duration` of the RPC conventions (v1.44.0), with the status each call ended
//! with, and the log records of its handler carry the calls' trace ids.

mod support;

use std::time::Duration;

use opentelemetry_proto::tonic::{
    metrics::v1::metric::Data,
    trace::v1::{span::SpanKind, status::StatusCode as SpanStatus},
};
use support::{OtlpReceiver, ReceivedSpan, Rotel, example::Example};

const DEADLINE: Duration = Duration::from_secs(15);

/// The example with no arguments: serves, calls itself five times, flushes and exits.
const GRPC: Example<'static> = Example {
    name: "grpc",
    args: &[],
};

fn status_of(span: &ReceivedSpan) -> SpanStatus {
    span.span
        .status
        .as_ref()
        .map_or(SpanStatus::Unset, |status| status.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grpc_example_exports_its_calls_under_the_rpc_conventions_through_a_collector() {
    let receiver = OtlpReceiver::start().await;
    let rotel = Rotel::start_forwarding_to(&receiver.grpc_endpoint());
    let endpoint = rotel.endpoint("http/protobuf");
    let exit = tokio::task::spawn_blocking(move || {
        support::example::run_example_to_exit(
            GRPC,
            &[],
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
                ("OTEL_SERVICE_NAME", "greeter"),
            ],
        )
    })
    .await
    .unwrap();
    assert!(exit.status.success(), "{}", exit.output);

    let spans = receiver
        .wait_for_spans("the five calls' server spans", DEADLINE, |spans| {
            spans
                .iter()
                .filter(|span| span.span.kind() == SpanKind::Server)
                .count()
                >= 5
        })
        .await;
    let servers: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.span.kind() == SpanKind::Server)
        .collect();
    assert_eq!(servers.len(), 5, "{servers:#?}");
    let by_status = |code: &str| {
        servers
            .iter()
            .filter(|span| span.attr_str("rpc.response.status_code") == Some(code))
            .copied()
            .collect::<Vec<_>>()
    };
    for span in &servers {
        assert_eq!(span.span.name, "greeter.Greeter/SayHello");
        assert_eq!(span.resource_str("service.name"), Some("greeter"));
        assert_eq!(span.attr_str("rpc.system.name"), Some("grpc"));
        assert_eq!(
            span.attr_str("rpc.method"),
            Some("greeter.Greeter/SayHello")
        );
        assert_eq!(span.attr_str("server.address"), Some("127.0.0.1"));
    }
    let ok = by_status("OK");
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|span| status_of(span) == SpanStatus::Unset));
    let [invalid] = by_status("INVALID_ARGUMENT")[..] else {
        panic!("one INVALID_ARGUMENT call: {servers:#?}");
    };
    assert_eq!(invalid.attr("error.type"), None);
    assert_eq!(status_of(invalid), SpanStatus::Unset);
    let [internal] = by_status("INTERNAL")[..] else {
        panic!("one INTERNAL call: {servers:#?}");
    };
    assert_eq!(internal.attr_str("error.type"), Some("INTERNAL"));
    assert_eq!(status_of(internal), SpanStatus::Error);

    // The handler's log records, in their calls' traces.
    let logs = receiver
        .wait_for_logs("the three greetings", DEADLINE, |logs| {
            logs.iter()
                .filter(|log| log.body_str() == Some("greeting"))
                .count()
                >= 3
        })
        .await;
    let ok_traces: std::collections::BTreeSet<String> =
        ok.iter().map(|span| span.trace_id_hex()).collect();
    let greeting_traces: std::collections::BTreeSet<String> = logs
        .iter()
        .filter(|log| log.body_str() == Some("greeting"))
        .map(|log| log.trace_id_hex())
        .collect();
    assert_eq!(greeting_traces, ok_traces);

    let duration = receiver
        .wait_for_metric("rpc.server.call.duration", DEADLINE)
        .await;
    assert_eq!(duration.metric.unit, "s");
    let Some(Data::Histogram(histogram)) = &duration.metric.data else {
        panic!("not a histogram: {:?}", duration.metric);
    };
    let mut points: Vec<(Option<&str>, Option<&str>, u64)> = histogram
        .data_points
        .iter()
        .map(|point| {
            assert_eq!(
                support::attr_str(&point.attributes, "rpc.system.name"),
                Some("grpc")
            );
            assert_eq!(
                support::attr_str(&point.attributes, "rpc.method"),
                Some("greeter.Greeter/SayHello")
            );
            (
                support::attr_str(&point.attributes, "rpc.response.status_code"),
                support::attr_str(&point.attributes, "error.type"),
                point.count,
            )
        })
        .collect();
    points.sort();
    assert_eq!(
        points,
        [
            (Some("INTERNAL"), Some("INTERNAL"), 1),
            (Some("INVALID_ARGUMENT"), None, 1),
            (Some("OK"), None, 3),
        ]
    );
}
