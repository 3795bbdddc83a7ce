//! The gRPC example (`examples/grpc.rs`) run as a user runs it, exporting through a real
//! collector (rotel) to a receiver: each call arrives as one trace, the client's CLIENT span the
//! parent of the server's SERVER span, both with the RPC conventions' attributes (v1.44.0) and
//! the status rules of their side, with `rpc.client.call.duration` and
//! `rpc.server.call.duration`; the log records of the handler carry the calls' trace ids.

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
        .wait_for_spans(
            "the five calls' client and server spans",
            DEADLINE,
            |spans| spans.len() >= 10,
        )
        .await;
    assert_eq!(spans.len(), 10);
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

    // Each server span's parent: the client span of its call, in the same trace, which fails
    // for every code but OK.
    let port = servers[0].attr_int("server.port").expect("server.port");
    for server in &servers {
        let client = spans
            .iter()
            .find(|span| span.span_id_hex() == server.parent_span_id_hex())
            .unwrap_or_else(|| panic!("no parent of {server:#?}"));
        assert_eq!(client.span.kind(), SpanKind::Client);
        assert_eq!(client.trace_id_hex(), server.trace_id_hex());
        assert_eq!(
            client.parent_span_id_hex(),
            "",
            "the call is the trace's root"
        );
        assert_eq!(client.span.name, "greeter.Greeter/SayHello");
        assert_eq!(client.attr_str("rpc.system.name"), Some("grpc"));
        assert_eq!(
            client.attr_str("rpc.method"),
            Some("greeter.Greeter/SayHello")
        );
        assert_eq!(client.attr_str("server.address"), Some("127.0.0.1"));
        assert_eq!(client.attr_int("server.port"), Some(port));
        let code = server.attr_str("rpc.response.status_code");
        assert_eq!(client.attr_str("rpc.response.status_code"), code);
        let failed = code != Some("OK");
        assert_eq!(client.attr_str("error.type"), code.filter(|_| failed));
        let status = if failed {
            SpanStatus::Error
        } else {
            SpanStatus::Unset
        };
        assert_eq!(status_of(client), status, "{client:#?}");
    }

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

    // The server's duration has no server.address (opt-in there); the client's has it.
    let server = durations(&receiver, "rpc.server.call.duration", None).await;
    assert_eq!(
        server,
        owned(&[
            (Some("INTERNAL"), Some("INTERNAL"), 1),
            (Some("INVALID_ARGUMENT"), None, 1),
            (Some("OK"), None, 3),
        ])
    );
    let client = durations(&receiver, "rpc.client.call.duration", Some(port)).await;
    assert_eq!(
        client,
        owned(&[
            (Some("INTERNAL"), Some("INTERNAL"), 1),
            (Some("INVALID_ARGUMENT"), Some("INVALID_ARGUMENT"), 1),
            (Some("OK"), None, 3),
        ])
    );
}

/// (status code, error type, count) triples, owned.
fn owned(
    points: &[(Option<&str>, Option<&str>, u64)],
) -> Vec<(Option<String>, Option<String>, u64)> {
    points
        .iter()
        .map(|(code, error, count)| (code.map(str::to_owned), error.map(str::to_owned), *count))
        .collect()
}

/// The points of the call duration `name` as (status code, error type, count), sorted, once it
/// arrived; each with `rpc.system.name` and `rpc.method`, and `server.address` and
/// `server.port` when `port` is given, none otherwise.
async fn durations(
    receiver: &OtlpReceiver,
    name: &str,
    port: Option<i64>,
) -> Vec<(Option<String>, Option<String>, u64)> {
    let duration = receiver.wait_for_metric(name, DEADLINE).await;
    assert_eq!(duration.metric.unit, "s");
    let Some(Data::Histogram(histogram)) = &duration.metric.data else {
        panic!("not a histogram: {:?}", duration.metric);
    };
    let mut points: Vec<_> = histogram
        .data_points
        .iter()
        .map(|point| {
            let attribute = |key: &str| support::attr_str(&point.attributes, key);
            assert_eq!(attribute("rpc.system.name"), Some("grpc"));
            assert_eq!(attribute("rpc.method"), Some("greeter.Greeter/SayHello"));
            assert_eq!(
                attribute("server.address"),
                port.map(|_| "127.0.0.1"),
                "{name}"
            );
            assert_eq!(support::attr_int(&point.attributes, "server.port"), port);
            (
                attribute("rpc.response.status_code").map(str::to_owned),
                attribute("error.type").map(str::to_owned),
                point.count,
            )
        })
        .collect();
    points.sort();
    points
}
