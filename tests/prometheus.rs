//! Grafana and Prometheus: the example service exposes `/metrics` (feature `prometheus`), a real
//! Prometheus 2.42 scrapes it, and every dashboard query and alert expression is evaluated on what
//! Prometheus really holds, under a traffic mix the test sends itself, with the values that mix
//! implies.

mod support;

use std::{
    collections::{BTreeMap, BTreeSet},
    process::Command,
    time::Duration,
};

use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use serde_json::Value;
use support::{
    ExampleService, OtlpReceiver,
    client::get,
    prometheus::{Prometheus, ScrapeJob, checked_tool, label, sample_value},
};

const DEADLINE: Duration = Duration::from_secs(30);

/// The service the dashboard is looked at for (Grafana's `$service`).
const CHECKOUT: &str = "checkout";
/// A second service scraped by the same Prometheus, with no errors and no slow requests: what a
/// query must not mix into `checkout`'s figures, and where no alert may fire.
const HEALTHY: &str = "healthy";

/// The token the example's `GET /admin` asks for, set for `checkout`.
const ADMIN_TOKEN: &str = "prometheus-test-token";
/// Request headers, as name and value.
type Headers = &'static [(&'static str, &'static str)];
/// What the test sends to `checkout` one after the other in each round: path, headers, the
/// status it must answer, how many times.
const CHECKOUT_SEQUENTIAL: [(&str, Headers, u16, usize); 9] = [
    ("/users/42", &[], 200, 8),
    ("/users/abc", &[], 400, 2),
    ("/", &[], 200, 3),
    ("/slow?ms=200", &[], 200, 5),
    ("/error", &[], 500, 5),
    ("/admin", &[], 401, 3),
    ("/admin", &[("authorization", "Bearer wrong")], 403, 2),
    (
        "/admin",
        &[("authorization", "Bearer prometheus-test-token")],
        200,
        1,
    ),
    ("/wp-login.php", &[], 404, 3),
];
/// Then these, all at once, and still in flight while Prometheus scrapes (2 chunks 3 s apart).
const CHECKOUT_IN_FLIGHT: (&str, usize) = ("/stream?chunks=2&ms=3000", 2);
/// Requests of `checkout` in one round: 8 + 2 + 3 + 5 + 5 + 3 + 2 + 1 + 3 + 2.
const CHECKOUT_PER_ROUND: f64 = 34.0;
/// `/error`'s 5 of the 34.
const CHECKOUT_5XX_RATIO: f64 = 5.0 / 34.0;
/// Requests of `checkout` per route and method in one round (`""`: no route matched).
const CHECKOUT_ROUTES: [(&str, f64); 7] = [
    ("/users/{id}", 10.0),
    ("/", 3.0),
    ("/slow", 5.0),
    ("/error", 5.0),
    ("/stream", 2.0),
    ("/admin", 6.0),
    ("", 3.0),
];
/// Refusals of `checkout` in one round by route and status: `/admin`'s 401s (no token) and
/// 403s (a wrong one); and the 404s of no route (`/wp-login.php`), a scan's.
const CHECKOUT_REFUSALS: [(&str, &str, f64); 2] = [("/admin", "401", 3.0), ("/admin", "403", 2.0)];
const CHECKOUT_UNMATCHED_404: f64 = 3.0;
/// What `healthy` gets in each round, after `checkout`'s requests.
const HEALTHY_REQUESTS: (&str, usize) = ("/users/1", 5);

/// The two services, scraped every second by one Prometheus, after two identical rounds of the
/// known traffic mix.
///
/// The first round creates every series; the second round happens between the scrapes at `from`
/// and `to`. Over the window `(from - 0.5 s, to]` evaluated at `to`, every series of `checkout`
/// has samples at the same instants (one scrape writes them all), its first sample holds the
/// first round and its last both: Prometheus's `rate` is then exactly the second round's count
/// divided by `to - from` (its extrapolation adds the same half interval to every series), so
/// ratios of rates are the mix's ratios.
struct KnownTraffic {
    prometheus: Prometheus,
    checkout: ExampleService,
    healthy: ExampleService,
    /// The last scrape of `checkout` before the second round, in milliseconds since the epoch.
    from: i64,
    /// A scrape of `checkout` after the second round, and after `healthy`'s second round was
    /// scraped.
    to: i64,
    /// What `in_flight_query` returned while the second round's streams were in flight.
    in_flight: Vec<Value>,
}

