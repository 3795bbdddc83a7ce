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
//! The two bridges are filtered by `OTEL_MONITOR_EXPORT_FILTER` (default `info`), not by
//! `RUST_LOG` ([`Filters`]); they are the [`bridges`] an application that builds its own
//! subscriber adds with [`Telemetry::tracing_layer`](crate::Telemetry::tracing_layer).
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
    filter::{FilterExt, filter_fn},
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::Writer,
        time::{FormatTime, SystemTime},
    },
    layer::{self, Filter, SubscriberExt},
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::{
    config::{OTEL_MONITOR_EXPORT_FILTER, Warnings},
    console::Console,
    export::failures,
    scope,
};

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
///
/// As a per-layer [`Filter`] it asks about every event and span (the default
/// [`Filter::callsite_enabled`], `sometimes`): a callsite's interest is cached when it is first
/// hit, and one hit while the pipeline ran must still be stopped once it shut down.
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

impl<S> Filter<S> for Gate {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &layer::Context<'_, S>) -> bool {
        self.is_open()
    }
}

/// What `RUST_LOG` and [`OTEL_MONITOR_EXPORT_FILTER`] say, checked: each is a valid
/// [`EnvFilter`] directive list (`info` where the variable is unset, empty or invalid).
///
/// Two filters, not one: `RUST_LOG` is usually set to quiet a console (`warn`), and the spans
/// and events the telemetry is for must not go with the lines. Each is a per-layer filter, so
/// the console layer sees only what `RUST_LOG` enables and the bridges only what the export
/// filter enables; the subscriber's level hint is the higher of the two (tracing-subscriber
/// takes the maximum over per-layer filters), so `RUST_LOG=warn` does not turn `info!` off at
/// the callsite. What one filter enables and the other does not is built once, and skipped by
/// the layer it is not for.
#[derive(Debug, Clone)]
pub(crate) struct Filters {
    /// `RUST_LOG`: what the console prints.
    console: String,
    /// Whether `RUST_LOG` names an OpenTelemetry crate: then the SDK's diagnostics are printed.
    sdk_on_console: bool,
    /// `OTEL_MONITOR_EXPORT_FILTER`: what becomes spans and log records.
    pub(crate) export: String,
}

impl Filters {
    /// Both filters from the environment; what is invalid is left for `info`, with a warning.
    pub(crate) fn resolve(env: impl Fn(&str) -> Option<String>, warnings: &mut Warnings) -> Self {
        let rust_log = env("RUST_LOG").unwrap_or_default();
        let console = directives("RUST_LOG", &rust_log, warnings);
        Self {
            sdk_on_console: console != DEFAULT_FILTER && rust_log.contains("opentelemetry"),
            console,
            export: directives(
                OTEL_MONITOR_EXPORT_FILTER,
                &env(OTEL_MONITOR_EXPORT_FILTER).unwrap_or_default(),
                warnings,
            ),
        }
    }
}

/// What every filter is when its variable is unset, empty or invalid.
const DEFAULT_FILTER: &str = "info";

/// `value` when it is a valid [`EnvFilter`], else [`DEFAULT_FILTER`] (with a warning naming
/// `variable` when it was not empty).
fn directives(variable: &str, value: &str, warnings: &mut Warnings) -> String {
    if value.trim().is_empty() {
        return DEFAULT_FILTER.to_owned();
    }
    match EnvFilter::try_new(value) {
        Ok(_) => value.to_owned(),
        Err(error) => {
            warnings.push(format!(
                "{variable}={value:?} is not a valid filter ({error}): using {DEFAULT_FILTER}"
            ));
            DEFAULT_FILTER.to_owned()
        }
    }
}

/// The bridges from `tracing` to the providers: spans become OpenTelemetry spans
/// (tracing-opentelemetry), events become log records (opentelemetry-appender-tracing). They see
/// what `export_filter` enables, never the export machinery's own events and spans, and nothing
/// once `gate` closed. The one path both [`install`] and
/// [`Telemetry::tracing_layer`](crate::Telemetry::tracing_layer) take.
pub(crate) fn bridges<S>(
    tracer_provider: Option<&SdkTracerProvider>,
    logger_provider: Option<&SdkLoggerProvider>,
    export_filter: &str,
    gate: &Gate,
) -> impl Layer<S>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    let spans = tracer_provider.map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer_with_scope(scope::bridged_spans()))
    });
    let logs = logger_provider.map(OpenTelemetryTracingBridge::new);
    let not_machinery = filter_fn(|metadata| !is_export_machinery(metadata.target()));
    // Resolved by `Filters`: valid already.
    let export_filter =
        EnvFilter::try_new(export_filter).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    Layer::and_then(spans, logs).with_filter(export_filter.and(not_machinery).and(gate.clone()))
}

/// Installs the subscriber globally: the console, filtered by `RUST_LOG`, and the
/// [`bridges`]. Fails if one is installed already.
pub(crate) fn install(
    tracer_provider: Option<&SdkTracerProvider>,
    logger_provider: Option<&SdkLoggerProvider>,
    filters: &Filters,
    gate: &Gate,
) -> Result<Console, tracing_subscriber::util::TryInitError> {
    let console = Console::stdout();
    let sdk_on_console = filters.sdk_on_console;
    let console_filter = EnvFilter::try_new(&filters.console)
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
        .and(filter_fn(move |metadata| {
            sdk_on_console || !is_sdk_diagnostic(metadata)
        }));
    let console_layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(console.clone())
        .event_format(ConsoleFormat)
        .with_filter(console_filter);
    tracing_subscriber::registry()
        .with(console_layer)
        .with(bridges(
            tracer_provider,
            logger_provider,
            &filters.export,
            gate,
        ))
        .try_init()?;
    Ok(console)
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
    use super::{Filters, Warnings, is_export_machinery};

    fn resolve(vars: &[(&str, &str)]) -> (Filters, Vec<String>) {
        let mut warnings = Warnings::default();
        let env = |name: &str| {
            vars.iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| (*value).to_owned())
        };
        let filters = Filters::resolve(env, &mut warnings);
        (filters, warnings.0)
    }

    #[test]
    fn an_invalid_filter_is_info_with_a_warning() {
        for variable in ["RUST_LOG", "OTEL_MONITOR_EXPORT_FILTER"] {
            let (filters, warnings) = resolve(&[(variable, "info,[unclosed")]);
            assert_eq!(
                (filters.console.as_str(), filters.export.as_str()),
                ("info", "info")
            );
            assert!(!filters.sdk_on_console);
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(
                warnings[0].starts_with(&format!(
                    r#"{variable}="info,[unclosed" is not a valid filter"#
                )),
                "{warnings:?}"
            );
        }
    }

    #[test]
    fn rust_log_filters_the_console_only_and_the_export_filter_is_info_by_default() {
        let (filters, warnings) = resolve(&[("RUST_LOG", "warn,opentelemetry_sdk=debug")]);
        assert_eq!(filters.console, "warn,opentelemetry_sdk=debug");
        assert!(filters.sdk_on_console);
        assert_eq!(filters.export, "info");
        assert!(warnings.is_empty(), "{warnings:?}");

        let (filters, _) = resolve(&[("OTEL_MONITOR_EXPORT_FILTER", "debug,h2=off")]);
        assert_eq!(
            (filters.console.as_str(), filters.export.as_str()),
            ("info", "debug,h2=off")
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
