//! Cardinality under scanning: a scanner's 100,000 distinct paths that no route matches, and
//! 1,000 requests with random methods, known and unknown, through `MonitorLayer` on axum apps
//! (the default 404, a `fallback`, nested routers that do not match, with and without their own
//! fallback), with real SDK providers. Every metric series and every span name is one the
//! conventions (v1.44) allow: the method as known or `_OTHER` (span name `HTTP`), the route a
//! template the app declared or none, so their number is bounded by the app's routes, not by the
//! clients; no raw path appears in either; and memory stays flat. Last, the real example service
//! scanned over HTTP, counted on its Prometheus endpoint.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    http::{Method, Request, StatusCode},
    routing::get,
};
use futures_util::StreamExt as _;
use http_body_util::BodyExt;
use opentelemetry::{
    Context, KeyValue, Value, metrics::MeterProvider as _, trace::TracerProvider as _,
};
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use opentelemetry_sdk::{
    error::OTelSdkResult,
    metrics::{
        InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        data::{AggregatedMetrics, MetricData},
    },
    trace::{Sampler, SdkTracerProvider, Span, SpanData, SpanProcessor},
};
use otel_monitor::MonitorLayer;
use proptest::{
    collection::vec, prelude::*, sample::select, strategy::ValueTree, test_runner::TestRunner,
};
use support::ExampleService;
use tower::ServiceExt as _;

/// Distinct unmatched paths a scan sends, after [`WARM_UP`] more.
const SCANNED_PATHS: usize = 100_000;
/// Requests before the first memory reading.
const WARM_UP: usize = 1_000;
/// Requests with random methods, to matched and unmatched paths.
const RANDOM_METHODS: usize = 1_000;
/// How much the process's resident memory may grow over the 100,000 scanned paths, after the
/// warm-up. The layer keeps nothing per request; what it keeps per series, per route and per
/// span name is bounded by the app's routes, and all of it exists after the warm-up. 2 MiB is
/// the allocator's slack (0.13 MiB measured); a leak of 21 bytes a request exceeds it.
const RSS_GROWTH_BOUND_MIB: f64 = 2.0;

/// The methods the conventions know; any other is recorded as `_OTHER`.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

/// What no metric attribute and no span name may contain: every scanned path has it.
const SCAN_MARK: &str = "scan-";

// ---------------------------------------------------------------------------------------------
// Counting span names and metric series

/// A span processor that keeps the distinct names of the spans that end, and nothing else of
/// them, so that the memory measured is the layer's, not the test's. At most [`NAMES_KEPT`]
/// names are kept: past that, it notes there were more.
#[derive(Debug, Clone, Default)]
struct SpanNames(Arc<Mutex<NamesSeen>>);

#[derive(Debug, Default)]
struct NamesSeen {
    names: BTreeSet<String>,
    more: bool,
    ended: u64,
}

const NAMES_KEPT: usize = 1_000;

impl SpanProcessor for SpanNames {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let mut seen = self.0.lock().unwrap();
        seen.ended += 1;
        if !seen.names.contains(span.name.as_ref()) {
            if seen.names.len() < NAMES_KEPT {
                seen.names.insert(span.name.into_owned());
            } else {
                seen.more = true;
            }
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

/// One metric data point's attributes, as `key=value` strings.
type Series = BTreeSet<String>;

fn series_of<'a>(attributes: impl Iterator<Item = &'a KeyValue>) -> Series {
    attributes
        .map(|attribute| match &attribute.value {
            Value::String(value) => format!("{}={}", attribute.key, value.as_str()),
            other => format!("{}={other}", attribute.key),
        })
        .collect()
}

/// The SDK providers the layer records into: every span sampled (so every attribute is
/// computed) and handed to [`SpanNames`]; metrics read on demand from an in-memory exporter.
struct Pipeline {
    names: SpanNames,
    tracer_provider: SdkTracerProvider,
    metrics: InMemoryMetricExporter,
    meter_provider: SdkMeterProvider,
}

impl Pipeline {
    fn new() -> Self {
        let names = SpanNames::default();
        let tracer_provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::AlwaysOn)
            .with_span_processor(names.clone())
            .build();
        let metrics = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        Self {
            names,
            tracer_provider,
            metrics,
            meter_provider,
        }
    }

    fn layer(&self) -> MonitorLayer {
        MonitorLayer::builder()
            .tracer(self.tracer_provider.tracer("cardinality"))
            .meter(self.meter_provider.meter("cardinality"))
            .build()
    }