impl KnownTraffic {
    /// Starts both services and Prometheus, and sends the two rounds; during the second round's
    /// streams, waits until `in_flight_query` returns one sample of value 2.
    async fn send(in_flight_query: &str) -> Self {
        let checkout = scraped_service(CHECKOUT);
        let healthy = scraped_service(HEALTHY);
        let checkout_target = target(&checkout);
        let healthy_target = target(&healthy);
        let prometheus = Prometheus::start(&[
            ScrapeJob {
                job: CHECKOUT,
                target: &checkout_target,
            },
            ScrapeJob {
                job: HEALTHY,
                target: &healthy_target,
            },
        ])
        .await;
        let mut traffic = Self {
            prometheus,
            checkout,
            healthy,
            from: 0,
            to: 0,
            in_flight: Vec::new(),
        };
        traffic.round(None).await;
        traffic.wait_for_request_counts(1.0).await;
        traffic.from = traffic.latest_scrape(CHECKOUT).await;
        traffic.in_flight = traffic.round(Some(in_flight_query)).await;
        traffic.wait_for_request_counts(2.0).await;
        let healthy_scraped = traffic.latest_scrape(HEALTHY).await;
        traffic.to = support::wait_until(
            "a scrape of checkout after healthy's last one",
            DEADLINE,
            || async {
                let checkout_scraped = traffic.latest_scrape(CHECKOUT).await;
                if checkout_scraped > healthy_scraped {
                    Ok(checkout_scraped)
                } else {
                    Err(format!("{checkout_scraped} <= {healthy_scraped}"))
                }
            },
        )
        .await;
        traffic
    }

    /// One round of the mix; returns what `in_flight_query` showed during the streams.
    async fn round(&self, in_flight_query: Option<&str>) -> Vec<Value> {
        for (path, headers, status, count) in CHECKOUT_SEQUENTIAL {
            for _ in 0..count {
                let (answered, _, _) = get(&self.checkout.url(path), headers).await;
                assert_eq!(answered.as_u16(), status, "{path}");
            }
        }
        let (path, count) = CHECKOUT_IN_FLIGHT;
        let streams: Vec<_> = (0..count)
            .map(|_| tokio::spawn(get_owned(self.checkout.url(path))))
            .collect();
        let mut in_flight = Vec::new();
        if let Some(query) = in_flight_query {
            in_flight = self
                .prometheus
                .wait_for(query, Duration::from_secs(10), |result| {
                    result.len() == 1 && sample_value(&result[0]) == count as f64
                })
                .await;
        }
        for stream in streams {
            assert_eq!(stream.await.unwrap(), 200, "{path}");
        }
        let (path, count) = HEALTHY_REQUESTS;
        for _ in 0..count {
            let (answered, _, _) = get(&self.healthy.url(path), &[]).await;
            assert_eq!(answered.as_u16(), 200, "{path}");
        }
        in_flight
    }

    /// Waits until Prometheus holds `rounds` rounds of both services' requests.
    async fn wait_for_request_counts(&self, rounds: f64) {
        for (service, per_round) in [
            (CHECKOUT, CHECKOUT_PER_ROUND),
            (HEALTHY, HEALTHY_REQUESTS.1 as f64),
        ] {
            self.prometheus
                .wait_for(
                    &format!(
                        r#"sum(http_server_request_duration_seconds_count{{service_name="{service}"}})"#
                    ),
                    DEADLINE,
                    |result| result.len() == 1 && sample_value(&result[0]) == rounds * per_round,
                )
                .await;
        }
    }

