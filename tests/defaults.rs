//! What the crate does when nothing is configured: the README's defaults, each in a process of
//! its own (cargo-nextest), some in a child process of the test binary itself so that its
//! console can be read (`child_*` tests, ignored unless run that way).

mod support;

use std::{
    collections::{BTreeMap, HashMap},
    process::Command,
    time::Duration,
};

use axum::{Router, body::Body, routing::get};
use http::Request;
use opentelemetry::{Context, baggage::BaggageExt, global, trace::TracerProvider as _};
use otel_monitor::{MonitorLayer, Telemetry};
use support::{ExampleService, OtlpReceiver, ReceiverOptions};
use tower::ServiceExt;

/// Sets (`Some`) or removes (`None`) environment variables before the test starts any thread
/// that could read them.
fn set_env(vars: &[(&str, Option<&str>)]) {
    for (name, value) in vars {
        // SAFETY: called first thing in a test that runs alone in its process (cargo-nextest),
        // before it starts a runtime or any other thread.
        unsafe {
            match value {
                Some(value) => std::env::set_var(name, value),
                None => std::env::remove_var(name),
            }
        }
    }
}

/// A receiver on a runtime of its own, so that it serves while the test's thread blocks.
fn receiver_on_its_own_runtime() -> (tokio::runtime::Runtime, OtlpReceiver) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let receiver = runtime.block_on(OtlpReceiver::start_with(ReceiverOptions::default()));
    (runtime, receiver)
}

