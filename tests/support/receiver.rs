//! An in-process OTLP receiver: a gRPC server and an HTTP/protobuf server that record every export,
//! over plain TCP or TLS (optionally mutual), optionally throttling the first exports.

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::metrics::v1::Metric;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::codec::CompressionEncoding;
use tonic_types::{ErrorDetails, StatusExt};

use super::tls::ServerTls;
use super::wait::wait_for;

/// How the receiver runs: plain or TLS, throttling or not. The default is plain, never throttling:
/// what [`OtlpReceiver::start`] does.
#[derive(Clone, Default)]
pub struct ReceiverOptions {
    /// With `Some`, both servers speak TLS only, with this certificate (and client CA, for mTLS).
    pub tls: Option<ServerTls>,
    pub throttle: Option<Throttle>,
    /// The gRPC and HTTP ports to listen on (those of a receiver that stopped, to play a
    /// collector that restarts); ephemeral ports when `None`.
    pub ports: Option<(u16, u16)>,
}

/// The first `exports` requests of EACH signal (traces, metrics, logs separately, per transport)
/// are refused: HTTP answers 429 with `Retry-After: <retry_after_secs>`; gRPC answers
/// RESOURCE_EXHAUSTED with a google.rpc.RetryInfo detail whose retry_delay is `retry_after_secs`.
/// Refused requests are not recorded as received, only counted.
#[derive(Clone, Copy, Debug)]
pub struct Throttle {
    pub exports: usize,
    pub retry_after_secs: u64,
}

/// How long a client gets to complete its TLS handshake before it counts as failed.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the receiver got, in arrival order, whatever the transport.
#[derive(Default)]
struct Received {
    traces: Vec<ExportTraceServiceRequest>,
    metrics: Vec<ExportMetricsServiceRequest>,
    logs: Vec<ExportLogsServiceRequest>,
    /// The HTTP headers or gRPC metadata of each trace export.
    trace_headers: Vec<HeaderMap>,
    /// The same of each metric export, and of each log export.
    metric_headers: Vec<HeaderMap>,
    log_headers: Vec<HeaderMap>,
    /// What every trace export is answered: a full success unless a test says otherwise.
    trace_response: ExportTraceServiceResponse,
    http_requests: usize,
    grpc_requests: usize,
    throttle: Option<Throttle>,
    /// How many requests the throttle refused, by `(transport, signal)`.
    refused: HashMap<(&'static str, &'static str), usize>,
    /// TLS handshakes that failed or timed out, on either server.
    failed_handshakes: usize,
}

impl Received {
    /// Whether the throttle refuses this export; if so, counts it and returns the delay to announce.
    fn throttled(&mut self, transport: &'static str, signal: &'static str) -> Option<Duration> {
        let throttle = self.throttle?;
        let refused = self.refused.entry((transport, signal)).or_default();
        if *refused >= throttle.exports {
            return None;
        }
        *refused += 1;
        Some(Duration::from_secs(throttle.retry_after_secs))
    }
}

type Shared = Arc<Mutex<Received>>;

/// Locks the shared store, ignoring poisoning (a panicking test must still be able to read it).
fn lock(received: &Shared) -> MutexGuard<'_, Received> {
    received
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An OTLP receiver listening on 127.0.0.1 over both gRPC and HTTP/protobuf, plain or gzip, over
/// TCP or TLS.
///
/// Both servers shut down gracefully when it is dropped.
pub struct OtlpReceiver {
    received: Shared,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    tls: bool,
    /// Dropping this sender (with the receiver) tells both servers to stop.
    _shutdown: watch::Sender<()>,
}

impl OtlpReceiver {
    /// Starts both servers on ephemeral ports, on the current tokio runtime: plain TCP, no throttle.
    pub async fn start() -> OtlpReceiver {
        Self::start_with(ReceiverOptions::default()).await
    }

