//! OTLP/gRPC, through a tonic channel on the crate's [`GrpcRuntime`], as the stock exporters
//! send it: the request body is the encoded `ExportTraceServiceRequest`, framed by tonic.

use std::time::Duration;

use bytes::{Buf, BufMut, Bytes};
use http::uri::PathAndQuery;
use opentelemetry_otlp::ExporterBuildError;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use tokio::runtime::Handle;
use tonic::{
    Status,
    client::Grpc,
    codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder},
    metadata::MetadataMap,
    transport::Channel,
};

use super::decode_response;
use crate::export::{
    destination::{Compression, Destination},
    failures::render_chain,
    grpc_runtime::{GrpcRuntime, channel},
    retry::{Verdict, connection_verdict, grpc_verdict, with_retries},
};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Calls `TraceService/Export` on an OTLP/gRPC endpoint with encoded requests.
#[derive(Debug)]
pub(super) struct GrpcTransport {
    channel: Channel,
    metadata: MetadataMap,
    compression: Option<CompressionEncoding>,
    timeout: Duration,
    runtime: Handle,
}

impl GrpcTransport {
    pub(super) fn new(
        destination: &Destination,
        runtime: &GrpcRuntime,
    ) -> Result<Self, ExporterBuildError> {
        Ok(Self {
            channel: channel(destination, runtime)?,
            metadata: MetadataMap::from_headers(super::export_headers(destination)),
            compression: (destination.compression == Compression::Gzip)
                .then_some(CompressionEncoding::Gzip),
            timeout: destination.timeout,
            runtime: runtime.handle().clone(),
        })
    }

    /// Sends `body`, retried as [`retry`](crate::export::retry) says, within the timeout. The
    /// calls and the waits between them run on the gRPC runtime, whose timer bounds each call
    /// by the time left.
    pub(super) async fn send(&self, body: Bytes) -> Result<ExportTraceServiceResponse, String> {
        let (channel, metadata, compression) = (
            self.channel.clone(),
            self.metadata.clone(),
            self.compression,
        );
        let timeout = self.timeout;
        let call = async move {
            with_retries(timeout, |left| {
                let call = call(channel.clone(), metadata.clone(), compression, body.clone());
                async move {
                    tokio::time::timeout(left, call).await.unwrap_or_else(|_| {
                        Err(("the export timed out".to_owned(), Verdict::Retry))
                    })
                }
            })
            .await
        };
        self.runtime
            .spawn(call)
            .await
            .unwrap_or_else(|_| Err("the gRPC runtime has stopped".to_owned()))
    }
}

async fn call(
    channel: Channel,
    metadata: MetadataMap,
    compression: Option<CompressionEncoding>,
    body: Bytes,
) -> Result<ExportTraceServiceResponse, (String, Verdict)> {
    let mut request = tonic::Request::new(body);
    *request.metadata_mut() = metadata;
    let mut client = Grpc::new(channel);
    if let Some(encoding) = compression {
        client = client.send_compressed(encoding);
    }
    client.ready().await.map_err(|error| {
        let cause = render_chain(&error);
        let verdict = connection_verdict(&cause);
        (format!("gRPC export failed: {cause}"), verdict)
    })?;
    let response = client
        .unary(
            request,
            PathAndQuery::from_static(EXPORT_PATH),
            EncodedCodec,
        )
        .await
        .map_err(|status| {
            let described = describe(&status);
            // A connection that failed its TLS handshake surfaces as UNAVAILABLE: not transient.
            let verdict = match connection_verdict(&described) {
                Verdict::Final => Verdict::Final,
                _ => grpc_verdict(&status),
            };
            (described, verdict)
        })?;
    Ok(response.into_inner())
}

/// What a failed call says: its code, and for a failure of the connection itself, the cause.
/// The status message a collector sends can echo credentials back, and is left out.
fn describe(status: &Status) -> String {
    match std::error::Error::source(status) {
        Some(cause) => format!("gRPC export failed: {}", render_chain(cause)),
        None => format!("the collector answered gRPC status {:?}", status.code()),
    }
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
