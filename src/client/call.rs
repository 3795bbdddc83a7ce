//! The life of one outgoing call: its span and its duration, from the request going out to the
//! last frame of the response body, ended exactly once whatever way it ends.

use std::{
    borrow::Cow,
    sync::{Arc, atomic::Ordering},
    time::{Instant, SystemTime},
};

use http::{Extensions, HeaderMap, Method, StatusCode, Uri, Version};
use opentelemetry::{
    Context, KeyValue, global,
    trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer},
};
use opentelemetry_http::HeaderInjector;
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, HTTP_RESPONSE_STATUS_CODE, NETWORK_PROTOCOL_VERSION,
};

use super::{Shared, metrics::Series, request::CallFacts};
use crate::{
    layer::{error_type::PANIC, request::protocol_version},
    rpc::{self, RpcCall, Side},
};

/// One call between its request and the end of its response.
///
/// Dropping it ends the call: the span ends and the duration is recorded once. A call dropped
/// before its response ended was cancelled by the caller, which the conventions (v1.44.0, HTTP
/// span status) say is not an error: no `error.type`, the status left unset. A call dropped
/// while a panic unwinds is `error.type` `panic`.
pub(crate) struct OutgoingCall {
    shared: Arc<Shared>,
    facts: CallFacts,
    /// The call's context, holding its span, when the layer started one.
    cx: Option<Context>,
    started: Instant,
    started_at: SystemTime,
    status_code: Option<u16>,
    protocol_version: Option<&'static str>,
    error_type: Option<Cow<'static, str>>,
    completed: bool,
    /// A gRPC call, recorded under the RPC conventions instead of the HTTP ones (see
    /// [`rpc`]).
    rpc: Option<Box<RpcCall>>,
}

impl OutgoingCall {
    /// Starts the span of a request to `uri` as a child of the current context, and injects the
    /// context into `headers`: the span's when it is recording, else the current one.
    pub(crate) fn start(
        shared: Arc<Shared>,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
        extensions: &Extensions,
    ) -> Self {
        let facts = CallFacts::of(&shared, method, uri, headers, extensions);
        let rpc = rpc::is_grpc(method, headers)
            .then(|| Box::new(RpcCall::of(Side::Client, uri, shared.value_length_limit)));
        let parent = Context::current();
        let started_at = SystemTime::now();
        let started = Instant::now();
        let cx = (!shared.tracer_is_noop.load(Ordering::Relaxed)).then(|| {
            let (name, attributes) = match &rpc {
                None => (
                    facts.span_name.clone(),
                    facts.span_attributes(&shared, method, uri),
                ),
                Some(call) => (call.span_name(), facts.rpc_span_attributes(call)),
            };
            let span = shared
                .tracer
                .span_builder(name)
                .with_kind(SpanKind::Client)
                .with_start_time(started_at)
                .with_attributes(attributes)
                .start_with_context(&shared.tracer, &parent);
            // A tracer that gives a root span an invalid context is a no-op (see the server's
            // `in_flight.rs`): stop asking it.
            if !span.is_recording()
                && !span.span_context().is_valid()
                && !parent.span().span_context().is_valid()
                && !parent.is_telemetry_suppressed()
            {
                shared.tracer_is_noop.store(true, Ordering::Relaxed);
            }
            parent.with_span(span)
        });
        let injected = match &cx {
            Some(cx) if cx.span().is_recording() => cx,
            _ => &parent,
        };
        let mut injector = HeaderInjector(headers);
        match &shared.propagator {
            Some(propagator) => propagator.inject_context(injected, &mut injector),
            None => global::get_text_map_propagator(|propagator| {
                propagator.inject_context(injected, &mut injector)
            }),
        }
        Self {
            shared,
            facts,
            cx,
            started,
            started_at,
            status_code: None,
            protocol_version: None,
            error_type: None,
            completed: false,
            rpc,
        }
    }

    /// The context the inner service runs in, when the call's span is recording: what it
    /// traces becomes the call's child.
    pub(crate) fn recording_context(&self) -> Option<&Context> {
        self.cx.as_ref().filter(|cx| cx.span().is_recording())
    }

    /// Notes the response head; a 4xx or 5xx fails the call (v1.44.0: SHOULD be Error on a
    /// CLIENT span), with the status code as `error.type`. A gRPC call reads its status there
    /// when the response is trailers-only.
    pub(crate) fn on_response(
        &mut self,
        status: StatusCode,
        version: Version,
        headers: &HeaderMap,
    ) {
        if let Some(call) = &mut self.rpc {
            return call.on_response_head(status, headers);
        }
        let status = status.as_u16();
        let version = protocol_version(version);
        self.status_code = Some(status);
        self.protocol_version = Some(version);
        if status >= 400 {
            self.error_type = Some(Cow::Owned(status.to_string()));
        }
        if let Some(cx) = self.recording_context() {
            cx.span().set_attributes([
                KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status)),
                KeyValue::new(NETWORK_PROTOCOL_VERSION, version),
            ]);
        }
    }

    /// Whether a response to this call has no content to wait for: a response to HEAD.
    pub(crate) fn expects_no_content(&self) -> bool {
        self.facts.is_head
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
    }

    /// Ends the call: the response, or the error, is whole.
    pub(crate) fn complete(mut self) {
        self.completed = true;
    }
}

impl OutgoingCall {
    /// Ends a gRPC call: its span, with the status the server gave or the client generated, and
    /// its duration. A call the caller gave up on before its status came is `CANCELLED`, the
    /// code a gRPC client generates for it (v1.44.0: `rpc.response.status_code` is "returned
    /// by the server or generated by the client"), an error on a CLIENT span as every code but
    /// `OK` is.
    #[inline(never)]
    fn end_rpc(&mut self, mut call: RpcCall, elapsed: std::time::Duration) {
        if !self.completed && self.error_type.is_none() {
            call.on_cancelled();
        }
        let outcome = call.outcome(self.error_type.take(), true);
        if let Some(cx) = &self.cx {
            let span = cx.span();
            if span.is_recording() {
                call.end_span(&span, &outcome);
            }
            span.end_with_timestamp(self.started_at + elapsed);
        }
        let server = self
            .facts
            .server_address
            .take()
            .map(|address| (address, self.facts.server_port));
        self.shared
            .rpc_metrics
            .record(call.series(outcome, server), elapsed.as_secs_f64());
    }
}

impl Drop for OutgoingCall {
    fn drop(&mut self) {
        let elapsed = self.started.elapsed();
        if !self.completed && std::thread::panicking() {
            self.error_type = Some(Cow::Borrowed(PANIC));
        }
        if let Some(call) = self.rpc.take() {
            return self.end_rpc(*call, elapsed);
        }
        if let Some(cx) = &self.cx {
            let span = cx.span();
            if span.is_recording()
                && let Some(error_type) = &self.error_type
            {
                span.set_attribute(KeyValue::new(ERROR_TYPE, error_type.clone()));
                span.set_status(Status::error(""));
            }
            span.end_with_timestamp(self.started_at + elapsed);
        }
        let facts = &mut self.facts;
        self.shared.metrics.record(
            Series {
                method: facts.method,
                server_address: facts.server_address.take(),
                server_port: facts.server_port,
                url_template: facts.url_template.take(),
                protocol_version: self.protocol_version,
                status_code: self.status_code,
                error_type: self.error_type.take(),
            },
            elapsed.as_secs_f64(),
        );
    }
}
