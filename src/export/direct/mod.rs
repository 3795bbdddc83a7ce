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
    destination::Destination, encoding::encode_export_request, failures::FailureReport,
    grpc_runtime::GrpcRuntime,
};
use crate::config::OtlpProtocol;

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

impl SpanExporter for DirectSpanExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len() as u64;
        let mut body = Vec::with_capacity(batch.len() * 512);
        encode_export_request(&self.resource, &batch, &mut body);
        drop(batch);
        let sent = match &self.transport {
            Transport::Http(transport) => transport.send(body).await,
            Transport::Grpc(transport) => transport.send(Bytes::from(body)).await,
        };
        match sent {
            Ok(response) => {
                let (rejected, message) = response
                    .partial_success
                    .map(|partial| (partial.rejected_spans.max(0) as u64, partial.error_message))
                    .unwrap_or_default();
                self.report.delivered(spans, rejected, &message);
                Ok(())
            }
            Err(failure) => {
                let error = OTelSdkError::InternalFailure(failure);
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
