//! Bounded by construction: what a client sends cannot make a span large, and building layers
//! again and again does not grow the heap.
//!
//! - Every attribute value a client controls arrives cut to the attribute value length limit, in
//!   characters: 2,048 by default, `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT` before
//!   `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, the builder before both, invalid values ignored; a
//!   recorded header keeps its first 8 values. Spans are read from an in-memory exporter.
//! - `OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT` holds through [`Telemetry`]'s real pipeline.
//! - Span names are kept once per process: the live heap, counted by this binary's global
//!   allocator, stays flat over thousands of rebuilt layers and routers.
//!
//! Tests set environment variables and count the whole process's heap: each runs in a process
//! of its own (cargo-nextest).

mod support;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    net::SocketAddr,
    sync::atomic::{AtomicIsize, Ordering},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{HeaderMap, HeaderValue, Method, Request},
    routing::{any, get},
};
use opentelemetry::{
    Array, Value,
    metrics::{Meter, MeterProvider as _},
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{
    metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider},
    trace::{InMemorySpanExporter, SdkTracerProvider, SpanData},
};
use otel_monitor::{MonitorLayer, MonitorLayerBuilder, Telemetry};
use support::{OtlpReceiver, ReceiverOptions};
use tower::ServiceExt;

/// The live heap of the process, in bytes: allocated minus freed, by every thread.
static LIVE_HEAP: AtomicIsize = AtomicIsize::new(0);

/// The system allocator, counting the live heap.
struct CountingAllocator;

// SAFETY: every call is forwarded to the system allocator unchanged; counting allocates nothing.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let allocated = unsafe { System.alloc(layout) };
        if !allocated.is_null() {
            LIVE_HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        allocated
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let allocated = unsafe { System.alloc_zeroed(layout) };
        if !allocated.is_null() {
            LIVE_HEAP.fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        allocated
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let reallocated = unsafe { System.realloc(ptr, layout, new_size) };
        if !reallocated.is_null() {
            LIVE_HEAP.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        reallocated
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) };
        LIVE_HEAP.fetch_sub(layout.size() as isize, Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Sets environment variables before the test starts any thread that could read them.
fn set_env(vars: &[(&str, &str)]) {
    for (name, value) in vars {
        // SAFETY: called first thing in a test that runs alone in its process (cargo-nextest),
        // before it starts a runtime or any other thread.
        unsafe { std::env::set_var(name, value) };
    }
}

/// What a hostile client sends: every value the layer copies into a span, far over any limit,
/// non-ASCII where HTTP allows it, and two recorded headers repeated 10,000 times.
struct Hostile {
    /// A 100 KB method token.
    method: String,
    /// The path and query share the 64 KiB the `http` crate allows a request target (hyper
    /// answers 414 past it): a path of 16,000 two-byte characters and a 33,000-byte query.
    path: String,
    query: String,
    /// 300 KB.
    user_agent: String,
    /// A 100 KB `Host` header, with a port.
    host: String,
    client: SocketAddr,
    /// `x-tag` on the request and `x-echo` on the response, 10,000 values each: the first 16
    /// of 2,049 characters, most of them two bytes long.
    repeated: Vec<String>,
}

impl Hostile {
    fn new() -> Self {
        Self {
            method: "X".repeat(100_000),
            path: format!("/users/{}", "é".repeat(16_000)),
            query: format!("q={}", "b".repeat(33_000)),
            user_agent: format!("Mozilla/5.0 {}", "u".repeat(300_000)),
            host: "h".repeat(100_000),
            client: "[2001:db8::1]:4321".parse().unwrap(),
            repeated: (0..10_000)
                .map(|n| match n {
                    0..16 => format!("{n:05}{}", "ü".repeat(2_044)),
                    _ => format!("{n:05}"),
                })
                .collect(),
        }
    }

    fn request(&self) -> Request<Body> {
        let mut request = Request::builder()
            .method(Method::from_bytes(self.method.as_bytes()).unwrap())
            .uri(format!("{}?{}", self.path, self.query))
            .header("host", format!("{}:8080", self.host))
            .header("user-agent", &self.user_agent)
            .body(Body::empty())
            .unwrap();
        for value in &self.repeated {
            let value = HeaderValue::from_bytes(value.as_bytes()).unwrap();
            request.headers_mut().append("x-tag", value);
        }
        request.extensions_mut().insert(ConnectInfo(self.client));
        request
    }

    /// The response's headers: `x-echo`, 10,000 times.
    fn response_headers(&self) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in &self.repeated {
            let value = HeaderValue::from_bytes(value.as_bytes()).unwrap();
            headers.append("x-echo", value);
        }
        headers
    }
}

/// `value`'s first `limit` characters.
fn cut(value: &str, limit: usize) -> String {
    value.chars().take(limit).collect()
}

/// The span of the hostile request, through a layer configured by `configure` (whose tracer and
/// meter are set here).
fn hostile_span(
    hostile: &Hostile,
    configure: impl FnOnce(MonitorLayerBuilder) -> MonitorLayerBuilder,
) -> SpanData {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let layer = configure(
        MonitorLayer::builder()
            .tracer(provider.tracer("otel-monitor"))
            .meter(opentelemetry::metrics::noop::NoopMeterProvider::new().meter("otel-monitor"))
            .record_request_headers(["x-tag"])
            .record_response_headers(["x-echo"]),
    )
    .build();
    let response_headers = hostile.response_headers();
    let app = Router::new()
        .route(
            "/users/{id}",
            any(move || async move { (response_headers, "ok") }),
        )
        .layer(layer);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime.block_on(async {
        let response = app.oneshot(hostile.request()).await.unwrap();
        axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
    });
    let mut spans = exporter.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 1, "one request, one span");
    spans.remove(0)
}

