//! The `tracing` subscriber [`Telemetry`](crate::Telemetry) installs: what `tracing` events and
//! spans become.
//!
//! - a console line per event, `time level target: message fields trace_id=...`, filtered by
//!   `RUST_LOG` (default `info`), written to standard output off the calling thread
//!   ([`Console`]);
//! - each event as an OpenTelemetry log record (opentelemetry-appender-tracing), which the SDK
//!   ties to the current trace and span;
//! - each span as an OpenTelemetry span (tracing-opentelemetry), so `#[instrument]`ed functions
//!   of a handler nest under the request span.
//!
//! The exporters' own machinery (HTTP and gRPC clients, the SDK) logs through `tracing` too: its
//! events and spans go to the console only, never back into the pipeline that exports them.
//! The SDK's and the OTLP exporter's own diagnostics (an `ExportError` line per failed batch)
//! stay off the console: the crate's [`FailureReport`](crate::export::failures::FailureReport)
//! says the same once a minute. `RUST_LOG=opentelemetry_sdk=debug` (or any directive naming an
//! `opentelemetry` crate) shows them all again. The SDK's once-only warnings that its queue is
//! full are kept: they are the one sign that spans are dropped before any export.
//!
//! When [`Telemetry`](crate::Telemetry) shuts down, the bridges stop first (a [`Gate`]), so no
//! event or span reaches a provider after it shut down.

use std::{
    fmt,
    io::IsTerminal,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
use opentelemetry_sdk::{logs::SdkLoggerProvider, trace::SdkTracerProvider};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::{
    EnvFilter, Layer,
    filter::filter_fn,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::{config::Warnings, console::Console, export::failures};

/// Targets (crates and modules) of the export machinery: turning their events and spans into
/// telemetry would make the pipeline feed on itself. The OTLP clients run partly on the
/// application's own Tokio threads (tonic's channel is a `tower::buffer` worker), where the SDK's
/// suppression of its own telemetry does not reach. Transport internals of the application's own
/// hyper server are left out of the pipeline by the same rule; they still reach the console.
const EXPORT_MACHINERY: [&str; 13] = [
    "opentelemetry",
    "opentelemetry_sdk",
    "opentelemetry-otlp",
    "opentelemetry_otlp",
    "opentelemetry_http",
    "h2",
    "hyper",
    "hyper_util",
    "tonic",
    "tower::buffer",
    "reqwest",
    "rustls",
    failures::TARGET,
];

fn is_export_machinery(target: &str) -> bool {
    EXPORT_MACHINERY.iter().any(|machinery| {
        target
            .strip_prefix(machinery)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    })
}

/// The SDK diagnostics shown on the console even when `RUST_LOG` does not ask for them: each
/// is logged at most once per processor (when dropping starts, and the total at shutdown).
const QUEUE_FULL_EVENTS: [&str; 4] = [
    "BatchSpanProcessor.SpanDroppingStarted",
    "BatchSpanProcessor.SpansDropped",
    "BatchLogProcessor.LogDroppingStarted",
    "BatchLogProcessor.LogsDropped",
];

/// Whether an event is one of OpenTelemetry's own diagnostics, kept off the console by default.
fn is_sdk_diagnostic(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target().starts_with("opentelemetry") && !QUEUE_FULL_EVENTS.contains(&metadata.name())
}

/// Whether the bridges still pass events and spans to the providers; closed at shutdown.
#[derive(Debug, Clone)]
pub(crate) struct Gate(Arc<AtomicBool>);

impl Default for Gate {
    fn default() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

impl Gate {
    pub(crate) fn close(&self) {
        self.0.store(false, Ordering::Release);
    }

    fn is_open(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// The `RUST_LOG` filter, `info` when unset; an invalid one is `info` too, with a warning.
fn env_filter(rust_log: &str, warnings: &mut Warnings) -> (EnvFilter, bool) {
    let names_sdk = rust_log.contains("opentelemetry");
    if rust_log.trim().is_empty() {
        return (EnvFilter::new("info"), names_sdk);
    }
    match EnvFilter::try_new(rust_log) {
        Ok(filter) => (filter, names_sdk),
        Err(error) => {
            warnings.push(format!(
                "RUST_LOG={rust_log:?} is not a valid filter ({error}): using info"
            ));
            (EnvFilter::new("info"), false)
        }
    }
}

/// What [`Telemetry`](crate::Telemetry) keeps of the subscriber it installed, to stop it at
/// shutdown.
#[derive(Debug)]
pub(crate) struct Installed {
    /// Closed first: no event or span reaches a provider that is shutting down.
    pub(crate) gate: Gate,
    /// Drained last: the lines queued before shutdown are written.
    pub(crate) console: Console,
}

/// Installs the subscriber globally; fails if one is installed already. What it ignored in
/// `RUST_LOG` goes to `warnings`.
pub(crate) fn install(
    tracer_provider: Option<&SdkTracerProvider>,
    logger_provider: Option<&SdkLoggerProvider>,
    warnings: &mut Warnings,
) -> Result<Installed, tracing_subscriber::util::TryInitError> {
    let installed = Installed {
        gate: Gate::default(),
        console: Console::stdout(),
    };
    let (gate, console) = (&installed.gate, &installed.console);
    let rust_log = std::env::var("RUST_LOG").unwrap_or_default();
    let (filter, sdk_on_console) = env_filter(&rust_log, warnings);
    let console = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(console.clone())
        .event_format(ConsoleFormat)
        .with_filter(filter_fn(move |metadata| {
            sdk_on_console || !is_sdk_diagnostic(metadata)
        }));
    let into_pipeline = || {
        let gate = gate.clone();
        filter_fn(move |metadata| gate.is_open() && !is_export_machinery(metadata.target()))
    };
    let spans = tracer_provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("tracing"))
            .with_filter(into_pipeline())
    });
    let logs = logger_provider
        .map(|provider| OpenTelemetryTracingBridge::new(provider).with_filter(into_pipeline()));
    tracing_subscriber::registry()
        .with(filter)
        .with(console)
        .with(spans)
        .with(logs)
        .try_init()?;
    Ok(installed)
}

/// `2026-11-24T10:00:00.123456Z  WARN checkout: user not found id=7 trace_id=4bf9...`: the
/// time, the level, the target, the message and fields, and the trace the event happened in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConsoleFormat;

impl<S, N> FormatEvent<S, N> for ConsoleFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        SystemTime.format_time(&mut writer)?;
        let level = *event.metadata().level();
        if writer.has_ansi_escapes() {
            write!(writer, " \x1b[{}m{level:>5}\x1b[0m ", level_color(level))?;
        } else {
            write!(writer, " {level:>5} ")?;
        }
        write!(writer, "{}: ", event.metadata().target())?;
        ctx.format_fields(writer.by_ref(), event)?;
        opentelemetry::Context::map_current(|cx| {
            let span = cx.span();
            let span_context = span.span_context();
            if span_context.is_valid() {
                write!(writer, " trace_id={}", span_context.trace_id())
            } else {
                Ok(())
            }
        })?;
        writeln!(writer)
    }
}