    /// Each metric's distinct attribute sets, as of now.
    fn series(&self) -> BTreeMap<String, BTreeSet<Series>> {
        self.metrics.reset();
        self.meter_provider.force_flush().unwrap();
        let exports = self.metrics.get_finished_metrics().unwrap();
        let latest = exports.last().expect("a metric export");
        let mut series: BTreeMap<String, BTreeSet<Series>> = BTreeMap::new();
        for metric in latest.scope_metrics().flat_map(|scope| scope.metrics()) {
            let points: Vec<Series> = match metric.data() {
                AggregatedMetrics::F64(MetricData::Histogram(histogram)) => histogram
                    .data_points()
                    .map(|point| series_of(point.attributes()))
                    .collect(),
                AggregatedMetrics::U64(MetricData::Histogram(histogram)) => histogram
                    .data_points()
                    .map(|point| series_of(point.attributes()))
                    .collect(),
                AggregatedMetrics::I64(MetricData::Sum(sum)) => sum
                    .data_points()
                    .map(|point| series_of(point.attributes()))
                    .collect(),
                other => panic!("{} is an unexpected {other:?}", metric.name()),
            };
            series
                .entry(metric.name().to_owned())
                .or_default()
                .extend(points);
        }
        series
    }
}

/// The process's resident memory, in MiB, from `/proc/self/status`.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib / 1024.0
}

// ---------------------------------------------------------------------------------------------
// The apps and the scan

/// An app under scan: its router (without the layer) and the route templates it declares,
/// with a path each one matches.
struct App {
    router: Router,
    routes: Vec<(&'static str, &'static str)>,
    /// Prefix of the scanned paths: `/` or, for nested routers, the nest's own prefix.
    scan_prefix: &'static str,
}

async fn ok() -> &'static str {
    "ok"
}

async fn not_here() -> (StatusCode, &'static str) {
    (StatusCode::NOT_FOUND, "nothing here")
}

/// Three routes, axum's own 404 for the rest.
fn default_404() -> App {
    App {
        router: Router::new()
            .route("/users/{id}", get(ok))
            .route("/orders/{id}/items", get(ok).post(ok))
            .route("/health", get(ok)),
        routes: vec![
            ("/users/{id}", "/users/7"),
            ("/orders/{id}/items", "/orders/9/items"),
            ("/health", "/health"),
        ],
        scan_prefix: "/",
    }
}

/// The same routes with a `fallback` handler.
fn with_fallback() -> App {
    let App {
        router,
        routes,
        scan_prefix,
    } = default_404();
    App {
        router: router.fallback(not_here),
        routes,
        scan_prefix,
    }
}

/// Routes nested under `/api`, scanned under `/api/`, where the inner router matches nothing;
/// with `inner_fallback`, the inner router has a fallback of its own.
fn nested(inner_fallback: bool) -> App {
    let api = Router::new()
        .route("/users/{id}", get(ok))
        .route("/orders/{id}/items", get(ok).post(ok));
    let api = if inner_fallback {
        api.fallback(not_here)
    } else {
        api
    };
    App {
        router: Router::new().route("/health", get(ok)).nest("/api", api),
        routes: vec![
            ("/api/users/{id}", "/api/users/7"),
            ("/api/orders/{id}/items", "/api/orders/9/items"),
            ("/health", "/health"),
        ],
        scan_prefix: "/api/",
    }
}

/// The `n`th path of a scan: what scanners probe, each one distinct, none matching a route.
fn scanned_path(prefix: &str, n: usize) -> String {
    match n % 5 {
        0 => format!("{prefix}{SCAN_MARK}{n}/wp-login.php"),
        1 => format!("{prefix}.env.{SCAN_MARK}{n}"),
        2 => format!("{prefix}{SCAN_MARK}{n}/..%2f..%2fetc/passwd?id={n}"),
        3 => format!("{prefix}users/{SCAN_MARK}{n}/extra"),
        _ => format!("{prefix}{SCAN_MARK}{n}%00.php"),
    }
}

/// `count` methods: a known one or a random token, as scanners send them.
fn random_methods(count: usize) -> Vec<Method> {
    let token = "[A-Z][A-Za-z0-9!#$%&'*+.^_`|~-]{0,19}"
        .prop_map(|token| Method::from_bytes(token.as_bytes()).expect("a token is a method"));
    let known = select(KNOWN_METHODS.to_vec())
        .prop_map(|method| Method::from_bytes(method.as_bytes()).unwrap());
    let methods = vec(prop_oneof![known, token], count);
    methods
        .new_tree(&mut TestRunner::deterministic())
        .unwrap()
        .current()
}