    /// Starts both servers on ephemeral ports, on the current tokio runtime, as `options` say.
    ///
    /// With TLS, the servers still bind 127.0.0.1 only, but the endpoints name `localhost`, the
    /// name in the certificate.
    pub async fn start_with(options: ReceiverOptions) -> OtlpReceiver {
        let received = Arc::new(Mutex::new(Received {
            throttle: options.throttle,
            ..Received::default()
        }));
        let (shutdown, shutdown_rx) = watch::channel(());
        // `changed()` fails once the sender is dropped: that is the shutdown signal.
        let signal = |mut rx: watch::Receiver<()>| async move {
            let _ = rx.changed().await;
        };

        let grpc_listener = bind_loopback(options.ports.map_or(0, |(grpc, _)| grpc)).await;
        let grpc_addr = grpc_listener.local_addr().expect("gRPC listener address");
        let sink = GrpcSink {
            received: received.clone(),
        };
        let grpc_router = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(sink.clone()).accept_compressed(GZIP))
            .add_service(MetricsServiceServer::new(sink.clone()).accept_compressed(GZIP))
            .add_service(LogsServiceServer::new(sink).accept_compressed(GZIP));
        if let Some(tls) = &options.tls {
            let config = server_config(tls, b"h2");
            let streams = accept_tls(grpc_listener, config, &received, shutdown_rx.clone());
            // Only the established TLS connections reach tonic: failed handshakes stay counted
            // by `accept_tls` instead of ending up as errors in tonic's accept loop.
            let incoming = futures_util::stream::unfold(streams, |mut streams| async move {
                let (stream, _peer) = streams.recv().await?;
                Some((Ok::<_, std::io::Error>(stream), streams))
            });
            let grpc_server =
                grpc_router.serve_with_incoming_shutdown(incoming, signal(shutdown_rx.clone()));
            tokio::spawn(async move {
                grpc_server
                    .await
                    .expect("OTLP gRPC test receiver (TLS) failed");
            });
        } else {
            let grpc_server = grpc_router.serve_with_incoming_shutdown(
                tonic::transport::server::TcpIncoming::from(grpc_listener),
                signal(shutdown_rx.clone()),
            );
            tokio::spawn(async move {
                grpc_server.await.expect("OTLP gRPC test receiver failed");
            });
        }

        let http_listener = bind_loopback(options.ports.map_or(0, |(_, http)| http)).await;
        let http_addr = http_listener.local_addr().expect("HTTP listener address");
        let signals = Router::new()
            .route("/v1/traces", post(http_traces))
            .route("/v1/metrics", post(http_metrics))
            .route("/v1/logs", post(http_logs));
        // Also under `/otlp`, as a vendor's gateway whose base URL has a path (Grafana Cloud's
        // `https://otlp-gateway-<zone>.grafana.net/otlp`).
        let app = Router::new()
            .nest("/otlp", signals.clone())
            .merge(signals)
            .with_state(received.clone());
        if let Some(tls) = &options.tls {
            let config = server_config(tls, b"http/1.1");
            let listener = TlsListener {
                streams: accept_tls(http_listener, config, &received, shutdown_rx.clone()),
                local_addr: http_addr,
            };
            let http_server =
                axum::serve(listener, app).with_graceful_shutdown(signal(shutdown_rx));
            tokio::spawn(async move {
                http_server
                    .await
                    .expect("OTLP HTTP test receiver (TLS) failed");
            });
        } else {
            let http_server =
                axum::serve(http_listener, app).with_graceful_shutdown(signal(shutdown_rx));
            tokio::spawn(async move {
                http_server.await.expect("OTLP HTTP test receiver failed");
            });
        }

