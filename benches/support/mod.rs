//! What the OTLP exporters do with telemetry, short of the network: the benchmarks measure the
//! real encoding without sending anything.

// Each benchmark is its own crate and uses part of this module.
#![allow(dead_code)]

// otel-monitor's span encoder is crate-private; the benches compile the same source file as their
// own module. Under `cargo clippy --all-targets` that includes the module's unit tests, which a
// bench without the test harness never calls.
#[path = "../../src/export/encoding.rs"]
pub mod otlp_encoding;

use std::{sync::Mutex, time::Duration};

use opentelemetry::Context;
use opentelemetry_proto::{
    tonic::collector::{
        metrics::v1::ExportMetricsServiceRequest, trace::v1::ExportTraceServiceRequest,
    },
    transform::{
        common::tonic::ResourceAttributesWithSchema,
        trace::tonic::group_spans_by_resource_and_scope,
    },
};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    metrics::{Temporality, data::ResourceMetrics, exporter::PushMetricExporter},
    trace::{Span, SpanData, SpanProcessor},
};
use prost::Message;

/// The criterion settings every benchmark here runs with: 1 s of warm-up, 4 s of measurement.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

/// How a batch of spans becomes an OTLP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanEncoding {
    /// otel-monitor's exporters: straight from `SpanData` (`src/export/encoding.rs`).
    Direct,
    /// `opentelemetry-otlp`'s exporters: converted to `opentelemetry-proto`'s structs, then prost.
    Stock,
}

/// What an OTLP span exporter does with a batch of spans, short of the network.
#[derive(Debug)]
pub struct EncodingProcessor {
    encoding: SpanEncoding,
    resource: Resource,
    stock_resource: ResourceAttributesWithSchema,
    batch: Mutex<Vec<SpanData>>,
}

impl EncodingProcessor {
    pub const BATCH_SIZE: usize = 512;

    pub fn new(encoding: SpanEncoding) -> Self {
        Self {
            encoding,
            resource: Resource::builder_empty().build(),
            stock_resource: ResourceAttributesWithSchema::default(),
            batch: Mutex::default(),
        }
    }
}

impl SpanProcessor for EncodingProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let mut batch = self.batch.lock().unwrap();
        batch.push(span);
        if batch.len() == Self::BATCH_SIZE {
            let spans = std::mem::take(&mut *batch);
            let encoded = match self.encoding {
                SpanEncoding::Direct => {
                    let mut buffer = Vec::with_capacity(spans.len() * 512);
                    otlp_encoding::encode_export_request(&self.resource, &spans, &mut buffer);
                    buffer
                }
                SpanEncoding::Stock => ExportTraceServiceRequest {
                    resource_spans: group_spans_by_resource_and_scope(spans, &self.stock_resource),
                }
                .encode_to_vec(),
            };
            std::hint::black_box(encoded);
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
        self.stock_resource = resource.into();
    }
}

/// What the OTLP metric exporter does with a collection, short of the network.
#[derive(Debug)]
pub struct EncodingMetricExporter;

impl PushMetricExporter for EncodingMetricExporter {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        std::hint::black_box(ExportMetricsServiceRequest::from(metrics).encode_to_vec());
        Ok(())
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn temporality(&self) -> Temporality {
        Temporality::Cumulative
    }
}
