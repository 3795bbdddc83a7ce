//! The OTLP/HTTP client of every signal: reqwest's blocking client, with the destination's TLS,
//! used on the SDK's export threads.

use std::sync::Arc;

use opentelemetry_http::{Bytes, HttpError, Request, Response};
use opentelemetry_otlp::ExporterBuildError;

use super::{destination::Destination, failures::FailureReport};

/// Builds the blocking client for `destination`. reqwest's blocking client runs a runtime of
/// its own, which cannot be built on a thread inside a Tokio runtime (such as the one calling
/// `init()`): it is built on a thread of its own.
pub(crate) fn blocking_client(
    destination: &Destination,
) -> Result<reqwest::blocking::Client, ExporterBuildError> {
    // The crate's own TLS configuration, so that every transport trusts the same roots. A plain
    // `http://` destination needs none: its configuration trusts nothing and loads nothing.
    let tls = destination.tls.rustls_config(destination.is_https())?;
    let builder = reqwest::blocking::Client::builder()
        .timeout(destination.timeout)
        .use_preconfigured_tls(tls);
    std::thread::Builder::new()
        .name("otel-monitor-http-client".to_owned())
        .spawn(move || builder.build())
        .map_err(|error| ExporterBuildError::InternalFailure(error.to_string()))?
        .join()
        .map_err(|_| {
            ExporterBuildError::InternalFailure("building the HTTP client panicked".into())
        })?
        .map_err(|error| ExporterBuildError::InternalFailure(error.to_string()))
}

/// The client given to the stock metric and log exporters. They report every failure to
/// connect as "network error"; this client notes the cause of each request's failure (a refused
/// connection, an untrusted certificate) in the signal's [`FailureReport`], so that the warning
/// can say it.
#[derive(Debug)]
pub(crate) struct CauseNotingClient {
    client: reqwest::blocking::Client,
    report: Arc<FailureReport>,
}

impl CauseNotingClient {
    pub(crate) fn new(client: reqwest::blocking::Client, report: Arc<FailureReport>) -> Self {
        Self { client, report }
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for CauseNotingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let result = opentelemetry_http::HttpClient::send_bytes(&self.client, request).await;
        let error = result.as_ref().err().map(|error| error.as_ref() as _);
        self.report.note_cause(error);
        result
    }
}