    /// The time of the latest scrape of `job`, in milliseconds since the epoch (Prometheus
    /// keeps milliseconds).
    async fn latest_scrape(&self, job: &str) -> i64 {
        let result = self
            .prometheus
            .query(&format!(r#"timestamp(target_info{{job="{job}"}})"#))
            .await;
        assert_eq!(result.len(), 1, "{result:?}");
        (sample_value(&result[0]) * 1000.0).round() as i64
    }

    /// The rate window: from just after the scrape before `from` up to `to`.
    fn window(&self) -> String {
        format!("{}ms", self.to - self.from + 500)
    }

    /// Seconds between the scrapes around the second round: a rate over [`Self::window`] is the
    /// second round's count divided by this.
    fn seconds(&self) -> f64 {
        (self.to - self.from) as f64 / 1000.0
    }

    /// How much the one series `promql` selects grew between `from` and `to`: the second round.
    async fn second_round(&self, promql: &str) -> f64 {
        let before = self.prometheus.query_at(promql, self.from).await;
        let after = self.prometheus.query_at(promql, self.to).await;
        single(&after, promql) - single(&before, promql)
    }

    /// `promql` evaluated at `to`.
    async fn at_end(&self, promql: &str) -> Vec<Value> {
        self.prometheus.query_at(promql, self.to).await
    }
}

async fn get_owned(url: String) -> u16 {
    get(&url, &[]).await.0.as_u16()
}

/// The example service with metrics for Prometheus only.
fn scraped_service(name: &str) -> ExampleService {
    ExampleService::start(&[
        ("EXAMPLE_ADMIN_TOKEN", ADMIN_TOKEN),
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_SERVICE_NAME", name),
    ])
}

fn target(service: &ExampleService) -> String {
    service.url("").trim_start_matches("http://").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_request_metrics_under_their_prometheus_names() {
    let service = scraped_service(CHECKOUT);
    let (status, headers, body) = get(&service.url("/metrics"), &[]).await;
    assert!(status.is_success());
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(String::from_utf8_lossy(&body).contains("# TYPE target_info gauge"));
    let prometheus = Prometheus::start_scraping(&target(&service)).await;
    for _ in 0..3 {
        assert_eq!(get(&service.url("/users/1"), &[]).await.0, 200);
    }
    assert_eq!(get(&service.url("/error"), &[]).await.0, 500);

    let requests = prometheus
        .wait_for(
            r#"http_server_request_duration_seconds_count{service_name="checkout", http_route="/users/{id}", http_response_status_code="200"}"#,
            DEADLINE,
            |result| result.len() == 1 && sample_value(&result[0]) == 3.0,
        )
        .await;
    assert_eq!(label(&requests[0], "http_request_method"), "GET");
    let errors = prometheus
        .wait_for(
            r#"http_server_request_duration_seconds_count{service_name="checkout", http_route="/error"}"#,
            DEADLINE,
            |result| result.len() == 1 && sample_value(&result[0]) == 1.0,
        )
        .await;
    assert_eq!(label(&errors[0], "http_response_status_code"), "500");
    assert_eq!(label(&errors[0], "error_type"), "500");
    // The histogram's buckets are the conventions' 14 boundaries, in seconds, and +Inf.
    let buckets = prometheus
        .query(r#"http_server_request_duration_seconds_bucket{http_route="/error"}"#)
        .await;
    let mut bounds: Vec<f64> = buckets
        .iter()
        .map(|bucket| label(bucket, "le").parse().unwrap())
        .collect();
    bounds.sort_by(f64::total_cmp);
    assert_eq!(
        bounds,
        [
            0.005,
            0.01,
            0.025,
            0.05,
            0.075,
            0.1,
            0.25,
            0.5,
            0.75,
            1.0,
            2.5,
            5.0,
            7.5,
            10.0,
            f64::INFINITY
        ]
    );
    let target = prometheus
        .wait_for_data(r#"target_info{service_name="checkout"}"#, DEADLINE)
        .await;
    assert_eq!(label(&target[0], "telemetry_sdk_language"), "rust");
    let scrapes_measured = prometheus
        .query(r#"http_server_request_duration_seconds_count{http_route="/metrics"}"#)
        .await;
    assert!(scrapes_measured.is_empty(), "scrapes are not measured");

    assert!(service.stop().status.success());
}

/// Every panel query of `dashboards/otel-monitor.json`, by `"{panel title} / {refId}"`, with
/// `$service` set to `checkout`, and `$__rate_interval` and `$__range` (the error budget panels'
/// 30 days) to `window`.
fn dashboard_queries(window: &str) -> BTreeMap<String, String> {
    let dashboard = dashboard();
    let mut queries = BTreeMap::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            let key = format!(
                "{} / {}",
                panel["title"].as_str().unwrap(),
                target["refId"].as_str().unwrap()
            );
            let query = expr
                .replace("$service", CHECKOUT)
                .replace("$__rate_interval", window)
                .replace("$__range", window);
            assert!(!query.contains('$'), "{key}: an unknown variable in {expr}");
            assert!(queries.insert(key, query).is_none(), "{expr}");
        }
    }
    queries
}

fn dashboard() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/otel-monitor.json"),
        )
        .unwrap(),
    )
    .unwrap()
}

/// The samples of a panel query by the value of `by` (`""` for a sample without the label).
fn by_label(result: &[Value], by: &str) -> BTreeMap<String, f64> {
    let mut values = BTreeMap::new();
    for sample in result {
        let previous = values.insert(label(sample, by).to_owned(), sample_value(sample));
        assert!(previous.is_none(), "two samples with {by}: {result:?}");
    }
    values
}

/// The one sample of a result that must have exactly one.
fn single(result: &[Value], what: &str) -> f64 {
    assert_eq!(result.len(), 1, "{what}: {result:?}");
    sample_value(&result[0])
}

/// A number from `/proc/meminfo` (`MemTotal`, ...), in bytes.
fn meminfo_bytes(field: &str) -> f64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = meminfo
        .lines()
        .find(|line| line.starts_with(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in /proc/meminfo"));
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024.0
}

/// The resident set size of process `pid` from `/proc/PID/status` (`VmRSS`), in bytes.
fn rss_bytes(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .unwrap();
    let kib: f64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024.0
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= expected.abs() * 1e-9,
        "{what}: {actual}, expected {expected}"
    );
}

/// Every dashboard query, evaluated for `checkout` at the end of the second round over the
/// second round's window, shows what the traffic mix implies: request rates of exactly the counts
/// sent divided by the window, a 5xx ratio of exactly 5 in 34, `/slow?ms=200`'s quantiles in the
/// (100 ms, 250 ms] bucket, the two streams in flight, the refusals by route and status and the
/// 404s of no route at exactly their rates, and host and process figures that agree
/// with the kernel. `healthy`'s requests, scraped in the same window, must not leak in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_shows_the_known_traffic_mix_of_the_selected_service() {
    let active_requests = "Active requests / A";
    let in_flight_query = dashboard_queries("1m")[active_requests].clone();
    let traffic = KnownTraffic::send(&in_flight_query).await;
    let seconds = traffic.seconds();
    let mut queries = dashboard_queries(&traffic.window());
    let mut results = BTreeMap::new();
    for (panel, query) in &queries {
        results.insert(panel.clone(), traffic.at_end(query).await);
    }
    let mut check = |panel: &str| {
        assert!(queries.remove(panel).is_some(), "no panel {panel}");
        results.remove(panel).unwrap()
    };

    // The `$service` variable lists both services.
    let services = traffic
        .prometheus
        .label_values("service_name", "target_info")
        .await;
    assert_eq!(services, [CHECKOUT, HEALTHY]);

