//! `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`, as the OTLP exporter specification
//! (v1.60.0, specification/metrics/sdk_exporters/otlp.md) defines it, read at the receiver for
//! every metric exporter the crate offers: OTLP (directly and through rotel), the console, and
//! Prometheus, which stays cumulative whatever the preference.
//!
//! The instruments of the example service, by kind: `http.server.request.duration` a Histogram,
//! `otel.sdk.exporter.span.exported` a Counter, `http.server.active_requests` an UpDownCounter,
//! `system.cpu.time` and `system.network.io` asynchronous Counters.

mod support;

use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, Metric, metric::Data};
use support::{ExampleService, OtlpReceiver, Rotel, client::get, wait_for};

const DEADLINE: Duration = Duration::from_secs(20);
const DELTA: i32 = AggregationTemporality::Delta as i32;
const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

const DURATION: &str = "http.server.request.duration";
const EXPORTED: &str = "otel.sdk.exporter.span.exported";
const ACTIVE: &str = "http.server.active_requests";
const CPU_TIME: &str = "system.cpu.time";
const NETWORK_IO: &str = "system.network.io";

/// The aggregation temporality of a sum or histogram.
fn temporality(metric: &Metric) -> i32 {
    match &metric.data {
        Some(Data::Sum(sum)) => sum.aggregation_temporality,
        Some(Data::Histogram(histogram)) => histogram.aggregation_temporality,
        other => panic!("{}: neither a sum nor a histogram: {other:?}", metric.name),
    }
}

/// The count of `/users/{id}` requests in each export of the duration histogram that had one,
/// with the start and end of its window, in arrival order.
fn user_request_counts(receiver: &OtlpReceiver) -> Vec<(u64, u64, u64)> {
    receiver
        .metrics()
        .into_iter()
        .filter(|metric| metric.metric.name == DURATION)
        .filter_map(|metric| match metric.metric.data {
            Some(Data::Histogram(histogram)) => Some(histogram.data_points),
            _ => None,
        })
        .flatten()
        .filter(|point| support::attr_str(&point.attributes, "http.route") == Some("/users/{id}"))
        .map(|point| {
            (
                point.start_time_unix_nano,
                point.time_unix_nano,
                point.count,
            )
        })
        .collect()
}

/// `count` requests to `/users/{id}`, then waits until the receiver has counted `total` in all.
async fn requests_counted(
    service: &ExampleService,
    receiver: &OtlpReceiver,
    count: usize,
    total: u64,
    delta: bool,
) {
    for _ in 0..count {
        let (status, _, _) = get(&service.url("/users/7"), &[]).await;
        assert!(status.is_success());
    }
    wait_for(&format!("{total} requests counted"), DEADLINE, || {
        let counts = user_request_counts(receiver);
        let counted = if delta {
            counts.iter().map(|(_, _, count)| count).sum()
        } else {
            counts.last().map_or(0, |(_, _, count)| *count)
        };
        (counted >= total).then_some(())
    })
    .await;
}

/// Starts the service exporting to `endpoint` with the preference `value`, sends 2 requests and
/// then 3 once the first 2 arrived, and returns it with every metric the receiver saw.
async fn two_rounds(
    receiver: &OtlpReceiver,
    endpoint: &str,
    value: Option<&str>,
    delta: bool,
) -> ExampleService {
    let mut env = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)];
    if let Some(value) = value {
        env.push(("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", value));
    }
    let service = ExampleService::start(&env);
    requests_counted(&service, receiver, 2, 2, delta).await;
    requests_counted(&service, receiver, 3, 5, delta).await;
    // Every kind of instrument has been exported at least once by now.
    for name in [DURATION, EXPORTED, ACTIVE, CPU_TIME, NETWORK_IO] {
        wait_for(name, DEADLINE, || receiver.latest_metric(name)).await;
    }
    service
}

/// Each export of the duration histogram counts only its own window's requests: together they
/// count the 5, none counts all 5, and each window starts where the one before ended.
fn assert_per_interval(receiver: &OtlpReceiver) {
    let counts = user_request_counts(receiver);
    assert_eq!(
        counts.iter().map(|(_, _, count)| count).sum::<u64>(),
        5,
        "{counts:?}"
    );
    assert!(counts.iter().all(|(_, _, count)| *count <= 3), "{counts:?}");
    for pair in counts.windows(2) {
        assert!(pair[1].0 >= pair[0].1, "overlapping windows: {counts:?}");
    }
}

