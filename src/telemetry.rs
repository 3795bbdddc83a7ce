//! [`Telemetry`]: the whole pipeline, from the `tracing` subscriber to the OTLP exporters, built
//! from the standard environment variables in one call, and flushed when it ends.

use std::{
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use opentelemetry::{
    Key, KeyValue, global,
    propagation::{TextMapCompositePropagator, TextMapPropagator},
};
use opentelemetry_otlp::{ExporterBuildError, LogExporter, MetricExporter, SpanExporter};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkError,
    logs::SdkLoggerProvider,
    metrics::SdkMeterProvider,
    propagation::{BaggagePropagator, TraceContextPropagator},
    trace::SdkTracerProvider,
};
use opentelemetry_semantic_conventions::resource::{
    HOST_NAME, PROCESS_PID, SERVICE_NAME, SERVICE_VERSION,
};

use crate::config::{ConfigError, Exporter, OtlpProtocol, Overrides, Propagator, Settings, Signal};
use crate::export_failures::{FailureReport, Reporting};
use crate::subscriber;

/// How long [`Telemetry::shutdown`] waits for the exporters to flush, in all.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);

/// The telemetry pipeline of a service: the resource, the tracer and meter providers with their
/// exporters, the global propagator and the `tracing` subscriber.
///
/// Built by [`Telemetry::builder`]. The providers are installed globally, so
/// [`MonitorLayer`](crate::MonitorLayer) and any other OpenTelemetry instrumentation in the
/// process join the same pipeline. [`shutdown`](Self::shutdown) flushes every signal within a
/// bounded time; dropping the value does the same.
///
/// ```no_run
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = otel_monitor::Telemetry::builder()
///     .service_name("checkout")
///     .init()?;
/// // ... serve ...
/// telemetry.shutdown()?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
#[must_use = "dropping Telemetry shuts the pipeline down"]
pub struct Telemetry {
    tracer_provider: Option<SdkTracerProvider>,
    meter_provider: Option<SdkMeterProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    shutdown_timeout: Duration,
    shut_down: bool,
}

impl Telemetry {
    /// A builder that reads the standard `OTEL_*` variables; its methods override them.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    /// The tracer provider, when traces are exported.
    pub fn tracer_provider(&self) -> Option<&SdkTracerProvider> {
        self.tracer_provider.as_ref()
    }

    /// The meter provider, when metrics are exported.
    pub fn meter_provider(&self) -> Option<&SdkMeterProvider> {
        self.meter_provider.as_ref()
    }

    /// The logger provider, when log records are exported.
    pub fn logger_provider(&self) -> Option<&SdkLoggerProvider> {
        self.logger_provider.as_ref()
    }

