//! A tap: an HTTP server on 127.0.0.1 that forwards every request to an upstream server and keeps
//! a copy of each exchange. Put in front of a collector's OTLP/HTTP receiver, it shows what the
//! crate sent, byte for byte as the collector received it; put between a collector and a backend,
//! what the collector made of it.
//!
//! It also forgives one rotel bug on the way: rotel's X-Ray exporter labels its plain JSON body
//! `Content-Encoding: gzip`, and moto, which believes the header, fails to gunzip it and answers
//! 500. The tap forwards every body unencoded: a gzip body gunzipped, a body falsely labelled gzip
//! as it is, without the label.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prost::Message;

use crate::support::ReceivedSpan;

/// The path of OTLP/HTTP trace exports.
pub const OTLP_TRACES_PATH: &str = "/v1/traces";

/// One request the tap forwarded, and the upstream's answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub method: String,
    pub path: String,
    /// The headers as the tap received them.
    pub headers: HeaderMap,
    /// The body as forwarded: unencoded.
    pub body: Bytes,
    pub upstream_status: StatusCode,
    pub upstream_answer: String,
}

impl Exchange {
    /// A header as the tap received it, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

type Shared = Arc<Mutex<Vec<Exchange>>>;

fn lock(seen: &Shared) -> MutexGuard<'_, Vec<Exchange>> {
    seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[derive(Clone)]
struct TapState {
    upstream: String,
    seen: Shared,
}

/// A running tap; stopped when dropped.
pub struct Tap {
    addr: SocketAddr,
    seen: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Tap {
    /// Starts a tap on an ephemeral port of 127.0.0.1 forwarding to `upstream` (like
    /// `http://127.0.0.1:PORT`), on the current tokio runtime.
    pub async fn start(upstream: String) -> Tap {
        let seen = Shared::default();
        let state = TapState {
            upstream,
            seen: seen.clone(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the tap on 127.0.0.1");
        let addr = listener.local_addr().expect("the tap's address");
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the tap failed");
        });
        Tap { addr, seen, server }
    }

    /// Like `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every exchange so far, in arrival order.
    pub fn exchanges(&self) -> Vec<Exchange> {
        lock(&self.seen).clone()
    }

    /// Every span of every OTLP/HTTP protobuf trace export forwarded so far, with its resource
    /// and scope, in arrival order.
    ///
    /// # Panics
    /// When a trace export is not a protobuf `ExportTraceServiceRequest`.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        let mut spans = Vec::new();
        for exchange in self.exchanges() {
            if exchange.method != "POST" || exchange.path != OTLP_TRACES_PATH {
                continue;
            }
            let request = ExportTraceServiceRequest::decode(&exchange.body[..])
                .unwrap_or_else(|err| panic!("not a protobuf trace export ({err}): {exchange:?}"));
            for resource_spans in request.resource_spans {
                let resource: Vec<KeyValue> = resource_spans
                    .resource
                    .map(|r| r.attributes)
                    .unwrap_or_default();
                for scope_spans in resource_spans.scope_spans {
                    let (scope_name, scope_version) = scope_spans
                        .scope
                        .map(|s| (s.name, s.version))
                        .unwrap_or_default();
                    spans.extend(scope_spans.spans.into_iter().map(|span| ReceivedSpan {
                        resource: resource.clone(),
                        scope_name: scope_name.clone(),
                        scope_version: scope_version.clone(),
                        span,
                    }));
                }
            }
        }
        spans
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(state): State<TapState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let received_headers = parts.headers.clone();
    let body = body.collect().await.expect("read the body").to_bytes();
    let body = match parts.headers.remove(header::CONTENT_ENCODING) {
        Some(encoding) if encoding == "gzip" => {
            let mut plain = Vec::new();
            match flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain) {
                Ok(_) => Bytes::from(plain),
                // Rotel's X-Ray bug: plain JSON labelled gzip. Sent on as it is, unlabelled.
                Err(_) => body,
            }
        }
        Some(other) => panic!("the tap does not decode content-encoding {other:?}"),
        None => body,
    };
    // hyper sets both again, for the new body and for the upstream's address. Neither rotel nor
    // moto checks SigV4 signatures, so changing the host does not matter.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::HOST);
    let path = parts.uri.path().to_owned();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = format!("{}{path_and_query}", state.upstream)
        .parse()
        .expect("the upstream's URI");
    let method = parts.method.to_string();
    let (status, headers, answer) =
        crate::support::client::send(http::Request::from_parts(parts, Body::from(body.clone())))
            .await;
    lock(&state.seen).push(Exchange {
        method,
        path,
        headers: received_headers,
        body,
        upstream_status: status,
        upstream_answer: String::from_utf8_lossy(&answer).into_owned(),
    });
    let mut response = (status, answer).into_response();
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    response
}

// ---------------------------------------------------------------------------------------------
// The APM tests' traffic, and what the crate must send for it.
// ---------------------------------------------------------------------------------------------

/// The W3C Trace Context example ids, sent as the incoming `traceparent` of `GET /users/42`, so
/// the ids that reach the backend can be checked against known values.
pub const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
pub const REMOTE_PARENT_ID: &str = "00f067aa0ba902b7";

/// The resource the APM tests give the example (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`).
pub const SERVICE_NAME: &str = "checkout";
pub const RESOURCE_ATTRIBUTES: &str = "deployment.environment.name=staging,service.version=1.2.3";

/// The example service exporting OTLP/HTTP through `tap` under [`SERVICE_NAME`] and
/// [`RESOURCE_ATTRIBUTES`], and the port it serves on (the spans' `server.port`).
pub fn start_example_service(tap: &Tap) -> (crate::support::ExampleService, u16) {
    let service = crate::support::ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &tap.endpoint()),
        ("OTEL_SERVICE_NAME", SERVICE_NAME),
        ("OTEL_RESOURCE_ATTRIBUTES", RESOURCE_ATTRIBUTES),
    ]);
    let port = service
        .url("")
        .rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .expect("the service's port");
    (service, port)
}

