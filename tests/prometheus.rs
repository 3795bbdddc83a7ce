//! Grafana and Prometheus: the example service exposes `/metrics` (feature `prometheus`), a real
//! Prometheus scrapes it, and the dashboard's queries and the alerting rules are checked against
//! what Prometheus really holds.

mod support;

use std::{
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use support::{
    ExampleService,
    client::get,
    prometheus::{Prometheus, sample_value, which},
};

const DEADLINE: Duration = Duration::from_secs(30);

/// The example service with metrics for Prometheus only, and a Prometheus scraping it.
async fn scraped_service() -> (ExampleService, Prometheus) {
    let service = ExampleService::start(&[
        ("OTEL_METRICS_EXPORTER", "prometheus"),
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
        ("OTEL_SERVICE_NAME", "checkout"),
    ]);
    let target = service.url("").trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start_scraping(&target).await;
    (service, prometheus)
}

/// Requests of every kind, until the returned flag is set (or 2 000 requests have gone).
fn keep_traffic_flowing(service: &ExampleService) -> Arc<AtomicBool> {
    let stop = Arc::new(AtomicBool::new(false));
    let urls: Vec<String> = ["/users/1", "/users/abc", "/error", "/slow?ms=20", "/"]
        .iter()
        .map(|path| service.url(path))
        .collect();
    let stopped = stop.clone();
    tokio::spawn(async move {
        for url in urls.iter().cycle().take(2_000) {
            if stopped.load(Ordering::Relaxed) {
                break;
            }
            get(url, &[]).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    stop
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_the_request_metrics_under_their_prometheus_names() {
    let (service, prometheus) = scraped_service().await;
    let (status, headers, body) = get(&service.url("/metrics"), &[]).await;
    assert!(status.is_success());
    assert_eq!(
        headers["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    assert!(String::from_utf8_lossy(&body).contains("# TYPE target_info gauge"));
    let traffic = keep_traffic_flowing(&service);

    let requests = prometheus
        .wait_for_data(
            r#"sum(http_server_request_duration_seconds_count{service_name="checkout", http_route="/users/{id}", http_response_status_code="200"})"#,
            DEADLINE,
        )
        .await;
    assert!(sample_value(&requests[0]) >= 1.0);
    let p99 = prometheus
        .wait_for_data(
            r#"histogram_quantile(0.99, sum by (le) (rate(http_server_request_duration_seconds_bucket{http_route="/slow"}[1m])))"#,
            DEADLINE,
        )
        .await;
    let p99 = sample_value(&p99[0]);
    assert!(
        (0.02..=0.05).contains(&p99),
        "/slow waits 20 ms: p99 {p99} s"
    );
    let errors = prometheus
        .wait_for_data(
            r#"http_server_request_duration_seconds_count{http_route="/error", error_type="500"}"#,
            DEADLINE,
        )
        .await;
    assert!(sample_value(&errors[0]) >= 1.0);
    let target = prometheus
        .wait_for_data(r#"target_info{service_name="checkout"}"#, DEADLINE)
        .await;
    assert_eq!(target[0]["metric"]["telemetry_sdk_language"], "rust");
    let scrapes_traced = prometheus
        .query(r#"http_server_request_duration_seconds_count{http_route="/metrics"}"#)
        .await;
    assert!(scrapes_traced.is_empty(), "scrapes are not measured");

    traffic.store(true, Ordering::Relaxed);
    assert!(service.stop().status.success());
}

/// Every panel query of `dashboards/otel-monitor.json`, with the dashboard variables set as
/// Grafana would set them for "all services".
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards/otel-monitor.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            queries.push((
                format!("{} / {}", panel["title"], target["refId"]),
                expr.replace("$service", ".*")
                    .replace("$__rate_interval", "1m"),
            ));
        }
    }
    queries
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_query_returns_data() {
    let queries = dashboard_queries();
    assert!(queries.len() >= 10, "{queries:?}");
    let (service, prometheus) = scraped_service().await;
    let traffic = keep_traffic_flowing(&service);
    for (panel, query) in &queries {
        let result = prometheus.wait_for_data(query, DEADLINE).await;
        assert!(
            result.iter().all(|sample| sample_value(sample).is_finite()),
            "{panel}: {query} -> {result:?}"
        );
    }
    traffic.store(true, Ordering::Relaxed);
    assert!(service.stop().status.success());
}

#[test]
fn the_alerting_rules_are_valid_and_pass_their_unit_tests() {
    let promtool = which("promtool");
    let alerts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("alerts");
    for args in [
        ["check", "rules", "otel-monitor.rules.yml"],
        ["test", "rules", "otel-monitor.rules.test.yml"],
    ] {
        let output = Command::new(&promtool)
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
}
