//! The life of one request: its span and its metrics, from the first byte in to the last
//! byte out, ended exactly once whatever way it ends.
//!
//! A tracer that gives a root span an invalid context is a no-op: OpenTelemetry's own, when no
//! tracer provider is installed or the SDK is disabled (an SDK tracer gives every root span a
//! valid context, sampled or not). Once one has been seen, the requests that follow start no
//! span: their context is the incoming one, passed through, which is what the no-op span would
//! have carried, and the metrics are recorded as before.

use std::{
    borrow::Cow,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response};
use opentelemetry::{
    Context, KeyValue,
    trace::{Link, Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, Tracer},
};
use opentelemetry_semantic_conventions::attribute::{ERROR_TYPE, HTTP_RESPONSE_STATUS_CODE};

use super::{
    Shared,
    parent::Parent,
    request::{
        RequestFacts, grpc_peer_address, peer_address, record_headers, rpc_span_attributes,
        truncated,
    },
    security::Witness,
};
use crate::{
    http_metrics::Series,
    rpc::{self, RpcCall, Side},
};

/// The response header naming the request's span.
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Adds `traceparent` for `span` to `headers`, as W3C Trace Context (Level 2, 3.2) writes it,
/// and nothing else: a propagator's `inject` would also write `tracestate`, replacing the
/// service's own or echoing the client's back to it. A span without a valid context adds
/// nothing; a header map already holding its most entries (32,768) is left as it is.
fn inject_traceparent(span: &SpanContext, headers: &mut HeaderMap) {
    if !span.is_valid() {
        return;
    }
    let flags = span.trace_flags() & TraceFlags::SAMPLED;
    let value = format!("00-{}-{}-{flags:02x}", span.trace_id(), span.span_id());
    if let Ok(value) = HeaderValue::try_from(value) {
        let _ = headers.try_insert(TRACEPARENT, value);
    }
}

/// Starts the SERVER span `name` in `parent`, and notes a tracer that turns out to be a no-op
/// (see the module's documentation); the context holding the span.
#[inline(always)]
fn start_span(
    shared: &Shared,
    parent: Context,
    links: Vec<Link>,
    name: Cow<'static, str>,
    attributes: Vec<KeyValue>,
    started_at: SystemTime,
) -> Context {
    let span = shared
        .tracer
        .span_builder(name)
        .with_kind(SpanKind::Server)
        .with_start_time(started_at)
        .with_links(links)
        .with_attributes(attributes)
        .start_with_context(&shared.tracer, &parent);
    if !span.is_recording()
        && !span.span_context().is_valid()
        && !parent.span().span_context().is_valid()
        && !parent.is_telemetry_suppressed()
    {
        shared.tracer_is_noop.store(true, Ordering::Relaxed);
    }
    parent.with_span(span)
}

/// `error.type` of a request whose client went away before the response ended.
const CANCELLED: &str = "cancelled";

/// One request between its start and the end of its response.
///
/// Dropping it ends the request: the span ends and the metrics are recorded once, with the
/// same duration. A request dropped before its response completed is recorded with
/// `error.type` `cancelled` (the span status stays unset: the client left, the server did
/// not fail).
pub(crate) struct InFlight {
    shared: Arc<Shared>,
    facts: RequestFacts,
    /// The request's context, holding its span.
    cx: Context,
    /// Whether the span of `cx` was started here (not when the tracer is a no-op).
    owns_span: bool,
    started: Instant,
    started_at: SystemTime,
    request_body_bytes: Arc<AtomicU64>,
    response_body_bytes: u64,
    /// The bytes the response body sends, when its head says: the request completes when they
    /// are out, as hyper stops polling a body then.
    response_length: Option<u64>,
    status_code: Option<u16>,
    error_type: Option<Cow<'static, str>>,
    /// The server failed: a 5xx response, or an error from the service or the body.
    failed: bool,
    completed: bool,
    /// What a security event or the access log line would say, kept when either is on.
    witness: Option<Witness>,
    /// A gRPC call, recorded under the RPC conventions instead of the HTTP ones (see
    /// [`rpc`]): no HTTP metric, security event or access log line.
    rpc: Option<Box<RpcCall>>,
}