/// Sends the hostile request through a layer configured by `configure` and checks that every
/// value it controls arrived cut to exactly `limit` characters, and each recorded header to its
/// first 8 values, each cut the same way.
fn assert_every_client_value_is_cut_to(
    limit: usize,
    configure: impl FnOnce(MonitorLayerBuilder) -> MonitorLayerBuilder,
) {
    let hostile = Hostile::new();
    let span = hostile_span(&hostile, configure);
    let attribute = |key: &str| {
        let found = span.attributes.iter().find(|kv| kv.key.as_str() == key);
        found
            .unwrap_or_else(|| panic!("no {key} among {} attributes", span.attributes.len()))
            .value
            .clone()
    };
    let string = |value: &str| Value::from(cut(value, limit));
    for (key, sent) in [
        ("http.request.method_original", &hostile.method),
        ("url.path", &hostile.path),
        ("url.query", &hostile.query),
        ("user_agent.original", &hostile.user_agent),
        ("server.address", &hostile.host),
        ("client.address", &"2001:db8::1".to_owned()),
    ] {
        let value = attribute(key);
        let characters = value.as_str().chars().count();
        let expected_characters = limit.min(sent.chars().count());
        assert_eq!(characters, expected_characters, "{key}: characters");
        assert!(
            value == string(sent),
            "{key}: not the first {limit} characters sent"
        );
    }
    assert_eq!(attribute("server.port"), Value::I64(8080));
    let first_8: Vec<_> = hostile.repeated[..8]
        .iter()
        .map(|value| cut(value, limit).into())
        .collect();
    for key in ["http.request.header.x-tag", "http.response.header.x-echo"] {
        let Value::Array(Array::String(values)) = attribute(key) else {
            panic!("{key} is not an array of strings");
        };
        let characters: Vec<usize> = values.iter().map(|v| v.as_str().chars().count()).collect();
        assert_eq!(
            characters,
            [limit.min(2049); 8],
            "{key}: characters of each value"
        );
        assert!(
            values == first_8,
            "{key}: not the first 8 values, each cut to {limit}"
        );
    }
}

#[test]
fn by_default_every_value_a_client_controls_is_cut_to_2048_characters_and_8_values_a_header() {
    assert_every_client_value_is_cut_to(2048, |builder| builder);
}

#[test]
fn otel_span_attribute_value_length_limit_comes_before_otel_attribute_value_length_limit() {
    set_env(&[
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "50"),
    ]);
    assert_every_client_value_is_cut_to(100, |builder| builder);
}

