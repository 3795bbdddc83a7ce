//! A Datadog trace intake on 127.0.0.1: what a Datadog exporter (rotel's, here) posts to
//! `POST /api/v0.2/traces` — a gzip protobuf `datadog.trace.AgentPayload` — is decoded and kept.
//!
//! The messages are written by hand from the public DataDog/datadog-agent protos, with only the
//! fields the tests read (prost skips the others):
//! `pkg/proto/datadog/trace/agent_payload.proto` (`AgentPayload`),
//! `pkg/proto/datadog/trace/tracer_payload.proto` (`TracerPayload`, `TraceChunk`) and
//! `pkg/proto/datadog/trace/span.proto` (`Span`).

use std::collections::HashMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// The path a Datadog exporter posts traces to.
pub const TRACES_PATH: &str = "/api/v0.2/traces";

/// `datadog.trace.AgentPayload`: what an agent sends to the trace intake.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AgentPayload {
    /// `hostName`: where the agent runs.
    #[prost(string, tag = "1")]
    pub host_name: String,
    /// `env`: the `env` of the agent's own configuration.
    #[prost(string, tag = "2")]
    pub env: String,
    /// `tracerPayloads`.
    #[prost(message, repeated, tag = "5")]
    pub tracer_payloads: Vec<TracerPayload>,
    /// `tags`: common to all tracer payloads.
    #[prost(map = "string, string", tag = "6")]
    pub tags: HashMap<String, String>,
    /// `agentVersion`.
    #[prost(string, tag = "7")]
    pub agent_version: String,
    /// `targetTPS`.
    #[prost(double, tag = "8")]
    pub target_tps: f64,
    /// `errorTPS`.
    #[prost(double, tag = "9")]
    pub error_tps: f64,
}

/// `datadog.trace.TracerPayload`: what one tracer (here, one OTel resource) sent.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TracerPayload {
    /// `containerID`.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// `languageName`.
    #[prost(string, tag = "2")]
    pub language_name: String,
    /// `languageVersion`.
    #[prost(string, tag = "3")]
    pub language_version: String,
    /// `tracerVersion`.
    #[prost(string, tag = "4")]
    pub tracer_version: String,
    /// `runtimeID`.
    #[prost(string, tag = "5")]
    pub runtime_id: String,
    /// `chunks`.
    #[prost(message, repeated, tag = "6")]
    pub chunks: Vec<TraceChunk>,
    /// `tags`: common to all chunks.
    #[prost(map = "string, string", tag = "7")]
    pub tags: HashMap<String, String>,
    /// `env`: the `env` tag set with the tracer.
    #[prost(string, tag = "8")]
    pub env: String,
    /// `hostname`.
    #[prost(string, tag = "9")]
    pub hostname: String,
    /// `appVersion`: the `version` tag set with the tracer.
    #[prost(string, tag = "10")]
    pub app_version: String,
}

/// `datadog.trace.TraceChunk`: spans of one trace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TraceChunk {
    /// `priority`: the sampling priority.
    #[prost(int32, tag = "1")]
    pub priority: i32,
    /// `origin`.
    #[prost(string, tag = "2")]
    pub origin: String,
    /// `spans`.
    #[prost(message, repeated, tag = "3")]
    pub spans: Vec<Span>,
    /// `tags`: common to all spans.
    #[prost(map = "string, string", tag = "4")]
    pub tags: HashMap<String, String>,
    /// `droppedTrace`.
    #[prost(bool, tag = "5")]
    pub dropped_trace: bool,
}

