//! Exporters that say when they cannot deliver.
//!
//! When the collector is slow or gone, the SDK's batch processors drop what they cannot send and
//! the service goes on serving. What it must not do is stay silent, or print a wall of errors:
//! a signal's [`FailureReport`] counts what is lost, warns once with the reason in words
//! (`certificate not trusted (unknown issuer)`, `connection refused`), then at most once a
//! minute with the count, and says when exports succeed again. A partial success (the collector
//! took the request but rejected some of its items) is reported the same way, on its own
//! schedule. The SDK's own per-batch error events are kept off the console (see
//! [`subscriber`](crate::subscriber)): this report speaks for them.

use std::{
    error::Error,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Meter},
};
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    logs::{LogBatch, LogExporter},
    metrics::{Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
};
use opentelemetry_semantic_conventions::attribute::ERROR_TYPE;

use super::destination::{Destination, SignalKind};

/// How long a failing exporter stays quiet between two warnings.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The target of the warnings, for `RUST_LOG` (`otel_monitor::export=error` silences them).
pub(crate) const TARGET: &str = "otel_monitor::export";

/// A stock exporter whose failures are reported (see the module documentation).
#[derive(Debug)]
pub(crate) struct Reporting<E> {
    inner: E,
    report: Arc<FailureReport>,
}

impl<E> Reporting<E> {
    pub(crate) fn new(inner: E, report: Arc<FailureReport>) -> Self {
        Self { inner, report }
    }

    fn record(&self, items: u64, result: &OTelSdkResult) {
        match result {
            Ok(()) => self.report.delivered(items, 0, ""),
            Err(error) => self.report.failed(items, error),
        }
    }
}

/// Where a signal goes, and how its deliveries went so far.
#[derive(Debug)]
pub(crate) struct FailureReport {
    signal: SignalKind,
    /// The endpoint, as it may be shown.
    destination: String,
    /// `otel.sdk.exporter.span.exported`, when the items are spans.
    exported: Option<ExportedCounter>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct ExportedCounter {
    counter: Counter<u64>,
    component: KeyValue,
}

#[derive(Debug, Default)]
struct State {
    /// Items lost since the last successful export.
    lost_since_success: u64,
    failed: Schedule,
    rejected: Schedule,
    /// Spans dropped for being too large to send (see [`FailureReport::too_large`]).
    too_large: Schedule,
    /// Why the last request failed, when the client said more than the exporter passed on.
    cause: Option<String>,
}

/// When one kind of trouble was last reported, and what was lost since.
#[derive(Debug, Default)]
struct Schedule {
    lost_since_warning: u64,
    last_warning: Option<Instant>,
}

impl Schedule {
    /// Adds `lost` items at `now`; `Some(count)` when a warning is due, with the count it
    /// reports.
    fn lose(&mut self, lost: u64, now: Instant) -> Option<u64> {
        self.lost_since_warning += lost;
        let due = self
            .last_warning
            .is_none_or(|last| now.saturating_duration_since(last) >= WARNING_INTERVAL);
        due.then(|| {
            self.last_warning = Some(now);
            std::mem::take(&mut self.lost_since_warning)
        })
    }
}

impl FailureReport {
    /// Reports the deliveries of a signal to `destination`.
    pub(crate) fn new(destination: &Destination) -> Self {
        Self {
            signal: destination.kind,
            destination: destination.shown_endpoint(),
            exported: None,
            state: Mutex::default(),
        }
    }

    /// Also counts the spans exported, and those lost with their `error.type`, in
    /// `otel.sdk.exporter.span.exported` as the SDK self-observability conventions name it.
    pub(crate) fn counting_spans(mut self, meter: &Meter, component_type: &'static str) -> Self {
        self.exported = Some(ExportedCounter {
            counter: meter
                .u64_counter("otel.sdk.exporter.span.exported")
                .with_description(
                    "The number of spans for which the export has finished, either successful or failed.",
                )
                .with_unit("{span}")
                .build(),
            component: KeyValue::new("otel.component.type", component_type),
        });
        self
    }

