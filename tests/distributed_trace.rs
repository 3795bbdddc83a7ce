//! A trace across two processes: two example services (`examples/service.rs`), A calling B
//! through `DOWNSTREAM_URL` and B calling itself, both exporting through a real collector
//! (rotel) to a receiver. The trace tree is rebuilt from what arrives: one trace id, each
//! CLIENT span the parent of the SERVER span of the call it made, the client attributes and
//! `http.client.request.duration`.

mod support;

use std::time::Duration;

use http::StatusCode;
use opentelemetry_proto::tonic::{
    metrics::v1::metric::Data,
    trace::v1::{span::SpanKind, status::StatusCode as SpanStatus},
};
use support::{ExampleService, OtlpReceiver, ReceivedSpan, Rotel, client::get};

const DEADLINE: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_across_two_services_is_one_trace_of_server_and_client_spans() {
    let receiver = OtlpReceiver::start().await;
    let rotel = Rotel::start_forwarding_to(&receiver.grpc_endpoint());
    let endpoint = rotel.endpoint("http/protobuf");
    let b = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_SERVICE_NAME", "chain-b"),
    ]);
    let a = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_SERVICE_NAME", "chain-a"),
        ("DOWNSTREAM_URL", &b.url("")),
    ]);

    // A serves /chain/2 by calling B's /chain/1, which calls B's own /chain/0.
    let (status, _, body) = get(&a.url("/chain/2"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(
        String::from_utf8_lossy(&body),
        format!(
            "chain 2: {} answered 200 OK\nchain 1: {} answered 200 OK\nchain 0: the end\n",
            b.url("/chain/1"),
            b.url("/chain/0"),
        )
    );

    let spans = receiver
        .wait_for_spans("three SERVER and two CLIENT spans", DEADLINE, |spans| {
            spans
                .iter()
                .filter(|span| span.span.name == "GET /chain/{depth}")
                .count()
                >= 5
        })
        .await;
    let server = |service: &str, path: &str| {
        find(&spans, |span| {
            span.span.kind() == SpanKind::Server
                && span.resource_str("service.name") == Some(service)
                && span.attr_str("url.path") == Some(path)
        })
    };
    let client = |service: &str, full: &str| {
        find(&spans, |span| {
            span.span.kind() == SpanKind::Client
                && span.resource_str("service.name") == Some(service)
                && span.attr_str("url.full") == Some(full)
        })
    };
    let a_server = server("chain-a", "/chain/2");
    let a_client = client("chain-a", &b.url("/chain/1"));
    let b_server = server("chain-b", "/chain/1");
    let b_client = client("chain-b", &b.url("/chain/0"));
    let b_end = server("chain-b", "/chain/0");

    // One trace, one tree: SERVER (A) > CLIENT (A) > SERVER (B) > CLIENT (B) > SERVER (B).
    let chain = [a_server, a_client, b_server, b_client, b_end];
    for span in chain {
        assert_eq!(span.trace_id_hex(), a_server.trace_id_hex());
    }
    assert_eq!(
        a_server.parent_span_id_hex(),
        "",
        "the request starts the trace"
    );
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1].parent_span_id_hex(),
            pair[0].span_id_hex(),
            "{} under {}",
            pair[1].span.name,
            pair[0].span.name
        );
    }

    let port = b_server.attr_int("server.port").unwrap();
    assert_eq!(b.url(""), format!("http://127.0.0.1:{port}"));
    for (span, full) in [(a_client, b.url("/chain/1")), (b_client, b.url("/chain/0"))] {
        assert_eq!(span.scope_name, "otel-monitor");
        assert_eq!(span.attr_str("http.request.method"), Some("GET"));
        assert_eq!(span.attr_str("server.address"), Some("127.0.0.1"));
        assert_eq!(span.attr_int("server.port"), Some(port));
        assert_eq!(span.attr_str("url.full"), Some(full.as_str()));
        assert_eq!(span.attr_str("url.template"), Some("/chain/{depth}"));
        assert_eq!(span.attr_int("http.response.status_code"), Some(200));
        assert_eq!(span.attr_str("network.protocol.version"), Some("1.1"));
        assert_ne!(
            span.span.status.as_ref().map(|status| status.code()),
            Some(SpanStatus::Error)
        );
        // The call lasts as long as the server span it made, at least.
        assert!(span.duration() >= b_end.duration());
    }

    // The call's duration, with the conventions' attributes, from A.
    let point = support::wait_for("A's http.client.request.duration", DEADLINE, || {
        receiver
            .metrics()
            .into_iter()
            .rev()
            .filter(|received| {
                received.metric.name == "http.client.request.duration"
                    && support::attr_str(&received.resource, "service.name") == Some("chain-a")
            })
            .find_map(|received| match received.metric.data {
                Some(Data::Histogram(histogram)) => histogram.data_points.into_iter().next(),
                _ => None,
            })
    })
    .await;
    let mut attributes: Vec<String> = point
        .attributes
        .iter()
        .map(|attribute| {
            let value = support::attr_str(std::slice::from_ref(attribute), &attribute.key)
                .map(str::to_owned)
                .or_else(|| {
                    support::attr_int(std::slice::from_ref(attribute), &attribute.key)
                        .map(|value| value.to_string())
                })
                .unwrap();
            format!("{}={value}", attribute.key)
        })
        .collect();
    attributes.sort();
    assert_eq!(
        attributes,
        [
            "http.request.method=GET".to_owned(),
            "http.response.status_code=200".to_owned(),
            "network.protocol.version=1.1".to_owned(),
            "server.address=127.0.0.1".to_owned(),
            format!("server.port={port}"),
            "url.template=/chain/{depth}".to_owned(),
        ]
    );
    assert_eq!(point.count, 1);
    assert_eq!(point.explicit_bounds.len(), 14);
    assert!(point.sum.unwrap_or_default() >= b_end.duration().as_secs_f64());

    drop(a);
    drop(b);
    drop(rotel);
}

fn find(spans: &[ReceivedSpan], pred: impl Fn(&ReceivedSpan) -> bool) -> &ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|span| pred(span)).collect();
    match found[..] {
        [span] => span,
        _ => panic!("{} matching spans among {spans:#?}", found.len()),
    }
}