        OtlpReceiver {
            received,
            grpc_addr,
            http_addr,
            tls: options.tls.is_some(),
            _shutdown: shutdown,
        }
    }

    /// `http://127.0.0.1:PORT`, or with TLS `https://localhost:PORT`.
    fn base_url(&self, addr: SocketAddr) -> String {
        if self.tls {
            format!("https://localhost:{}", addr.port())
        } else {
            format!("http://{addr}")
        }
    }

    /// The gRPC and HTTP ports, for [`ReceiverOptions::ports`].
    pub fn ports(&self) -> (u16, u16) {
        (self.grpc_addr.port(), self.http_addr.port())
    }

    /// The gRPC endpoint, like `http://127.0.0.1:PORT`, or with TLS `https://localhost:PORT`.
    pub fn grpc_endpoint(&self) -> String {
        self.base_url(self.grpc_addr)
    }

    /// The HTTP base endpoint, like `http://127.0.0.1:PORT`, or with TLS `https://localhost:PORT`
    /// (without `/v1/...`).
    pub fn http_endpoint(&self) -> String {
        self.base_url(self.http_addr)
    }

    /// How many requests of a signal (`"traces"`, `"metrics"` or `"logs"`) the throttle refused,
    /// over both transports.
    pub fn refused(&self, signal: &str) -> usize {
        lock(&self.received)
            .refused
            .iter()
            .filter(|((_, refused_signal), _)| *refused_signal == signal)
            .map(|(_, count)| count)
            .sum()
    }

    /// How many TLS handshakes failed (or timed out), on both servers: a client that does not
    /// trust the server certificate, or one without a valid client certificate on mTLS.
    pub fn failed_handshakes(&self) -> usize {
        lock(&self.received).failed_handshakes
    }

    /// The endpoint for `OTEL_EXPORTER_OTLP_PROTOCOL=protocol`: gRPC's for `grpc`, else HTTP's.
    pub fn endpoint(&self, protocol: &str) -> String {
        match protocol {
            "grpc" => self.grpc_endpoint(),
            _ => self.http_endpoint(),
        }
    }

    /// From now on, answers every trace export with a partial success: `rejected` spans refused,
    /// for `message`.
    pub fn reject_spans(&self, rejected: i64, message: &str) {
        lock(&self.received).trace_response = ExportTraceServiceResponse {
            partial_success: Some(ExportTracePartialSuccess {
                rejected_spans: rejected,
                error_message: message.to_owned(),
            }),
        };
    }

    /// The HTTP headers, or the gRPC metadata, of every trace export so far.
    pub fn trace_export_headers(&self) -> Vec<HeaderMap> {
        lock(&self.received).trace_headers.clone()
    }

    /// The HTTP headers, or the gRPC metadata, of every export of `signal` (`traces`, `metrics`
    /// or `logs`) so far.
    pub fn export_headers(&self, signal: &str) -> Vec<HeaderMap> {
        let received = lock(&self.received);
        match signal {
            "traces" => received.trace_headers.clone(),
            "metrics" => received.metric_headers.clone(),
            "logs" => received.log_headers.clone(),
            other => panic!("no signal {other:?}"),
        }
    }

    /// How many export requests arrived over each transport: `(http, grpc)`.
    pub fn received_requests(&self) -> (usize, usize) {
        let received = lock(&self.received);
        (received.http_requests, received.grpc_requests)
    }

    /// Every export request received so far (traces, metrics, logs), encoded again as OTLP
    /// protobuf and concatenated: each string a span, metric or log record holds is in it byte
    /// for byte, so a test can search everything the receiver got.
    pub fn received_bytes(&self) -> Vec<u8> {
        let received = lock(&self.received);
        let traces = received.traces.iter().map(Message::encode_to_vec);
        let metrics = received.metrics.iter().map(Message::encode_to_vec);
        let logs = received.logs.iter().map(Message::encode_to_vec);
        traces.chain(metrics).chain(logs).flatten().collect()
    }

    /// Every span received so far, flattened out of their export requests, in arrival order.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let received = lock(&self.received);
        let mut spans = Vec::new();
        for resource_spans in received.traces.iter().flat_map(|r| &r.resource_spans) {
            let resource = resource_attributes(&resource_spans.resource);
            for scope_spans in &resource_spans.scope_spans {
                let (scope_name, scope_version) = scope_name_version(&scope_spans.scope);
                spans.extend(scope_spans.spans.iter().map(|span| ReceivedSpan {
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    scope_version: scope_version.clone(),
                    span: span.clone(),
                }));
            }
        }
        spans
    }

    /// Each instrumentation scope spans and metrics arrived under, once, in arrival order.
    pub fn scopes(&self) -> Vec<ReceivedScope> {
        let received = lock(&self.received);
        let spans = received
            .traces
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|r| &r.scope_spans)
            .map(|s| ("traces", &s.scope, &s.schema_url));
        let metrics = received
            .metrics
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|r| &r.scope_metrics)
            .map(|s| ("metrics", &s.scope, &s.schema_url));
        let mut scopes = Vec::new();
        for (signal, scope, schema_url) in spans.chain(metrics) {
            let (name, version) = scope_name_version(scope);
            let scope = ReceivedScope {
                signal,
                name,
                version,
                schema_url: schema_url.clone(),
            };
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        scopes
    }

    /// Every metric received so far, in arrival order: a metric exported N times appears N times.
    pub fn metrics(&self) -> Vec<ReceivedMetric> {
        let received = lock(&self.received);
        let mut metrics = Vec::new();
        for resource_metrics in received.metrics.iter().flat_map(|r| &r.resource_metrics) {
            let resource = resource_attributes(&resource_metrics.resource);
            for scope_metrics in &resource_metrics.scope_metrics {
                let (scope_name, _) = scope_name_version(&scope_metrics.scope);
                metrics.extend(scope_metrics.metrics.iter().map(|metric| ReceivedMetric {
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    metric: metric.clone(),
                }));
            }
        }
        metrics
    }

    /// The last metric received with this name, if any.
    pub fn latest_metric(&self, name: &str) -> Option<ReceivedMetric> {
        self.metrics()
            .into_iter()
            .rev()
            .find(|m| m.metric.name == name)
    }

    /// Every log record received so far, flattened out of their export requests, in arrival order.
    pub fn logs(&self) -> Vec<ReceivedLog> {
        let received = lock(&self.received);
        let mut logs = Vec::new();
        for resource_logs in received.logs.iter().flat_map(|r| &r.resource_logs) {
            let resource = resource_attributes(&resource_logs.resource);
            for scope_logs in &resource_logs.scope_logs {
                let (scope_name, _) = scope_name_version(&scope_logs.scope);
                logs.extend(scope_logs.log_records.iter().map(|record| ReceivedLog {
                    resource: resource.clone(),
                    scope_name: scope_name.clone(),
                    record: record.clone(),
                }));
            }
        }
        logs
    }

    /// Waits until `pred` holds for all spans received so far, then returns them.
    ///
    /// # Panics
    /// When `timeout` elapses first.
    pub async fn wait_for_spans(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        wait_for(what, timeout, || Some(self.spans()).filter(|s| pred(s))).await
    }

    /// Waits until a metric with this name has arrived, then returns the latest one.
    ///
    /// # Panics
    /// When `timeout` elapses first.
    pub async fn wait_for_metric(&self, name: &str, timeout: Duration) -> ReceivedMetric {
        let what = format!("metric {name:?}");
        wait_for(&what, timeout, || self.latest_metric(name)).await
    }

    /// Waits until `pred` holds for all log records received so far, then returns them.
    ///
    /// # Panics
    /// When `timeout` elapses first.
    pub async fn wait_for_logs(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[ReceivedLog]) -> bool,
    ) -> Vec<ReceivedLog> {
        wait_for(what, timeout, || Some(self.logs()).filter(|l| pred(l))).await
    }
}

