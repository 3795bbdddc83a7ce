//! The Datadog route: the example service exports OTLP to rotel, whose `datadog` exporter posts
//! the traces to a Datadog trace intake (here a test one that decodes the protobuf
//! `AgentPayload`). What a Datadog user would see — service, resource, operation name, type,
//! error flag, status code, 64-bit ids, `env` and `version` — must come out right.
//!
//! Rotel 0.0.1-alpha10's Datadog exporter sends traces only, so metrics and logs are routed to
//! its `blackhole` exporter: a signal with no exporter at all would be refused (gRPC
//! UNIMPLEMENTED) and the service would warn that it cannot export them.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::{DatadogIntake, DatadogSpan, ExampleService, Rotel, client::get};

const DEADLINE: Duration = Duration::from_secs(15);

/// The W3C Trace Context example ids, sent as the incoming `traceparent` of `/users/42`, so the
/// ids that reach Datadog can be checked against known values.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_PARENT_ID: &str = "00f067aa0ba902b7";

/// The low 64 bits of a 128-bit trace id written in hex: Datadog's `trace_id`.
fn low_64_bits(trace_id_hex: &str) -> u64 {
    assert_eq!(
        trace_id_hex.len(),
        32,
        "not a 128-bit trace id: {trace_id_hex:?}"
    );
    u64::from_str_radix(&trace_id_hex[16..], 16).expect("a hex trace id")
}

