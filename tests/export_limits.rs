//! No span export is larger than a receiver takes: through [`Telemetry`]'s real pipeline, a
//! batch of 512 spans of about 20 KB each (10 MiB) reaches a receiver that refuses messages over
//! 4 MiB, as gRPC servers do by default, over both protocols and through a real collector
//! (rotel, whose gRPC receiver has the same default); a span too large to be sent at all is
//! dropped and counted with `error.type=too_large`, and the spans around it arrive.
//!
//! Tests set environment variables: each runs in a process of its own (cargo-nextest).

mod support;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{Router, body::Bytes, extract::DefaultBodyLimit, routing::post};
use opentelemetry::{
    KeyValue,
    trace::{Span as _, Tracer as _, TracerProvider as _},
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
    trace_service_server::{TraceService, TraceServiceServer},
};
use otel_monitor::Telemetry;
use prost::Message;
use support::{OtlpReceiver, Rotel};

/// What the receivers here accept in one message: 4 MiB, tonic's default
/// `max_decoding_message_size` (which the gRPC server below keeps) and the default of gRPC
/// servers generally (grpc-go, the OpenTelemetry Collector, rotel).
const RECEIVER_LIMIT: usize = 4 * 1024 * 1024;

/// The spans of one full batch (the default `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`).
const BATCH: usize = 512;

/// Each large span's attributes: 10 of 2,000 bytes (within the default attribute value length
/// limit of 2,048 characters), about 20 KB a span.
const ATTRIBUTES: usize = 10;
const ATTRIBUTE_BYTES: usize = 2_000;

/// Sets environment variables before the test starts any thread that could read them.
fn set_env(vars: &[(&str, &str)]) {
    for (name, value) in vars {
        // SAFETY: called first thing in a test that runs alone in its process (cargo-nextest),
        // before any other thread runs.
        unsafe { std::env::set_var(name, value) };
    }
}

/// One trace export a [`LimitedReceiver`] took: its size and its spans' names.
#[derive(Debug, Clone)]
struct Request {
    bytes: usize,
    spans: Vec<String>,
}

type Requests = Arc<Mutex<Vec<Request>>>;

fn record(requests: &Requests, request: &ExportTraceServiceRequest, bytes: usize) {
    let spans = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .flat_map(|s| &s.spans)
        .map(|span| span.name.clone())
        .collect();
    requests
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .push(Request { bytes, spans });
}

/// A trace receiver that refuses messages over [`RECEIVER_LIMIT`], as the usual receivers do,
/// and records the size of each it takes: over gRPC tonic's own limit (an over-limit message
/// is answered RESOURCE_EXHAUSTED), over OTLP/HTTP axum's body limit (413).
struct LimitedReceiver {
    requests: Requests,
    grpc: String,
    http: String,
}

#[derive(Clone)]
struct Sink(Requests);

#[tonic::async_trait]
impl TraceService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        // The message's size as sent: the crate's encoding is prost's, byte for byte
        // (src/export/encoding.rs), so encoding what was decoded gives the same length.
        let request = request.into_inner();
        record(&self.0, &request, request.encoded_len());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

impl LimitedReceiver {
    async fn start() -> LimitedReceiver {
        let requests = Requests::default();
        let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let server = tonic::transport::Server::builder()
            // tonic's default decoding limit, stated: the very limit under test.
            .add_service(
                TraceServiceServer::new(Sink(requests.clone()))
                    .max_decoding_message_size(RECEIVER_LIMIT),
            )
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(grpc));
        tokio::spawn(server);
        let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http_addr = http.local_addr().unwrap();
        let sink = requests.clone();
        let app = Router::new()
            .route(
                "/v1/traces",
                post(move |body: Bytes| async move {
                    let request = ExportTraceServiceRequest::decode(body.as_ref()).unwrap();
                    record(&sink, &request, body.len());
                    ExportTraceServiceResponse::default().encode_to_vec()
                }),
            )
            .layer(DefaultBodyLimit::max(RECEIVER_LIMIT));
        tokio::spawn(async move { axum::serve(http, app).await });
        LimitedReceiver {
            requests,
            grpc: format!("http://{grpc_addr}"),
            http: format!("http://{http_addr}/v1/traces"),
        }
    }

    /// The traces endpoint for `protocol`.
    fn endpoint(&self, protocol: &str) -> &str {
        match protocol {
            "grpc" => &self.grpc,
            _ => &self.http,
        }
    }

    fn requests(&self) -> Vec<Request> {
        self.requests
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Starts the pipeline with spans going to `traces_endpoint` over `protocol` and metrics, every
/// 100 ms, to `metrics`; only a full batch (or a flush) exports spans.
fn telemetry(protocol: &str, traces_endpoint: &str, metrics: &OtlpReceiver) -> Telemetry {
    set_env(&[
        ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", protocol),
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", traces_endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &metrics.http_endpoint()),
        ("OTEL_METRIC_EXPORT_INTERVAL", "100"),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("OTEL_MONITOR_HOST_METRICS", "false"),
        // A single span over 4 MiB needs a longer attribute than the default limit allows.
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "8388608"),
    ]);
    Telemetry::builder()
        .tracing_subscriber(false)
        .init()
        .unwrap()
}