    let rates = check("Request rate by route / A");
    let mut by_route = BTreeMap::new();
    for sample in &rates {
        assert_eq!(label(sample, "http_request_method"), "GET", "{sample}");
        by_route.insert(label(sample, "http_route").to_owned(), sample_value(sample));
    }
    assert_eq!(
        by_route.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        CHECKOUT_ROUTES.iter().map(|(route, _)| *route).collect(),
        "{rates:?}"
    );
    for (route, count) in CHECKOUT_ROUTES {
        assert_close(by_route[route], count / seconds, route);
    }

    let ratio = single(
        &check("Error rate (5xx share of requests) / A"),
        "5xx ratio",
    );
    assert_close(ratio, CHECKOUT_5XX_RATIO, "5xx ratio");

    for (quantile, panel) in [
        (0.5, "Latency p50 / p95 / p99 by route / A"),
        (0.95, "Latency p50 / p95 / p99 by route / B"),
        (0.99, "Latency p50 / p95 / p99 by route / C"),
    ] {
        let latencies = by_label(&check(panel), "http_route");
        assert_eq!(
            latencies
                .keys()
                .map(String::as_str)
                .collect::<BTreeSet<_>>(),
            CHECKOUT_ROUTES.iter().map(|(route, _)| *route).collect(),
            "{panel}"
        );
        // /slow?ms=200: every request in the bucket (0.1 s, 0.25 s]; Prometheus interpolates
        // within it, so any quantile lies inside it.
        let slow = latencies["/slow"];
        assert!(
            slow > 0.1 && slow <= 0.25,
            "p{} of /slow?ms=200 is {slow} s, outside the (0.1, 0.25] bucket",
            quantile * 100.0
        );
        // Two chunks 3 s apart: the bucket (2.5 s, 5 s].
        let stream = latencies["/stream"];
        assert!(
            stream > 2.5 && stream <= 5.0,
            "p{} of /stream is {stream} s, outside the (2.5, 5] bucket",
            quantile * 100.0
        );
        if quantile == 0.5 {
            for route in ["/users/{id}", "/", "/error"] {
                assert!(
                    latencies[route] <= 0.1,
                    "the median of {route} is {} s, not under /slow's bucket",
                    latencies[route]
                );
            }
        }
    }

    // The buckets behind those quantiles: of the second round's 5 `/slow?ms=200` requests,
    // none took 100 ms or less, all took 250 ms or less.
    for (bound, expected) in [("0.1", 0.0), ("0.25", 5.0), ("+Inf", 5.0)] {
        let bucket = format!(
            r#"http_server_request_duration_seconds_bucket{{service_name="checkout", http_route="/slow", le="{bound}"}}"#
        );
        assert_eq!(
            traffic.second_round(&bucket).await,
            expected,
            "/slow?ms=200 requests within {bound} s"
        );
    }

    // Security: the refusals by route and status, and the 404s of no route.
    let refusals = check("Refusals by route and status / A");
    let mut by_route_and_status = BTreeMap::new();
    for sample in &refusals {
        let key = (
            label(sample, "http_route").to_owned(),
            label(sample, "http_response_status_code").to_owned(),
        );
        assert!(
            by_route_and_status
                .insert(key, sample_value(sample))
                .is_none()
        );
    }
    assert_eq!(
        by_route_and_status.len(),
        CHECKOUT_REFUSALS.len(),
        "{refusals:?}"
    );
    for (route, status, count) in CHECKOUT_REFUSALS {
        let rate = by_route_and_status[&(route.to_owned(), status.to_owned())];
        assert_close(rate, count / seconds, &format!("{status} {route}"));
    }
    let unmatched = single(&check("Refusals by route and status / B"), "unmatched 404s");
    assert_close(
        unmatched,
        CHECKOUT_UNMATCHED_404 / seconds,
        "unmatched 404s",
    );

    // In flight: the two streams during the second round, none at its end.
    assert_eq!(label(&traffic.in_flight[0], "http_request_method"), "GET");
    assert_eq!(
        by_label(&check(active_requests), "http_request_method"),
        BTreeMap::from([("GET".to_owned(), 0.0)])
    );

    let host_cpu = by_label(&check("CPU utilization / A"), "cpu_mode");
    assert_eq!(
        host_cpu.keys().map(String::as_str).collect::<Vec<_>>(),
        ["interrupt", "iowait", "nice", "steal", "system", "user"],
        "every mode but idle"
    );
    assert!(
        host_cpu.values().all(|value| (0.0..=1.0).contains(value)),
        "{host_cpu:?}"
    );
    assert!(
        host_cpu.values().sum::<f64>() <= 1.0 + 1e-9,
        "the busy share of one host's CPUs: {host_cpu:?}"
    );
    assert!(host_cpu["user"] + host_cpu["system"] > 0.0, "{host_cpu:?}");
    let process_cpu = by_label(&check("CPU utilization / B"), "cpu_mode");
    assert_eq!(
        process_cpu.keys().map(String::as_str).collect::<Vec<_>>(),
        ["system", "user"]
    );
    assert!(
        process_cpu
            .values()
            .all(|value| (0.0..=1.0).contains(value)),
        "{process_cpu:?}"
    );

