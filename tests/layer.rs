//! `MonitorLayer` on a real axum server, exporting through the real OTLP/HTTP exporter to an
//! in-process receiver: what arrives, with which names, attributes and values. Last, the span
//! exporter's own metric, from the example service run as a user runs it.

mod support;

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{StatusCode, header},
    routing::get,
};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::{TracerProvider as _, noop::NoopTracer};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value as AnyValue},
    metrics::v1::{
        AggregationTemporality, HistogramDataPoint, Metric, NumberDataPoint, metric::Data,
        number_data_point,
    },
    trace::v1::{span::SpanKind, status::StatusCode as SpanStatus},
};
use opentelemetry_sdk::{metrics::SdkMeterProvider, trace::SdkTracerProvider};
use otel_monitor::{MonitorLayer, MonitorLayerBuilder};
use support::{ExampleService, OtlpReceiver, ReceivedSpan};
use tokio::io::AsyncWriteExt;

const DEADLINE: Duration = Duration::from_secs(10);

/// An axum app behind `MonitorLayer`, its own tracer and meter providers, and the receiver.
struct Monitored {
    receiver: OtlpReceiver,
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    address: SocketAddr,
}

impl Monitored {
    async fn start(configure: impl FnOnce(MonitorLayerBuilder) -> MonitorLayerBuilder) -> Self {
        let receiver = OtlpReceiver::start().await;
        let endpoint = receiver.http_endpoint();
        let span_exporter = SpanExporter::builder()
            .with_http()
            .with_endpoint(format!("{endpoint}/v1/traces"))
            .build()
            .unwrap();
        let metric_exporter = MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{endpoint}/v1/metrics"))
            .build()
            .unwrap();
        let tracer_provider = SdkTracerProvider::builder()
            .with_batch_exporter(span_exporter)
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_periodic_exporter(metric_exporter)
            .build();
        let layer = configure(
            MonitorLayer::builder()
                .tracer(tracer_provider.tracer("otel-monitor"))
                .meter(meter_provider.meter("otel-monitor"))
                .propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
        )
        .build();

        let app = Router::new()
            .route("/users/{id}", get(|| async { "{\"id\":42}" }))
            .route("/bad", get(|| async { (StatusCode::BAD_REQUEST, "no") }))
            .route(
                "/error",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route("/slow", get(slow))
            .route("/stream", get(stream))
            .route("/sized-stream", get(sized_stream))
            .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
            .route("/health", get(|| async { "ok" }))
            .route(
                "/login",
                get(|| async {
                    (
                        [
                            (header::SET_COOKIE, "session=secret"),
                            (header::HeaderName::from_static("x-kept"), "kept"),
                        ],
                        "welcome",
                    )
                }),
            )
            .route(
                "/echo",
                axum::routing::post(|body: Bytes| async move { body }),
            )
            .layer(layer);
        let address = support::serve(app).await;
        Self {
            receiver,
            tracer_provider,
            meter_provider,
            address,
        }
    }

    async fn get(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, http::HeaderMap, Bytes) {
        support::client::get(&format!("http://{}{path}", self.address), headers).await
    }

    /// Flushes the span processor and waits until `count` spans arrived.
    async fn spans(&self, count: usize) -> Vec<ReceivedSpan> {
        let provider = self.tracer_provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
            .await
            .unwrap();
        self.receiver
            .wait_for_spans(&format!("{count} spans"), DEADLINE, |spans| {
                spans.len() >= count
            })
            .await
    }

    /// Collects and exports the metrics now, and returns the latest export of `name`.
    async fn metric(&self, name: &str) -> opentelemetry_proto::tonic::metrics::v1::Metric {
        let provider = self.meter_provider.clone();
        let exports_before = self.receiver.metrics().len();
        tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
            .await
            .unwrap();
        support::wait_for(&format!("an export of {name}"), DEADLINE, || {
            let metrics = self.receiver.metrics();
            metrics[exports_before.min(metrics.len())..]
                .iter()
                .rev()
                .find(|received| received.metric.name == name)
                .map(|received| received.metric.clone())
        })
        .await
    }

    /// Flushes the metrics until `http.server.active_requests` has exactly the `expected`
    /// points (attribute set, value), and returns that export.
    async fn wait_for_active_requests(&self, expected: &[(&[&str], i64)]) -> Metric {
        let expected: BTreeSet<(BTreeSet<String>, i64)> = expected
            .iter()
            .map(|(attributes, value)| (strings(attributes), *value))
            .collect();
        let what = format!("http.server.active_requests to read {expected:?}");
        support::wait_until(&what, DEADLINE, || async {
            let provider = self.meter_provider.clone();
            tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
                .await
                .unwrap();
            let Some(received) = self.receiver.latest_metric("http.server.active_requests") else {
                return Err("no export yet".to_owned());
            };
            let seen: BTreeSet<(BTreeSet<String>, i64)> = sum(&received.metric)
                .iter()
                .map(|point| (attribute_set(&point.attributes), int_value(point)))
                .collect();
            if seen == expected {
                Ok(received.metric)
            } else {
                Err(format!("{seen:?}"))
            }
        })
        .await
    }
}

#[derive(serde::Deserialize)]
struct Chunks {
    chunks: u64,
    ms: u64,
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(30)).await;
    "late"
}

