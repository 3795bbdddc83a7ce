//! Requests that do not end well, over a real server: a handler that panics (caught by
//! tower-http's `CatchPanicLayer` outside `MonitorLayer`, inside it, or by nobody), a response
//! body that panics or fails mid-stream, a client that goes away mid-stream, a request body cut
//! short, and services whose errors are boxed. For each, what a user reads: one span for the
//! request, its status, `error.type`, `http.response.status_code` when a response went out,
//! `http.server.active_requests` back to 0, and the duration's series. Spans and metrics go to
//! in-memory exporters (the export path is tested elsewhere).

mod support;

use std::{
    collections::BTreeSet, convert::Infallible, error::Error, io, net::SocketAddr, sync::Arc,
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::State,
    http::StatusCode,
    routing::{get, post},
};
use futures_util::StreamExt as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, Value, metrics::MeterProvider as _, trace::Status};
use opentelemetry_sdk::{
    metrics::{
        InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        data::{AggregatedMetrics, MetricData},
    },
    trace::{InMemorySpanExporter, SdkTracerProvider, SpanData},
};
use otel_monitor::MonitorLayer;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Notify,
};
use tower_http::catch_panic::CatchPanicLayer;

const DEADLINE: Duration = Duration::from_secs(10);

/// A server behind `MonitorLayer`, with in-memory exporters for its spans and metrics.
struct Monitored {
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    meter_provider: SdkMeterProvider,
    address: SocketAddr,
    /// Keeps the spans' provider (and its exporter) alive for the test.
    _tracer_provider: SdkTracerProvider,
}

impl Monitored {
    fn layer() -> (MonitorLayer, Self) {
        let spans = InMemorySpanExporter::default();
        let tracer_provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let metrics = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        let layer = MonitorLayer::builder()
            .tracer(tracer_provider.tracer("otel-monitor"))
            .meter(meter_provider.meter("otel-monitor"))
            .propagator(opentelemetry_sdk::propagation::TraceContextPropagator::new())
            .build();
        let monitored = Self {
            spans,
            metrics,
            meter_provider,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            _tracer_provider: tracer_provider,
        };
        (layer, monitored)
    }

    /// Serves the router `app` makes of the layer with `axum::serve` on a port of its own.
    async fn serve(app: impl FnOnce(MonitorLayer) -> Router) -> Self {
        let (layer, mut monitored) = Self::layer();
        let app = app(layer);
        monitored.address = support::serve(app).await;
        monitored
    }

    /// Waits until the request has ended: `http.server.request.duration` holds exactly the
    /// `expected` series (attributes, count) and every active-requests series reads 0; then
    /// returns the spans, which the simple exporter took when the request ended, before those
    /// metrics were recorded.
    async fn ended(&self, expected: &[(&[&str], u64)]) -> Vec<SpanData> {
        let expected: BTreeSet<(BTreeSet<String>, u64)> = expected
            .iter()
            .map(|(attributes, count)| (strings(attributes), *count))
            .collect();
        let what = format!("the duration series {expected:?} and no request active");
        support::wait_until(&what, DEADLINE, || async {
            let provider = self.meter_provider.clone();
            tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
                .await
                .unwrap();
            let exported = self.metrics.get_finished_metrics().unwrap();
            let Some(latest) = exported.last() else {
                return Err("no export".to_owned());
            };
            let metric = |name: &str| {
                latest
                    .scope_metrics()
                    .flat_map(|scope| scope.metrics())
                    .find(|metric| metric.name() == name)
                    .map(|metric| metric.data())
            };
            let duration: BTreeSet<(BTreeSet<String>, u64)> =
                match metric("http.server.request.duration") {
                    Some(AggregatedMetrics::F64(MetricData::Histogram(histogram))) => histogram
                        .data_points()
                        .map(|point| (attribute_set(point.attributes()), point.count()))
                        .collect(),
                    _ => BTreeSet::new(),
                };
            let active: Vec<i64> = match metric("http.server.active_requests") {
                Some(AggregatedMetrics::I64(MetricData::Sum(sum))) => {
                    sum.data_points().map(|point| point.value()).collect()
                }
                _ => Vec::new(),
            };
            if duration == expected && !active.is_empty() && active.iter().all(|&value| value == 0)
            {
                Ok(self.spans.get_finished_spans().unwrap())
            } else {
                Err(format!("duration {duration:?}, active {active:?}"))
            }
        })
        .await
    }