/// The ANSI color code of a level, as tracing-subscriber's own formatter colors them.
fn level_color(level: Level) -> u8 {
    match level {
        Level::ERROR => 31,
        Level::WARN => 33,
        Level::INFO => 32,
        Level::DEBUG => 34,
        Level::TRACE => 35,
    }
}

#[cfg(test)]
mod tests {
    use super::{Warnings, env_filter, is_export_machinery};

    #[test]
    fn an_invalid_rust_log_is_info_with_a_warning() {
        let mut warnings = Warnings::default();
        let (filter, _) = env_filter("info,[unclosed", &mut warnings);
        assert_eq!(filter.to_string(), "info");
        assert_eq!(warnings.0.len(), 1, "{:?}", warnings.0);
        assert!(
            warnings.0[0].starts_with(r#"RUST_LOG="info,[unclosed" is not a valid filter"#),
            "{:?}",
            warnings.0
        );
    }

    #[test]
    fn export_machinery_is_matched_by_crate_or_module_not_by_name_prefix() {
        for target in [
            "h2",
            "h2::codec",
            "tower::buffer::worker",
            "opentelemetry-otlp",
        ] {
            assert!(is_export_machinery(target), "{target}");
        }
        for target in [
            "h2o",
            "tower_http::trace",
            "tower::timeout",
            "hyperion",
            "service",
        ] {
            assert!(!is_export_machinery(target), "{target}");
        }
    }
}