/// `http.request.method` as the conventions record `method`, and its part of a span name.
fn recorded_method(method: &Method) -> (&'static str, &'static str) {
    match KNOWN_METHODS
        .iter()
        .find(|known| **known == method.as_str())
    {
        Some(known) => (known, known),
        None => ("_OTHER", "HTTP"),
    }
}

/// What one request must add: its series (method, route, status) and its span name.
#[derive(Debug, Default)]
struct Expected {
    /// (`http.request.method`, `http.route`, `http.response.status_code`).
    completed: BTreeSet<(&'static str, Option<&'static str>, u16)>,
    span_names: BTreeSet<String>,
}

impl Expected {
    fn note(&mut self, method: &Method, route: Option<&'static str>, status: StatusCode) {
        let (attribute, name) = recorded_method(method);
        self.completed.insert((attribute, route, status.as_u16()));
        self.span_names.insert(match route {
            Some(route) => format!("{name} {route}"),
            None => name.to_owned(),
        });
    }

    /// The series of the three histograms.
    fn completed_series(&self) -> BTreeSet<Series> {
        self.completed
            .iter()
            .map(|(method, route, status)| {
                let mut series: Series = [
                    format!("http.request.method={method}"),
                    "url.scheme=http".to_owned(),
                    "network.protocol.version=1.1".to_owned(),
                    format!("http.response.status_code={status}"),
                ]
                .into();
                series.extend(route.map(|route| format!("http.route={route}")));
                series
            })
            .collect()
    }

    /// The series of `http.server.active_requests`.
    fn active_series(&self) -> BTreeSet<Series> {
        self.completed
            .iter()
            .map(|(method, _, _)| {
                [
                    format!("http.request.method={method}"),
                    "url.scheme=http".to_owned(),
                ]
                .into()
            })
            .collect()
    }
}

async fn send(router: &Router, method: Method, path: &str) -> StatusCode {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .body(Body::empty())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    // Read to the end: the span ends with the body.
    response.into_body().collect().await.unwrap();
    status
}

