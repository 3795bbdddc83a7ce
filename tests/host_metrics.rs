//! Host and process metrics through the real OTLP/HTTP exporter to an in-process receiver: every
//! instrument with its name, unit, kind and attributes, the values against the kernel's own
//! numbers read here, utilization that follows the CPU actually burnt, and group selection.
//!
//! Linux only: the reference numbers come from `/proc`.
#![cfg(target_os = "linux")]

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    process::Command,
    time::{Duration, Instant},
};

use opentelemetry::{KeyValue, metrics::MeterProvider as _};
use opentelemetry_otlp::{MetricExporter, WithExportConfig};
use opentelemetry_proto::tonic::{
    common::v1::{KeyValue as ProtoKeyValue, any_value},
    metrics::v1::{
        AggregationTemporality, Metric, NumberDataPoint, metric::Data, number_data_point,
    },
};
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use otel_monitor::{HostMetricGroup, register_host_metrics};
use support::OtlpReceiver;

const DEADLINE: Duration = Duration::from_secs(10);

/// A meter provider exporting to the receiver over OTLP/HTTP, collected only when asked.
struct Pipeline {
    receiver: OtlpReceiver,
    provider: SdkMeterProvider,
}

impl Pipeline {
    async fn start() -> Self {
        let receiver = OtlpReceiver::start().await;
        let exporter = MetricExporter::builder()
            .with_http()
            .with_endpoint(format!("{}/v1/metrics", receiver.http_endpoint()))
            .build()
            .unwrap();
        // An interval that never elapses within a test (whatever OTEL_METRIC_EXPORT_INTERVAL
        // says): the tests collect with `force_flush`.
        let reader = PeriodicReader::builder(exporter)
            .with_interval(Duration::from_secs(3600))
            .build();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        Self { receiver, provider }
    }

    fn register(&self, groups: &[HostMetricGroup]) {
        register_host_metrics(&self.provider.meter("otel-monitor"), groups);
    }

    /// Collects and exports now, and returns what that export carried.
    async fn collect(&self) -> Collection {
        let (exports_before, _) = self.receiver.received_requests();
        let metrics_before = self.receiver.metrics().len();
        let provider = self.provider.clone();
        tokio::task::spawn_blocking(move || provider.force_flush().unwrap())
            .await
            .unwrap();
        support::wait_for("the export of a collection", DEADLINE, || {
            let (exports, _) = self.receiver.received_requests();
            (exports > exports_before).then(|| {
                let metrics = self.receiver.metrics();
                Collection(
                    metrics[metrics_before..]
                        .iter()
                        .map(|received| received.metric.clone())
                        .collect(),
                )
            })
        })
        .await
    }

    /// Collects until a collection satisfies `done`, and returns it.
    async fn collect_until(&self, what: &str, done: impl Fn(&Collection) -> bool) -> Collection {
        let done = &done;
        support::wait_until(what, DEADLINE, || async move {
            let collection = self.collect().await;
            if done(&collection) {
                Ok(collection)
            } else {
                Err(format!("a collection of {:?}", collection.names()))
            }
        })
        .await
    }
}

/// The metrics of one export.
struct Collection(Vec<Metric>);

impl Collection {
    fn names(&self) -> BTreeSet<&str> {
        self.0.iter().map(|metric| metric.name.as_str()).collect()
    }

    fn has(&self, names: &[&str]) -> bool {
        names.iter().all(|name| self.names().contains(name))
    }

    fn metric(&self, name: &str) -> &Metric {
        self.0
            .iter()
            .find(|metric| metric.name == name)
            .unwrap_or_else(|| panic!("{name} was not exported; got {:?}", self.names()))
    }

    /// The value of a metric that has one data point and no attributes.
    fn value(&self, name: &str) -> f64 {
        match points(self.metric(name)) {
            [point] if point.attributes.is_empty() => value(point),
            points => panic!("{name} should have one point without attributes: {points:?}"),
        }
    }

    /// The values of a metric by the value of one attribute, summed over the other attributes.
    fn by(&self, name: &str, key: &str) -> BTreeMap<String, f64> {
        let mut values = BTreeMap::new();
        for point in points(self.metric(name)) {
            let attribute = attribute(&point.attributes, key)
                .unwrap_or_else(|| panic!("a point of {name} lacks {key}: {point:?}"));
            *values.entry(attribute.to_owned()).or_default() += value(point);
        }
        values
    }