/// Ends a span named `name` with `attributes` of `bytes` bytes each, none like another.
fn end_span(telemetry: &Telemetry, name: &str, attributes: usize, bytes: usize) {
    let tracer = telemetry.tracer_provider().unwrap().tracer("app");
    let attributes = (0..attributes)
        .map(|i| {
            let prefix = format!("{name}/{i}:");
            let value = prefix.clone() + &"v".repeat(bytes - prefix.len());
            KeyValue::new(format!("large.{i}"), value)
        })
        .collect::<Vec<_>>();
    let mut span = tracer
        .span_builder(name.to_owned())
        .with_attributes(attributes)
        .start(&tracer);
    span.end();
}

/// The latest `otel.sdk.exporter.span.exported` counts by `error.type` (`None`: exported).
fn exported_by_error(metrics: &OtlpReceiver) -> BTreeMap<Option<String>, i64> {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

    let mut by_error = BTreeMap::new();
    let Some(metric) = metrics.latest_metric("otel.sdk.exporter.span.exported") else {
        return by_error;
    };
    let Some(Data::Sum(sum)) = metric.metric.data else {
        panic!("{:?}", metric.metric);
    };
    for point in sum.data_points {
        if let Some(number_data_point::Value::AsInt(value)) = point.value {
            let error = support::attr_str(&point.attributes, "error.type").map(str::to_owned);
            *by_error.entry(error).or_default() += value;
        }
    }
    by_error
}

/// Waits until the exported counts are `expected`.
fn wait_for_exported(metrics: &OtlpReceiver, expected: &BTreeMap<Option<String>, i64>) {
    support::wait_for_blocking(
        &format!("otel.sdk.exporter.span.exported to count {expected:?}"),
        Duration::from_secs(20),
        || (exported_by_error(metrics) == *expected).then_some(()),
    );
}

fn names(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix} {i}")).collect()
}

/// Every request within the limit, and all but the last within one span of it: the batch is
/// cut into as few requests as fit, not one per span.
fn assert_split_within_the_limit(requests: &[Request]) {
    let sizes: Vec<usize> = requests.iter().map(|r| r.bytes).collect();
    // More than one span's encoding: its attributes with their keys and framing, its ids,
    // name, times, status and flags.
    let span_bytes = ATTRIBUTES * (ATTRIBUTE_BYTES + 40) + 200;
    assert!(sizes.len() >= 3, "10 MiB in requests of {sizes:?}");
    assert!(
        sizes.iter().all(|&size| size <= RECEIVER_LIMIT),
        "{sizes:?}"
    );
    assert!(
        sizes[..sizes.len() - 1]
            .iter()
            .all(|&size| size > RECEIVER_LIMIT - span_bytes),
        "{sizes:?}"
    );
}

/// 512 spans of ~20 KB in one batch (about 10 MiB): all arrive, in requests within the limit,
/// and are counted as exported.
fn a_batch_over_the_limit_arrives_in_requests_within_it(protocol: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = runtime.block_on(OtlpReceiver::start());
    let traces = runtime.block_on(LimitedReceiver::start());
    let telemetry = telemetry(protocol, traces.endpoint(protocol), &metrics);
    let expected = names("large", BATCH);
    for name in &expected {
        end_span(&telemetry, name, ATTRIBUTES, ATTRIBUTE_BYTES);
    }
    // The 512th span starts the export of the whole batch.
    support::wait_for_blocking("every span of the batch", Duration::from_secs(30), || {
        let received: usize = traces.requests().iter().map(|r| r.spans.len()).sum();
        (received >= BATCH).then_some(())
    });
    let requests = traces.requests();
    let received: Vec<String> = requests.iter().flat_map(|r| r.spans.clone()).collect();
    assert_eq!(received, expected, "every span once, in order");
    assert_split_within_the_limit(&requests);
    wait_for_exported(&metrics, &BTreeMap::from([(None, BATCH as i64)]));
    telemetry.shutdown().unwrap();
}

