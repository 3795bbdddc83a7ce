//! Proves the shared test support works: the in-process OTLP receiver on both transports, plain,
//! over TLS and mTLS, and throttling; a real rotel collector forwarding to it, started again on
//! fresh ports when one was taken; and the example service found on the port it bound itself.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{StatusCode, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
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
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{
    ExampleService, OtlpReceiver, ReceiverOptions, Rotel, ServerTls, TestPki, Throttle, attr_int,
};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_types::StatusExt;

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
    let (status, _, body) = post_full(url, headers, body).await;
    (status, body)
}

/// POSTs `body` to `url` with these headers, and returns the status, headers and body.
async fn post_full(
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (StatusCode, HeaderMap, Bytes) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut request = hyper::Request::post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let response = client.request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status, parts.headers, body)
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

// ---- Ports held by the process that serves them ---------------------------------------------------

/// A port that was free a moment ago (released: what a test support hands a child to bind).
fn released_addr() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The message of the panic `run` raises.
fn panic_message(run: impl FnOnce()) -> String {
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .expect_err("it should have panicked");
    match panic.downcast::<String>() {
        Ok(message) => *message,
        Err(panic) => panic
            .downcast::<&str>()
            .map(|message| (*message).to_owned())
            .unwrap_or_default(),
    }
}

