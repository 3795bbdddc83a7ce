//! `MonitorLayer` in front of a real tonic server: gRPC calls become spans and metrics of the RPC
//! semantic conventions (v1.44.0), with the status read from the trailers or from a
//! trailers-only head, exported through the real OTLP/HTTP exporter to an in-process receiver.

mod support;

use std::{collections::BTreeSet, net::SocketAddr, time::Duration};

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_proto::tonic::{
    common::v1::{KeyValue, any_value::Value as AnyValue},
    metrics::v1::{Metric, metric::Data},
    trace::v1::{span::SpanKind, status::StatusCode as SpanStatus},
};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::{metrics::SdkMeterProvider, trace::SdkTracerProvider};
use otel_monitor::{MonitorClient, MonitorClientLayer, MonitorLayer};
use support::{
    OtlpReceiver, ReceivedSpan,
    greeter::{GreeterClient, GreeterServer},
    span_named,
};
use tower::Layer as _;

const DEADLINE: Duration = Duration::from_secs(10);

/// The greeter served by tonic behind `MonitorLayer`, its own tracer and meter providers, and
/// the receiver they export to.
struct Monitored {
    receiver: OtlpReceiver,
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    layer: MonitorLayer,
    client_layer: MonitorClientLayer,
    address: SocketAddr,
}

impl Monitored {
    async fn start() -> Self {
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
        let layer = MonitorLayer::builder()
            .tracer(tracer_provider.tracer("otel-monitor"))
            .meter(meter_provider.meter("otel-monitor"))
            .propagator(TraceContextPropagator::new())
            .build();
        let client_layer = MonitorClientLayer::builder()
            .tracer(tracer_provider.tracer("otel-monitor"))
            .meter(meter_provider.meter("otel-monitor"))
            .propagator(TraceContextPropagator::new())
            .build();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            .layer(layer.clone())
            .add_service(GreeterServer)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener));
        tokio::spawn(server);
        Self {
            receiver,
            tracer_provider,
            meter_provider,
            layer,
            client_layer,
            address,
        }
    }

    /// A client whose channel is wrapped in `MonitorClientLayer`, its requests naming the
    /// server (`with_origin`).
    async fn monitored_client(&self) -> GreeterClient<MonitorClient<tonic::transport::Channel>> {
        let origin: http::Uri = format!("http://{}", self.address).parse().unwrap();
        let channel = tonic::transport::Channel::builder(origin.clone())
            .connect()
            .await
            .unwrap();
        GreeterClient::with_origin(self.client_layer.layer(channel), origin)
    }

    async fn client(&self) -> GreeterClient<tonic::transport::Channel> {
        GreeterClient::connect(self.address).await
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

    /// Collects and exports the metrics now: `rpc.server.call.duration`, and the names
    /// exported.
    async fn call_durations(&self) -> (Metric, BTreeSet<String>) {
        self.call_duration("rpc.server.call.duration").await
    }

    /// Collects and exports the metrics now: the metric `name`, and the names exported.
    async fn call_duration(&self, name: &str) -> (Metric, BTreeSet<String>) {
        let provider = self.meter_provider.clone();
        let exports_before = self.receiver.metrics().len();
        tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
            .await
            .unwrap();
        let metric = support::wait_for(&format!("an export of {name}"), DEADLINE, || {
            let metrics = self.receiver.metrics();
            metrics[exports_before.min(metrics.len())..]
                .iter()
                .rev()
                .find(|received| received.metric.name == name)
                .map(|received| received.metric.clone())
        })
        .await;
        let names = self
            .receiver
            .metrics()
            .into_iter()
            .map(|received| received.metric.name)
            .collect();
        (metric, names)
    }
}

fn status_of(span: &ReceivedSpan) -> SpanStatus {
    span.span
        .status
        .as_ref()
        .map_or(SpanStatus::Unset, |status| status.code())
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

/// The histogram's points as (attributes, count).
fn points(metric: &Metric) -> BTreeSet<(BTreeSet<String>, u64)> {
    let Some(Data::Histogram(histogram)) = &metric.data else {
        panic!("{} is not a histogram: {:?}", metric.name, metric.data);
    };
    histogram
        .data_points
        .iter()
        .map(|point| (attribute_set(&point.attributes), point.count))
        .collect()
}

fn strings(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|item| (*item).to_owned()).collect()
}

