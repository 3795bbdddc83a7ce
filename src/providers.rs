//! The SDK providers of each signal, with the exporters the settings name.
//!
//! Spans go through the [direct exporter](crate::export::direct); metrics and log records
//! through the stock `opentelemetry-otlp` exporters. All three get the same [`Destination`]:
//! the endpoint resolved once, the crate's TLS client or channel, the shared retry policy, and
//! a [`FailureReport`].

use std::sync::Arc;

use opentelemetry::metrics::Meter;
use opentelemetry_otlp::{
    ExporterBuildError, LogExporter, MetricExporter, WithExportConfig, WithHttpConfig,
    WithTonicConfig,
};
use opentelemetry_sdk::{
    Resource,
    logs::SdkLoggerProvider,
    metrics::{SdkMeterProvider, Temporality},
    trace::SdkTracerProvider,
};

use crate::{
    InitError,
    config::{Exporter, OtlpProtocol, Signal},
    export::{
        destination::Destination,
        direct::DirectSpanExporter,
        failures::{FailureReport, Reporting},
        grpc_runtime::{self, GrpcRuntime},
        http_client::{CauseNotingClient, blocking_client},
        retry::stock_policy,
    },
};

/// How a signal is exported: its settings and, when it goes over OTLP, its destination.
pub(crate) struct Export<'a> {
    pub(crate) signal: &'a Signal,
    pub(crate) destination: Option<&'a Destination>,
    pub(crate) runtime: Option<&'a GrpcRuntime>,
}

impl Export<'_> {
    fn otlp(&self) -> &Destination {
        self.destination
            .expect("a signal exported over OTLP has a destination")
    }
}