/// How a child run of this test binary ended.
struct ChildRun {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs the ignored test `name` of this binary in a child process, with `env` over this
/// process's environment and without the variables in `unset`.
fn run_child(name: &str, unset: &[&str], env: &[(&str, &str)]) -> ChildRun {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command.args([name, "--exact", "--ignored", "--nocapture"]);
    for variable in unset {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied());
    let output = command.output().unwrap();
    ChildRun {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[test]
fn without_a_service_name_the_resource_says_unknown_service_and_the_executable() {
    let (_runtime, receiver) = receiver_on_its_own_runtime();
    set_env(&[
        ("OTEL_SERVICE_NAME", None),
        ("OTEL_RESOURCE_ATTRIBUTES", None),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            Some(&receiver.http_endpoint()),
        ),
        ("OTEL_MONITOR_HOST_METRICS", Some("false")),
    ]);
    let telemetry = Telemetry::builder()
        .tracing_subscriber(false)
        .init()
        .unwrap();
    let provider = telemetry.tracer_provider().unwrap().clone();
    opentelemetry::trace::Tracer::in_span(&provider.tracer("app"), "nameless", |_| {});
    telemetry.shutdown().unwrap();
    let executable = std::env::current_exe().unwrap();
    let executable = executable.file_name().unwrap().to_str().unwrap();
    assert!(executable.starts_with("defaults-"), "{executable}");
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1);
    assert_eq!(
        spans[0].resource_str("service.name"),
        Some(format!("unknown_service:{executable}").as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_every_signal_goes_to_localhost_4318_over_http_and_4317_over_grpc() {
    for (protocol, port, paths) in [
        (
            "http/protobuf",
            4318,
            ["/v1/traces", "/v1/metrics", "/v1/logs"],
        ),
        ("grpc", 4317, ["/", "/", "/"]),
    ] {
        // The warning of an export to nowhere names the endpoint: something listening there
        // would take the exports instead, and this test could not tell.
        assert!(
            std::net::TcpStream::connect(("localhost", port)).is_err(),
            "SOMETHING LISTENS ON localhost:{port}: this test needs the port free (stop any \
             local collector, e.g. scripts/run-example) and cannot check the default endpoint"
        );
        let service = ExampleService::start(&[
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            // Gives up on each export after 200 ms of retries, so the warnings come at once.
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "200"),
        ]);
        support::client::get(&service.url("/users/1"), &[]).await;
        let expected: Vec<String> = ["traces", "metrics", "logs"]
            .iter()
            .zip(paths)
            .map(|(signal, path)| {
                format!("cannot export {signal} to http://localhost:{port}{path} (requests")
            })
            .collect();
        support::wait_until(
            &format!("{protocol}: a warning per signal naming localhost:{port}"),
            Duration::from_secs(20),
            || {
                let output = service.output();
                let shown = expected.iter().all(|line| output.contains(line));
                std::future::ready(if shown { Ok(()) } else { Err(output) })
            },
        )
        .await;
        assert!(service.stop().status.success(), "{protocol}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_compression_no_export_is_compressed() {
    let receiver = OtlpReceiver::start().await;
    let service =
        ExampleService::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint())]);
    support::client::get(&service.url("/users/1"), &[]).await;
    assert!(service.stop().status.success());
    let exports = receiver.trace_export_headers();
    assert!(!exports.is_empty());
    for headers in exports {
        assert_eq!(headers.get("content-encoding"), None, "{headers:?}");
    }
}

/// What the children of the `RUST_LOG` tests run: one event per level, in a span, exported.
#[test]
#[ignore = "run as a child process by the RUST_LOG tests"]
fn child_logs_at_every_level() {
    let telemetry = Telemetry::builder().service_name("levels").init().unwrap();
    tracing::info_span!("levels").in_scope(|| {
        tracing::trace!("a trace event");
        tracing::debug!("a debug event");
        tracing::info!("an info event");
        tracing::warn!("a warn event");
    });
    telemetry.shutdown().unwrap();
}

/// The console lines and the exported log records (body, severity number and text) of
/// [`child_logs_at_every_level`] run with `RUST_LOG` as `rust_log` says (`None`: unset).
fn levels_with(rust_log: Option<&str>) -> (String, Vec<(String, i32, String)>) {
    let (_runtime, receiver) = receiver_on_its_own_runtime();
    let endpoint = receiver.http_endpoint();
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_MONITOR_HOST_METRICS", "false"),
    ];
    if let Some(rust_log) = rust_log {
        env.push(("RUST_LOG", rust_log));
    }
    let run = run_child("child_logs_at_every_level", &["RUST_LOG"], &env);
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    let records = receiver
        .logs()
        .into_iter()
        .filter(|log| log.body_str().is_some_and(|body| body.ends_with(" event")))
        .map(|log| {
            (
                log.body_str().unwrap().to_owned(),
                log.record.severity_number,
                log.record.severity_text.clone(),
            )
        })
        .collect();
    (run.stdout, records)
}

#[test]
fn without_rust_log_info_and_above_reach_the_console_and_the_log_records() {
    let (console, records) = levels_with(None);
    for shown in [
        "INFO defaults: an info event",
        "WARN defaults: a warn event",
    ] {
        assert!(console.contains(shown), "{shown}:\n{console}");
    }
    for hidden in ["a debug event", "a trace event"] {
        assert!(!console.contains(hidden), "{hidden}:\n{console}");
    }
    assert!(!console.contains("DEBUG"), "{console}");
    assert_eq!(
        records,
        [
            ("an info event".to_owned(), 9, "INFO".to_owned()),
            ("a warn event".to_owned(), 13, "WARN".to_owned()),
        ]
    );
}

#[test]
fn rust_log_debug_adds_debug_events_to_the_console_only() {
    // The counterpart of the default: the same child prints its debug event once asked; what is
    // exported is `OTEL_MONITOR_EXPORT_FILTER`'s to decide (`info` when unset).
    let (console, records) = levels_with(Some("debug"));
    assert!(
        console.contains("DEBUG defaults: a debug event"),
        "{console}"
    );
    assert!(!console.contains("a trace event"), "{console}");
    assert_eq!(
        records,
        [
            ("an info event".to_owned(), 9, "INFO".to_owned()),
            ("a warn event".to_owned(), 13, "WARN".to_owned()),
        ]
    );
}

/// What the child of the console exporter test runs: a span, a metric, a log record.
#[test]
#[ignore = "run as a child process by the console exporter test"]
fn child_makes_a_span_a_metric_and_a_log_record() {
    let telemetry = Telemetry::builder()
        .service_name("console")
        .host_metrics(false)
        .init()
        .unwrap();
    tracing::info_span!("a console span").in_scope(|| tracing::info!("a console log record"));
    global::meter("app")
        .u64_counter("a.console.metric")
        .build()
        .add(7, &[]);
    telemetry.shutdown().unwrap();
}

#[test]
fn the_console_exporter_prints_each_signal_on_stdout() {
    let run = run_child(
        "child_makes_a_span_a_metric_and_a_log_record",
        &["RUST_LOG"],
        &[
            ("OTEL_TRACES_EXPORTER", "console"),
            ("OTEL_METRICS_EXPORTER", "console"),
            ("OTEL_LOGS_EXPORTER", "console"),
        ],
    );
    assert!(run.success, "{}{}", run.stdout, run.stderr);
    for printed in [
        "Name         : a console span",
        "Name         : a.console.metric",
        "Body: String(Owned(\"a console log record\"))",
    ] {
        assert!(run.stdout.contains(printed), "{printed}:\n{}", run.stdout);
    }
}

/// Sends a request with `baggage: tenant=blue` through `MonitorLayer` to a handler that answers
/// the baggage it sees and the `baggage` header it would send on: `seen|outgoing`.
fn baggage_through_the_layer(propagators: Option<&str>) -> String {
    set_env(&[
        ("OTEL_PROPAGATORS", propagators),
        ("OTEL_TRACES_EXPORTER", Some("none")),
        ("OTEL_METRICS_EXPORTER", Some("none")),
        ("OTEL_LOGS_EXPORTER", Some("none")),
    ]);
    let telemetry = Telemetry::builder()
        .tracing_subscriber(false)
        .init()
        .unwrap();
    let answer = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let app = Router::new()
            .route(
                "/",
                get(|| async {
                    let context = Context::current();
                    let seen = context
                        .baggage()
                        .get("tenant")
                        .map(|value| value.to_string())
                        .unwrap_or_default();
                    let mut outgoing = HashMap::new();
                    global::get_text_map_propagator(|propagator| {
                        propagator.inject_context(&context, &mut outgoing)
                    });
                    let outgoing = outgoing.remove("baggage").unwrap_or_default();
                    format!("{seen}|{outgoing}")
                }),
            )
            .layer(MonitorLayer::new());
        let request = Request::get("/")
            .header("baggage", "tenant=blue")
            .body(Body::empty())
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .unwrap();
        String::from_utf8(body.to_vec()).unwrap()
    });
    telemetry.shutdown().unwrap();
    answer
}

