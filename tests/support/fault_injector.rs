//! A fault injector: an OTLP endpoint on 127.0.0.1, over gRPC (h2c) and HTTP/protobuf, in front of
//! a real collector, switched at run time between the ways a collector fails ([`Fault`]).
//!
//! It counts the spans it forwarded that the collector accepted, and when the first of them
//! arrived after each return to health ([`Heal`]): the figures the service's own
//! `otel.sdk.exporter.span.exported` must agree with. To keep that count exact, an export the
//! injector forwarded always gets the collector's answer: closing the port first stops new
//! exports from being forwarded, waits until those already forwarded are answered, and only then
//! resets the open connections.

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http_body_util::BodyExt;
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tonic_types::{ErrorDetails, StatusExt};

use super::wait::wait_for;

/// How long a slow collector takes to answer an export, from its arrival.
pub const SLOW_ANSWER: Duration = Duration::from_secs(5);
/// What a throttling collector asks the exporter to wait (`Retry-After`, `RetryInfo`).
pub const THROTTLE_RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long each half of [`Fault::Flapping`] lasts.
pub const FLAP_PERIOD: Duration = Duration::from_secs(5);
/// How long an answer the injector handed to its HTTP or gRPC server gets to be written, before
/// closing the port resets the connection it goes out on.
const ANSWER_GRACE: Duration = Duration::from_millis(300);
/// How long closing the port waits for the exports already forwarded to be answered (a slow
/// collector answers within [`SLOW_ANSWER`]).
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the injector may wait for its own port to be free again when it opens it anew.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

const GZIP: CompressionEncoding = CompressionEncoding::Gzip;
const TRACES_PATH: &str = "/v1/traces";
const METRICS_PATH: &str = "/v1/metrics";
const LOGS_PATH: &str = "/v1/logs";

/// What the collector behind the injector seems to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every export forwarded to the collector, and its answer passed back.
    Healthy,
    /// Down: the port closed (connections refused) and every open connection reset.
    Absent,
    /// Connections accepted, exports never answered nor forwarded (a hung collector). The
    /// exports it held stay unanswered after it ends (until the exporter gives up on them); the
    /// connections it accepted are served from then on, like new ones.
    BlackHole,
    /// Every export forwarded, and the collector's answer passed back [`SLOW_ANSWER`] after the
    /// export arrived.
    Slow,
    /// HTTP 503 / gRPC UNAVAILABLE, nothing forwarded.
    Failing,
    /// HTTP 429 with `Retry-After: 1` / gRPC RESOURCE_EXHAUSTED with a `google.rpc.RetryInfo`
    /// of 1 s ([`THROTTLE_RETRY_AFTER`]), nothing forwarded.
    Throttling,
    /// [`Fault::Absent`] and [`Fault::Healthy`] for [`FLAP_PERIOD`] each, alternately, absent
    /// first.
    Flapping,
}

/// A return to health: when it happened, and when the first span accepted afterwards arrived.
#[derive(Clone, Copy, Debug)]
pub struct Heal {
    pub at: Instant,
    pub first_span: Option<Instant>,
}

impl Heal {
    /// From the return to health to the first span; `None` while none has arrived.
    pub fn recovery(&self) -> Option<Duration> {
        Some(self.first_span?.duration_since(self.at))
    }
}

/// A running fault injector, healthy at start; stopped when dropped (its connections reset).
pub struct FaultInjector {
    shared: Arc<Shared>,
    grpc_port: u16,
    http_port: u16,
    flapping: Mutex<Option<JoinHandle<()>>>,
    servers: [JoinHandle<()>; 2],
}

