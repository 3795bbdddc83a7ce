//! `MonitorLayer` on a real axum server, exporting through the real OTLP/HTTP exporter to an
//! in-process receiver: what arrives, with which names, attributes and values.

mod support;

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    http::StatusCode,
    routing::get,
};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::{
    Context,
    trace::{
        SpanBuilder, Tracer, TracerProvider as _,
        noop::{NoopSpan, NoopTracer},
    },
};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_proto::tonic::{
    common::v1::any_value::Value as AnyValue,
    metrics::v1::{HistogramDataPoint, NumberDataPoint, metric::Data, number_data_point},
    trace::v1::{span::SpanKind, status::StatusCode as SpanStatus},
};
use opentelemetry_sdk::{metrics::SdkMeterProvider, trace::SdkTracerProvider};
use otel_monitor::{MonitorLayer, MonitorLayerBuilder};
use support::{OtlpReceiver, ReceivedSpan, attr_int, attr_str};
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
            .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
            .route("/health", get(|| async { "ok" }))
            .route(
                "/echo",
                axum::routing::post(|body: Bytes| async move { body }),
            )
            .layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
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

    /// Flushes the metrics until `http.server.active_requests` reads `expected`.
    async fn wait_for_active_requests(&self, expected: i64) {
        let what = format!("{expected} active requests");
        support::wait_until(&what, DEADLINE, || async {
            let provider = self.meter_provider.clone();
            tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
                .await
                .unwrap();
            let active = self
                .receiver
                .latest_metric("http.server.active_requests")
                .map(|received| int_value(&sum(&received.metric)[0]));
            if active == Some(expected) {
                Ok(())
            } else {
                Err(format!("{active:?} active requests"))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_becomes_a_server_span_with_the_conventions_attributes() {
    let app = Monitored::start(|layer| {
        layer
            .record_request_headers(["x-request-id", "authorization"])
            .record_response_headers(["content-type", "set-cookie"])
    })
    .await;

    let (status, _, _) = app
        .get(
            "/users/42?q=rust&sig=secret",
            &[
                ("user-agent", "otel-monitor-test/1.0"),
                ("x-request-id", "req-1"),
                ("authorization", "Bearer secret"),
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
    assert_eq!(span.attr("http.request.header.authorization"), None);
    assert_eq!(span.attr("http.response.header.set-cookie"), None);
    assert_eq!(span.attr("error.type"), None);
    assert_eq!(status_of(span), SpanStatus::Unset);
    assert_eq!(span.scope_name, "otel-monitor");
    assert_eq!(span.parent_span_id_hex(), "");
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

/// OpenTelemetry's no-op tracer, counting the spans asked of it.
#[derive(Debug, Clone, Default)]
struct CountingNoopTracer(Arc<AtomicUsize>);

impl Tracer for CountingNoopTracer {
    type Span = NoopSpan;

    fn build_with_context(&self, builder: SpanBuilder, parent_cx: &Context) -> NoopSpan {
        self.0.fetch_add(1, Ordering::SeqCst);
        NoopTracer::new().build_with_context(builder, parent_cx)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_noop_tracer_the_context_passes_through_and_the_metrics_are_recorded() {
    let tracer = CountingNoopTracer::default();
    let app = {
        let tracer = tracer.clone();
        Monitored::start(|layer| layer.tracer(tracer).inject_trace_context(true)).await
    };
    let (status, headers, _) = app.get("/users/1", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        !headers.contains_key("traceparent"),
        "a no-op tracer starts no trace: {headers:?}"
    );
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for _ in 0..3 {
        let (status, headers, _) = app.get("/users/2", &[("traceparent", traceparent)]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers["traceparent"], traceparent,
            "the incoming context passes through"
        );
    }
    assert_eq!(
        tracer.0.load(Ordering::SeqCst),
        1,
        "once the tracer has shown it is a no-op, no more spans are asked of it"
    );
    let duration = app.metric("http.server.request.duration").await;
    let requests: u64 = histogram(&duration).iter().map(|point| point.count).sum();
    assert_eq!(requests, 4);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_http_server_metrics_follow_the_conventions() {
    let app = Monitored::start(|layer| layer).await;
    app.get("/users/7", &[]).await;
    app.get("/nowhere", &[]).await;
    app.get("/error", &[]).await;
    app.get("/empty", &[]).await;

    let duration = app.metric("http.server.request.duration").await;
    assert_eq!(duration.unit, "s");
    let points = histogram(&duration);
    assert_eq!(points.len(), 4, "one series per route and status");
    for point in points {
        assert_eq!(
            point.explicit_bounds,
            [
                0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0
            ]
        );
        assert_eq!(
            attr_str(&point.attributes, "http.request.method"),
            Some("GET")
        );
        assert_eq!(attr_str(&point.attributes, "url.scheme"), Some("http"));
        assert_eq!(
            attr_str(&point.attributes, "network.protocol.version"),
            Some("1.1")
        );
    }
    let series = |status: i64| {
        points
            .iter()
            .find(|point| attr_int(&point.attributes, "http.response.status_code") == Some(status))
            .unwrap_or_else(|| panic!("no series with status {status}"))
    };
    assert_eq!(
        attr_str(&series(200).attributes, "http.route"),
        Some("/users/{id}")
    );
    assert_eq!(attr_str(&series(200).attributes, "error.type"), None);
    assert_eq!(attr_str(&series(404).attributes, "http.route"), None);
    assert_eq!(attr_str(&series(500).attributes, "error.type"), Some("500"));
    assert_eq!(
        attr_str(&series(204).attributes, "error.type"),
        None,
        "an empty body ends the request at once, not as cancelled"
    );

    let active = app.metric("http.server.active_requests").await;
    assert_eq!(active.unit, "{request}");
    for point in sum(&active) {
        assert_eq!(int_value(point), 0);
    }

    let request_size = app.metric("http.server.request.body.size").await;
    assert_eq!(request_size.unit, "By");
    let response_size = app.metric("http.server.response.body.size").await;
    assert_eq!(response_size.unit, "By");
    let user_body = histogram(&response_size)
        .iter()
        .find(|point| attr_int(&point.attributes, "http.response.status_code") == Some(200))
        .unwrap();
    assert_eq!(user_body.sum, Some("{\"id\":42}".len() as f64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_is_measured_by_the_bytes_read() {
    let app = Monitored::start(|layer| layer).await;
    let request = http::Request::post(format!("http://{}/echo", app.address))
        .body(Body::from("x".repeat(1234)))
        .unwrap();
    let (_, _, body) = support::client::send(request).await;
    assert_eq!(body.len(), 1234);

    let request_size = app.metric("http.server.request.body.size").await;
    let point = &histogram(&request_size)[0];
    assert_eq!(
        attr_str(&point.attributes, "http.request.method"),
        Some("POST")
    );
    assert_eq!(point.sum, Some(1234.0));
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
    app.wait_for_active_requests(1).await;
    drop(connection);

    let spans = app.spans(1).await;
    let span = &spans[0];
    assert_eq!(span.span.name, "GET /slow");
    assert_eq!(span.attr_str("error.type"), Some("cancelled"));
    assert_eq!(span.attr("http.response.status_code"), None);
    assert_eq!(status_of(span), SpanStatus::Unset);

    app.wait_for_active_requests(0).await;
    let duration = app.metric("http.server.request.duration").await;
    let point = &histogram(&duration)[0];
    assert_eq!(point.count, 1);
    assert_eq!(attr_str(&point.attributes, "error.type"), Some("cancelled"));

    // Ended exactly once: no second span turns up later.
    let provider = app.tracer_provider.clone();
    tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
        .await
        .unwrap();
    assert_eq!(app.receiver.spans().len(), 1);
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