/// `datadog.trace.Span`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// `service`.
    #[prost(string, tag = "1")]
    pub service: String,
    /// `name`: the operation name.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `resource`: the endpoint, for web spans.
    #[prost(string, tag = "3")]
    pub resource: String,
    /// `traceID`: 64 bits.
    #[prost(uint64, tag = "4")]
    pub trace_id: u64,
    /// `spanID`.
    #[prost(uint64, tag = "5")]
    pub span_id: u64,
    /// `parentID`: zero for a root span.
    #[prost(uint64, tag = "6")]
    pub parent_id: u64,
    /// `start`: nanoseconds since the Unix epoch.
    #[prost(int64, tag = "7")]
    pub start: i64,
    /// `duration`: nanoseconds.
    #[prost(int64, tag = "8")]
    pub duration: i64,
    /// `error`: 1 when the span is an error.
    #[prost(int32, tag = "9")]
    pub error: i32,
    /// `meta`: string tags.
    #[prost(map = "string, string", tag = "10")]
    pub meta: HashMap<String, String>,
    /// `metrics`: numeric tags.
    #[prost(map = "string, double", tag = "11")]
    pub metrics: HashMap<String, f64>,
    /// `type`: `web`, `db`, `custom`...
    #[prost(string, tag = "12")]
    pub r#type: String,
    /// `meta_struct`: structured data.
    #[prost(map = "string, bytes", tag = "13")]
    pub meta_struct: HashMap<String, Vec<u8>>,
}

/// One HTTP request the intake got, whatever its path.
#[derive(Clone, Debug)]
pub struct IntakeRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// What the intake answered.
    pub status: StatusCode,
    /// Why it was refused, if it was.
    pub problem: Option<String>,
}

impl IntakeRequest {
    /// A header, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A span with what encloses it in the payload, flattened out by [`DatadogIntake::spans`].
#[derive(Clone, Debug)]
pub struct DatadogSpan {
    /// `AgentPayload.env`.
    pub agent_env: String,
    /// `AgentPayload.hostName`.
    pub agent_host_name: String,
    /// `TracerPayload.env`.
    pub tracer_env: String,
    /// `TracerPayload.appVersion`.
    pub tracer_app_version: String,
    /// `TracerPayload.hostname`.
    pub tracer_hostname: String,
    /// `TracerPayload.languageName`.
    pub language_name: String,
    /// `TraceChunk.priority`.
    pub chunk_priority: i32,
    /// `TraceChunk.tags`.
    pub chunk_tags: HashMap<String, String>,
    pub span: Span,
}

impl DatadogSpan {
    /// A string tag of the span.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.span.meta.get(key).map(String::as_str)
    }

    /// A numeric tag of the span.
    pub fn metric(&self, key: &str) -> Option<f64> {
        self.span.metrics.get(key).copied()
    }
}

#[derive(Default)]
struct Received {
    payloads: Vec<AgentPayload>,
    requests: Vec<IntakeRequest>,
}

type Shared = Arc<Mutex<Received>>;

/// Locks the shared store, ignoring poisoning (a panicking test must still be able to read it).
fn lock(received: &Shared) -> MutexGuard<'_, Received> {
    received
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A Datadog trace intake listening on 127.0.0.1; it shuts down gracefully when dropped.
///
/// `POST /api/v0.2/traces` with a protobuf `AgentPayload` (plain or gzip) is stored and answered
/// with 200 and an empty body (all rotel checks is the status); anything else is answered 404
/// (or 400/415 when undecodable) and still recorded in [`requests`](Self::requests).
pub struct DatadogIntake {
    received: Shared,
    addr: SocketAddr,
    /// Dropping this sender (with the intake) stops the server.
    _shutdown: watch::Sender<()>,
}

impl DatadogIntake {
    /// Starts the intake on an ephemeral port, on the current tokio runtime.
    pub async fn start() -> DatadogIntake {
        let received = Shared::default();
        let (shutdown, mut shutdown_rx) = watch::channel(());
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind an ephemeral port on 127.0.0.1");
        let addr = listener.local_addr().expect("intake listener address");
        let app = Router::new().fallback(intake).with_state(received.clone());
        let server = axum::serve(listener, app).with_graceful_shutdown(async move {
            // Fails once the sender is dropped: that is the shutdown signal.
            let _ = shutdown_rx.changed().await;
        });
        tokio::spawn(async move {
            server.await.expect("Datadog test intake failed");
        });
        DatadogIntake {
            received,
            addr,
            _shutdown: shutdown,
        }
    }