    /// The sum of a metric's points.
    fn total(&self, name: &str) -> f64 {
        points(self.metric(name)).iter().map(value).sum()
    }

    /// Every point of a counter, by its attributes.
    fn series(&self, name: &str) -> BTreeMap<String, f64> {
        points(self.metric(name))
            .iter()
            .map(|point| (format!("{:?}", point.attributes), value(point)))
            .collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    /// Observable counter: a cumulative monotonic sum.
    Counter,
    /// Observable up-down counter: a cumulative non-monotonic sum.
    UpDown,
    Gauge,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Number {
    Int,
    Double,
}

/// Every instrument: name, unit, kind, number type and the attribute keys of each point.
const INSTRUMENTS: [(&str, &str, Kind, Number, &[&str]); 19] = [
    (
        "system.cpu.time",
        "s",
        Kind::Counter,
        Number::Double,
        &["cpu.mode"],
    ),
    (
        "system.cpu.utilization",
        "1",
        Kind::Gauge,
        Number::Double,
        &["cpu.mode"],
    ),
    (
        "system.cpu.logical.count",
        "{cpu}",
        Kind::UpDown,
        Number::Int,
        &[],
    ),
    (
        "system.memory.usage",
        "By",
        Kind::UpDown,
        Number::Int,
        &["system.memory.state"],
    ),
    (
        "system.memory.utilization",
        "1",
        Kind::Gauge,
        Number::Double,
        &["system.memory.state"],
    ),
    ("system.memory.limit", "By", Kind::UpDown, Number::Int, &[]),
    (
        "system.network.io",
        "By",
        Kind::Counter,
        Number::Int,
        &["network.interface.name", "network.io.direction"],
    ),
    (
        "system.filesystem.usage",
        "By",
        Kind::UpDown,
        Number::Int,
        &[
            "system.device",
            "system.filesystem.mountpoint",
            "system.filesystem.type",
            "system.filesystem.mode",
            "system.filesystem.state",
        ],
    ),
    (
        "system.cpu.load_average.1m",
        "{thread}",
        Kind::Gauge,
        Number::Double,
        &[],
    ),
    (
        "system.cpu.load_average.5m",
        "{thread}",
        Kind::Gauge,
        Number::Double,
        &[],
    ),
    (
        "system.cpu.load_average.15m",
        "{thread}",
        Kind::Gauge,
        Number::Double,
        &[],
    ),
    ("system.uptime", "s", Kind::Gauge, Number::Double, &[]),
    (
        "process.cpu.time",
        "s",
        Kind::Counter,
        Number::Double,
        &["cpu.mode"],
    ),
    (
        "process.cpu.utilization",
        "1",
        Kind::Gauge,
        Number::Double,
        &["cpu.mode"],
    ),
    ("process.memory.usage", "By", Kind::UpDown, Number::Int, &[]),
    (
        "process.memory.virtual",
        "By",
        Kind::UpDown,
        Number::Int,
        &[],
    ),
    (
        "process.thread.count",
        "{thread}",
        Kind::UpDown,
        Number::Int,
        &[],
    ),
    (
        "process.unix.file_descriptor.count",
        "{file_descriptor}",
        Kind::UpDown,
        Number::Int,
        &[],
    ),
    ("process.uptime", "s", Kind::Gauge, Number::Double, &[]),
];

/// The values an enumerated attribute may take.
fn allowed_values(metric: &str, key: &str) -> Option<&'static [&'static str]> {
    match (metric, key) {
        ("process.cpu.time" | "process.cpu.utilization", "cpu.mode") => Some(&["user", "system"]),
        (_, "cpu.mode") => Some(&[
            "user",
            "nice",
            "system",
            "idle",
            "iowait",
            "interrupt",
            "steal",
        ]),
        (_, "system.memory.state") => Some(&["used", "free", "cached", "buffers"]),
        (_, "network.io.direction") => Some(&["receive", "transmit"]),
        (_, "system.filesystem.state") => Some(&["used", "free"]),
        (_, "system.filesystem.mode") => Some(&["rw", "ro"]),
        _ => None,
    }
}

fn names() -> BTreeSet<&'static str> {
    INSTRUMENTS.iter().map(|(name, ..)| *name).collect()
}

fn utilizations() -> [&'static str; 3] {
    [
        "system.cpu.utilization",
        "system.memory.utilization",
        "process.cpu.utilization",
    ]
}

