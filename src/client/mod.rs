//! [`MonitorClientLayer`]: a tower middleware that traces each outgoing HTTP call as an
//! OpenTelemetry CLIENT span, injects the trace context into it, and records
//! `http.client.request.duration`.
//!
//! Laid out as the server's [`MonitorLayer`](crate::MonitorLayer) is: the layer, its builder and
//! the request extensions a caller sets here, the [`MonitorClient`] service in `service.rs`, its
//! [`ClientResponseFuture`] in `future.rs`, the [`ClientResponseBody`] that ends the call in
//! `body.rs`, what a call records (span name and attributes, from the request and from the
//! response) in `request.rs`, the life of one call from its span's start to its last metric in
//! `call.rs`, the `error.type` of a failed call in `error_type.rs`, the duration histogram in
//! `metrics.rs`, and the `reqwest-middleware` adapter in `reqwest.rs` (feature `reqwest`).

mod body;
mod call;
mod error_type;
mod future;
mod metrics;
mod request;
#[cfg(feature = "reqwest")]
mod reqwest;
mod service;

pub use body::ClientResponseBody;
pub use future::ClientResponseFuture;
pub use service::MonitorClient;

use std::{
    borrow::Cow,
    fmt,
    sync::{Arc, atomic::AtomicBool},
};

use opentelemetry::{
    global::{self, BoxedTracer},
    metrics::Meter,
    propagation::TextMapPropagator,
    trace::Tracer,
};
use tower_layer::Layer;

use crate::rpc::{RpcMetrics, Side};
use crate::{
    config,
    layer::{
        DEFAULT_ATTRIBUTE_VALUE_LENGTH_LIMIT, known_methods::KnownMethods,
        redaction::SensitiveQueryParameters,
    },
    scope,
};
use metrics::HttpClientMetrics;

/// A tower [`Layer`] for HTTP clients: makes every outgoing call an OpenTelemetry CLIENT span,
/// sends the trace context with it, and records `http.client.request.duration`, as the HTTP
/// semantic conventions (v1.44) name them.
///
/// It wraps any `tower::Service<http::Request<B>, Response = http::Response<B2>>` used as a
/// client: hyper-util's legacy `Client`, a tonic `Channel`, a `ServiceBuilder` stack. For
/// [reqwest](https://docs.rs/reqwest), the feature `reqwest` makes the layer a
/// `reqwest_middleware::Middleware`.
///
/// For each call it:
/// - starts a CLIENT span, a child of the current context (the request the service is
///   handling, under [`MonitorLayer`](crate::MonitorLayer)), named `{method}`, or
///   `{method} {url.template}` when the request carries a [`UrlTemplate`]; an unknown method is
///   `_OTHER` (the span is named `HTTP`), as on the server side;
/// - gives it `http.request.method`, `server.address` and `server.port` (from the URI's
///   authority, else the `Host` header; the port by default 80 for `http` and 443 for `https`),
///   `url.full` (user info replaced by `REDACTED:REDACTED`, the values of the sensitive query
///   parameters by `REDACTED`, as the server layer redacts `url.query`), `url.template`, and
///   `http.request.resend_count` when the request carries a [`ResendCount`] above 0;
/// - injects the context into the request's headers with the global propagator (`traceparent`,
///   `tracestate`, `baggage` by default): the span's own context when it is recording, else the
///   current context, so that the trace goes on downstream when this span is sampled out;
/// - on the response, records `http.response.status_code` and `network.protocol.version`; a
///   4xx or 5xx is a failure of the call (status Error, `error.type` the status code), as the
///   conventions say of a CLIENT span;
/// - an error of the inner service (connection refused, timeout, ...) sets status Error and a
///   low-cardinality `error.type` (`connection_refused`, `timeout`, ...: see the table below);
/// - ends the span and records `http.client.request.duration` with the same duration when the
///   response body has given its last frame, fails, or is dropped. A call the caller drops
///   before it ends (a future or body dropped, a timeout above this layer) is a cancellation,
///   not a failure: as the conventions say, no `error.type` and the status left unset.
///
/// Put timeouts and retries *below* this layer to see a timeout as `error.type` `timeout`, and
/// *above* it for one span per attempt (set [`ResendCount`] on each retry).
///
/// `error.type` of a call whose inner service or response body fails, from the error and the
/// errors it wraps (its [`source`](std::error::Error::source) chain, through `Box<dyn Error>`):
///
/// | The error | `error.type` |
/// |---|---|
/// | tower's `Elapsed` (`TimeoutLayer`), tokio's `Elapsed`, a reqwest timeout, an [`std::io::Error`] of kind `TimedOut` | `timeout` |
/// | a connection that could not be made (hyper-util's `Error::is_connect`, reqwest's `is_connect`) | the kind of the `io::Error` behind it (`connection_refused`, `host_unreachable`, ...), else `connect_error` |
/// | any other `io::Error` in the chain | its kind in snake case (`connection_reset`, ...) |
/// | anything else | as the server layer names it: the error's type path (`hyper_util::client::legacy::client::Error`), `_OTHER` for a boxed or generic error |
///
/// The instruments and the tracer are the global ones unless given: build the layer after
/// [`Telemetry::init`](crate::Telemetry). When the tracer is a no-op (no tracer provider, or
/// the SDK disabled), no span is started after the first call; the current context is still
/// injected and the duration recorded.
///
/// ```
/// use otel_monitor::{MonitorClientLayer, UrlTemplate};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # async fn call() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
/// let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
///     .build_http::<String>();
/// let mut client = ServiceBuilder::new()
///     .layer(MonitorClientLayer::new())
///     .service(client);
///
/// let request = http::Request::get("http://users.internal/users/42")
///     .extension(UrlTemplate::new("/users/{id}"))
///     .body(String::new())?;
/// let response = client.ready().await?.call(request).await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MonitorClientLayer {
    shared: Arc<Shared>,
}