impl InFlight {
    /// Starts the span of `request` as a child of the context its headers carry (on a public
    /// endpoint, in a new trace linked to it: see [`Parent`]), and counts the request as active.
    pub(crate) fn start<B>(shared: Arc<Shared>, request: &Request<B>) -> Self {
        if rpc::is_grpc(request.method(), request.headers()) {
            return Self::start_rpc(shared, request);
        }
        let origin = shared
            .trusted_proxies
            .origin(peer_address(request), request.headers());
        let facts = RequestFacts::of(request, &shared.known_methods, &origin);
        let Parent {
            cx: parent,
            links: parent_links,
        } = Parent::of(&shared, request.headers());

        let started_at = SystemTime::now();
        let started = Instant::now();
        let owns_span = !shared.tracer_is_noop.load(Ordering::Relaxed);
        let cx = if owns_span {
            let attributes = facts.span_attributes(
                request,
                &origin,
                &shared.request_headers,
                &shared.sensitive_query_parameters,
                shared.value_length_limit,
            );
            let name = facts.span_name.clone();
            start_span(&shared, parent, parent_links, name, attributes, started_at)
        } else {
            parent
        };
        shared.metrics.add_active(facts.active_series(), 1);

        Self {
            cx,
            owns_span,
            started,
            started_at,
            request_body_bytes: Arc::default(),
            response_body_bytes: 0,
            response_length: None,
            status_code: None,
            error_type: None,
            failed: false,
            completed: false,
            witness: (shared.security_events.is_some() || shared.access_log)
                .then(|| Witness::of(request, &facts, &origin, shared.value_length_limit)),
            facts,
            rpc: None,
            shared,
        }
    }

    /// [`start`](Self::start) for a gRPC call: its span under the RPC conventions, and no
    /// active request (`http.server.active_requests` counts HTTP requests; the RPC conventions,
    /// v1.44.0, have no such metric), nor witness. Apart, so that the HTTP path keeps its code.
    #[inline(never)]
    fn start_rpc<B>(shared: Arc<Shared>, request: &Request<B>) -> Self {
        let limit = shared.value_length_limit;
        let call = RpcCall::of(Side::Server, request.uri(), limit);
        let origin = shared
            .trusted_proxies
            .origin(grpc_peer_address(request), request.headers());
        let facts = RequestFacts::of(request, &shared.known_methods, &origin);
        let Parent {
            cx: parent,
            links: parent_links,
        } = Parent::of(&shared, request.headers());

        let started_at = SystemTime::now();
        let started = Instant::now();
        let owns_span = !shared.tracer_is_noop.load(Ordering::Relaxed);
        let cx = if owns_span {
            let attributes = rpc_span_attributes(request, &origin, &call, limit);
            let name = call.span_name();
            start_span(&shared, parent, parent_links, name, attributes, started_at)
        } else {
            parent
        };

        Self {
            cx,
            owns_span,
            started,
            started_at,
            request_body_bytes: Arc::default(),
            response_body_bytes: 0,
            response_length: None,
            status_code: None,
            error_type: None,
            failed: false,
            completed: false,
            witness: None,
            facts,
            rpc: Some(Box::new(call)),
            shared,
        }
    }

    /// The context the inner service runs in: its spans and logs become the request's children.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// The counter the request body adds the bytes it reads to.
    pub(crate) fn request_body_bytes(&self) -> Arc<AtomicU64> {
        self.request_body_bytes.clone()
    }