    let rss = single(&check("Process memory (RSS) / A"), "RSS");
    let kernel_rss = rss_bytes(traffic.checkout.pid());
    assert!(
        (rss - kernel_rss).abs() <= 0.2 * kernel_rss,
        "RSS {rss} B, the kernel says {kernel_rss} B (VmRSS)"
    );

    let memory = by_label(&check("Memory / A"), "system_memory_state");
    assert_eq!(
        memory.keys().map(String::as_str).collect::<Vec<_>>(),
        ["buffers", "cached", "free", "used"]
    );
    let total = meminfo_bytes("MemTotal");
    assert!(
        memory["used"] + memory["free"] <= total,
        "used + free of one host within its {total} B: {memory:?}"
    );
    assert!(
        memory["used"] >= rss,
        "the host uses at least the service's own {rss} B: {memory:?}"
    );
    assert!(memory["free"] > 0.0, "{memory:?}");

    // The requests and the scrapes crossed the loopback interface in the window: both ways.
    let network = by_label(&check("Network / A"), "network_io_direction");
    assert_eq!(
        network.keys().map(String::as_str).collect::<Vec<_>>(),
        ["receive", "transmit"]
    );
    assert!(network.values().all(|rate| *rate > 0.0), "{network:?}");

    // Service level objectives: the error budget left by route, with the objectives the SLO rules
    // record (the test's Prometheus loads them). `/error` answers only 5xx and `/stream` takes
    // 3 s, over the 0.5 s threshold, every time: all their budget and a thousand (availability)
    // or a hundred (latency) times more is spent; every other route spends none.
    let left = |ratio_spent: f64, objective: f64| 1.0 - ratio_spent / (1.0 - objective);
    for (panel, objective, spending) in [
        (
            "Availability error budget left (30 days) / A",
            slo_objective("availability"),
            "/error",
        ),
        (
            "Latency error budget left (30 days) / A",
            slo_objective("latency"),
            "/stream",
        ),
    ] {
        let budgets = by_label(&check(panel), "http_route");
        assert_eq!(
            budgets.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            CHECKOUT_ROUTES.iter().map(|(route, _)| *route).collect(),
            "{panel}"
        );
        for (route, budget) in &budgets {
            let expected = left(if route == spending { 1.0 } else { 0.0 }, objective);
            assert_close(*budget, expected, &format!("{panel}: {route}"));
        }
    }
    // The SLO rules read the names the scrape really has: their recorded 5-minute ratios (both
    // rounds) are 1 for the spending route and 0 for every other, `healthy`'s included. The rules
    // run once a second, apart from the scrapes: read them once they ran after the scrape at `to`
    // (before it, `/stream`'s series had not grown within its short life: 0 / 0).
    let to_seconds = traffic.to as f64 / 1000.0;
    let evaluated_after_to = |result: &[Value]| {
        !result.is_empty()
            && result
                .iter()
                .all(|sample| sample_value(sample) > to_seconds)
    };
    for (ratio, spending) in [
        ("slo:http_server_requests_errors:ratio_rate5m", "/error"),
        ("slo:http_server_requests_slow:ratio_rate5m", "/stream"),
    ] {
        for service in [CHECKOUT, HEALTHY] {
            let query = format!(r#"{ratio}{{service_name="{service}"}}"#);
            traffic
                .prometheus
                .wait_for(&format!("timestamp({query})"), DEADLINE, evaluated_after_to)
                .await;
            let by_route = by_label(&traffic.prometheus.query(&query).await, "http_route");
            let routes: BTreeSet<&str> = if service == CHECKOUT {
                CHECKOUT_ROUTES.iter().map(|(route, _)| *route).collect()
            } else {
                BTreeSet::from(["/users/{id}"])
            };
            assert_eq!(
                by_route.keys().map(String::as_str).collect::<BTreeSet<_>>(),
                routes,
                "{query}"
            );
            for (route, value) in by_route {
                let expected = if route == spending { 1.0 } else { 0.0 };
                assert_eq!(value, expected, "{query}: {route}");
            }
        }
    }

    assert!(
        queries.is_empty(),
        "panel queries this test does not check: {queries:?}"
    );
    assert!(traffic.checkout.stop().status.success());
    assert!(traffic.healthy.stop().status.success());
}

/// The alerting rules, as `alerts/otel-monitor.rules.yml` states them.
#[derive(serde::Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(serde::Deserialize)]
struct RuleGroup {
    rules: Vec<Rule>,
}

#[derive(serde::Deserialize)]
struct Rule {
    alert: String,
    expr: String,
}

fn alert_expressions() -> BTreeMap<String, String> {
    let file: RuleFile = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/otel-monitor.rules.yml"),
        )
        .unwrap(),
    )
    .unwrap();
    file.groups
        .into_iter()
        .flat_map(|group| group.rules)
        .map(|rule| (rule.alert, rule.expr))
        .collect()
}

/// `expr` with `from` replaced by `to`; `from` must occur exactly `times` times.
fn replaced(expr: &str, from: &str, to: &str, times: usize) -> String {
    assert_eq!(expr.matches(from).count(), times, "{from} in {expr}");
    expr.replace(from, to)
}