/// Two chunks of a stream whose length the handler states in `Content-Length`: hyper stops
/// polling the body once that many bytes are out.
async fn sized_stream() -> impl axum::response::IntoResponse {
    let chunks = futures_util::stream::iter(
        ["hello ", "world"]
            .map(|chunk| Ok::<_, std::convert::Infallible>(Bytes::from_static(chunk.as_bytes()))),
    );
    ([(header::CONTENT_LENGTH, "11")], Body::from_stream(chunks))
}

async fn stream(axum::extract::Query(params): axum::extract::Query<Chunks>) -> Body {
    let body = futures_util::stream::unfold(0, move |sent| async move {
        if sent == params.chunks {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(params.ms)).await;
        Some((
            Ok::<_, std::convert::Infallible>(Bytes::from("0123456789")),
            sent + 1,
        ))
    });
    Body::from_stream(body)
}

fn status_of(span: &ReceivedSpan) -> SpanStatus {
    span.span
        .status
        .as_ref()
        .map_or(SpanStatus::Unset, |status| status.code())
}

fn histogram(metric: &opentelemetry_proto::tonic::metrics::v1::Metric) -> &[HistogramDataPoint] {
    match &metric.data {
        Some(Data::Histogram(histogram)) => &histogram.data_points,
        other => panic!("{} is not a histogram: {other:?}", metric.name),
    }
}

fn sum(metric: &opentelemetry_proto::tonic::metrics::v1::Metric) -> &[NumberDataPoint] {
    match &metric.data {
        Some(Data::Sum(sum)) => &sum.data_points,
        other => panic!("{} is not a sum: {other:?}", metric.name),
    }
}

fn int_value(point: &NumberDataPoint) -> i64 {
    match point.value {
        Some(number_data_point::Value::AsInt(value)) => value,
        other => panic!("not an integer point: {other:?}"),
    }
}