impl FaultInjector {
    /// Starts the injector on ephemeral ports of 127.0.0.1, on the current Tokio runtime,
    /// forwarding gRPC exports to `grpc_upstream` and HTTP ones to `http_upstream` (both like
    /// `http://127.0.0.1:PORT`).
    pub async fn start(grpc_upstream: &str, http_upstream: &str) -> FaultInjector {
        let channel = Channel::from_shared(grpc_upstream.to_owned())
            .expect("the gRPC upstream's URI")
            .connect_lazy();
        let shared = Arc::new(Shared {
            state: watch::channel(Fault::Healthy).0,
            resets: watch::channel(0).0,
            in_flight: AtomicUsize::new(0),
            accepted_spans: AtomicU64::new(0),
            heals: Mutex::new(Vec::new()),
            http_upstream: http_upstream.to_owned(),
            http_client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
            channel,
        });

        let grpc_door = Door::open(&shared).await;
        let grpc_port = grpc_door.port;
        let side = GrpcSide {
            shared: shared.clone(),
        };
        let incoming = futures_util::stream::unfold(grpc_door, |mut door| async move {
            let connection = door.next().await;
            Some((Ok::<_, std::io::Error>(connection), door))
        });
        let grpc_router = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(side.clone()).accept_compressed(GZIP))
            .add_service(MetricsServiceServer::new(side.clone()).accept_compressed(GZIP))
            .add_service(LogsServiceServer::new(side).accept_compressed(GZIP));
        let grpc_server = tokio::spawn(async move {
            grpc_router
                .serve_with_incoming(incoming)
                .await
                .expect("the fault injector's gRPC server failed");
        });

        let http_door = Door::open(&shared).await;
        let http_port = http_door.port;
        let app = Router::new()
            .route(
                TRACES_PATH,
                post(|s: State<Arc<Shared>>, h: HeaderMap, b: Bytes| {
                    forward_http(s, TRACES_PATH, h, b)
                }),
            )
            .route(
                METRICS_PATH,
                post(|s: State<Arc<Shared>>, h: HeaderMap, b: Bytes| {
                    forward_http(s, METRICS_PATH, h, b)
                }),
            )
            .route(
                LOGS_PATH,
                post(|s: State<Arc<Shared>>, h: HeaderMap, b: Bytes| {
                    forward_http(s, LOGS_PATH, h, b)
                }),
            )
            .with_state(shared.clone());
        let http_server = tokio::spawn(async move {
            axum::serve(http_door, app)
                .await
                .expect("the fault injector's HTTP server failed");
        });

        FaultInjector {
            shared,
            grpc_port,
            http_port,
            flapping: Mutex::new(None),
            servers: [grpc_server, http_server],
        }
    }

    /// The endpoint for `OTEL_EXPORTER_OTLP_PROTOCOL=protocol`: gRPC's for `grpc`, else HTTP's.
    pub fn endpoint(&self, protocol: &str) -> String {
        let port = match protocol {
            "grpc" => self.grpc_port,
            _ => self.http_port,
        };
        format!("http://127.0.0.1:{port}")
    }

    /// Switches to `fault`. Returns once the switch is done: for [`Fault::Absent`] (and the first
    /// half of [`Fault::Flapping`]) once the port is closed and the open connections reset, after
    /// the exports already forwarded were answered.
    pub async fn set(&self, fault: Fault) {
        if let Some(flapping) = lock(&self.flapping).take() {
            flapping.abort();
        }
        if fault != Fault::Flapping {
            self.shared.apply(fault).await;
            return;
        }
        self.shared.apply(Fault::Absent).await;
        let shared = self.shared.clone();
        *lock(&self.flapping) = Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(FLAP_PERIOD).await;
                shared.apply(Fault::Healthy).await;
                tokio::time::sleep(FLAP_PERIOD).await;
                shared.apply(Fault::Absent).await;
            }
        }));
    }

    /// Records a return to health that the injector did not make itself: the collector behind
    /// it, restarted.
    pub fn note_heal(&self) {
        self.shared.heal();
    }

    /// The spans forwarded so far that the collector accepted.
    pub fn accepted_spans(&self) -> u64 {
        self.shared.accepted_spans.load(Ordering::SeqCst)
    }

    /// Every return to health so far, in order.
    pub fn heals(&self) -> Vec<Heal> {
        lock(&self.shared.heals).clone()
    }
}