    /// The base URL, like `http://127.0.0.1:PORT` (a Datadog exporter's custom endpoint).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every payload decoded so far, in arrival order.
    pub fn payloads(&self) -> Vec<AgentPayload> {
        lock(&self.received).payloads.clone()
    }

    /// Every request received so far, accepted or not, in arrival order.
    pub fn requests(&self) -> Vec<IntakeRequest> {
        lock(&self.received).requests.clone()
    }

    /// Every span received so far, with its payload, tracer payload and chunk, in arrival order.
    pub fn spans(&self) -> Vec<DatadogSpan> {
        let received = lock(&self.received);
        let mut spans = Vec::new();
        for payload in &received.payloads {
            for tracer in &payload.tracer_payloads {
                for chunk in &tracer.chunks {
                    spans.extend(chunk.spans.iter().map(|span| DatadogSpan {
                        agent_env: payload.env.clone(),
                        agent_host_name: payload.host_name.clone(),
                        tracer_env: tracer.env.clone(),
                        tracer_app_version: tracer.app_version.clone(),
                        tracer_hostname: tracer.hostname.clone(),
                        language_name: tracer.language_name.clone(),
                        chunk_priority: chunk.priority,
                        chunk_tags: chunk.tags.clone(),
                        span: span.clone(),
                    }));
                }
            }
        }
        spans
    }

    /// Waits until `pred` holds for all spans received so far, then returns them.
    ///
    /// # Panics
    /// When `timeout` elapses first, with every request and span the intake got.
    pub async fn wait_for_spans(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&[DatadogSpan]) -> bool,
    ) -> Vec<DatadogSpan> {
        let what = format!("{what} at the Datadog intake {}", self.addr);
        super::wait_until(&what, timeout, || {
            let spans = self.spans();
            std::future::ready(if pred(&spans) {
                Ok(spans)
            } else {
                Err(format!(
                    "\n---- requests ----\n{:#?}\n---- spans ----\n{spans:#?}",
                    self.requests()
                ))
            })
        })
        .await
    }
}

async fn intake(
    State(received): State<Shared>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = if method == Method::POST && uri.path() == TRACES_PATH {
        decode(&headers, &body)
    } else {
        Err((
            StatusCode::NOT_FOUND,
            format!("no route for {method} {uri}"),
        ))
    };
    let mut received = lock(&received);
    let (status, problem) = match result {
        Ok(payload) => {
            received.payloads.push(payload);
            (StatusCode::OK, None)
        }
        Err((status, problem)) => (status, Some(problem)),
    };
    received.requests.push(IntakeRequest {
        method,
        path: uri.path().to_owned(),
        headers,
        status,
        problem: problem.clone(),
    });
    (status, problem.unwrap_or_default()).into_response()
}

/// Gunzips (if `content-encoding: gzip`) and decodes an `AgentPayload`.
fn decode(headers: &HeaderMap, body: &[u8]) -> Result<AgentPayload, (StatusCode, String)> {
    let header_str = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let content_type = header_str(header::CONTENT_TYPE).unwrap_or_default();
    if content_type != "application/x-protobuf" {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected application/x-protobuf, got {content_type:?}"),
        ));
    }
    let mut gunzipped = Vec::new();
    let body = match header_str(header::CONTENT_ENCODING) {
        None | Some("identity") => body,
        Some("gzip") => {
            flate2::read::GzDecoder::new(body)
                .read_to_end(&mut gunzipped)
                .map_err(|err| (StatusCode::BAD_REQUEST, format!("bad gzip body: {err}")))?;
            &gunzipped[..]
        }
        Some(other) => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("expected gzip or no content-encoding, got {other:?}"),
            ));
        }
    };
    AgentPayload::decode(body).map_err(|err| {
        (
            StatusCode::BAD_REQUEST,
            format!("undecodable AgentPayload: {err}"),
        )
    })
}