/// A point's attributes as `key="string"` or `key=integer`, the exact set to compare.
fn attribute_set(attributes: &[KeyValue]) -> BTreeSet<String> {
    attributes
        .iter()
        .map(|attribute| {
            match attribute
                .value
                .as_ref()
                .and_then(|value| value.value.as_ref())
            {
                Some(AnyValue::StringValue(value)) => format!("{}={value:?}", attribute.key),
                Some(AnyValue::IntValue(value)) => format!("{}={value}", attribute.key),
                other => panic!("{} holds {other:?}", attribute.key),
            }
        })
        .collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// The active-requests attributes of a GET over plain HTTP: the conventions (v1.44) require
/// `http.request.method` and `url.scheme`; `server.address` and `server.port` are opt-in.
const ACTIVE_GET: &[&str] = &[r#"http.request.method="GET""#, r#"url.scheme="http""#];
const ACTIVE_POST: &[&str] = &[r#"http.request.method="POST""#, r#"url.scheme="http""#];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_becomes_a_server_span_with_the_conventions_attributes() {
    let app = Monitored::start(|layer| {
        layer
            .record_request_headers(["x-request-id"])
            .record_response_headers(["content-type"])
    })
    .await;

    let (status, _, _) = app
        .get(
            "/users/42?q=rust&sig=secret",
            &[
                ("user-agent", "otel-monitor-test/1.0"),
                ("x-request-id", "req-1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let spans = app.spans(1).await;
    let span = &spans[0];
    assert_eq!(span.span.name, "GET /users/{id}");
    assert_eq!(span.span.kind(), SpanKind::Server);
    assert_eq!(span.attr_str("http.request.method"), Some("GET"));
    assert_eq!(span.attr_str("url.path"), Some("/users/42"));
    assert_eq!(span.attr_str("url.scheme"), Some("http"));
    assert_eq!(span.attr_str("url.query"), Some("q=rust&sig=REDACTED"));
    assert_eq!(span.attr_str("http.route"), Some("/users/{id}"));
    assert_eq!(span.attr_int("http.response.status_code"), Some(200));
    assert_eq!(span.attr_str("network.protocol.version"), Some("1.1"));
    assert_eq!(span.attr_str("server.address"), Some("127.0.0.1"));
    assert_eq!(
        span.attr_int("server.port"),
        Some(i64::from(app.address.port()))
    );
    assert_eq!(span.attr_str("client.address"), Some("127.0.0.1"));
    assert_eq!(
        span.attr_str("user_agent.original"),
        Some("otel-monitor-test/1.0")
    );
    let string_array = |key: &str| match span.attr(key) {
        Some(AnyValue::ArrayValue(array)) => array
            .values
            .iter()
            .map(|value| match &value.value {
                Some(AnyValue::StringValue(value)) => value.clone(),
                other => panic!("{key} holds {other:?}"),
            })
            .collect::<Vec<_>>(),
        other => panic!("{key} is {other:?}, not a string array"),
    };
    assert_eq!(string_array("http.request.header.x-request-id"), ["req-1"]);
    assert_eq!(
        string_array("http.response.header.content-type"),
        ["text/plain; charset=utf-8"]
    );
    assert_eq!(span.attr("error.type"), None);
    assert_eq!(status_of(span), SpanStatus::Unset);
    assert_eq!(span.scope_name, "otel-monitor");
    assert_eq!(span.parent_span_id_hex(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credential_headers_are_never_recorded_even_when_listed_and_sent() {
    // All four, listed for both directions and in any case, beside two headers that are kept.
    let credentials = [
        "Authorization",
        "cookie",
        "SET-COOKIE",
        "proxy-authorization",
    ];
    let app = Monitored::start(|layer| {
        layer
            .record_request_headers(credentials.iter().copied().chain(["x-request-id"]))
            .record_response_headers(credentials.iter().copied().chain(["x-kept"]))
    })
    .await;

    let (status, response_headers, _) = app
        .get(
            "/login",
            &[
                ("authorization", "Bearer secret"),
                ("cookie", "session=secret"),
                ("proxy-authorization", "Basic secret"),
                ("set-cookie", "session=secret"),
                ("x-request-id", "req-1"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(response_headers["set-cookie"], "session=secret");

    let spans = app.spans(1).await;
    let recorded: BTreeSet<&str> = spans[0]
        .span
        .attributes
        .iter()
        .map(|attribute| attribute.key.as_str())
        .filter(|key| {
            key.starts_with("http.request.header.") || key.starts_with("http.response.header.")
        })
        .collect();
    assert_eq!(
        recorded,
        BTreeSet::from([
            "http.request.header.x-request-id",
            "http.response.header.x-kept"
        ])
    );
    let secrets: Vec<_> = spans[0]
        .span
        .attributes
        .iter()
        .filter(|attribute| format!("{:?}", attribute.value).contains("secret"))
        .collect();
    assert!(secrets.is_empty(), "a credential was recorded: {secrets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_server_failures_mark_the_span_as_an_error() {
    let app = Monitored::start(|layer| layer).await;
    for path in ["/users/1", "/bad", "/nowhere", "/error"] {
        app.get(path, &[]).await;
    }
    let spans = app.spans(4).await;
    let by_path = |path: &str| {
        spans
            .iter()
            .find(|span| span.attr_str("url.path") == Some(path))
            .unwrap_or_else(|| panic!("no span for {path}"))
    };

    let ok = by_path("/users/1");
    assert_eq!(status_of(ok), SpanStatus::Unset);

    let bad = by_path("/bad");
    assert_eq!(bad.attr_int("http.response.status_code"), Some(400));
    assert_eq!(status_of(bad), SpanStatus::Unset);
    assert_eq!(bad.attr("error.type"), None);

    let unmatched = by_path("/nowhere");
    assert_eq!(unmatched.span.name, "GET");
    assert_eq!(unmatched.attr_int("http.response.status_code"), Some(404));
    assert_eq!(unmatched.attr("http.route"), None);
    assert_eq!(status_of(unmatched), SpanStatus::Unset);

    let error = by_path("/error");
    assert_eq!(error.span.name, "GET /error");
    assert_eq!(error.attr_int("http.response.status_code"), Some(500));
    assert_eq!(error.attr_str("error.type"), Some("500"));
    assert_eq!(status_of(error), SpanStatus::Error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_incoming_traceparent_is_the_parent_and_a_malformed_one_starts_a_new_trace() {
    let app = Monitored::start(|layer| layer.inject_trace_context(true)).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_id = "00f067aa0ba902b7";

    let (_, continued_headers, _) = app
        .get(
            "/users/1",
            &[("traceparent", &format!("00-{trace_id}-{parent_id}-01"))],
        )
        .await;
    let (status, fresh_headers, _) = app
        .get("/users/2", &[("traceparent", "00-not-a-trace-id-01")])
        .await;
    assert_eq!(
        status,
        StatusCode::OK,
        "a malformed header never fails the request"
    );

    let spans = app.spans(2).await;
    let continued = spans
        .iter()
        .find(|span| span.attr_str("url.path") == Some("/users/1"))
        .unwrap();
    assert_eq!(continued.trace_id_hex(), trace_id);
    assert_eq!(continued.parent_span_id_hex(), parent_id);
    assert_eq!(
        continued_headers["traceparent"],
        format!("00-{trace_id}-{}-01", continued.span_id_hex())
    );

    let fresh = spans
        .iter()
        .find(|span| span.attr_str("url.path") == Some("/users/2"))
        .unwrap();
    assert_ne!(fresh.trace_id_hex(), trace_id);
    assert_eq!(fresh.parent_span_id_hex(), "");
    assert_eq!(
        fresh_headers["traceparent"],
        format!("00-{}-{}-01", fresh.trace_id_hex(), fresh.span_id_hex())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_noop_tracer_the_context_passes_through_and_the_metrics_are_recorded() {
    let app =
        Monitored::start(|layer| layer.tracer(NoopTracer::new()).inject_trace_context(true)).await;
    let (status, headers, _) = app.get("/users/1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !headers.contains_key("traceparent"),
        "a no-op tracer starts no trace: {headers:?}"
    );
    // Again and again: the requests after the first one pass the context through as well.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for _ in 0..3 {
        let (status, headers, _) = app.get("/users/2", &[("traceparent", traceparent)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers["traceparent"], traceparent,
            "the incoming context passes through"
        );
    }
    let duration = app.metric("http.server.request.duration").await;
    let points = histogram(&duration);
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(points[0].count, 4);
    assert_eq!(
        attribute_set(&points[0].attributes),
        strings(&[
            r#"http.request.method="GET""#,
            r#"url.scheme="http""#,
            r#"network.protocol.version="1.1""#,
            r#"http.route="/users/{id}""#,
            "http.response.status_code=200",
        ])
    );
    app.wait_for_active_requests(&[(ACTIVE_GET, 0)]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_response_is_measured_to_its_last_chunk() {
    let app = Monitored::start(|layer| layer).await;
    let (_, _, body) = app.get("/stream?chunks=4&ms=60", &[]).await;
    assert_eq!(body.len(), 40);

    let spans = app.spans(1).await;
    let span_duration = spans[0].duration();
    assert!(
        span_duration >= Duration::from_millis(240),
        "the span ended before the last chunk: {span_duration:?}"
    );

    let duration = app.metric("http.server.request.duration").await;
    let point = &histogram(&duration)[0];
    assert_eq!(point.count, 1);
    let recorded = Duration::from_secs_f64(point.sum.unwrap());
    let difference = recorded.abs_diff(span_duration);
    assert!(
        difference < Duration::from_micros(2),
        "histogram {recorded:?} and span {span_duration:?} disagree"
    );
    let response_size = app.metric("http.server.response.body.size").await;
    assert_eq!(histogram(&response_size)[0].sum, Some(40.0));
}

/// One series of the request histograms: its exact attributes, and what it holds.
struct Expected {
    attributes: &'static [&'static str],
    requests: u64,
    request_bytes: f64,
    response_bytes: f64,
}

/// The histogram's points, one per series: (attribute set, count, sum).
fn histogram_series(metric: &Metric) -> BTreeSet<(BTreeSet<String>, u64, String)> {
    histogram(metric)
        .iter()
        .map(|point| {
            (
                attribute_set(&point.attributes),
                point.count,
                format!("{:?}", point.sum),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_duration_and_body_size_histograms_carry_the_conventions_attributes_counts_and_bytes() {
    let app = Monitored::start(|layer| layer).await;
    for (path, status, body) in [
        ("/users/7", StatusCode::OK, &b"{\"id\":42}"[..]),
        ("/users/8", StatusCode::OK, &b"{\"id\":42}"[..]),
        ("/nowhere", StatusCode::NOT_FOUND, &b""[..]),
        ("/error", StatusCode::INTERNAL_SERVER_ERROR, &b"boom"[..]),
        ("/empty", StatusCode::NO_CONTENT, &b""[..]),
    ] {
        let (answered, _, received) = app.get(path, &[]).await;
        assert_eq!((answered, &received[..]), (status, body), "{path}");
    }
    let request = http::Request::post(format!("http://{}/echo", app.address))
        .body(Body::from("x".repeat(1234)))
        .unwrap();
    let (_, _, echoed) = support::client::send(request).await;
    assert_eq!(echoed.len(), 1234);

    // What the conventions (HTTP v1.44) ask of the three histograms: method, scheme, protocol
    // version (its name only when it is not `http`), the route when one matched, the status
    // code sent, `error.type` for a failure; `server.address` and `server.port` are opt-in.
    let expected = [
        Expected {
            attributes: &[
                r#"http.request.method="GET""#,
                r#"url.scheme="http""#,
                r#"network.protocol.version="1.1""#,
                r#"http.route="/users/{id}""#,
                "http.response.status_code=200",
            ],
            requests: 2,
            request_bytes: 0.0,
            response_bytes: 18.0,
        },
        Expected {
            attributes: &[
                r#"http.request.method="GET""#,
                r#"url.scheme="http""#,
                r#"network.protocol.version="1.1""#,
                "http.response.status_code=404",
            ],
            requests: 1,
            request_bytes: 0.0,
            response_bytes: 0.0,
        },
        Expected {
            attributes: &[
                r#"http.request.method="GET""#,
                r#"url.scheme="http""#,
                r#"network.protocol.version="1.1""#,
                r#"http.route="/error""#,
                "http.response.status_code=500",
                r#"error.type="500""#,
            ],
            requests: 1,
            request_bytes: 0.0,
            response_bytes: 4.0,
        },
        Expected {
            // An empty body ends the request at once, not as cancelled.
            attributes: &[
                r#"http.request.method="GET""#,
                r#"url.scheme="http""#,
                r#"network.protocol.version="1.1""#,
                r#"http.route="/empty""#,
                "http.response.status_code=204",
            ],
            requests: 1,
            request_bytes: 0.0,
            response_bytes: 0.0,
        },
        Expected {
            attributes: &[
                r#"http.request.method="POST""#,
                r#"url.scheme="http""#,
                r#"network.protocol.version="1.1""#,
                r#"http.route="/echo""#,
                "http.response.status_code=200",
            ],
            requests: 1,
            request_bytes: 1234.0,
            response_bytes: 1234.0,
        },
    ];

    let duration = app.metric("http.server.request.duration").await;
    assert_eq!(duration.unit, "s");
    let points = histogram(&duration);
    assert_eq!(points.len(), expected.len(), "one series per attribute set");
    for point in points {
        assert_eq!(
            point.explicit_bounds,
            [
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
            ]
        );
    }
    let series_of = |metric: &Metric| -> BTreeSet<(BTreeSet<String>, u64)> {
        histogram(metric)
            .iter()
            .map(|point| (attribute_set(&point.attributes), point.count))
            .collect()
    };
    assert_eq!(
        series_of(&duration),
        expected
            .iter()
            .map(|series| (strings(series.attributes), series.requests))
            .collect()
    );

    for (name, bytes) in [
        (
            "http.server.request.body.size",
            (|series: &Expected| series.request_bytes) as fn(&Expected) -> f64,
        ),
        ("http.server.response.body.size", |series: &Expected| {
            series.response_bytes
        }),
    ] {
        let metric = app.metric(name).await;
        assert_eq!(metric.unit, "By", "{name}");
        let Some(Data::Histogram(data)) = &metric.data else {
            panic!("{name} is not a histogram");
        };
        assert_eq!(
            data.aggregation_temporality,
            AggregationTemporality::Cumulative as i32,
            "{name}"
        );
        assert_eq!(
            histogram_series(&metric),
            expected
                .iter()
                .map(|series| (
                    strings(series.attributes),
                    series.requests,
                    format!("{:?}", Some(bytes(series)))
                ))
                .collect(),
            "{name}: the duration's attribute sets, one recording per request, every byte"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_requests_is_a_cumulative_up_down_counter_by_method_and_scheme_1_in_flight_then_0() {
    let app = Monitored::start(|layer| layer).await;

    // A raw connection, so the request stays in flight until the test hangs up.
    let mut connection = tokio::net::TcpStream::connect(app.address).await.unwrap();
    connection
        .write_all(b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let in_flight = app.wait_for_active_requests(&[(ACTIVE_GET, 1)]).await;
    assert_eq!(in_flight.unit, "{request}");
    let Some(Data::Sum(data)) = &in_flight.data else {
        panic!("not a sum: {in_flight:?}");
    };
    assert!(!data.is_monotonic, "an up-down counter is not monotonic");
    assert_eq!(
        data.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    let point = &data.data_points[0];
    assert_eq!(
        point.value,
        Some(number_data_point::Value::AsInt(1)),
        "an integer point"
    );

    // A request that completes meanwhile counts while it runs, then leaves its own series at 0.
    let request = http::Request::post(format!("http://{}/echo", app.address))
        .body(Body::from("ping"))
        .unwrap();
    support::client::send(request).await;
    app.wait_for_active_requests(&[(ACTIVE_GET, 1), (ACTIVE_POST, 0)])
        .await;

    drop(connection);
    let after = app
        .wait_for_active_requests(&[(ACTIVE_GET, 0), (ACTIVE_POST, 0)])
        .await;
    assert_eq!(sum(&after).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_request_ends_its_span_once_and_is_no_longer_active() {
    let app = Monitored::start(|layer| layer).await;

    // A raw connection, so the test knows when the server has the request, then hangs up.
    let mut connection = tokio::net::TcpStream::connect(app.address).await.unwrap();
    connection
        .write_all(b"GET /slow HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    app.wait_for_active_requests(&[(ACTIVE_GET, 1)]).await;
    drop(connection);
    app.wait_for_active_requests(&[(ACTIVE_GET, 0)]).await;

    let spans = app.spans(1).await;
    let span = &spans[0];
    assert_eq!(span.span.name, "GET /slow");
    assert_eq!(span.attr_str("error.type"), Some("cancelled"));
    assert_eq!(span.attr("http.response.status_code"), None);
    assert_eq!(status_of(span), SpanStatus::Unset);

    // Ended once: one recording in each histogram, in the cancelled series only.
    let cancelled = strings(&[
        r#"http.request.method="GET""#,
        r#"url.scheme="http""#,
        r#"network.protocol.version="1.1""#,
        r#"http.route="/slow""#,
        r#"error.type="cancelled""#,
    ]);
    let duration = app.metric("http.server.request.duration").await;
    let points = histogram(&duration);
    assert_eq!(points.len(), 1, "{points:?}");
    assert_eq!(attribute_set(&points[0].attributes), cancelled);
    assert_eq!(points[0].count, 1);
    for name in [
        "http.server.request.body.size",
        "http.server.response.body.size",
    ] {
        let size = app.metric(name).await;
        assert_eq!(
            histogram_series(&size),
            BTreeSet::from([(cancelled.clone(), 1, format!("{:?}", Some(0.0)))]),
            "{name}"
        );
    }
    // And one span: no second one turns up with a later flush.
    let provider = app.tracer_provider.clone();
    tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
        .await
        .unwrap();
    assert_eq!(app.receiver.spans().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_request_and_a_stream_of_stated_length_end_complete_not_cancelled() {
    let app = Monitored::start(|layer| layer).await;
    // HEAD of a GET route: axum drops the handler's body after the layer, and hyper sends none.
    let (status, _, body) = support::client::send(
        http::Request::head(format!("http://{}/users/7", app.address))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!((status, body.len()), (StatusCode::OK, 0));
    // A stream with a stated Content-Length: hyper drops the body once 11 bytes are out.
    let (status, _, body) = app.get("/sized-stream", &[]).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"hello world"[..]));

    let spans = app.spans(2).await;
    for name in ["HEAD /users/{id}", "GET /sized-stream"] {
        let span = support::span_named(&spans, name);
        assert_eq!(span.attr_str("error.type"), None, "{name}");
        assert_eq!(
            span.attr_int("http.response.status_code"),
            Some(200),
            "{name}"
        );
    }
    let series = |method: &str, route: &str| {
        strings(&[
            &format!(r#"http.request.method="{method}""#),
            r#"url.scheme="http""#,
            r#"network.protocol.version="1.1""#,
            &format!(r#"http.route="{route}""#),
            "http.response.status_code=200",
        ])
    };
    let duration = app.metric("http.server.request.duration").await;
    let recorded: BTreeSet<_> = histogram(&duration)
        .iter()
        .map(|point| (attribute_set(&point.attributes), point.count))
        .collect();
    assert_eq!(
        recorded,
        BTreeSet::from([
            (series("HEAD", "/users/{id}"), 1),
            (series("GET", "/sized-stream"), 1),
        ])
    );
    let sent = app.metric("http.server.response.body.size").await;
    assert!(
        histogram_series(&sent).contains(&(
            series("GET", "/sized-stream"),
            1,
            format!("{:?}", Some(11.0))
        )),
        "{:?}",
        histogram_series(&sent)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filtered_paths_are_neither_traced_nor_measured() {
    let app = Monitored::start(|layer| layer.filter(|path| path != "/health")).await;
    let (status, _, body) = app.get("/health", &[]).await;
    assert_eq!((status, &body[..]), (StatusCode::OK, &b"ok"[..]));
    app.get("/users/1", &[]).await;

    let spans = app.spans(1).await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].attr_str("url.path"), Some("/users/1"));
    let duration = app.metric("http.server.request.duration").await;
    let points = histogram(&duration);
    assert_eq!(points.len(), 1);
    assert_eq!(points[0].count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_tower_service_is_monitored_and_its_errors_mark_the_span() {
    use tower::{Layer, ServiceExt};

    #[derive(Debug)]
    struct Unavailable;

    let app = Monitored::start(|layer| layer).await;
    let layer = MonitorLayer::builder()
        .tracer(app.tracer_provider.tracer("otel-monitor"))
        .meter(app.meter_provider.meter("otel-monitor"))
        .build();
    let service = layer.layer(tower::service_fn(
        |_request: http::Request<otel_monitor::RequestBody<String>>| async {
            Err::<http::Response<String>, _>(Unavailable)
        },
    ));
    let request = http::Request::put("http://example.com/things")
        .body(String::new())
        .unwrap();
    assert!(service.oneshot(request).await.is_err());

    let spans = app.spans(1).await;
    let span = &spans[0];
    assert_eq!(span.span.name, "PUT");
    assert_eq!(span.attr_str("server.address"), Some("example.com"));
    assert_eq!(span.attr("http.response.status_code"), None);
    assert!(
        span.attr_str("error.type")
            .is_some_and(|error| error.ends_with("Unavailable")),
        "{:?}",
        span.attr("error.type")
    );
    assert_eq!(status_of(span), SpanStatus::Error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_span_exporter_counts_its_spans_under_its_component_type_over_both_protocols() {
    // `Telemetry`'s own span exporter, in the example service as a user runs it. The component
    // types are the values the conventions (v1.44, `otel.component.type`) give OTLP span
    // exporters with protobuf serialization.
    for (protocol, component_type) in [
        ("http/protobuf", "otlp_http_span_exporter"),
        ("grpc", "otlp_grpc_span_exporter"),
    ] {
        let receiver = OtlpReceiver::start().await;
        let service = ExampleService::start(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.endpoint(protocol)),
        ]);
        // The request span and its `load_user` child.
        let (status, _, _) = support::client::get(&service.url("/users/1"), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let exported = support::wait_for(
            &format!("2 spans counted as exported over {protocol}"),
            DEADLINE,
            || {
                let metric = receiver.latest_metric("otel.sdk.exporter.span.exported")?;
                let counted: i64 = sum(&metric.metric).iter().map(int_value).sum();
                (counted >= 2).then_some(metric.metric)
            },
        )
        .await;
        assert_eq!(exported.unit, "{span}");
        let Some(Data::Sum(data)) = &exported.data else {
            panic!("not a sum: {exported:?}");
        };
        assert!(data.is_monotonic, "a counter");
        let points: BTreeSet<(BTreeSet<String>, i64)> = data
            .data_points
            .iter()
            .map(|point| (attribute_set(&point.attributes), int_value(point)))
            .collect();
        assert_eq!(
            points,
            BTreeSet::from([(
                strings(&[&format!("otel.component.type={component_type:?}")]),
                2
            )]),
            "{protocol}: every span delivered, none lost"
        );
        assert_eq!(receiver.spans().len(), 2);
        assert!(service.stop().status.success());
    }
}
