//! The incoming trace context, trusted and untrusted: a service continues the `traceparent`,
//! `tracestate` and `baggage` a client sends, unless it is a public endpoint
//! (`MonitorLayerBuilder::public_endpoint`, `OTEL_MONITOR_PUBLIC_ENDPOINT=true`), where each
//! request starts a new trace linked to the client's, and the client's baggage never reaches the
//! handler nor its downstream calls. In every mode a baggage beyond the W3C limits is ignored, and
//! no header, however malformed, makes anything panic.
//!
//! The handler here makes a "downstream call": it injects its context, as an instrumented HTTP
//! client would, into the headers it answers with, so a test reads what a downstream service
//! would receive.

mod support;

use std::{collections::HashMap, time::Duration};

use axum::{Router, body::Body, routing::get};
use http::{HeaderMap, HeaderValue, Request};
use http_body_util::BodyExt;
use opentelemetry::{
    Context,
    baggage::BaggageExt,
    propagation::{TextMapCompositePropagator, TextMapPropagator},
    trace::{SpanId, TraceContextExt, TraceFlags, TraceId, TracerProvider as _},
};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::{
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::{InMemorySpanExporter, SdkTracerProvider, SpanData},
};
use otel_monitor::MonitorLayer;
use proptest::{collection::vec, prelude::*, test_runner::TestRunner};
use support::{ExampleService, OtlpReceiver, Rotel, client::get as http_get, span_named};
use tower::ServiceExt as _;

const DEADLINE: Duration = Duration::from_secs(15);

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID: &str = "00f067aa0ba902b7";

/// The propagators `Telemetry` installs by default (`OTEL_PROPAGATORS=tracecontext,baggage`).
fn propagator() -> TextMapCompositePropagator {
    TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ])
}

/// What the handler saw and what its downstream call would carry.
#[derive(Debug, Default)]
struct Handler {
    /// The baggage of the handler's context, as `key=value` pairs.
    baggage: Vec<String>,
    /// The headers the handler's context injects into a downstream request.
    downstream: HashMap<String, String>,
}

/// A service behind `MonitorLayer` with an SDK tracer provider of the default sampler
/// (parent-based, always on), whose spans are kept in memory.
struct Service {
    spans: InMemorySpanExporter,
    _provider: SdkTracerProvider,
    router: Router,
}

impl Service {
    fn new(public: bool) -> Self {
        let spans = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let layer = MonitorLayer::builder()
            .tracer(provider.tracer("trace-context"))
            .propagator(propagator())
            .inject_trace_context(true)
            .public_endpoint(public)
            .build();
        let router = Router::new().route("/", get(handler)).layer(layer);
        Self {
            spans,
            _provider: provider,
            router,
        }
    }

    /// Sends a request with these headers; returns the response's headers and what the handler
    /// saw.
    async fn request(&self, headers: &[(&str, &[u8])]) -> (HeaderMap, Handler) {
        let mut request = Request::get("/");
        for (name, value) in headers {
            request = request.header(*name, HeaderValue::from_bytes(value).unwrap());
        }
        let response = self
            .router
            .clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let seen: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let handler = Handler {
            baggage: serde_json::from_value(seen["baggage"].clone()).unwrap(),
            downstream: serde_json::from_value(seen["downstream"].clone()).unwrap(),
        };
        (parts.headers, handler)
    }

    /// The one span ended since the last call.
    fn span(&self) -> SpanData {
        let mut spans = self.spans.get_finished_spans().unwrap();
        self.spans.reset();
        assert_eq!(spans.len(), 1, "{spans:#?}");
        spans.remove(0)
    }
}

/// Answers what its context holds: the baggage, and the headers a downstream call would carry.
async fn handler() -> String {
    let cx = Context::current();
    let baggage: Vec<String> = cx
        .baggage()
        .iter()
        .map(|(key, (value, _))| format!("{key}={value}"))
        .collect();
    let mut downstream = HashMap::new();
    propagator().inject_context(&cx, &mut downstream);
    serde_json::json!({ "baggage": baggage, "downstream": downstream }).to_string()
}

