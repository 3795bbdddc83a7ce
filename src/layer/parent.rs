//! The context a request's span starts in: the trace context its headers carry, or, on a public
//! endpoint, the service's own, with a link to the span context its headers carry.
//!
//! Any client can send `traceparent`, `tracestate` and `baggage`. Continued, they choose the
//! request's trace id and, under the default parent-based sampler, whether it is sampled (a
//! `-00` flag keeps a client's requests out of the traces), and its baggage goes on into every
//! downstream call the handler makes. On a public endpoint none of it is continued: the span
//! starts a new trace, which the sampler decides afresh, with a span link to the client's span
//! context (ids and flags, without its `tracestate`), so that the two traces can still be
//! correlated, as the OpenTelemetry API describes links for public endpoints and as Go's
//! `otelhttp.WithPublicEndpoint` does. The HTTP semantic conventions (v1.44.0) say nothing of
//! untrusted endpoints and name no attribute for such a link. The client's baggage is dropped,
//! not limited: downstream services read baggage as what the system itself said (a tenant, a
//! user, a feature flag), and no size limit makes a forged member less forged.

use http::HeaderMap;
use opentelemetry::{
    Context, global,
    propagation::Extractor,
    trace::{Link, SpanContext, TraceContextExt, TraceState},
};

use super::{
    Shared,
    extractor::{RequestHeaders, SpanContextHeaders},
};

/// Where a request's span starts.
pub(crate) struct Parent {
    /// The context the span starts in and the inner service runs in.
    pub(crate) cx: Context,
    /// The span's links: on a public endpoint, the incoming span context, if it is valid.
    /// Empty otherwise, which allocates nothing.
    pub(crate) links: Vec<Link>,
}

impl Parent {
    /// The parent of the span of a request with these `headers`.
    pub(crate) fn of(shared: &Shared, headers: &HeaderMap) -> Self {
        let headers = RequestHeaders(headers);
        let current = Context::current();
        if !shared.public_endpoint {
            return Self {
                cx: extract(shared, &current, &headers),
                links: Vec::new(),
            };
        }
        // What the process itself made current stays; what the client sent is only linked.
        let incoming = extract(shared, &Context::new(), &SpanContextHeaders(headers));
        let incoming = incoming.span();
        let incoming = incoming.span_context();
        let links = if incoming.is_valid() {
            vec![Link::with_context(SpanContext::new(
                incoming.trace_id(),
                incoming.span_id(),
                incoming.trace_flags(),
                true,
                TraceState::NONE,
            ))]
        } else {
            Vec::new()
        };
        Self { cx: current, links }
    }
}

/// `cx` with what the service's propagator (else the global one) reads from `headers`.
fn extract(shared: &Shared, cx: &Context, headers: &dyn Extractor) -> Context {
    match &shared.propagator {
        Some(propagator) => propagator.extract_with_context(cx, headers),
        None => global::get_text_map_propagator(|propagator| {
            propagator.extract_with_context(cx, headers)
        }),
    }
}
