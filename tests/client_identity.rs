//! Who the client is, without trusting liars, and what the conventions (v1.44) ask of a server
//! span when it starts:
//!
//! - `network.peer.address`/`port` are the socket's; `client.address`/`port`, `url.scheme` and
//!   `server.address`/`port` come from forwarding headers only when the socket peer is a trusted
//!   proxy (the builder's list or `OTEL_MONITOR_TRUSTED_PROXIES`), read from the right to the
//!   first hop that is not trusted; otherwise they are the socket's and the request's. Malformed
//!   headers are ignored. The metrics' `url.scheme` follows the span's.
//! - `QUERY` is a known method; `OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS` (or the builder)
//!   replaces the list.
//! - A sampler sees the sampling-relevant attributes when the span starts.
//!
//! Requests go through the layer with the socket peer axum's `ConnectInfo` would give (so a
//! test can be a proxy at 10.0.0.1); spans and metrics are read from in-memory exporters. The last
//! test runs the example service behind the real collector (rotel). Tests that set environment
//! variables run each in a process of its own (cargo-nextest).

mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    http::{Method, Request},
    routing::{any, get},
};
use opentelemetry::{
    Context, KeyValue, Value,
    metrics::MeterProvider as _,
    trace::{Link, SpanKind, TraceId, TraceState, TracerProvider as _},
};
use opentelemetry_sdk::{
    metrics::{
        InMemoryMetricExporter, PeriodicReader, SdkMeterProvider,
        data::{AggregatedMetrics, MetricData},
    },
    trace::{
        InMemorySpanExporter, SamplingDecision, SamplingResult, SdkTracerProvider, ShouldSample,
        SpanData,
    },
};
use otel_monitor::{ForwardedHeaders, MonitorLayer, MonitorLayerBuilder};
use support::{ExampleService, OtlpReceiver, Rotel, client::get as http_get};
use tower::ServiceExt as _;

/// Sets environment variables before the test starts any thread that could read them.
fn set_env(vars: &[(&str, &str)]) {
    for (name, value) in vars {
        // SAFETY: called first thing in a test that runs alone in its process (cargo-nextest),
        // before it starts a runtime or any other thread.
        unsafe { std::env::set_var(name, value) };
    }
}

/// A layer's spans and metrics, exported in memory.
struct Exported {
    spans: InMemorySpanExporter,
    tracer_provider: SdkTracerProvider,
    metrics: InMemoryMetricExporter,
    meter_provider: SdkMeterProvider,
}

impl Exported {
    fn new() -> Self {
        Self::sampled_by(opentelemetry_sdk::trace::Sampler::AlwaysOn)
    }

    fn sampled_by(sampler: impl ShouldSample + 'static) -> Self {
        let spans = InMemorySpanExporter::default();
        let tracer_provider = SdkTracerProvider::builder()
            .with_sampler(sampler)
            .with_simple_exporter(spans.clone())
            .build();
        let metrics = InMemoryMetricExporter::default();
        let meter_provider = SdkMeterProvider::builder()
            .with_reader(
                PeriodicReader::builder(metrics.clone())
                    .with_interval(Duration::from_secs(3600))
                    .build(),
            )
            .build();
        Self {
            spans,
            tracer_provider,
            metrics,
            meter_provider,
        }
    }

