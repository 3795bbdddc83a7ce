//! Host and process metrics through the real OTLP/HTTP exporter to an in-process receiver: every
//! instrument with its name, unit, kind and attributes; each value between the kernel's own
//! readings taken just before and just after the group reads it, within the collection; the
//! files each group reads, once per collection on the reader's thread; nothing read on the
//! request path; and group selection.
//!
//! Linux only: the reference numbers come from `/proc` and `statvfs`, read by `kernel.rs`.
#![cfg(target_os = "linux")]

mod support;

#[path = "host_metrics/kernel.rs"]
mod kernel;

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
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
use otel_monitor::{HostMetricGroup, MonitorLayer, register_host_metrics};
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
        (_, "cpu.mode") => Some(&CPU_MODES),
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

/// What a probe read from the kernel, and when and where.
struct Reading<R> {
    /// In the probe before the host metrics, taken after reading the kernel; in the probe after
    /// them, before: the host metrics' own reading and clock lie between the two probes'.
    at: Instant,
    /// The thread the probe ran on: the one that collects.
    thread: Option<String>,
    kernel: R,
}

/// Two probes around the host metrics' callbacks, and what they read in the last collection.
struct Probes<R> {
    before: Arc<Mutex<Option<Reading<R>>>>,
    after: Arc<Mutex<Option<Reading<R>>>>,
}

/// One collection and the kernel's readings just before and just after the host metrics read
/// theirs.
struct Bracketed<R> {
    collection: Collection,
    before: Reading<R>,
    after: Reading<R>,
}

impl Pipeline {
    /// Registers `groups` between two probes that read the kernel's numbers with `read`.
    ///
    /// The SDK calls the callbacks of a collection one after the other on the reader's thread,
    /// in the order they were registered (`Pipeline::produce` in opentelemetry_sdk), so the probe
    /// registered before the groups reads just before they read, and the probe registered after
    /// them just after. A counter then lies between the two readings; a value that moves both
    /// ways lies between them unless it went and came back within the collection (the tests then
    /// collect again: a wrong formula fails every collection).
    fn register_between<R: Send + 'static>(
        &self,
        groups: &[HostMetricGroup],
        read: impl Fn() -> R + Send + Sync + 'static,
    ) -> Probes<R> {
        let meter = self.provider.meter("otel-monitor");
        let read = Arc::new(read);
        let probes = Probes {
            before: Arc::new(Mutex::new(None)),
            after: Arc::new(Mutex::new(None)),
        };
        let (slot, read_before) = (Arc::clone(&probes.before), Arc::clone(&read));
        meter
            .u64_observable_gauge("test.probe.before")
            .with_callback(move |_| {
                let kernel = read_before();
                let at = Instant::now();
                let thread = thread_name();
                *slot.lock().unwrap() = Some(Reading { at, thread, kernel });
            })
            .build();
        register_host_metrics(&meter, groups);
        let slot = Arc::clone(&probes.after);
        meter
            .u64_observable_gauge("test.probe.after")
            .with_callback(move |_| {
                let at = Instant::now();
                let kernel = read();
                let thread = thread_name();
                *slot.lock().unwrap() = Some(Reading { at, thread, kernel });
            })
            .build();
        probes
    }

    /// Collects once, with the probes' readings around the host metrics'.
    async fn collect_between<R>(&self, probes: &Probes<R>) -> Bracketed<R> {
        probes.before.lock().unwrap().take();
        probes.after.lock().unwrap().take();
        let collection = self.collect().await;
        let before = probes.before.lock().unwrap().take();
        let after = probes.after.lock().unwrap().take();
        let (before, after) = before
            .zip(after)
            .expect("the probes did not run in the collection");
        assert!(before.at <= after.at, "the probes ran out of order");
        assert_eq!(before.thread, after.thread, "the probes ran on two threads");
        Bracketed {
            collection,
            before,
            after,
        }
    }

    /// Two collections; the utilization of the second is over the window between them.
    ///
    /// Utilization is computed over windows of 100 ms at least, and a collection sooner than
    /// that after the window's start leaves the start where it was. Here the first collection
    /// comes after 150 ms of CPU have been burnt, so at least that long after any earlier one,
    /// and its reading starts a window, which ends with the second, after 300 ms more.
    async fn utilization_window<R>(&self, probes: &Probes<R>) -> (Bracketed<R>, Bracketed<R>) {
        burn_cpu(Duration::from_millis(150)).await;
        let first = self.collect_between(probes).await;
        burn_cpu(Duration::from_millis(300)).await;
        let second = self.collect_between(probes).await;
        (first, second)
    }

    /// Collects until `check` accepts a collection with the kernel's readings around it.
    async fn collect_until_between<R>(
        &self,
        probes: &Probes<R>,
        what: &str,
        check: impl Fn(&Bracketed<R>) -> Result<(), String>,
    ) -> Bracketed<R> {
        let check = &check;
        support::wait_until(what, DEADLINE, || async move {
            let bracketed = self.collect_between(probes).await;
            check(&bracketed).map(|()| bracketed)
        })
        .await
    }
}