fn traceparent(flags: &str) -> String {
    format!("00-{TRACE_ID}-{SPAN_ID}-{flags}")
}

/// `traceparent` naming this span.
fn names(span: &SpanData) -> String {
    format!(
        "00-{}-{}-01",
        span.span_context.trace_id(),
        span.span_context.span_id()
    )
}

#[tokio::test]
async fn a_trusted_endpoint_continues_the_incoming_trace_and_baggage() {
    let service = Service::new(false);
    let incoming = traceparent("01");
    let (response, handler) = service
        .request(&[
            ("traceparent", incoming.as_bytes()),
            ("tracestate", b"vendor=client"),
            ("baggage", b"tenant=forged"),
        ])
        .await;
    let span = service.span();
    assert_eq!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id.to_string(), SPAN_ID);
    assert!(span.parent_span_is_remote);
    assert!(span.links.is_empty());
    assert_eq!(handler.baggage, ["tenant=forged"]);
    assert_eq!(handler.downstream["traceparent"], names(&span));
    assert_eq!(handler.downstream["tracestate"], "vendor=client");
    assert_eq!(handler.downstream["baggage"], "tenant=forged");
    assert_eq!(response["traceparent"], names(&span).as_str());
    assert!(!response.contains_key("tracestate"), "{response:?}");
}