/// The value of `name` in the environment process `pid` was started with.
fn environ_var(pid: u32, name: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    environ.split(|byte| *byte == 0).find_map(|entry| {
        let entry = String::from_utf8_lossy(entry);
        let (key, value) = entry.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

#[test]
fn listening_addrs_lists_the_listeners_of_that_process_only() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let client = std::net::TcpStream::connect(addr).unwrap();
    let mut other = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();

    let ours = support::listening_addrs(std::process::id());
    let theirs = support::listening_addrs(other.id());
    let _ = other.kill();
    let _ = other.wait();
    assert!(ours.contains(&addr), "{addr} not in {ours:?}");
    assert!(
        !ours.contains(&client.local_addr().unwrap()),
        "a connected socket is not a listener: {ours:?}"
    );
    assert_eq!(theirs, [], "another process does not hold {addr}");
    drop(listener);
    assert!(!support::listening_addrs(std::process::id()).contains(&addr));
    assert_eq!(
        support::listening_addrs(other.id()),
        [],
        "a process that is gone"
    );
}

/// Starts rotel forwarding to `receiver`, its first gRPC or HTTP address taken by a listener of
/// this test; checks it came up on the second pick, and forwards.
async fn rotel_retries_when_its_first_port_is_taken(taken_is_grpc: bool) {
    let receiver = OtlpReceiver::start().await;
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let mut picks = Vec::new();
    let rotel = Rotel::start_picking_ports(
        || {
            let pick = if picks.is_empty() && taken_is_grpc {
                (taken_addr, released_addr())
            } else if picks.is_empty() {
                (released_addr(), taken_addr)
            } else {
                (released_addr(), released_addr())
            };
            picks.push(pick);
            pick
        },
        &[],
        &[
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            &receiver.grpc_endpoint(),
        ],
    );

    assert_eq!(picks.len(), 2, "{picks:?}");
    let (grpc, http) = picks[1];
    assert_eq!(rotel.grpc_endpoint(), format!("http://{grpc}"));
    assert_eq!(rotel.http_endpoint(), format!("http://{http}"));
    let listening = support::listening_addrs(rotel.pid());
    assert!(
        listening.contains(&grpc) && listening.contains(&http),
        "{listening:?}"
    );
    assert!(support::listening_addrs(std::process::id()).contains(&taken_addr));

    export_traces_grpc(rotel.grpc_endpoint(), trace_request("after-a-retry")).await;
    let spans = receiver
        .wait_for_spans("the span forwarded by rotel", TIMEOUT, |spans| {
            !spans.is_empty()
        })
        .await;
    assert_eq!(spans[0].span.name, "after-a-retry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotel_starts_on_fresh_ports_when_its_grpc_port_is_taken() {
    rotel_retries_when_its_first_port_is_taken(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotel_starts_on_fresh_ports_when_its_http_port_is_taken() {
    rotel_retries_when_its_first_port_is_taken(false).await;
}

#[test]
fn rotel_gives_up_after_five_attempts_when_every_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let mut picks = 0;
    let message = panic_message(|| {
        Rotel::start_picking_ports(
            || {
                picks += 1;
                (taken_addr, released_addr())
            },
            &[],
            &["--exporter", "blackhole"],
        );
    });
    assert_eq!(picks, 5);
    assert!(
        message.starts_with("rotel-agent found a port taken in each of 5 attempts:"),
        "{message}"
    );
    assert_eq!(
        message.matches("Address already in use").count(),
        5,
        "{message}"
    );
}

#[test]
fn rotel_exiting_for_another_reason_fails_without_a_retry() {
    let mut picks = 0;
    let message = panic_message(|| {
        Rotel::start_picking_ports(
            || {
                picks += 1;
                (released_addr(), released_addr())
            },
            &[],
            &["--exporter", "no-such-exporter"],
        );
    });
    assert_eq!(picks, 1);
    assert!(
        message.starts_with("rotel-agent exited early (exit status: 2)"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receiver_restarted_on_given_ports_waits_until_they_are_released() {
    use futures_util::FutureExt;

    // A listener still holding the gRPC port, like a receiver that is stopping.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let grpc = holder.local_addr().unwrap();
    let http = released_addr();
    let mut start = Box::pin(OtlpReceiver::start_with(ReceiverOptions {
        ports: Some((grpc.port(), http.port())),
        ..ReceiverOptions::default()
    }));
    assert!(
        (&mut start).now_or_never().is_none(),
        "the receiver cannot have bound {grpc} yet"
    );
    drop(holder);
    let receiver = start.await;

    assert_eq!(receiver.ports(), (grpc.port(), http.port()));
    export_traces_grpc(receiver.grpc_endpoint(), trace_request("on-the-same-port")).await;
    let spans = receiver
        .wait_for_spans("the span", TIMEOUT, |spans| !spans.is_empty())
        .await;
    assert_eq!(spans[0].span.name, "on-the-same-port");
}

#[tokio::test]
async fn example_service_is_found_on_its_port_when_rust_log_hides_its_address_line() {
    let service = ExampleService::start(&[("RUST_LOG", "warn"), ("OTEL_SDK_DISABLED", "true")]);
    let listening = support::listening_addrs(service.pid());
    assert_eq!(listening.len(), 1, "{listening:?}");
    assert_eq!(
        service.url("/users/1"),
        format!("http://{}/users/1", listening[0])
    );
    let (status, _, body) = support::client::get(&service.url("/users/1"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    assert!(!exit.output.contains("listening on"), "{}", exit.output);
}

#[test]
fn example_service_exiting_at_start_up_fails_at_once_with_its_output() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap().to_string();
    let message = panic_message(|| {
        ExampleService::start(&[
            ("LISTEN_ADDR", taken_addr.as_str()),
            ("OTEL_SDK_DISABLED", "true"),
        ]);
    });
    assert!(
        message.starts_with("the example service exited at start-up (exit status: 1):"),
        "{message}"
    );
    assert!(message.contains("Address already in use"), "{message}");
}

#[test]
fn example_service_started_unsetting_rust_log_runs_without_it() {
    let quiet = [("OTEL_SDK_DISABLED", "true")];
    let harness = ExampleService::start(&quiet);
    let unset = ExampleService::start_unsetting(&["RUST_LOG"], &quiet);
    assert_eq!(
        environ_var(harness.pid(), "RUST_LOG").as_deref(),
        Some("info")
    );
    assert_eq!(environ_var(unset.pid(), "RUST_LOG"), None);
    assert_eq!(
        environ_var(unset.pid(), "OTEL_BSP_SCHEDULE_DELAY").as_deref(),
        Some("50")
    );
}

// ---- TLS, mTLS and throttling -------------------------------------------------------------------

/// A client certificate and its key, as files.
struct ClientIdentity {
    cert: PathBuf,
    key: PathBuf,
}

impl ClientIdentity {
    /// The client certificate `pki` signed.
    fn of(pki: &TestPki) -> Self {
        ClientIdentity {
            cert: pki.client_cert_path(),
            key: pki.client_key_path(),
        }
    }
}

/// `future`, or a panic naming `what` when it takes longer than `TIMEOUT`.
async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, future)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {TIMEOUT:?}"))
}

/// An error and all its sources, `: `-separated: tonic's own messages say little.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

/// Starts a receiver speaking TLS only, with `tls`.
async fn start_tls(tls: ServerTls) -> OtlpReceiver {
    let options = ReceiverOptions {
        tls: Some(tls),
        ..ReceiverOptions::default()
    };
    OtlpReceiver::start_with(options).await
}

/// Exports `request` over gRPC with TLS, trusting the CA in `ca`, presenting `identity` if any,
/// gzip-compressed if `gzip`. The error, if any, with its sources.
async fn export_traces_grpc_tls(
    endpoint: &str,
    ca: &Path,
    identity: Option<&ClientIdentity>,
    gzip: bool,
    request: ExportTraceServiceRequest,
) -> Result<(), String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(
        std::fs::read(ca).expect("read the CA certificate"),
    ));
    if let Some(identity) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(&identity.cert).expect("read the client certificate"),
            std::fs::read(&identity.key).expect("read the client key"),
        ));
    }
    let channel = Channel::from_shared(endpoint.to_owned())
        .expect("a valid endpoint")
        .tls_config(tls)
        .expect("a valid TLS configuration");
    let export = async {
        let channel = channel
            .connect()
            .await
            .map_err(|err| format!("connect: {}", error_chain(&err)))?;
        let mut client = TraceServiceClient::new(channel);
        if gzip {
            client = client.send_compressed(CompressionEncoding::Gzip);
        }
        client
            .export(request)
            .await
            .map(drop)
            .map_err(|status| format!("export: {}", error_chain(&status)))
    };
    within("a gRPC export over TLS", export).await
}

/// A rustls client configuration (ring) trusting the CA in `ca`, presenting `identity` if any.
fn client_tls_config(ca: &Path, identity: Option<&ClientIdentity>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("read the CA certificate") {
        roots.add(cert.expect("a CA PEM")).expect("a valid CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default TLS versions")
    .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => {
            let certs = CertificateDer::pem_file_iter(&identity.cert)
                .expect("read the client certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("a client certificate PEM");
            let key = PrivateKeyDer::from_pem_file(&identity.key).expect("a client key PEM");
            builder
                .with_client_auth_cert(certs, key)
                .expect("a valid client certificate")
        }
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

/// POSTs `body` over HTTP/1.1 with TLS to `url` (`https://localhost:PORT/...`), connecting to
/// 127.0.0.1, trusting the CA in `ca` and presenting `identity` if any. The status, headers and
/// body; or the error, with its sources.
async fn post_tls(
    url: &str,
    ca: &Path,
    identity: Option<&ClientIdentity>,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let uri: Uri = url.parse().expect("a valid URL");
    assert_eq!(uri.scheme_str(), Some("https"), "{url}");
    let host = uri.host().expect("a host").to_owned();
    let port = uri.port_u16().expect("a port");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls_config(ca, identity)));
    let mut request = hyper::Request::post(uri.path()).header("host", format!("{host}:{port}"));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request.body(Full::new(Bytes::from(body))).unwrap();
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|err| format!("connect: {err}"))?;
        let server_name = ServerName::try_from(host).expect("a valid server name");
        let tls = connector
            .connect(server_name, tcp)
            .await
            .map_err(|err| format!("TLS handshake: {}", error_chain(&err)))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|err| format!("HTTP handshake: {}", error_chain(&err)))?;
        tokio::spawn(connection);
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| format!("request: {}", error_chain(&err)))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|err| format!("response body: {}", error_chain(&err)))?;
        Ok((parts.status, parts.headers, body.to_bytes()))
    };
    within("an HTTP POST over TLS", exchange).await
}

