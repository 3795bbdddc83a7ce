//! Hostile input on the request path, property-tested (proptest; libFuzzer needs nightly):
//! requests with arbitrary `traceparent`, `tracestate` and `baggage` (malformed, oversized,
//! thousands of members, non-UTF-8 bytes), methods (any token, very long), URIs (every byte the
//! `http` crate takes, percent-encoding, long paths and queries, absolute URIs with an authority
//! as HTTP/2 sends them), many and duplicated headers, `Host` of every shape and
//! `Forwarded`/`X-Forwarded-*` garbage go through `MonitorLayer`, with real SDK tracer and meter
//! providers, to an inner service that records the request it received and answers a response
//! made from it. The same request goes to the same inner service without the layer, and:
//!
//! - nothing panics, and every traced request ends exactly one span;
//! - the inner service sees exactly the request it sees without the layer (method, URI, version,
//!   headers in order, extensions, body), and the client gets exactly the same response (status,
//!   headers, body), but for the `traceparent` the layer adds when asked to;
//! - the bytes allocated by the layered call, less those of the bare call, stay within
//!   [`ALLOCATION_BOUND`] of the request's size (a counting global allocator, per thread).
//!
//! `PROPTEST_CASES=N` runs N cases per property instead of [`DEFAULT_CASES`].

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    convert::Infallible,
    fmt,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, LazyLock, Mutex},
    task::{Context, Poll},
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{ConnectInfo, MatchedPath},
    routing::any_service,
};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version,
};
use http_body_util::{BodyExt, Full};
use opentelemetry::{
    metrics::MeterProvider as _, propagation::TextMapCompositePropagator,
    trace::TracerProvider as _,
};
use opentelemetry_sdk::{
    metrics::{
        InMemoryMetricExporter, InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
        Temporality,
    },
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::{InMemorySpanExporter, Sampler, SdkTracerProvider},
};
use otel_monitor::{ForwardedHeaders, MonitorLayer};
use proptest::{
    collection::vec,
    prelude::*,
    sample::select,
    test_runner::{Config, TestCaseError, TestRunner},
};
use tower::{Layer as _, Service, ServiceExt as _};

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 1_000;

// ---------------------------------------------------------------------------------------------
// Counting allocations

/// The global allocator of this test binary: the system's, counting the bytes each thread asks
/// for (an allocation, or the new size of a reallocation).
struct CountingAllocator;

thread_local! {
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

fn count(bytes: usize) {
    // `try_with`: the counter is gone while the thread ends.
    let _ = ALLOCATED.try_with(|allocated| allocated.set(allocated.get() + bytes as u64));
}

// SAFETY: every call is forwarded to the system allocator unchanged; counting allocates nothing.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count(layout.size());
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `work` and returns its result with the bytes this thread allocated meanwhile.
fn allocated_by<T>(work: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATED.with(Cell::get);
    let result = work();
    (result, ALLOCATED.with(Cell::get) - before)
}

/// What the layer may allocate for one request beyond what the bare service allocates:
/// `constant + per_byte × size`, `size` as [`HostileRequest::size`] counts it.
///
/// The layer copies each client-controlled string it records (`url.path`, `url.query`,
/// `http.request.method_original`, `user_agent.original`, `server.address`, recorded header
/// values, as request and, echoed by this inner service, as response headers) into the span, and
/// the exporter copies the span once more: a few bytes a byte, 3 times that for header values
/// that are not UTF-8 (a byte may become U+FFFD, 3 bytes), twice that while a `String` or a
/// `Vec` grows by doubling; the layer converts and redacts no more of a value than it keeps
/// (2.4 and 0.8 bytes a byte measured, 14.5 and 54 before it did). The dearest input left is
/// separators in a row in `baggage`: the SDK's propagator splits it into a 16-byte slice per
/// `;` (34 bytes a byte measured, and `baggage` is read only up to the W3C limit of 8,192
/// bytes); the layer hands `traceparent` to its propagator only up to 512 bytes (35 bytes a
/// byte before). 64 covers them; the constant covers the span, its context, the attribute
/// vectors and the first request of a metric series (its bound instruments are made once). The
/// figures, shape by shape: `the_costliest_shapes_stay_within_the_allocation_bound`.
const ALLOCATION_BOUND: AllocationBound = AllocationBound {
    constant: 64 * 1024,
    per_byte: 64,
};

#[derive(Debug, Clone, Copy)]
struct AllocationBound {
    constant: u64,
    per_byte: u64,
}

impl AllocationBound {
    fn of(self, size: usize) -> u64 {
        self.constant + self.per_byte * size as u64
    }
}

// ---------------------------------------------------------------------------------------------
// The request, and what the inner service saw

/// An extension the client attaches: the inner service must receive it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Marker(u64);

/// A request as the client builds it (`Request` is not `Clone`).
#[derive(Clone)]
struct HostileRequest {
    method: Method,
    uri: Uri,
    version: Version,
    headers: Vec<(HeaderName, HeaderValue)>,
    peer: Option<SocketAddr>,
    body: Bytes,
}

impl HostileRequest {
    fn build<B: From<Bytes>>(&self) -> Request<B> {
        let mut request = Request::new(B::from(self.body.clone()));
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.version_mut() = self.version;
        let headers = request.headers_mut();
        for (name, value) in &self.headers {
            headers.append(name.clone(), value.clone());
        }
        request
            .extensions_mut()
            .insert(Marker(self.body.len() as u64));
        if let Some(peer) = self.peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        request
    }

    /// Its size as HTTP/1.1 sends it: request line, `name: value\r\n` per header, body.
    fn size(&self) -> usize {
        let line = self.method.as_str().len() + self.uri.to_string().len() + 12;
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum();
        line + headers + self.body.len()
    }
}

/// Short: a failing case shows its shape, not megabytes of bytes.
impl fmt::Debug for HostileRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let clip = |text: String| {
            if text.len() > 200 {
                let start: String = text.chars().take(200).collect();
                format!("{start}… ({} bytes)", text.len())
            } else {
                text
            }
        };
        f.debug_struct("HostileRequest")
            .field("method", &clip(format!("{:?}", self.method)))
            .field("uri", &clip(self.uri.to_string()))
            .field("version", &self.version)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .take(20)
                    .map(|(name, value)| clip(format!("{name}: {value:?}")))
                    .collect::<Vec<_>>(),
            )
            .field("header_count", &self.headers.len())
            .field("peer", &self.peer)
            .field("body", &clip(format!("{:?}", self.body)))
            .field("size", &self.size())
            .finish()
    }
}