#[test]
fn incoming_baggage_is_propagated_by_default() {
    assert_eq!(baggage_through_the_layer(None), "blue|tenant=blue");
}

#[test]
fn otel_propagators_baggage_propagates_baggage() {
    assert_eq!(
        baggage_through_the_layer(Some("baggage")),
        "blue|tenant=blue"
    );
}

#[test]
fn otel_propagators_tracecontext_alone_drops_baggage() {
    assert_eq!(baggage_through_the_layer(Some("tracecontext")), "|");
}

#[test]
fn without_batch_variables_log_records_leave_after_1_s_and_spans_after_5_s() {
    let (_runtime, receiver) = receiver_on_its_own_runtime();
    set_env(&[
        ("OTEL_BSP_SCHEDULE_DELAY", None),
        ("OTEL_BLRP_SCHEDULE_DELAY", None),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            Some(&receiver.http_endpoint()),
        ),
        ("OTEL_METRICS_EXPORTER", Some("none")),
        ("OTEL_MONITOR_HOST_METRICS", Some("false")),
        ("RUST_LOG", Some("info")),
    ]);
    // The batch processors export a first batch one schedule delay after they start.
    let started = std::time::Instant::now();
    let telemetry = Telemetry::builder().service_name("batches").init().unwrap();
    tracing::info_span!("a batched span").in_scope(|| tracing::info!("a batched log record"));
    let (mut log_after, mut span_after) = (None, None);
    support::wait_for_blocking(
        "the span and the log record",
        Duration::from_secs(10),
        || {
            if log_after.is_none()
                && receiver
                    .logs()
                    .iter()
                    .any(|log| log.body_str() == Some("a batched log record"))
            {
                log_after = Some(started.elapsed());
            }
            if span_after.is_none() && !receiver.spans().is_empty() {
                span_after = Some(started.elapsed());
            }
            log_after.zip(span_after)
        },
    );
    telemetry.shutdown().unwrap();
    let (log_after, span_after) = (log_after.unwrap(), span_after.unwrap());
    // Lower bounds exact (nothing leaves before its delay); upper bounds allow 700 ms for the
    // export and the 10 ms polling on a busy machine, less than half the next plausible value.
    assert!(
        (Duration::from_millis(1000)..Duration::from_millis(1700)).contains(&log_after),
        "the log record left after {log_after:?}"
    );
    assert!(
        (Duration::from_millis(5000)..Duration::from_millis(5700)).contains(&span_after),
        "the span left after {span_after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_sampler_follows_the_parent_and_samples_every_root() {
    let receiver = OtlpReceiver::start().await;
    let service =
        ExampleService::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint())]);
    let not_sampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
    let sampled = "00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    support::client::get(&service.url("/users/1"), &[("traceparent", not_sampled)]).await;
    support::client::get(&service.url("/users/2"), &[("traceparent", sampled)]).await;
    support::client::get(&service.url("/users/3"), &[]).await;
    assert!(service.stop().status.success());
    // The process flushed and exited: every span it sampled has arrived.
    let mut paths: Vec<String> = receiver
        .spans()
        .iter()
        .filter_map(|span| span.attr_str("url.path").map(str::to_owned))
        .collect();
    paths.sort();
    assert_eq!(paths, ["/users/2", "/users/3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_cumulative_by_default() {
    use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric::Data};

    let receiver = OtlpReceiver::start().await;
    let service =
        ExampleService::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &receiver.http_endpoint())]);
    support::client::get(&service.url("/users/1"), &[]).await;
    assert!(service.stop().status.success());
    let duration = receiver
        .latest_metric("http.server.request.duration")
        .unwrap();
    let Some(Data::Histogram(histogram)) = duration.metric.data else {
        panic!("{:?}", duration.metric);
    };
    assert_eq!(
        histogram.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    // A counter (monotonic sum): delta under the `delta` preference.
    let exported = receiver
        .latest_metric("otel.sdk.processor.span.processed")
        .unwrap();
    let Some(Data::Sum(sum)) = exported.metric.data else {
        panic!("{:?}", exported.metric);
    };
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
}

