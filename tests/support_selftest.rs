//! Proves the shared test support works: the in-process OTLP receiver on both transports, and a
//! real rotel collector forwarding to it.

mod support;

use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body_util::{BodyExt, Full};
use hyper::StatusCode;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use support::{OtlpReceiver, Rotel, attr_int};

const TIMEOUT: Duration = Duration::from_secs(10);
const TRACE_ID: [u8; 16] = [0xab; 16];
const SPAN_ID: [u8; 8] = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];

fn string_kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn now_nanos() -> u64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    u64::try_from(since_epoch.as_nanos()).unwrap()
}

fn resource() -> Option<Resource> {
    Some(Resource {
        attributes: vec![string_kv("service.name", "selftest")],
        ..Default::default()
    })
}

fn scope() -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: "selftest-scope".into(),
        version: "1.2.3".into(),
        ..Default::default()
    })
}

/// One export with one 5 ms root span called `name`.
fn trace_request(name: &str) -> ExportTraceServiceRequest {
    let start = now_nanos();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource(),
            scope_spans: vec![ScopeSpans {
                scope: scope(),
                spans: vec![Span {
                    trace_id: TRACE_ID.to_vec(),
                    span_id: SPAN_ID.to_vec(),
                    name: name.into(),
                    start_time_unix_nano: start,
                    end_time_unix_nano: start + 5_000_000,
                    attributes: vec![string_kv("http.route", "/users/{id}")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// One export with one integer gauge called `name`.
fn gauge_request(name: &str, value: i64) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![ScopeMetrics {
                scope: scope(),
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            time_unix_nano: now_nanos(),
                            value: Some(number_data_point::Value::AsInt(value)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

const PROTOBUF: &[(&str, &str)] = &[("content-type", "application/x-protobuf")];

/// POSTs `body` to `url` with these headers, and returns the status and the response body.
async fn post(url: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (StatusCode, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, body)
}

async fn export_traces_grpc(endpoint: String, request: ExportTraceServiceRequest) {
    let mut client = TraceServiceClient::connect(endpoint).await.unwrap();
    client.export(request).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_records_grpc_and_http_exports() {
    let receiver = OtlpReceiver::start().await;

    export_traces_grpc(receiver.grpc_endpoint(), trace_request("over-grpc")).await;
    let url = format!("{}/v1/traces", receiver.http_endpoint());
    let body = trace_request("over-http").encode_to_vec();
    let (status, response) = post(&url, PROTOBUF, body).await;
    assert_eq!(status, StatusCode::OK);
    assert!(response.is_empty(), "an empty ExportTraceServiceResponse");

    let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
    gzip.write_all(&trace_request("over-http-gzip").encode_to_vec())
        .unwrap();
    let gzip_headers = [PROTOBUF[0], ("content-encoding", "gzip")];
    let (status, _) = post(&url, &gzip_headers, gzip.finish().unwrap()).await;
    assert_eq!(status, StatusCode::OK);

    // JSON is refused, and not counted.
    let json = [("content-type", "application/json")];
    let (status, _) = post(&url, &json, b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);

    assert_eq!(receiver.received_requests(), (2, 1));
    let spans = receiver.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.span.name.as_str()).collect();
    assert_eq!(names, ["over-grpc", "over-http", "over-http-gzip"]);

    let span = &spans[1];
    assert_eq!(span.resource_str("service.name"), Some("selftest"));
    assert_eq!(span.scope_name, "selftest-scope");
    assert_eq!(span.scope_version, "1.2.3");
    assert_eq!(span.attr_str("http.route"), Some("/users/{id}"));
    assert_eq!(span.attr_int("http.route"), None, "a string is not an int");
    assert_eq!(span.trace_id_hex(), "ab".repeat(16));
    assert_eq!(span.span_id_hex(), "0102030405060708");
    assert_eq!(span.parent_span_id_hex(), "");
    assert_eq!(span.duration(), Duration::from_millis(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotel_forwards_spans_and_metrics_to_the_receiver() {
    let receiver = OtlpReceiver::start().await;
    let rotel = Rotel::start_forwarding_to(&receiver.grpc_endpoint());

    export_traces_grpc(rotel.grpc_endpoint(), trace_request("through-rotel")).await;
    let url = format!("{}/v1/metrics", rotel.http_endpoint());
    let body = gauge_request("selftest.gauge", 42).encode_to_vec();
    let (status, _) = post(&url, PROTOBUF, body).await;
    assert_eq!(status, StatusCode::OK);

    let spans = receiver
        .wait_for_spans("the span forwarded by rotel", TIMEOUT, |spans| {
            !spans.is_empty()
        })
        .await;
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].span.name, "through-rotel");
    assert_eq!(spans[0].resource_str("service.name"), Some("selftest"));
    assert_eq!(spans[0].trace_id_hex(), "ab".repeat(16));

    let gauge = receiver.wait_for_metric("selftest.gauge", TIMEOUT).await;
    assert_eq!(gauge.scope_name, "selftest-scope");
    let Some(metric::Data::Gauge(data)) = &gauge.metric.data else {
        panic!("expected a gauge, got {:?}", gauge.metric.data);
    };
    assert_eq!(
        data.data_points[0].value,
        Some(number_data_point::Value::AsInt(42))
    );
    assert_eq!(attr_int(&data.data_points[0].attributes, "absent"), None);

    let (http, grpc) = receiver.received_requests();
    assert_eq!(http, 0, "rotel exports over gRPC");
    assert!(grpc >= 2, "one export per signal at least, got {grpc}");
}

#[tokio::test]
async fn wait_until_returns_once_the_probe_is_satisfied() {
    let mut attempts = 0;
    let value = support::wait_until("the third attempt", TIMEOUT, || {
        attempts += 1;
        std::future::ready(if attempts == 3 {
            Ok(attempts)
        } else {
            Err(format!("attempt {attempts}"))
        })
    })
    .await;
    assert_eq!(value, 3);
}

#[tokio::test]
#[should_panic(expected = "waiting for the impossible; last seen: attempt")]
async fn wait_until_says_what_it_saw_last_when_it_times_out() {
    let mut attempts = 0;
    support::wait_until::<(), _>("the impossible", Duration::from_millis(50), || {
        attempts += 1;
        std::future::ready(Err(format!("attempt {attempts}")))
    })
    .await;
}
