//! OTLP/HTTP with protobuf bodies, through reqwest's blocking client on the batch processor's
//! thread, as the stock exporter sends it.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Request, StatusCode, Uri};
use opentelemetry_http::HttpClient;
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};

use super::{ExportSettings, RETRY_BACKOFF, decode_response, invalid, log_partial_success};

/// Posts encoded `ExportTraceServiceRequest`s to an OTLP/HTTP endpoint.
#[derive(Debug)]
pub(super) struct HttpTransport {
    client: Arc<reqwest::blocking::Client>,
    endpoint: Uri,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl HttpTransport {
    /// The transport to `endpoint`, the whole URL (`/v1/traces` included).
    pub(super) fn new(
        endpoint: &str,
        ExportSettings { headers, timeout }: ExportSettings,
    ) -> Result<Self, ExporterBuildError> {
        let endpoint: Uri = endpoint
            .parse()
            .map_err(|error| invalid("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("{error}")))?;
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

    /// Sends `body`, retrying while the collector says it is overloaded or unavailable.
    pub(super) async fn send(&self, body: Bytes) -> OTelSdkResult {
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
                log_partial_success(&decode_response(response.body()));
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
}
