//! [`MonitorLayer`]: a tower middleware that traces each request as an OpenTelemetry server span
//! and records the HTTP server metrics.
//!
//! One file per piece, as tower-http lays out its middleware: the layer and its builder here,
//! the [`MonitorService`] in `service.rs`, the [`ResponseFuture`] in `future.rs`, the body
//! wrappers in `body.rs`, the trace context read from the headers in `extractor.rs`, the context
//! a request's span starts in (continued, or linked on a public endpoint) in `parent.rs`, who the
//! client is (the socket peer, or what trusted proxies say) in `forwarded.rs`, the methods known
//! by name in `known_methods.rs`, what is read from a request in `request.rs` (cut to the
//! attribute value length limit), what is never recorded of it in `redaction.rs`, the span names
//! made once per route for the whole process in `routes.rs`, the life of one request, from its
//! span's start to the last metric, in `in_flight.rs`, the security events of refused requests in
//! `security.rs`, and their per-client rate limit in `refusal_limit.rs`.

mod body;
pub(crate) mod error_type;
mod extractor;
mod forwarded;
mod future;
mod in_flight;
pub(crate) mod known_methods;
mod parent;
pub(crate) mod redaction;
mod refusal_limit;
pub(crate) mod request;
pub(crate) mod routes;
mod security;
mod service;

pub use body::{RequestBody, ResponseBody};
pub use forwarded::ForwardedHeaders;
pub use future::ResponseFuture;
pub use service::MonitorService;

use std::{
    fmt,
    sync::{Arc, atomic::AtomicBool},
};

use http::HeaderName;
use opentelemetry::{
    Key,
    global::{self, BoxedTracer},
    metrics::Meter,
    propagation::TextMapPropagator,
    trace::Tracer,
};
use tower_layer::Layer;

use crate::{
    config,
    http_metrics::HttpServerMetrics,
    rpc::{RpcMetrics, Side},
    scope,
};
use forwarded::TrustedProxies;
use known_methods::KnownMethods;
use redaction::{CREDENTIAL_HEADERS, SensitiveQueryParameters};
use refusal_limit::RefusalLimiter;

/// Security events a client may cause a minute, when the builder does not say.
const DEFAULT_SECURITY_EVENTS_PER_CLIENT: u32 = 10;

/// The attribute value length limit, in characters, when neither the builder nor the environment
/// sets one: longer than nearly every real URL (browsers and CDNs stop near 2,000) and user
/// agent (a few hundred), and small enough that the values a client controls, five strings and
/// the recorded headers, keep a span within a few tens of KiB. The client layer's default too.
pub(crate) const DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT: usize = 2048;

