//! [`Telemetry`]: the whole pipeline, from the `tracing` subscriber to the OTLP exporters, built
//! from the standard environment variables in one call, and flushed when it ends.

use std::{
    path::PathBuf,
    sync::{Arc, mpsc},
    thread,
    time::{Duration, Instant},
};

use opentelemetry::{
    InstrumentationScope, Key, KeyValue, global,
    metrics::{Meter, MeterProvider as _},
    propagation::{TextMapCompositePropagator, TextMapPropagator},
};
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkError,
    logs::SdkLoggerProvider,
    metrics::SdkMeterProvider,
    propagation::{BaggagePropagator, TraceContextPropagator},
    resource::{EnvResourceDetector, ResourceDetector},
    trace::SdkTracerProvider,
};
use opentelemetry_semantic_conventions::resource::{
    HOST_NAME, PROCESS_PID, SERVICE_NAME, SERVICE_VERSION,
};

use crate::{
    HostMetricGroup,
    config::{ConfigError, Exporter, OtlpProtocol, Overrides, Propagator, Settings, Signal},
    console::Console,
    export::{
        destination::{Destination, SignalKind},
        grpc_runtime::GrpcRuntime,
        tls::TlsOverrides,
    },
    providers::{self, Export},
    register_host_metrics, scope, subscriber,
};

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
    #[cfg(feature = "prometheus")]
    prometheus: Option<crate::PrometheusScrape>,
    meter_provider: Option<SdkMeterProvider>,
    logger_provider: Option<SdkLoggerProvider>,
    /// Closed first at shutdown: no `tracing` event or span reaches a provider that is shutting
    /// down, whether the bridges are in the crate's subscriber or the application's.
    gate: subscriber::Gate,
    /// What the bridges export: `OTEL_MONITOR_EXPORT_FILTER`, checked.
    export_filter: String,
    /// Drained last at shutdown, when the subscriber is the crate's: the lines queued before
    /// shutdown are written.
    console: Option<Console>,
    shutdown_timeout: Duration,
    shut_down: bool,
    /// Carries the gRPC connections; declared last, so it stops after the providers.
    _grpc_runtime: Option<GrpcRuntime>,
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

    /// The crate's `tracing` layers, for a subscriber the application builds itself (with
    /// [`TelemetryBuilder::tracing_subscriber`]`(false)`): `tracing` events become OpenTelemetry
    /// log records tied to the current trace (opentelemetry-appender-tracing), and spans
    /// (`#[instrument]`) become OpenTelemetry spans (tracing-opentelemetry), children of the
    /// request's span. The crate's own subscriber is built with the same layers.
    ///
    /// They take what `OTEL_MONITOR_EXPORT_FILTER` enables (`RUST_LOG`'s syntax, `info` when
    /// unset; an invalid value is `info`, with a warning at `init()`), as a filter of their own:
    /// the filters of the application's other layers (its console's `RUST_LOG`) do not decide
    /// what is exported, as long as they too are per-layer filters
    /// ([`Layer::with_filter`](tracing_subscriber::Layer::with_filter)); a filter added to the
    /// registry as a layer of its own filters every layer. They never take the events and spans
    /// of the export machinery itself (the SDK, the OTLP clients, hyper, h2, tonic, rustls), and
    /// take nothing once the pipeline shuts down. A signal that is not exported has no bridge.
    /// Add them once: the crate's own subscriber has them already.
    ///
    /// ```no_run
    /// use otel_monitor::Telemetry;
    /// use tracing_subscriber::{EnvFilter, Layer as _, layer::SubscriberExt as _, util::SubscriberInitExt as _};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let telemetry = Telemetry::builder()
    ///     .service_name("checkout")
    ///     .tracing_subscriber(false)
    ///     .init()?;
    /// tracing_subscriber::registry()
    ///     // The application's console, filtered by RUST_LOG.
    ///     .with(tracing_subscriber::fmt::layer().with_filter(EnvFilter::from_default_env()))
    ///     .with(telemetry.tracing_layer())
    ///     .init();
    ///
    /// tracing::info!("exported as a log record, whatever RUST_LOG says");
    /// // ... serve ...
    /// telemetry.shutdown()?;
    /// # Ok(())
    /// # }
    /// ```
    pub fn tracing_layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        subscriber::bridges(
            self.tracer_provider.as_ref(),
            self.logger_provider.as_ref(),
            &self.export_filter,
            &self.gate,
        )
    }

    /// The metrics for Prometheus to scrape, when `prometheus` is one of the metrics exporters.
    #[cfg(feature = "prometheus")]
    pub fn prometheus(&self) -> Option<&crate::PrometheusScrape> {
        self.prometheus.as_ref()
    }

    /// Flushes and stops every signal, waiting at most the shutdown timeout in all (3 s
    /// unless [`TelemetryBuilder::shutdown_timeout`] says otherwise), so a collector that is
    /// gone cannot hold the process.
    ///
    /// It blocks the calling thread until then, and may be called from async code on any
    /// runtime: the exports run on threads of their own, and gRPC on the crate's own runtime,
    /// so the last batch is delivered even from a current-thread runtime. `tracing` events and
    /// spans made after it starts go to the console only.
    pub fn shutdown(mut self) -> Result<(), ShutdownError> {
        self.shut_down = true;
        self.shut_down_providers()
    }

    /// Closes the `tracing` bridges, shuts the providers down, and writes the console lines
    /// still queued, all under one deadline.
    fn shut_down_providers(&self) -> Result<(), ShutdownError> {
        self.gate.close();
        let deadline = Instant::now() + self.shutdown_timeout;
        let flushed = self.flush_providers(deadline);
        if let Some(console) = &self.console {
            console.drain(deadline);
        }
        flushed
    }

    /// Shuts the providers down side by side, waiting for them until `deadline`: the SDK's meter
    /// provider waits its reader's fixed timeout whatever it is given, and the span processor
    /// may wait as long.
    fn flush_providers(&self, deadline: Instant) -> Result<(), ShutdownError> {
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
    default_service_name: Option<String>,
    default_service_version: Option<String>,
    tracing_subscriber: bool,
    shutdown_timeout: Duration,
    tls: TlsOverrides,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        Self {
            overrides: Overrides::default(),
            resource: Vec::new(),
            default_service_name: None,
            default_service_version: None,
            tracing_subscriber: true,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            tls: TlsOverrides::default(),
        }
    }
}