    /// Sends each request through a layer configured by `configure` in front of a router with
    /// `/users/{id}` and `/search`, reading each response whole.
    fn serve(
        &self,
        configure: impl FnOnce(MonitorLayerBuilder) -> MonitorLayerBuilder,
        requests: Vec<Request<Body>>,
    ) {
        let layer = configure(
            MonitorLayer::builder()
                .tracer(self.tracer_provider.tracer("otel-monitor"))
                .meter(self.meter_provider.meter("otel-monitor")),
        )
        .build();
        let app = Router::new()
            .route("/users/{id}", get(|| async { "user" }))
            .route("/search", any(|| async { "results" }))
            .layer(layer);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            for request in requests {
                let response = app.clone().oneshot(request).await.unwrap();
                axum::body::to_bytes(response.into_body(), 1024)
                    .await
                    .unwrap();
            }
        });
    }

    fn spans(&self) -> Vec<SpanData> {
        self.spans.get_finished_spans().unwrap()
    }

    /// The only span.
    fn span(&self) -> SpanData {
        let mut spans = self.spans();
        assert_eq!(spans.len(), 1, "one request, one span");
        spans.remove(0)
    }

    /// The attribute sets of `metric`'s data points, each as `key=value` strings, sorted.
    fn metric_points(&self, metric: &str) -> Vec<Vec<String>> {
        self.meter_provider.force_flush().unwrap();
        let exported = self.metrics.get_finished_metrics().unwrap();
        let data = exported
            .iter()
            .flat_map(|resource| resource.scope_metrics())
            .flat_map(|scope| scope.metrics())
            .filter(|found| found.name() == metric)
            .map(|found| found.data())
            .last()
            .unwrap_or_else(|| panic!("{metric} was not exported"));
        let attribute_sets: Vec<Vec<&KeyValue>> = match data {
            AggregatedMetrics::F64(MetricData::Histogram(histogram)) => histogram
                .data_points()
                .map(|point| point.attributes().collect())
                .collect(),
            AggregatedMetrics::I64(MetricData::Sum(sum)) => sum
                .data_points()
                .map(|point| point.attributes().collect())
                .collect(),
            other => panic!("{metric}: unexpected data {other:?}"),
        };
        let mut points: Vec<Vec<String>> = attribute_sets
            .into_iter()
            .map(|attributes| {
                let mut strings: Vec<String> = attributes
                    .iter()
                    .map(|kv| format!("{}={}", kv.key, kv.value))
                    .collect();
                strings.sort();
                strings
            })
            .collect();
        points.sort();
        points
    }

    /// Whether every point of the duration and active-requests metrics has `url.scheme=scheme`.
    fn assert_metrics_scheme(&self, scheme: &str) {
        for metric in [
            "http.server.request.duration",
            "http.server.active_requests",
        ] {
            let points = self.metric_points(metric);
            assert!(!points.is_empty(), "{metric}: no points");
            for point in points {
                assert!(
                    point.contains(&format!("url.scheme={scheme}")),
                    "{metric}: {point:?}"
                );
            }
        }
    }
}

/// `method uri` from the socket peer `peer`, addressed to `api.example:8080`, with `headers`.
fn request(method: &str, uri: &str, peer: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri)
        .header("host", "api.example:8080");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    let peer: SocketAddr = peer.parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    request
}

fn attribute(span: &SpanData, key: &str) -> Option<Value> {
    let found = span.attributes.iter().find(|kv| kv.key.as_str() == key);
    found.map(|kv| kv.value.clone())
}

fn string(value: &str) -> Option<Value> {
    Some(Value::from(value.to_owned()))
}

/// Checks the span's client, peer, scheme and server attributes.
#[track_caller]
fn assert_identity(
    span: &SpanData,
    client: (&str, Option<i64>),
    peer: (&str, i64),
    scheme: &str,
    server: (&str, i64),
) {
    assert_eq!(attribute(span, "client.address"), string(client.0));
    assert_eq!(attribute(span, "client.port"), client.1.map(Value::I64));
    assert_eq!(attribute(span, "network.peer.address"), string(peer.0));
    assert_eq!(
        attribute(span, "network.peer.port"),
        Some(Value::I64(peer.1))
    );
    assert_eq!(attribute(span, "url.scheme"), string(scheme));
    assert_eq!(attribute(span, "server.address"), string(server.0));
    assert_eq!(attribute(span, "server.port"), Some(Value::I64(server.1)));
}

/// What a client sends to pass for someone else, in both header families.
const SPOOFED: [(&str, &str); 4] = [
    ("x-forwarded-for", "1.2.3.4"),
    ("x-forwarded-proto", "https"),
    ("x-forwarded-host", "bank.example:443"),
    ("forwarded", "for=1.2.3.4;proto=https;host=bank.example"),
];

#[test]
fn without_trusted_proxies_spoofed_forwarding_headers_are_ignored() {
    let exported = Exported::new();
    exported.serve(
        |builder| builder,
        vec![request("GET", "/users/7", "203.0.113.50:41000", &SPOOFED)],
    );
    assert_identity(
        &exported.span(),
        ("203.0.113.50", Some(41000)),
        ("203.0.113.50", 41000),
        "http",
        ("api.example", 8080),
    );
    exported.assert_metrics_scheme("http");
}

#[test]
fn a_trusted_proxy_is_believed_only_for_requests_it_forwards() {
    let exported = Exported::new();
    exported.serve(
        |builder| builder.trusted_proxies(["10.0.0.0/8"]),
        vec![request("GET", "/users/7", "203.0.113.50:41000", &SPOOFED)],
    );
    assert_identity(
        &exported.span(),
        ("203.0.113.50", Some(41000)),
        ("203.0.113.50", 41000),
        "http",
        ("api.example", 8080),
    );
    exported.assert_metrics_scheme("http");
}