/// Everything the inner service can observe of a request.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: Method,
    uri: Uri,
    version: Version,
    headers: HeaderMap,
    /// The headers in the order they came, duplicates included (`HeaderMap`'s `==` ignores the
    /// order of different names).
    header_order: Vec<(HeaderName, HeaderValue)>,
    marker: Option<Marker>,
    peer: Option<SocketAddr>,
    matched_path: Option<String>,
    body: Bytes,
}

/// What the client got back.
#[derive(Debug, PartialEq)]
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// The inner service: records the request it received and answers a response made from it
/// (a status picked by the body's length, every request header echoed, the method and URI
/// and the body as the body). Never fails.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<Mutex<Option<Seen>>>,
}

const STATUSES: [u16; 8] = [200, 201, 204, 304, 400, 404, 500, 503];

impl Recorder {
    fn take(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .take()
            .expect("the inner service saw no request")
    }
}

impl<B> Service<Request<B>> for Recorder
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: fmt::Debug,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let seen = self.seen.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.expect("the request body").to_bytes();
            let mut response = Response::new(Full::new(Bytes::from(
                [
                    parts.method.as_str().as_bytes(),
                    b" ",
                    parts.uri.to_string().as_bytes(),
                    b"\n",
                    &body,
                ]
                .concat(),
            )));
            *response.status_mut() =
                StatusCode::from_u16(STATUSES[body.len() % STATUSES.len()]).unwrap();
            for (name, value) in &parts.headers {
                response.headers_mut().append(name.clone(), value.clone());
            }
            let recorded = Seen {
                header_order: parts
                    .headers
                    .iter()
                    .map(|(name, value)| (name.clone(), value.clone()))
                    .collect(),
                method: parts.method,
                uri: parts.uri,
                version: parts.version,
                headers: parts.headers,
                marker: parts.extensions.get::<Marker>().copied(),
                peer: parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(peer)| *peer),
                matched_path: parts
                    .extensions
                    .get::<MatchedPath>()
                    .map(|path| path.as_str().to_owned()),
                body,
            };
            *seen.lock().unwrap() = Some(recorded);
            Ok(response)
        })
    }
}

// ---------------------------------------------------------------------------------------------
// The layer under test, with real SDK providers

/// Headers the recording layer records, both ways: the ones the strategies send most.
const RECORDED: [&str; 6] = [
    "user-agent",
    "x-request-id",
    "baggage",
    "x-forwarded-for",
    "host",
    "tracestate",
];