#[test]
fn over_grpc_a_10_mib_batch_arrives_in_requests_within_4_mib() {
    a_batch_over_the_limit_arrives_in_requests_within_it("grpc");
}

#[test]
fn over_http_a_10_mib_batch_arrives_in_requests_within_4_mib() {
    a_batch_over_the_limit_arrives_in_requests_within_it("http/protobuf");
}

/// One span with a 5 MiB attribute among 40 ordinary ones: those arrive and are counted as
/// exported, it is counted with `error.type=too_large`.
fn a_span_over_the_limit_alone_is_dropped_and_counted(protocol: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let metrics = runtime.block_on(OtlpReceiver::start());
    let traces = runtime.block_on(LimitedReceiver::start());
    let telemetry = telemetry(protocol, traces.endpoint(protocol), &metrics);
    let before = names("before", 20);
    let after = names("after", 20);
    for name in &before {
        end_span(&telemetry, name, 1, 100);
    }
    end_span(&telemetry, "huge", 1, 5 << 20);
    for name in &after {
        end_span(&telemetry, name, 1, 100);
    }
    telemetry.tracer_provider().unwrap().force_flush().unwrap();
    wait_for_exported(
        &metrics,
        &BTreeMap::from([(None, 40), (Some("too_large".to_owned()), 1)]),
    );
    let received: Vec<String> = traces
        .requests()
        .iter()
        .flat_map(|r| r.spans.clone())
        .collect();
    assert_eq!(received, [before, after].concat());
    telemetry.shutdown().unwrap();
}

#[test]
fn over_grpc_a_span_over_4_mib_is_dropped_as_too_large_and_the_others_arrive() {
    a_span_over_the_limit_alone_is_dropped_and_counted("grpc");
}

#[test]
fn over_http_a_span_over_4_mib_is_dropped_as_too_large_and_the_others_arrive() {
    a_span_over_the_limit_alone_is_dropped_and_counted("http/protobuf");
}

/// Through rotel, whose OTLP gRPC receiver refuses messages over 4 MiB by default
/// (`--otlp-grpc-max-recv-msg-size-mib`, default 4): the 10 MiB batch reaches the backend whole.
#[test]
fn a_10_mib_batch_reaches_the_backend_through_rotel() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let backend = runtime.block_on(OtlpReceiver::start());
    let rotel = Rotel::start_with_args(&[
        "--exporter",
        "otlp",
        "--otlp-exporter-endpoint",
        &backend.grpc_endpoint(),
        "--otlp-exporter-retry-initial-backoff",
        "100ms",
        // Rotel's own exports to the backend (a tonic server, 4 MiB too) stay under it: 150
        // spans, 3 MB. A request from the crate (about 200 spans) is cut in two for that, which
        // rotel allows; at 64 a request it would cut in four, and it drops it ("Too many batch
        // items split").
        "--traces-batch-max-size",
        "150",
    ]);
    let telemetry = telemetry("grpc", &rotel.grpc_endpoint(), &backend);
    let expected = names("large", BATCH);
    for name in &expected {
        end_span(&telemetry, name, ATTRIBUTES, ATTRIBUTE_BYTES);
    }
    let spans = runtime.block_on(backend.wait_for_spans(
        "every span of the batch through rotel",
        Duration::from_secs(30),
        |spans| spans.len() >= BATCH,
    ));
    let mut received: Vec<String> = spans.iter().map(|s| s.span.name.clone()).collect();
    received.sort();
    let mut expected = expected;
    expected.sort();
    assert_eq!(received, expected, "every span once");
    wait_for_exported(&backend, &BTreeMap::from([(None, BATCH as i64)]));
    telemetry.shutdown().unwrap();
    drop(rotel);
}