/// A span with the resource and instrumentation scope it was exported under.
#[derive(Clone, Debug)]
pub struct ReceivedSpan {
    pub resource: Vec<KeyValue>,
    pub scope_name: String,
    pub scope_version: String,
    pub span: Span,
}

impl ReceivedSpan {
    /// A span attribute.
    pub fn attr(&self, key: &str) -> Option<&any_value::Value> {
        attr(&self.span.attributes, key)
    }

    /// A span attribute, if it is a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        attr_str(&self.span.attributes, key)
    }

    /// A span attribute, if it is an integer.
    pub fn attr_int(&self, key: &str) -> Option<i64> {
        attr_int(&self.span.attributes, key)
    }

    /// A resource attribute, if it is a string.
    pub fn resource_str(&self, key: &str) -> Option<&str> {
        attr_str(&self.resource, key)
    }

    /// The trace id in lowercase hex.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span id in lowercase hex.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span.span_id)
    }

    /// The parent span id in lowercase hex; empty for a root span.
    pub fn parent_span_id_hex(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    /// End time minus start time (zero if the end is before the start).
    pub fn duration(&self) -> Duration {
        Duration::from_nanos(
            self.span
                .end_time_unix_nano
                .saturating_sub(self.span.start_time_unix_nano),
        )
    }
}

/// An instrumentation scope as OTLP carries it, and the signal it carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReceivedScope {
    /// `traces` or `metrics`.
    pub signal: &'static str,
    pub name: String,
    pub version: String,
    pub schema_url: String,
}

/// A metric with the resource and instrumentation scope it was exported under.
#[derive(Clone, Debug)]
pub struct ReceivedMetric {
    pub resource: Vec<KeyValue>,
    pub scope_name: String,
    pub metric: Metric,
}

/// A log record with the resource and instrumentation scope it was exported under.
#[derive(Clone, Debug)]
pub struct ReceivedLog {
    pub resource: Vec<KeyValue>,
    pub scope_name: String,
    pub record: LogRecord,
}

