//! The Datadog route, through rotel (a real collector, but not the otelcol-contrib that
//! `collector/datadog.yaml` configures): the example service exports OTLP/HTTP to rotel through a
//! tap, and rotel's `datadog` exporter posts the traces to a Datadog trace intake (here a test one
//! that decodes the protobuf `AgentPayload`).
//!
//! Two parts, kept apart:
//! - what the crate sends, read at the tap as rotel received it, asserted against the semantic
//!   conventions v1.44.0 (tests/support/tap.rs): that is the product's behaviour;
//! - what rotel's Datadog exporter makes of it, asserted only where the README's Datadog row
//!   promises something (service, resource, operation `http.server.request`, type `web`, errors
//!   on 5xx, `env` and `version` for unified service tagging). Each of those assertions is rotel's
//!   behaviour, marked so; otelcol-contrib's Datadog exporter, APM stats connector and the
//!   metrics and logs routes are configured in `collector/datadog.yaml` but not run here.
//!
//! Rotel 0.0.1a15's (its `--version` says 0.0.1-alpha10) Datadog exporter sends traces only, so metrics and logs are routed to
//! its `blackhole` exporter: a signal with no exporter at all would be refused and the service
//! would warn that it cannot export them.

mod support;

use std::time::Duration;

use http::StatusCode;
use support::tap::{self, Tap};
use support::{DatadogIntake, DatadogSpan, ReceivedSpan, Rotel};

const DEADLINE: Duration = Duration::from_secs(15);

/// Datadog's 64-bit id of an OTel span id (8 bytes, big-endian), or of the low half of a
/// 128-bit trace id.
fn datadog_id(otel_id_hex: &str) -> u64 {
    let low = &otel_id_hex[otel_id_hex.len().saturating_sub(16)..];
    u64::from_str_radix(low, 16).unwrap_or_else(|_| panic!("not a hex id: {otel_id_hex:?}"))
}

/// The Datadog span made from `otel`, found by its span id.
fn datadog_span<'a>(spans: &'a [DatadogSpan], otel: &ReceivedSpan) -> &'a DatadogSpan {
    let id = datadog_id(&otel.span_id_hex());
    spans
        .iter()
        .find(|span| span.span.span_id == id)
        .unwrap_or_else(|| panic!("no Datadog span for {:?} in {spans:#?}", otel.span.name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crate_sends_conventional_spans_and_rotel_shows_them_in_datadog_as_the_readme_says() {
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
    let tap = Tap::start(rotel.http_endpoint()).await;
    let (service, port) = tap::start_example_service(&tap);

    tap::send_traffic(&service).await;

    // (a) The crate's part: what reached the collector follows the conventions.
    let sent = tap::the_crate_sent_conventional_spans(&tap, port, DEADLINE).await;

    // (b) Rotel's part, where the README promises it.
    let spans = intake
        .wait_for_spans("a Datadog span for each span sent", DEADLINE, |spans| {
            sent.all().iter().all(|otel| {
                let id = datadog_id(&otel.span_id_hex());
                spans.iter().any(|span| span.span.span_id == id)
            })
        })
        .await;
    let server_spans = [
        (&sent.user, "GET /users/{id}", 0),
        (&sent.bad_request, "GET /users/{id}", 0),
        (&sent.error, "GET /error", 1),
    ];
    for (otel, resource, error) in server_spans {
        let span = datadog_span(&spans, otel);
        let what = otel.attr_str("url.path").unwrap_or_default();
        // README: "service `service.name`, resources `GET /users/{id}`, operation
        // `http.server.request`, type `web`, errors on 5xx" (rotel's mapping).
        assert_eq!(span.span.service, tap::SERVICE_NAME, "{what}");
        assert_eq!(span.span.resource, resource, "{what}");
        assert_eq!(span.span.name, "http.server.request", "{what}");
        assert_eq!(span.span.r#type, "web", "{what}");
        assert_eq!(span.span.error, error, "{what}: errors on 5xx only");
    }
    for otel in sent.all() {
        let span = datadog_span(&spans, otel);
        let what = &otel.span.name;
        // README: "`env` and `version` from `deployment.environment.name` and `service.version`
        // (unified service tagging)" (rotel's mapping: on every span).
        assert_eq!(span.meta("env"), Some("staging"), "{what}");
        assert_eq!(span.meta("version"), Some("1.2.3"), "{what}");
        // One APM trace per OTel trace, the handler's span under the request's (rotel's mapping,
        // Datadog's 64-bit ids: the low half of the trace id).
        assert_eq!(
            span.span.trace_id,
            datadog_id(&otel.trace_id_hex()),
            "{what}"
        );
        let parent = otel.parent_span_id_hex();
        let parent = if parent.is_empty() {
            0
        } else {
            datadog_id(&parent)
        };
        assert_eq!(span.span.parent_id, parent, "{what}");
    }

    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    // Metrics and logs went to the blackhole exporter: nothing was refused.
    assert!(!exit.output.contains("cannot export"), "{}", exit.output);
    // SIGTERM makes rotel flush; its stop waits (blocking) for it to exit.
    tokio::task::spawn_blocking(move || drop(rotel))
        .await
        .unwrap();

    // All rotel sent was traces, to the trace intake, with the API key, and all were accepted.
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
        assert_eq!(request.header("dd-api-key"), Some("dummy"));
    }
}