impl Drop for FaultInjector {
    fn drop(&mut self) {
        if let Some(flapping) = lock(&self.flapping).take() {
            flapping.abort();
        }
        for server in &self.servers {
            server.abort();
        }
        self.shared
            .resets
            .send_modify(|generation| *generation += 1);
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What the servers and the switch share.
struct Shared {
    /// What the injector does now: never [`Fault::Flapping`], whose halves are set here in turn.
    state: watch::Sender<Fault>,
    /// Bumped to reset every open connection.
    resets: watch::Sender<u64>,
    /// Exports forwarded and not answered yet.
    in_flight: AtomicUsize,
    accepted_spans: AtomicU64,
    heals: Mutex<Vec<Heal>>,
    http_upstream: String,
    http_client: Client<HttpConnector, Body>,
    channel: Channel,
}

impl Shared {
    async fn apply(&self, fault: Fault) {
        let before = self.state.send_replace(fault);
        // Pairs with the fence in `gate`: an export that saw the old state is in `in_flight`.
        fence(Ordering::SeqCst);
        if before == fault {
            return;
        }
        if fault == Fault::Healthy {
            self.heal();
        }
        if fault == Fault::Absent {
            wait_for(
                "the exports already forwarded to be answered",
                DRAIN_TIMEOUT,
                || (self.in_flight.load(Ordering::SeqCst) == 0).then_some(()),
            )
            .await;
            tokio::time::sleep(ANSWER_GRACE).await;
            self.resets.send_modify(|generation| *generation += 1);
        }
    }

    fn heal(&self) {
        lock(&self.heals).push(Heal {
            at: Instant::now(),
            first_span: None,
        });
    }

    /// What to do with an export arriving now. In a black hole, or while the port is closing,
    /// it is never answered (until its connection is reset or the exporter gives up).
    async fn gate(self: &Arc<Self>) -> Gate {
        // Counted before the state is read: see `apply`.
        let in_flight = InFlight::enter(self);
        let fault = *self.state.borrow();
        match fault {
            Fault::Healthy | Fault::Slow => Gate::Forward(Forwarding {
                _in_flight: in_flight,
                arrived: Instant::now(),
                slow: fault == Fault::Slow,
            }),
            Fault::Failing => Gate::Fail,
            Fault::Throttling => Gate::Throttle,
            Fault::BlackHole | Fault::Absent | Fault::Flapping => {
                drop(in_flight);
                std::future::pending().await
            }
        }
    }

    /// Counts `spans` the collector accepted from an export that arrived `arrived`; the first
    /// after a return to health marks its recovery.
    fn accepted(&self, spans: u64, forwarding: &Forwarding) {
        self.accepted_spans.fetch_add(spans, Ordering::SeqCst);
        if spans == 0 || forwarding.slow {
            return;
        }
        let mut heals = lock(&self.heals);
        if let Some(last) = heals.last_mut()
            && last.first_span.is_none()
            && forwarding.arrived >= last.at
        {
            last.first_span = Some(forwarding.arrived);
        }
    }
}

/// An export being forwarded: counted in [`Shared::in_flight`] until dropped.
struct InFlight(Arc<Shared>);

impl InFlight {
    fn enter(shared: &Arc<Shared>) -> InFlight {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        InFlight(shared.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

enum Gate {
    Forward(Forwarding),
    Fail,
    Throttle,
}

struct Forwarding {
    _in_flight: InFlight,
    arrived: Instant,
    slow: bool,
}

impl Forwarding {
    /// Waits until the answer is due: at once, or [`SLOW_ANSWER`] after arrival.
    async fn answer_due(&self) {
        if self.slow {
            tokio::time::sleep_until((self.arrived + SLOW_ANSWER).into()).await;
        }
    }
}

/// The spans of a trace export.
fn span_count(request: &ExportTraceServiceRequest) -> u64 {
    request
        .resource_spans
        .iter()
        .flat_map(|resource| &resource.scope_spans)
        .map(|scope| scope.spans.len() as u64)
        .sum()
}

/// The spans of an OTLP/HTTP trace export body, plain or gzip; 0 when it does not decode.
fn http_span_count(headers: &HeaderMap, body: &[u8]) -> u64 {
    let mut gunzipped = Vec::new();
    let body = match headers.get(header::CONTENT_ENCODING) {
        Some(encoding) if encoding == "gzip" => {
            if flate2::read::GzDecoder::new(body)
                .read_to_end(&mut gunzipped)
                .is_err()
            {
                return 0;
            }
            &gunzipped[..]
        }
        _ => body,
    };
    ExportTraceServiceRequest::decode(body).map_or(0, |request| span_count(&request))
}

async fn forward_http(
    State(shared): State<Arc<Shared>>,
    path: &'static str,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let forwarding = match shared.gate().await {
        Gate::Forward(forwarding) => forwarding,
        Gate::Fail => {
            let message = "the fault injector fails every export";
            return (StatusCode::SERVICE_UNAVAILABLE, message).into_response();
        }
        Gate::Throttle => {
            let retry_after = [(
                header::RETRY_AFTER,
                THROTTLE_RETRY_AFTER.as_secs().to_string(),
            )];
            let message = "the fault injector throttles every export";
            return (StatusCode::TOO_MANY_REQUESTS, retry_after, message).into_response();
        }
    };
    let mut request = http::Request::post(format!("{}{path}", shared.http_upstream));
    for name in [header::CONTENT_TYPE, header::CONTENT_ENCODING] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let request = request
        .body(Body::from(body.clone()))
        .expect("an HTTP request to the upstream");
    let answer = match shared.http_client.request(request).await {
        Ok(response) => {
            let (parts, body) = response.into_parts();
            body.collect()
                .await
                .ok()
                .map(|body| (parts.status, parts.headers, body.to_bytes()))
        }
        Err(_) => None,
    };
    let Some((status, upstream_headers, answer)) = answer else {
        // The collector is down (restarting): what a proxy in front of it answers.
        let message = "the collector behind the fault injector cannot be reached";
        return (StatusCode::BAD_GATEWAY, message).into_response();
    };
    if status.is_success() && path == TRACES_PATH {
        shared.accepted(http_span_count(&headers, &body), &forwarding);
    }
    forwarding.answer_due().await;
    let mut response = (status, answer).into_response();
    if let Some(content_type) = upstream_headers.get(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    response
}

/// The gRPC side: the three OTLP collector services, forwarding to the upstream's.
#[derive(Clone)]
struct GrpcSide {
    shared: Arc<Shared>,
}

impl GrpcSide {
    /// Runs `call` (the forwarding) if the state lets the export through, and counts `spans` if
    /// the collector accepted them.
    async fn pass<T>(
        &self,
        spans: u64,
        call: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<tonic::Response<T>, tonic::Status> {
        let forwarding = match self.shared.gate().await {
            Gate::Forward(forwarding) => forwarding,
            Gate::Fail => {
                return Err(tonic::Status::unavailable(
                    "the fault injector fails every export",
                ));
            }
            Gate::Throttle => {
                return Err(tonic::Status::with_error_details(
                    tonic::Code::ResourceExhausted,
                    "the fault injector throttles every export",
                    ErrorDetails::with_retry_info(Some(THROTTLE_RETRY_AFTER)),
                ));
            }
        };
        let answer = call.await;
        if answer.is_ok() {
            self.shared.accepted(spans, &forwarding);
        }
        forwarding.answer_due().await;
        answer
    }
}

#[tonic::async_trait]
impl TraceService for GrpcSide {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let request = request.into_inner();
        let spans = span_count(&request);
        let mut client = TraceServiceClient::new(self.shared.channel.clone());
        self.pass(spans, client.export(request)).await
    }
}

#[tonic::async_trait]
impl MetricsService for GrpcSide {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut client = MetricsServiceClient::new(self.shared.channel.clone());
        self.pass(0, client.export(request.into_inner())).await
    }
}

#[tonic::async_trait]
impl LogsService for GrpcSide {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let mut client = LogsServiceClient::new(self.shared.channel.clone());
        self.pass(0, client.export(request.into_inner())).await
    }
}

/// The injector's listening port, open or closed as the state says. In a black hole it accepts
/// connections and holds them unserved; when the hole ends they are served.
struct Door {
    port: u16,
    listener: Option<TcpListener>,
    held: Vec<TcpStream>,
    state: watch::Receiver<Fault>,
    shared: Arc<Shared>,
}

impl Door {
    async fn open(shared: &Arc<Shared>) -> Door {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fault injector on 127.0.0.1");
        Door {
            port: listener.local_addr().expect("its address").port(),
            listener: Some(listener),
            held: Vec::new(),
            state: shared.state.subscribe(),
            shared: shared.clone(),
        }
    }

    /// The next connection to serve.
    async fn next(&mut self) -> Connection {
        loop {
            let fault = *self.state.borrow_and_update();
            if matches!(fault, Fault::Absent | Fault::Flapping) {
                self.listener = None;
                self.held.clear();
                self.state_changed().await;
                continue;
            }
            if fault != Fault::BlackHole
                && let Some(stream) = self.held.pop()
            {
                return Connection::new(stream, &self.shared.resets);
            }
            if self.listener.is_none() {
                self.listener = Some(rebind(self.port).await);
            }
            let accepted = {
                let listener = self.listener.as_ref().expect("opened above");
                tokio::select! {
                    accepted = listener.accept() => Some(accepted),
                    changed = self.state.changed() => {
                        if changed.is_err() {
                            std::future::pending::<()>().await;
                        }
                        None
                    }
                }
            };
            match accepted {
                Some(Ok((stream, _))) => {
                    let _ = stream.set_nodelay(true);
                    if fault == Fault::BlackHole {
                        self.held.push(stream);
                    } else {
                        return Connection::new(stream, &self.shared.resets);
                    }
                }
                // Out of descriptors and the like: try again.
                Some(Err(_)) => tokio::time::sleep(Duration::from_millis(10)).await,
                None => {}
            }
        }
    }

    async fn state_changed(&mut self) {
        if self.state.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl axum::serve::Listener for Door {
    type Io = Connection;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Connection, SocketAddr) {
        let connection = self.next().await;
        let peer = connection
            .stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)));
        (connection, peer)
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(SocketAddr::from(([127, 0, 0, 1], self.port)))
    }
}

/// Binds `port` on 127.0.0.1 again, retrying while it is still in use.
async fn rebind(port: u16) -> TcpListener {
    let deadline = Instant::now() + REBIND_TIMEOUT;
    loop {
        match TcpListener::bind(("127.0.0.1", port)).await {
            Ok(listener) => return listener,
            Err(error) if Instant::now() >= deadline => {
                panic!("the fault injector cannot listen on 127.0.0.1:{port} again: {error}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

/// A connection the injector serves, reset (every read and write fails) once
/// [`Shared::resets`] moves on.
pub struct Connection {
    stream: TcpStream,
    reset: Pin<Box<dyn Future<Output = ()> + Send>>,
    was_reset: bool,
}

impl Connection {
    fn new(stream: TcpStream, resets: &watch::Sender<u64>) -> Connection {
        let mut resets = resets.subscribe();
        let born = *resets.borrow_and_update();
        Connection {
            stream,
            reset: Box::pin(async move {
                let _ = resets.wait_for(|generation| *generation != born).await;
            }),
            was_reset: false,
        }
    }

    fn check(&mut self, cx: &mut Context<'_>) -> std::io::Result<()> {
        if !self.was_reset && self.reset.as_mut().poll(cx).is_ready() {
            self.was_reset = true;
        }
        if self.was_reset {
            Err(std::io::ErrorKind::ConnectionReset.into())
        } else {
            Ok(())
        }
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Err(error) = this.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if let Err(error) = this.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Err(error) = this.check(cx) {
            return Poll::Ready(Err(error));
        }
        Pin::new(&mut this.stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.was_reset {
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Connection {
    type ConnectInfo = ();

    fn connect_info(&self) {}
}