fn find<'a>(spans: &'a [DatadogSpan], resource: &str) -> &'a DatadogSpan {
    spans
        .iter()
        .find(|span| span.span.resource == resource)
        .unwrap_or_else(|| panic!("no span with resource {resource:?} in {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_datadog_through_rotel_with_unified_service_tags() {
    let intake = DatadogIntake::start().await;
    // With `--exporters`, rotel reads each named exporter's options only from
    // `ROTEL_EXPORTER_<NAME>_<PARAM>`: `--datadog-exporter-*` flags are then ignored.
    let rotel = Rotel::start_with_env_and_args(
        &[
            ("ROTEL_EXPORTER_DD_API_KEY", "dummy"),
            ("ROTEL_EXPORTER_DD_CUSTOM_ENDPOINT", &intake.endpoint()),
        ],
        &[
            "--exporters",
            "dd:datadog,sink:blackhole",
            "--exporters-traces",
            "dd",
            "--exporters-metrics",
            "sink",
            "--exporters-logs",
            "sink",
        ],
    );
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &rotel.grpc_endpoint()),
        ("OTEL_SERVICE_NAME", "checkout"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=staging,service.version=1.2.3",
        ),
    ]);

    let traceparent = format!("00-{TRACE_ID}-{REMOTE_PARENT_ID}-01");
    let (status, _, _) = get(&service.url("/users/42"), &[("traceparent", &traceparent)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(&service.url("/error"), &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    let spans = intake
        .wait_for_spans(
            "the spans of GET /users/{id}, load_user and GET /error",
            DEADLINE,
            |spans| {
                ["GET /users/{id}", "load_user", "GET /error"]
                    .iter()
                    .all(|resource| spans.iter().any(|s| s.span.resource == *resource))
            },
        )
        .await;

    // The request span: resource = the OTel span name, operation name from the SERVER kind.
    let user = find(&spans, "GET /users/{id}");
    assert_eq!(user.span.service, "checkout");
    assert_eq!(user.span.name, "http.server.request");
    assert_eq!(user.span.r#type, "web");
    assert_eq!(user.span.error, 0);
    assert_eq!(user.metric("http.status_code"), Some(200.0));
    assert_eq!(user.meta("http.route"), Some("/users/{id}"));
    assert_eq!(user.meta("http.method"), Some("GET"));
    assert_eq!(user.meta("url.path"), Some("/users/42"));
    assert_eq!(user.meta("span.kind"), Some("server"));
    assert!(user.span.duration > 0, "{user:#?}");
    // 64-bit Datadog ids: the low half of the incoming trace id; the full one in the meta.
    assert_eq!(user.meta("otel.trace_id"), Some(TRACE_ID));
    assert_eq!(user.span.trace_id, low_64_bits(TRACE_ID));
    assert_eq!(
        user.span.parent_id,
        u64::from_str_radix(REMOTE_PARENT_ID, 16).unwrap()
    );
    assert_ne!(user.span.span_id, 0);

    // The handler's `#[instrument]`ed child span, in the same Datadog trace under the request.
    // Rotel names non-SERVER/CLIENT operations after the raw OTLP kind ("SPAN_KIND_INTERNAL")
    // with type "custom" (the Datadog Agent's OTLP ingest would say e.g. "internal").
    let child = find(&spans, "load_user");
    assert_eq!(child.span.service, "checkout");
    assert_eq!(child.span.name, "SPAN_KIND_INTERNAL");
    assert_eq!(child.span.r#type, "custom");
    assert_eq!(child.span.trace_id, user.span.trace_id);
    assert_eq!(child.span.parent_id, user.span.span_id);
    assert_eq!(child.meta("otel.trace_id"), Some(TRACE_ID));
    assert_eq!(
        child.meta("id"),
        Some("42"),
        "the span's fields become meta"
    );
    assert_eq!(child.span.error, 0);

    // The failed request: error flag from the OTel status Error, a root span of its own trace.
    let error = find(&spans, "GET /error");
    assert_eq!(error.span.service, "checkout");
    assert_eq!(error.span.name, "http.server.request");
    assert_eq!(error.span.r#type, "web");
    assert_eq!(error.span.error, 1);
    assert_eq!(error.metric("http.status_code"), Some(500.0));
    assert_eq!(error.meta("error.type"), Some("500"));
    assert_eq!(error.span.parent_id, 0, "a root span");
    let error_trace_id = error.meta("otel.trace_id").expect("the full trace id");
    assert_ne!(error_trace_id, TRACE_ID);
    assert_eq!(error.span.trace_id, low_64_bits(error_trace_id));

    for span in [user, child, error] {
        let what = &span.span.resource;
        // Unified service tagging: `env` comes from `deployment.environment.name`, on every span
        // and on the tracer payload, where Datadog reads it.
        assert_eq!(span.meta("env"), Some("staging"), "{what}");
        assert_eq!(span.tracer_env, "staging", "{what}");
        // `AgentPayload.env` is rotel's own `--environment` (default "dev"), not the service's.
        assert_eq!(span.agent_env, "dev", "{what}");
        // `version` comes from `service.version`: the deployment's `service.version=1.2.3` in
        // OTEL_RESOURCE_ATTRIBUTES wins over the example's `default_service_version`.
        // Rotel puts it on the spans only: `TracerPayload.appVersion` stays empty.
        assert_eq!(span.meta("version"), Some("1.2.3"), "{what}");
        assert_eq!(span.tracer_app_version, "", "{what}");
        assert_eq!(span.language_name, "rust", "{what}");
        // Sampling priority 1 (auto keep): the intake keeps the trace.
        assert_eq!(span.chunk_priority, 1, "{what}");
    }

    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    // Metrics and logs went to the blackhole exporter: nothing was refused.
    assert!(!exit.output.contains("cannot export"), "{}", exit.output);
    // SIGTERM makes rotel flush; its stop waits (blocking) for it to exit.
    tokio::task::spawn_blocking(move || drop(rotel))
        .await
        .unwrap();

    // All rotel sent was traces, to the v0.2 intake, gzip protobuf with the API key.
    let requests = intake.requests();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(
            (
                request.method.as_str(),
                request.path.as_str(),
                request.status
            ),
            ("POST", support::datadog_intake::TRACES_PATH, StatusCode::OK),
            "{request:#?}"
        );
        assert_eq!(request.header("content-encoding"), Some("gzip"));
        assert_eq!(request.header("dd-api-key"), Some("dummy"));
    }
}
