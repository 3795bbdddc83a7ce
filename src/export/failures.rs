//! Exporters that say when they cannot deliver.
//!
//! When the collector is slow or gone, the SDK's batch processors drop what they cannot send and
//! the service goes on serving. What it must not do is stay silent, or print a wall of errors:
//! [`Reporting`] wraps an exporter, counts what is lost, warns once, then at most once a
//! minute with the count, and says when exports succeed again.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use opentelemetry::{
    KeyValue,
    metrics::{Counter, Meter},
};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    logs::{LogBatch, LogExporter},
    metrics::{Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
    trace::{SpanData, SpanExporter},
};
use opentelemetry_semantic_conventions::attribute::ERROR_TYPE;

/// How long a failing exporter stays quiet between two warnings.
const WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// The target of the warnings, for `RUST_LOG` (`otel_monitor::export=error` silences them).
pub(crate) const TARGET: &str = "otel_monitor::export";

/// An exporter whose failures are reported (see the module documentation).
#[derive(Debug)]
pub(crate) struct Reporting<E> {
    inner: E,
    report: FailureReport,
}

impl<E> Reporting<E> {
    pub(crate) fn new(inner: E, report: FailureReport) -> Self {
        Self { inner, report }
    }
}

/// Where a signal goes, and how its deliveries went so far.
#[derive(Debug)]
pub(crate) struct FailureReport {
    signal: &'static str,
    destination: String,
    /// `otel.sdk.exporter.span.exported`, when the items are spans.
    exported: Option<ExportedCounter>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct ExportedCounter {
    counter: Counter<u64>,
    success: [KeyValue; 1],
}

#[derive(Debug, Default)]
struct State {
    /// Items lost since the last warning.
    lost_since_warning: u64,
    /// Items lost since the last successful export.
    lost_since_success: u64,
    last_warning: Option<Instant>,
}

impl FailureReport {
    /// Reports failures of `signal` deliveries to `destination`.
    pub(crate) fn new(signal: &'static str, destination: String) -> Self {
        Self {
            signal,
            destination,
            exported: None,
            state: Mutex::default(),
        }
    }

    /// The signal whose deliveries this reports: `traces`, `metrics` or `logs`.
    pub(crate) fn signal(&self) -> &'static str {
        self.signal
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
            success: [KeyValue::new("otel.component.type", component_type)],
        });
        self
    }

    fn record(&self, items: u64, result: &OTelSdkResult) {
        if let Some(exported) = &self.exported {
            match result {
                Ok(()) => exported.counter.add(items, &exported.success),
                Err(error) => exported.counter.add(
                    items,
                    &[
                        exported.success[0].clone(),
                        KeyValue::new(ERROR_TYPE, error_type(error)),
                    ],
                ),
            }
        }

        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match result {
            Ok(()) if state.lost_since_success > 0 => {
                tracing::info!(
                    target: TARGET,
                    "exporting {} to {} again, after losing {} {}",
                    self.signal, self.destination, state.lost_since_success, self.unit(),
                );
                *state = State::default();
            }
            Ok(()) => {}
            Err(error) => {
                state.lost_since_success += items;
                state.lost_since_warning += items;
                let due = state
                    .last_warning
                    .is_none_or(|last| last.elapsed() >= WARNING_INTERVAL);
                if due {
                    tracing::warn!(
                        target: TARGET,
                        %error,
                        "cannot export {} to {} (requests are not affected): {} {} lost, next \
                         report in at most {}s",
                        self.signal, self.destination, state.lost_since_warning, self.unit(),
                        WARNING_INTERVAL.as_secs(),
                    );
                    state.last_warning = Some(Instant::now());
                    state.lost_since_warning = 0;
                }
            }
        }
    }

    fn unit(&self) -> &'static str {
        match self.signal {
            "traces" => "spans",
            "logs" => "log records",
            _ => "metric exports",
        }
    }
}

/// A low-cardinality name for an export error, for `error.type`.
fn error_type(error: &opentelemetry_sdk::error::OTelSdkError) -> &'static str {
    use opentelemetry_sdk::error::OTelSdkError;
    match error {
        OTelSdkError::AlreadyShutdown => "already_shutdown",
        OTelSdkError::Timeout(_) => "timeout",
        _ => "export_failed",
    }
}

impl<E: SpanExporter> SpanExporter for Reporting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let result = self.inner.export(batch).await;
        self.report.record(spans, &result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

impl<E: PushMetricExporter> PushMetricExporter for Reporting<E> {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        let result = self.inner.export(metrics).await;
        self.report.record(1, &result);
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
        self.report.record(records, &result);
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