/// The values of label `by` in an alert expression's result: who it fires for.
fn firing(result: &[Value], by: &str) -> BTreeSet<String> {
    result
        .iter()
        .map(|sample| label(sample, by).to_owned())
        .collect()
}

fn names(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|name| name.to_string()).collect()
}

/// Every alert expression of the rules file, evaluated by Prometheus on the real scrape of both
/// services under the known mix: the 5xx and p99 alerts fire for `checkout` (5 in 34 fail, 2 in
/// 34 take 3 s) and not for `healthy`, the 5xx one on exactly the mix's share; the spikes of
/// 401/403 and of unmatched 404s read exactly the mix's rates of them; the host alerts
/// follow the host and read real series; after `checkout` stops,
/// `ServiceDown` fires for its scrape and `ServiceSilent` (its window shortened from 3 minutes to
/// 5 s for the test) for its job, not for `healthy`'s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_alert_expression_fires_on_the_real_scrape_where_the_traffic_mix_says() {
    let mut alerts = alert_expressions();
    let traffic = KnownTraffic::send(&dashboard_queries("1m")["Active requests / A"]).await;
    let mut check = |alert: &str| {
        alerts
            .remove(alert)
            .unwrap_or_else(|| panic!("no alert {alert}"))
    };

    let errors = check("HighErrorRate");
    let high_errors = traffic.at_end(&errors).await;
    assert_eq!(firing(&high_errors, "service_name"), names(&[CHECKOUT]));
    // Over the second round alone, the value it compares with 5 % is the mix's 5 in 34.
    let second_round = replaced(&errors, "[5m]", &format!("[{}]", traffic.window()), 2);
    let ratio = single(&traffic.at_end(&second_round).await, "5xx share");
    assert_close(ratio, CHECKOUT_5XX_RATIO, "HighErrorRate's 5xx share");

    let slow = traffic.at_end(&check("HighLatencyP99")).await;
    assert_eq!(firing(&slow, "service_name"), names(&[CHECKOUT]));
    let p99 = sample_value(&slow[0]);
    assert!(p99 > 2.5 && p99 <= 5.0, "the streams' bucket: {p99}");

    // The spikes of refusals: over the second round, with any rate above 0 a spike (the test
    // is minutes old, so the hour before holds nothing and the rate is compared with 0), they
    // fire for checkout alone, at the mix's rate: 5 rejected with 401/403, 3 unmatched 404s
    // (`/users/abc`'s 400 and a route's answers are not counted), no 429 (the example has no
    // rate limit, so that one fires for nobody, reading the same way).
    for (alert, count) in [
        ("AuthFailureSpike", Some(5.0)),
        ("UnmatchedRouteScan", Some(CHECKOUT_UNMATCHED_404)),
        ("RateLimitSpike", None),
    ] {
        let expr = check(alert);
        let second_round = replaced(&expr, "[5m]", &format!("[{}]", traffic.window()), 3);
        let any_rate = replaced(&second_round, "> 1\n", "> 0\n", 1);
        let result = traffic.at_end(&any_rate).await;
        match count {
            Some(count) => {
                assert_eq!(
                    firing(&result, "service_name"),
                    names(&[CHECKOUT]),
                    "{alert}"
                );
                assert_close(sample_value(&result[0]), count / traffic.seconds(), alert);
            }
            None => assert!(result.is_empty(), "{alert}: {result:?}"),
        }
        // Under the real threshold and window, a few refusals are no spike.
        let real = traffic.at_end(&expr).await;
        assert!(real.is_empty(), "{alert}: {real:?}");
    }

    let memory = check("HighMemoryUtilization");
    let used = 1.0 - meminfo_bytes("MemAvailable") / meminfo_bytes("MemTotal");
    assert!(
        (used - 0.9).abs() > 0.05,
        "the host's memory is used at {used}, too close to the 90 % threshold to test"
    );
    let expected = if used > 0.9 {
        names(&[CHECKOUT, HEALTHY])
    } else {
        names(&[])
    };
    assert_eq!(
        firing(&traffic.at_end(&memory).await, "service_name"),
        expected,
        "memory used at {used}"
    );
    // Whatever the host's load, the expressions read real series: some memory and some CPU
    // time are always in use, and neither share can exceed the whole.
    let cpu = check("HighCpuUtilization");
    for expr in [&memory, &cpu] {
        let any_use = replaced(expr, "> 0.9", "> 0", 1);
        assert_eq!(
            firing(&traffic.at_end(&any_use).await, "service_name"),
            names(&[CHECKOUT, HEALTHY]),
            "{any_use}"
        );
        let over_the_whole = replaced(expr, "> 0.9", "> 1.000001", 1);
        let over = traffic.at_end(&over_the_whole).await;
        assert!(over.is_empty(), "{over_the_whole}: {over:?}");
    }

    let down = check("ServiceDown");
    let silent = replaced(&check("ServiceSilent"), "[3m]", "[5s]", 1);
    assert!(
        alerts.is_empty(),
        "alerts this test does not evaluate: {alerts:?}"
    );
    assert!(traffic.prometheus.query(&down).await.is_empty());
    assert!(traffic.prometheus.query(&silent).await.is_empty());

    let KnownTraffic {
        prometheus,
        checkout,
        healthy,
        ..
    } = traffic;
    let checkout_instance = target(&checkout);
    assert!(checkout.stop().status.success());
    let down = prometheus
        .wait_for(&down, DEADLINE, |result| !result.is_empty())
        .await;
    assert_eq!(firing(&down, "job"), names(&[CHECKOUT]));
    assert_eq!(firing(&down, "instance"), names(&[&checkout_instance]));
    let silent = prometheus
        .wait_for(&silent, DEADLINE, |result| !result.is_empty())
        .await;
    assert_eq!(firing(&silent, "job"), names(&[CHECKOUT]));
    assert!(healthy.stop().status.success());
}

