//! The AWS X-Ray route, through rotel (a real collector, but not the otelcol-contrib that
//! `collector/aws.yaml` configures): the example service exports OTLP/HTTP to rotel through a tap,
//! and rotel's X-Ray exporter sends `PutTraceSegments` to an X-Ray API (here moto's, on
//! 127.0.0.1, through a second tap); the test reads the traces back with `GetTraceSummaries` and
//! `BatchGetTraces`, as an X-Ray user would see them.
//!
//! Two parts, kept apart:
//! - what the crate sends, read at the first tap as rotel received it, asserted against the
//!   semantic conventions v1.44.0 (tests/support/tap.rs): that is the product's behaviour;
//! - what rotel's X-Ray exporter makes of it, asserted only where the README's AWS row promises
//!   something: X-Ray traces, that is each span a segment of the X-Ray trace made from its OTel
//!   trace, under its parent, with its times. Those assertions are rotel's behaviour, marked so.
//!   The README's "segments named by `service.name`" is otelcol-contrib's `awsxray` exporter
//!   (`collector/aws.yaml`), which is not run here: rotel names segments after the span, so
//!   segment names are not asserted. Neither are rotel's fault flags (it marks no 5xx as a fault)
//!   nor its `http` block, which the README does not describe.
//!
//! Rotel 0.0.1a15's (its `--version` says 0.0.1-alpha10) X-Ray exporter sends traces only, so metrics and logs are routed to its
//! `blackhole` exporter, as in tests/datadog.rs. Its type is `aws-xray` for `--exporter` but
//! `xray` in `--exporters NAME:TYPE` (`aws-xray` there fails with "unknown exporter type").
//! Rotel labels its plain JSON body `Content-Encoding: gzip`, which moto believes and fails on:
//! the tap in between forwards bodies unencoded (tests/support/tap.rs).

mod support;

use std::time::Duration;

use http::StatusCode;
use serde_json::{Value, json};
use support::moto::Moto;
use support::tap::{self, Tap};
use support::{ReceivedSpan, Rotel};

const DEADLINE: Duration = Duration::from_secs(20);

/// An X-Ray trace id from a 128-bit OTel trace id in hex: version 1, then the first 8 hex digits
/// (in X-Ray's own ids, the start time in epoch seconds), then the remaining 24.
fn xray_trace_id(otel_trace_id: &str) -> String {
    assert_eq!(otel_trace_id.len(), 32, "not a trace id: {otel_trace_id:?}");
    format!("1-{}-{}", &otel_trace_id[..8], &otel_trace_id[8..])
}

/// Seconds since the epoch, as X-Ray writes times, of OTel nanoseconds.
fn seconds(unix_nano: u64) -> f64 {
    unix_nano as f64 / 1e9
}

/// One segment document as `BatchGetTraces` returned it, with the id of its trace.
#[derive(Debug)]
struct Segment {
    trace_id: String,
    document: Value,
}

impl Segment {
    fn id(&self) -> &str {
        self.document["id"].as_str().unwrap_or_default()
    }
}

/// The segment (or subsegment) made from `otel`, found by its id: the OTel span id.
fn segment_of<'a>(segments: &'a [Segment], otel: &ReceivedSpan) -> &'a Segment {
    let id = otel.span_id_hex();
    segments
        .iter()
        .find(|segment| segment.id() == id)
        .unwrap_or_else(|| panic!("no segment for {:?} in {segments:#?}", otel.span.name))
}

