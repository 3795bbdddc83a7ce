//! OTLP span exporters that send what [`encoding`](crate::export::encoding) writes straight
//! from `SpanData`.
//!
//! The stock `opentelemetry-otlp` span exporter spends most of a span's export cost converting
//! `SpanData` to generated structs before prost encodes them (BENCHMARKS.md). These exporters
//! send the same bytes, encoded in one pass, over the same transports as the stock exporters
//! of the other signals (reqwest's blocking client for OTLP/HTTP, a tonic channel for gRPC),
//! with the same [`Destination`] (endpoint, headers, timeout, gzip, TLS), the same
//! [`retry`](crate::export::retry) policy and the same [`FailureReport`].
//!
//! A partial success (the collector accepted the request but rejected some of its spans) is
//! not retried, as the specification says; it is reported, and the rejected spans counted.
//!
//! No request is larger than [`MAX_REQUEST_SIZE`]: a receiver refuses a larger message whole,
//! with every span in it, and does not want it again. A batch whose encoding is larger (spans
//! with large attributes) is sent in consecutive requests within the limit, cut by
//! [`split`]; a span that alone would be larger cannot be sent and is dropped, counted in
//! `otel.sdk.exporter.span.exported` with `error.type=too_large` and reported
//! ([`FailureReport::too_large`]). Truncating it instead would send a span that says less than
//! it seems to (which attribute to cut, and how would the backend know?); the limits on
//! attribute values and counts are where spans are kept small, this is the last resort.

mod grpc;
mod http;

use std::sync::Arc;

use bytes::Bytes;
use opentelemetry::metrics::Meter;
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::{
    Resource,
    error::{OTelSdkError, OTelSdkResult},
    trace::{SpanData, SpanExporter},
};
use prost::Message;

use super::{
    destination::Destination,
    encoding::{Part, encode_export_request, split},
    failures::FailureReport,
    grpc_runtime::GrpcRuntime,
};
use crate::config::OtlpProtocol;

/// The largest encoded (uncompressed) `ExportTraceServiceRequest` one export sends: 4 MiB, the
/// smallest limit of the usual receivers. It is the default maximum size of a message a gRPC
/// server receives: tonic's `max_decoding_message_size` (`DEFAULT_MAX_RECV_MESSAGE_SIZE`, 4 MiB),
/// grpc-go's `defaultServerMaxReceiveMessageSize`, hence the OpenTelemetry Collector's OTLP
/// receiver (`max_recv_msg_size_mib`: 4), all checked against the decompressed message. OTLP/HTTP
/// receivers usually take more (the Collector's `max_request_body_size`: 20 MiB), but a request
/// within 4 MiB is accepted by all of them, so both transports use this one limit.
pub(crate) const MAX_REQUEST_SIZE: usize = 4 * 1024 * 1024;

/// The `User-Agent` of span exports, unless the configured headers set one. The OTLP exporter
/// specification (1.44.0, "User Agent") asks exporters to identify themselves, their language
/// and their version, in RFC 7231's format; over gRPC, tonic appends its own `tonic/x.y.z`.
const USER_AGENT: &str = concat!(
    "otel-monitor/",
    env!("CARGO_PKG_VERSION"),
    " (OTLP span exporter; Rust)"
);

/// The configured headers of `destination`, with [`USER_AGENT`] unless they set one: what both
/// transports send with every export (as HTTP headers, or as gRPC metadata).
fn export_headers(destination: &Destination) -> ::http::HeaderMap {
    let mut headers: ::http::HeaderMap = destination.headers.0.iter().cloned().collect();
    headers
        .entry(::http::header::USER_AGENT)
        .or_insert(::http::HeaderValue::from_static(USER_AGENT));
    headers
}

/// Sends spans to an OTLP endpoint, encoded straight from `SpanData`.
#[derive(Debug)]
pub(crate) struct DirectSpanExporter {
    transport: Transport,
    resource: Resource,
    report: Arc<FailureReport>,
}

#[derive(Debug)]
enum Transport {
    Http(http::HttpTransport),
    Grpc(grpc::GrpcTransport),
}