/// Every export of `name` the receiver saw, all with `expected` temporality.
fn assert_all(receiver: &OtlpReceiver, name: &str, expected: i32) {
    let seen: Vec<i32> = receiver
        .metrics()
        .iter()
        .filter(|metric| metric.metric.name == name)
        .map(|metric| temporality(&metric.metric))
        .collect();
    assert!(!seen.is_empty(), "{name} never arrived");
    assert!(
        seen.iter().all(|temporality| *temporality == expected),
        "{name}: {seen:?}, expected all {expected} (1 delta, 2 cumulative)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_delta_counters_and_histograms_arrive_per_interval_and_up_down_counters_stay_cumulative()
 {
    let receiver = OtlpReceiver::start().await;
    let service = two_rounds(&receiver, &receiver.http_endpoint(), Some("delta"), true).await;
    assert_per_interval(&receiver);
    assert_all(&receiver, DURATION, DELTA);
    assert_all(&receiver, EXPORTED, DELTA);
    assert_all(&receiver, CPU_TIME, DELTA);
    assert_all(&receiver, NETWORK_IO, DELTA);
    assert_all(&receiver, ACTIVE, CUMULATIVE);
    assert!(service.stop().status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_lowmemory_only_synchronous_counters_and_histograms_are_delta() {
    let receiver = OtlpReceiver::start().await;
    // Read in any case, as the specification says.
    let service = two_rounds(
        &receiver,
        &receiver.http_endpoint(),
        Some("LowMemory"),
        true,
    )
    .await;
    assert_per_interval(&receiver);
    assert_all(&receiver, DURATION, DELTA);
    assert_all(&receiver, EXPORTED, DELTA);
    assert_all(&receiver, CPU_TIME, CUMULATIVE);
    assert_all(&receiver, NETWORK_IO, CUMULATIVE);
    assert_all(&receiver, ACTIVE, CUMULATIVE);
    assert!(service.stop().status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cumulative_set_or_unset_keeps_every_metric_cumulative() {
    for value in [Some("cumulative"), None] {
        let receiver = OtlpReceiver::start().await;
        let service = two_rounds(&receiver, &receiver.http_endpoint(), value, false).await;
        for name in [DURATION, EXPORTED, ACTIVE, CPU_TIME, NETWORK_IO] {
            assert_all(&receiver, name, CUMULATIVE);
        }
        assert_eq!(
            user_request_counts(&receiver)
                .last()
                .map(|(_, _, count)| *count),
            Some(5),
            "{value:?}"
        );
        assert!(service.stop().status.success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delta_passes_through_a_collector() {
    let receiver = OtlpReceiver::start().await;
    let rotel = Rotel::start_forwarding_to(&receiver.grpc_endpoint());
    let service = two_rounds(&receiver, &rotel.http_endpoint(), Some("delta"), true).await;
    assert_per_interval(&receiver);
    assert_all(&receiver, DURATION, DELTA);
    assert_all(&receiver, EXPORTED, DELTA);
    assert_all(&receiver, ACTIVE, CUMULATIVE);
    assert!(service.stop().status.success());
}

#[test]
fn the_console_exporter_prints_delta_sums_and_histograms_under_delta() {
    for (value, expected) in [("delta", "Delta"), ("cumulative", "Cumulative")] {
        let service = ExampleService::start(&[
            ("OTEL_METRICS_EXPORTER", "console"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", value),
        ]);
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(get(&service.url("/users/7"), &[]));
        let exit = service.stop();
        assert!(exit.status.success(), "{exit:?}");
        // The duration histogram's block: its name, then its temporality a few lines below.
        let lines: Vec<&str> = exit.output.lines().collect();
        let at = lines
            .iter()
            .position(|line| line.contains(&format!("Name         : {DURATION}")))
            .unwrap_or_else(|| panic!("{DURATION} not printed:\n{}", exit.output));
        let temporality = lines[at..]
            .iter()
            .find(|line| line.contains("Temporality"))
            .unwrap();
        assert!(temporality.ends_with(expected), "{value}: {temporality}");
    }
}

#[test]
fn an_unknown_preference_fails_start_up_naming_the_accepted_values() {
    let exit = support::example::run_to_exit(&[(
        "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE",
        "deltas",
    )]);
    assert!(!exit.status.success());
    assert!(
        exit.output.contains(
            r#"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE="deltas" is not valid: expected one of cumulative, delta, lowmemory"#
        ),
        "{}",
        exit.output
    );
}

/// Prometheus scrapes totals: under `delta` the scraped count keeps growing (2, then 5) while
/// the OTLP exporter beside it sends per-interval values.
#[cfg(feature = "prometheus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_stays_cumulative_under_delta_beside_a_delta_otlp_exporter() {
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("OTEL_METRICS_EXPORTER", "otlp,prometheus"),
        ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
    ]);
    let scraped_count = || async {
        let (status, _, body) = get(&service.url("/metrics"), &[]).await;
        assert!(status.is_success());
        let body = String::from_utf8(body.to_vec()).unwrap();
        let line = body
            .lines()
            .find(|line| {
                line.starts_with("http_server_request_duration_seconds_count{")
                    && line.contains(r#"http_route="/users/{id}""#)
            })
            .unwrap_or_else(|| panic!("no count of /users/{{id}}:\n{body}"))
            .to_owned();
        line.rsplit(' ').next().unwrap().parse::<u64>().unwrap()
    };
    requests_counted(&service, &receiver, 2, 2, true).await;
    assert_eq!(scraped_count().await, 2);
    requests_counted(&service, &receiver, 3, 5, true).await;
    assert_eq!(scraped_count().await, 5);
    assert_per_interval(&receiver);
    assert_all(&receiver, DURATION, DELTA);
    assert!(service.stop().status.success());
}