    /// Connects, sends `request` as it is, and returns the connection.
    async fn send_raw(&self, request: &[u8]) -> TcpStream {
        let mut connection = TcpStream::connect(self.address).await.unwrap();
        connection.write_all(request).await.unwrap();
        connection
    }
}

/// Reads from `connection` until what was read contains `needle`, and returns it all.
async fn read_until(connection: &mut TcpStream, needle: &str) -> String {
    let mut read = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        while !String::from_utf8_lossy(&read).contains(needle) {
            let mut buffer = [0; 4096];
            let count = connection.read(&mut buffer).await.unwrap();
            assert!(
                count > 0,
                "closed before {needle:?}: {:?}",
                String::from_utf8_lossy(&read)
            );
            read.extend_from_slice(&buffer[..count]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} in {:?}", String::from_utf8_lossy(&read)));
    String::from_utf8_lossy(&read).into_owned()
}

/// Reads from `connection` until the server closes it (or resets it), and returns what came.
async fn read_to_close(connection: &mut TcpStream) -> String {
    let mut read = Vec::new();
    tokio::time::timeout(DEADLINE, async {
        loop {
            let mut buffer = [0; 4096];
            match connection.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(count) => read.extend_from_slice(&buffer[..count]),
            }
        }
    })
    .await
    .expect("the server did not close the connection");
    String::from_utf8_lossy(&read).into_owned()
}

fn attribute_set<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> BTreeSet<String> {
    attributes
        .map(|attribute| match &attribute.value {
            Value::String(value) => format!("{}={:?}", attribute.key, value.as_str()),
            other => format!("{}={other}", attribute.key),
        })
        .collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

fn attr<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == key)
        .map(|attribute| &attribute.value)
}

/// The one span the test's one request made.
fn only(spans: &[SpanData]) -> &SpanData {
    assert_eq!(spans.len(), 1, "{spans:#?}");
    &spans[0]
}

/// A span that ended as a server failure: status Error, and this `error.type`.
fn assert_failed(span: &SpanData, error_type: &str) {
    assert!(
        matches!(span.status, Status::Error { .. }),
        "{:?}",
        span.status
    );
    assert_eq!(
        attr(span, "error.type"),
        Some(&Value::from(error_type.to_owned()))
    );
}

/// The duration series of a GET to `route` over HTTP/1.1, with `more` attributes.
fn get_series(route: &str, more: &[&str]) -> Vec<String> {
    let mut series = vec![
        r#"http.request.method="GET""#.to_owned(),
        r#"url.scheme="http""#.to_owned(),
        r#"network.protocol.version="1.1""#.to_owned(),
        format!(r#"http.route="{route}""#),
    ];
    series.extend(more.iter().map(|item| (*item).to_owned()));
    series
}

fn refs(series: &[String]) -> Vec<&str> {
    series.iter().map(String::as_str).collect()
}

async fn panics() -> &'static str {
    panic!("the handler panics")
}