/// Polls `GetTraceSummaries` then `BatchGetTraces` until there is a segment for each of `spans`.
async fn wait_for_segments(moto: &Moto, tap: &Tap, spans: &[&ReceivedSpan]) -> Vec<Segment> {
    let ids: Vec<String> = spans.iter().map(|span| span.span_id_hex()).collect();
    let what = format!("segments {ids:?}");
    let ids = &ids;
    support::wait_until(&what, DEADLINE, || async move {
        // Finished traces that started in the last 10 minutes.
        let summaries = moto.trace_summaries(Duration::from_secs(600)).await;
        let trace_ids: Vec<String> = summaries
            .iter()
            .map(|summary| summary["Id"].as_str().expect("a summary Id").to_owned())
            .collect();
        let segments: Vec<Segment> = if trace_ids.is_empty() {
            Vec::new()
        } else {
            moto.traces(&trace_ids)
                .await
                .into_iter()
                .flat_map(|(trace_id, documents)| {
                    documents.into_iter().map(move |document| Segment {
                        trace_id: trace_id.clone(),
                        document,
                    })
                })
                .collect()
        };
        if ids.iter().all(|id| segments.iter().any(|s| s.id() == id)) {
            Ok(segments)
        } else {
            Err(format!(
                "moto has {segments:#?}; the tap forwarded {:#?}",
                tap.exchanges()
            ))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_crate_sends_conventional_spans_and_rotel_makes_them_aws_xray_traces() {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let xray_tap = Tap::start(moto.endpoint()).await;
    // With `--exporters`, rotel reads each named exporter's options only from
    // `ROTEL_EXPORTER_<NAME>_<PARAM>`. It signs with SigV4 from the usual AWS variables.
    let rotel = Rotel::start_with_env_and_args(
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("ROTEL_EXPORTER_XRAY_REGION", "us-east-1"),
            ("ROTEL_EXPORTER_XRAY_CUSTOM_ENDPOINT", &xray_tap.endpoint()),
        ],
        &[
            "--exporters",
            "xray:xray,sink:blackhole",
            "--exporters-traces",
            "xray",
            "--exporters-metrics",
            "sink",
            "--exporters-logs",
            "sink",
        ],
    );
    let otlp_tap = Tap::start(rotel.http_endpoint()).await;
    let (service, port) = tap::start_example_service(&otlp_tap);

    tap::send_traffic(&service).await;

    // (a) The crate's part: what reached the collector follows the conventions.
    let sent = tap::the_crate_sent_conventional_spans(&otlp_tap, port, DEADLINE).await;

    // (b) Rotel's part, where the README promises it: "X-Ray traces". Each span is one segment
    // (or subsegment) of the X-Ray trace made from its OTel trace id, with the span's id, under
    // its parent, from its start to its end (rotel's mapping, in X-Ray's formats).
    let segments = wait_for_segments(&moto, &xray_tap, &sent.all()).await;
    assert_eq!(segments.len(), sent.all().len(), "{segments:#?}");
    for otel in sent.all() {
        let segment = segment_of(&segments, otel);
        let what = otel.attr_str("url.path").unwrap_or(&otel.span.name);
        let document = &segment.document;
        assert_eq!(
            segment.trace_id,
            xray_trace_id(&otel.trace_id_hex()),
            "{what}"
        );
        assert_eq!(document["trace_id"], json!(segment.trace_id), "{what}");
        let parent = otel.parent_span_id_hex();
        if parent.is_empty() {
            assert!(document.get("parent_id").is_none(), "{what}: {document:#}");
        } else {
            assert_eq!(document["parent_id"], json!(parent), "{what}");
        }
        // X-Ray times are epoch seconds as doubles: within 1 µs of the span's nanoseconds.
        for (field, nanos) in [
            ("start_time", otel.span.start_time_unix_nano),
            ("end_time", otel.span.end_time_unix_nano),
        ] {
            let time = document[field].as_f64().unwrap_or(f64::NAN);
            assert!(
                (time - seconds(nanos)).abs() < 1e-6,
                "{what}: {field} {time} for {nanos} ns"
            );
        }
    }
    // The caller's trace, as an X-Ray user looks it up: the `traceparent` trace id, split.
    assert_eq!(
        segment_of(&segments, &sent.user).trace_id,
        "1-4bf92f35-77b34da6a3ce929d0e0e4736"
    );

    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    // Metrics and logs went to the blackhole exporter: nothing was refused.
    assert!(!exit.output.contains("cannot export"), "{}", exit.output);
    // SIGTERM makes rotel flush; its stop waits (blocking) for it to exit.
    tokio::task::spawn_blocking(move || drop(rotel))
        .await
        .unwrap();

    // What rotel sent: PutTraceSegments (REST-JSON `POST /TraceSegments`), every segment
    // accepted by the X-Ray API.
    let requests = xray_tap.exchanges();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/TraceSegments"),
            "{request:#?}"
        );
        assert_eq!(request.upstream_status, StatusCode::OK, "{request:#?}");
        assert_eq!(
            serde_json::from_str::<Value>(&request.upstream_answer).unwrap(),
            json!({ "UnprocessedTraceSegments": [] }),
            "{request:#?}"
        );
    }
}