    /// Flushes and stops every signal, waiting at most the shutdown timeout in all (3 s
    /// unless [`TelemetryBuilder::shutdown_timeout`] says otherwise), so a collector that is
    /// gone cannot hold the process.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.shut_down = true;
        self.shut_down_providers()
    }

    /// Shuts the providers down side by side under one deadline: the SDK's meter provider waits
    /// its reader's fixed timeout whatever it is given, and the span processor may wait as long.
    fn shut_down_providers(&self) -> Result<(), ShutdownError> {
        let deadline = Instant::now() + self.shutdown_timeout;
        let (done, results) = mpsc::channel();
        let mut pending = Vec::new();
        if let Some(provider) = self.tracer_provider.clone() {
            let timeout = self.shutdown_timeout;
            pending.push("traces");
            spawn_shutdown("traces", done.clone(), move || {
                provider.shutdown_with_timeout(timeout)
            });
        }
        if let Some(provider) = self.meter_provider.clone() {
            let timeout = self.shutdown_timeout;
            pending.push("metrics");
            spawn_shutdown("metrics", done.clone(), move || {
                provider.shutdown_with_timeout(timeout)
            });
        }
        if let Some(provider) = self.logger_provider.clone() {
            let timeout = self.shutdown_timeout;
            pending.push("logs");
            spawn_shutdown("logs", done.clone(), move || {
                provider.shutdown_with_timeout(timeout)
            });
        }
        drop(done);

        let mut first_error = None;
        while !pending.is_empty() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match results.recv_timeout(remaining) {
                Ok((signal, result)) => {
                    pending.retain(|pending| *pending != signal);
                    if let Err(source) = result {
                        first_error.get_or_insert(ShutdownError::Failed { signal, source });
                    }
                }
                Err(_) => {
                    return Err(first_error.unwrap_or(ShutdownError::TimedOut {
                        signal: pending[0],
                        timeout: self.shutdown_timeout,
                    }));
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn spawn_shutdown(
    signal: &'static str,
    done: mpsc::Sender<(&'static str, Result<(), OTelSdkError>)>,
    shutdown: impl FnOnce() -> Result<(), OTelSdkError> + Send + 'static,
) {
    let spawned = thread::Builder::new()
        .name(format!("otel-monitor-shutdown-{signal}"))
        .spawn({
            let done = done.clone();
            move || {
                let _ = done.send((signal, shutdown()));
            }
        });
    if let Err(error) = spawned {
        let _ = done.send((
            signal,
            Err(OTelSdkError::InternalFailure(error.to_string())),
        ));
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if !self.shut_down
            && let Err(error) = self.shut_down_providers()
        {
            tracing::warn!(%error, "telemetry did not shut down cleanly");
        }
    }
}

/// Builds a [`Telemetry`]. Every setting not made here comes from the environment, then from the
/// OpenTelemetry specification's defaults.
#[derive(Debug)]
#[must_use = "call init() to build the pipeline"]
pub struct TelemetryBuilder {
    overrides: Overrides,
    resource: Vec<KeyValue>,
    tracing_subscriber: bool,
    shutdown_timeout: Duration,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        Self {
            overrides: Overrides::default(),
            resource: Vec::new(),
            tracing_subscriber: true,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

impl TelemetryBuilder {
    /// Sets `service.name`, over `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn service_name(self, name: impl Into<String>) -> Self {
        self.resource_attribute(KeyValue::new(SERVICE_NAME, name.into()))
    }

    /// Sets `service.version`, usually `env!("CARGO_PKG_VERSION")`.
    pub fn service_version(self, version: impl Into<String>) -> Self {
        self.resource_attribute(KeyValue::new(SERVICE_VERSION, version.into()))
    }

    /// Adds a resource attribute, over the same key in `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn resource_attribute(mut self, attribute: KeyValue) -> Self {
        self.resource.push(attribute);
        self
    }

    /// Turns every signal off (`true`) or on (`false`), over `OTEL_SDK_DISABLED`.
    pub fn sdk_disabled(mut self, disabled: bool) -> Self {
        self.overrides.sdk_disabled = Some(disabled);
        self
    }

    /// Where spans go, over `OTEL_TRACES_EXPORTER`.
    pub fn traces_exporter(mut self, exporter: Exporter) -> Self {
        self.overrides.traces_exporter = Some(exporter);
        self
    }

    /// Where metrics go, over `OTEL_METRICS_EXPORTER`.
    pub fn metrics_exporter(mut self, exporter: Exporter) -> Self {
        self.overrides.metrics_exporter = Some(exporter);
        self
    }

    /// Where log records go, over `OTEL_LOGS_EXPORTER`.
    pub fn logs_exporter(mut self, exporter: Exporter) -> Self {
        self.overrides.logs_exporter = Some(exporter);
        self
    }

    /// The OTLP transport of every signal, over `OTEL_EXPORTER_OTLP_PROTOCOL` and its
    /// per-signal variants.
    pub fn otlp_protocol(mut self, protocol: OtlpProtocol) -> Self {
        self.overrides.protocol = Some(protocol);
        self
    }

    /// The context propagators, over `OTEL_PROPAGATORS`; an empty list propagates nothing.
    pub fn propagators(mut self, propagators: impl IntoIterator<Item = Propagator>) -> Self {
        self.overrides.propagators = Some(propagators.into_iter().collect());
        self
    }

    /// Whether to install the `tracing` subscriber: console lines filtered by `RUST_LOG`, events
    /// as OpenTelemetry log records and spans as OpenTelemetry spans. On by default; turn it off
    /// to compose your own from [`Telemetry::tracer_provider`] and
    /// [`Telemetry::logger_provider`].
    pub fn tracing_subscriber(mut self, install: bool) -> Self {
        self.tracing_subscriber = install;
        self
    }

    /// How long shutdown may take in all (3 s by default).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Builds the pipeline and installs it globally.
    ///
    /// Fails, without panicking, when a variable holds an invalid value (the error names it and
    /// the accepted values), when an exporter cannot be built, when OTLP/gRPC is asked for
    /// outside a Tokio runtime, or when a `tracing` subscriber is already installed.
    pub fn init(self) -> Result<Telemetry, InitError> {
        let settings = Settings::resolve(&self.overrides, |variable| {
            std::env::var_os(variable).map(|value| value.to_string_lossy().into_owned())
        })?;
        let (traces, metrics, logs) = if settings.sdk_disabled {
            (Exporter::None, Exporter::None, Exporter::None)
        } else {
            (
                settings.traces.exporter,
                settings.metrics.exporter,
                settings.logs.exporter,
            )
        };
        for (exporter, signal) in [
            (traces, settings.traces),
            (metrics, settings.metrics),
            (logs, settings.logs),
        ] {
            if exporter == Exporter::Otlp
                && signal.protocol == OtlpProtocol::Grpc
                && tokio::runtime::Handle::try_current().is_err()
            {
                return Err(InitError::GrpcOutsideTokio);
            }
        }

        let resource = self.resource();
        // Metrics first: the span processor registers its own diagnostics (dropped spans)
        // with the global meter provider when it is built.
        let meter_provider = match metrics {
            Exporter::None => None,
            Exporter::Console => Some(
                SdkMeterProvider::builder()
                    .with_periodic_exporter(opentelemetry_stdout::MetricExporter::default())
                    .with_resource(resource.clone())
                    .build(),
            ),
            Exporter::Otlp => Some(
                SdkMeterProvider::builder()
                    .with_periodic_exporter(otlp_metric_exporter(settings.metrics)?)
                    .with_resource(resource.clone())
                    .build(),
            ),
        };
        if let Some(provider) = &meter_provider {
            global::set_meter_provider(provider.clone());
        }
        let tracer_provider = match traces {
            Exporter::None => None,
            Exporter::Console => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(opentelemetry_stdout::SpanExporter::default())
                    .with_resource(resource.clone())
                    .build(),
            ),
            Exporter::Otlp => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(otlp_span_exporter(settings.traces)?)
                    .with_resource(resource.clone())
                    .build(),
            ),
        };
        if let Some(provider) = &tracer_provider {
            global::set_tracer_provider(provider.clone());
        }
        let logger_provider = match logs {
            Exporter::None => None,
            Exporter::Console => Some(
                SdkLoggerProvider::builder()
                    .with_batch_exporter(opentelemetry_stdout::LogExporter::default())
                    .with_resource(resource.clone())
                    .build(),
            ),
            Exporter::Otlp => Some(
                SdkLoggerProvider::builder()
                    .with_batch_exporter(otlp_log_exporter(settings.logs)?)
                    .with_resource(resource.clone())
                    .build(),
            ),
        };
        if !settings.sdk_disabled {
            global::set_text_map_propagator(propagator(&settings.propagators));
        }

        let telemetry = Telemetry {
            tracer_provider,
            meter_provider,
            logger_provider,
            shutdown_timeout: self.shutdown_timeout,
            shut_down: false,
        };
        if self.tracing_subscriber {
            subscriber::install(
                telemetry.tracer_provider.as_ref(),
                telemetry.logger_provider.as_ref(),
            )
            .map_err(|source| InitError::Subscriber(source.to_string()))?;
        }
        tracing::info!(
            service.name = %resource.get(&Key::from_static_str(SERVICE_NAME)).map(|name| name.to_string()).unwrap_or_default(),
            traces = %describe(traces, settings.traces, "TRACES", "v1/traces"),
            metrics = %describe(metrics, settings.metrics, "METRICS", "v1/metrics"),
            logs = %describe(logs, settings.logs, "LOGS", "v1/logs"),
            "telemetry pipeline ready",
        );
        Ok(telemetry)
    }

    /// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `telemetry.sdk.*`),
    /// with `host.name` and `process.pid` where the environment gave none, and the builder's
    /// attributes over all of them.
    fn resource(&self) -> Resource {
        let detected = Resource::builder().build();
        let mut attributes = Vec::with_capacity(2 + self.resource.len());
        if detected.get(&Key::from_static_str(HOST_NAME)).is_none()
            && let Some(host) = sysinfo::System::host_name()
        {
            attributes.push(KeyValue::new(HOST_NAME, host));
        }
        if detected.get(&Key::from_static_str(PROCESS_PID)).is_none() {
            attributes.push(KeyValue::new(PROCESS_PID, i64::from(std::process::id())));
        }
        attributes.extend(self.resource.iter().cloned());
        Resource::builder().with_attributes(attributes).build()
    }
}

/// The OTLP span exporter, counting and reporting the spans it cannot deliver.
fn otlp_span_exporter(signal: Signal) -> Result<Reporting<SpanExporter>, InitError> {
    let (exporter, component_type) = match signal.protocol {
        OtlpProtocol::Grpc => (
            SpanExporter::builder().with_tonic().build(),
            "otlp_grpc_span_exporter",
        ),
        OtlpProtocol::HttpProtobuf => (
            SpanExporter::builder().with_http().build(),
            "otlp_http_span_exporter",
        ),
    };
    let exporter = exporter.map_err(|source| InitError::Exporter {
        signal: "traces",
        source,
    })?;
    let report = FailureReport::new("traces", otlp_destination(signal, "TRACES", "v1/traces"))
        .counting_spans(&global::meter(env!("CARGO_PKG_NAME")), component_type);
    Ok(Reporting::new(exporter, report))
}

/// The OTLP metric exporter, reporting the exports it cannot deliver.
fn otlp_metric_exporter(signal: Signal) -> Result<Reporting<MetricExporter>, InitError> {
    let exporter = match signal.protocol {
        OtlpProtocol::Grpc => MetricExporter::builder().with_tonic().build(),
        OtlpProtocol::HttpProtobuf => MetricExporter::builder().with_http().build(),
    };
    let exporter = exporter.map_err(|source| InitError::Exporter {
        signal: "metrics",
        source,
    })?;
    let report = FailureReport::new("metrics", otlp_destination(signal, "METRICS", "v1/metrics"));
    Ok(Reporting::new(exporter, report))
}

/// The OTLP log exporter, reporting the log records it cannot deliver.
fn otlp_log_exporter(signal: Signal) -> Result<Reporting<LogExporter>, InitError> {
    let exporter = match signal.protocol {
        OtlpProtocol::Grpc => LogExporter::builder().with_tonic().build(),
        OtlpProtocol::HttpProtobuf => LogExporter::builder().with_http().build(),
    };
    let exporter = exporter.map_err(|source| InitError::Exporter {
        signal: "logs",
        source,
    })?;
    let report = FailureReport::new("logs", otlp_destination(signal, "LOGS", "v1/logs"));
    Ok(Reporting::new(exporter, report))
}

/// The propagators named, in order; none at all propagates nothing.
fn propagator(propagators: &[Propagator]) -> TextMapCompositePropagator {
    let propagators = propagators
        .iter()
        .map(|propagator| -> Box<dyn TextMapPropagator + Send + Sync> {
            match propagator {
                Propagator::TraceContext => Box::new(TraceContextPropagator::new()),
                Propagator::Baggage => Box::new(BaggagePropagator::new()),
            }
        })
        .collect();
    TextMapCompositePropagator::new(propagators)
}

/// Says where a signal goes, for the start-up line.
fn describe(exporter: Exporter, signal: Signal, name: &str, http_path: &str) -> String {
    match exporter {
        Exporter::None => "off".to_owned(),
        Exporter::Console => "console (stdout)".to_owned(),
        Exporter::Otlp => format!(
            "otlp {} {}",
            signal.protocol,
            otlp_destination(signal, name, http_path)
        ),
    }
}

/// The endpoint the OTLP exporter sends a signal to, as it resolves it from the environment.
/// Used only to tell the user; the exporter reads the variables itself.
fn otlp_destination(signal: Signal, name: &str, http_path: &str) -> String {
    let configured = |variable: String| std::env::var(variable).ok().filter(|v| !v.is_empty());
    configured(format!("OTEL_EXPORTER_OTLP_{name}_ENDPOINT"))
        .or_else(|| {
            let base = configured("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned())?;
            Some(match signal.protocol {
                OtlpProtocol::Grpc => base,
                OtlpProtocol::HttpProtobuf => format!("{}/{http_path}", base.trim_end_matches('/')),
            })
        })
        .unwrap_or_else(|| match signal.protocol {
            OtlpProtocol::Grpc => "http://localhost:4317".to_owned(),
            OtlpProtocol::HttpProtobuf => format!("http://localhost:4318/{http_path}"),
        })
}

/// [`TelemetryBuilder::init`] could not build the pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// An environment variable holds an invalid value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An exporter could not be built from its configuration.
    #[error("cannot build the {signal} exporter")]
    Exporter {
        /// `traces`, `metrics` or `logs`.
        signal: &'static str,
        /// What the exporter reported.
        #[source]
        source: ExporterBuildError,
    },
    /// OTLP/gRPC runs on a Tokio runtime, and `init()` was called outside one.
    #[error(
        "OTLP over gRPC needs a Tokio runtime: call init() inside the runtime (for example in \
         #[tokio::main]) or set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf"
    )]
    GrpcOutsideTokio,
    /// A global `tracing` subscriber was already installed.
    #[error(
        "a global tracing subscriber is already installed ({0}); call \
         .tracing_subscriber(false) to keep it"
    )]
    Subscriber(String),
}

/// [`Telemetry::shutdown`] could not flush every signal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShutdownError {
    /// A signal was still flushing when the shutdown timeout ran out.
    #[error("the {signal} pipeline was still flushing after {timeout:?}")]
    TimedOut {
        /// `traces`, `metrics` or `logs`.
        signal: &'static str,
        /// The timeout that ran out.
        timeout: Duration,
    },
    /// A signal's provider reported an error while shutting down.
    #[error("the {signal} pipeline failed to shut down")]
    Failed {
        /// `traces`, `metrics` or `logs`.
        signal: &'static str,
        /// What the provider reported.
        #[source]
        source: OTelSdkError,
    },
}
