//! `MonitorClientLayer` around hyper-util's client, calling a real axum server, with the SDK's
//! in-memory exporters: the CLIENT span (name, kind, attributes, parent), the context the
//! server receives, failures and their `error.type`, and `http.client.request.duration`.

mod support;

use std::{
    collections::BTreeSet,
    net::SocketAddr,
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::{Body, Bytes},
    http::{HeaderMap, StatusCode},
    routing::get,
};
use http_body_util::BodyExt;
use opentelemetry::context::FutureExt as _;
use opentelemetry::{
    Context, KeyValue, Value,
    baggage::BaggageExt,
    metrics::MeterProvider as _,
    propagation::TextMapCompositePropagator,
    trace::{
        SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId, TraceState,
        TracerProvider as _,
    },
};
use opentelemetry_sdk::{
    metrics::{
        InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        data::{AggregatedMetrics, HistogramDataPoint, MetricData},
    },
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData},
};
use otel_monitor::{MonitorClientLayer, MonitorClientLayerBuilder, ResendCount, UrlTemplate};
use tower::{BoxError, Service, ServiceBuilder, ServiceExt};

type HyperClient =
    hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Body>;

/// A server that answers with the trace headers it received, its address, and the SDK
/// providers and in-memory exporters the client layer records into.
struct Setup {
    server: SocketAddr,
    spans: InMemorySpanExporter,
    metrics: InMemoryMetricExporter,
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
}

/// What the server saw of a request: its `traceparent` and `baggage`, as the body.
async fn echo_context(headers: HeaderMap) -> String {
    let value = |name: &str| {
        headers
            .get(name)
            .map_or("-", |value| value.to_str().unwrap_or("?"))
            .to_owned()
    };
    format!("{} {}", value("traceparent"), value("baggage"))
}

/// Two chunks 300 ms apart.
async fn slow_body() -> Body {
    let chunks = futures_util::stream::unfold(0, |sent| async move {
        match sent {
            0 => Some((Ok::<_, std::convert::Infallible>(Bytes::from("first ")), 1)),
            1 => {
                tokio::time::sleep(Duration::from_millis(300)).await;
                Some((Ok(Bytes::from("last")), 2))
            }
            _ => None,
        }
    });
    Body::from_stream(chunks)
}

impl Setup {
    async fn start(sampler: Sampler) -> Self {
        let app = Router::new()
            .route("/users/{id}", get(echo_context))
            .route("/missing", get(|| async { (StatusCode::NOT_FOUND, "no") }))
            .route(
                "/error",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
            )
            .route("/slow-body", get(slow_body))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            );
        let server = support::serve(app).await;
        let spans = InMemorySpanExporter::default();
        let metrics = InMemoryMetricExporter::default();
        Self {
            server,
            tracer_provider: SdkTracerProvider::builder()
                .with_sampler(sampler)
                .with_simple_exporter(spans.clone())
                .build(),
            meter_provider: SdkMeterProvider::builder()
                .with_reader(PeriodicReader::builder(metrics.clone()).build())
                .build(),
            spans,
            metrics,
        }
    }

    fn layer(&self) -> MonitorClientLayerBuilder {
        MonitorClientLayer::builder()
            .tracer(self.tracer_provider.tracer("client-test"))
            .meter(self.meter_provider.meter("client-test"))
            .propagator(TextMapCompositePropagator::new(vec![
                Box::new(TraceContextPropagator::new()),
                Box::new(BaggagePropagator::new()),
            ]))
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server)
    }

    fn finished_spans(&self) -> Vec<SpanData> {
        self.spans.get_finished_spans().unwrap()
    }

    /// The points of `http.client.request.duration`, collected now.
    fn durations(&self) -> Vec<HistogramDataPoint<f64>> {
        self.meter_provider.force_flush().unwrap();
        let exported = self.metrics.get_finished_metrics().unwrap();
        let Some(metric) = exported
            .iter()
            .rev()
            .flat_map(|resource| resource.scope_metrics())
            .flat_map(|scope| scope.metrics())
            .find(|metric| metric.name() == "http.client.request.duration")
        else {
            panic!("http.client.request.duration was not exported");
        };
        assert_eq!(metric.unit(), "s");
        let AggregatedMetrics::F64(MetricData::Histogram(histogram)) = metric.data() else {
            panic!("the duration is an f64 histogram");
        };
        histogram.data_points().cloned().collect()
    }
}