fn kind(metric: &Metric) -> Kind {
    match &metric.data {
        Some(Data::Sum(sum)) => {
            assert_eq!(
                sum.aggregation_temporality,
                AggregationTemporality::Cumulative as i32,
                "{} is not cumulative",
                metric.name
            );
            if sum.is_monotonic {
                Kind::Counter
            } else {
                Kind::UpDown
            }
        }
        Some(Data::Gauge(_)) => Kind::Gauge,
        other => panic!("{} is neither a sum nor a gauge: {other:?}", metric.name),
    }
}

fn points(metric: &Metric) -> &[NumberDataPoint] {
    match &metric.data {
        Some(Data::Sum(sum)) => &sum.data_points,
        Some(Data::Gauge(gauge)) => &gauge.data_points,
        other => panic!("{} is neither a sum nor a gauge: {other:?}", metric.name),
    }
}

fn number(point: &NumberDataPoint) -> Number {
    match point.value {
        Some(number_data_point::Value::AsInt(_)) => Number::Int,
        Some(number_data_point::Value::AsDouble(_)) => Number::Double,
        None => panic!("a point without a value: {point:?}"),
    }
}

fn value(point: &NumberDataPoint) -> f64 {
    match point.value {
        Some(number_data_point::Value::AsInt(value)) => value as f64,
        Some(number_data_point::Value::AsDouble(value)) => value,
        None => panic!("a point without a value: {point:?}"),
    }
}

fn attribute<'a>(attributes: &'a [ProtoKeyValue], key: &str) -> Option<&'a str> {
    support::attr_str(attributes, key)
}

fn assert_near(what: &str, reported: f64, kernel: f64, tolerance: f64) {
    assert!(
        (reported - kernel).abs() <= tolerance,
        "{what}: reported {reported}, the kernel says {kernel} (tolerance {tolerance})"
    );
}

/// A field of `/proc/self/status`, such as `VmRSS` (in kB) or `Threads`.
fn status_field(key: &str) -> f64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

/// A field of `/proc/meminfo`, in bytes.
fn meminfo_bytes(key: &str) -> f64 {
    let meminfo = fs::read_to_string("/proc/meminfo").unwrap();
    let kib: f64 = meminfo
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /proc/meminfo"));
    kib * 1024.0
}

fn open_descriptors() -> usize {
    fs::read_dir("/proc/self/fd").unwrap().count()
}

/// This thread's CPU time, from the scheduler (`/proc/thread-self/schedstat`, nanoseconds).
fn thread_cpu_time() -> Duration {
    let schedstat = fs::read_to_string("/proc/thread-self/schedstat").unwrap();
    let nanos = schedstat
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    Duration::from_nanos(nanos)
}