/// The tracer provider, or `None` when traces are off.
pub(crate) fn tracer_provider(
    export: &Export<'_>,
    resource: &Resource,
    meter: &Meter,
) -> Result<Option<SdkTracerProvider>, InitError> {
    if export.signal.exporters.is_empty() {
        return Ok(None);
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
    for exporter in &export.signal.exporters {
        builder = match exporter {
            Exporter::Otlp => builder.with_batch_exporter(
                DirectSpanExporter::new(export.otlp(), meter, export.runtime)
                    .map_err(|source| exporter_error("traces", source))?,
            ),
            Exporter::Console => {
                builder.with_batch_exporter(opentelemetry_stdout::SpanExporter::default())
            }
            #[cfg(feature = "prometheus")]
            Exporter::Prometheus => builder,
        };
    }
    Ok(Some(builder.build()))
}

/// The meter provider, or `None` when metrics are off; with the Prometheus registry it
/// fills when `prometheus` is one of the exporters. The OTLP and console exporters report with
/// `temporality` (`OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`); Prometheus scrapes
/// totals, so its reader stays cumulative whatever the preference.
pub(crate) fn meter_provider(
    export: &Export<'_>,
    resource: &Resource,
    temporality: Temporality,
) -> Result<Option<MeterProvider>, InitError> {
    if export.signal.exporters.is_empty() {
        return Ok(None);
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource.clone());
    #[cfg(feature = "prometheus")]
    let mut prometheus = None;
    for exporter in &export.signal.exporters {
        builder = match exporter {
            Exporter::Otlp => {
                builder.with_periodic_exporter(otlp_metric_exporter(export, temporality)?)
            }
            Exporter::Console => builder.with_periodic_exporter(
                opentelemetry_stdout::MetricExporter::builder()
                    .with_temporality(temporality)
                    .build(),
            ),
            #[cfg(feature = "prometheus")]
            Exporter::Prometheus => {
                let (reader, scrape) = crate::prometheus::reader()?;
                prometheus = Some(scrape);
                builder.with_reader(reader)
            }
        };
    }
    Ok(Some(MeterProvider {
        provider: builder.build(),
        #[cfg(feature = "prometheus")]
        prometheus,
    }))
}

/// A meter provider, and what Prometheus scrapes from it.
pub(crate) struct MeterProvider {
    pub(crate) provider: SdkMeterProvider,
    #[cfg(feature = "prometheus")]
    pub(crate) prometheus: Option<crate::prometheus::PrometheusScrape>,
}

/// The logger provider, or `None` when logs are off.
pub(crate) fn logger_provider(
    export: &Export<'_>,
    resource: &Resource,
) -> Result<Option<SdkLoggerProvider>, InitError> {
    if export.signal.exporters.is_empty() {
        return Ok(None);
    }
    let mut builder = SdkLoggerProvider::builder().with_resource(resource.clone());
    for exporter in &export.signal.exporters {
        builder = match exporter {
            Exporter::Otlp => builder.with_batch_exporter(otlp_log_exporter(export)?),
            Exporter::Console => {
                builder.with_batch_exporter(opentelemetry_stdout::LogExporter::default())
            }
            #[cfg(feature = "prometheus")]
            Exporter::Prometheus => builder,
        };
    }
    Ok(Some(builder.build()))
}

/// The stock OTLP metric exporter to the destination, reporting the exports it cannot deliver.
fn otlp_metric_exporter(
    export: &Export<'_>,
    temporality: Temporality,
) -> Result<Reporting<MetricExporter>, InitError> {
    let destination = export.otlp();
    let report = Arc::new(FailureReport::new(destination));
    // Set here rather than left to the exporter, which reads the same variable but would only
    // warn about a value it cannot use.
    let builder = MetricExporter::builder().with_temporality(temporality);
    let exporter = match destination.protocol {
        OtlpProtocol::Grpc => builder
            .with_tonic()
            .with_channel(channel(export)?)
            .with_retry_policy(stock_policy())
            .build(),
        OtlpProtocol::HttpProtobuf => builder
            .with_http()
            .with_endpoint(destination.endpoint.to_string())
            .with_http_client(http_client(destination, &report)?)
            .with_retry_policy(stock_policy())
            .build(),
    };
    reporting(exporter, report)
}

/// The stock OTLP log exporter to the destination, reporting the records it cannot deliver.
fn otlp_log_exporter(export: &Export<'_>) -> Result<Reporting<LogExporter>, InitError> {
    let destination = export.otlp();
    let report = Arc::new(FailureReport::new(destination));
    let exporter = match destination.protocol {
        OtlpProtocol::Grpc => LogExporter::builder()
            .with_tonic()
            .with_channel(channel(export)?)
            .with_retry_policy(stock_policy())
            .build(),
        OtlpProtocol::HttpProtobuf => LogExporter::builder()
            .with_http()
            .with_endpoint(destination.endpoint.to_string())
            .with_http_client(http_client(destination, &report)?)
            .with_retry_policy(stock_policy())
            .build(),
    };
    reporting(exporter, report)
}

/// The crate's gRPC channel to a signal's destination. The stock exporter still reads the
/// headers, the timeout and the compression from the same variables the destination checked.
fn channel(export: &Export<'_>) -> Result<tonic::transport::Channel, InitError> {
    let destination = export.otlp();
    let runtime = export.runtime.ok_or_else(|| {
        exporter_error(
            destination.kind.name(),
            ExporterBuildError::InternalFailure("OTLP/gRPC without its runtime".to_owned()),
        )
    })?;
    grpc_runtime::channel(destination, runtime)
        .map_err(|source| exporter_error(destination.kind.name(), source))
}

/// The crate's HTTP client to a signal's destination, noting failure causes in `report`, and
/// signing with SigV4 when the destination asks for it (feature `aws`).
fn http_client(
    destination: &Destination,
    report: &Arc<FailureReport>,
) -> Result<impl opentelemetry_http::HttpClient + 'static, InitError> {
    let client = blocking_client(destination)
        .map_err(|source| exporter_error(destination.kind.name(), source))?;
    let client = CauseNotingClient::new(client, report.clone());
    #[cfg(feature = "aws")]
    let client = crate::export::aws_sigv4::SigningClient::new(client, destination.sigv4.clone());
    Ok(client)
}

/// The exporter just built, reporting its failures to `report`; or why it could not be built.
fn reporting<E>(
    exporter: Result<E, ExporterBuildError>,
    report: Arc<FailureReport>,
) -> Result<Reporting<E>, InitError> {
    let signal = report.signal().name();
    exporter
        .map(|exporter| Reporting::new(exporter, report))
        .map_err(|source| exporter_error(signal, source))
}

fn exporter_error(signal: &'static str, source: ExporterBuildError) -> InitError {
    InitError::Exporter { signal, source }
}

/// Says where a signal goes, for the start-up line: `otlp http/protobuf http://...`, `console`,
/// `prometheus`, or `off`.
pub(crate) fn describe(export: &Export<'_>) -> String {
    if export.signal.exporters.is_empty() {
        return "off".to_owned();
    }
    let described: Vec<String> = export
        .signal
        .exporters
        .iter()
        .map(|exporter| match exporter {
            Exporter::Otlp => format!(
                "otlp {} {}",
                export.signal.protocol,
                export.otlp().shown_endpoint()
            ),
            Exporter::Console => "console (stdout)".to_owned(),
            #[cfg(feature = "prometheus")]
            Exporter::Prometheus => "prometheus (scraped)".to_owned(),
        })
        .collect();
    described.join(" + ")
}