#[tokio::test]
async fn a_public_endpoint_starts_a_new_sampled_trace_linked_to_the_incoming_one() {
    let service = Service::new(true);
    // `-00`: the client asks for its request not to be sampled.
    let incoming = traceparent("00");
    let (response, handler) = service
        .request(&[
            ("traceparent", incoming.as_bytes()),
            ("tracestate", b"vendor=client"),
            ("baggage", b"tenant=forged,user=admin"),
        ])
        .await;
    // Exported at all: the sampler decided afresh, and the in-memory exporter gets only sampled
    // spans.
    let span = service.span();
    assert!(span.span_context.is_sampled());
    assert_ne!(span.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(span.parent_span_id, SpanId::INVALID);
    assert!(!span.parent_span_is_remote);
    assert_eq!(span.span_context.trace_state().header(), "");

    assert_eq!(span.links.len(), 1, "{:?}", span.links);
    let link = &span.links.links[0];
    assert_eq!(link.span_context.trace_id().to_string(), TRACE_ID);
    assert_eq!(link.span_context.span_id().to_string(), SPAN_ID);
    assert_eq!(link.span_context.trace_flags(), TraceFlags::NOT_SAMPLED);
    assert!(link.span_context.is_remote());
    assert_eq!(
        link.span_context.trace_state().header(),
        "",
        "no tracestate"
    );
    assert!(link.attributes.is_empty());

    assert_eq!(handler.baggage, Vec::<String>::new());
    assert_eq!(handler.downstream["traceparent"], names(&span));
    assert_eq!(
        handler.downstream.get("tracestate").map(String::as_str),
        Some("")
    );
    assert_eq!(handler.downstream.get("baggage"), None);
    assert_eq!(response["traceparent"], names(&span).as_str());
    assert!(!response.contains_key("tracestate"), "{response:?}");
}

#[tokio::test]
async fn a_public_endpoint_without_a_valid_incoming_context_links_nothing() {
    let service = Service::new(true);
    let zero_trace = format!("00-{}-{SPAN_ID}-01", TraceId::INVALID);
    for headers in [
        &[][..],
        &[("traceparent", zero_trace.as_bytes())][..],
        &[("traceparent", b"00-not-a-traceparent-01".as_slice())][..],
        &[("baggage", b"tenant=forged".as_slice())][..],
    ] {
        let (response, handler) = service.request(headers).await;
        let span = service.span();
        assert!(span.links.is_empty(), "{headers:?}: {:?}", span.links);
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert!(handler.baggage.is_empty());
        assert_eq!(response["traceparent"], names(&span).as_str());
    }
}

#[tokio::test]
async fn baggage_beyond_the_w3c_limits_is_ignored_whole_in_every_mode() {
    let members = |count: usize| {
        (0..count)
            .map(|n| format!("k{n}=v"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let service = Service::new(false);
    // 180 list-members are read, and the SDK's propagator keeps the first 64 of them.
    let (_, handler) = service
        .request(&[("baggage", members(180).as_bytes())])
        .await;
    assert_eq!(handler.baggage.len(), 64);
    // 181 are not read at all.
    let (_, handler) = service
        .request(&[("baggage", members(181).as_bytes())])
        .await;
    assert_eq!(handler.baggage, Vec::<String>::new(), "181 members");
    // Nor are more than 8,192 bytes.
    let long = |bytes: usize| format!("k={}", "v".repeat(bytes - 2));
    let (_, handler) = service.request(&[("baggage", long(8192).as_bytes())]).await;
    assert_eq!(handler.baggage.len(), 1);
    let (_, handler) = service.request(&[("baggage", long(8193).as_bytes())]).await;
    assert_eq!(handler.baggage, Vec::<String>::new(), "8,193 bytes");
    service.spans.reset();

    let public = Service::new(true);
    for baggage in [members(3), members(181), long(8193)] {
        let (_, handler) = public.request(&[("baggage", baggage.as_bytes())]).await;
        assert_eq!(handler.baggage, Vec::<String>::new());
        assert_eq!(handler.downstream.get("baggage"), None);
    }
}

/// Header bytes of every kind: valid `traceparent`s of every flag, `key=value` lists, and
/// arbitrary bytes a header value can hold, with long runs of one byte.
fn header_bytes() -> BoxedStrategy<Vec<u8>> {
    let visible = vec(
        prop_oneof![
            3 => 0x20u8..0x7f,
            1 => Just(b'-'),
            1 => Just(b','),
            1 => Just(b'='),
            1 => Just(b'\t'),
            1 => 0x80u8..=0xff,
        ],
        0..600,
    );
    let valid = ("[0-9a-f]{2}", "[0-9a-f]{32}", "[0-9a-f]{16}", "[0-9a-f]{2}").prop_map(
        |(version, trace, span, flags)| format!("{version}-{trace}-{span}-{flags}").into_bytes(),
    );
    let many = (
        1..20_000usize,
        any::<u8>().prop_filter("visible", |b| (0x20..0x7f).contains(b)),
    )
        .prop_map(|(count, byte)| vec![byte; count]);
    // `key=value` lists, as valid `tracestate` and `baggage` are.
    let members =
        "[a-z]{1,8}=[a-z0-9]{1,8}(,[a-z]{1,8}=[a-z0-9]{1,8}){0,3}".prop_map(String::into_bytes);
    prop_oneof![3 => valid, 3 => members, 3 => visible, 1 => many].boxed()
}

#[test]
fn a_public_endpoint_takes_any_header_bytes_without_a_panic_and_never_continues_them() {
    let service = Service::new(true);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let headers = vec(
        (
            prop_oneof![Just("traceparent"), Just("tracestate"), Just("baggage")],
            header_bytes(),
        ),
        0..6,
    );
    TestRunner::default()
        .run(&headers, |headers| {
            let headers: Vec<(&str, &[u8])> = headers
                .iter()
                .map(|(name, value)| (*name, value.as_slice()))
                .collect();
            let (response, handler) = runtime.block_on(service.request(&headers));
            let span = service.span();

            // What the SDK's own propagator reads from the first traceparent, if the layer
            // reads it (512 bytes at most).
            let mut map = HeaderMap::new();
            let first = headers.iter().find(|(name, _)| *name == "traceparent");
            if let Some((_, value)) = first.filter(|(_, value)| value.len() <= 512) {
                map.insert("traceparent", HeaderValue::from_bytes(value).unwrap());
            }
            let incoming = TraceContextPropagator::new().extract(&HeaderExtractor(&map));
            let incoming = incoming.span().span_context().clone();

            prop_assert!(span.span_context.is_sampled());
            prop_assert_eq!(span.parent_span_id, SpanId::INVALID);
            prop_assert_ne!(span.span_context.trace_id(), incoming.trace_id());
            if incoming.is_valid() {
                prop_assert_eq!(span.links.len(), 1);
                let link = &span.links.links[0].span_context;
                prop_assert_eq!(link.trace_id(), incoming.trace_id());
                prop_assert_eq!(link.span_id(), incoming.span_id());
                prop_assert_eq!(link.trace_flags(), incoming.trace_flags());
                prop_assert_eq!(link.trace_state().header(), "");
            } else {
                prop_assert!(span.links.is_empty());
            }
            prop_assert!(handler.baggage.is_empty());
            prop_assert_eq!(handler.downstream.get("baggage"), None);
            prop_assert_eq!(&handler.downstream["traceparent"], &names(&span));
            prop_assert_eq!(response["traceparent"].to_str().unwrap(), names(&span));
            prop_assert!(!response.contains_key("tracestate"));
            Ok(())
        })
        .unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The example service, configured only by its environment, through a real collector: the
/// variable makes it a public endpoint, and the link arrives.
#[tokio::test]
async fn the_link_of_a_public_endpoint_arrives_at_the_collector() {
    let receiver = OtlpReceiver::start().await;
    let rotel = Rotel::start_forwarding_to(&receiver.grpc_endpoint());
    let endpoint = rotel.endpoint("http/protobuf");
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_MONITOR_PUBLIC_ENDPOINT", "true"),
    ]);

    let incoming = traceparent("00");
    http_get(
        &service.url("/users/5"),
        &[("traceparent", &incoming), ("baggage", "tenant=forged")],
    )
    .await;

    let spans = receiver
        .wait_for_spans("the request's span and its child", DEADLINE, |spans| {
            spans.len() >= 2
        })
        .await;
    let server = span_named(&spans, "GET /users/{id}");
    assert_ne!(server.trace_id_hex(), TRACE_ID);
    assert_eq!(server.parent_span_id_hex(), "", "a root span");
    let [link] = &server.span.links[..] else {
        panic!("one link: {:?}", server.span.links);
    };
    assert_eq!(hex(&link.trace_id), TRACE_ID);
    assert_eq!(hex(&link.span_id), SPAN_ID);
    assert_eq!(link.trace_state, "");
    // OTLP's flags: the W3C flags (not sampled) and "the linked span is remote" (bits 8 and 9).
    assert_eq!(link.flags, 0x300);
    let child = span_named(&spans, "load_user");
    assert_eq!(child.trace_id_hex(), server.trace_id_hex());
    assert_eq!(child.parent_span_id_hex(), server.span_id_hex());
}

/// A value that is neither true nor false is read as false, with a warning on the console: the
/// incoming trace is continued.
#[tokio::test]
async fn an_invalid_public_endpoint_variable_is_warned_about_and_read_as_false() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.http_endpoint();
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_MONITOR_PUBLIC_ENDPOINT", "yes"),
    ]);
    let incoming = traceparent("01");
    http_get(&service.url("/users/5"), &[("traceparent", &incoming)]).await;

    let spans = receiver
        .wait_for_spans("the request's span", DEADLINE, |spans| {
            spans.iter().any(|span| span.span.name == "GET /users/{id}")
        })
        .await;
    let server = span_named(&spans, "GET /users/{id}");
    assert_eq!(server.trace_id_hex(), TRACE_ID);
    assert_eq!(server.parent_span_id_hex(), SPAN_ID);
    assert!(server.span.links.is_empty());
    let output = service.output();
    assert!(
        output.contains(
            r#"OTEL_MONITOR_PUBLIC_ENDPOINT="yes" is neither true nor false: read as false"#
        ),
        "{output}"
    );
}