fn panicking_app(layer: MonitorLayer) -> Router {
    Router::new().route("/panic", get(panics)).layer(layer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_caught_outside_the_layer_ends_the_span_once_as_a_panic_without_status_code() {
    let app = Monitored::serve(|layer| panicking_app(layer).layer(CatchPanicLayer::new())).await;

    let (status, _, _) = support::client::get(&format!("http://{}/panic", app.address), &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    // The layer never saw the 500 that CatchPanicLayer made outside it: no status code.
    let series = get_series("/panic", &[r#"error.type="panic""#]);
    let spans = app.ended(&[(&refs(&series), 1)]).await;
    let span = only(&spans);
    assert_eq!(span.name, "GET /panic");
    assert_failed(span, "panic");
    assert_eq!(attr(span, "http.response.status_code"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_caught_inside_the_layer_is_the_500_response_it_becomes() {
    let app = Monitored::serve(|layer| {
        Router::new()
            .route("/panic", get(panics))
            .layer(CatchPanicLayer::new())
            .layer(layer)
    })
    .await;

    let (status, _, _) = support::client::get(&format!("http://{}/panic", app.address), &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    let series = get_series(
        "/panic",
        &["http.response.status_code=500", r#"error.type="500""#],
    );
    let spans = app.ended(&[(&refs(&series), 1)]).await;
    let span = only(&spans);
    assert_failed(span, "500");
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(&Value::I64(500))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_nobody_catches_drops_the_connection_and_ends_the_span_once_as_a_panic() {
    let app = Monitored::serve(panicking_app).await;

    let mut connection = app
        .send_raw(b"GET /panic HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    // hyper's connection task dies with the handler: no response at all.
    assert_eq!(read_to_close(&mut connection).await, "");

    let series = get_series("/panic", &[r#"error.type="panic""#]);
    let spans = app.ended(&[(&refs(&series), 1)]).await;
    let span = only(&spans);
    assert_failed(span, "panic");
    assert_eq!(attr(span, "http.response.status_code"), None);
}

/// A body that sends its first chunk, then, once the test says so, panics or fails.
async fn first_chunk_then(
    State((release, fail)): State<(Arc<Notify>, Option<io::ErrorKind>)>,
) -> Body {
    let first = futures_util::stream::once(async {
        Ok::<_, io::Error>(Bytes::from_static(b"first chunk"))
    });
    let then = futures_util::stream::once(async move {
        release.notified().await;
        match fail {
            Some(kind) => Err(io::Error::from(kind)),
            None => panic!("the body panics mid-stream"),
        }
    });
    Body::from_stream(first.chain(then))
}

async fn cut_after_the_first_chunk(fail: Option<io::ErrorKind>) -> (Monitored, String) {
    let release = Arc::new(Notify::new());
    let state = (release.clone(), fail);
    let app = Monitored::serve(|layer| {
        Router::new()
            .route("/stream", get(first_chunk_then))
            .with_state(state)
            .layer(layer)
    })
    .await;
    let mut connection = app
        .send_raw(b"GET /stream HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    let mut received = read_until(&mut connection, "first chunk").await;
    release.notify_one();
    received += &read_to_close(&mut connection).await;
    (app, received)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_that_panics_mid_stream_ends_the_span_once_as_a_panic_after_its_200() {
    let (app, received) = cut_after_the_first_chunk(None).await;
    assert!(received.starts_with("HTTP/1.1 200 OK\r\n"), "{received}");
    // The chunked body never got its last chunk.
    assert!(!received.ends_with("0\r\n\r\n"), "{received}");

    let series = get_series(
        "/stream",
        &["http.response.status_code=200", r#"error.type="panic""#],
    );
    let spans = app.ended(&[(&refs(&series), 1)]).await;
    let span = only(&spans);
    assert_failed(span, "panic");
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(&Value::I64(200))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_that_fails_mid_stream_is_named_by_its_io_error_kind() {
    let (app, received) = cut_after_the_first_chunk(Some(io::ErrorKind::BrokenPipe)).await;
    assert!(received.starts_with("HTTP/1.1 200 OK\r\n"), "{received}");

    // axum wraps the stream's io::Error in an axum::Error: the kind is read through it.
    let series = get_series(
        "/stream",
        &[
            "http.response.status_code=200",
            r#"error.type="broken_pipe""#,
        ],
    );
    let spans = app.ended(&[(&refs(&series), 1)]).await;
    assert_failed(only(&spans), "broken_pipe");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_mid_stream_is_cancelled_not_failed() {
    // The first chunk, then nothing: the body waits for ever.
    async fn endless() -> Body {
        let first = futures_util::stream::once(async {
            Ok::<_, Infallible>(Bytes::from_static(b"first chunk"))
        });
        Body::from_stream(first.chain(futures_util::stream::pending()))
    }
    let app =
        Monitored::serve(|layer| Router::new().route("/endless", get(endless)).layer(layer)).await;

    let mut connection = app
        .send_raw(b"GET /endless HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await;
    read_until(&mut connection, "first chunk").await;
    drop(connection);

    let series = get_series(
        "/endless",
        &["http.response.status_code=200", r#"error.type="cancelled""#],
    );
    let spans = app.ended(&[(&refs(&series), 1)]).await;
    let span = only(&spans);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attr(span, "error.type"), Some(&Value::from("cancelled")));
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(&Value::I64(200))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_body_cut_short_is_the_400_the_handler_answers() {
    let app = Monitored::serve(|layer| {
        Router::new()
            .route("/echo", post(|body: Bytes| async move { body }))
            .layer(layer)
    })
    .await;

    // 10 of the 100 bytes announced, then the client stops sending (and still reads).
    let mut connection = app
        .send_raw(
            b"POST /echo HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n0123456789",
        )
        .await;
    connection.shutdown().await.unwrap();
    let received = read_to_close(&mut connection).await;
    assert!(
        received.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{received}"
    );

    let series = [
        r#"http.request.method="POST""#,
        r#"url.scheme="http""#,
        r#"network.protocol.version="1.1""#,
        r#"http.route="/echo""#,
        "http.response.status_code=400",
    ];
    let spans = app.ended(&[(&series, 1)]).await;
    let span = only(&spans);
    // A 4xx is the client's doing: no error.type, status unset.
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attr(span, "error.type"), None);
    assert_eq!(
        attr(span, "http.response.status_code"),
        Some(&Value::I64(400))
    );
}

#[derive(Debug)]
struct QuotaExhausted;

impl std::fmt::Display for QuotaExhausted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("quota exhausted for tenant 42")
    }
}

impl Error for QuotaExhausted {}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boxed_service_error_is_named_by_what_it_holds_never_by_its_message() {
    use hyper_util::{rt::TokioIo, service::TowerToHyperService};
    use tower::Layer as _;

    let (layer, app) = Monitored::layer();
    // A tower stack's usual error type, tower's BoxError, over hyper's own server.
    let service = layer.layer(tower::service_fn(
        |request: http::Request<otel_monitor::RequestBody<hyper::body::Incoming>>| async move {
            let error: Box<dyn Error + Send + Sync> = match request.uri().path() {
                "/timeout" => Box::new(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the upstream took 30 s",
                )),
                _ => Box::new(QuotaExhausted),
            };
            Err::<http::Response<String>, _>(error)
        },
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let service = TowerToHyperService::new(service.clone());
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });

    for path in ["/timeout", "/quota"] {
        let mut connection = TcpStream::connect(address).await.unwrap();
        connection
            .write_all(format!("GET {path} HTTP/1.1\r\nhost: localhost\r\n\r\n").as_bytes())
            .await
            .unwrap();
        // hyper closes a connection whose service failed, without a response.
        assert_eq!(read_to_close(&mut connection).await, "", "{path}");
    }

    let series = |error_type: &str| {
        vec![
            r#"http.request.method="GET""#.to_owned(),
            r#"url.scheme="http""#.to_owned(),
            r#"network.protocol.version="1.1""#.to_owned(),
            format!(r#"error.type="{error_type}""#),
        ]
    };
    let (timeout, other) = (series("timeout"), series("_OTHER"));
    let spans = app.ended(&[(&refs(&timeout), 1), (&refs(&other), 1)]).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    for (span, error_type) in spans.iter().zip(["timeout", "_OTHER"]) {
        assert_failed(span, error_type);
        assert_eq!(attr(span, "http.response.status_code"), None);
    }
}