/// Prometheus's own series for each target: every other series comes from the service.
const SCRAPE_SERIES: [&str; 5] = [
    "scrape_duration_seconds",
    "scrape_samples_post_metric_relabeling",
    "scrape_samples_scraped",
    "scrape_series_added",
    "up",
];

/// Every series Prometheus scraped from each service, whatever its kind, carries
/// `service_name` with that service's exact name; only Prometheus's own per-target series
/// (`up`, `scrape_*`) lack it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scraped_series_carries_the_exact_service_name() {
    let traffic = KnownTraffic::send(&dashboard_queries("1m")["Active requests / A"]).await;
    for service in [CHECKOUT, HEALTHY] {
        let series = traffic
            .prometheus
            .series(&format!(r#"{{job="{service}"}}"#))
            .await;
        let mut with_name = BTreeSet::new();
        let mut without_name = BTreeSet::new();
        for labels in &series {
            let name = label(labels, "__name__").to_owned();
            if label(labels, "service_name") == service {
                with_name.insert(name);
            } else {
                without_name.insert((name, label(labels, "service_name").to_owned()));
            }
        }
        assert_eq!(
            without_name,
            SCRAPE_SERIES
                .iter()
                .map(|name| (name.to_string(), String::new()))
                .collect(),
            "{service}: series without service_name=\"{service}\""
        );
        for family in [
            "target_info",
            "http_server_request_duration_seconds_bucket",
            "http_server_request_duration_seconds_count",
            "http_server_request_duration_seconds_sum",
            "http_server_active_requests",
            "http_server_request_body_size_bytes_count",
            "http_server_response_body_size_bytes_count",
            "system_cpu_utilization_ratio",
            "system_cpu_time_seconds_total",
            "system_memory_usage_bytes",
            "system_memory_utilization_ratio",
            "system_network_io_bytes_total",
            "system_filesystem_usage_bytes",
            "system_cpu_load_average_1m",
            "process_cpu_utilization_ratio",
            "process_memory_usage_bytes",
        ] {
            assert!(
                with_name.contains(family),
                "{service}: no {family} series among {with_name:?}"
            );
        }
    }
    assert!(traffic.checkout.stop().status.success());
    assert!(traffic.healthy.stop().status.success());
}

/// `OTEL_METRICS_EXPORTER=otlp,prometheus`: the same requests are served at `/metrics` and
/// exported over OTLP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_and_prometheus_together_serve_metrics_and_export_them() {
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_METRICS_EXPORTER", "otlp,prometheus"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_SERVICE_NAME", CHECKOUT),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
    ]);
    for _ in 0..3 {
        assert_eq!(get(&service.url("/users/7"), &[]).await.0, 200);
    }

    let exported = support::wait_for("3 requests of /users/{id} over OTLP", DEADLINE, || {
        let metric = receiver.latest_metric("http.server.request.duration")?;
        let Some(Data::Histogram(histogram)) = &metric.metric.data else {
            panic!("not a histogram: {metric:?}");
        };
        histogram
            .data_points
            .iter()
            .find(|point| {
                support::attr_str(&point.attributes, "http.route") == Some("/users/{id}")
                    && point.count == 3
            })
            .map(|_| metric.clone())
    })
    .await;
    assert_eq!(
        support::attr_str(&exported.resource, "service.name"),
        Some(CHECKOUT)
    );

    let (status, _, body) = get(&service.url("/metrics"), &[]).await;
    assert!(status.is_success());
    let body = String::from_utf8(body.to_vec()).unwrap();
    let count = body
        .lines()
        .find(|line| {
            line.starts_with("http_server_request_duration_seconds_count{")
                && line.contains(r#"http_route="/users/{id}""#)
                && line.contains(r#"service_name="checkout""#)
        })
        .unwrap_or_else(|| panic!("no count of /users/{{id}} in /metrics:\n{body}"));
    assert!(count.ends_with(" 3"), "{count}");

    assert!(service.stop().status.success());
}

/// Runs `promtool` with `args` in `alerts/`, and fails with what it printed unless it succeeds.
fn promtool_in_alerts(args: [&str; 3]) {
    let promtool = checked_tool("promtool");
    let alerts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts");
    let output = Command::new(promtool)
        .args(args)
        .current_dir(&alerts)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "promtool {}:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_alerting_rules_are_valid_and_pass_their_unit_tests() {
    promtool_in_alerts(["check", "rules", "otel-monitor.rules.yml"]);
    promtool_in_alerts(["test", "rules", "otel-monitor.rules.test.yml"]);
}

/// Burn-rate alerts on steady synthetic burns (each alert fires above its rate, none just
/// below it, 0.8x fires nothing) and on a burst that stopped (the short window resolves the
/// page): alerts/otel-monitor.slo.rules.test.yml.
#[test]
fn the_slo_rules_are_valid_and_pass_their_unit_tests() {
    promtool_in_alerts(["check", "rules", "otel-monitor.slo.rules.yml"]);
    promtool_in_alerts(["test", "rules", "otel-monitor.slo.rules.test.yml"]);
}

/// The rules of `alerts/otel-monitor.slo.rules.yml`: (record or alert name, expression).
fn slo_rules() -> Vec<(String, String)> {
    let file: serde_yaml_ng::Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("alerts/otel-monitor.slo.rules.yml"),
        )
        .unwrap(),
    )
    .unwrap();
    file["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|group| group["rules"].as_sequence().unwrap())
        .map(|rule| {
            let name = rule.get("record").or_else(|| rule.get("alert")).unwrap();
            (
                name.as_str().unwrap().to_owned(),
                rule["expr"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The objective `slo:{slo}_objective:ratio` records: its `vector(...)`.
fn slo_objective(slo: &str) -> f64 {
    let record = format!("slo:{slo}_objective:ratio");
    let (_, expr) = slo_rules()
        .into_iter()
        .find(|(name, _)| *name == record)
        .unwrap_or_else(|| panic!("no {record}"));
    expr.trim()
        .strip_prefix("vector(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("{record}: not vector(<number>): {expr}"))
}

#[test]
fn each_slo_objective_is_one_parameter_read_by_every_alert_and_the_dashboard() {
    // README, SLOs: change the objective in one place. Each is recorded once; each of the 4 alerts
    // of its SLI compares both windows with it, and no expression writes a budget of its own.
    for (slo, prefix, objective) in [
        ("availability", "Availability", 0.999),
        ("latency", "Latency", 0.99),
    ] {
        assert_eq!(slo_objective(slo), objective, "{slo}");
        let read = format!("scalar(slo:{slo}_objective:ratio)");
        let alerts: Vec<(String, String)> = slo_rules()
            .into_iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .collect();
        let names: Vec<&str> = alerts.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(
            names,
            ["1h", "6h", "1d", "3d"].map(|window| format!("{prefix}BurnRate{window}")),
            "{slo}"
        );
        for (name, expr) in &alerts {
            assert_eq!(expr.matches(&read).count(), 2, "{name}: {expr}");
        }
        let panel = format!("{prefix} error budget left (30 days) / A");
        assert_eq!(
            dashboard_queries("1m")[&panel].matches(&read).count(),
            1,
            "{panel}"
        );
    }
    let written: Vec<String> = slo_rules()
        .into_iter()
        .filter(|(_, expr)| {
            expr.contains("0.99") || expr.contains("0.001") || expr.contains("0.01")
        })
        .map(|(name, _)| name)
        .collect();
    assert_eq!(
        written,
        [
            "slo:availability_objective:ratio",
            "slo:latency_objective:ratio"
        ]
    );
    // The dashboard's latency budget counts under the rules' threshold.
    let (_, threshold) = slo_rules_arguments();
    assert_eq!(
        dashboard_queries("1m")["Latency error budget left (30 days) / A"]
            .matches(&format!(r#"le="{threshold}""#))
            .count(),
        1
    );
}

/// The arguments of `scripts/slo-rules` the rules file was generated with (its first line): the
/// objectives, then the latency threshold.
fn slo_rules_arguments() -> (Vec<String>, String) {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts/otel-monitor.slo.rules.yml"),
    )
    .unwrap();
    let arguments: Vec<String> = text
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("# Generated by: scripts/slo-rules "))
        .expect("a first line naming the script's arguments")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let [availability, latency, threshold] = arguments.as_slice() else {
        panic!("three arguments: {arguments:?}")
    };
    (
        vec![availability.clone(), latency.clone()],
        threshold.clone(),
    )
}

#[test]
fn the_slo_rules_file_is_what_scripts_slo_rules_writes_for_its_arguments() {
    // The latency threshold selects a bucket in each of the 7 windows' ratios: the file is
    // generated, and must not drift from its generator.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let (objectives, threshold) = slo_rules_arguments();
    assert_eq!(objectives, ["0.999", "0.99"]);
    assert_eq!(threshold, "0.5");
    let output = Command::new(root.join("scripts/slo-rules"))
        .args(&objectives)
        .arg(&threshold)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let generated = String::from_utf8(output.stdout).unwrap();
    let checked_in =
        std::fs::read_to_string(root.join("alerts/otel-monitor.slo.rules.yml")).unwrap();
    assert!(
        generated == checked_in,
        "alerts/otel-monitor.slo.rules.yml is not what scripts/slo-rules {} {threshold} writes: \
         regenerate it",
        objectives.join(" ")
    );
    // A threshold between the histogram's boundaries cannot be read from its buckets.
    let refused = Command::new(root.join("scripts/slo-rules"))
        .args(["0.999", "0.99", "0.3"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("must be a bucket boundary"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