/// What every call of a [`MonitorClientLayer`] reads.
pub(crate) struct Shared {
    pub(crate) tracer: BoxedTracer,
    /// Set once the tracer has shown it is a no-op: spans are no longer started.
    pub(crate) tracer_is_noop: AtomicBool,
    pub(crate) metrics: HttpClientMetrics,
    /// `rpc.client.call.duration`, for the gRPC calls.
    pub(crate) rpc_metrics: RpcMetrics,
    pub(crate) propagator: Option<Box<dyn TextMapPropagator + Send + Sync>>,
    pub(crate) sensitive_query_parameters: SensitiveQueryParameters,
    /// The most characters of an attribute value taken from the request.
    pub(crate) value_length_limit: usize,
    pub(crate) known_methods: KnownMethods,
}

/// The low-cardinality template of the URL a request calls (`/users/{id}`), as a request
/// extension: the CLIENT span is then named `{method} {template}` and the template is
/// recorded as `url.template`, on the span and on `http.client.request.duration`.
///
/// Each distinct template is a series of the duration metric: give templates, never paths.
///
/// ```
/// use otel_monitor::UrlTemplate;
///
/// let request = http::Request::get("http://users.internal/users/42")
///     .extension(UrlTemplate::new("/users/{id}"))
///     .body(())
///     .unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlTemplate(Cow<'static, str>);

impl UrlTemplate {
    /// The template, `/users/{id}`.
    pub fn new(template: impl Into<Cow<'static, str>>) -> Self {
        Self(template.into())
    }

    /// The template as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// How many times the caller has sent this request before, as a request extension: a retry or
/// a redirect of a request sets `ResendCount(1)` on the first resend, `ResendCount(2)` on the
/// next, and so on. Recorded as `http.request.resend_count` when above 0, as the HTTP semantic
/// conventions (v1.44) ask of each resent span; each attempt is its own span.
///
/// ```
/// use otel_monitor::ResendCount;
///
/// let retry = http::Request::get("http://users.internal/users/42")
///     .extension(ResendCount(1))
///     .body(())
///     .unwrap();
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResendCount(pub u32);

impl MonitorClientLayer {
    /// A layer with the defaults: the global tracer, meter and propagator.
    pub fn new() -> Self {
        Self::builder().build()
    }