#[test]
fn behind_trusted_proxies_the_client_is_the_first_untrusted_hop_of_x_forwarded_for() {
    let exported = Exported::new();
    exported.serve(
        |builder| builder.trusted_proxies(["10.0.0.0/8", "192.0.2.7"]),
        vec![request(
            "GET",
            "/users/7",
            "10.0.0.1:5000",
            &[
                // 6.6.6.6 is what the client claimed; 198.51.100.7 is who connected to the
                // edge proxy 192.0.2.7, which connected to 10.0.0.2, which connected to us.
                ("x-forwarded-for", "6.6.6.6, 198.51.100.7"),
                ("x-forwarded-for", "192.0.2.7, 10.0.0.2"),
                ("x-forwarded-proto", "https"),
                ("x-forwarded-host", "shop.example:8443"),
                ("forwarded", "for=1.2.3.4;proto=http"),
            ],
        )],
    );
    assert_identity(
        &exported.span(),
        ("198.51.100.7", None),
        ("10.0.0.1", 5000),
        "https",
        ("shop.example", 8443),
    );
    exported.assert_metrics_scheme("https");
}

#[test]
fn the_trusted_proxies_and_their_headers_come_from_the_environment() {
    set_env(&[
        ("OTEL_MONITOR_TRUSTED_PROXIES", "not-an-address, fd00::/8"),
        ("OTEL_MONITOR_FORWARDED_HEADERS", "forwarded"),
    ]);
    let exported = Exported::new();
    exported.serve(
        |builder| builder,
        vec![request(
            "GET",
            "/users/7",
            "[fd00::1]:5000",
            &[
                ("x-forwarded-for", "1.2.3.4"),
                (
                    "forwarded",
                    r#"for="[2001:db8:cafe::17]:4711";proto=https;host="shop.example:8443", for="[fd00::2]""#,
                ),
            ],
        )],
    );
    assert_identity(
        &exported.span(),
        ("2001:db8:cafe::17", Some(4711)),
        ("fd00::1", 5000),
        "https",
        ("shop.example", 8443),
    );
    exported.assert_metrics_scheme("https");
}

