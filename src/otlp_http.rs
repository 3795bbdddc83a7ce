//! OTLP/HTTP span export through the direct encoder of [`otlp_encoding`](crate::otlp_encoding).
//!
//! The stock `opentelemetry-otlp` span exporter spends most of a span's export cost converting
//! `SpanData` to generated structs before prost encodes them (BENCHMARKS.md). This exporter
//! sends the same bytes, encoded straight from `SpanData`, with the same client (reqwest's
//! blocking client, on the batch processor's thread) and the same configuration variables:
//!
//! - the endpoint: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as given, else `OTEL_EXPORTER_OTLP_ENDPOINT`
//!   with `/v1/traces`, else `http://localhost:4318/v1/traces`;
//! - the headers: `OTEL_EXPORTER_OTLP_TRACES_HEADERS`, else `OTEL_EXPORTER_OTLP_HEADERS`
//!   (`key=value,...`, values percent-decoded);
//! - the timeout: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else `OTEL_EXPORTER_OTLP_TIMEOUT`
//!   (milliseconds, 10 s by default).
//!
//! A request the collector refuses as overloaded or unavailable (429, 502, 503, 504) is retried
//! twice, 100 ms then 200 ms later. Compression is the stock exporter's: with
//! `OTEL_EXPORTER_OTLP_(TRACES_)COMPRESSION` set, [`providers`](crate::providers) uses it instead.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode, Uri};
use opentelemetry_http::HttpClient;
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{SpanData, SpanExporter},
};

use crate::otlp_encoding::encode_export_request;

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The waits before the retries of a refused export.
const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(200)];

/// Sends spans to an OTLP/HTTP endpoint, encoded straight from `SpanData`.
#[derive(Debug)]
pub(crate) struct DirectHttpSpanExporter {
    client: Arc<reqwest::blocking::Client>,
    endpoint: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
    resource: Resource,
}

impl DirectHttpSpanExporter {
    /// Builds the exporter from the environment, as the stock exporter reads it.
    pub(crate) fn from_env(endpoint: &str) -> Result<Self, ExporterBuildError> {
        let invalid = |variable: &str, reason: String| {
            ExporterBuildError::InvalidConfiguration(format!("{variable}: {reason}"))
        };
        let endpoint: Uri = endpoint
            .parse()
            .map_err(|error| invalid("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("{error}")))?;
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
        // reqwest's blocking client runs a runtime of its own: it cannot be built on a thread
        // that is already inside a Tokio runtime, such as the one calling `init()`.
        let client = std::thread::Builder::new()
            .name("otel-monitor-http-client".to_owned())
            .spawn(move || {
                reqwest::blocking::Client::builder()
                    .timeout(timeout)
                    .build()
            })
            .map_err(|error| ExporterBuildError::InternalFailure(error.to_string()))?
            .join()
            .map_err(|_| {
                ExporterBuildError::InternalFailure("building the HTTP client panicked".into())
            })?
            .map_err(|error| ExporterBuildError::InternalFailure(error.to_string()))?;
        Ok(Self {
            client: Arc::new(client),
            endpoint,
            headers,
            resource: Resource::builder_empty().build(),
        })
    }

    fn request(&self, body: Bytes) -> Result<Request<Bytes>, OTelSdkError> {
        let mut request = Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(body)
            .map_err(|error| OTelSdkError::InternalFailure(error.to_string()))?;
        for (name, value) in &self.headers {
            request.headers_mut().insert(name.clone(), value.clone());
        }
        Ok(request)
    }
}

impl SpanExporter for DirectHttpSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let mut body = Vec::with_capacity(batch.len() * 512);
        encode_export_request(&self.resource, &batch, &mut body);
        drop(batch);
        let body = Bytes::from(body);
        let mut backoff = RETRY_BACKOFF.iter();
        loop {
            let response = self
                .client
                .send_bytes(self.request(body.clone())?)
                .await
                .map_err(|error| {
                    OTelSdkError::InternalFailure(format!("HTTP export failed: {error}"))
                })?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let retryable = matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS
                    | StatusCode::BAD_GATEWAY
                    | StatusCode::SERVICE_UNAVAILABLE
                    | StatusCode::GATEWAY_TIMEOUT
            );
            match backoff.next() {
                Some(wait) if retryable => std::thread::sleep(*wait),
                _ => {
                    return Err(OTelSdkError::InternalFailure(format!(
                        "the collector answered {status}"
                    )));
                }
            }
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
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