/// SDK providers whose spans are kept in memory (every span sampled, so every attribute is
/// computed) and whose metrics are collected as deltas after each case.
///
/// Collecting after each case, as the periodic reader does every interval, keeps the SDK's table
/// of series at one case's size: left to grow over a thousand cases of random methods, versions
/// and statuses, it doubles its capacity now and then (82 KiB at once, once, in CI), a cost of
/// the number of series, which `tests/cardinality.rs` bounds, not of any one request.
struct Pipeline {
    spans: InMemorySpanExporter,
    tracer_provider: SdkTracerProvider,
    metrics: InMemoryMetricExporter,
    meter_provider: SdkMeterProvider,
}

impl Pipeline {
    fn new() -> Self {
        let spans = InMemorySpanExporter::default();
        let tracer_provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_simple_exporter(spans.clone())
            .build();
        let metrics = InMemoryMetricExporterBuilder::new()
            .with_temporality(Temporality::Delta)
            .build();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        Self {
            spans,
            tracer_provider,
            metrics,
            meter_provider,
        }
    }

    /// The layer, in its default configuration or with every option that reads or writes
    /// headers on: every peer a trusted proxy, so that the `Forwarded` header is parsed (its
    /// grammar is the harder one; `X-Forwarded-For` is property-tested in the layer's own unit
    /// tests).
    fn layer(&self, everything: bool) -> MonitorLayer {
        let builder = MonitorLayer::builder()
            .tracer(self.tracer_provider.tracer("hostile"))
            .meter(self.meter_provider.meter("hostile"))
            .propagator(TextMapCompositePropagator::new(vec![
                Box::new(TraceContextPropagator::new()),
                Box::new(BaggagePropagator::new()),
            ]));
        if everything {
            builder
                .trusted_proxies(["0.0.0.0/0", "::/0"])
                .forwarded_headers(ForwardedHeaders::Forwarded)
                .record_request_headers(RECORDED)
                .record_response_headers(RECORDED.iter().copied().chain(["content-type"]))
                .inject_trace_context(true)
        } else {
            builder
        }
        .build()
    }

    /// The number of spans ended since the last call, after which the spans and the metrics
    /// recorded so far are collected and forgotten.
    fn end_case(&self) -> usize {
        let ended = self.spans.get_finished_spans().unwrap().len();
        self.spans.reset();
        self.meter_provider.force_flush().unwrap();
        self.metrics.reset();
        ended
    }
}

/// One request, bare and through the layer, on this thread.
struct Comparison {
    bare: (Seen, Answer),
    layered: (Seen, Answer),
    /// Bytes the layered call allocated beyond the bare one (0 when it allocated less).
    extra_allocated: u64,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
}

async fn answer<B>(response: Response<B>) -> Answer
where
    B: http_body::Body<Data = Bytes>,
    B::Error: fmt::Debug,
{
    let (parts, body) = response.into_parts();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.expect("the response body").to_bytes(),
    }
}

/// Sends `request` to a bare [`Recorder`] and to one behind `layer`.
fn compare_plain(
    runtime: &tokio::runtime::Runtime,
    layer: &MonitorLayer,
    request: &HostileRequest,
) -> Comparison {
    let recorder = Recorder::default();
    let bare_service = recorder.clone();
    let layered_service = layer.layer(recorder.clone());
    let (bare_request, layered_request) = (request.build(), request.build());
    let (bare, bare_allocated) = allocated_by(|| {
        runtime.block_on(async {
            let response = bare_service
                .oneshot(bare_request as Request<Full<Bytes>>)
                .await
                .unwrap();
            answer(response).await
        })
    });
    let bare = (recorder.take(), bare);
    let (layered, layered_allocated) = allocated_by(|| {
        runtime.block_on(async {
            let response = layered_service
                .oneshot(layered_request as Request<Full<Bytes>>)
                .await
                .unwrap();
            answer(response).await
        })
    });
    Comparison {
        bare,
        layered: (recorder.take(), layered),
        extra_allocated: layered_allocated.saturating_sub(bare_allocated),
    }
}

/// An axum app whose routes and fallback are all the recorder: a template, a wildcard, and the
/// fallback for the rest.
fn router(recorder: &Recorder) -> Router {
    Router::new()
        .route("/users/{id}", any_service(recorder.clone()))
        .route("/files/{*rest}", any_service(recorder.clone()))
        .fallback_service(recorder.clone())
}