impl DirectSpanExporter {
    /// The exporter to `destination`, counting what it delivers and loses on `meter`. Over
    /// gRPC, its connection runs on `runtime`.
    pub(crate) fn new(
        destination: &Destination,
        meter: &Meter,
        runtime: Option<&GrpcRuntime>,
    ) -> Result<Self, ExporterBuildError> {
        let transport = match (destination.protocol, runtime) {
            (OtlpProtocol::HttpProtobuf, _) => {
                Transport::Http(http::HttpTransport::new(destination)?)
            }
            (OtlpProtocol::Grpc, Some(runtime)) => {
                Transport::Grpc(grpc::GrpcTransport::new(destination, runtime)?)
            }
            (OtlpProtocol::Grpc, None) => {
                return Err(ExporterBuildError::InternalFailure(
                    "OTLP/gRPC without its runtime".to_owned(),
                ));
            }
        };
        let component_type = match destination.protocol {
            OtlpProtocol::Grpc => "otlp_grpc_span_exporter",
            OtlpProtocol::HttpProtobuf => "otlp_http_span_exporter",
        };
        Ok(Self {
            transport,
            resource: Resource::builder_empty().build(),
            report: Arc::new(FailureReport::new(destination).counting_spans(meter, component_type)),
        })
    }
}

impl DirectSpanExporter {
    /// Sends one encoded request and says how it went.
    async fn send(&self, body: Vec<u8>) -> Result<ExportTraceServiceResponse, OTelSdkError> {
        match &self.transport {
            Transport::Http(transport) => transport.send(body).await,
            Transport::Grpc(transport) => transport.send(Bytes::from(body)).await,
        }
        .map_err(OTelSdkError::InternalFailure)
    }

    /// Counts the `spans` of a request the collector took, less those it rejected.
    fn delivered(&self, spans: u64, response: ExportTraceServiceResponse) {
        let (rejected, message) = response
            .partial_success
            .map(|partial| (partial.rejected_spans.max(0) as u64, partial.error_message))
            .unwrap_or_default();
        self.report.delivered(spans, rejected, &message);
    }

    /// Exports a batch whose one request would be over [`MAX_REQUEST_SIZE`], in the parts
    /// [`split`] cuts. Once a request fails, the later ones are not tried (what failed it, the
    /// collector gone, slow or throttling, would fail them too, each after its own timeout):
    /// their spans are counted as failed with it.
    async fn export_in_parts(&self, batch: &[SpanData]) -> OTelSdkResult {
        let mut failure: Option<(OTelSdkError, u64)> = None;
        for part in split(&self.resource, batch, MAX_REQUEST_SIZE) {
            let range = match part {
                Part::Spans(range) => range,
                Part::TooLarge { index, size } => {
                    self.report
                        .too_large(&batch[index].name, size, MAX_REQUEST_SIZE);
                    continue;
                }
            };
            let spans = range.len() as u64;
            if let Some((_, unsent)) = &mut failure {
                *unsent += spans;
                continue;
            }
            let mut body = Vec::with_capacity(MAX_REQUEST_SIZE);
            encode_export_request(&self.resource, &batch[range], &mut body);
            match self.send(body).await {
                Ok(response) => self.delivered(spans, response),
                Err(error) => failure = Some((error, spans)),
            }
        }
        match failure {
            None => Ok(()),
            Some((error, unsent)) => {
                self.report.failed(unsent, &error);
                Err(error)
            }
        }
    }
}

impl SpanExporter for DirectSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let mut body = Vec::with_capacity(batch.len() * 512);
        encode_export_request(&self.resource, &batch, &mut body);
        // Nearly always: the whole batch in one request, the batch freed before it is sent.
        if body.len() > MAX_REQUEST_SIZE {
            drop(body);
            return self.export_in_parts(&batch).await;
        }
        drop(batch);
        match self.send(body).await {
            Ok(response) => {
                self.delivered(spans, response);
                Ok(())
            }
            Err(error) => {
                self.report.failed(spans, &error);
                Err(error)
            }
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
}

/// Decodes an `ExportTraceServiceResponse`; an empty or undecodable body is a full success.
fn decode_response(body: &[u8]) -> ExportTraceServiceResponse {
    ExportTraceServiceResponse::decode(body).unwrap_or_default()
}