fn thread_name() -> Option<String> {
    std::thread::current().name().map(str::to_owned)
}

/// The failed checks of one collection.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    /// `value` lies between the kernel's readings `before` and `after` (in whichever order: a
    /// gauge moves both ways), give or take `rounding`, which is only ever float rounding or a
    /// step back of the kernel's own counter, never a difference of formula.
    fn between(&mut self, what: &str, value: f64, before: f64, after: f64, rounding: f64) {
        let (low, high) = (before.min(after), before.max(after));
        if !(low - rounding <= value && value <= high + rounding) {
            self.0.push(format!(
                "{what} = {value}, but the kernel read {before} just before and {after} just \
                 after (rounding {rounding})"
            ));
        }
    }

    fn equal(&mut self, what: &str, value: f64, kernel: f64) {
        if value != kernel {
            self.0
                .push(format!("{what} = {value}, but the kernel reads {kernel}"));
        }
    }

    fn that(&mut self, holds: bool, failure: impl FnOnce() -> String) {
        if !holds {
            self.0.push(failure());
        }
    }

    fn result(self) -> Result<(), String> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0.join("; "))
        }
    }
}

/// Float rounding between `ticks × (1 / USER_HZ)` (the crate) and `ticks / USER_HZ` (here): a
/// millionth of a second, ten thousand times finer than a tick.
const TICK_ROUNDING: f64 = 1e-6;

