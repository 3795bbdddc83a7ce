//! The SDK providers of each signal, with the exporters the settings name.

use opentelemetry_otlp::{ExporterBuildError, LogExporter, MetricExporter, SpanExporter};
use opentelemetry_sdk::{
    Resource, logs::SdkLoggerProvider, metrics::SdkMeterProvider, trace::SdkTracerProvider,
};

use crate::{
    InitError,
    config::{Exporter, OtlpProtocol, Signal},
    export::direct::DirectSpanExporter,
    export::failures::{FailureReport, Reporting},
};

/// The tracer provider, or `None` when traces are off.
pub(crate) fn tracer_provider(
    signal: &Signal,
    resource: &Resource,
    meter: &opentelemetry::metrics::Meter,
) -> Result<Option<SdkTracerProvider>, InitError> {
    if signal.exporters.is_empty() {
        return Ok(None);
    }
    let mut builder = SdkTracerProvider::builder().with_resource(resource.clone());
    for exporter in &signal.exporters {
        builder = match exporter {
            Exporter::Otlp if direct_export_applies(signal) => {
                builder.with_batch_exporter(direct_span_exporter(signal, meter)?)
            }
            Exporter::Otlp => builder.with_batch_exporter(otlp_span_exporter(signal, meter)?),
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
/// fills when `prometheus` is one of the exporters.
pub(crate) fn meter_provider(
    signal: &Signal,
    resource: &Resource,
) -> Result<Option<MeterProvider>, InitError> {
    if signal.exporters.is_empty() {
        return Ok(None);
    }
    let mut builder = SdkMeterProvider::builder().with_resource(resource.clone());
    #[cfg(feature = "prometheus")]
    let mut prometheus = None;
    for exporter in &signal.exporters {
        builder = match exporter {
            Exporter::Otlp => builder.with_periodic_exporter(otlp_metric_exporter(signal)?),
            Exporter::Console => {
                builder.with_periodic_exporter(opentelemetry_stdout::MetricExporter::default())
            }
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
    signal: &Signal,
    resource: &Resource,
) -> Result<Option<SdkLoggerProvider>, InitError> {
    if signal.exporters.is_empty() {
        return Ok(None);
    }
    let mut builder = SdkLoggerProvider::builder().with_resource(resource.clone());
    for exporter in &signal.exporters {
        builder = match exporter {
            Exporter::Otlp => builder.with_batch_exporter(otlp_log_exporter(signal)?),
            Exporter::Console => {
                builder.with_batch_exporter(opentelemetry_stdout::LogExporter::default())
            }
            #[cfg(feature = "prometheus")]
            Exporter::Prometheus => builder,
        };
    }
    Ok(Some(builder.build()))
}

/// Whether spans go through the direct encoder ([`direct_export`](crate::export::direct)): unless
/// compression is configured, or a gRPC endpoint is not plain `http://` (TLS, or no scheme and
/// `OTEL_EXPORTER_OTLP_INSECURE` to read), which the stock exporter handles.
fn direct_export_applies(signal: &Signal) -> bool {
    let compressed = [
        "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION",
        "OTEL_EXPORTER_OTLP_COMPRESSION",
    ]
    .iter()
    .any(|variable| std::env::var_os(variable).is_some_and(|value| !value.is_empty()));
    let plain_grpc = || otlp_destination(signal, "TRACES", "v1/traces").starts_with("http://");
    !compressed && (signal.protocol == OtlpProtocol::HttpProtobuf || plain_grpc())
}

/// The OTLP span exporter with the direct encoder, counting and reporting the spans it cannot
/// deliver.
fn direct_span_exporter(
    signal: &Signal,
    meter: &opentelemetry::metrics::Meter,
) -> Result<Reporting<DirectSpanExporter>, InitError> {
    let destination = otlp_destination(signal, "TRACES", "v1/traces");
    let exporter = DirectSpanExporter::from_env(signal.protocol, &destination);
    let report = FailureReport::new("traces", destination)
        .counting_spans(meter, span_component_type(signal.protocol));
    reporting(exporter, report)
}

/// The stock OTLP span exporter, counting and reporting the spans it cannot deliver.
fn otlp_span_exporter(
    signal: &Signal,
    meter: &opentelemetry::metrics::Meter,
) -> Result<Reporting<SpanExporter>, InitError> {
    let exporter = match signal.protocol {
        OtlpProtocol::Grpc => SpanExporter::builder().with_tonic().build(),
        OtlpProtocol::HttpProtobuf => SpanExporter::builder().with_http().build(),
    };
    let report = FailureReport::new("traces", otlp_destination(signal, "TRACES", "v1/traces"))
        .counting_spans(meter, span_component_type(signal.protocol));
    reporting(exporter, report)
}

/// The `otel.component.type` of the span exporter, as the SDK self-observability conventions
/// name it.
fn span_component_type(protocol: OtlpProtocol) -> &'static str {
    match protocol {
        OtlpProtocol::Grpc => "otlp_grpc_span_exporter",
        OtlpProtocol::HttpProtobuf => "otlp_http_span_exporter",
    }
}

/// The OTLP metric exporter, reporting the exports it cannot deliver.
fn otlp_metric_exporter(signal: &Signal) -> Result<Reporting<MetricExporter>, InitError> {
    let exporter = match signal.protocol {
        OtlpProtocol::Grpc => MetricExporter::builder().with_tonic().build(),
        OtlpProtocol::HttpProtobuf => MetricExporter::builder().with_http().build(),
    };
    let report = FailureReport::new("metrics", otlp_destination(signal, "METRICS", "v1/metrics"));
    reporting(exporter, report)
}

/// The OTLP log exporter, reporting the log records it cannot deliver.
fn otlp_log_exporter(signal: &Signal) -> Result<Reporting<LogExporter>, InitError> {
    let exporter = match signal.protocol {
        OtlpProtocol::Grpc => LogExporter::builder().with_tonic().build(),
        OtlpProtocol::HttpProtobuf => LogExporter::builder().with_http().build(),
    };
    let report = FailureReport::new("logs", otlp_destination(signal, "LOGS", "v1/logs"));
    reporting(exporter, report)
}

/// The exporter just built, reporting its failures to `report`; or why it could not be built.
fn reporting<E>(
    exporter: Result<E, ExporterBuildError>,
    report: FailureReport,
) -> Result<Reporting<E>, InitError> {
    match exporter {
        Ok(exporter) => Ok(Reporting::new(exporter, report)),
        Err(source) => Err(InitError::Exporter {
            signal: report.signal(),
            source,
        }),
    }
}

/// Says where a signal goes, for the start-up line: `otlp http/protobuf http://...`, `console`,
/// `prometheus`, or `off`.
pub(crate) fn describe(signal: &Signal, name: &str, http_path: &str) -> String {
    if signal.exporters.is_empty() {
        return "off".to_owned();
    }
    let described: Vec<String> = signal
        .exporters
        .iter()
        .map(|exporter| match exporter {
            Exporter::Otlp => format!(
                "otlp {} {}",
                signal.protocol,
                otlp_destination(signal, name, http_path)
            ),
            Exporter::Console => "console (stdout)".to_owned(),
            #[cfg(feature = "prometheus")]
            Exporter::Prometheus => "prometheus (scraped)".to_owned(),
        })
        .collect();
    described.join(" + ")
}

/// The endpoint the OTLP exporter sends a signal to, as it resolves it from the environment.
/// Used only to tell the user; the exporter reads the variables itself.
fn otlp_destination(signal: &Signal, name: &str, http_path: &str) -> String {
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