/// A tower [`Layer`] that makes every request an OpenTelemetry SERVER span and records the
/// HTTP server metrics, both as the HTTP semantic conventions (v1.44) name them.
///
/// For each request it:
/// - continues the trace of the incoming `traceparent`/`tracestate`/`baggage` headers (a
///   malformed header starts a new trace and never fails the request), or, on a
///   [public endpoint](MonitorLayerBuilder::public_endpoint), starts a new trace linked to it;
/// - starts a span named `{method} {route}` (`{method}` when no route matched) with the
///   conventions' attributes, and runs the inner service inside its context, so `tracing`
///   spans and events of the handler become its children;
/// - ends the span and records `http.server.request.duration` with the same duration when
///   the response body has sent its last byte, or when the client goes away first;
/// - keeps `http.server.active_requests` right whatever happens, and records
///   `http.server.request.body.size` and `http.server.response.body.size` from the bytes that
///   went through the bodies;
/// - logs a security event for each response that refuses the request (401, 403, 429, and 404
///   when no route matched), rate-limited per client (see
///   [`security_events`](MonitorLayerBuilder::security_events)).
///
/// A gRPC call (a `POST` of `content-type: application/grpc` or `application/grpc+...`) is
/// recorded under the RPC semantic conventions (v1.44) instead of the HTTP ones, so a tonic
/// server (`tonic::transport::Server::builder().layer(MonitorLayer::new())`) is monitored too:
/// a SERVER span named `package.Service/Method` with `rpc.system.name` `grpc`, `rpc.method`,
/// `rpc.response.status_code` from the `grpc-status` at the end of the response body (or in a
/// trailers-only response's head), status Error and `error.type` for the codes that are a
/// server's errors (`UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`,
/// `DATA_LOSS`), and `rpc.server.call.duration` in place of the HTTP server metrics. A method
/// the server answers `UNIMPLEMENTED` is recorded as `_OTHER` (span `grpc`), so clients cannot
/// add `rpc.method` values.
///
/// It is cheap to clone and knows nothing about exporters: it takes the global tracer and meter
/// unless told otherwise, so create it after [`Telemetry::init`](crate::Telemetry). When its
/// tracer turns out to be a no-op (no tracer provider installed, or the SDK disabled), it stops
/// asking it for spans after the first request and passes the incoming trace context through
/// unchanged; the metrics are recorded as before.
///
/// What a client sends cannot make a span large: every attribute value it controls is cut to
/// 2,048 characters unless configured otherwise (see
/// [`attribute_value_length_limit`](MonitorLayerBuilder::attribute_value_length_limit)), and a
/// recorded header keeps its first 8 values.
///
/// What a client sends as a credential is never recorded, in spans, log records or console lines:
/// - the values of the sensitive query parameters, `REDACTED` in `url.query`
///   (`q=1&X-Amz-Signature=REDACTED`): by default the HTTP semantic conventions' list (v1.44),
///   `X-Amz-Signature`, `X-Amz-Credential`, `X-Amz-Security-Token`, `sig`, `X-Goog-Signature`,
///   and the `AWSAccessKeyId` and `Signature` of older signed URLs; see
///   [`sensitive_query_parameters`](MonitorLayerBuilder::sensitive_query_parameters);
/// - `Authorization`, `Cookie`, `Set-Cookie` and `Proxy-Authorization`, even when listed to be
///   recorded, and the headers added with
///   [`never_record_headers`](MonitorLayerBuilder::never_record_headers);
/// - the user info of a URL (`https://user:password@host/`): `server.address` is the host alone,
///   and no attribute holds the whole URL.
///
/// The access log holds the path, never the query or a header.
///
/// ```
/// use axum::{Router, routing::get};
/// use otel_monitor::MonitorLayer;
///
/// let app: Router = Router::new()
///     .route("/users/{id}", get(|| async { "user" }))
///     .layer(MonitorLayer::new());
/// ```
#[derive(Clone)]
pub struct MonitorLayer {
    shared: Arc<Shared>,
}

/// Decides from a request's path whether to trace and measure it.
type PathFilter = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// What every request of a [`MonitorLayer`] reads.
pub(crate) struct Shared {
    pub(crate) tracer: BoxedTracer,
    /// Set once the tracer has shown it is a no-op (see [`in_flight`]): spans are no longer
    /// started, the incoming context is passed through as it is.
    pub(crate) tracer_is_noop: AtomicBool,
    pub(crate) metrics: HttpServerMetrics,
    /// `rpc.server.call.duration`, for the gRPC calls.
    pub(crate) rpc_metrics: RpcMetrics,
    pub(crate) propagator: Option<Box<dyn TextMapPropagator + Send + Sync>>,
    pub(crate) filter: Option<PathFilter>,
    pub(crate) request_headers: Box<[(HeaderName, Key)]>,
    pub(crate) response_headers: Box<[(HeaderName, Key)]>,
    pub(crate) sensitive_query_parameters: SensitiveQueryParameters,
    pub(crate) inject_trace_context: bool,
    /// The incoming trace context is linked, not continued, and its baggage dropped.
    pub(crate) public_endpoint: bool,
    pub(crate) access_log: bool,
    /// The limit of security events, `None` when they are off.
    pub(crate) security_events: Option<RefusalLimiter>,
    /// The most characters of an attribute value a client controls.
    pub(crate) value_length_limit: usize,
    /// Whose forwarding headers say who the client is.
    pub(crate) trusted_proxies: TrustedProxies,
    /// The methods recorded by name.
    pub(crate) known_methods: KnownMethods,
}