#[test]
fn without_otel_metric_export_interval_metrics_leave_every_60_s() {
    let (_runtime, receiver) = receiver_on_its_own_runtime();
    set_env(&[
        ("OTEL_METRIC_EXPORT_INTERVAL", None),
        // Spans and log records leave at once, to show the pipeline reaches the receiver.
        ("OTEL_BSP_SCHEDULE_DELAY", Some("50")),
        ("OTEL_BLRP_SCHEDULE_DELAY", Some("50")),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            Some(&receiver.http_endpoint()),
        ),
        ("RUST_LOG", Some("info")),
    ]);
    // The periodic reader exports one interval after it starts, which is after this instant.
    let started = std::time::Instant::now();
    let telemetry = Telemetry::builder()
        .service_name("interval")
        .init()
        .unwrap();
    tracing::info_span!("a span").in_scope(|| tracing::info!("a log record"));
    // Host metrics are on by default; this counter makes a metric of the test's own too.
    global::meter("app")
        .u64_counter("a.counter")
        .build()
        .add(1, &[]);
    let metrics_after =
        |receiver: &OtlpReceiver| (!receiver.metrics().is_empty()).then(|| started.elapsed());
    support::wait_for_blocking(
        "the span and the log record",
        Duration::from_secs(10),
        || {
            let logged = receiver
                .logs()
                .iter()
                .any(|log| log.body_str() == Some("a log record"));
            (logged && !receiver.spans().is_empty()).then_some(())
        },
    );
    // The pipeline works, and no metric has left with the span and the log record.
    if let Some(after) = metrics_after(&receiver) {
        panic!("metrics left after {after:?}, with the span and the log record");
    }
    let metrics_after = support::wait_for_blocking(
        "the first metric export",
        Duration::from_secs(70).saturating_sub(started.elapsed()),
        || metrics_after(&receiver),
    );
    // Lower bound exact (nothing leaves before the interval, so nothing in the first 55 s
    // either); the upper bound allows 5 s for building the providers, collecting and exporting
    // on a busy machine, far from the next plausible interval.
    assert!(
        (Duration::from_secs(60)..Duration::from_secs(65)).contains(&metrics_after),
        "the first metrics left after {metrics_after:?}"
    );
    assert!(
        receiver
            .metrics()
            .iter()
            .any(|metric| metric.metric.name == "a.counter")
    );
    telemetry.shutdown().unwrap();
}

/// The endpoint of a collector that accepts connections and never answers: an export to it
/// hangs until the exporter's timeout.
fn black_hole() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut connections = Vec::new();
        while let Ok((connection, _)) = listener.accept() {
            connections.push(connection);
        }
    });
    endpoint
}

/// The latest `otel.sdk.processor.{span,log}.processed` counts by `error.type` (`None`: taken
/// from the queue for export).
fn processed_by_error(receiver: &OtlpReceiver, metric: &str) -> BTreeMap<Option<String>, i64> {
    use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point};

    let mut by_error = BTreeMap::new();
    let Some(metric) = receiver.latest_metric(metric) else {
        return by_error;
    };
    let Some(Data::Sum(sum)) = metric.metric.data else {
        panic!("{:?}", metric.metric);
    };
    for point in sum.data_points {
        // The processor binds a counter per outcome, exported from the start at 0.
        if let Some(number_data_point::Value::AsInt(value @ 1..)) = point.value {
            let error = support::attr_str(&point.attributes, "error.type").map(str::to_owned);
            *by_error.entry(error).or_default() += value;
        }
    }
    by_error
}