impl ReceivedLog {
    /// A log record attribute, if it is a string.
    pub fn attr_str(&self, key: &str) -> Option<&str> {
        attr_str(&self.record.attributes, key)
    }

    /// The trace id in lowercase hex; empty when the record has none.
    pub fn trace_id_hex(&self) -> String {
        hex(&self.record.trace_id)
    }

    /// The span id in lowercase hex; empty when the record has none.
    pub fn span_id_hex(&self) -> String {
        hex(&self.record.span_id)
    }

    /// The body, if it is a string.
    pub fn body_str(&self) -> Option<&str> {
        match self.record.body.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s),
            _ => None,
        }
    }
}

/// The value of the attribute `key` (the first one, should it be repeated).
pub fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

/// The value of the attribute `key`, if it is a string.
pub fn attr_str<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

/// The value of the attribute `key`, if it is an integer.
pub fn attr_int(attrs: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attrs, key)? {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

/// The span named `name` among `spans`.
///
/// # Panics
/// When there is none, with the names there are.
pub fn span_named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|span| span.span.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = spans.iter().map(|span| span.span.name.as_str()).collect();
            panic!("no span named {name:?} among {names:?}")
        })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn resource_attributes(resource: &Option<Resource>) -> Vec<KeyValue> {
    resource
        .as_ref()
        .map(|r| r.attributes.clone())
        .unwrap_or_default()
}

fn scope_name_version(scope: &Option<InstrumentationScope>) -> (String, String) {
    scope
        .as_ref()
        .map(|s| (s.name.clone(), s.version.clone()))
        .unwrap_or_default()
}

/// How long a given port may stay in use (the listener of a receiver that is still stopping).
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds `port` on 127.0.0.1 (0: an ephemeral one). Tokio sets `SO_REUSEADDR`, so the port of a
/// receiver that just stopped can be bound again; while that receiver's servers are still closing
/// their listeners, binding is retried, for up to [`REBIND_TIMEOUT`].
async fn bind_loopback(port: u16) -> TcpListener {
    let deadline = tokio::time::Instant::now() + REBIND_TIMEOUT;
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(error)
                if port != 0
                    && error.kind() == std::io::ErrorKind::AddrInUse
                    && tokio::time::Instant::now() < deadline => {}
            Err(error) => panic!("cannot bind 127.0.0.1:{port}: {error}"),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The rustls server configuration (ring) for `tls`, offering the one ALPN protocol `alpn`.
fn server_config(tls: &ServerTls, alpn: &[u8]) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the server certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).expect("the server key PEM");
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let builder = match &tls.client_ca_pem {
        None => builder.with_no_client_auth(),
        Some(client_ca_pem) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(client_ca_pem.as_bytes()) {
                roots
                    .add(cert.expect("the client CA PEM"))
                    .expect("a valid client CA certificate");
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("the client certificate verifier");
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .expect("the server certificate and its key");
    config.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(config)
}

/// Accepts TCP connections on `listener` and runs the TLS handshake of each concurrently, until
/// shutdown. Passes on the established connections with their peer address; counts the failed
/// handshakes (never panics on them).
fn accept_tls(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    received: &Shared,
    mut shutdown: watch::Receiver<()>,
) -> mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)> {
    let (established, streams) = mpsc::channel(16);
    let acceptor = TlsAcceptor::from(config);
    let received = received.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.changed() => return,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    // Out of file descriptors and the like: not a handshake, try again.
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                },
            };
            let (acceptor, established, received) =
                (acceptor.clone(), established.clone(), received.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        // Fails only when the server has stopped: the connection just closes.
                        let _ = established.send((stream, peer)).await;
                    }
                    Ok(Err(_)) | Err(_) => lock(&received).failed_handshakes += 1,
                }
            });
        }
    });
    streams
}

/// What `axum::serve` accepts connections from with TLS: the connections `accept_tls` established.
struct TlsListener {
    streams: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local_addr: SocketAddr,
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(established) => established,
            // `accept_tls` stopped at shutdown: so does the server, without another connection.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local_addr)
    }
}

/// The gRPC side: one value implementing the three OTLP collector services.
#[derive(Clone)]
struct GrpcSink {
    received: Shared,
}