/// Waits until the receiver has counted at least `count` failed TLS handshakes.
async fn wait_for_failed_handshakes(receiver: &OtlpReceiver, count: usize) {
    let what = format!("{count} failed TLS handshakes");
    support::wait_until(&what, TIMEOUT, || {
        let failed = receiver.failed_handshakes();
        std::future::ready(if failed >= count {
            Ok(())
        } else {
            Err(format!("{failed} failed handshakes"))
        })
    })
    .await;
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gzip = GzEncoder::new(Vec::new(), Compression::fast());
    gzip.write_all(bytes).unwrap();
    gzip.finish().unwrap()
}

fn span_names(receiver: &OtlpReceiver) -> Vec<String> {
    receiver.spans().into_iter().map(|s| s.span.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_receiver_records_a_grpc_export_trusted_via_the_ca() {
    let pki = TestPki::generate();
    let receiver = start_tls(pki.server_tls()).await;
    let endpoint = receiver.grpc_endpoint();
    assert!(endpoint.starts_with("https://localhost:"), "{endpoint}");
    assert_eq!(receiver.endpoint("grpc"), endpoint);

    let ca = pki.ca_path();
    export_traces_grpc_tls(&endpoint, &ca, None, false, trace_request("grpc-tls"))
        .await
        .unwrap();
    export_traces_grpc_tls(&endpoint, &ca, None, true, trace_request("grpc-tls-gzip"))
        .await
        .unwrap();

    assert_eq!(span_names(&receiver), ["grpc-tls", "grpc-tls-gzip"]);
    assert_eq!(receiver.received_requests(), (0, 2));
    assert_eq!(receiver.failed_handshakes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_receiver_records_an_http_export() {
    let pki = TestPki::generate();
    let receiver = start_tls(pki.server_tls()).await;
    let endpoint = receiver.http_endpoint();
    assert!(endpoint.starts_with("https://localhost:"), "{endpoint}");
    assert_eq!(receiver.endpoint("http/protobuf"), endpoint);

    let url = format!("{endpoint}/v1/traces");
    let ca = pki.ca_path();
    let body = trace_request("http-tls").encode_to_vec();
    let (status, _, _) = post_tls(&url, &ca, None, PROTOBUF, body).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    let body = gzip(&trace_request("http-tls-gzip").encode_to_vec());
    let gzip_headers = [PROTOBUF[0], ("content-encoding", "gzip")];
    let (status, _, _) = post_tls(&url, &ca, None, &gzip_headers, body)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);

    assert_eq!(span_names(&receiver), ["http-tls", "http-tls-gzip"]);
    assert_eq!(receiver.received_requests(), (2, 0));
    assert_eq!(receiver.failed_handshakes(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_receiver_counts_the_handshakes_of_clients_that_do_not_trust_it() {
    let pki = TestPki::generate();
    let receiver = start_tls(pki.server_tls()).await;
    let untrusted_ca = pki.untrusted_ca_path();

    let grpc = export_traces_grpc_tls(
        &receiver.grpc_endpoint(),
        &untrusted_ca,
        None,
        false,
        trace_request("untrusted-grpc"),
    )
    .await;
    let error = grpc.expect_err("a client trusting another CA must not export");
    assert!(error.contains("UnknownIssuer"), "{error}");
    wait_for_failed_handshakes(&receiver, 1).await;

    let url = format!("{}/v1/traces", receiver.http_endpoint());
    let body = trace_request("untrusted-http").encode_to_vec();
    let http = post_tls(&url, &untrusted_ca, None, PROTOBUF, body).await;
    let error = http.expect_err("a client trusting another CA must not POST");
    assert!(error.contains("UnknownIssuer"), "{error}");
    wait_for_failed_handshakes(&receiver, 2).await;

    // Plain HTTP to a TLS port is no handshake either.
    let plain_url = url.replace("https://localhost", "http://127.0.0.1");
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let request = hyper::Request::post(plain_url)
        .body(Full::new(Bytes::from_static(b"not TLS")))
        .unwrap();
    let plain = within("a plain HTTP POST to a TLS port", client.request(request)).await;
    assert!(plain.is_err(), "a TLS-only server answered plain HTTP");
    wait_for_failed_handshakes(&receiver, 3).await;

    assert!(receiver.spans().is_empty());
    assert_eq!(receiver.received_requests(), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_receiver_with_a_mismatched_certificate_is_refused() {
    let pki = TestPki::generate();
    let receiver = start_tls(pki.mismatched_server_tls()).await;
    let ca = pki.ca_path();

    let grpc = export_traces_grpc_tls(
        &receiver.grpc_endpoint(),
        &ca,
        None,
        false,
        trace_request("mismatched-grpc"),
    )
    .await;
    let error = grpc.expect_err("a certificate for otel.invalid must not pass for localhost");
    assert!(error.contains("not valid for name"), "{error}");
    wait_for_failed_handshakes(&receiver, 1).await;

    let url = format!("{}/v1/traces", receiver.http_endpoint());
    let body = trace_request("mismatched-http").encode_to_vec();
    let http = post_tls(&url, &ca, None, PROTOBUF, body).await;
    let error = http.expect_err("a certificate for otel.invalid must not pass for localhost");
    assert!(error.contains("not valid for name"), "{error}");
    wait_for_failed_handshakes(&receiver, 2).await;

    assert!(receiver.spans().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_receiver_requires_a_client_certificate() {
    let pki = TestPki::generate();
    let receiver = start_tls(pki.mutual_server_tls()).await;
    let ca = pki.ca_path();
    let identity = ClientIdentity::of(&pki);
    let grpc_endpoint = receiver.grpc_endpoint();
    let url = format!("{}/v1/traces", receiver.http_endpoint());

    export_traces_grpc_tls(
        &grpc_endpoint,
        &ca,
        Some(&identity),
        false,
        trace_request("mtls-grpc"),
    )
    .await
    .unwrap();
    let body = trace_request("mtls-http").encode_to_vec();
    let (status, _, _) = post_tls(&url, &ca, Some(&identity), PROTOBUF, body)
        .await
        .unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(receiver.failed_handshakes(), 0);

    let grpc = export_traces_grpc_tls(
        &grpc_endpoint,
        &ca,
        None,
        false,
        trace_request("anonymous-grpc"),
    )
    .await;
    // With TLS 1.3 the client's handshake completes before the server checks its certificate:
    // tonic connects, then the export fails, `Cancelled` "connection closed" at the time of writing.
    grpc.expect_err("mTLS must refuse a gRPC client without a certificate");
    wait_for_failed_handshakes(&receiver, 1).await;

    let body = trace_request("anonymous-http").encode_to_vec();
    let http = post_tls(&url, &ca, None, PROTOBUF, body).await;
    // Likewise: the request fails, with the server's CertificateRequired alert or, when the
    // connection task read that alert first, with hyper's "connection was not ready".
    http.expect_err("mTLS must refuse an HTTP client without a certificate");
    wait_for_failed_handshakes(&receiver, 2).await;

    assert_eq!(span_names(&receiver), ["mtls-grpc", "mtls-http"]);
    assert_eq!(receiver.received_requests(), (1, 1));
}

/// Starts a plain receiver refusing the first export of each signal with a 1 s retry delay.
async fn start_throttled() -> OtlpReceiver {
    let options = ReceiverOptions {
        throttle: Some(Throttle {
            exports: 1,
            retry_after_secs: 1,
        }),
        ..ReceiverOptions::default()
    };
    OtlpReceiver::start_with(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_receiver_answers_429_with_retry_after_over_http() {
    let receiver = start_throttled().await;
    let traces_url = format!("{}/v1/traces", receiver.http_endpoint());

    let body = trace_request("throttled").encode_to_vec();
    let (status, headers, _) = post_full(&traces_url, PROTOBUF, body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    assert_eq!(receiver.refused("traces"), 1);
    assert!(
        receiver.spans().is_empty(),
        "a refused export is not recorded"
    );

    let body = trace_request("accepted").encode_to_vec();
    let (status, _, _) = post_full(&traces_url, PROTOBUF, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(span_names(&receiver), ["accepted"]);
    assert_eq!(receiver.refused("traces"), 1);
    assert_eq!(receiver.received_requests(), (1, 0));

    // Each signal is throttled on its own.
    let metrics_url = format!("{}/v1/metrics", receiver.http_endpoint());
    let body = gauge_request("selftest.gauge", 1).encode_to_vec();
    let (status, headers, _) = post_full(&metrics_url, PROTOBUF, body.clone()).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers.get("retry-after").unwrap(), "1");
    let (status, _, _) = post_full(&metrics_url, PROTOBUF, body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(receiver.refused("metrics"), 1);
    assert_eq!(receiver.refused("logs"), 0);
    assert_eq!(receiver.metrics().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_receiver_answers_resource_exhausted_with_retry_info_over_grpc() {
    let receiver = start_throttled().await;
    let mut client = within(
        "a gRPC connection",
        TraceServiceClient::connect(receiver.grpc_endpoint()),
    )
    .await
    .unwrap();

    let status = client
        .export(trace_request("throttled"))
        .await
        .expect_err("the first export is throttled");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    let retry_info = status
        .get_details_retry_info()
        .expect("a google.rpc.RetryInfo detail");
    assert_eq!(retry_info.retry_delay, Some(Duration::from_secs(1)));
    assert_eq!(receiver.refused("traces"), 1);
    assert!(
        receiver.spans().is_empty(),
        "a refused export is not recorded"
    );

    client.export(trace_request("accepted")).await.unwrap();
    assert_eq!(span_names(&receiver), ["accepted"]);
    assert_eq!(receiver.refused("traces"), 1);
    assert_eq!(receiver.received_requests(), (0, 1));

    // Each transport is throttled on its own: HTTP's first trace export is refused too.
    let url = format!("{}/v1/traces", receiver.http_endpoint());
    let body = trace_request("throttled-http").encode_to_vec();
    let (status, _, _) = post_full(&url, PROTOBUF, body).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(receiver.refused("traces"), 2);
}