/// The attributes of a `SayHello` span that the outcome does not change.
fn assert_say_hello_span(span: &ReceivedSpan, address: SocketAddr) {
    assert_eq!(span.span.kind(), SpanKind::Server);
    assert_eq!(span.attr_str("rpc.system.name"), Some("grpc"));
    assert_eq!(span.attr_str("server.address"), Some("127.0.0.1"));
    assert_eq!(
        span.attr_int("server.port"),
        Some(i64::from(address.port()))
    );
    // The peer as tonic's own server gives it.
    assert_eq!(span.attr_str("network.peer.address"), Some("127.0.0.1"));
    assert!(
        span.attr_int("network.peer.port")
            .is_some_and(|port| port > 0)
    );
    // Under the RPC conventions only: none of the HTTP ones, nor the names v1.44 replaced.
    for key in [
        "http.request.method",
        "http.response.status_code",
        "url.path",
        "rpc.system",
        "rpc.service",
        "rpc.grpc.status_code",
    ] {
        assert_eq!(span.attr(key), None, "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unary_call_is_a_server_span_and_a_call_duration_of_the_rpc_conventions() {
    let app = Monitored::start().await;
    let mut client = app.client().await;
    assert_eq!(client.say_hello("world").await.unwrap(), "hello world");

    let spans = app.spans(1).await;
    let span = &spans[0];
    assert_eq!(span.span.name, "greeter.Greeter/SayHello");
    assert_say_hello_span(span, app.address);
    assert_eq!(
        span.attr_str("rpc.method"),
        Some("greeter.Greeter/SayHello")
    );
    assert_eq!(span.attr("rpc.method_original"), None);
    assert_eq!(span.attr_str("rpc.response.status_code"), Some("OK"));
    assert_eq!(span.attr("error.type"), None);
    assert_eq!(status_of(span), SpanStatus::Unset);

    let (duration, names) = app.call_durations().await;
    assert_eq!(duration.unit, "s");
    assert_eq!(
        points(&duration),
        BTreeSet::from([(
            strings(&[
                r#"rpc.system.name="grpc""#,
                r#"rpc.method="greeter.Greeter/SayHello""#,
                r#"rpc.response.status_code="OK""#,
            ]),
            1
        )])
    );
    // Instead of the HTTP server metrics, not beside them.
    let http: Vec<_> = names
        .iter()
        .filter(|name| name.starts_with("http.server."))
        .collect();
    assert!(http.is_empty(), "{http:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_in_the_trailers_after_the_messages_decides_the_outcome() {
    let app = Monitored::start().await;
    let mut client = app.client().await;
    for (name, code) in [("ok", tonic::Code::Ok), ("fail", tonic::Code::DataLoss)] {
        let mut stream = client.stream_hellos(name).await.unwrap();
        let first = stream.message().await.unwrap();
        assert_eq!(
            first.map(|reply| reply.message),
            Some(format!("hello {name}"))
        );
        let end = stream.message().await;
        assert_eq!(
            end.map_err(|status| status.code()),
            match code {
                tonic::Code::Ok => Ok(None),
                code => Err(code),
            }
        );
    }

    let spans = app.spans(2).await;
    assert!(
        spans
            .iter()
            .all(|span| span.span.name == "greeter.Greeter/StreamHellos")
    );
    let (ok, lost): (Vec<_>, Vec<_>) = spans
        .iter()
        .partition(|span| span.attr_str("rpc.response.status_code") == Some("OK"));
    assert_eq!((ok.len(), lost.len()), (1, 1));
    assert_eq!(ok[0].attr("error.type"), None);
    assert_eq!(status_of(ok[0]), SpanStatus::Unset);
    assert_eq!(
        lost[0].attr_str("rpc.response.status_code"),
        Some("DATA_LOSS")
    );
    assert_eq!(lost[0].attr_str("error.type"), Some("DATA_LOSS"));
    assert_eq!(status_of(lost[0]), SpanStatus::Error);

    let (duration, _) = app.call_durations().await;
    let method = r#"rpc.method="greeter.Greeter/StreamHellos""#;
    assert_eq!(
        points(&duration),
        BTreeSet::from([
            (
                strings(&[
                    r#"rpc.system.name="grpc""#,
                    method,
                    r#"rpc.response.status_code="OK""#
                ]),
                1
            ),
            (
                strings(&[
                    r#"rpc.system.name="grpc""#,
                    method,
                    r#"rpc.response.status_code="DATA_LOSS""#,
                    r#"error.type="DATA_LOSS""#,
                ]),
                1
            ),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trailers_only_answers_are_errors_only_for_the_codes_a_server_span_counts() {
    let app = Monitored::start().await;
    let mut client = app.client().await;
    let code = |result: Result<String, tonic::Status>| result.unwrap_err().code();
    assert_eq!(
        code(client.say_hello("").await),
        tonic::Code::InvalidArgument
    );
    assert_eq!(code(client.say_hello("boom").await), tonic::Code::Internal);
    assert_eq!(
        code(client.say_hello_as("Unheard", "x").await),
        tonic::Code::Unimplemented
    );

    let spans = app.spans(3).await;
    // The client's mistake: not an error of the server (v1.44.0, grpc.md).
    let invalid = spans
        .iter()
        .find(|span| span.attr_str("rpc.response.status_code") == Some("INVALID_ARGUMENT"))
        .expect("the INVALID_ARGUMENT span");
    assert_eq!(invalid.span.name, "greeter.Greeter/SayHello");
    assert_say_hello_span(invalid, app.address);
    assert_eq!(invalid.attr("error.type"), None);
    assert_eq!(status_of(invalid), SpanStatus::Unset);

    let internal = span_named(&spans, "greeter.Greeter/SayHello");
    let internal = if internal.attr_str("rpc.response.status_code") == Some("INTERNAL") {
        internal
    } else {
        spans
            .iter()
            .find(|span| span.attr_str("rpc.response.status_code") == Some("INTERNAL"))
            .expect("the INTERNAL span")
    };
    assert_eq!(internal.attr_str("error.type"), Some("INTERNAL"));
    assert_eq!(status_of(internal), SpanStatus::Error);

    // A method the server does not have: `_OTHER`, and the span named after the system.
    let unknown = span_named(&spans, "grpc");
    assert_eq!(unknown.attr_str("rpc.method"), Some("_OTHER"));
    let methods = unknown.span.attributes.iter();
    assert_eq!(methods.filter(|kv| kv.key == "rpc.method").count(), 1);
    assert_eq!(
        unknown.attr_str("rpc.method_original"),
        Some("greeter.Greeter/Unheard")
    );
    assert_eq!(
        unknown.attr_str("rpc.response.status_code"),
        Some("UNIMPLEMENTED")
    );
    assert_eq!(unknown.attr_str("error.type"), Some("UNIMPLEMENTED"));
    assert_eq!(status_of(unknown), SpanStatus::Error);

    let (duration, _) = app.call_durations().await;
    let say_hello = r#"rpc.method="greeter.Greeter/SayHello""#;
    let grpc = r#"rpc.system.name="grpc""#;
    assert_eq!(
        points(&duration),
        BTreeSet::from([
            (
                strings(&[
                    grpc,
                    say_hello,
                    r#"rpc.response.status_code="INVALID_ARGUMENT""#
                ]),
                1
            ),
            (
                strings(&[
                    grpc,
                    say_hello,
                    r#"rpc.response.status_code="INTERNAL""#,
                    r#"error.type="INTERNAL""#
                ]),
                1
            ),
            (
                strings(&[
                    grpc,
                    r#"rpc.method="_OTHER""#,
                    r#"rpc.response.status_code="UNIMPLEMENTED""#,
                    r#"error.type="UNIMPLEMENTED""#
                ]),
                1
            ),
        ])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_client_abandons_ends_cancelled_without_a_status() {
    let app = Monitored::start().await;
    let mut client = app.client().await;
    let mut stream = client.stream_hellos("hang").await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);

    let spans = app.spans(1).await;
    let span = &spans[0];
    assert_eq!(span.span.name, "greeter.Greeter/StreamHellos");
    assert_eq!(span.attr_str("error.type"), Some("cancelled"));
    assert_eq!(span.attr("rpc.response.status_code"), None);
    // The client left; the server did not fail.
    assert_eq!(status_of(span), SpanStatus::Unset);

    let (duration, _) = app.call_durations().await;
    assert_eq!(
        points(&duration),
        BTreeSet::from([(
            strings(&[
                r#"rpc.system.name="grpc""#,
                r#"rpc.method="greeter.Greeter/StreamHellos""#,
                r#"error.type="cancelled""#,
            ]),
            1
        )])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_fails_or_ends_before_the_status_is_a_failed_call() {
    use http_body_util::BodyExt as _;
    use tower::{Layer as _, ServiceExt as _};

    let app = Monitored::start().await;
    // A gRPC service whose response body fails after a message, and one whose body ends with
    // no status at all.
    let service = app.layer.layer(tower::service_fn(
        |request: http::Request<otel_monitor::RequestBody<axum::body::Body>>| async move {
            let fails = request.uri().path().ends_with("/Fails");
            let frames = futures_util::stream::iter(
                [
                    Ok(http_body::Frame::data(bytes::Bytes::from_static(
                        b"\0\0\0\0\0",
                    ))),
                    Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
                ]
                .into_iter()
                .take(if fails { 2 } else { 1 }),
            );
            let body = http_body_util::StreamBody::new(frames);
            Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .header("content-type", "application/grpc")
                    .body(body)
                    .unwrap(),
            )
        },
    ));
    for method in ["Fails", "Ends"] {
        let request = http::Request::post(format!("http://localhost/greeter.Greeter/{method}"))
            .header("content-type", "application/grpc")
            .body(axum::body::Body::empty())
            .unwrap();
        let response = service.clone().oneshot(request).await.unwrap();
        let collected = response.into_body().collect().await;
        assert_eq!(collected.is_err(), method == "Fails");
    }

    let spans = app.spans(2).await;
    let failed = span_named(&spans, "greeter.Greeter/Fails");
    assert_eq!(failed.attr_str("error.type"), Some("connection_reset"));
    assert_eq!(failed.attr("rpc.response.status_code"), None);
    assert_eq!(status_of(failed), SpanStatus::Error);
    let ended = span_named(&spans, "greeter.Greeter/Ends");
    assert_eq!(ended.attr_str("error.type"), Some("missing_grpc_status"));
    assert_eq!(ended.attr("rpc.response.status_code"), None);
    assert_eq!(status_of(ended), SpanStatus::Error);
}

/// The span of `kind` among `spans` whose `rpc.response.status_code` is `code`.
fn span_of<'a>(spans: &'a [ReceivedSpan], kind: SpanKind, code: Option<&str>) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.span.kind() == kind && span.attr_str("rpc.response.status_code") == code)
        .unwrap_or_else(|| panic!("no {kind:?} span with status {code:?} among {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_client_layer_is_the_client_span_parent_of_the_server_span() {
    let app = Monitored::start().await;
    let mut client = app.monitored_client().await;
    assert_eq!(client.say_hello("world").await.unwrap(), "hello world");

    let spans = app.spans(2).await;
    let client_span = span_of(&spans, SpanKind::Client, Some("OK"));
    let server_span = span_of(&spans, SpanKind::Server, Some("OK"));
    assert_eq!(client_span.span.name, "greeter.Greeter/SayHello");
    assert_eq!(client_span.attr_str("rpc.system.name"), Some("grpc"));
    assert_eq!(
        client_span.attr_str("rpc.method"),
        Some("greeter.Greeter/SayHello")
    );
    assert_eq!(client_span.attr_str("server.address"), Some("127.0.0.1"));
    assert_eq!(
        client_span.attr_int("server.port"),
        Some(i64::from(app.address.port()))
    );
    assert_eq!(client_span.attr("error.type"), None);
    assert_eq!(status_of(client_span), SpanStatus::Unset);
    for key in [
        "http.request.method",
        "url.full",
        "http.response.status_code",
    ] {
        assert_eq!(client_span.attr(key), None, "{key}");
    }
    // One trace: the server's span is the client's child.
    assert_eq!(server_span.trace_id_hex(), client_span.trace_id_hex());
    assert_eq!(server_span.parent_span_id_hex(), client_span.span_id_hex());

    let (duration, names) = app.call_duration("rpc.client.call.duration").await;
    assert_eq!(duration.unit, "s");
    assert_eq!(
        points(&duration),
        BTreeSet::from([(
            strings(&[
                r#"rpc.system.name="grpc""#,
                r#"rpc.method="greeter.Greeter/SayHello""#,
                r#"rpc.response.status_code="OK""#,
                r#"server.address="127.0.0.1""#,
                &format!("server.port={}", app.address.port()),
            ]),
            1
        )])
    );
    assert!(!names.contains("http.client.request.duration"), "{names:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_call_through_the_client_layer_carries_the_handlers_trace_to_the_server() {
    use opentelemetry::{
        context::FutureExt as _,
        trace::{TraceContextExt as _, Tracer as _},
    };

    let app = Monitored::start().await;
    let mut plain = app.client().await;
    let mut monitored = app.monitored_client().await;
    // The calls a handler makes, inside its span.
    let handler = app.tracer_provider.tracer("handler").start("handler");
    let cx = opentelemetry::Context::current_with_span(handler);
    let handler_trace = cx.span().span_context().trace_id().to_string();
    async {
        assert_eq!(plain.say_hello("plain").await.unwrap(), "hello plain");
        assert_eq!(
            monitored.say_hello("monitored").await.unwrap(),
            "hello monitored"
        );
    }
    .with_context(cx.clone())
    .await;
    cx.span().end();

    // handler, the plain call's SERVER span, the monitored call's CLIENT and SERVER spans.
    let spans = app.spans(4).await;
    let client_span = span_of(&spans, SpanKind::Client, Some("OK"));
    let servers: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|span| span.span.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 2, "{spans:#?}");
    let (continued, new): (Vec<&ReceivedSpan>, Vec<&ReceivedSpan>) = servers
        .into_iter()
        .partition(|span| span.trace_id_hex() == handler_trace);
    // Through the layer: the handler's trace, under the CLIENT span.
    assert_eq!(continued.len(), 1, "{spans:#?}");
    assert_eq!(continued[0].parent_span_id_hex(), client_span.span_id_hex());
    assert_eq!(client_span.trace_id_hex(), handler_trace);
    // Without it: no context went out, so the server started a trace of its own.
    assert_eq!(new.len(), 1, "{spans:#?}");
    assert_eq!(new[0].parent_span_id_hex(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_code_but_ok_fails_the_client_span_from_the_head_or_the_trailers() {
    let app = Monitored::start().await;
    let mut client = app.monitored_client().await;
    let status = client.say_hello("").await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    let mut stream = client.stream_hellos("fail").await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    assert_eq!(
        stream.message().await.unwrap_err().code(),
        tonic::Code::DataLoss
    );

    let spans = app.spans(4).await;
    // A trailers-only INVALID_ARGUMENT: the client's failure, not the server's.
    let client_invalid = span_of(&spans, SpanKind::Client, Some("INVALID_ARGUMENT"));
    assert_eq!(
        client_invalid.attr_str("error.type"),
        Some("INVALID_ARGUMENT")
    );
    assert_eq!(status_of(client_invalid), SpanStatus::Error);
    let server_invalid = span_of(&spans, SpanKind::Server, Some("INVALID_ARGUMENT"));
    assert_eq!(status_of(server_invalid), SpanStatus::Unset);
    assert_eq!(
        server_invalid.parent_span_id_hex(),
        client_invalid.span_id_hex()
    );
    // DATA_LOSS in the trailers after a message.
    let client_lost = span_of(&spans, SpanKind::Client, Some("DATA_LOSS"));
    assert_eq!(client_lost.span.name, "greeter.Greeter/StreamHellos");
    assert_eq!(client_lost.attr_str("error.type"), Some("DATA_LOSS"));
    assert_eq!(status_of(client_lost), SpanStatus::Error);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_the_caller_abandons_is_cancelled_on_the_client_and_a_refused_connection_has_its_error_type()
 {
    let app = Monitored::start().await;
    let mut client = app.monitored_client().await;
    let mut stream = client.stream_hellos("hang").await.unwrap();
    assert!(stream.message().await.unwrap().is_some());
    drop(stream);

    // A server that is not there: the call fails before any status.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin: http::Uri = format!("http://{}", closed.local_addr().unwrap())
        .parse()
        .unwrap();
    drop(closed);
    let channel = tonic::transport::Channel::builder(origin.clone()).connect_lazy();
    let mut nowhere = GreeterClient::with_origin(app.client_layer.layer(channel), origin);
    assert_eq!(
        nowhere.say_hello("anyone").await.unwrap_err().code(),
        tonic::Code::Unavailable
    );

    let spans = app.spans(3).await;
    let cancelled = span_of(&spans, SpanKind::Client, Some("CANCELLED"));
    assert_eq!(cancelled.attr_str("error.type"), Some("CANCELLED"));
    assert_eq!(status_of(cancelled), SpanStatus::Error);
    let refused = span_of(&spans, SpanKind::Client, None);
    assert_eq!(refused.attr_str("error.type"), Some("connection_refused"));
    assert_eq!(status_of(refused), SpanStatus::Error);
}
