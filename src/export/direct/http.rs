//! OTLP/HTTP with protobuf bodies, through reqwest's blocking client on the batch processor's
//! thread, as the stock exporters send it.

use std::{io::Write, time::Duration};

use http::{HeaderMap, HeaderValue, header};
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

use super::decode_response;
use crate::export::{
    destination::{Compression, Destination, invalid},
    failures::render_chain,
    http_client::blocking_client,
    retry::{Verdict, connection_verdict, http_verdict, with_retries},
};

/// Posts encoded `ExportTraceServiceRequest`s to an OTLP/HTTP endpoint.
#[derive(Debug)]
pub(super) struct HttpTransport {
    client: reqwest::blocking::Client,
    endpoint: reqwest::Url,
    headers: HeaderMap,
    compression: Compression,
    timeout: Duration,
    #[cfg(feature = "aws")]
    sigv4: Option<crate::export::aws_sigv4::SigV4>,
}

impl HttpTransport {
    pub(super) fn new(destination: &Destination) -> Result<Self, ExporterBuildError> {
        let endpoint = reqwest::Url::parse(&destination.endpoint.to_string()).map_err(|error| {
            invalid(
                &destination.kind.variables("ENDPOINT")[0],
                error.to_string(),
            )
        })?;
        let mut headers = super::export_headers(destination);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        if destination.compression == Compression::Gzip {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        Ok(Self {
            client: blocking_client(destination)?,
            endpoint,
            headers,
            compression: destination.compression,
            timeout: destination.timeout,
            #[cfg(feature = "aws")]
            sigv4: destination.sigv4.clone(),
        })
    }

    /// Sends `body`, retried as [`retry`](crate::export::retry) says, within the timeout. It
    /// blocks, as the stock exporter's blocking client does: the SDK's batch processor runs it on
    /// a thread of its own.
    pub(super) async fn send(&self, body: Vec<u8>) -> Result<ExportTraceServiceResponse, String> {
        let body = match self.compression {
            Compression::None => body,
            Compression::Gzip => gzip(&body),
        };
        // The body is shared by the attempts, not copied for each.
        let body = bytes::Bytes::from(body);
        with_retries(self.timeout, |left| {
            std::future::ready(self.attempt(body.clone(), left))
        })
        .await
    }

    fn attempt(
        &self,
        body: bytes::Bytes,
        left: Duration,
    ) -> Result<ExportTraceServiceResponse, (String, Verdict)> {
        let request = self
            .client
            .post(self.endpoint.clone())
            .headers(self.headers.clone())
            .timeout(left);
        // Each attempt signed anew: a signature is valid for minutes only.
        #[cfg(feature = "aws")]
        let request = match &self.sigv4 {
            Some(sigv4) => request.headers(
                sigv4
                    .sign(self.endpoint.as_str(), &self.headers, &body)
                    .map_err(|error| (error, Verdict::Retry))?
                    .into_iter()
                    .collect(),
            ),
            None => request,
        };
        let response = request.body(body).send().map_err(|error| {
            let cause = render_chain(&error);
            let verdict = connection_verdict(&cause);
            (cause, verdict)
        })?;
        let status = response.status();
        if status.is_success() {
            let body = response.bytes().unwrap_or_default();
            return Ok(decode_response(&body));
        }
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        Err((
            format!("the collector answered {status}"),
            http_verdict(status, retry_after.as_deref()),
        ))
    }
}

/// Compresses an encoded request for `Content-Encoding: gzip`.
fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}