/// Sends `request` to [`router`] without and with `layer`.
fn compare_router(
    runtime: &tokio::runtime::Runtime,
    layer: &MonitorLayer,
    request: &HostileRequest,
) -> Comparison {
    let recorder = Recorder::default();
    let bare_router = router(&recorder);
    let layered_router = router(&recorder).layer(layer.clone());
    let (bare_request, layered_request) = (request.build(), request.build());
    let (bare, bare_allocated) = allocated_by(|| {
        runtime.block_on(async {
            let response = bare_router
                .oneshot(bare_request as Request<Body>)
                .await
                .unwrap();
            answer(response).await
        })
    });
    let bare = (recorder.take(), bare);
    let (layered, layered_allocated) = allocated_by(|| {
        runtime.block_on(async {
            let response = layered_router
                .oneshot(layered_request as Request<Body>)
                .await
                .unwrap();
            answer(response).await
        })
    });
    Comparison {
        bare,
        layered: (recorder.take(), layered),
        extra_allocated: layered_allocated.saturating_sub(bare_allocated),
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// Checks what the module's documentation promises for one request.
fn check(
    comparison: &Comparison,
    request: &HostileRequest,
    injects_traceparent: bool,
    ended_spans: usize,
) -> Result<(), TestCaseError> {
    let (seen_bare, answer_bare) = &comparison.bare;
    let (seen_layered, answer_layered) = &comparison.layered;
    prop_assert_eq!(
        seen_layered,
        seen_bare,
        "the inner service saw another request"
    );
    prop_assert_eq!(answer_layered.status, answer_bare.status);
    prop_assert_eq!(&answer_layered.body, &answer_bare.body);
    let mut expected_headers = answer_bare.headers.clone();
    if injects_traceparent {
        let injected = answer_layered
            .headers
            .get_all(TRACEPARENT)
            .iter()
            .collect::<Vec<_>>();
        prop_assert_eq!(injected.len(), 1, "one traceparent injected");
        prop_assert!(
            is_traceparent(injected[0].as_bytes()),
            "injected {:?}",
            injected[0]
        );
        expected_headers.insert(TRACEPARENT, injected[0].clone());
    }
    prop_assert_eq!(
        &answer_layered.headers,
        &expected_headers,
        "the client got other headers"
    );
    prop_assert_eq!(ended_spans, 1, "spans ended for one request");
    let size = request.size();
    let bound = ALLOCATION_BOUND.of(size);
    prop_assert!(
        comparison.extra_allocated <= bound,
        "the layer allocated {} bytes for a request of {} bytes, more than {} + {} × {} = {}",
        comparison.extra_allocated,
        size,
        ALLOCATION_BOUND.constant,
        ALLOCATION_BOUND.per_byte,
        size,
        bound
    );
    Ok(())
}

/// `00-{32 hex}-{16 hex}-{2 hex}`, lower case.
fn is_traceparent(value: &[u8]) -> bool {
    let hex = |part: &[u8], len: usize| {
        part.len() == len
            && part
                .iter()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let parts: Vec<&[u8]> = value.split(|byte| *byte == b'-').collect();
    matches!(parts[..], [version, trace, span, flags]
        if version == b"00" && hex(trace, 32) && hex(span, 16) && hex(flags, 2))
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// The bytes RFC 9110 allows in a token (a method, a header name).
const TCHAR: &[u8] =
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Every byte the `http` crate takes in a path and in a query: percent signs not followed by
/// hex digits, non-ASCII bytes and the like included, whatever they are, so that the URIs are
/// as odd as the crate lets a server receive.
static PATH_BYTES: LazyLock<Vec<u8>> =
    LazyLock::new(|| accepted_bytes(|byte| [b'/', b'a', byte, b'z'].to_vec()));
static QUERY_BYTES: LazyLock<Vec<u8>> =
    LazyLock::new(|| accepted_bytes(|byte| [b'/', b'?', b'a', byte, b'z'].to_vec()));

fn accepted_bytes(uri_with: impl Fn(u8) -> Vec<u8>) -> Vec<u8> {
    (0..=u8::MAX)
        .filter(|byte| {
            Uri::from_maybe_shared(Bytes::from(uri_with(*byte)))
                .is_ok_and(|uri| uri.to_string().as_bytes() == uri_with(*byte))
        })
        .collect()
}

/// Bytes `HeaderValue::from_bytes` takes: visible ASCII, space, tab and obs-text (0x80-0xFF).
fn header_value_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        6 => 0x20u8..0x7f,
        1 => Just(b'\t'),
        2 => 0x80u8..=0xff,
    ]
}

/// A value made of `unit` repeated up to `max` times: long inputs, and separators in a row
/// (`----`, `,,,,`, `;;;;`, `&&&&`), without generating every byte.
fn repeated(unit: impl Strategy<Value = Vec<u8>>, max: usize) -> impl Strategy<Value = Vec<u8>> {
    (unit, 1..=max).prop_map(|(unit, times)| unit.repeat(times))
}

fn header_value() -> BoxedStrategy<HeaderValue> {
    let bytes = prop_oneof![
        4 => vec(header_value_byte(), 0..64),
        1 => repeated(vec(header_value_byte(), 1..8), 8_192),
    ];
    bytes
        .prop_map(|bytes| HeaderValue::from_bytes(&bytes).expect("a valid header value"))
        .boxed()
}

fn ascii_value(text: impl Strategy<Value = String>) -> impl Strategy<Value = HeaderValue> {
    text.prop_filter_map("not a header value", |text| {
        HeaderValue::from_str(&text).ok()
    })
}

fn traceparent() -> BoxedStrategy<HeaderValue> {
    let valid = (
        "[0-9a-f]{2}",
        "[0-9a-f]{32}",
        "[0-9a-f]{16}",
        "[0-9a-f]{2}",
        prop::option::of("-[ -~]{0,20}"),
    )
        .prop_map(|(version, trace, span, flags, rest)| {
            format!(
                "{version}-{trace}-{span}-{flags}{}",
                rest.unwrap_or_default()
            )
        });
    prop_oneof![
        3 => ascii_value(valid),
        // Near misses: upper case, wrong lengths, zero ids, spaces.
        2 => ascii_value("[0-9a-fA-F -]{0,70}"),
        1 => repeated(Just(b"-".to_vec()), 16_384)
            .prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap()),
        1 => header_value(),
    ]
    .boxed()
}

/// `key=value` list members: many of them, long ones, invalid ones.
fn members(
    separator: &'static str,
    member: impl Strategy<Value = String> + 'static,
) -> BoxedStrategy<HeaderValue> {
    prop_oneof![
        3 => (vec(member, 0..40)).prop_map(move |members| members.join(separator)),
        // Thousands of members: one pattern, numbered.
        1 => ("[a-z]{1,4}", 100..5_000usize).prop_map(move |(key, count)| {
            (0..count).map(|n| format!("{key}{n}=v{n}")).collect::<Vec<_>>().join(separator)
        }),
    ]
    .prop_filter_map("not a header value", |text| {
        HeaderValue::from_str(&text).ok()
    })
    .boxed()
}

fn tracestate() -> BoxedStrategy<HeaderValue> {
    prop_oneof![
        3 => members(",", "[a-z0-9_*/@-]{0,20}=[ -+--<>-~]{0,20}"),
        1 => members(",", "[ -~]{0,300}"),
        1 => header_value(),
    ]
    .boxed()
}

fn baggage() -> BoxedStrategy<HeaderValue> {
    prop_oneof![
        3 => members(",", "[a-zA-Z0-9%]{0,12}=[a-zA-Z0-9%]{0,12}(;[a-z%=]{0,8}){0,3}"),
        // Percent-encoded bytes that are not UTF-8, and separators in a row.
        1 => members(",", "(%[0-9A-Fa-f]{2}|[;=,%]){0,30}"),
        1 => repeated(select(vec![b";".to_vec(), b"=".to_vec(), b",".to_vec(), b"a=b;".to_vec()]), 4_096)
            .prop_map(|bytes| HeaderValue::from_bytes(&bytes).unwrap()),
        1 => header_value(),
    ]
    .boxed()
}

fn host() -> BoxedStrategy<HeaderValue> {
    prop_oneof![
        2 => ascii_value(select(vec![
            "", "a", "example.com", "example.com:8080", "example.com:", ":80", "[::1]", "[::1]:443",
            "[::1", "[]", "[]:1", "::1", "user:pw@host:1", "@", "a@b@c:2", "host:99999", "host:-1",
            "host:+80", "a b:1", "a/b", "ex ample.com", "[2001:db8::1]:x", "h:1:2",
        ].into_iter().map(str::to_owned).collect::<Vec<_>>())),
        2 => ascii_value("[a-z0-9.:@\\[\\]-]{0,40}"),
        1 => header_value(),
    ]
    .boxed()
}

fn forwarded() -> BoxedStrategy<HeaderValue> {
    prop_oneof![
        2 => ascii_value("(for|by|proto|host)=[ -~]{0,30}(;(for|by|proto|host)=[ -~]{0,30}){0,3}"),
        1 => header_value(),
    ]
    .boxed()
}

/// A header name: the ones the layer or its propagators read, the forwarding ones, and any
/// token (lower-cased, as `HeaderName` stores it).
fn header_name() -> BoxedStrategy<HeaderName> {
    prop_oneof![
        3 => select(vec![
            "traceparent", "tracestate", "baggage", "host", "user-agent", "x-request-id",
            "forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
            "content-length", "content-type", "x-dup",
        ])
        .prop_map(HeaderName::from_static),
        1 => vec(select(TCHAR.to_vec()), 1..30)
            .prop_map(|bytes| HeaderName::from_bytes(&bytes).expect("a token is a header name")),
    ]
    .boxed()
}

/// A header whose value suits its name.
fn header() -> BoxedStrategy<(HeaderName, HeaderValue)> {
    header_name()
        .prop_flat_map(|name| {
            let value = match name.as_str() {
                "traceparent" => traceparent(),
                "tracestate" => tracestate(),
                "baggage" => baggage(),
                "host" | "x-forwarded-host" => host(),
                "forwarded" | "x-forwarded-for" | "x-forwarded-proto" => forwarded(),
                _ => header_value(),
            };
            (Just(name), value)
        })
        .boxed()
}

fn headers() -> BoxedStrategy<Vec<(HeaderName, HeaderValue)>> {
    prop_oneof![
        8 => vec(header(), 0..24),
        // Many headers, the same few names over and over.
        1 => (vec(header(), 1..4), 100..2_000usize).prop_map(|(few, count)| {
            few.iter().cycle().take(count).cloned().collect()
        }),
        // Many distinct names.
        1 => (header_value(), 100..1_500usize).prop_map(|(value, count)| {
            (0..count)
                .map(|n| (HeaderName::try_from(format!("x-h{n}")).unwrap(), value.clone()))
                .collect()
        }),
    ]
    .boxed()
}

fn method() -> BoxedStrategy<Method> {
    prop_oneof![
        4 => select(vec![
            Method::GET, Method::POST, Method::PUT, Method::DELETE, Method::PATCH, Method::HEAD,
            Method::OPTIONS, Method::CONNECT, Method::TRACE,
        ]),
        3 => vec(select(TCHAR.to_vec()), 1..20)
            .prop_map(|bytes| Method::from_bytes(&bytes).expect("a token is a method")),
        1 => repeated(vec(select(TCHAR.to_vec()), 1..8), 4_096)
            .prop_map(|bytes| Method::from_bytes(&bytes).expect("a token is a method")),
    ]
    .boxed()
}

fn uri_part(alphabet: &'static [u8]) -> BoxedStrategy<Vec<u8>> {
    let byte = select(alphabet.to_vec()).prop_map(|byte| vec![byte]);
    let percent = "%[0-9A-Fa-f]{2}|%[g-zG-Z]?|%[0-9A-F]".prop_map(String::into_bytes);
    let piece = prop_oneof![4 => byte, 1 => percent];
    prop_oneof![
        6 => vec(piece.clone(), 0..40).prop_map(|pieces| pieces.concat()),
        1 => repeated(vec(piece, 1..6).prop_map(|pieces| pieces.concat()), 12_000),
    ]
    .boxed()
}

fn uri() -> BoxedStrategy<Uri> {
    let path = uri_part(&PATH_BYTES).prop_map(|bytes| [b"/".as_slice(), &bytes].concat());
    let query = prop::option::of(uri_part(&QUERY_BYTES));
    let redacted = prop::option::of(select(vec!["sig=1", "Signature=", "AWSAccessKeyId=k&&"]));
    let path_and_query = (path, query, redacted).prop_map(|(path, query, redacted)| {
        let mut uri = path;
        if query.is_some() || redacted.is_some() {
            uri.push(b'?');
            uri.extend(query.unwrap_or_default());
            if let Some(redacted) = redacted {
                uri.extend(b"&");
                uri.extend(redacted.as_bytes());
            }
        }
        uri
    });
    let authority = "([a-z0-9.-]{1,20}|\\[::1\\]|[a-z]{1,5}@[a-z]{1,8})(:[0-9]{0,6})?";
    let scheme = select(vec!["http", "https", "ftp", "x-custom+scheme"]);
    prop_oneof![
        6 => path_and_query.clone(),
        // Absolute form, as HTTP/2 requests carry their authority.
        3 => (scheme, authority, path_and_query).prop_map(|(scheme, authority, rest)| {
            [format!("{scheme}://{authority}").into_bytes(), rest].concat()
        }),
        // Authority form (CONNECT) and asterisk form (OPTIONS).
        1 => prop_oneof![Just("*".to_owned()), authority.prop_map(|authority| authority)]
            .prop_map(String::into_bytes),
    ]
    .prop_filter_map("not a URI", |bytes| {
        Uri::from_maybe_shared(Bytes::from(bytes)).ok()
    })
    .boxed()
}

fn version() -> impl Strategy<Value = Version> {
    select(vec![
        Version::HTTP_09,
        Version::HTTP_10,
        Version::HTTP_11,
        Version::HTTP_2,
        Version::HTTP_3,
    ])
}

fn peer() -> impl Strategy<Value = Option<SocketAddr>> {
    prop::option::of(prop_oneof![
        any::<([u8; 4], u16)>().prop_map(SocketAddr::from),
        any::<([u16; 8], u16)>().prop_map(SocketAddr::from),
    ])
}

fn hostile_request() -> impl Strategy<Value = HostileRequest> {
    (
        method(),
        uri(),
        version(),
        headers(),
        peer(),
        vec(any::<u8>(), 0..64).prop_map(Bytes::from),
    )
        .prop_map(
            |(method, uri, version, headers, peer, body)| HostileRequest {
                method,
                uri,
                version,
                headers,
                peer,
                body,
            },
        )
}

// ---------------------------------------------------------------------------------------------
// The properties

fn config() -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(DEFAULT_CASES);
    // No regression file written into the tree: every failing case found becomes a named test.
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

/// Runs `compare` on generated requests, through a layer with the defaults and one with every
/// header option on, alternately.
///
/// Each case gets a layer of its own, built before it is measured: a layer keeps the bound
/// instruments of up to 1,000 metric series in a table that doubles now and then as series are
/// added (80 KiB at once, once, in a run of a thousand cases of random methods, versions and
/// statuses), a cost of the number of series, bounded by construction and by
/// `tests/cardinality.rs`, not of any one request. A new layer's first request still pays for
/// making its series, as the constant of [`ALLOCATION_BOUND`] allows.
fn run_property(
    compare: fn(&tokio::runtime::Runtime, &MonitorLayer, &HostileRequest) -> Comparison,
) {
    let runtime = runtime();
    let pipeline = Pipeline::new();
    let mut runner = TestRunner::new(config());
    let largest = Mutex::new(Largest::default());
    let result = runner.run(
        &(hostile_request(), any::<bool>()),
        |(request, everything)| {
            let layer = pipeline.layer(everything);
            let comparison = compare(&runtime, &layer, &request);
            largest.lock().unwrap().note(&comparison, &request);
            check(&comparison, &request, everything, pipeline.end_case())
        },
    );
    if let Err(error) = result {
        panic!("{error}");
    }
    println!("{:?}", largest.into_inner().unwrap());
}

/// The largest extra allocations seen, for the figures the bound is checked against.
#[derive(Debug, Default)]
struct Largest {
    /// (extra bytes, request size) of the request the layer allocated most for.
    extra: (u64, usize),
    /// (extra bytes per request byte, extra bytes, request size), over requests of 4 KiB or more.
    per_byte: (f64, u64, usize),
}

impl Largest {
    fn note(&mut self, comparison: &Comparison, request: &HostileRequest) {
        let (extra, size) = (comparison.extra_allocated, request.size());
        if extra > self.extra.0 {
            self.extra = (extra, size);
        }
        let per_byte = extra as f64 / size as f64;
        if size >= 4096 && per_byte > self.per_byte.0 {
            self.per_byte = (per_byte, extra, size);
        }
    }
}

#[test]
fn any_request_reaches_a_tower_service_unchanged_and_its_response_returns_unchanged() {
    run_property(compare_plain);
}

#[test]
fn any_request_reaches_an_axum_route_or_fallback_unchanged_and_its_response_returns_unchanged() {
    run_property(compare_router);
}

// ---------------------------------------------------------------------------------------------
// The worst shapes, and the failing cases found, as named tests

/// A request with these headers to `/`, or to `uri`.
fn request_with(uri: &str, headers: Vec<(&str, Vec<u8>)>) -> HostileRequest {
    HostileRequest {
        method: Method::GET,
        uri: Uri::try_from(uri).unwrap(),
        version: Version::HTTP_11,
        headers: headers
            .into_iter()
            .map(|(name, value)| {
                (
                    HeaderName::try_from(name).unwrap(),
                    HeaderValue::from_bytes(&value).unwrap(),
                )
            })
            .collect(),
        peer: None,
        body: Bytes::new(),
    }
}

/// The inputs that make the layer and the propagators allocate most per byte, each checked
/// like a generated case, with its figure printed (`--no-capture`).
#[test]
fn the_costliest_shapes_stay_within_the_allocation_bound() {
    let runtime = runtime();
    let pipeline = Pipeline::new();
    let layer = pipeline.layer(true);
    let long_query = format!("/?{}sig=1", "&".repeat(30_000));
    let shapes: Vec<(&str, HostileRequest)> = vec![
        (
            "query of 30,000 empty pairs, redacted",
            request_with(&long_query, vec![]),
        ),
        (
            "path of 60,000 bytes",
            request_with(&format!("/{}", "a/".repeat(30_000)), vec![]),
        ),
        (
            "traceparent of 60,000 dashes",
            request_with("/", vec![("traceparent", b"-".repeat(60_000))]),
        ),
        (
            "baggage of 8,000 semicolons",
            request_with("/", vec![("baggage", b";".repeat(8_000))]),
        ),
        (
            "baggage of 2,000 members",
            request_with("/", vec![("baggage", b"a=b,".repeat(2_000))]),
        ),
        (
            "baggage over the W3C limit",
            request_with("/", vec![("baggage", b";".repeat(60_000))]),
        ),
        (
            "tracestate of 30,000 commas",
            request_with("/", vec![("tracestate", b",".repeat(30_000))]),
        ),
        (
            "user-agent of 60,000 bytes",
            request_with("/", vec![("user-agent", b"u".repeat(60_000))]),
        ),
        (
            "recorded header of 60,000 obs-text bytes",
            request_with("/", vec![("x-request-id", vec![0xff; 60_000])]),
        ),
        (
            "3,000 empty recorded headers",
            request_with("/", vec![("x-request-id", Vec::new()); 3_000]),
        ),
        (
            "host of 60,000 bytes",
            request_with("/", vec![("host", b"h".repeat(60_000))]),
        ),
        (
            "unknown method of 60,000 bytes",
            HostileRequest {
                method: Method::from_bytes(&b"M".repeat(60_000)).unwrap(),
                ..request_with("/", vec![])
            },
        ),
    ];
    for (shape, request) in shapes {
        let comparison = compare_plain(&runtime, &layer, &request);
        let size = request.size();
        println!(
            "{shape}: {} bytes allocated for {size} bytes, {:.1} a byte",
            comparison.extra_allocated,
            comparison.extra_allocated as f64 / size as f64
        );
        if let Err(error) = check(&comparison, &request, true, pipeline.end_case()) {
            panic!("{shape}: {error}");
        }
    }
}

/// Found by the properties: with `inject_trace_context`, the layer set `tracestate` on the
/// response too, empty or the client's own sent back, replacing the service's.
#[test]
fn inject_trace_context_adds_traceparent_and_nothing_else() {
    let runtime = runtime();
    let pipeline = Pipeline::new();
    let layer = pipeline.layer(true);
    for tracestate in [None, Some("vendor=client-chosen")] {
        let mut headers = vec![(
            "traceparent",
            b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_vec(),
        )];
        headers.extend(tracestate.map(|value| ("tracestate", value.as_bytes().to_vec())));
        let comparison = compare_plain(&runtime, &layer, &request_with("/", headers));
        let (_, bare) = &comparison.bare;
        let (_, layered) = &comparison.layered;
        let mut added: Vec<_> = layered
            .headers
            .keys()
            .filter(|name| !bare.headers.contains_key(*name))
            .collect();
        added.extend(bare.headers.keys().filter(|name| {
            bare.headers
                .get_all(*name)
                .iter()
                .ne(layered.headers.get_all(*name).iter())
        }));
        assert_eq!(
            added,
            [TRACEPARENT],
            "headers the layer set, with tracestate {tracestate:?}"
        );
    }
}

/// How many distinct header names a `HeaderMap` holds before `insert` would panic.
fn header_map_capacity() -> usize {
    let mut headers = HeaderMap::new();
    (0..)
        .take_while(|n| {
            headers
                .try_insert(
                    HeaderName::try_from(format!("x-{n}")).unwrap(),
                    HeaderValue::from_static(""),
                )
                .is_ok()
        })
        .count()
}

/// A service whose response already holds as many headers as a `HeaderMap` can (here, echoed
/// from the request): the layer has no room for `traceparent`, and must not panic.
#[test]
fn a_response_with_no_room_for_traceparent_is_passed_on_as_it_is() {
    let capacity = header_map_capacity();
    let names: Vec<String> = (0..capacity).map(|n| format!("x-{n}")).collect();
    let request = request_with(
        "/",
        names
            .iter()
            .map(|name| (name.as_str(), b"v".to_vec()))
            .collect(),
    );
    let runtime = runtime();
    let pipeline = Pipeline::new();
    let comparison = compare_plain(&runtime, &pipeline.layer(true), &request);
    let (_, bare) = &comparison.bare;
    let (_, layered) = &comparison.layered;
    assert_eq!(bare.headers.keys_len(), capacity);
    assert_eq!(layered, bare);
}