#[test]
fn forwarded_gives_a_quoted_ipv6_client_with_its_port_and_an_ipv4_one_with_its_own() {
    let exported = Exported::new();
    exported.serve(
        |builder| {
            builder
                .trusted_proxies(["10.0.0.1"])
                .forwarded_headers(ForwardedHeaders::Forwarded)
        },
        vec![
            request(
                "GET",
                "/users/7",
                "10.0.0.1:5000",
                &[("forwarded", r#"for="[2001:db8::9]:61000";proto=https"#)],
            ),
            request(
                "GET",
                "/users/8",
                "10.0.0.1:5001",
                &[("forwarded", r#"for="198.51.100.7:4711";host=shop.example"#)],
            ),
        ],
    );
    let spans = exported.spans();
    let by_path = |path: &str| {
        spans
            .iter()
            .find(|span| attribute(span, "url.path") == string(path))
            .unwrap()
    };
    assert_identity(
        by_path("/users/7"),
        ("2001:db8::9", Some(61000)),
        ("10.0.0.1", 5000),
        "https",
        ("api.example", 8080),
    );
    let ipv4 = by_path("/users/8");
    assert_eq!(attribute(ipv4, "client.address"), string("198.51.100.7"));
    assert_eq!(attribute(ipv4, "client.port"), Some(Value::I64(4711)));
    assert_eq!(attribute(ipv4, "server.address"), string("shop.example"));
    // No port in the forwarded host: none recorded, rather than the Host header's.
    assert_eq!(attribute(ipv4, "server.port"), None);
}

#[test]
fn malformed_forwarding_headers_are_ignored() {
    let exported = Exported::new();
    let malformed = [
        ("x-forwarded-for", "not-an-ip"),
        ("x-forwarded-proto", "gopher"),
        ("x-forwarded-host", "bad host:99999"),
    ];
    exported.serve(
        |builder| builder.trusted_proxies(["10.0.0.0/8"]),
        vec![request("GET", "/users/7", "10.0.0.1:5000", &malformed)],
    );
    assert_identity(
        &exported.span(),
        ("10.0.0.1", Some(5000)),
        ("10.0.0.1", 5000),
        "http",
        ("api.example", 8080),
    );
    exported.assert_metrics_scheme("http");

    let exported = Exported::new();
    exported.serve(
        |builder| {
            builder
                .trusted_proxies(["10.0.0.0/8"])
                .forwarded_headers(ForwardedHeaders::Forwarded)
        },
        vec![request(
            "GET",
            "/users/7",
            "10.0.0.1:5000",
            &[("forwarded", "for=2001:db8::1;proto=https")],
        )],
    );
    assert_identity(
        &exported.span(),
        ("10.0.0.1", Some(5000)),
        ("10.0.0.1", 5000),
        "http",
        ("api.example", 8080),
    );
}

#[test]
fn query_is_a_known_method_and_purge_is_not() {
    let exported = Exported::new();
    exported.serve(
        |builder| builder,
        vec![
            request("QUERY", "/search", "203.0.113.50:41000", &[]),
            request("PURGE", "/search", "203.0.113.50:41000", &[]),
        ],
    );
    let spans = exported.spans();
    let names: Vec<&str> = spans.iter().map(|span| span.name.as_ref()).collect();
    assert_eq!(names, ["QUERY /search", "HTTP /search"]);
    assert_eq!(
        attribute(&spans[0], "http.request.method"),
        Some(Value::from("QUERY"))
    );
    assert_eq!(attribute(&spans[0], "http.request.method_original"), None);
    assert_eq!(
        attribute(&spans[1], "http.request.method"),
        Some(Value::from("_OTHER"))
    );
    assert_eq!(
        attribute(&spans[1], "http.request.method_original"),
        string("PURGE")
    );
    let methods: Vec<bool> = ["QUERY", "_OTHER"]
        .iter()
        .map(|method| {
            exported
                .metric_points("http.server.request.duration")
                .iter()
                .any(|point| point.contains(&format!("http.request.method={method}")))
        })
        .collect();
    assert_eq!(methods, [true, true]);
}

/// The methods of the spans and of the duration metric's points, after a GET, a POST, a PURGE
/// and a lower-case `get`.
fn methods_recorded(
    configure: impl FnOnce(MonitorLayerBuilder) -> MonitorLayerBuilder,
) -> (Vec<String>, Vec<String>) {
    let exported = Exported::new();
    exported.serve(
        configure,
        ["GET", "POST", "PURGE", "get"]
            .into_iter()
            .map(|method| request(method, "/search", "203.0.113.50:41000", &[]))
            .collect(),
    );
    let spans = exported
        .spans()
        .iter()
        .map(|span| {
            let method = attribute(span, "http.request.method").map(|method| method.to_string());
            format!("{}: {}", span.name, method.unwrap_or_default())
        })
        .collect();
    let mut metrics: Vec<String> = exported
        .metric_points("http.server.request.duration")
        .into_iter()
        .flatten()
        .filter(|attribute| attribute.starts_with("http.request.method="))
        .collect();
    metrics.dedup();
    (spans, metrics)
}

#[test]
fn otel_instrumentation_http_known_methods_replaces_the_known_methods() {
    set_env(&[("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "GET, PURGE,get")]);
    let (spans, metrics) = methods_recorded(|builder| builder);
    assert_eq!(
        spans,
        [
            "GET /search: GET",
            "HTTP /search: _OTHER",
            "PURGE /search: PURGE",
            "get /search: get",
        ]
    );
    assert_eq!(
        metrics,
        [
            "http.request.method=GET",
            "http.request.method=PURGE",
            "http.request.method=_OTHER",
            "http.request.method=get",
        ]
    );
}

#[test]
fn the_builders_known_methods_override_the_variable() {
    set_env(&[("OTEL_INSTRUMENTATION_HTTP_KNOWN_METHODS", "GET")]);
    let (spans, _) = methods_recorded(|builder| builder.known_methods(["POST"]));
    assert_eq!(
        spans,
        [
            "HTTP /search: _OTHER",
            "POST /search: POST",
            "HTTP /search: _OTHER",
            "HTTP /search: _OTHER",
        ]
    );
}

/// A sampler that keeps what it was shown and drops the requests of a health checker.
#[derive(Debug, Clone, Default)]
struct HealthCheckDropper {
    seen: Arc<Mutex<Vec<Vec<KeyValue>>>>,
}

impl ShouldSample for HealthCheckDropper {
    fn should_sample(
        &self,
        _parent: Option<&Context>,
        _trace_id: TraceId,
        _name: &str,
        _kind: &SpanKind,
        attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        self.seen.lock().unwrap().push(attributes.to_vec());
        let health_check = attributes.iter().any(|kv| {
            kv.key.as_str() == "user_agent.original" && kv.value.as_str() == "kube-probe/1.29"
        });
        SamplingResult {
            decision: if health_check {
                SamplingDecision::Drop
            } else {
                SamplingDecision::RecordAndSample
            },
            attributes: Vec::new(),
            trace_state: TraceState::default(),
        }
    }
}

#[test]
fn a_sampler_sees_the_sampling_relevant_attributes_when_the_span_starts() {
    let sampler = HealthCheckDropper::default();
    let exported = Exported::sampled_by(sampler.clone());
    exported.serve(
        |builder| {
            builder
                .trusted_proxies(["10.0.0.0/8"])
                .record_request_headers(["x-tenant"])
        },
        vec![
            request(
                "GET",
                "/users/7?page=2",
                "10.0.0.1:5000",
                &[
                    ("user-agent", "browser/1.0"),
                    ("x-tenant", "acme"),
                    ("x-forwarded-for", "198.51.100.7"),
                    ("x-forwarded-proto", "https"),
                ],
            ),
            request(
                "GET",
                "/users/7",
                "10.0.0.1:5000",
                &[("user-agent", "kube-probe/1.29")],
            ),
        ],
    );
    let seen = sampler.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    let shown = |key: &str| {
        seen[0]
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    };
    // The conventions' sampling-relevant attributes of an HTTP server span (v1.44.0).
    for (key, expected) in [
        ("client.address", Value::from("198.51.100.7")),
        ("http.request.method", Value::from("GET")),
        ("server.address", Value::from("api.example")),
        ("server.port", Value::I64(8080)),
        ("url.path", Value::from("/users/7")),
        ("url.query", Value::from("page=2")),
        ("url.scheme", Value::from("https")),
        ("user_agent.original", Value::from("browser/1.0")),
        (
            "http.request.header.x-tenant",
            Value::Array(opentelemetry::Array::String(vec!["acme".into()])),
        ),
    ] {
        assert_eq!(
            shown(key).map(|value| value.to_string()),
            Some(expected.to_string()),
            "{key}"
        );
    }
    // The health check was dropped on what the sampler saw; the other request was kept.
    let spans = exported.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(attribute(&spans[0], "url.query"), string("page=2"));
}

const DEADLINE: Duration = Duration::from_secs(15);

/// The example service behind rotel: a client's `X-Forwarded-For` is not believed by default,
/// and is once `OTEL_MONITOR_TRUSTED_PROXIES` trusts the peer (here the test itself, 127.0.0.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_service_believes_x_forwarded_for_only_from_a_trusted_proxy() {
    let receiver = OtlpReceiver::start().await;
    let rotel = Rotel::start_forwarding_to(&receiver.grpc_endpoint());
    let endpoint = rotel.endpoint("http/protobuf");
    let forwarded = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
    ];
    for (service_name, trusted) in [("untrusting", ""), ("trusting", "127.0.0.1")] {
        let service = ExampleService::start(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_SERVICE_NAME", service_name),
            ("OTEL_MONITOR_TRUSTED_PROXIES", trusted),
        ]);
        http_get(&service.url("/users/5"), &forwarded).await;
        let exit = service.stop();
        assert!(exit.status.success(), "{exit:?}");
    }

    let spans = receiver
        .wait_for_spans("both services' request spans", DEADLINE, |spans| {
            ["untrusting", "trusting"].iter().all(|name| {
                spans.iter().any(|span| {
                    span.resource_str("service.name") == Some(*name)
                        && span.span.name == "GET /users/{id}"
                })
            })
        })
        .await;
    let span_of = |service: &str| {
        spans
            .iter()
            .find(|span| {
                span.resource_str("service.name") == Some(service)
                    && span.span.name == "GET /users/{id}"
            })
            .unwrap()
    };
    let untrusting = span_of("untrusting");
    assert_eq!(untrusting.attr_str("client.address"), Some("127.0.0.1"));
    assert_eq!(
        untrusting.attr_str("network.peer.address"),
        Some("127.0.0.1")
    );
    assert_eq!(untrusting.attr_str("url.scheme"), Some("http"));
    let trusting = span_of("trusting");
    assert_eq!(trusting.attr_str("client.address"), Some("203.0.113.9"));
    assert_eq!(trusting.attr_str("network.peer.address"), Some("127.0.0.1"));
    assert_eq!(trusting.attr_str("url.scheme"), Some("https"));
}
