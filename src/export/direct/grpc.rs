//! OTLP/gRPC, through a tonic channel on the application's Tokio runtime, as the stock exporter
//! sends it: the request body is the encoded `ExportTraceServiceRequest`, framed by tonic.

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use tonic::{
    Code, Status,
    client::Grpc,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::MetadataMap,
    transport::{Channel, Endpoint},
};

use super::{ExportSettings, RETRY_BACKOFF, decode_response, invalid, log_partial_success};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Calls `TraceService/Export` on an OTLP/gRPC endpoint with encoded requests.
#[derive(Debug)]
pub(super) struct GrpcTransport {
    channel: Channel,
    metadata: MetadataMap,
}

impl GrpcTransport {
    /// The transport to `endpoint` (`http://host:port`). Must be made inside a Tokio runtime,
    /// which then carries the connection.
    pub(super) fn new(
        endpoint: &str,
        ExportSettings { headers, timeout }: ExportSettings,
    ) -> Result<Self, ExporterBuildError> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|error| {
                invalid(
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    format!("{endpoint:?}: {error}"),
                )
            })?
            .timeout(timeout)
            .connect_lazy();
        Ok(Self {
            channel,
            metadata: MetadataMap::from_headers(headers.into_iter().collect()),
        })
    }

    async fn call(&self, body: Bytes) -> Result<ExportTraceServiceResponse, Status> {
        let mut request = tonic::Request::new(body);
        *request.metadata_mut() = self.metadata.clone();
        let mut client = Grpc::new(self.channel.clone());
        client
            .ready()
            .await
            .map_err(|error| Status::unavailable(error.to_string()))?;
        let response = client
            .unary(
                request,
                PathAndQuery::from_static(EXPORT_PATH),
                EncodedCodec,
            )
            .await?;
        Ok(response.into_inner())
    }

    /// Sends `body`, retrying on the codes the OTLP specification calls retryable.
    pub(super) async fn send(&self, body: Bytes) -> OTelSdkResult {
        let mut backoff = RETRY_BACKOFF.iter();
        loop {
            let status = match self.call(body.clone()).await {
                Ok(response) => {
                    log_partial_success(&response);
                    return Ok(());
                }
                Err(status) => status,
            };
            let retryable = matches!(
                status.code(),
                Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::Aborted
                    | Code::OutOfRange
                    | Code::Unavailable
                    | Code::DataLoss
            );
            match backoff.next() {
                Some(wait) if retryable => std::thread::sleep(*wait),
                // The status message can echo credentials back; the code and, for a failure
                // of the connection itself, its cause are enough to act on.
                _ => {
                    return Err(OTelSdkError::InternalFailure(match status_cause(&status) {
                        Some(cause) => format!("gRPC export failed: {cause}"),
                        None => format!("the collector answered gRPC status {:?}", status.code()),
                    }));
                }
            }
        }
    }
}

/// The innermost cause of a status tonic made itself, from a failed connection.
fn status_cause(status: &Status) -> Option<String> {
    let mut cause = std::error::Error::source(status)?;
    while let Some(deeper) = cause.source() {
        cause = deeper;
    }
    Some(cause.to_string())
}

/// Sends an already encoded request message as it is, and decodes the response.
#[derive(Debug, Clone, Copy)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        *self
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        let body = src.copy_to_bytes(src.remaining());
        Ok(Some(decode_response(&body)))
    }
}
