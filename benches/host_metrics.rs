//! The cost of collecting the host and process metrics: one iteration is one collection, a
//! `force_flush` of a meter provider whose periodic reader exports to an exporter that encodes
//! the collection to OTLP protobuf and sends it nowhere.
//!
//! - `empty`: the provider with one constant observable gauge and no host metrics: the cost of
//!   a collection itself (the hand-off to the reader's thread, the export, the encoding), which
//!   every other row includes.
//! - `cpu`, `memory`, `network`, `filesystem`, `load`, `process`: that gauge and one group.
//! - `all`: that gauge and every group.
//!
//! Back-to-back collections each read the system anew (an instrument that asks again for the
//! sample it has already reported starts a new one), so every iteration pays for the reads.
//! This runs on the reader's thread, never on the request path.
//!
//! Run with `cargo bench --bench host_metrics`; the figures, the hardware and the command are
//! in BENCHMARKS.md.

mod support;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use otel_monitor::{HostMetricGroup, register_host_metrics};
use support::EncodingMetricExporter;

/// A provider that collects only when flushed, with a constant gauge and `groups`.
fn meter_provider(groups: &[HostMetricGroup]) -> SdkMeterProvider {
    let provider = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(EncodingMetricExporter)
                .with_interval(Duration::from_secs(3600))
                .build(),
        )
        .build();
    let meter = provider.meter("otel-monitor");
    meter
        .u64_observable_gauge("bench.constant")
        .with_callback(|instrument| instrument.observe(1, &[]))
        .build();
    register_host_metrics(&meter, groups);
    provider
}

fn bench_collection(c: &mut Criterion) {
    let variants = [
        ("empty", &[][..]),
        ("cpu", &[HostMetricGroup::Cpu][..]),
        ("memory", &[HostMetricGroup::Memory][..]),
        ("network", &[HostMetricGroup::Network][..]),
        ("filesystem", &[HostMetricGroup::Filesystem][..]),
        ("load", &[HostMetricGroup::Load][..]),
        ("process", &[HostMetricGroup::Process][..]),
        ("all", &HostMetricGroup::ALL[..]),
    ];

    let mut group = c.benchmark_group("host_metrics");
    for (name, groups) in variants {
        let provider = meter_provider(groups);
        group.bench_function(name, |b| b.iter(|| provider.force_flush().unwrap()));
        provider.shutdown().unwrap();
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench_collection
}
criterion_main!(benches);