    /// A builder to change the defaults.
    ///
    /// ```
    /// use otel_monitor::MonitorClientLayer;
    ///
    /// let layer = MonitorClientLayer::builder()
    ///     .sensitive_query_parameters(["sig", "token"])
    ///     .attribute_value_length_limit(1024)
    ///     .build();
    /// ```
    pub fn builder() -> MonitorClientLayerBuilder {
        MonitorClientLayerBuilder::default()
    }
}

impl Default for MonitorClientLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MonitorClientLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorClientLayer")
            .field(
                "sensitive_query_parameters",
                &self.shared.sensitive_query_parameters,
            )
            .field("value_length_limit", &self.shared.value_length_limit)
            .field("known_methods", &self.shared.known_methods)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for MonitorClientLayer {
    type Service = MonitorClient<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MonitorClient::new(inner, self.shared.clone())
    }
}

/// Builds a [`MonitorClientLayer`]; see [`MonitorClientLayer::builder`].
#[derive(Default)]
#[must_use = "call build() to get the layer"]
pub struct MonitorClientLayerBuilder {
    tracer: Option<BoxedTracer>,
    meter: Option<Meter>,
    propagator: Option<Box<dyn TextMapPropagator + Send + Sync>>,
    sensitive_query_parameters: Option<SensitiveQueryParameters>,
    value_length_limit: Option<usize>,
    known_methods: Option<Vec<String>>,
}

impl MonitorClientLayerBuilder {
    /// Starts spans with this tracer instead of the global one.
    pub fn tracer<T>(mut self, tracer: T) -> Self
    where
        T: Tracer + Send + Sync + 'static,
        T::Span: Send + Sync + 'static,
    {
        self.tracer = Some(BoxedTracer::new(Box::new(tracer)));
        self
    }

    /// Records the duration with this meter instead of a global one.
    pub fn meter(mut self, meter: Meter) -> Self {
        self.meter = Some(meter);
        self
    }

    /// Injects the context with this propagator instead of the global one (which
    /// [`Telemetry`](crate::Telemetry) sets from `OTEL_PROPAGATORS`).
    pub fn propagator(
        mut self,
        propagator: impl TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.propagator = Some(Box::new(propagator));
        self
    }

    /// Redacts the values of exactly these query parameters in `url.full`, instead of the
    /// default list, as [`MonitorLayerBuilder::sensitive_query_parameters`] does for the server's
    /// `url.query` (the same default list, the same rules).
    ///
    /// [`MonitorLayerBuilder::sensitive_query_parameters`]: crate::MonitorLayerBuilder::sensitive_query_parameters
    pub fn sensitive_query_parameters<I, N>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        self.sensitive_query_parameters = Some(SensitiveQueryParameters::new(names));
        self
    }

    /// Cuts `url.full`, `server.address` and `http.request.method_original` to their first
    /// `limit` characters; this overrides `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else
    /// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, which the layer reads when it is built, as the server
    /// layer does (2,048 characters when neither is set).
    pub fn attribute_value_length_limit(mut self, limit: usize) -> Self {
        self.value_length_limit = Some(limit);
        self
    }

    /// Records these methods as they are and every other as `_OTHER`, instead of the
    /// conventions' list; overrides `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS`, as
    /// [`MonitorLayerBuilder::known_methods`](crate::MonitorLayerBuilder::known_methods) does.
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
    /// attribute value length limit and the known methods from the environment where none was
    /// given; what it cannot use is logged as a warning.
    pub fn build(self) -> MonitorClientLayer {
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
        let known_methods =
            KnownMethods::resolve(self.known_methods.as_deref(), env, &mut warnings);
        for warning in warnings.0 {
            tracing::warn!("{warning}");
        }
        MonitorClientLayer {
            shared: Arc::new(Shared {
                tracer,
                tracer_is_noop: AtomicBool::new(false),
                metrics: HttpClientMetrics::new(&meter),
                rpc_metrics: RpcMetrics::new(&meter, Side::Client),
                propagator: self.propagator,
                sensitive_query_parameters: self.sensitive_query_parameters.unwrap_or_default(),
                value_length_limit,
                known_methods,
            }),
        }
    }
}

impl fmt::Debug for MonitorClientLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MonitorClientLayerBuilder")
            .field(
                "sensitive_query_parameters",
                &self.sensitive_query_parameters,
            )
            .field("value_length_limit", &self.value_length_limit)
            .field("known_methods", &self.known_methods)
            .finish_non_exhaustive()
    }
}