impl MonitorLayer {
    /// A layer with the defaults: the global tracer, meter and propagator, every request
    /// traced, no header recorded, no `traceparent` added to responses.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to change the defaults.
    ///
    /// ```
    /// use otel_monitor::MonitorLayer;
    ///
    /// let layer = MonitorLayer::builder()
    ///     .filter(|path| path != "/health")
    ///     .record_request_headers(["x-request-id"])
    ///     .inject_trace_context(true)
    ///     .access_log(true)
    ///     .build();
    /// ```
    pub fn builder() -> MonitorLayerBuilder {
        MonitorLayerBuilder::default()
    }
}

impl Default for MonitorLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MonitorLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorLayer")
            .field("filtered", &self.shared.filter.is_some())
            .field("request_headers", &self.shared.request_headers)
            .field("response_headers", &self.shared.response_headers)
            .field(
                "sensitive_query_parameters",
                &self.shared.sensitive_query_parameters,
            )
            .field("inject_trace_context", &self.shared.inject_trace_context)
            .field("public_endpoint", &self.shared.public_endpoint)
            .field("access_log", &self.shared.access_log)
            .field("security_events", &self.shared.security_events.is_some())
            .field("value_length_limit", &self.shared.value_length_limit)
            .field("trusted_proxies", &self.shared.trusted_proxies)
            .field("known_methods", &self.shared.known_methods)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for MonitorLayer {
    type Service = MonitorService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MonitorService::new(inner, self.shared.clone())
    }
}

/// Builds a [`MonitorLayer`]; see [`MonitorLayer::builder`].
#[derive(Default)]
#[must_use = "call build() to get the layer"]
pub struct MonitorLayerBuilder {
    tracer: Option<BoxedTracer>,
    meter: Option<Meter>,
    propagator: Option<Box<dyn TextMapPropagator + Send + Sync>>,
    filter: Option<PathFilter>,
    request_headers: Vec<HeaderName>,
    response_headers: Vec<HeaderName>,
    never_recorded_headers: Vec<HeaderName>,
    sensitive_query_parameters: Option<SensitiveQueryParameters>,
    inject_trace_context: bool,
    public_endpoint: Option<bool>,
    access_log: bool,
    /// `None`: on, the default.
    security_events: Option<bool>,
    security_events_per_client: Option<u32>,
    value_length_limit: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
    forwarded_headers: Option<ForwardedHeaders>,
    known_methods: Option<Vec<String>>,
}