    /// Notes the response head: its status, the headers to record, and the `traceparent` to add.
    pub(crate) fn on_response<B>(&mut self, response: &mut Response<B>) {
        if let Some(call) = &mut self.rpc {
            call.on_response_head(response.status(), response.headers());
            if self.shared.inject_trace_context {
                inject_traceparent(self.cx.span().span_context(), response.headers_mut());
            }
            return;
        }
        let status = response.status().as_u16();
        self.status_code = Some(status);
        if status >= 500 {
            self.error_type = Some(Cow::Owned(status.to_string()));
            self.failed = true;
        }
        let span = self.cx.span();
        if self.owns_span && span.is_recording() {
            let status_code = KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status));
            if self.shared.response_headers.is_empty() {
                // The usual case: no list to build for one attribute.
                span.set_attribute(status_code);
            } else {
                let mut attributes = Vec::with_capacity(1 + self.shared.response_headers.len());
                attributes.push(status_code);
                record_headers(
                    response.headers(),
                    &self.shared.response_headers,
                    self.shared.value_length_limit,
                    &mut attributes,
                );
                span.set_attributes(attributes);
            }
        }
        if self.shared.inject_trace_context {
            inject_traceparent(span.span_context(), response.headers_mut());
        }
    }

    /// Notes the trailers that end the response body: a gRPC call's status.
    pub(crate) fn on_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(call) = &mut self.rpc {
            call.on_trailers(trailers);
        }
    }

    /// Notes that the inner service or the response body failed with an error of this type.
    pub(crate) fn on_error(&mut self, error_type: &'static str) {
        self.error_type = Some(Cow::Borrowed(error_type));
        self.failed = true;
    }

    /// Notes how many bytes the response body sends, from the response head, and whether that
    /// is none: an empty body, or a response to HEAD, which has no content (RFC 9110, 9.3.2;
    /// axum replaces its body after this layer, and hyper drops it unpolled). Otherwise the
    /// body's exact size or its `Content-Length`: hyper stops polling a body once that many
    /// bytes are out, without the final poll that would say it ended.
    pub(crate) fn sends_no_content<B: http_body::Body>(&mut self, response: &Response<B>) -> bool {
        if self.facts.is_head || response.body().is_end_stream() {
            return true;
        }
        self.response_length = response.body().size_hint().exact().or_else(|| {
            let length = response.headers().get(http::header::CONTENT_LENGTH)?;
            length.to_str().ok()?.parse().ok()
        });
        self.response_length == Some(0)
    }

    /// Counts bytes the response body sent; `true` once it sent all the head said it would.
    pub(crate) fn on_response_bytes(&mut self, bytes: usize) -> bool {
        self.response_body_bytes += bytes as u64;
        self.response_length
            .is_some_and(|length| self.response_body_bytes >= length)
    }

    /// Ends the request: the response, or the error, went out whole.
    pub(crate) fn complete(mut self: Box<Self>) {
        self.completed = true;
    }
}

impl InFlight {
    /// Ends a gRPC call: its span, with the status its response gave, and its duration.
    #[inline(never)]
    fn end_rpc(&mut self, call: RpcCall, elapsed: Duration) {
        let outcome = call.outcome(self.error_type.take(), self.failed);
        if self.owns_span {
            let span = self.cx.span();
            if span.is_recording() {
                call.end_span(&span, &outcome);
            }
            span.end_with_timestamp(self.started_at + elapsed);
        }
        self.shared
            .rpc_metrics
            .record(call.series(outcome, None), elapsed.as_secs_f64());
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        if !self.completed && self.error_type.is_none() {
            self.error_type = Some(Cow::Borrowed(CANCELLED));
        }
        if let Some(call) = self.rpc.take() {
            return self.end_rpc(*call, elapsed);
        }

        if self.owns_span {
            let span = self.cx.span();
            if span.is_recording() {
                if let Some(error_type) = &self.error_type {
                    span.set_attribute(KeyValue::new(ERROR_TYPE, error_type.clone()));
                }
                // 4xx and a client that went away are not the server's failures: status stays
                // unset.
                if self.failed {
                    span.set_status(Status::error(""));
                }
            }
            span.end_with_timestamp(self.started_at + elapsed);
        }

        let facts = &self.facts;
        if let Some(witness) = self.witness.as_ref().filter(|_| self.shared.access_log) {
            // As `Uri::path` gives it: empty without a path.
            let path = truncated(witness.path().unwrap_or(""), self.shared.value_length_limit);
            let _in_request = self.cx.clone().attach();
            tracing::event!(
                target: "otel_monitor::access",
                tracing::Level::INFO,
                http.request.method = facts.method,
                url.path = %path,
                client.address = witness.client().map(tracing::field::display),
                http.route = facts.route.as_deref(),
                http.response.status_code = self.status_code,
                http.server.request.duration = elapsed.as_secs_f64(),
                error.type = self.error_type.as_deref(),
                "{} {} {} {:.3} ms",
                facts.method,
                path,
                self.status_code.map_or(Cow::Borrowed("-"), |status| Cow::Owned(status.to_string())),
                elapsed.as_secs_f64() * 1e3,
            );
        }

        if let (Some(witness), Some(limiter)) = (&self.witness, &self.shared.security_events) {
            witness.report(
                limiter,
                facts,
                self.status_code,
                &self.cx,
                self.shared.value_length_limit,
            );
        }

        // Last, so that the series key takes the route and the error type instead of copies.
        let metrics = &self.shared.metrics;
        metrics.add_active(self.facts.active_series(), -1);
        metrics.record_completed(
            Series {
                method: self.facts.method,
                scheme: self.facts.scheme,
                protocol_version: self.facts.protocol_version,
                route: self.facts.route.take(),
                status_code: self.status_code,
                error_type: self.error_type.take(),
            },
            elapsed.as_secs_f64(),
            self.request_body_bytes.load(Ordering::Relaxed),
            self.response_body_bytes,
        );
    }
}