impl TelemetryBuilder {
    /// Sets `service.name`, over `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn service_name(self, name: impl Into<String>) -> Self {
        self.resource_attribute(KeyValue::new(SERVICE_NAME, name.into()))
    }

    /// Sets `service.version`, over `OTEL_RESOURCE_ATTRIBUTES`.
    pub fn service_version(self, version: impl Into<String>) -> Self {
        self.resource_attribute(KeyValue::new(SERVICE_VERSION, version.into()))
    }

    /// The `service.name` to use when neither `OTEL_SERVICE_NAME` nor
    /// `OTEL_RESOURCE_ATTRIBUTES` names the service: a name in code that a deployment can still
    /// change (unified service tagging), where [`service_name`](Self::service_name) cannot.
    pub fn default_service_name(mut self, name: impl Into<String>) -> Self {
        self.default_service_name = Some(name.into());
        self
    }

    /// The `service.version` to use when `OTEL_RESOURCE_ATTRIBUTES` gives none, usually
    /// `env!("CARGO_PKG_VERSION")`; a deployment can still set its own.
    pub fn default_service_version(mut self, version: impl Into<String>) -> Self {
        self.default_service_version = Some(version.into());
        self
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

    /// Where spans go, over `OTEL_TRACES_EXPORTER`; no exporter turns traces off.
    pub fn traces_exporters(mut self, exporters: impl IntoIterator<Item = Exporter>) -> Self {
        self.overrides.traces_exporters = Some(exporters.into_iter().collect());
        self
    }

    /// Where metrics go, over `OTEL_METRICS_EXPORTER`; no exporter turns metrics off.
    pub fn metrics_exporters(mut self, exporters: impl IntoIterator<Item = Exporter>) -> Self {
        self.overrides.metrics_exporters = Some(exporters.into_iter().collect());
        self
    }

    /// Where log records go, over `OTEL_LOGS_EXPORTER`; no exporter turns logs off.
    pub fn logs_exporters(mut self, exporters: impl IntoIterator<Item = Exporter>) -> Self {
        self.overrides.logs_exporters = Some(exporters.into_iter().collect());
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

    /// Whether to report the host and process metrics (on by default), over
    /// `OTEL_MONITOR_HOST_METRICS`.
    pub fn host_metrics(mut self, enabled: bool) -> Self {
        self.overrides.host_metrics = Some(enabled);
        self
    }

    /// Which groups of host and process metrics to report (all by default), over
    /// `OTEL_MONITOR_HOST_METRICS_GROUPS`.
    pub fn host_metric_groups(mut self, groups: impl IntoIterator<Item = HostMetricGroup>) -> Self {
        self.overrides.host_metric_groups = Some(groups.into_iter().collect());
        self
    }

    /// Whether to install the `tracing` subscriber: console lines filtered by `RUST_LOG`, events
    /// as OpenTelemetry log records and spans as OpenTelemetry spans, filtered by
    /// `OTEL_MONITOR_EXPORT_FILTER`. On by default; turn it off to build your own subscriber and
    /// add the crate's layers to it with [`Telemetry::tracing_layer`].
    pub fn tracing_subscriber(mut self, install: bool) -> Self {
        self.tracing_subscriber = install;
        self
    }

    /// The CA certificates (a PEM file) to trust for `https://` endpoints instead of the
    /// platform's, over `OTEL_EXPORTER_OTLP_CERTIFICATE` and its per-signal forms: for a
    /// collector whose certificate a private CA signed.
    pub fn otlp_certificate(mut self, path: impl Into<PathBuf>) -> Self {
        self.tls.certificate = Some(path.into());
        self
    }

    /// The client certificate chain and its private key (PEM files) presented to collectors
    /// that ask for one (mutual TLS), over `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and
    /// `OTEL_EXPORTER_OTLP_CLIENT_KEY` and their per-signal forms.
    pub fn otlp_client_identity(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.tls.client_identity = Some((certificate.into(), key.into()));
        self
    }

    /// Whether a gRPC endpoint given without a scheme (`collector:4317`) is reached in plain
    /// text (`true`) or over TLS (`false`, the default), over `OTEL_EXPORTER_OTLP_INSECURE` and
    /// its per-signal forms. An endpoint with a scheme is reached as its scheme says.
    pub fn otlp_insecure(mut self, insecure: bool) -> Self {
        self.tls.insecure = Some(insecure);
        self
    }

    /// How long shutdown may take in all (3 s by default).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Builds the pipeline and installs it globally.
    ///
    /// Fails, without panicking, when a variable holds an invalid value or names a file that
    /// cannot be read (the error names the variable, and the accepted values or the path), when
    /// an exporter cannot be built, or when a `tracing` subscriber is already installed. A
    /// failing `init()` leaves the global providers, propagator and subscriber as it found them.
    pub fn init(self) -> Result<Telemetry, InitError> {
        let env = |variable: &str| {
            std::env::var_os(variable).map(|value| value.to_string_lossy().into_owned())
        };
        let mut settings = Settings::resolve(&self.overrides, env)?;
        let filters = subscriber::Filters::resolve(env, &mut settings.warnings);
        let gate = subscriber::Gate::default();
        let resolve = |signal: &Signal, kind: SignalKind, warnings: &mut _| {
            signal
                .exports_to(Exporter::Otlp)
                .then(|| Destination::resolve(kind, signal.protocol, &self.tls, &env, warnings))
                .transpose()
                .map_err(|source| InitError::Exporter {
                    signal: kind.name(),
                    source,
                })
        };
        let warnings = &mut settings.warnings;
        let traces = resolve(&settings.traces, SignalKind::Traces, warnings)?;
        let metrics = resolve(&settings.metrics, SignalKind::Metrics, warnings)?;
        let logs = resolve(&settings.logs, SignalKind::Logs, warnings)?;
        let grpc_runtime = [&traces, &metrics, &logs]
            .into_iter()
            .flatten()
            .any(|destination| destination.protocol == OtlpProtocol::Grpc)
            .then(GrpcRuntime::start)
            .transpose()
            .map_err(|error| InitError::Exporter {
                signal: "traces",
                source: opentelemetry_otlp::ExporterBuildError::InternalFailure(error.to_string()),
            })?;
        let runtime = grpc_runtime.as_ref();
        let (traces, metrics, logs) = (
            Export {
                signal: &settings.traces,
                destination: traces.as_ref(),
                runtime,
            },
            Export {
                signal: &settings.metrics,
                destination: metrics.as_ref(),
                runtime,
            },
            Export {
                signal: &settings.logs,
                destination: logs.as_ref(),
                runtime,
            },
        );

        let resource = self.resource();
        let meter_provider =
            providers::meter_provider(&metrics, &resource, settings.metrics_temporality)?;
        let meter = match &meter_provider {
            Some(metrics) => metrics.provider.meter_with_scope(scope::instrumentation()),
            None => global::meter_with_scope(scope::instrumentation()),
        };
        if meter_provider.is_some() && !settings.host_metric_groups.is_empty() {
            register_host_metrics(&meter, &settings.host_metric_groups);
        }
        // The SDK's span and log processors take the global meter provider, as it is when they
        // are built, for their own counts (spans dropped from a full queue): install it first,
        // and put back the one found if a later step fails.
        let found = meter_provider.as_ref().map(|metrics| {
            let found = FoundMeterProvider(global::meter_provider());
            global::set_meter_provider(metrics.provider.clone());
            found
        });
        let rest = self.build_rest(&traces, &logs, &resource, &meter, &filters, &gate);
        let (tracer_provider, logger_provider, console) = match rest {
            Ok(rest) => rest,
            Err(error) => {
                if let Some(found) = found {
                    global::set_meter_provider(found);
                }
                return Err(error);
            }
        };
        if let Some(provider) = &tracer_provider {
            global::set_tracer_provider(provider.clone());
        }
        if !settings.sdk_disabled {
            global::set_text_map_propagator(propagator(&settings.propagators));
        }

        for warning in &settings.warnings.0 {
            tracing::warn!(target: "otel_monitor::config", "{warning}");
        }
        tracing::info!(
            service.name = %resource.get(&Key::from_static_str(SERVICE_NAME)).map(|name| name.to_string()).unwrap_or_default(),
            traces = %providers::describe(&traces),
            metrics = %providers::describe(&metrics),
            logs = %providers::describe(&logs),
            "telemetry pipeline ready",
        );
        Ok(Telemetry {
            tracer_provider,
            #[cfg(feature = "prometheus")]
            prometheus: meter_provider
                .as_ref()
                .and_then(|metrics| metrics.prometheus.clone()),
            meter_provider: meter_provider.map(|metrics| metrics.provider),
            logger_provider,
            gate,
            export_filter: filters.export,
            console,
            shutdown_timeout: self.shutdown_timeout,
            shut_down: false,
            _grpc_runtime: grpc_runtime,
        })
    }

    /// The tracer and logger providers and the subscriber: the steps of `init()` that can still
    /// fail once the meter provider is global. Nothing here is global until it all succeeded.
    #[allow(clippy::type_complexity)]
    fn build_rest(
        &self,
        traces: &Export<'_>,
        logs: &Export<'_>,
        resource: &Resource,
        meter: &Meter,
        filters: &subscriber::Filters,
        gate: &subscriber::Gate,
    ) -> Result<
        (
            Option<SdkTracerProvider>,
            Option<SdkLoggerProvider>,
            Option<Console>,
        ),
        InitError,
    > {
        let tracer_provider = providers::tracer_provider(traces, resource, meter)?;
        let logger_provider = providers::logger_provider(logs, resource)?;
        let subscriber = self
            .tracing_subscriber
            .then(|| {
                subscriber::install(
                    tracer_provider.as_ref(),
                    logger_provider.as_ref(),
                    filters,
                    gate,
                )
            })
            .transpose()
            .map_err(|source| InitError::Subscriber(source.to_string()))?;
        Ok((tracer_provider, logger_provider, subscriber))
    }

    /// The SDK's resource (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `telemetry.sdk.*`),
    /// with `host.name` and `process.pid` where the environment gave none, and the builder's
    /// attributes over all of them.
    fn resource(&self) -> Resource {
        let detected = Resource::builder().build();
        let mut attributes = Vec::with_capacity(4 + self.resource.len());
        let environment_names_service = std::env::var_os("OTEL_SERVICE_NAME")
            .is_some_and(|name| !name.is_empty())
            || EnvResourceDetector::new()
                .detect()
                .get(&Key::from_static_str(SERVICE_NAME))
                .is_some();
        if let Some(name) = &self.default_service_name
            && !environment_names_service
        {
            attributes.push(KeyValue::new(SERVICE_NAME, name.clone()));
        }
        if let Some(version) = &self.default_service_version
            && detected
                .get(&Key::from_static_str(SERVICE_VERSION))
                .is_none()
        {
            attributes.push(KeyValue::new(SERVICE_VERSION, version.clone()));
        }
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

/// The global meter provider as `init()` found it, to put back when `init()` fails.
struct FoundMeterProvider(Arc<dyn opentelemetry::metrics::MeterProvider + Send + Sync>);

impl opentelemetry::metrics::MeterProvider for FoundMeterProvider {
    fn meter_with_scope(&self, scope: InstrumentationScope) -> Meter {
        self.0.meter_with_scope(scope)
    }
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
    /// The Prometheus exporter could not be built.
    #[cfg(feature = "prometheus")]
    #[error("cannot build the Prometheus exporter: {0}")]
    Prometheus(String),
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
