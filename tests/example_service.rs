//! The example service as a user runs it: configured by `OTEL_*` variables alone, exporting to
//! an in-process OTLP receiver over HTTP/protobuf or gRPC.

mod support;

use std::time::Duration;

use http::StatusCode;
use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};
use support::{ExampleService, OtlpReceiver, client::get, example::run_to_exit};

const DEADLINE: Duration = Duration::from_secs(10);

/// How long SIGTERM may take to end the service when the collector does not answer: the 3 s
/// shutdown deadline the README promises, plus 500 ms for the process to stop serving, return
/// from `main` and exit (a debug build, on a busy 2-core machine). A 4 s deadline fails it.
const SHUTDOWN_BOUND: Duration = Duration::from_millis(3500);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_and_metrics_arrive_over_http_protobuf_with_the_resource() {
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("OTEL_SERVICE_NAME", "checkout"),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "deployment.environment.name=test",
        ),
    ]);

    let (status, _, body) = get(&service.url("/users/7"), &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], br#"{"id":7,"name":"user 7"}"#);
    let (status, _, _) = get(&service.url("/health"), &[]).await;
    assert_eq!(status, StatusCode::OK);

    let spans = receiver
        .wait_for_spans("the request span and its child", DEADLINE, |spans| {
            spans.len() >= 2
        })
        .await;
    let request = support::span_named(&spans, "GET /users/{id}");
    let child = support::span_named(&spans, "load_user");
    assert_eq!(child.trace_id_hex(), request.trace_id_hex());
    assert_eq!(child.parent_span_id_hex(), request.span_id_hex());

    assert_eq!(request.resource_str("service.name"), Some("checkout"));
    assert_eq!(
        request.resource_str("service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        request.resource_str("deployment.environment.name"),
        Some("test")
    );
    assert_eq!(request.resource_str("telemetry.sdk.language"), Some("rust"));
    assert_eq!(
        request.resource_str("telemetry.sdk.name"),
        Some("opentelemetry")
    );
    assert!(
        request
            .resource_str("host.name")
            .is_some_and(|host| !host.is_empty())
    );
    assert_eq!(
        support::attr_int(&request.resource, "process.pid"),
        Some(i64::from(service.pid()))
    );

    let duration = receiver
        .wait_for_metric("http.server.request.duration", DEADLINE)
        .await;
    assert_eq!(duration.metric.unit, "s");
    assert_eq!(
        support::attr_str(&duration.resource, "service.name"),
        Some("checkout")
    );

    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    assert!(
        receiver
            .spans()
            .iter()
            .all(|span| span.attr_str("url.path") != Some("/health")),
        "/health is filtered out"
    );
    let (http_exports, grpc_exports) = receiver.received_requests();
    assert!(http_exports > 0);
    assert_eq!(grpc_exports, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_keeps_exporting_for_the_whole_life_of_the_process() {
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.grpc_endpoint()),
    ]);

    get(&service.url("/users/1"), &[]).await;
    let spans = receiver
        .wait_for_spans("the first request's span", DEADLINE, |spans| {
            spans
                .iter()
                .any(|span| span.attr_str("url.path") == Some("/users/1"))
        })
        .await;
    assert_eq!(
        spans[0].resource_str("service.name"),
        Some("otel-monitor-example"),
        "the example's default name, as OTEL_SERVICE_NAME is not set"
    );

    // Let the exporters live through many batch and metric intervals (the metric reader
    // exports every 200 ms) before the next request.
    let exports_so_far = receiver.received_requests().1;
    support::wait_for("ten more gRPC exports", DEADLINE, || {
        (receiver.received_requests().1 >= exports_so_far + 10).then_some(())
    })
    .await;

    get(&service.url("/users/2"), &[]).await;
    receiver
        .wait_for_spans("the second request's span", DEADLINE, |spans| {
            spans
                .iter()
                .any(|span| span.attr_str("url.path") == Some("/users/2"))
        })
        .await;

    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    let (http_exports, _) = receiver.received_requests();
    assert_eq!(http_exports, 0, "every export went over gRPC");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_sdk_disabled_exports_nothing_and_the_service_still_serves() {
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_SDK_DISABLED", "true"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
    ]);
    for _ in 0..3 {
        let (status, _, _) = get(&service.url("/users/3"), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    // The process has flushed and exited: whatever it was going to send has been sent.
    assert_eq!(receiver.received_requests(), (0, 0));
}

#[test]
fn an_invalid_variable_fails_at_start_up_and_names_the_variable() {
    let exit = run_to_exit(&[("OTEL_TRACES_EXPORTER", "jaeger")]);
    assert!(!exit.status.success());
    assert!(
        exit.output.contains(
            r#"OTEL_TRACES_EXPORTER="jaeger" is not valid: expected one of otlp, console, none"#
        ),
        "{}",
        exit.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_counted_spans_one_warning_and_no_request() {
    // Spans go to a port nothing listens on; metrics still reach the receiver.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_endpoint = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &dead_endpoint),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
    ]);

    for id in 0..20 {
        let (status, _, _) = get(&service.url(&format!("/users/{id}")), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    // 20 request spans and their 20 `load_user` children, all lost and all counted.
    let lost = |metric: &support::ReceivedMetric| {
        let Some(Data::Sum(sum)) = &metric.metric.data else {
            return 0;
        };
        sum.data_points
            .iter()
            .filter(|point| support::attr_str(&point.attributes, "error.type").is_some())
            .map(|point| match point.value {
                Some(number_data_point::Value::AsInt(value)) => value,
                _ => 0,
            })
            .sum::<i64>()
    };
    support::wait_for("40 spans counted as lost", DEADLINE, || {
        let metric = receiver.latest_metric("otel.sdk.exporter.span.exported")?;
        (lost(&metric) >= 40).then_some(())
    })
    .await;
    let exported = receiver
        .latest_metric("otel.sdk.exporter.span.exported")
        .unwrap();
    assert_eq!(exported.metric.unit, "{span}");
    assert_eq!(lost(&exported), 40);

    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    assert!(exit.took < SHUTDOWN_BOUND, "shutdown took {:?}", exit.took);
    let warnings: Vec<_> = exit
        .output
        .lines()
        .filter(|line| line.contains(&format!("cannot export traces to {dead_endpoint}")))
        .collect();
    assert_eq!(
        warnings.len(),
        1,
        "one warning, not a wall:\n{}",
        exit.output
    );
    assert!(warnings[0].contains("WARN"), "{}", warnings[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_propagators_none_ignores_an_incoming_traceparent() {
    let receiver = OtlpReceiver::start().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for propagators in ["none", "tracecontext"] {
        let service = ExampleService::start(&[
            ("OTEL_PROPAGATORS", propagators),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ]);
        get(&service.url("/"), &[("traceparent", traceparent)]).await;
        assert!(service.stop().status.success());
    }
    let spans = receiver.spans();
    let parent_of = |propagators: usize| spans[propagators].parent_span_id_hex();
    assert_eq!(spans.len(), 2, "{spans:?}");
    assert_eq!(
        parent_of(0),
        "",
        "with none, the request starts a new trace"
    );
    assert_eq!(
        parent_of(1),
        "00f067aa0ba902b7",
        "with tracecontext, it continues"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_metrics_are_on_by_default_and_the_switch_turns_them_off() {
    let receiver = OtlpReceiver::start().await;
    for (switch, expected) in [("true", true), ("false", false)] {
        let service = ExampleService::start(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
            ("OTEL_MONITOR_HOST_METRICS", switch),
            ("OTEL_SERVICE_NAME", switch),
        ]);
        get(&service.url("/users/1"), &[]).await;
        assert!(service.stop().status.success());
        // The process flushed and exited: every metric it had is at the receiver.
        let names: Vec<String> = receiver
            .metrics()
            .into_iter()
            .filter(|metric| support::attr_str(&metric.resource, "service.name") == Some(switch))
            .map(|metric| metric.metric.name)
            .collect();
        assert!(
            names
                .iter()
                .any(|name| name == "http.server.request.duration")
        );
        for host_metric in ["system.memory.usage", "process.memory.usage"] {
            assert_eq!(
                names.iter().any(|name| name == host_metric),
                expected,
                "{host_metric} with OTEL_MONITOR_HOST_METRICS={switch}: {names:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn span_exports_carry_the_configured_headers_over_both_protocols() {
    for protocol in ["http/protobuf", "grpc"] {
        let receiver = OtlpReceiver::start().await;
        let endpoint = receiver.endpoint(protocol);
        let service = ExampleService::start(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=not-for-traces"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
                "x-tenant=blue%20team, authorization=Bearer%20t0k%3Den",
            ),
        ]);
        get(&service.url("/users/7"), &[]).await;
        assert!(service.stop().status.success(), "{protocol}");
        // The process flushed and exited: its spans have arrived.
        assert!(
            receiver
                .spans()
                .iter()
                .any(|span| span.span.name == "GET /users/{id}"),
            "{protocol}: no request span"
        );
        let exports = receiver.trace_export_headers();
        assert!(!exports.is_empty(), "{protocol}: no trace export");
        for headers in exports {
            let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
            assert_eq!(header("x-tenant"), Some("blue team"), "{protocol}");
            assert_eq!(header("authorization"), Some("Bearer t0k=en"), "{protocol}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partial_success_is_logged_over_both_protocols() {
    for protocol in ["http/protobuf", "grpc"] {
        let receiver = OtlpReceiver::start().await;
        receiver.reject_spans(1, "span too large");
        let endpoint = receiver.endpoint(protocol);
        let service = ExampleService::start(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ]);
        get(&service.url("/users/7"), &[]).await;
        let exit = service.stop();
        assert!(exit.status.success(), "{protocol}: {exit:?}");
        assert!(!receiver.spans().is_empty(), "{protocol}: no span export");
        let warning = exit
            .output
            .lines()
            .find(|line| line.contains("rejected part of a traces export"))
            .unwrap_or_else(|| panic!("{protocol}: no warning in\n{}", exit.output));
        assert!(warning.contains("WARN"), "{warning}");
        assert!(warning.contains("span too large"), "{warning}");
        assert!(warning.contains("rejected_spans=1"), "{warning}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_does_not_hold_requests_or_shutdown() {
    // Accepts connections and never answers: the worst collector, a black hole.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", black_hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = black_hole.accept().await {
            connections.push(connection);
        }
    });
    for protocol in ["http/protobuf", "grpc"] {
        let service = ExampleService::start(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ]);
        for id in 0..20 {
            let started = std::time::Instant::now();
            let (status, _, _) = get(&service.url(&format!("/users/{id}")), &[]).await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{protocol}: a request took {:?}",
                started.elapsed()
            );
        }
        let exit = service.stop();
        assert!(exit.status.success(), "{protocol}: {exit:?}");
        assert!(
            exit.took < SHUTDOWN_BOUND,
            "{protocol}: shutdown took {:?} with a black-hole collector",
            exit.took
        );
    }
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_warning_of_a_dead_collector_says_how_many_spans_were_lost() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_endpoint = format!("http://{}/v1/traces", closed.local_addr().unwrap());
    drop(closed);
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &dead_endpoint),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        // Every span waits for the final flush, so one export carries them all; it gives up
        // after 1 s of retries, inside the shutdown deadline.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "1000"),
    ]);
    for id in 0..20 {
        let (status, _, _) = get(&service.url(&format!("/users/{id}")), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    let warnings: Vec<_> = exit
        .output
        .lines()
        .filter(|line| line.contains("cannot export traces"))
        .collect();
    // 20 request spans and their 20 `load_user` children.
    assert_eq!(warnings.len(), 1, "{}", exit.output);
    assert!(
        warnings[0].ends_with(&format!(
            "WARN otel_monitor::export: cannot export traces to {dead_endpoint} (requests are \
             not affected): connection refused; 40 spans lost, next report in at most 60s"
        )),
        "{}",
        warnings[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_name_in_otel_resource_attributes_beats_the_default_service_name() {
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        (
            "OTEL_RESOURCE_ATTRIBUTES",
            "service.name=from-attributes,deployment.environment.name=test",
        ),
    ]);
    get(&service.url("/users/7"), &[]).await;
    assert!(service.stop().status.success());
    // The process flushed and exited: its spans have arrived.
    let spans = receiver.spans();
    let request = support::span_named(&spans, "GET /users/{id}");
    assert_eq!(
        request.resource_str("service.name"),
        Some("from-attributes")
    );
    assert_eq!(
        request.resource_str("deployment.environment.name"),
        Some("test")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_the_service_after_it_flushed_every_signal() {
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        // Nothing leaves before the final flush.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ("OTEL_BLRP_SCHEDULE_DELAY", "600000"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "600000"),
    ]);
    let (status, _, _) = get(&service.url("/users/abc"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(receiver.received_requests(), (0, 0));
    // What Ctrl-C sends.
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &service.pid().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    support::wait_for("the service to finish", DEADLINE, || {
        service
            .output()
            .contains("INFO service: Application finished")
            .then_some(())
    })
    .await;
    support::wait_for("the last span, log record and metric", DEADLINE, || {
        let span = receiver
            .spans()
            .iter()
            .any(|span| span.span.name == "GET /users/{id}");
        let log = receiver
            .logs()
            .iter()
            .any(|log| log.body_str() == Some("the user id is not a number"));
        let metric = receiver
            .latest_metric("http.server.request.duration")
            .is_some();
        (span && log && metric).then_some(())
    })
    .await;
    // And it exits (a zombie until the test reaps it, when `service` is dropped).
    let stat = format!("/proc/{}/stat", service.pid());
    support::wait_for("the service to exit", Duration::from_secs(5), || {
        let stat = std::fs::read_to_string(&stat).ok()?;
        // `pid (comm) state ...`
        let state = stat.rsplit_once(") ")?.1.chars().next()?;
        (state == 'Z').then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_dropped_from_a_full_queue_are_counted() {
    // Spans go to a collector that never answers, so the batch processor's one export hangs
    // and its queue of 4 fills up; metrics reach the receiver.
    let black_hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let traces_endpoint = format!("http://{}/v1/traces", black_hole.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = black_hole.accept().await {
            connections.push(connection);
        }
    });
    let receiver = OtlpReceiver::start().await;
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", &traces_endpoint),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint()),
        ("OTEL_BSP_MAX_QUEUE_SIZE", "4"),
        // Only a full batch (the queue size, 4) starts an export.
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ]);
    for id in 0..20 {
        let (status, _, _) = get(&service.url(&format!("/users/{id}")), &[]).await;
        assert_eq!(status, StatusCode::OK);
    }
    // `otel.sdk.processor.span.processed`, by `error.type` (None: queued for export).
    let processed = |metric: &support::ReceivedMetric| {
        let mut by_error = std::collections::BTreeMap::<Option<String>, i64>::new();
        if let Some(Data::Sum(sum)) = &metric.metric.data {
            for point in &sum.data_points {
                if let Some(number_data_point::Value::AsInt(value)) = point.value {
                    let error = support::attr_str(&point.attributes, "error.type");
                    *by_error.entry(error.map(str::to_owned)).or_default() += value;
                }
            }
        }
        by_error
    };
    // 20 request spans and their 20 `load_user` children: the first 4 make a batch whose export
    // hangs (counted as processed when taken), the next 4 fill the queue behind it (counted
    // only when taken, 10 s later), and the other 32 are dropped and counted at once.
    let by_error = support::wait_until("36 spans counted", DEADLINE, || {
        let by_error = receiver
            .latest_metric("otel.sdk.processor.span.processed")
            .map(|metric| processed(&metric))
            .unwrap_or_default();
        std::future::ready(if by_error.values().sum::<i64>() == 36 {
            Ok(by_error)
        } else {
            Err(format!("{by_error:?}"))
        })
    })
    .await;
    assert_eq!(by_error.get(&None), Some(&4), "{by_error:?}");
    assert_eq!(
        by_error.get(&Some("queue_full".to_owned())),
        Some(&32),
        "{by_error:?}"
    );
    drop(service);
    held.abort();
}