    /// The signal whose deliveries this reports.
    pub(crate) fn signal(&self) -> SignalKind {
        self.signal
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn count(&self, items: u64, error_type: Option<&'static str>) {
        if let (Some(exported), true) = (&self.exported, items > 0) {
            match error_type {
                None => exported
                    .counter
                    .add(items, std::slice::from_ref(&exported.component)),
                Some(error_type) => exported.counter.add(
                    items,
                    &[
                        exported.component.clone(),
                        KeyValue::new(ERROR_TYPE, error_type),
                    ],
                ),
            }
        }
    }

    /// Notes why a request got no answer (`Some`), or that it got one (`None`), for the report
    /// of the export it belonged to: only the last request of an export says why it failed.
    pub(crate) fn note_cause(&self, error: Option<&(dyn Error + 'static)>) {
        self.state().cause = error.map(|error| describe(&render_chain(error)));
    }

    /// The collector took an export of `items`, of which it `rejected` some, saying `message`.
    pub(crate) fn delivered(&self, items: u64, rejected: u64, message: &str) {
        self.delivered_at(items, rejected, message, Instant::now());
    }

    /// [`delivered`](Self::delivered), at `now` (the tests' clock).
    fn delivered_at(&self, items: u64, rejected: u64, message: &str, now: Instant) {
        self.count(items - rejected.min(items), None);
        self.count(rejected.min(items), Some("rejected"));
        let mut state = self.state();
        if rejected > 0 || !message.is_empty() {
            state.lost_since_success += rejected;
            if let Some(lost) = state.rejected.lose(rejected, now) {
                tracing::warn!(
                    target: TARGET,
                    rejected_spans = (self.signal == SignalKind::Traces).then_some(rejected),
                    "the collector at {} rejected part of a {} export: {message}; {lost} {} \
                     rejected, next report in at most {}s",
                    self.destination, self.signal.name(), self.unit(lost), WARNING_INTERVAL.as_secs(),
                );
            }
        } else if state.lost_since_success > 0 {
            tracing::info!(
                target: TARGET,
                "exporting {} to {} again, after losing {} {}",
                self.signal.name(), self.destination, state.lost_since_success,
                self.unit(state.lost_since_success),
            );
            *state = State::default();
        }
    }

    /// An export of `items` failed with `error`.
    pub(crate) fn failed(&self, items: u64, error: &OTelSdkError) {
        self.failed_at(items, error, Instant::now());
    }

    /// [`failed`](Self::failed), at `now` (the tests' clock).
    fn failed_at(&self, items: u64, error: &OTelSdkError, now: Instant) {
        self.count(items, Some(error_type(error)));
        let mut state = self.state();
        let reason = state
            .cause
            .take()
            .unwrap_or_else(|| describe(&error.to_string()));
        state.lost_since_success += items;
        if let Some(lost) = state.failed.lose(items, now) {
            tracing::warn!(
                target: TARGET,
                "cannot export {} to {} (requests are not affected): {reason}; {lost} {} lost, \
                 next report in at most {}s",
                self.signal.name(), self.destination, self.unit(lost), WARNING_INTERVAL.as_secs(),
            );
        }
    }

    /// A span named `name` was dropped: a request holding it alone would be `size` bytes, over
    /// the `limit` a request may be. Counted with `error.type=too_large` (a constant: the span
    /// and its size are in the warning, not in the metric); warned at once, then at most once a
    /// minute with the count since. The exports go on, so it is not a loss "since the last
    /// success".
    pub(crate) fn too_large(&self, name: &str, size: usize, limit: usize) {
        self.too_large_at(name, size, limit, Instant::now());
    }

    /// [`too_large`](Self::too_large), at `now` (the tests' clock).
    fn too_large_at(&self, name: &str, size: usize, limit: usize, now: Instant) {
        self.count(1, Some(TOO_LARGE));
        if let Some(lost) = self.state().too_large.lose(1, now) {
            tracing::warn!(
                target: TARGET,
                "a span too large to export was dropped: {name:?} makes a request of {size} \
                 bytes, over the {limit} bytes a collector accepts; {lost} {} dropped as too \
                 large, next report in at most {}s",
                self.unit(lost), WARNING_INTERVAL.as_secs(),
            );
        }
    }

    /// What `count` items of this signal are called: `1 span`, `3 log records`.
    fn unit(&self, count: u64) -> &'static str {
        match (self.signal, count == 1) {
            (SignalKind::Traces, true) => "span",
            (SignalKind::Traces, false) => "spans",
            (SignalKind::Logs, true) => "log record",
            (SignalKind::Logs, false) => "log records",
            (SignalKind::Metrics, true) => "metric export",
            (SignalKind::Metrics, false) => "metric exports",
        }
    }
}

/// The `error.type` of a span dropped because it cannot fit in any request: what a receiver
/// would answer for it (gRPC RESOURCE_EXHAUSTED "message larger than max", HTTP 413 Content Too
/// Large), said in the terms of the other values here.
pub(crate) const TOO_LARGE: &str = "too_large";

/// A low-cardinality name for an export error, for `error.type`.
fn error_type(error: &OTelSdkError) -> &'static str {
    match error {
        OTelSdkError::AlreadyShutdown => "already_shutdown",
        OTelSdkError::Timeout(_) => "timeout",
        _ => "export_failed",
    }
}

/// An error and its sources, joined by `: `. A reqwest error's own text names the URL, which
/// can carry credentials: its sources say what went wrong without it.
pub(crate) fn render_chain(error: &(dyn Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(error);
    while let Some(error) = next {
        if error
            .downcast_ref::<reqwest::Error>()
            .is_none_or(|error| error.source().is_none())
        {
            parts.push(error.to_string());
        }
        next = error.source();
    }
    parts.join(": ")
}

/// The reason of a failure in words, from what the transports say (rustls's and the OS's own
/// messages, found in the error text of both the stock and the direct exporters).
pub(crate) fn describe(text: &str) -> String {
    const REASONS: [(&str, &str); 8] = [
        (
            "invalid peer certificate: UnknownIssuer",
            "certificate not trusted (unknown issuer)",
        ),
        ("certificate expired", "certificate expired"),
        (
            "received fatal alert: CertificateRequired",
            "client certificate required by the collector (mutual TLS), none configured",
        ),
        (
            "received fatal alert: BadCertificate",
            "client certificate refused by the collector",
        ),
        (
            "received fatal alert: UnknownCA",
            "client certificate refused by the collector (unknown issuer)",
        ),
        (
            "received fatal alert",
            "TLS handshake refused by the collector",
        ),
        (
            "received corrupt message",
            "the endpoint does not speak TLS",
        ),
        ("Connection refused", "connection refused"),
    ];
    // rustls names the host and the names the certificate holds: worth showing as it says them.
    if let Some(start) = text.find("certificate not valid for name") {
        return format!("hostname mismatch: {}", &text[start..]);
    }
    REASONS
        .iter()
        .find(|(found, _)| text.contains(found))
        .map_or_else(|| text.to_owned(), |(_, reason)| (*reason).to_owned())
}

impl<E: PushMetricExporter> PushMetricExporter for Reporting<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.record(1, &result);
        result
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

impl<E: LogExporter> LogExporter for Reporting<E> {
    async fn export(&self, batch: LogBatch<'_>) -> OTelSdkResult {
        let records = batch.iter().count() as u64;
        let result = self.inner.export(batch).await;
        self.record(records, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn event_enabled(
        &self,
        level: opentelemetry::logs::Severity,
        target: &str,
        name: Option<&str>,
    ) -> bool {
        self.inner.event_enabled(level, target, name)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
        time::{Duration, Instant},
    };

    use opentelemetry_sdk::error::OTelSdkError;

    use super::{FailureReport, describe};
    use crate::{
        config::{OtlpProtocol, Warnings},
        export::{
            destination::{Destination, SignalKind},
            tls::TlsOverrides,
        },
    };

    /// The report of `kind` to `https://collector:4318`.
    fn report(kind: SignalKind) -> FailureReport {
        let env = |name: &str| {
            (name == "OTEL_EXPORTER_OTLP_ENDPOINT").then(|| "https://collector:4318".to_owned())
        };
        let destination = Destination::resolve(
            kind,
            OtlpProtocol::HttpProtobuf,
            &TlsOverrides::default(),
            &env,
            &mut Warnings::default(),
        )
        .unwrap();
        FailureReport::new(&destination)
    }

    /// The console lines (level, target, message) `steps` print.
    fn lines(steps: impl FnOnce()) -> Vec<String> {
        #[derive(Clone, Default)]
        struct Console(Arc<Mutex<Vec<u8>>>);
        impl io::Write for Console {
            fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let console = Console::default();
        let writer = console.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, steps);
        let text = String::from_utf8(console.0.lock().unwrap().clone()).unwrap();
        text.lines().map(|line| line.trim().to_owned()).collect()
    }

    fn refused() -> OTelSdkError {
        OTelSdkError::InternalFailure("tcp connect error: Connection refused (os error 111)".into())
    }

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_failing_signal_warns_at_most_once_a_minute_with_the_count_lost_since_the_last_warning() {
        let traces = report(SignalKind::Traces);
        let start = Instant::now();
        let console = lines(|| {
            traces.failed_at(100, &refused(), start);
            // Within the minute: counted, not shown.
            traces.failed_at(150, &refused(), start + 30 * SECOND);
            traces.failed_at(4, &refused(), start + 59 * SECOND);
            // A minute after the first warning: the second, with what was lost since.
            traces.failed_at(6, &refused(), start + 60 * SECOND);
            traces.failed_at(7, &refused(), start + 119 * SECOND);
            traces.failed_at(1, &refused(), start + 120 * SECOND);
        });
        assert_eq!(
            console,
            [
                "WARN otel_monitor::export: cannot export traces to https://collector:4318/v1/traces \
                 (requests are not affected): connection refused; 100 spans lost, next report in at \
                 most 60s",
                "WARN otel_monitor::export: cannot export traces to https://collector:4318/v1/traces \
                 (requests are not affected): connection refused; 160 spans lost, next report in at \
                 most 60s",
                "WARN otel_monitor::export: cannot export traces to https://collector:4318/v1/traces \
                 (requests are not affected): connection refused; 8 spans lost, next report in at \
                 most 60s",
            ]
        );
    }

    #[test]
    fn exports_that_work_again_are_reported_once_with_everything_lost_since_the_last_success() {
        let logs = report(SignalKind::Logs);
        let start = Instant::now();
        let console = lines(|| {
            // A success with nothing lost before says nothing.
            logs.delivered_at(5, 0, "", start);
            logs.failed_at(3, &refused(), start + SECOND);
            logs.failed_at(2, &refused(), start + 2 * SECOND);
            logs.delivered_at(5, 0, "", start + 3 * SECOND);
            logs.delivered_at(5, 0, "", start + 4 * SECOND);
            // Trouble again after the recovery: a new warning at once, the minute starts anew.
            logs.failed_at(1, &refused(), start + 5 * SECOND);
        });
        assert_eq!(
            console,
            [
                "WARN otel_monitor::export: cannot export logs to https://collector:4318/v1/logs \
                 (requests are not affected): connection refused; 3 log records lost, next report \
                 in at most 60s",
                "INFO otel_monitor::export: exporting logs to https://collector:4318/v1/logs again, \
                 after losing 5 log records",
                "WARN otel_monitor::export: cannot export logs to https://collector:4318/v1/logs \
                 (requests are not affected): connection refused; 1 log record lost, next report \
                 in at most 60s",
            ]
        );
    }

    #[test]
    fn each_kind_of_trouble_and_each_signal_has_its_own_minute() {
        let traces = report(SignalKind::Traces);
        let metrics = report(SignalKind::Metrics);
        let start = Instant::now();
        let console = lines(|| {
            traces.failed_at(10, &refused(), start);
            // Rejected items are another kind of trouble: warned at once, then once a minute.
            traces.delivered_at(10, 2, "span too large", start + SECOND);
            traces.delivered_at(10, 3, "span too large", start + 2 * SECOND);
            // Another signal: warned at once too.
            metrics.failed_at(1, &refused(), start + 3 * SECOND);
            traces.failed_at(10, &refused(), start + 4 * SECOND);
            traces.delivered_at(10, 1, "span too large", start + 61 * SECOND);
        });
        let messages: Vec<&str> = console
            .iter()
            .map(|line| line.split_once("otel_monitor::export: ").unwrap().1)
            .collect();
        assert_eq!(
            messages,
            [
                "cannot export traces to https://collector:4318/v1/traces (requests are not \
                 affected): connection refused; 10 spans lost, next report in at most 60s",
                "the collector at https://collector:4318/v1/traces rejected part of a traces \
                 export: span too large; 2 spans rejected, next report in at most 60s \
                 rejected_spans=2",
                "cannot export metrics to https://collector:4318/v1/metrics (requests are not \
                 affected): connection refused; 1 metric export lost, next report in at most 60s",
                "the collector at https://collector:4318/v1/traces rejected part of a traces \
                 export: span too large; 4 spans rejected, next report in at most 60s \
                 rejected_spans=1",
            ]
        );
    }

    #[test]
    fn a_span_too_large_to_send_is_warned_once_then_once_a_minute_and_is_no_failed_export() {
        let traces = report(SignalKind::Traces);
        let start = Instant::now();
        let limit = 4 << 20;
        let console = lines(|| {
            traces.too_large_at("GET /upload", 5_242_951, limit, start);
            traces.too_large_at("GET /upload", 5_000_000, limit, start + 30 * SECOND);
            traces.too_large_at("other", 4_200_000, limit, start + 40 * SECOND);
            // The exports around them succeed: nothing to say "again" about.
            traces.delivered_at(10, 0, "", start + 41 * SECOND);
            traces.too_large_at("GET /upload", 6_000_000, limit, start + 60 * SECOND);
        });
        let messages: Vec<&str> = console
            .iter()
            .map(|line| line.split_once("otel_monitor::export: ").unwrap().1)
            .collect();
        assert_eq!(
            messages,
            [
                "a span too large to export was dropped: \"GET /upload\" makes a request of \
                 5242951 bytes, over the 4194304 bytes a collector accepts; 1 span dropped as \
                 too large, next report in at most 60s",
                "a span too large to export was dropped: \"GET /upload\" makes a request of \
                 6000000 bytes, over the 4194304 bytes a collector accepts; 3 spans dropped as \
                 too large, next report in at most 60s",
            ]
        );
    }

    #[test]
    fn transport_failures_are_described_in_words() {
        let cases = [
            (
                "client error (Connect): invalid peer certificate: UnknownIssuer",
                "certificate not trusted (unknown issuer)",
            ),
            (
                "transport error: received fatal alert: CertificateRequired",
                "client certificate required by the collector (mutual TLS), none configured",
            ),
            (
                "tcp connect error: Connection refused (os error 111)",
                "connection refused",
            ),
            (
                "HTTP export failed with status code: 500",
                "HTTP export failed with status code: 500",
            ),
        ];
        for (text, reason) in cases {
            assert_eq!(describe(text), reason);
        }
        assert_eq!(
            describe(
                r#"invalid peer certificate: certificate not valid for name "localhost"; certificate is only valid for DnsName("otel.invalid")"#
            ),
            r#"hostname mismatch: certificate not valid for name "localhost"; certificate is only valid for DnsName("otel.invalid")"#
        );
    }
}
