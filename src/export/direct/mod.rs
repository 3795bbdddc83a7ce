//! OTLP span exporters that send what [`otlp_encoding`](crate::export::encoding) writes straight
//! from `SpanData`.
//!
//! The stock `opentelemetry-otlp` span exporter spends most of a span's export cost converting
//! `SpanData` to generated structs before prost encodes them (BENCHMARKS.md). These exporters
//! send the same bytes, encoded in one pass, over the same transports as the stock exporter
//! (reqwest's blocking client for HTTP/protobuf, a tonic channel for gRPC), configured by the
//! same variables:
//!
//! - the endpoint, as [`providers`](crate::providers) resolves it for the start-up line;
//! - the headers: `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`
//!   (`key=value,...`, values percent-decoded), sent as HTTP headers or gRPC metadata;
//! - the timeout: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`
//!   (milliseconds, 10 s by default).
//!
//! An export the collector refuses as overloaded or unavailable is retried twice, 100 ms then
//! 200 ms later. A partial success (the collector accepted the request but rejected some of its
//! spans) is not retried, as the specification says; it is logged. Compression, TLS and endpoints without
//! a scheme are the stock exporter's: [`providers`](crate::providers) uses it for those.

mod grpc;
mod http;

use std::time::Duration;

use ::http::{HeaderName, HeaderValue};
use bytes::Bytes;
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    trace::{SpanData, SpanExporter},
};
use prost::Message;

use crate::{config::OtlpProtocol, export::encoding::encode_export_request, export::failures::TARGET};

/// Sends spans to an OTLP endpoint, encoded straight from `SpanData`.
#[derive(Debug)]
pub(crate) struct DirectSpanExporter {
    transport: Transport,
    resource: Resource,
}

#[derive(Debug)]
enum Transport {
    Http(http::HttpTransport),
    Grpc(grpc::GrpcTransport),
}

impl DirectSpanExporter {
    /// The exporter to `endpoint` over `protocol`, the rest of its configuration read from the
    /// environment. Over gRPC, it must be made inside a Tokio runtime.
    pub(crate) fn from_env(
        protocol: OtlpProtocol,
        endpoint: &str,
    ) -> Result<Self, ExporterBuildError> {
        let settings = ExportSettings::from_env()?;
        let transport = match protocol {
            OtlpProtocol::HttpProtobuf => {
                Transport::Http(http::HttpTransport::new(endpoint, settings)?)
            }
            OtlpProtocol::Grpc => Transport::Grpc(grpc::GrpcTransport::new(endpoint, settings)?),
        };
        Ok(Self {
            transport,
            resource: Resource::builder_empty().build(),
        })
    }
}

impl SpanExporter for DirectSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut body = Vec::with_capacity(batch.len() * 512);
        encode_export_request(&self.resource, &batch, &mut body);
        drop(batch);
        let body = Bytes::from(body);
        match &self.transport {
            Transport::Http(transport) => transport.send(body).await,
            Transport::Grpc(transport) => transport.send(body).await,
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The waits before the retries of a refused export.
const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(200)];

/// What both transports read from the environment besides the endpoint.
#[derive(Debug)]
struct ExportSettings {
    headers: Vec<(HeaderName, HeaderValue)>,
    timeout: Duration,
}

impl ExportSettings {
    /// Reads the headers and the timeout, as the stock exporter reads them.
    fn from_env() -> Result<Self, ExporterBuildError> {
        let (headers_variable, headers) = first_set(&[
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            "OTEL_EXPORTER_OTLP_HEADERS",
        ]);
        let headers = parse_headers(headers.as_deref().unwrap_or_default())
            .map_err(|reason| invalid(headers_variable, reason))?;
        let (timeout_variable, timeout) = first_set(&[
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
        ]);
        let timeout = match timeout {
            Some(milliseconds) => {
                Duration::from_millis(milliseconds.trim().parse().map_err(|_| {
                    invalid(
                        timeout_variable,
                        format!("{milliseconds:?} is not milliseconds"),
                    )
                })?)
            }
            None => DEFAULT_TIMEOUT,
        };
        Ok(Self { headers, timeout })
    }
}

fn invalid(variable: &str, reason: String) -> ExporterBuildError {
    ExporterBuildError::InvalidConfiguration(format!("{variable}: {reason}"))
}

/// Logs the spans a collector accepted the request for but rejected, from its
/// `ExportTraceServiceResponse`.
fn log_partial_success(response: &ExportTraceServiceResponse) {
    if let Some(partial) = &response.partial_success
        && (partial.rejected_spans > 0 || !partial.error_message.is_empty())
    {
        tracing::warn!(
            target: TARGET,
            rejected_spans = partial.rejected_spans,
            "the collector rejected part of a span export: {}",
            partial.error_message
        );
    }
}

/// Decodes an `ExportTraceServiceResponse`; an empty or undecodable body is a full success.
fn decode_response(body: &[u8]) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse::decode(body).unwrap_or_default()
}

/// The first of `variables` that is set and not empty, with its name (the last name if none is).
fn first_set(variables: &[&'static str]) -> (&'static str, Option<String>) {
    for variable in variables {
        if let Some(value) = std::env::var(variable)
            .ok()
            .filter(|value| !value.is_empty())
        {
            return (variable, Some(value));
        }
    }
    (variables[variables.len() - 1], None)
}

/// Parses `key=value,key=value`, values percent-decoded, as the OTLP exporter specification says.
fn parse_headers(value: &str) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
    value
        .split(',')
        .filter(|pair| !pair.trim().is_empty())
        .map(|pair| {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("{pair:?} is not key=value"))?;
            let name = HeaderName::try_from(name.trim())
                .map_err(|_| format!("{:?} is not a header name", name.trim()))?;
            let value = HeaderValue::try_from(percent_decode(value.trim())?)
                .map_err(|_| format!("the value of {name} is not a header value"))?;
            Ok((name, value))
        })
        .collect()
}

fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = value
                .get(index + 1..index + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| format!("{value:?} has a bad percent escape"))?;
            decoded.push(hex);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).map_err(|_| format!("{value:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_parsed_and_percent_decoded() {
        let headers = parse_headers("api-key=a%20b%3Dc, x-tenant = blue ,").unwrap();
        assert_eq!(
            headers,
            [
                (
                    HeaderName::from_static("api-key"),
                    HeaderValue::from_static("a b=c")
                ),
                (
                    HeaderName::from_static("x-tenant"),
                    HeaderValue::from_static("blue")
                ),
            ]
        );
        assert!(parse_headers("no-equals-sign").is_err());
        assert!(parse_headers("bad name=1").is_err());
        assert!(parse_headers("key=%zz").is_err());
    }
}