/// Scans `app` and checks every bound; returns the figures for the report.
async fn scan(app: App) {
    let pipeline = Pipeline::new();
    let router = app.router.layer(pipeline.layer());
    let mut expected = Expected::default();

    // Paths are made one at a time: a list of 100,000 would be the test's memory, not the layer's.
    for n in 0..WARM_UP {
        let status = send(&router, Method::GET, &scanned_path(app.scan_prefix, n)).await;
        expected.note(&Method::GET, None, status);
    }
    let rss_after_warm_up = rss_mib();
    let started = std::time::Instant::now();
    for n in WARM_UP..WARM_UP + SCANNED_PATHS {
        let path = scanned_path(app.scan_prefix, n);
        let status = send(&router, Method::GET, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        expected.note(&Method::GET, None, status);
    }
    let took = started.elapsed();
    let rss_after_scan = rss_mib();

    // Random methods: to each declared route in turn, and to a path not scanned yet.
    let targets = app.routes.len() + 1;
    for (n, method) in random_methods(RANDOM_METHODS).into_iter().enumerate() {
        let (route, path) = match app.routes.get(n % targets) {
            Some((route, path)) => (Some(*route), (*path).to_owned()),
            None => (
                None,
                scanned_path(app.scan_prefix, WARM_UP + SCANNED_PATHS + n),
            ),
        };
        let status = send(&router, method.clone(), &path).await;
        // A declared route that does not take the method answers 405, still under its route.
        let route = route.filter(|_| status != StatusCode::NOT_FOUND);
        expected.note(&method, route, status);
    }

    let series = pipeline.series();
    let names = std::mem::take(&mut *pipeline.names.0.lock().unwrap());
    let requests = (WARM_UP + SCANNED_PATHS + RANDOM_METHODS) as u64;
    println!(
        "{} requests ({SCANNED_PATHS} scanned in {took:.1?}); series: {}; span names: {} {:?}; \
         RSS {rss_after_warm_up:.1} MiB after the warm-up, {rss_after_scan:.1} MiB after the scan \
         (+{:.2} MiB)",
        requests,
        series
            .iter()
            .map(|(metric, series)| format!("{metric} {}", series.len()))
            .collect::<Vec<_>>()
            .join(", "),
        names.names.len(),
        names.names,
        rss_after_scan - rss_after_warm_up,
    );

    // The bound the conventions give: 10 recorded methods × (the routes + none) × the statuses
    // the app answers (200, 404, 405) for the histograms; 10 × 1 scheme for active requests;
    // 10 × (the routes + none) span names.
    let routes = app.routes.len();
    let statuses = 3;
    assert!(
        !names.more,
        "more than {NAMES_KEPT} span names: {:?}",
        names.names
    );
    assert_eq!(names.ended, requests, "one span per request");
    assert_eq!(names.names, expected.span_names, "span names");
    assert!(names.names.len() <= 10 * (routes + 1));
    let raw_names: Vec<&String> = names
        .names
        .iter()
        .filter(|name| name.contains(SCAN_MARK))
        .collect();
    assert!(
        raw_names.is_empty(),
        "raw paths in span names: {raw_names:?}"
    );
    for metric in [
        "http.server.request.duration",
        "http.server.request.body.size",
        "http.server.response.body.size",
    ] {
        let seen = &series[metric];
        assert_eq!(seen, &expected.completed_series(), "{metric}");
        assert!(
            seen.len() <= 10 * (routes + 1) * statuses,
            "{metric}: {}",
            seen.len()
        );
    }
    let active = &series["http.server.active_requests"];
    assert_eq!(
        active,
        &expected.active_series(),
        "http.server.active_requests"
    );
    assert!(active.len() <= 10);
    let raw: Vec<&String> = series
        .values()
        .flatten()
        .flatten()
        .filter(|attribute| attribute.contains(SCAN_MARK))
        .collect();
    assert!(raw.is_empty(), "raw paths in metric attributes: {raw:?}");

    let growth = rss_after_scan - rss_after_warm_up;
    assert!(
        growth < RSS_GROWTH_BOUND_MIB,
        "RSS grew by {growth:.2} MiB over {SCANNED_PATHS} scanned paths (bound {RSS_GROWTH_BOUND_MIB} MiB)"
    );
}

#[tokio::test]
async fn a_scan_of_unmatched_paths_and_random_methods_is_bounded_by_the_routes_with_axums_404() {
    scan(default_404()).await;
}

#[tokio::test]
async fn a_scan_of_unmatched_paths_and_random_methods_is_bounded_by_the_routes_with_a_fallback() {
    scan(with_fallback()).await;
}

#[tokio::test]
async fn a_scan_of_unmatched_paths_and_random_methods_is_bounded_by_the_routes_in_a_nested_router()
{
    scan(nested(false)).await;
}

#[tokio::test]
async fn a_scan_is_bounded_by_the_routes_in_a_nested_router_with_its_own_fallback() {
    scan(nested(true)).await;
}

// ---------------------------------------------------------------------------------------------
// The example service, scanned over HTTP and counted on its Prometheus endpoint

/// Distinct unmatched paths sent to the example service, and requests with random methods.
const EXAMPLE_SCANNED_PATHS: usize = 5_000;
const EXAMPLE_RANDOM_METHODS: usize = 200;

/// The labels of one line of the Prometheus text format, `name{key="value",...} number`.
fn labels(line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Some((_, rest)) = line.split_once('{') else {
        return labels;
    };
    let mut chars = rest.chars();
    loop {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let key = key.trim_start_matches(',').trim();
        if key.is_empty() || key.starts_with('}') {
            return labels;
        }
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '"' => break,
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(escaped) => value.push(escaped),
                    None => break,
                },
                c => value.push(c),
            }
        }
        labels.insert(key.to_owned(), value);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_of_the_example_service_over_http_leaves_series_and_span_names_bounded_by_its_routes()
 {
    let receiver = support::OtlpReceiver::start().await;
    let endpoint = receiver.http_endpoint();
    let service = ExampleService::start(&[
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_LOGS_EXPORTER", "none"),
    ]);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    let send = |method: Method, path: String| {
        let client = client.clone();
        let url = service.url(&path);
        async move {
            let request = Request::builder()
                .method(method.clone())
                .uri(url)
                .body(Body::empty());
            let response = client
                .request(request.unwrap())
                .await
                .expect("the request failed");
            let status = response.status();
            response.into_body().collect().await.expect("the body");
            (method, path, status)
        }
    };

    // The example's traced routes that answer at once, with a path each.
    let routes = [
        ("/users/{id}", "/users/7"),
        ("/", "/"),
        ("/error", "/error"),
    ];
    let mut requests: Vec<(Method, String, Option<&'static str>)> = (0..EXAMPLE_SCANNED_PATHS)
        .map(|n| (Method::GET, scanned_path("/", n), None))
        .collect();
    // CONNECT is left out: over HTTP/1.1 it asks for a tunnel, not a response.
    let methods = random_methods(EXAMPLE_RANDOM_METHODS * 2)
        .into_iter()
        .filter(|method| *method != Method::CONNECT)
        .take(EXAMPLE_RANDOM_METHODS);
    for (n, method) in methods.enumerate() {
        requests.push(match routes.get(n % (routes.len() + 1)) {
            Some((route, path)) => (method, (*path).to_owned(), Some(*route)),
            None => (method, scanned_path("/", EXAMPLE_SCANNED_PATHS + n), None),
        });
    }
    let sent = requests.len();
    let routes_of: BTreeMap<String, Option<&'static str>> = requests
        .iter()
        .map(|(_, path, route)| (path.clone(), *route))
        .collect();
    let answers: Vec<(Method, String, StatusCode)> = futures_util::stream::iter(
        requests
            .into_iter()
            .map(|(method, path, _)| send(method, path)),
    )
    .buffer_unordered(8)
    .collect()
    .await;
    let mut expected = Expected::default();
    for (method, path, status) in &answers {
        let route = routes_of[path].filter(|_| *status != StatusCode::NOT_FOUND);
        expected.note(method, route, *status);
    }

    // The spans that arrived (the span queue may drop some under this load) have expected names.
    let spans = receiver
        .wait_for_spans("spans", Duration::from_secs(20), |spans| !spans.is_empty())
        .await;
    // The request spans: the example's handler makes a child span of its own (`load_user`).
    let names: BTreeSet<String> = spans
        .iter()
        .filter(|span| span.span.kind() == SpanKind::Server)
        .map(|span| span.span.name.clone())
        .collect();
    let unexpected: Vec<&String> = names.difference(&expected.span_names).collect();
    assert!(
        unexpected.is_empty(),
        "span names beyond the routes': {unexpected:?}"
    );

    let (status, _, body) = support::client::get(&service.url("/metrics"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    let exposition = String::from_utf8(body.to_vec()).unwrap();
    assert!(
        !exposition.contains(SCAN_MARK),
        "a raw path on /metrics:\n{exposition}"
    );
    let family = |name: &str| -> BTreeSet<BTreeMap<String, String>> {
        exposition
            .lines()
            .filter(|line| line.starts_with(&format!("{name}{{")))
            .map(labels)
            .collect()
    };
    let durations = family("http_server_request_duration_seconds_count");
    let seen: BTreeSet<(String, Option<String>, u16)> = durations
        .iter()
        .map(|labels| {
            (
                labels["http_request_method"].clone(),
                labels.get("http_route").cloned(),
                labels["http_response_status_code"].parse().unwrap(),
            )
        })
        .collect();
    let wanted: BTreeSet<(String, Option<String>, u16)> = expected
        .completed
        .iter()
        .map(|(method, route, status)| ((*method).to_owned(), route.map(str::to_owned), *status))
        .collect();
    assert_eq!(
        seen, wanted,
        "the series are those of the requests sent, the unmatched ones with no route"
    );
    assert_eq!(
        durations.len(),
        seen.len(),
        "one series per (method, route, status)"
    );
    let active = family("http_server_active_requests");
    println!(
        "{sent} requests over HTTP; /metrics: {} duration series, {} active-requests series; \
         {} span names in the {} spans received",
        durations.len(),
        active.len(),
        names.len(),
        spans.len()
    );
    // The conventions' bound for this traffic: 10 recorded methods × (3 routes + none) ×
    // 4 statuses (200, 404, 405, 500); 10 × 1 scheme.
    assert!(durations.len() <= 10 * 4 * 4, "{}", durations.len());
    assert!(active.len() <= 10, "{}", active.len());
    assert!(names.len() <= 10 * 4, "{}", names.len());
    service.stop();
}

/// Found by the scan above: `examples/service.rs` merged the Prometheus router after
/// `.layer(MonitorLayer)` with no fallback of its own, and axum's `merge` then kept the other
/// router's default fallback, which has no layer: a request no route matched was neither traced
/// nor measured.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_measures_the_requests_no_route_matched() {
    let service = ExampleService::start(&[
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ]);
    let (status, _, _) = support::client::get(&service.url("/nowhere"), &[]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, body) = support::client::get(&service.url("/metrics"), &[]).await;
    let exposition = String::from_utf8(body.to_vec()).unwrap();
    let not_found = exposition
        .lines()
        .filter(|line| line.starts_with("http_server_request_duration_seconds_count{"))
        .map(labels)
        .filter(|labels| labels.get("http_response_status_code").map(String::as_str) == Some("404"))
        .count();
    assert_eq!(not_found, 1, "the 404's series:\n{exposition}");
    service.stop();
}
