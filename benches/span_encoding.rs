//! Encoding a batch of spans into an OTLP `ExportTraceServiceRequest`: the stock path
//! (`opentelemetry-proto`'s conversion to its generated structs, then prost) against
//! `src/export/encoding.rs`, which writes the same bytes straight from `SpanData`.
//!
//! Each iteration encodes one batch of 512 HTTP server spans, as the batch span processor hands
//! them to the exporter (12 attributes: strings, ints and a string array; no events or links;
//! status unset, or error on 1 span in 8; a remote parent). Both routines take the batch by value
//! and drop it, as an exporter does; cloning it is setup, outside the measurement. `drop_batch`
//! measures that drop alone.
//!
//! `span_encoding_over_limit` measures the rare path of the exporter (src/export/direct/mod.rs):
//! a batch of 512 spans of about 20 KB (10 MiB), over the 4 MiB a request may hold, encoded
//! whole (`whole`, all an export does when the batch fits), then as the exporter sends it
//! (`split`: encoded whole, found too large, cut by `split` and each part encoded again).
//!
//! Run with `cargo bench --bench span_encoding`; the figures are in BENCHMARKS.md.

mod support;

use std::{
    borrow::Cow,
    time::{Duration, UNIX_EPOCH},
};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use opentelemetry::{
    Array, InstrumentationScope, KeyValue, StringValue, Value,
    trace::{SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState},
};
use opentelemetry_proto::{
    tonic::collector::trace::v1::ExportTraceServiceRequest,
    transform::{
        common::tonic::ResourceAttributesWithSchema,
        trace::tonic::group_spans_by_resource_and_scope,
    },
};
use opentelemetry_sdk::{
    Resource,
    trace::{SpanData, SpanEvents, SpanLinks},
};
use prost::Message;

const BATCH_SIZE: usize = 512;

fn resource() -> Resource {
    Resource::builder_empty()
        .with_attributes([
            KeyValue::new("service.name", "checkout"),
            KeyValue::new("service.version", "1.4.2"),
            KeyValue::new("telemetry.sdk.language", "rust"),
            KeyValue::new("telemetry.sdk.name", "opentelemetry"),
            KeyValue::new("telemetry.sdk.version", "0.33.1"),
        ])
        .build()
}

fn server_span(i: u64, scope: &InstrumentationScope) -> SpanData {
    let start = UNIX_EPOCH + Duration::from_nanos(1_764_000_000_000_000_000 + i * 1_000_123);
    let error = i % 8 == 7;
    SpanData {
        span_context: SpanContext::new(
            TraceId::from(0x4bf9_2f35_77b3_4da6_a3ce_929d_0000_0000 + u128::from(i)),
            SpanId::from(0x00f0_67aa_0000_0000 + i),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: SpanId::from(0x53ce_929d_0000_0000 + i),
        parent_span_is_remote: true,
        span_kind: SpanKind::Server,
        name: Cow::Borrowed("GET /users/{id}"),
        start_time: start,
        end_time: start + Duration::from_micros(850 + i % 300),
        attributes: vec![
            KeyValue::new("http.request.method", "GET"),
            KeyValue::new("url.path", format!("/users/{}", 1000 + i)),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("http.route", "/users/{id}"),
            KeyValue::new("network.protocol.version", "1.1"),
            KeyValue::new("server.address", "checkout.internal"),
            KeyValue::new("server.port", 3000_i64),
            KeyValue::new("client.address", format!("10.1.{}.{}", i / 256, i % 256)),
            KeyValue::new(
                "user_agent.original",
                "Mozilla/5.0 (X11; Linux x86_64) curl/8.5.0",
            ),
            KeyValue::new(
                "http.response.status_code",
                if error { 503_i64 } else { 200_i64 },
            ),
            KeyValue::new("http.response.body.size", 1_024 + (i % 97) as i64),
            KeyValue::new(
                "http.request.header.x-forwarded-for",
                Value::Array(Array::String(vec![
                    StringValue::from("203.0.113.7"),
                    StringValue::from("10.1.0.1"),
                ])),
            ),
        ],
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: if error {
            Status::error("")
        } else {
            Status::Unset
        },
        instrumentation_scope: scope.clone(),
    }
}

fn bench_span_encoding(c: &mut Criterion) {
    let resource = resource();
    let scope = InstrumentationScope::builder("otel-monitor")
        .with_version("0.1.0")
        .build();
    let batch: Vec<SpanData> = (0..BATCH_SIZE as u64)
        .map(|i| server_span(i, &scope))
        .collect();

    // The stock exporter converts the resource once, when it is set.
    let stock_resource = ResourceAttributesWithSchema::from(&resource);
    let stock = |spans: Vec<SpanData>| {
        ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, &stock_resource),
        }
        .encode_to_vec()
    };
    let direct = |spans: Vec<SpanData>| {
        let mut buffer = Vec::new();
        support::otlp_encoding::encode_export_request(&resource, &spans, &mut buffer);
        buffer
    };
    assert_eq!(
        stock(batch.clone()),
        direct(batch.clone()),
        "the two paths must produce the same bytes"
    );

    let mut group = c.benchmark_group("span_encoding");
    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    group.bench_function("stock", |b| {
        b.iter_batched(
            || batch.clone(),
            |spans| drop(std::hint::black_box(stock(spans))),
            BatchSize::LargeInput,
        )
    });
    // What both routines spend dropping the batch: the rest is the encoding.
    group.bench_function("drop_batch", |b| {
        b.iter_batched(
            || batch.clone(),
            |spans| drop(std::hint::black_box(spans)),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("direct", |b| {
        b.iter_batched(
            || batch.clone(),
            |spans| drop(std::hint::black_box(direct(spans))),
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

/// The exporter's `MAX_REQUEST_SIZE`.
const MAX_REQUEST_SIZE: usize = 4 * 1024 * 1024;

fn bench_over_limit(c: &mut Criterion) {
    use support::otlp_encoding::{Part, encode_export_request, split};

    let resource = resource();
    let scope = InstrumentationScope::builder("otel-monitor")
        .with_version("0.1.0")
        .build();
    let batch: Vec<SpanData> = (0..BATCH_SIZE as u64)
        .map(|i| {
            let mut span = server_span(i, &scope);
            span.attributes.extend((0..10).map(|a| {
                KeyValue::new(
                    format!("large.{a}"),
                    format!("{i}/{a}:{}", "v".repeat(2_000)),
                )
            }));
            span
        })
        .collect();
    let whole = |spans: &[SpanData]| {
        let mut buffer = Vec::with_capacity(spans.len() * 512);
        encode_export_request(&resource, spans, &mut buffer);
        buffer
    };

    let mut group = c.benchmark_group("span_encoding_over_limit");
    group.throughput(Throughput::Elements(BATCH_SIZE as u64));
    group.bench_function("whole", |b| {
        b.iter_batched(
            || batch.clone(),
            |spans| drop(std::hint::black_box(whole(&spans))),
            BatchSize::LargeInput,
        )
    });
    group.bench_function("split", |b| {
        b.iter_batched(
            || batch.clone(),
            |spans| {
                let body = whole(&spans);
                assert!(body.len() > MAX_REQUEST_SIZE);
                drop(body);
                for part in split(&resource, &spans, MAX_REQUEST_SIZE) {
                    if let Part::Spans(range) = part {
                        let mut body = Vec::with_capacity(MAX_REQUEST_SIZE);
                        encode_export_request(&resource, &spans[range], &mut body);
                        drop(std::hint::black_box(body));
                    }
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench_span_encoding, bench_over_limit
}
criterion_main!(benches);