impl MonitorLayerBuilder {
    /// Starts spans with this tracer instead of the global one.
    pub fn tracer<T>(mut self, tracer: T) -> Self
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        self.tracer = Some(BoxedTracer::new(Box::new(tracer)));
        self
    }

    /// Records the metrics with this meter instead of a global one.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Extracts the parent context with this propagator instead of the global one (which
    /// [`Telemetry`](crate::Telemetry) sets from `OTEL_PROPAGATORS`).
    pub fn propagator(
        mut self,
        propagator: impl TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.propagator = Some(Box::new(propagator));
        self
    }

    /// Traces and measures only the requests whose path makes `filter` return `true`; the
    /// others (health checks, say) pass through untouched.
    pub fn filter(mut self, filter: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// Records these request headers as `http.request.header.<name>` span attributes (names
    /// match in any case).
    ///
    /// `authorization`, `cookie`, `set-cookie` and `proxy-authorization` are never recorded, nor
    /// the headers named in [`never_record_headers`](Self::never_record_headers), nor a value
    /// marked [sensitive](http::HeaderValue::is_sensitive) (as tower-http's
    /// `SetSensitiveRequestHeadersLayer` marks them); names that are not valid header names are
    /// ignored. Each attribute is an array of the header's values in the order received, at most
    /// the first 8 (a client can repeat a header thousands of times), each cut to the
    /// [attribute value length limit](Self::attribute_value_length_limit).
    pub fn record_request_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.request_headers.extend(header_names(names));
        self
    }

    /// Records these response headers as `http.response.header.<name>` span attributes, with
    /// the same exclusions and limits as [`record_request_headers`](Self::record_request_headers):
    /// at most the first 8 values, each cut to the
    /// [attribute value length limit](Self::attribute_value_length_limit).
    pub fn record_response_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.response_headers.extend(header_names(names));
        self
    }

    /// Never records these headers, request or response, even when they are listed in
    /// [`record_request_headers`](Self::record_request_headers) or
    /// [`record_response_headers`](Self::record_response_headers): added to `authorization`,
    /// `cookie`, `set-cookie` and `proxy-authorization`, which are never recorded whatever is
    /// configured. Names match in any case; names that are not valid header names are ignored.
    /// Each call adds to the previous ones.
    ///
    /// For the headers that carry your own credentials, so that a list of headers to record
    /// that comes from configuration cannot export them.
    ///
    /// ```
    /// use otel_monitor::MonitorLayer;
    ///
    /// let layer = MonitorLayer::builder()
    ///     .never_record_headers(["X-Api-Key", "x-csrf-token"])
    ///     // Not recorded: x-api-key is never recorded.
    ///     .record_request_headers(["x-request-id", "x-api-key"])
    ///     .build();
    /// ```
    pub fn never_record_headers<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.never_recorded_headers.extend(header_names(names));
        self
    }

    /// Redacts the values of exactly these query parameters in `url.query` (`REDACTED` in place of
    /// the value, the name kept), instead of the default list; an empty list redacts none. Names
    /// match case-sensitively, as the HTTP semantic conventions say; each call replaces the list
    /// of the previous one.
    ///
    /// This is a full override of the default list, as the conventions'
    /// `sensitive_query_parameters` setting is (v1.44, `url.query`): to add a name, list the
    /// defaults too. By default the conventions' list, `X-Amz-Signature`, `X-Amz-Credential`,
    /// `X-Amz-Security-Token`, `sig`, `X-Goog-Signature`, and `AWSAccessKeyId` and `Signature`,
    /// which older versions of the conventions listed (version 2 signed URLs of S3 and Google
    /// Cloud Storage).
    ///
    /// ```
    /// use otel_monitor::MonitorLayer;
    ///
    /// let layer = MonitorLayer::builder()
    ///     .sensitive_query_parameters([
    ///         "X-Amz-Signature",
    ///         "X-Amz-Credential",
    ///         "X-Amz-Security-Token",
    ///         "sig",
    ///         "X-Goog-Signature",
    ///         "access_token",
    ///     ])
    ///     .build();
    /// ```
    pub fn sensitive_query_parameters<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.sensitive_query_parameters = Some(SensitiveQueryParameters::new(names));
        self
    }

    /// Adds a `traceparent` header naming the request's span to every traced response, so a
    /// client can find its trace. Only `traceparent`: the response's own `tracestate`, if any,
    /// is left as the service set it, and a response already holding as many headers as a
    /// `HeaderMap` can is left as it is.
    pub fn inject_trace_context(mut self, inject: bool) -> Self {
        self.inject_trace_context = inject;
        self
    }

    /// Treats the incoming trace context as the untrusted input of a public endpoint, when
    /// `public` is `true`. Each request's span then starts a new trace, which the sampler
    /// decides afresh, with a span link to the span context of the incoming `traceparent` (its
    /// ids and flags, without `tracestate`); the incoming `baggage` is dropped, so the handler
    /// and its downstream calls never see it; a `traceparent` the layer
    /// [adds to the response](Self::inject_trace_context) names the new span.
    ///
    /// Without it, a client chooses the trace id of its requests and, under the default
    /// parent-based sampler, whether they are sampled (a `-00` flag keeps them out of the
    /// traces), and its baggage goes on into every call the handler makes. The name is the one
    /// OpenTelemetry's Go instrumentation gives the same behaviour (`WithPublicEndpoint`).
    ///
    /// This overrides the environment, which the layer reads when it is built:
    /// `OTEL_MONITOR_PUBLIC_ENDPOINT=true` turns it on; as the specification reads a boolean
    /// variable (v1.44.0), any other value leaves it off, with a warning unless it is `false`
    /// or empty. Off by default: the incoming trace context is continued, as from a trusted
    /// caller.
    ///
    /// In every mode, a `baggage` of more than 8,192 bytes or 180 list-members (all its lines
    /// together) is ignored whole, as a malformed one is.
    ///
    /// ```
    /// use otel_monitor::MonitorLayer;
    ///
    /// let layer = MonitorLayer::builder().public_endpoint(true).build();
    /// ```
    pub fn public_endpoint(mut self, public: bool) -> Self {
        self.public_endpoint = Some(public);
        self
    }

    /// Logs one `tracing` event per completed request, at INFO with target
    /// `otel_monitor::access`: method, path, route, status, duration and `client.address`,
    /// inside the request's context (so the console line and the log record carry its trace
    /// id). Off by default.
    pub fn access_log(mut self, enabled: bool) -> Self {
        self.access_log = enabled;
        self
    }

    /// Logs a security event for each response that refuses a request: 401, 403, 429, and 404
    /// when no route matched (what a scan gets; a route's own 404 is not one). On by default.
    ///
    /// Each is one `tracing` event at WARN, target `otel_monitor::security`, inside the
    /// request's context, so the console line and the OpenTelemetry log record carry its trace
    /// id; the log record's event name is `otel_monitor.http.server.refusal`. Its attributes:
    /// `client.address`, `network.peer.address`, `user_agent.original`, `http.request.method`
    /// (and `http.request.method_original`), `url.path`, `http.route` when a route matched,
    /// `http.response.status_code`, each value a client controls cut to the
    /// [attribute value length limit](Self::attribute_value_length_limit).
    ///
    /// A client gets at most [`security_events_per_client`](Self::security_events_per_client)
    /// events a minute (10 by default; IPv6 clients by their /64), and all clients together at
    /// most 100 a second, so that a scan cannot flood the log pipeline; a client's next event
    /// after some were suppressed says how many in `otel_monitor.http.server.refusal.suppressed`.
    /// The request metrics count every refusal, without the client's address.
    ///
    /// `network.peer.address` is the connection's peer, from axum's `ConnectInfo` (serve the
    /// app with `into_make_service_with_connect_info::<SocketAddr>()`); `client.address`, by
    /// which the limit counts, is the client the [trusted proxies](Self::trusted_proxies) name,
    /// else that peer. Without either the client is unknown, and all such requests share one
    /// limit.
    ///
    /// Only refused requests pay for the event; every request keeps handles on its path and
    /// `User-Agent` in case it is refused.
    ///
    /// ```
    /// use otel_monitor::MonitorLayer;
    ///
    /// let quiet = MonitorLayer::builder().security_events(false).build();
    /// ```
    pub fn security_events(mut self, enabled: bool) -> Self {
        self.security_events = Some(enabled);
        self
    }

    /// At most `per_minute` [security events](Self::security_events) per client a minute, in
    /// bursts of up to `per_minute` (taken within 1..=60,000); 10 by default.
    pub fn security_events_per_client(mut self, per_minute: u32) -> Self {
        self.security_events_per_client = Some(per_minute);
        self
    }

    /// Cuts every attribute value a client controls to its first `limit` characters (counted as
    /// characters, cut at a character boundary): `url.path`, `url.query`,
    /// `http.request.method_original`, `user_agent.original`, `server.address`,
    /// `client.address`, each value of the recorded headers, the path of the access log, and
    /// the path, `User-Agent` and unknown method of the security events.
    /// The other attributes are the service's own route templates and short fixed values.
    ///
    /// This overrides the environment, which the layer reads when it is built, as the
    /// specification names it (v1.44.0): `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else
    /// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT` (a value that is not a non-negative integer is
    /// ignored, with a warning), else 2,048 characters. With the default, the values a client
    /// controls hold at most 5 × 2,048 characters in a span, 22 KiB (the method, `User-Agent`
    /// and host are ASCII by HTTP's rules, only the path and query may hold characters of up to
    /// 4 bytes; an IP address beside them), plus at most 8 × 2,048 characters for each recorded
    /// header (16 KiB of ASCII, 64 KiB at most). `usize::MAX` keeps every value whole.
    ///
    /// ```
    /// use otel_monitor::MonitorLayer;
    ///
    /// let layer = MonitorLayer::builder()
    ///     .attribute_value_length_limit(1024)
    ///     .build();
    /// ```
    pub fn attribute_value_length_limit(mut self, limit: usize) -> Self {
        self.value_length_limit = Some(limit);
        self
    }

    /// Believes the forwarding headers of requests whose socket peer is one of these proxies:
    /// IP addresses and CIDR ranges, IPv4 or IPv6 (`10.0.0.7`, `10.0.0.0/8`, `fd00::/8`).
    /// Entries that are neither are ignored, with a warning. None by default: then
    /// `client.address` is the socket peer, `url.scheme` the request's and `server.address` its
    /// `Host`, whatever a client sends, and no forwarding header is read at all.
    ///
    /// When the socket peer is a trusted proxy, the [`forwarded_headers`](Self::forwarded_headers)
    /// are read from the right, the entry each proxy appended first: the client is the first
    /// address there that is not a trusted proxy (its port, when the proxy gave one, is
    /// `client.port`), and `url.scheme` and `server.address`/`server.port` are what the proxy
    /// that received the request from it says. Entries to its left are never read, since the
    /// client may have written them. The walk stops at an entry it cannot read (malformed,
    /// `unknown`, obfuscated) or after 32 hops; the client is then the last address read, and
    /// a malformed header is ignored. `network.peer.address` and `network.peer.port` are always
    /// the socket's.
    ///
    /// List only proxies: a trusted range that also holds clients lets those clients say who
    /// they are. This overrides `OTEL_MONITOR_TRUSTED_PROXIES`, which the layer reads when it is
    /// built (comma-separated, the same entries). The socket peer comes from axum's
    /// `ConnectInfo<SocketAddr>` (`into_make_service_with_connect_info`): without it, no proxy
    /// is trusted.
    ///
    /// ```
    /// use otel_monitor::MonitorLayer;
    ///
    /// let layer = MonitorLayer::builder()
    ///     .trusted_proxies(["10.0.0.0/8", "fd00::/8", "192.0.2.7"])
    ///     .build();
    /// ```
    pub fn trusted_proxies<I, S>(mut self, proxies: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let proxies = proxies.into_iter().map(|entry| entry.as_ref().to_owned());
        self.trusted_proxies = Some(proxies.collect());
        self
    }

    /// Which headers the [trusted proxies](Self::trusted_proxies) write:
    /// [`ForwardedHeaders::XForwarded`] by default (`X-Forwarded-For`, `-Proto`, `-Host`), or
    /// [`ForwardedHeaders::Forwarded`] (RFC 7239). Only that family is read, since a proxy
    /// passes the other one through from the client. This overrides
    /// `OTEL_MONITOR_FORWARDED_HEADERS` (`x-forwarded` or `forwarded`).
    ///
    /// ```
    /// use otel_monitor::{ForwardedHeaders, MonitorLayer};
    ///
    /// let layer = MonitorLayer::builder()
    ///     .trusted_proxies(["10.0.0.0/8"])
    ///     .forwarded_headers(ForwardedHeaders::Forwarded)
    ///     .build();
    /// ```
    pub fn forwarded_headers(mut self, headers: ForwardedHeaders) -> Self {
        self.forwarded_headers = Some(headers);
        self
    }

    /// Records these methods as they are in `http.request.method`, and every other as `_OTHER`
    /// (with `http.request.method_original`, and a span named `HTTP`), instead of the
    /// conventions' list: `GET`, `HEAD`, `POST`, `PUT`, `DELETE`, `CONNECT`, `OPTIONS`,
    /// `TRACE`, `PATCH` and `QUERY`. The list replaces that one, it does not add to it, and
    /// method names are case-sensitive; names that are not HTTP method tokens are ignored, with
    /// a warning. This overrides `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`, which the layer
    /// reads when it is built (comma-separated), as the HTTP semantic conventions (v1.44) name
    /// it. Each method is a metric attribute value: list a bounded set.
    ///
    /// ```
    /// use otel_monitor::MonitorLayer;
    ///
    /// let layer = MonitorLayer::builder()
    ///     .known_methods(["GET", "POST", "PURGE"])
    ///     .build();
    /// ```
    pub fn known_methods<I, S>(mut self, methods: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let methods = methods.into_iter().map(|method| method.as_ref().to_owned());
        self.known_methods = Some(methods.collect());
        self
    }

    /// Builds the layer, taking the global tracer and meter where none was given, and the
    /// attribute value length limit, whether it serves a public endpoint, the trusted proxies,
    /// their headers and the known methods from the environment where none was given; what it
    /// cannot use is logged as a warning.
    pub fn build(self) -> MonitorLayer {
        let tracer = self
            .tracer
            .unwrap_or_else(|| global::tracer_with_scope(scope::instrumentation()));
        let meter = self
            .meter
            .unwrap_or_else(|| global::meter_with_scope(scope::instrumentation()));
        let env = |variable: &str| std::env::var(variable).ok();
        let mut warnings = config::Warnings::default();
        let value_length_limit = self.value_length_limit.unwrap_or_else(|| {
            config::span_attribute_value_length_limit(env, &mut warnings)
                .unwrap_or(DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT)
        });
        let public_endpoint = self
            .public_endpoint
            .unwrap_or_else(|| config::public_endpoint(env, &mut warnings));
        let trusted_proxies = TrustedProxies::resolve(
            self.trusted_proxies.as_deref(),
            self.forwarded_headers,
            env,
            &mut warnings,
        );
        let known_methods =
            KnownMethods::resolve(self.known_methods.as_deref(), env, &mut warnings);
        for warning in warnings.0 {
            tracing::warn!("{warning}");
        }
        let never_recorded = |name: &HeaderName| {
            CREDENTIAL_HEADERS.contains(name) || self.never_recorded_headers.contains(name)
        };
        let request_headers =
            attribute_keys("http.request.header", self.request_headers, never_recorded);
        let response_headers = attribute_keys(
            "http.response.header",
            self.response_headers,
            never_recorded,
        );
        MonitorLayer {
            shared: Arc::new(Shared {
                tracer,
                tracer_is_noop: AtomicBool::new(false),
                metrics: HttpServerMetrics::new(&meter),
                rpc_metrics: RpcMetrics::new(&meter, Side::Server),
                propagator: self.propagator,
                filter: self.filter,
                request_headers,
                response_headers,
                sensitive_query_parameters: self.sensitive_query_parameters.unwrap_or_default(),
                inject_trace_context: self.inject_trace_context,
                public_endpoint,
                access_log: self.access_log,
                security_events: self.security_events.unwrap_or(true).then(|| {
                    RefusalLimiter::new(
                        self.security_events_per_client
                            .unwrap_or(DEFAULT_SECURITY_EVENTS_PER_CLIENT),
                    )
                }),
                value_length_limit,
                trusted_proxies,
                known_methods,
            }),
        }
    }
}