/// The utilization a window between two bracketed collections can have: the time spent
/// (`spent` reads it from a kernel reading) over the window's length and `cpus`, at the least
/// with the least time spent in the longest window, at the most with the most time spent in
/// the shortest window; `slack` seconds are allowed on the time spent.
fn utilization_bounds<R>(
    first: &Bracketed<R>,
    second: &Bracketed<R>,
    spent: impl Fn(&R) -> f64,
    cpus: f64,
    slack: f64,
) -> (f64, f64) {
    let least = spent(&second.before.kernel) - spent(&first.after.kernel) - slack;
    let most = spent(&second.after.kernel) - spent(&first.before.kernel) + slack;
    let shortest = (second.before.at - first.after.at).as_secs_f64();
    let longest = (second.after.at - first.before.at).as_secs_f64();
    (
        (least / (longest * cpus)).clamp(0.0, 1.0),
        (most / (shortest * cpus)).clamp(0.0, 1.0),
    )
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

/// `/proc/stat`'s `idle` and `iowait` may step back (proc_stat(5)) and the crate then reports
/// the highest value seen, as a counter must: one tick of slack for these two modes only.
fn cpu_mode_slack(mode: &str) -> f64 {
    match mode {
        "idle" | "iowait" => 1.0 / kernel::ticks_per_second() + TICK_ROUNDING,
        _ => TICK_ROUNDING,
    }
}

fn check_system_cpu_times(bracketed: &Bracketed<kernel::Stat>) -> Result<(), String> {
    let (before, after) = (&bracketed.before.kernel, &bracketed.after.kernel);
    let mut checks = Checks::default();
    let times = bracketed.collection.by("system.cpu.time", "cpu.mode");
    for mode in CPU_MODES {
        checks.between(
            &format!("system.cpu.time {mode}"),
            times[mode],
            before.seconds(mode),
            after.seconds(mode),
            cpu_mode_slack(mode),
        );
    }
    checks.equal(
        "system.cpu.logical.count",
        bracketed.collection.value("system.cpu.logical.count"),
        before.cpus as f64,
    );
    checks.result()
}

const CPU_MODES: [&str; 7] = [
    "user",
    "nice",
    "system",
    "idle",
    "iowait",
    "interrupt",
    "steal",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_cpu_time_and_utilization_are_proc_stat_read_around_the_collection() {
    let pipeline = Pipeline::start().await;
    let probes = pipeline.register_between(&[HostMetricGroup::Cpu], kernel::Stat::read);
    pipeline
        .collect_until_between(
            &probes,
            "system.cpu.time within /proc/stat",
            check_system_cpu_times,
        )
        .await;
    let (first, second) = pipeline.utilization_window(&probes).await;
    check_system_cpu_times(&first).unwrap();
    check_system_cpu_times(&second).unwrap();

    let cpus = second.before.kernel.cpus as f64;
    let utilization = second.collection.by("system.cpu.utilization", "cpu.mode");
    // When a busy window's modes counted a tick per CPU more than it lasted, the crate divides
    // by the time counted: at most one tick (1 / USER_HZ s) per CPU over the shortest window.
    let shortest = (second.before.at - first.after.at).as_secs_f64();
    let extra_tick = 1.0 / (shortest * 100.0);
    let mut checks = Checks::default();
    for mode in CPU_MODES {
        let (least, most) = utilization_bounds(
            &first,
            &second,
            |stat| stat.seconds(mode),
            cpus,
            cpu_mode_slack(mode),
        );
        checks.between(
            &format!("system.cpu.utilization {mode}"),
            utilization[mode],
            least,
            most,
            extra_tick,
        );
    }
    checks.result().unwrap();
    assert_the_window_holds_the_burnt_cpu(&first, &second, &utilization, cpus);
}

/// The 300 ms of CPU `utilization_window` burnt lie in the window: user + system is at least
/// that over the longest the window can be (less two ticks of the kernel's sampling), so the
/// brackets above were checked on a busy window.
fn assert_the_window_holds_the_burnt_cpu<R>(
    first: &Bracketed<R>,
    second: &Bracketed<R>,
    utilization: &BTreeMap<String, f64>,
    cpus: f64,
) {
    let longest = (second.after.at - first.before.at).as_secs_f64();
    let burnt = 0.3 - 2.0 / kernel::ticks_per_second();
    assert!(
        utilization["user"] + utilization["system"] >= burnt / (longest * cpus),
        "{utilization:?} over at most {longest} s on {cpus} CPUs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_states_and_utilizations_are_meminfo_read_around_the_collection() {
    let pipeline = Pipeline::start().await;
    let probes = pipeline.register_between(&[HostMetricGroup::Memory], kernel::Meminfo::read);
    let bracketed = pipeline
        .collect_until_between(&probes, "memory within /proc/meminfo", |bracketed| {
            let (before, after) = (&bracketed.before.kernel, &bracketed.after.kernel);
            let collection = &bracketed.collection;
            let mut checks = Checks::default();
            let total = before.get("MemTotal");
            checks.equal("MemTotal after", after.get("MemTotal"), total);
            checks.equal(
                "system.memory.limit",
                collection.value("system.memory.limit"),
                total,
            );
            let usage = collection.by("system.memory.usage", "system.memory.state");
            let utilization = collection.by("system.memory.utilization", "system.memory.state");
            for state in ["used", "free", "cached", "buffers"] {
                // The README: used = total − available; the others as the kernel names them.
                let kernel = |meminfo: &kernel::Meminfo| match state {
                    "used" => total - meminfo.get("MemAvailable"),
                    "free" => meminfo.get("MemFree"),
                    "cached" => meminfo.get("Cached"),
                    _ => meminfo.get("Buffers"),
                };
                let (before, after) = (kernel(before), kernel(after));
                checks.between(
                    &format!("system.memory.usage {state}"),
                    usage[state],
                    before,
                    after,
                    0.0,
                );
                // Against the kernel's numbers, not the export's own usage.
                checks.between(
                    &format!("system.memory.utilization {state}"),
                    utilization[state],
                    before / total,
                    after / total,
                    1e-12,
                );
            }
            checks.result()
        })
        .await;
    // What makes `total − free` fail above: the kernel's free and available differ.
    let meminfo = &bracketed.before.kernel;
    assert!(
        meminfo.get("MemAvailable") > meminfo.get("MemFree"),
        "this machine cannot tell used = total − available from total − free: {meminfo:?}"
    );
}

/// What the process group is checked against.
struct ProcessReading {
    stat: kernel::SelfStat,
    resident: f64,
    virtual_size: f64,
    threads: f64,
    descriptors: f64,
    uptime: f64,
}

impl ProcessReading {
    fn read() -> Self {
        Self {
            stat: kernel::SelfStat::read(),
            resident: kernel::status("VmRSS"),
            virtual_size: kernel::status("VmSize"),
            threads: kernel::status("Threads"),
            descriptors: kernel::open_descriptors(),
            uptime: kernel::uptime(),
        }
    }

    fn cpu_time(&self, mode: &str) -> f64 {
        match mode {
            "user" => self.stat.user,
            _ => self.stat.system,
        }
    }
}

fn check_process_cpu_times(bracketed: &Bracketed<ProcessReading>) -> Result<(), String> {
    let mut checks = Checks::default();
    let times = bracketed.collection.by("process.cpu.time", "cpu.mode");
    for mode in ["user", "system"] {
        checks.between(
            &format!("process.cpu.time {mode}"),
            times[mode],
            bracketed.before.kernel.cpu_time(mode),
            bracketed.after.kernel.cpu_time(mode),
            TICK_ROUNDING,
        );
    }
    checks.result()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn process_values_are_proc_self_read_around_the_collection() {
    let pipeline = Pipeline::start().await;
    // A first export before the host metrics, so that the exporter's connection is open when
    // the descriptors are counted.
    let meter = pipeline.provider.meter("test");
    let _warm_up = meter
        .u64_observable_gauge("test.warm_up")
        .with_callback(|instrument| instrument.observe(1, &[KeyValue::new("test", "warm-up")]))
        .build();
    pipeline.collect().await;
    let descriptors_before = kernel::open_descriptors();

    let probes = pipeline.register_between(&[HostMetricGroup::Process], ProcessReading::read);
    pipeline
        .collect_until_between(&probes, "the process within /proc/self", |bracketed| {
            let (before, after) = (&bracketed.before.kernel, &bracketed.after.kernel);
            let collection = &bracketed.collection;
            let mut checks = Checks::default();
            check_process_cpu_times(bracketed).unwrap_or_else(|error| checks.0.push(error));
            let values = [
                (
                    "process.memory.usage",
                    before.stat.resident,
                    after.stat.resident,
                ),
                (
                    "process.memory.virtual",
                    before.virtual_size,
                    after.virtual_size,
                ),
                ("process.thread.count", before.threads, after.threads),
                (
                    "process.unix.file_descriptor.count",
                    before.descriptors,
                    after.descriptors,
                ),
            ];
            for (name, before, after) in values {
                checks.between(name, collection.value(name), before, after, 0.0);
            }
            // The resident set of /proc/self/stat is the kernel's per-CPU RSS counters (file,
            // anonymous, shared memory) read without summing: each may be off by less than a
            // batch of max(32, 2 × CPUs) pages per CPU, which /proc/self/status sums. Well short
            // of any other page size or field.
            let cpus = kernel::configured_cpus();
            let lag = 3.0 * cpus * (2.0 * cpus).max(32.0) * kernel::page_size();
            checks.between(
                "process.memory.usage against VmRSS",
                collection.value("process.memory.usage"),
                before.resident,
                after.resident,
                lag,
            );
            // Since this process started (not since the host booted).
            checks.between(
                "process.uptime",
                collection.value("process.uptime"),
                before.uptime - before.stat.start,
                after.uptime - after.stat.start,
                TICK_ROUNDING,
            );
            checks.result()
        })
        .await;
    let (first, second) = pipeline.utilization_window(&probes).await;
    check_process_cpu_times(&first).unwrap();
    check_process_cpu_times(&second).unwrap();

    let utilization = second.collection.by("process.cpu.utilization", "cpu.mode");
    let mut checks = Checks::default();
    for mode in ["user", "system"] {
        let (least, most) = utilization_bounds(
            &first,
            &second,
            |reading| reading.cpu_time(mode),
            kernel::available_cpus(),
            TICK_ROUNDING,
        );
        checks.between(
            &format!("process.cpu.utilization {mode}"),
            utilization[mode],
            least,
            most,
            0.0,
        );
    }
    checks.result().unwrap();
    assert_the_window_holds_the_burnt_cpu(&first, &second, &utilization, kernel::available_cpus());

    let descriptors = kernel::open_descriptors();
    assert!(
        descriptors <= descriptors_before + 2.0,
        "the sampler keeps descriptors open: {descriptors_before} before registering, \
         {descriptors} after the collections"
    );
}

/// Loads the CPU until the kernel's three load averages differ, so that swapping them shows.
///
/// The kernel updates them every 5 s; one busy thread moves the 1 minute average by about
/// 0.08, the 5 minute one by 0.02 and the 15 minute one by 0.005 per update.
async fn make_the_load_averages_differ() {
    support::wait_until(
        "three different load averages",
        Duration::from_secs(30),
        || async {
            let loads = kernel::load_averages();
            if loads[0] != loads[1] && loads[1] != loads[2] && loads[0] != loads[2] {
                return Ok(());
            }
            burn_cpu(Duration::from_millis(200)).await;
            Err(format!("/proc/loadavg {loads:?}"))
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_averages_and_uptime_are_proc_loadavg_and_uptime_read_around_the_collection() {
    make_the_load_averages_differ().await;
    let pipeline = Pipeline::start().await;
    let probes = pipeline.register_between(&[HostMetricGroup::Load], || {
        (kernel::load_averages(), kernel::uptime())
    });
    pipeline
        .collect_until_between(&probes, "loads and uptime from /proc", |bracketed| {
            let ((loads_before, uptime_before), (loads_after, uptime_after)) =
                (bracketed.before.kernel, bracketed.after.kernel);
            let collection = &bracketed.collection;
            let mut checks = Checks::default();
            checks.that(
                loads_before[0] != loads_before[1]
                    && loads_before[1] != loads_before[2]
                    && loads_before[0] != loads_before[2],
                || format!("the load averages are not all different: {loads_before:?}"),
            );
            // /proc/loadavg has two decimals and changes every 5 s: each average is its own
            // field of one of the two readings, exactly.
            for (index, period) in ["1m", "5m", "15m"].into_iter().enumerate() {
                let name = format!("system.cpu.load_average.{period}");
                let value = collection.value(&name);
                checks.that(
                    value == loads_before[index] || value == loads_after[index],
                    || {
                        format!(
                            "{name} = {value}, but /proc/loadavg read {loads_before:?} just \
                             before and {loads_after:?} just after"
                        )
                    },
                );
            }
            checks.between(
                "system.uptime",
                collection.value("system.uptime"),
                uptime_before,
                uptime_after,
                0.0,
            );
            checks.result()
        })
        .await;
}

/// Sends `bytes` over a TCP connection on the loopback interface.
fn send_over_loopback(bytes: usize) {
    use std::io::{Read as _, Write as _};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut sender = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (mut receiver, _) = listener.accept().unwrap();
    let reader = std::thread::spawn(move || {
        let mut received = Vec::new();
        receiver.read_to_end(&mut received).unwrap();
        received.len()
    });
    sender.write_all(&vec![7; bytes]).unwrap();
    drop(sender);
    assert_eq!(reader.join().unwrap(), bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_io_is_proc_net_dev_read_around_the_collection() {
    const SENT: usize = 1 << 20;
    send_over_loopback(SENT);
    let pipeline = Pipeline::start().await;
    let probes = pipeline.register_between(&[HostMetricGroup::Network], kernel::net_dev);
    let bracketed = pipeline
        .collect_until_between(&probes, "network.io within /proc/net/dev", |bracketed| {
            let (before, after) = (&bracketed.before.kernel, &bracketed.after.kernel);
            let mut checks = Checks::default();
            let reported = bracketed
                .collection
                .by("system.network.io", "network.interface.name");
            checks.that(
                reported.keys().eq(before.keys()) && before.keys().eq(after.keys()),
                || {
                    format!(
                        "interfaces {:?}, but the kernel lists {:?} then {:?}",
                        reported.keys(),
                        before.keys(),
                        after.keys()
                    )
                },
            );
            for point in points(bracketed.collection.metric("system.network.io")) {
                let interface = attribute(&point.attributes, "network.interface.name").unwrap();
                let direction = attribute(&point.attributes, "network.io.direction").unwrap();
                let kernel = |dev: &BTreeMap<String, (u64, u64)>| {
                    let (received, transmitted) = dev.get(interface).copied().unwrap_or_default();
                    match direction {
                        "receive" => received,
                        _ => transmitted,
                    }
                };
                checks.between(
                    &format!("system.network.io {interface} {direction}"),
                    value(point),
                    kernel(before) as f64,
                    kernel(after) as f64,
                    0.0,
                );
            }
            checks.result()
        })
        .await;
    // The bytes sent above are in the counts the export lies between.
    let (received, transmitted) = bracketed.before.kernel["lo"];
    assert!(
        received >= SENT as u64 && transmitted >= SENT as u64,
        "lo: {received} bytes received, {transmitted} transmitted, after sending {SENT}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_filesystem_usage_is_statvfs_read_around_the_collection() {
    let pipeline = Pipeline::start().await;
    let probes =
        pipeline.register_between(&[HostMetricGroup::Filesystem], || kernel::Statvfs::of("/"));
    pipeline
        .collect_until_between(&probes, "/ within statvfs", |bracketed| {
            let (before, after) = (bracketed.before.kernel, bracketed.after.kernel);
            let mut checks = Checks::default();
            let root: Vec<(&str, f64)> =
                points(bracketed.collection.metric("system.filesystem.usage"))
                    .iter()
                    .filter(|point| {
                        attribute(&point.attributes, "system.filesystem.mountpoint") == Some("/")
                    })
                    .map(|point| {
                        let state =
                            attribute(&point.attributes, "system.filesystem.state").unwrap();
                        (state, value(point))
                    })
                    .collect();
            let [("used", used), ("free", free)] = root[..] else {
                return Err(format!(
                    "/ should have one used and one free point: {root:?}"
                ));
            };
            let size = before.size();
            checks.equal("the size of / after", after.size(), size);
            // Free is what unprivileged users may still write; the blocks reserved for the
            // superuser count as used.
            checks.between(
                "free on /",
                free,
                before.available_bytes(),
                after.available_bytes(),
                0.0,
            );
            checks.between(
                "used on /",
                used,
                size - before.available_bytes(),
                size - after.available_bytes(),
                0.0,
            );
            checks.equal("used + free on /", used + free, size);
            checks.result()
        })
        .await;
}

/// Bytes the reader's thread read, as a probe between two groups saw them.
struct ReadProbe {
    thread: Option<String>,
    /// `rchar` when the probe began: what the thread had read up to here.
    bytes_at_entry: u64,
    /// The length of each file a group reads, read by the probe in between.
    lengths: BTreeMap<&'static str, u64>,
    /// `rchar` when the probe ended, plus the length of the text that reading it added.
    bytes_at_exit: u64,
}

/// The files each Linux group reads per collection, by the README ("each group reads only what
/// it reports, once per collection"). Not here: filesystem, read through sysinfo, which lists
/// `/proc/mounts` and makes a `statvfs` per filesystem (no `read`s to count).
const FILES_READ: [(HostMetricGroup, &[&str]); 5] = [
    (HostMetricGroup::Cpu, &["/proc/stat"]),
    (HostMetricGroup::Memory, &["/proc/meminfo"]),
    (HostMetricGroup::Network, &["/proc/net/dev"]),
    (HostMetricGroup::Load, &["/proc/loadavg", "/proc/uptime"]),
    (
        HostMetricGroup::Process,
        &["/proc/self/stat", "/proc/uptime", AVAILABLE_PARALLELISM],
    ),
];

/// What `std::thread::available_parallelism` reads (the cgroup's CPU quota), which the process
/// group asks each collection for the denominator of `process.cpu.utilization`, as the quota
/// may change.
const AVAILABLE_PARALLELISM: &str = "available_parallelism";

/// The bytes a group reading `file` reads.
fn length_of(file: &str) -> u64 {
    if file == AVAILABLE_PARALLELISM {
        kernel::bytes_read_by(|| {
            std::thread::available_parallelism().unwrap();
        })
    } else {
        kernel::read(file).len() as u64
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cpu_memory_network_load_and_process_read_only_their_files_once_per_collection_on_the_readers_thread()
 {
    let pipeline = Pipeline::start().await;
    let meter = pipeline.provider.meter("otel-monitor");
    let probes: Vec<Arc<Mutex<Option<ReadProbe>>>> = (0..=FILES_READ.len())
        .map(|_| Arc::new(Mutex::new(None)))
        .collect();
    // A probe, then each group with a probe after it: the SDK calls the callbacks in this
    // order on the reader's thread, so what the thread read between two probes is what the
    // group between them read.
    for (index, probe) in probes.iter().enumerate() {
        let slot = Arc::clone(probe);
        meter
            .u64_observable_gauge(format!("test.probe.{index}"))
            .with_callback(move |_| {
                let (bytes_at_entry, _) = kernel::thread_bytes_read();
                let lengths = FILES_READ
                    .iter()
                    .flat_map(|(_, files)| files.iter())
                    .map(|&file| (file, length_of(file)))
                    .collect();
                let (bytes, text) = kernel::thread_bytes_read();
                *slot.lock().unwrap() = Some(ReadProbe {
                    thread: thread_name(),
                    bytes_at_entry,
                    lengths,
                    bytes_at_exit: bytes + text,
                });
            })
            .build();
        if let Some((group, _)) = FILES_READ.get(index) {
            register_host_metrics(&meter, &[*group]);
        }
    }

    let (pipeline, probes) = (&pipeline, &probes);
    support::wait_until("reads of the files' lengths", DEADLINE, || async move {
        pipeline.collect().await;
        let probes: Vec<ReadProbe> = probes
            .iter()
            .map(|probe| probe.lock().unwrap().take().expect("a probe did not run"))
            .collect();
        for probe in &probes {
            assert_eq!(
                probe.thread.as_deref(),
                Some("OpenTelemetry.Metrics.PeriodicReader"),
                "a collection ran off the reader's thread"
            );
        }
        let mut checks = Checks::default();
        for (index, (group, files)) in FILES_READ.iter().enumerate() {
            let (before, after) = (&probes[index], &probes[index + 1]);
            let read = after.bytes_at_entry - before.bytes_at_exit;
            let least: u64 = files
                .iter()
                .map(|file| before.lengths[file].min(after.lengths[file]))
                .sum();
            let most: u64 = files
                .iter()
                .map(|file| before.lengths[file].max(after.lengths[file]))
                .sum();
            checks.between(
                &format!("bytes {group:?} read on the reader's thread (once {files:?})"),
                read as f64,
                least as f64,
                most as f64,
                0.0,
            );
        }
        checks.result()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_read_nothing_with_host_metrics_registered() {
    use tower::{Layer as _, ServiceExt as _};

    let pipeline = Pipeline::start().await;
    pipeline.register(&HostMetricGroup::ALL);
    let layer = MonitorLayer::builder()
        .meter(pipeline.provider.meter("otel-monitor"))
        .build();
    let service = layer.layer(tower::service_fn(
        |_request: http::Request<otel_monitor::RequestBody<String>>| async {
            Ok::<_, std::convert::Infallible>(http::Response::new("ok".to_owned()))
        },
    ));
    let request = || {
        http::Request::get("http://example.com/users/42")
            .body(String::new())
            .unwrap()
    };
    // The requests run on this thread, whose reads are counted: the test's own future, which
    // awaits them, is polled here by `block_on`, never by a worker.
    service.clone().oneshot(request()).await.unwrap();
    let (bytes_before, text) = kernel::thread_bytes_read();
    for _ in 0..100 {
        service.clone().oneshot(request()).await.unwrap();
    }
    let (bytes_after, _) = kernel::thread_bytes_read();
    assert_eq!(
        bytes_after - bytes_before,
        text,
        "100 requests read {} bytes",
        bytes_after - bytes_before - text
    );
    // The host metrics were there to be read, by a collection.
    let collection = pipeline.collect().await;
    assert!(collection.has(&["system.memory.usage", "http.server.request.duration"]));
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