#[test]
fn otel_attribute_value_length_limit_applies_without_the_span_variable() {
    set_env(&[("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "50")]);
    assert_every_client_value_is_cut_to(50, |builder| builder);
}

#[test]
fn an_invalid_span_limit_is_ignored_and_the_general_one_applies() {
    set_env(&[
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-1"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "50"),
    ]);
    assert_every_client_value_is_cut_to(50, |builder| builder);
}

#[test]
fn invalid_limits_are_ignored_and_the_default_of_2048_applies() {
    set_env(&[
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "many"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "-5"),
    ]);
    assert_every_client_value_is_cut_to(2048, |builder| builder);
}

#[test]
fn a_limit_of_0_leaves_every_value_a_client_controls_empty() {
    set_env(&[("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "0")]);
    assert_every_client_value_is_cut_to(0, |builder| builder);
}

#[test]
fn the_builder_limit_overrides_both_variables() {
    set_env(&[
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "100"),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "50"),
    ]);
    assert_every_client_value_is_cut_to(7, |builder| builder.attribute_value_length_limit(7));
}

#[test]
fn otel_span_attribute_count_limit_keeps_the_first_5_attributes_through_the_pipeline() {
    // The receiver's threads, started first for its endpoint, read no variables.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(OtlpReceiver::start_with(ReceiverOptions::default()));
    set_env(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "5"),
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_MONITOR_HOST_METRICS", "false"),
    ]);
    let telemetry = Telemetry::builder()
        .tracing_subscriber(false)
        .init()
        .unwrap();
    let app = Router::new()
        .route("/users/{id}", get(|| async { "user" }))
        .layer(MonitorLayer::new());
    let request = Request::get("/users/42")
        .header("host", "example.com:8080")
        .header("user-agent", "probe")
        .body(Body::empty())
        .unwrap();
    runtime.block_on(async {
        let response = app.oneshot(request).await.unwrap();
        axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
    });
    telemetry.shutdown().unwrap();

    let spans = receiver.spans();
    assert_eq!(spans.len(), 1);
    let span = &spans[0].span;
    let keys: Vec<&str> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    // The layer sets 9: 8 when the span starts (so that samplers see them), of which these 5
    // are kept and server.address, server.port and user_agent.original dropped, then the
    // status code, dropped too.
    assert_eq!(
        keys,
        [
            "http.request.method",
            "url.scheme",
            "url.path",
            "http.route",
            "network.protocol.version"
        ]
    );
    assert_eq!(span.dropped_attributes_count, 4);
}

/// The live heap's growth over `rebuilds` more layers and routers, after as many again as
/// warm-up: each rebuild makes a layer (the SDK `tracer`, `meter`), a router with the one route
/// `route(n)` behind it, and serves one request there, as a hot reload does.
fn heap_growth_over_rebuilds(
    rebuilds: usize,
    warm_up: usize,
    route: impl Fn(usize) -> String,
    meter: &Meter,
) -> isize {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let rebuild_and_serve = |n: usize| {
        let route = route(n);
        let layer = MonitorLayer::builder()
            .tracer(provider.tracer("otel-monitor"))
            .meter(meter.clone())
            .build();
        let app = Router::new()
            .route(&route, get(|| async { "ok" }))
            .layer(layer);
        let path = route.replace("{id}", "42");
        runtime.block_on(async {
            let request = Request::get(path).body(Body::empty()).unwrap();
            let response = app.oneshot(request).await.unwrap();
            axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
        });
        let spans = exporter.get_finished_spans().unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(spans[0].name, format!("GET {route}"));
        drop(spans);
        exporter.reset();
    };
    (0..warm_up).for_each(rebuild_and_serve);
    let before = LIVE_HEAP.load(Ordering::Relaxed);
    (warm_up..warm_up + rebuilds).for_each(rebuild_and_serve);
    let after = LIVE_HEAP.load(Ordering::Relaxed);
    eprintln!(
        "live heap after {warm_up} rebuilds: {before} B; after {}: {after} B",
        warm_up + rebuilds
    );
    after - before
}

/// Bytes the live heap may grow by over 19,000 rebuilds (0 measured): a span name leaked per
/// layer, `GET /users/{id}`, would add 285,000.
const HEAP_GROWTH_BOUND: isize = 4 * 1024;

#[test]
fn rebuilding_the_same_router_20000_times_does_not_grow_the_heap() {
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(InMemoryMetricExporter::default())
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build();
    let meter = meter_provider.meter("otel-monitor");
    let growth = heap_growth_over_rebuilds(19_000, 1_000, |_| "/users/{id}".to_owned(), &meter);
    assert!(
        growth <= HEAP_GROWTH_BOUND,
        "the heap grew by {growth} B over 19,000 rebuilds"
    );
}

#[test]
fn rebuilding_routers_with_new_routes_keeps_at_most_1000_span_names() {
    // Metrics off: 20,000 routes would be 20,000 metric series, which the SDK's own cardinality
    // limit bounds; this test is about the span names.
    let meter = opentelemetry::metrics::noop::NoopMeterProvider::new().meter("otel-monitor");
    let growth = heap_growth_over_rebuilds(
        19_000,
        1_000,
        |n| format!("/tenant-{n}/users/{{id}}"),
        &meter,
    );
    assert!(
        growth <= HEAP_GROWTH_BOUND,
        "the heap grew by {growth} B over 19,000 rebuilds past the 1,000 names kept"
    );
}