/// Spins on a thread of its own until it has had `cpu` of CPU time (10 s at most).
async fn burn_cpu(cpu: Duration) {
    tokio::task::spawn_blocking(move || {
        let (started, deadline) = (thread_cpu_time(), Instant::now() + DEADLINE);
        let mut x = 0u64;
        while thread_cpu_time() - started < cpu && Instant::now() < deadline {
            for i in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_instrument_arrives_with_its_name_unit_kind_and_attributes() {
    let pipeline = Pipeline::start().await;
    pipeline.register(&HostMetricGroup::ALL);
    // Utilization needs a window of 100 ms: the first collections come without it.
    let collection = pipeline
        .collect_until("every host metric", |collection| {
            collection.names() == names()
        })
        .await;

    for (name, unit, expected_kind, expected_number, keys) in INSTRUMENTS {
        let metric = collection.metric(name);
        assert_eq!(metric.unit, unit, "unit of {name}");
        assert!(!metric.description.is_empty(), "{name} has no description");
        assert_eq!(kind(metric), expected_kind, "kind of {name}");
        let points = points(metric);
        assert!(!points.is_empty(), "{name} has no points");
        let keys: BTreeSet<&str> = keys.iter().copied().collect();
        for point in points {
            assert_eq!(number(point), expected_number, "number type of {name}");
            let point_keys: BTreeSet<&str> =
                point.attributes.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(point_keys, keys, "attribute keys of {name}");
            for attribute in &point.attributes {
                let Some(allowed) = allowed_values(name, &attribute.key) else {
                    continue;
                };
                let value = match attribute.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(any_value::Value::StringValue(value)) => value.as_str(),
                    other => panic!("{name}: {} is {other:?}", attribute.key),
                };
                assert!(
                    allowed.contains(&value),
                    "{name}: {}={value} is not one of {allowed:?}",
                    attribute.key
                );
            }
        }
    }

    // On Linux every mode and state is reported.
    let modes = |name| {
        collection
            .by(name, "cpu.mode")
            .into_keys()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        modes("system.cpu.time"),
        [
            "idle",
            "interrupt",
            "iowait",
            "nice",
            "steal",
            "system",
            "user"
        ]
    );
    assert_eq!(modes("system.cpu.utilization"), modes("system.cpu.time"));
    assert_eq!(modes("process.cpu.time"), ["system", "user"]);
    assert_eq!(modes("process.cpu.utilization"), ["system", "user"]);
    let states = collection.by("system.memory.usage", "system.memory.state");
    assert_eq!(
        states.into_keys().collect::<Vec<_>>(),
        ["buffers", "cached", "free", "used"]
    );
    let directions = collection.by("system.network.io", "network.io.direction");
    assert_eq!(
        directions.into_keys().collect::<Vec<_>>(),
        ["receive", "transmit"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_values_are_the_kernels() {
    let started = Instant::now();
    let pipeline = Pipeline::start().await;
    // A first export before the host metrics, so that the exporter's connection is open when
    // the descriptors are counted.
    let meter = pipeline.provider.meter("test");
    let _warm_up = meter
        .u64_observable_gauge("test.warm_up")
        .with_callback(|instrument| instrument.observe(1, &[KeyValue::new("test", "warm-up")]))
        .build();
    pipeline.collect().await;
    let descriptors_before = open_descriptors();

    pipeline.register(&HostMetricGroup::ALL);
    let collection = pipeline
        .collect_until("every host metric", |collection| {
            collection.has(&utilizations())
        })
        .await;
    let (rss, threads, virtual_size) = (
        status_field("VmRSS") * 1024.0,
        status_field("Threads"),
        status_field("VmSize") * 1024.0,
    );
    let descriptors = open_descriptors();

    // Memory.
    let total = meminfo_bytes("MemTotal");
    assert_eq!(collection.value("system.memory.limit"), total);
    let used = collection.by("system.memory.usage", "system.memory.state")["used"];
    let memory_tolerance = (total * 0.05).max(256.0 * 1024.0 * 1024.0);
    assert_near(
        "used memory",
        used,
        total - meminfo_bytes("MemAvailable"),
        memory_tolerance,
    );
    let utilization = collection.by("system.memory.utilization", "system.memory.state")["used"];
    assert_near("memory utilization", utilization, used / total, 1e-9);

    // This process.
    assert_near(
        "resident memory",
        collection.value("process.memory.usage"),
        rss,
        16.0 * 1024.0 * 1024.0,
    );
    assert_near(
        "virtual memory",
        collection.value("process.memory.virtual"),
        virtual_size,
        (virtual_size * 0.1).max(64.0 * 1024.0 * 1024.0),
    );
    assert_near(
        "threads",
        collection.value("process.thread.count"),
        threads,
        2.0,
    );
    let reported_descriptors = collection.value("process.unix.file_descriptor.count");
    assert_near(
        "file descriptors",
        reported_descriptors,
        descriptors as f64,
        5.0,
    );
    assert!(
        descriptors <= descriptors_before + 2,
        "the sampler keeps descriptors open: {descriptors_before} before registering, \
         {descriptors} after two collections"
    );
    let process_uptime = collection.value("process.uptime");
    assert!(
        process_uptime >= started.elapsed().as_secs_f64() - 0.05,
        "process uptime {process_uptime} s, but the test started {:?} ago",
        started.elapsed()
    );

    // The host.
    let uptime: f64 = fs::read_to_string("/proc/uptime")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_near("uptime", collection.value("system.uptime"), uptime, 1.0);
    assert!(process_uptime <= collection.value("system.uptime"));
    let loadavg = fs::read_to_string("/proc/loadavg").unwrap();
    let loads: Vec<f64> = loadavg
        .split_whitespace()
        .take(3)
        .map(|load| load.parse().unwrap())
        .collect();
    for (name, kernel) in ["1m", "5m", "15m"].iter().zip(loads) {
        let name = format!("system.cpu.load_average.{name}");
        assert_near(&name, collection.value(&name), kernel, 0.5);
    }
    let stat = fs::read_to_string("/proc/stat").unwrap();
    let cpus = stat
        .lines()
        .filter(|line| {
            line.starts_with("cpu") && line[3..].starts_with(|c: char| c.is_ascii_digit())
        })
        .count();
    assert_eq!(collection.value("system.cpu.logical.count"), cpus as f64);

    // Every interface the kernel lists, with no more bytes than it counts now.
    let net_dev = fs::read_to_string("/proc/net/dev").unwrap();
    let kernel_interfaces: BTreeMap<&str, (f64, f64)> = net_dev
        .lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let counters: Vec<f64> = counters
                .split_whitespace()
                .map(|c| c.parse().unwrap())
                .collect();
            Some((name.trim(), (counters[0], counters[8])))
        })
        .collect();
    let reported = collection.by("system.network.io", "network.interface.name");
    assert_eq!(
        reported.keys().map(String::as_str).collect::<Vec<_>>(),
        kernel_interfaces.keys().copied().collect::<Vec<_>>()
    );
    for point in points(collection.metric("system.network.io")) {
        let interface = attribute(&point.attributes, "network.interface.name").unwrap();
        let (received, transmitted) = kernel_interfaces[interface];
        let kernel = match attribute(&point.attributes, "network.io.direction").unwrap() {
            "receive" => received,
            _ => transmitted,
        };
        assert!(
            value(point) <= kernel,
            "{interface}: {point:?}, the kernel counts {kernel}"
        );
    }

    // The root filesystem, whose size `df` gives.
    let df = Command::new("df")
        .args(["-B1", "--output=size", "/"])
        .output()
        .unwrap();
    let size: f64 = String::from_utf8(df.stdout)
        .unwrap()
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let root: f64 = points(collection.metric("system.filesystem.usage"))
        .iter()
        .filter(|point| attribute(&point.attributes, "system.filesystem.mountpoint") == Some("/"))
        .map(value)
        .sum();
    assert_eq!(root, size, "used + free of / against df's size");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn utilizations_are_fractions_and_counters_never_decrease() {
    let pipeline = Pipeline::start().await;
    pipeline.register(&HostMetricGroup::ALL);
    let first = pipeline
        .collect_until("the utilizations", |collection| {
            collection.has(&utilizations())
        })
        .await;
    let second = pipeline
        .collect_until("a new utilization window", |collection| {
            collection.series("process.cpu.time") != first.series("process.cpu.time")
        })
        .await;

    for collection in [&first, &second] {
        for name in utilizations() {
            for point in points(collection.metric(name)) {
                let value = value(point);
                assert!((0.0..=1.0).contains(&value), "{name} = {value}: {point:?}");
            }
        }
    }
    for name in ["system.cpu.time", "system.network.io", "process.cpu.time"] {
        let (before, after) = (first.series(name), second.series(name));
        for (series, before) in before {
            let after = after
                .get(&series)
                .copied()
                .unwrap_or_else(|| panic!("{name} {series} went away"));
            assert!(
                after >= before,
                "{name} {series} went from {before} to {after}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_utilization_rises_when_the_process_burns_cpu() {
    let pipeline = Pipeline::start().await;
    pipeline.register(&HostMetricGroup::ALL);
    let before = pipeline
        .collect_until("the utilizations", |collection| {
            collection.has(&utilizations())
        })
        .await;

    burn_cpu(Duration::from_millis(300)).await;
    let after = pipeline.collect().await;

    let burnt = after.total("process.cpu.time") - before.total("process.cpu.time");
    assert!(burnt >= 0.25, "process.cpu.time grew by {burnt} s only");
    let (utilization_before, utilization_after) = (
        before.total("process.cpu.utilization"),
        after.total("process.cpu.utilization"),
    );
    assert!(
        utilization_after > utilization_before,
        "process.cpu.utilization went from {utilization_before} to {utilization_after}"
    );
    let system = after.by("system.cpu.utilization", "cpu.mode");
    assert!(
        system["user"] + system["system"] > 0.0,
        "system.cpu.utilization: {system:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_selected_groups_are_reported() {
    let pipeline = Pipeline::start().await;
    pipeline.register(&[HostMetricGroup::Memory]);
    let memory = [
        "system.memory.limit",
        "system.memory.usage",
        "system.memory.utilization",
    ];
    let collection = pipeline
        .collect_until("the memory metrics", |collection| collection.has(&memory))
        .await;
    assert_eq!(collection.names(), BTreeSet::from(memory));
}