impl GrpcSink {
    /// Stores an export of `signal`, unless the throttle refuses it: then RESOURCE_EXHAUSTED with
    /// a RetryInfo, as a throttling collector answers.
    fn record(
        &self,
        signal: &'static str,
        store: impl FnOnce(&mut Received),
    ) -> Result<(), tonic::Status> {
        let mut received = lock(&self.received);
        if let Some(retry_delay) = received.throttled("grpc", signal) {
            return Err(tonic::Status::with_error_details(
                tonic::Code::ResourceExhausted,
                format!("the test receiver throttles the first {signal} exports"),
                ErrorDetails::with_retry_info(Some(retry_delay)),
            ));
        }
        received.grpc_requests += 1;
        store(&mut received);
        Ok(())
    }
}

#[tonic::async_trait]
impl TraceService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut response = None;
        self.record("traces", |r| {
            r.trace_headers
                .push(request.metadata().clone().into_headers());
            r.traces.push(request.into_inner());
            response = Some(r.trace_response.clone());
        })?;
        Ok(tonic::Response::new(response.unwrap_or_default()))
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.record("metrics", |r| {
            r.metric_headers
                .push(request.metadata().clone().into_headers());
            r.metrics.push(request.into_inner());
        })?;
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl LogsService for GrpcSink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        self.record("logs", |r| {
            r.log_headers
                .push(request.metadata().clone().into_headers());
            r.logs.push(request.into_inner());
        })?;
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

async fn http_traces(State(received): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    http_export(&received, "traces", &headers, &body, |r, req| {
        r.trace_headers.push(headers.clone());
        r.traces.push(req);
        r.trace_response.clone()
    })
}

async fn http_metrics(State(received): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    http_export(&received, "metrics", &headers, &body, |r, req| {
        r.metric_headers.push(headers.clone());
        r.metrics.push(req);
        ExportMetricsServiceResponse::default()
    })
}

async fn http_logs(State(received): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    http_export(&received, "logs", &headers, &body, |r, req| {
        r.log_headers.push(headers.clone());
        r.logs.push(req);
        ExportLogsServiceResponse::default()
    })
}

const GZIP: CompressionEncoding = CompressionEncoding::Gzip;
const PROTOBUF: &str = "application/x-protobuf";

/// Decodes an OTLP/HTTP protobuf request (plain or gzip), stores it and answers with the
/// response `store` returns. Anything else (JSON, another encoding, garbage) is refused with a 4xx
/// so that a test fails visibly. An export of `signal` the throttle refuses is answered 429 with
/// `Retry-After`, and not stored.
fn http_export<Req, Resp>(
    received: &Shared,
    signal: &'static str,
    headers: &HeaderMap,
    body: &[u8],
    store: impl FnOnce(&mut Received, Req) -> Resp,
) -> Response
where
    Req: Message + Default,
    Resp: Message,
{
    let header_str = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let content_type = header_str(header::CONTENT_TYPE).unwrap_or_default();
    if !content_type.starts_with(PROTOBUF) {
        let message = format!("test receiver accepts only {PROTOBUF}, got {content_type:?}");
        return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
    }
    let mut gunzipped = Vec::new();
    let body = match header_str(header::CONTENT_ENCODING) {
        None | Some("identity") => body,
        Some("gzip") => match flate2::read::GzDecoder::new(body).read_to_end(&mut gunzipped) {
            Ok(_) => &gunzipped[..],
            Err(err) => {
                let message = format!("bad gzip body: {err}");
                return (StatusCode::BAD_REQUEST, message).into_response();
            }
        },
        Some(other) => {
            let message =
                format!("test receiver accepts gzip or no content-encoding, got {other:?}");
            return (StatusCode::UNSUPPORTED_MEDIA_TYPE, message).into_response();
        }
    };
    let request = match Req::decode(body) {
        Ok(request) => request,
        Err(err) => {
            let message = format!("undecodable OTLP protobuf body: {err}");
            return (StatusCode::BAD_REQUEST, message).into_response();
        }
    };
    let response = {
        let mut received = lock(received);
        if let Some(retry_after) = received.throttled("http", signal) {
            let retry_after = [(header::RETRY_AFTER, retry_after.as_secs().to_string())];
            let message = format!("the test receiver throttles the first {signal} exports");
            return (StatusCode::TOO_MANY_REQUESTS, retry_after, message).into_response();
        }
        received.http_requests += 1;
        store(&mut received, request)
    };
    ([(header::CONTENT_TYPE, PROTOBUF)], response.encode_to_vec()).into_response()
}