fn hyper_client() -> HyperClient {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

/// Sends `request` through `client` and reads the whole body.
async fn call<S, B>(
    client: &mut S,
    request: http::Request<Body>,
) -> Result<(StatusCode, String), S::Error>
where
    S: Service<http::Request<Body>, Response = http::Response<B>>,
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let response = client.ready().await?.call(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn get_request(url: &str) -> http::request::Builder {
    http::Request::get(url)
}

fn attribute<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|attribute| attribute.key.as_str() == key)
        .map(|attribute| &attribute.value)
}

fn the_only_span(setup: &Setup) -> SpanData {
    let spans = setup.finished_spans();
    assert_eq!(spans.len(), 1, "{spans:#?}");
    spans.into_iter().next().unwrap()
}

/// A point's attributes as `key=value`, the exact set to compare.
fn attribute_set<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> BTreeSet<String> {
    attributes
        .map(|attribute| format!("{}={}", attribute.key, attribute.value))
        .collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_is_a_client_span_in_the_current_trace_and_the_server_receives_its_context() {
    let setup = Setup::start(Sampler::AlwaysOn).await;
    let mut client = ServiceBuilder::new()
        .layer(setup.layer().build())
        .service(hyper_client());

    // The request the service is handling, as its server layer made it current.
    let parent = SpanContext::new(
        TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap(),
        SpanId::from_hex("b7ad6b7169203331").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    let cx = Context::current()
        .with_remote_span_context(parent.clone())
        .with_baggage([KeyValue::new("tenant", "acme")]);
    let request = get_request(&setup.url("/users/42?q=rust&sig=secret"))
        .extension(UrlTemplate::new("/users/{id}"))
        .body(Body::empty())
        .unwrap();
    let (status, seen) = call(&mut client, request).with_context(cx).await.unwrap();
    assert_eq!(status, StatusCode::OK);

    let span = the_only_span(&setup);
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(span.span_context.trace_id(), parent.trace_id());
    assert_eq!(span.parent_span_id, parent.span_id());
    assert_eq!(span.status, Status::Unset);
    let port = i64::from(setup.server.port());
    let expected = [
        ("http.request.method", Value::from("GET")),
        ("server.address", Value::from("127.0.0.1")),
        ("server.port", Value::from(port)),
        (
            "url.full",
            Value::from(setup.url("/users/42?q=rust&sig=REDACTED")),
        ),
        ("url.template", Value::from("/users/{id}")),
        ("http.response.status_code", Value::from(200)),
        ("network.protocol.version", Value::from("1.1")),
    ];
    for (key, value) in &expected {
        assert_eq!(attribute(&span, key), Some(value), "{key}");
    }
    assert_eq!(
        span.attributes.len(),
        expected.len(),
        "{:?}",
        span.attributes
    );

    // The server continued the client span, and got the baggage.
    let traceparent = format!(
        "00-{}-{}-01",
        span.span_context.trace_id(),
        span.span_context.span_id()
    );
    assert_eq!(seen, format!("{traceparent} tenant=acme"));

    let points = setup.durations();
    assert_eq!(points.len(), 1);
    assert_eq!(
        attribute_set(points[0].attributes()),
        strings(&[
            "http.request.method=GET",
            "server.address=127.0.0.1",
            &format!("server.port={port}"),
            "url.template=/users/{id}",
            "network.protocol.version=1.1",
            "http.response.status_code=200",
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_without_a_template_is_named_by_its_method_and_an_unknown_method_is_other() {
    let setup = Setup::start(Sampler::AlwaysOn).await;
    let mut client = ServiceBuilder::new()
        .layer(setup.layer().build())
        .service(hyper_client());

    let request = http::Request::builder()
        .method("PURGE")
        .uri(setup.url("/users/7"))
        .extension(ResendCount(2))
        .body(Body::empty())
        .unwrap();
    let (status, _) = call(&mut client, request).await.unwrap();
    // axum answers an unrouted method with 405: a failed call.
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let span = the_only_span(&setup);
    assert_eq!(span.name, "HTTP");
    assert_eq!(span.parent_span_id, SpanId::INVALID, "a root span");
    assert_eq!(
        attribute(&span, "http.request.method"),
        Some(&Value::from("_OTHER"))
    );
    assert_eq!(
        attribute(&span, "http.request.method_original"),
        Some(&Value::from("PURGE"))
    );
    assert_eq!(
        attribute(&span, "http.request.resend_count"),
        Some(&Value::from(2))
    );
    assert_eq!(attribute(&span, "url.template"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_4xx_or_5xx_response_fails_the_call_with_its_status_code_as_error_type() {
    let setup = Setup::start(Sampler::AlwaysOn).await;
    let mut client = ServiceBuilder::new()
        .layer(setup.layer().build())
        .service(hyper_client());

    for (path, code) in [("/missing", 404_i64), ("/error", 500)] {
        setup.spans.reset();
        let request = get_request(&setup.url(path)).body(Body::empty()).unwrap();
        let (status, _) = call(&mut client, request).await.unwrap();
        assert_eq!(i64::from(status.as_u16()), code);
        let span = the_only_span(&setup);
        assert_eq!(span.status, Status::error(""), "{path}");
        assert_eq!(
            attribute(&span, "error.type"),
            Some(&Value::from(code.to_string()))
        );
        assert_eq!(
            attribute(&span, "http.response.status_code"),
            Some(&Value::from(code))
        );
    }
    let errors: BTreeSet<String> = setup
        .durations()
        .iter()
        .flat_map(|point| point.attributes())
        .filter(|attribute| attribute.key.as_str() == "error.type")
        .map(|attribute| attribute.value.to_string())
        .collect();
    assert_eq!(errors, strings(&["404", "500"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_and_a_timeout_are_errors_named_by_what_happened() {
    let setup = Setup::start(Sampler::AlwaysOn).await;

    // A port nothing listens on any more.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut client = ServiceBuilder::new()
        .layer(setup.layer().build())
        .service(hyper_client());
    let request = get_request(&format!("http://{closed}/users/1"))
        .body(Body::empty())
        .unwrap();
    let error = call(&mut client, request).await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    let span = the_only_span(&setup);
    assert_eq!(span.status, Status::error(""));
    assert_eq!(
        attribute(&span, "error.type"),
        Some(&Value::from("connection_refused"))
    );
    assert_eq!(attribute(&span, "http.response.status_code"), None);

    // A timeout below the layer.
    setup.spans.reset();
    let mut client = ServiceBuilder::new()
        .layer(setup.layer().build())
        .timeout(Duration::from_millis(200))
        .service(hyper_client());
    let request = get_request(&setup.url("/slow"))
        .body(Body::empty())
        .unwrap();
    let error: BoxError = call(&mut client, request).await.unwrap_err();
    assert!(error.is::<tower::timeout::error::Elapsed>(), "{error:?}");
    let span = the_only_span(&setup);
    assert_eq!(span.status, Status::error(""));
    assert_eq!(
        attribute(&span, "error.type"),
        Some(&Value::from("timeout"))
    );

    let errors: BTreeSet<String> = setup
        .durations()
        .iter()
        .map(|point| attribute_set(point.attributes()))
        .flat_map(|set| set.into_iter().filter(|kv| kv.starts_with("error.type=")))
        .collect();
    assert_eq!(
        errors,
        strings(&["error.type=connection_refused", "error.type=timeout"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_ends_with_the_last_frame_of_its_body() {
    let setup = Setup::start(Sampler::AlwaysOn).await;
    let mut client = ServiceBuilder::new()
        .layer(setup.layer().build())
        .service(hyper_client());

    let started = Instant::now();
    let request = get_request(&setup.url("/slow-body"))
        .body(Body::empty())
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    assert!(
        setup.finished_spans().is_empty(),
        "the span ended with the response head"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let elapsed = started.elapsed();
    assert_eq!(body, "first last");

    let span = the_only_span(&setup);
    let span_duration = span.end_time.duration_since(span.start_time).unwrap();
    assert!(
        span_duration >= Duration::from_millis(300),
        "{span_duration:?}"
    );
    assert!(span_duration <= elapsed, "{span_duration:?} > {elapsed:?}");
    let points = setup.durations();
    assert_eq!(points.len(), 1);
    assert!(points[0].sum() >= 0.3, "{}", points[0].sum());
    // The span and the metric measure the same time.
    assert!((points[0].sum() - span_duration.as_secs_f64()).abs() < 1e-3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_dropped_before_its_end_is_a_cancellation_not_an_error() {
    let setup = Setup::start(Sampler::AlwaysOn).await;
    let mut client = ServiceBuilder::new()
        .layer(setup.layer().build())
        .service(hyper_client());

    let request = get_request(&setup.url("/slow-body"))
        .body(Body::empty())
        .unwrap();
    let response = client.ready().await.unwrap().call(request).await.unwrap();
    drop(response);
    let span = the_only_span(&setup);
    assert_eq!(span.status, Status::Unset);
    assert_eq!(attribute(&span, "error.type"), None);
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&Value::from(200))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_info_and_sensitive_query_values_never_reach_url_full() {
    let setup = Setup::start(Sampler::AlwaysOn).await;
    let mut client = ServiceBuilder::new()
        .layer(setup.layer().build())
        .service(hyper_client());

    let url = format!(
        "http://alice:s3cret@{}/users/1?X-Amz-Signature=sig0123&X-Amz-Credential=AKIDEXAMPLE&page=2",
        setup.server
    );
    let request = get_request(&url).body(Body::empty()).unwrap();
    call(&mut client, request).await.unwrap();
    let span = the_only_span(&setup);
    assert_eq!(
        attribute(&span, "url.full"),
        Some(&Value::from(format!(
            "http://REDACTED:REDACTED@{}/users/1?X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&page=2",
            setup.server
        )))
    );
    assert_eq!(
        attribute(&span, "server.address"),
        Some(&Value::from("127.0.0.1"))
    );
    let everything = format!("{:?} {:?}", span.attributes, setup.durations());
    for secret in ["alice", "s3cret", "sig0123", "AKIDEXAMPLE"] {
        assert!(!everything.contains(secret), "{secret} in {everything}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sampled_out_call_records_no_span_and_still_propagates_the_trace() {
    let setup = Setup::start(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))).await;
    let mut client = ServiceBuilder::new()
        .layer(setup.layer().build())
        .service(hyper_client());

    // A caller whose trace was sampled out upstream.
    let upstream = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::NOT_SAMPLED,
        true,
        TraceState::NONE,
    );
    let cx = Context::current().with_remote_span_context(upstream);
    let request = get_request(&setup.url("/users/1"))
        .body(Body::empty())
        .unwrap();
    let (_, seen) = call(&mut client, request).with_context(cx).await.unwrap();

    assert!(setup.finished_spans().is_empty());
    assert_eq!(
        seen, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 -",
        "the caller's context goes on, unsampled"
    );
    // The duration is recorded whatever the sampling.
    assert_eq!(setup.durations()[0].count(), 1);
}

#[cfg(feature = "reqwest")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reqwest_client_gets_the_same_span_context_and_duration_through_its_middleware() {
    let setup = Setup::start(Sampler::AlwaysOn).await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(setup.layer().build())
        .build();

    let response = client
        .get(setup.url("/users/42?sig=secret"))
        .with_extension(UrlTemplate::new("/users/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.url().as_str(), setup.url("/users/42?sig=secret"));
    let seen = response.text().await.unwrap();
    let span = the_only_span(&setup);
    assert_eq!(span.name, "GET /users/{id}");
    assert_eq!(span.span_kind, SpanKind::Client);
    assert_eq!(
        attribute(&span, "url.full"),
        Some(&Value::from(setup.url("/users/42?sig=REDACTED")))
    );
    assert_eq!(
        attribute(&span, "http.response.status_code"),
        Some(&Value::from(200))
    );
    assert_eq!(
        seen,
        format!(
            "00-{}-{}-01 -",
            span.span_context.trace_id(),
            span.span_context.span_id()
        )
    );

    // The call ends with the body.
    setup.spans.reset();
    let response = client.get(setup.url("/slow-body")).send().await.unwrap();
    assert!(setup.finished_spans().is_empty());
    assert_eq!(response.text().await.unwrap(), "first last");
    let span = the_only_span(&setup);
    let span_duration = span.end_time.duration_since(span.start_time).unwrap();
    assert!(
        span_duration >= Duration::from_millis(300),
        "{span_duration:?}"
    );

    // A refused connection.
    setup.spans.reset();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let error = client
        .get(format!("http://{closed}/"))
        .send()
        .await
        .unwrap_err();
    assert!(error.is_connect(), "{error:?}");
    let span = the_only_span(&setup);
    assert_eq!(span.status, Status::error(""));
    assert_eq!(
        attribute(&span, "error.type"),
        Some(&Value::from("connection_refused"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_no_op_tracer_the_callers_context_still_goes_out() {
    let setup = Setup::start(Sampler::AlwaysOn).await;
    let layer = setup
        .layer()
        .tracer(opentelemetry::trace::noop::NoopTracer::new())
        .build();
    let mut client = ServiceBuilder::new().layer(layer).service(hyper_client());
    let upstream = SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        TraceFlags::SAMPLED,
        true,
        TraceState::NONE,
    );
    // The first call finds the tracer a no-op, the second starts no span at all.
    for _ in 0..2 {
        let cx = Context::current().with_remote_span_context(upstream.clone());
        let request = get_request(&setup.url("/users/1"))
            .body(Body::empty())
            .unwrap();
        let (_, seen) = call(&mut client, request).with_context(cx).await.unwrap();
        assert_eq!(
            seen,
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 -"
        );
    }
    assert_eq!(setup.durations()[0].count(), 2);
}

/// A service under `MonitorLayer` whose `/call` calls `downstream`'s `/users/1` through
/// `client`, and whose other routes answer themselves; both record into `setup`'s providers.
fn calling_service<C, B>(setup: &Setup, client: C, downstream: String) -> Router
where
    C: Service<http::Request<Body>, Response = http::Response<B>> + Clone + Send + Sync + 'static,
    C::Future: Send,
    C::Error: std::fmt::Debug,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    let call_downstream = move || {
        let client = client.clone();
        let url = format!("{downstream}/users/1");
        async move {
            let request = get_request(&url).body(Body::empty()).unwrap();
            let response = client.oneshot(request).await.unwrap();
            let body = response.into_body().collect().await.unwrap().to_bytes();
            String::from_utf8_lossy(&body).into_owned()
        }
    };
    Router::new()
        .route("/call", get(call_downstream))
        .route("/users/{id}", get(echo_context))
        .layer(
            otel_monitor::MonitorLayer::builder()
                .tracer(setup.tracer_provider.tracer("server"))
                .meter(setup.meter_provider.meter("server"))
                .propagator(TraceContextPropagator::new())
                .build(),
        )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_client_layer_no_context_goes_out_and_the_downstream_starts_a_new_trace() {
    let setup = Setup::start(Sampler::AlwaysOn).await;
    let downstream = support::serve(calling_service(&setup, hyper_client(), String::new())).await;
    let downstream = format!("http://{downstream}");
    let traced = ServiceBuilder::new()
        .layer(setup.layer().build())
        .service(hyper_client());
    let with_layer = support::serve(calling_service(&setup, traced, downstream.clone())).await;
    let without_layer =
        support::serve(calling_service(&setup, hyper_client(), downstream.clone())).await;

    for (upstream, continued) in [(with_layer, true), (without_layer, false)] {
        setup.spans.reset();
        let (status, _, body) = support::client::get(&format!("http://{upstream}/call"), &[]).await;
        assert_eq!(status, StatusCode::OK);
        let spans = setup.finished_spans();
        let server = |name: &str| {
            spans
                .iter()
                .find(|span| span.span_kind == SpanKind::Server && span.name == name)
                .unwrap_or_else(|| panic!("no SERVER span {name} in {spans:#?}"))
        };
        let (upstream, downstream) = (server("GET /call"), server("GET /users/{id}"));
        let client = spans.iter().find(|span| span.span_kind == SpanKind::Client);
        if continued {
            let client = client.expect("a CLIENT span");
            assert_eq!(client.parent_span_id, upstream.span_context.span_id());
            assert_eq!(downstream.parent_span_id, client.span_context.span_id());
            assert_eq!(
                downstream.span_context.trace_id(),
                upstream.span_context.trace_id()
            );
        } else {
            assert!(client.is_none());
            assert_eq!(&body[..], b"- -", "no traceparent, no baggage went out");
            assert_eq!(downstream.parent_span_id, SpanId::INVALID);
            assert_ne!(
                downstream.span_context.trace_id(),
                upstream.span_context.trace_id()
            );
        }
    }
}