/// The spans the crate sent for [`send_traffic`]'s requests.
pub struct TrafficSpans {
    /// `GET /users/42` (200), under the remote parent of its `traceparent`.
    pub user: ReceivedSpan,
    /// The handler's `#[instrument]`ed `load_user`, under `user`.
    pub load_user: ReceivedSpan,
    /// `GET /users/abc` (400).
    pub bad_request: ReceivedSpan,
    /// `GET /error` (500).
    pub error: ReceivedSpan,
}

impl TrafficSpans {
    pub fn all(&self) -> [&ReceivedSpan; 4] {
        [&self.user, &self.load_user, &self.bad_request, &self.error]
    }
}

/// `GET /users/42` with `traceparent`, `GET /users/abc`, `GET /error`, checking their statuses.
pub async fn send_traffic(service: &crate::support::ExampleService) {
    use crate::support::client::get;
    let traceparent = format!("00-{TRACE_ID}-{REMOTE_PARENT_ID}-01");
    let (status, _, _) = get(&service.url("/users/42"), &[("traceparent", &traceparent)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(&service.url("/users/abc"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _, _) = get(&service.url("/error"), &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
}

fn with_path<'a>(spans: &'a [ReceivedSpan], path: &str) -> Option<&'a ReceivedSpan> {
    spans.iter().find(|s| s.attr_str("url.path") == Some(path))
}

/// Waits until the tap has forwarded the spans of [`send_traffic`]'s requests to the collector,
/// and asserts them against the semantic conventions v1.44.0 (HTTP server spans, `service.*` and
/// `deployment.*` resource attributes): this is the crate's part, whatever the collector does.
///
/// # Panics
/// When they do not arrive within `timeout`, or break the conventions.
pub async fn the_crate_sent_conventional_spans(
    tap: &Tap,
    service_port: u16,
    timeout: std::time::Duration,
) -> TrafficSpans {
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use opentelemetry_proto::tonic::trace::v1::status::StatusCode as OtelStatus;

    let spans = crate::support::wait_until(
        "the spans of the traffic at the collector's door",
        timeout,
        || {
            let spans = tap.spans();
            let complete = ["/users/42", "/users/abc", "/error"]
                .iter()
                .all(|path| with_path(&spans, path).is_some())
                && spans.iter().any(|s| s.span.name == "load_user");
            std::future::ready(if complete {
                Ok(spans)
            } else {
                Err(format!("{spans:#?}"))
            })
        },
    )
    .await;
    let traffic = TrafficSpans {
        user: with_path(&spans, "/users/42").unwrap().clone(),
        load_user: crate::support::span_named(&spans, "load_user").clone(),
        bad_request: with_path(&spans, "/users/abc").unwrap().clone(),
        error: with_path(&spans, "/error").unwrap().clone(),
    };

    // Every span: the resource the deployment gave, under the conventions' names.
    for span in traffic.all() {
        let what = &span.span.name;
        assert_eq!(
            span.resource_str("service.name"),
            Some(SERVICE_NAME),
            "{what}"
        );
        assert_eq!(
            span.resource_str("service.version"),
            Some("1.2.3"),
            "{what}"
        );
        assert_eq!(
            span.resource_str("deployment.environment.name"),
            Some("staging"),
            "{what}"
        );
    }

    // The HTTP server spans: kind SERVER, named `{method} {http.route}`, with the required and
    // recommended attributes, the status code an integer, and status Error only for a 5xx (with
    // `error.type` the status code); a 4xx leaves the status unset on a server span.
    let server_spans = [
        (&traffic.user, "/users/42", "/users/{id}", 200),
        (&traffic.bad_request, "/users/abc", "/users/{id}", 400),
        (&traffic.error, "/error", "/error", 500),
    ];
    for (span, path, route, status) in server_spans {
        let what = format!("GET {path}");
        assert_eq!(span.span.kind, SpanKind::Server as i32, "{what}");
        assert_eq!(span.span.name, format!("GET {route}"), "{what}");
        assert_eq!(span.attr_str("http.request.method"), Some("GET"), "{what}");
        assert_eq!(span.attr_str("url.scheme"), Some("http"), "{what}");
        assert_eq!(span.attr_str("http.route"), Some(route), "{what}");
        assert_eq!(
            span.attr_int("http.response.status_code"),
            Some(status),
            "{what}"
        );
        assert_eq!(
            span.attr_str("network.protocol.version"),
            Some("1.1"),
            "{what}"
        );
        assert_eq!(span.attr_str("server.address"), Some("127.0.0.1"), "{what}");
        assert_eq!(
            span.attr_int("server.port"),
            Some(i64::from(service_port)),
            "{what}"
        );
        assert_eq!(span.attr_str("client.address"), Some("127.0.0.1"), "{what}");
        let (code, error_type) = if status >= 500 {
            (OtelStatus::Error, Some("500"))
        } else {
            (OtelStatus::Unset, None)
        };
        let status_code = span.span.status.as_ref().map_or(0, |s| s.code);
        assert_eq!(status_code, code as i32, "{what}: {:?}", span.span.status);
        assert_eq!(span.attr_str("error.type"), error_type, "{what}");
    }

    // The handler's span: INTERNAL, a child of the request span, which continues the caller's
    // trace; the other two requests are traces of their own.
    assert_eq!(traffic.load_user.span.kind, SpanKind::Internal as i32);
    assert_eq!(traffic.user.trace_id_hex(), TRACE_ID);
    assert_eq!(traffic.user.parent_span_id_hex(), REMOTE_PARENT_ID);
    assert_eq!(traffic.load_user.trace_id_hex(), TRACE_ID);
    assert_eq!(
        traffic.load_user.parent_span_id_hex(),
        traffic.user.span_id_hex()
    );
    for root in [&traffic.bad_request, &traffic.error] {
        assert_eq!(root.parent_span_id_hex(), "", "{}", root.span.name);
        assert_ne!(root.trace_id_hex(), TRACE_ID, "{}", root.span.name);
    }
    traffic
}