impl fmt::Debug for MonitorLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorLayerBuilder")
            .field("request_headers", &self.request_headers)
            .field("response_headers", &self.response_headers)
            .field("never_recorded_headers", &self.never_recorded_headers)
            .field(
                "sensitive_query_parameters",
                &self.sensitive_query_parameters,
            )
            .field("inject_trace_context", &self.inject_trace_context)
            .field("public_endpoint", &self.public_endpoint)
            .field("access_log", &self.access_log)
            .field("security_events", &self.security_events)
            .field(
                "security_events_per_client",
                &self.security_events_per_client,
            )
            .field("value_length_limit", &self.value_length_limit)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("forwarded_headers", &self.forwarded_headers)
            .field("known_methods", &self.known_methods)
            .finish_non_exhaustive()
    }
}

fn header_names<I, N>(names: I) -> impl Iterator<Item = HeaderName>
where
    I: IntoIterator<Item = N>,
    N: AsRef<str>,
{
    names
        .into_iter()
        .filter_map(|name| HeaderName::try_from(name.as_ref()).ok())
}

/// Pairs each header that may be recorded with its attribute key, made once here rather than
/// per request.
fn attribute_keys(
    prefix: &str,
    mut names: Vec<HeaderName>,
    never_recorded: impl Fn(&HeaderName) -> bool,
) -> Box<[(HeaderName, Key)]> {
    names.retain(|name| !never_recorded(name));
    names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let key = Key::from(format!("{prefix}.{}", name.as_str()));
            (name, key)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(headers: &[(HeaderName, Key)]) -> Vec<&str> {
        headers.iter().map(|(name, _)| name.as_str()).collect()
    }

    #[test]
    fn never_recorded_headers_are_left_out_in_any_case_and_whatever_the_order_of_the_calls() {
        let listed = ["x-request-id", "X-API-KEY", "Authorization", "x-csrf-token"];
        let first = MonitorLayer::builder()
            .never_record_headers(["X-Api-Key"])
            .record_request_headers(listed)
            .record_response_headers(listed)
            .never_record_headers(["X-CSRF-Token", "not a header name"])
            .build();
        let last = MonitorLayer::builder()
            .record_request_headers(listed)
            .record_response_headers(listed)
            .never_record_headers(["x-api-key", "x-csrf-token"])
            .build();
        for layer in [first, last] {
            assert_eq!(recorded(&layer.shared.request_headers), ["x-request-id"]);
            assert_eq!(recorded(&layer.shared.response_headers), ["x-request-id"]);
        }
        // The credential headers stay out without being named.
        let layer = MonitorLayer::builder()
            .record_request_headers(["cookie", "x-request-id"])
            .record_response_headers(["Set-Cookie", "x-kept"])
            .build();
        assert_eq!(recorded(&layer.shared.request_headers), ["x-request-id"]);
        assert_eq!(recorded(&layer.shared.response_headers), ["x-kept"]);
    }

    #[test]
    fn sensitive_query_parameters_replace_the_default_list_and_the_last_call_wins() {
        let query = "sig=1&token=2&X-Amz-Signature=3&AWSAccessKeyId=4";
        let redacted = |layer: MonitorLayer| {
            layer
                .shared
                .sensitive_query_parameters
                .redacted(query, 2048)
        };
        assert_eq!(
            redacted(MonitorLayer::new()),
            "sig=REDACTED&token=2&X-Amz-Signature=REDACTED&AWSAccessKeyId=REDACTED"
        );
        let own = MonitorLayer::builder()
            .sensitive_query_parameters(["sig"])
            .sensitive_query_parameters(vec!["token".to_owned()])
            .build();
        assert_eq!(
            redacted(own),
            "sig=1&token=REDACTED&X-Amz-Signature=3&AWSAccessKeyId=4"
        );
        let none = MonitorLayer::builder()
            .sensitive_query_parameters(Vec::<String>::new())
            .build();
        assert_eq!(redacted(none), query);
    }
}