/// Ends `count` spans or emits `count` log records, one after another on this thread.
type Emit = fn(&Telemetry, usize);

/// Sends 2660 spans or log records through a batch processor with the default queue and batch
/// sizes to a collector that never answers, and returns the processor's counts by `error.type`.
///
/// The accounting of opentelemetry_sdk 0.33's batch processors (`BatchSpanProcessor`,
/// `BatchLogProcessor`): a record enters a bounded channel of `MAX_QUEUE_SIZE` places, or, when
/// the channel is full, is dropped and counted at once with `error.type=queue_full`. The record
/// that brings the pending count to `MAX_EXPORT_BATCH_SIZE` wakes the worker thread, which takes
/// one batch of that many from the channel, counts them as processed (no `error.type`) and then
/// calls the exporter, which here hangs (a 10-minute timeout; the schedule delay never elapses
/// either). So after the first 512 (one default batch, taken: wait until the count says so),
/// the channel empty again holds 2048 (the default queue) and the last 100 are dropped:
/// `{None: 512, queue_full: 100}`. A queue of 1024 would drop 1124, one of 4096 none; a batch
/// of 256 would count 256.
fn drops_from_a_default_queue(
    processor: &str,
    signal: &str,
    metric: &str,
    emit: Emit,
) -> BTreeMap<Option<String>, i64> {
    let (_runtime, receiver) = receiver_on_its_own_runtime();
    let black_hole = black_hole();
    let path = signal.to_ascii_lowercase();
    set_env(&[
        (&format!("OTEL_{processor}_MAX_QUEUE_SIZE"), None),
        (&format!("OTEL_{processor}_MAX_EXPORT_BATCH_SIZE"), None),
        // Only a full batch starts an export.
        (&format!("OTEL_{processor}_SCHEDULE_DELAY"), Some("600000")),
        (
            &format!("OTEL_EXPORTER_OTLP_{signal}_ENDPOINT"),
            Some(&format!("{black_hole}/v1/{path}")),
        ),
        (
            &format!("OTEL_EXPORTER_OTLP_{signal}_TIMEOUT"),
            Some("600000"),
        ),
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            Some(&receiver.http_endpoint()),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", Some("100")),
        ("OTEL_MONITOR_HOST_METRICS", Some("false")),
    ]);
    let telemetry = Telemetry::builder()
        .tracing_subscriber(false)
        // The hung export holds the processor's shutdown; the test does not wait for it.
        .shutdown_timeout(Duration::from_millis(100))
        .init()
        .unwrap();
    emit(&telemetry, 512);
    support::wait_for_blocking(
        "the first batch taken for export",
        Duration::from_secs(10),
        || (processed_by_error(&receiver, metric).get(&None) == Some(&512)).then_some(()),
    );
    emit(&telemetry, 2048 + 100);
    // A metric export collected after the last record: the second one to arrive from now on.
    let (exports, _) = receiver.received_requests();
    support::wait_for_blocking("two more metric exports", Duration::from_secs(10), || {
        (receiver.received_requests().0 >= exports + 2).then_some(())
    });
    processed_by_error(&receiver, metric)
}

fn expected_drops() -> BTreeMap<Option<String>, i64> {
    BTreeMap::from([(None, 512), (Some("queue_full".to_owned()), 100)])
}

#[test]
fn without_otel_bsp_max_queue_size_2048_spans_wait_behind_a_hung_export() {
    let by_error = drops_from_a_default_queue(
        "BSP",
        "TRACES",
        "otel.sdk.processor.span.processed",
        |telemetry, count| {
            let tracer = telemetry.tracer_provider().unwrap().tracer("app");
            for _ in 0..count {
                opentelemetry::trace::Tracer::in_span(&tracer, "queued", |_| {});
            }
        },
    );
    assert_eq!(by_error, expected_drops());
}

#[test]
fn without_otel_blrp_max_queue_size_2048_log_records_wait_behind_a_hung_export() {
    let by_error = drops_from_a_default_queue(
        "BLRP",
        "LOGS",
        "otel.sdk.processor.log.processed",
        |telemetry, count| {
            use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};

            let logger = telemetry.logger_provider().unwrap().logger("app");
            for _ in 0..count {
                let mut record = logger.create_log_record();
                record.set_body("queued".into());
                logger.emit(record);
            }
        },
    );
    assert_eq!(by_error, expected_drops());
}
