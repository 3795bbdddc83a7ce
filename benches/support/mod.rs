//! What the OTLP exporters do with telemetry, short of the network: the benchmarks measure the
//! real encoding without sending anything.

// Each benchmark is its own crate and uses part of this module.
#![allow(dead_code)]

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

/// What the OTLP exporter does with a batch of spans, short of the network.
#[derive(Debug, Default)]
pub struct EncodingProcessor {
    resource: ResourceAttributesWithSchema,
    batch: Mutex<Vec<SpanData>>,
}

impl EncodingProcessor {
    pub const BATCH_SIZE: usize = 512;
}

impl SpanProcessor for EncodingProcessor {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, span: SpanData) {
        let mut batch = self.batch.lock().unwrap();
        batch.push(span);
        if batch.len() == Self::BATCH_SIZE {
            let spans = std::mem::take(&mut *batch);
            let request = ExportTraceServiceRequest {
                resource_spans: group_spans_by_resource_and_scope(spans, &self.resource),
            };
            std::hint::black_box(request.encode_to_vec());
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.into();
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
