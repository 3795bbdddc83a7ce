//! The console never holds a request: its lines are written off the request path, and dropped,
//! counted, when the standard output does not keep up (README, "Logs").

mod support;

use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use support::{ExampleService, wait_for};

/// The path of every request: its access-log line is about 1.1 KB.
fn long_path() -> String {
    format!("/{}", "a".repeat(1_000))
}

/// Far more access-log lines than a 64 KiB pipe and the crate's queue of 1 MiB hold together.
const REQUESTS: usize = 2_000;

/// A request held by a blocked console would wait forever; a served one takes milliseconds.
const PER_REQUEST: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standard_output_nobody_reads_blocks_no_request_and_its_lost_lines_are_counted() {
    // The example logs one access line per request: the pipe is full after about sixty.
    let mut service = ExampleService::start_with_unread_stdout(&[
        ("OTEL_TRACES_EXPORTER", "none"),
        ("OTEL_METRICS_EXPORTER", "none"),
        ("OTEL_LOGS_EXPORTER", "none"),
    ]);
    let path = long_path();
    let url = service.url(&path);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    for n in 0..REQUESTS {
        let request = Request::get(&url).body(Body::empty()).unwrap();
        let served = tokio::time::timeout(PER_REQUEST, async {
            let response = client.request(request).await.expect("the request failed");
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .expect("the body failed");
            status
        })
        .await;
        let Ok(status) = served else {
            panic!("request {n} got no answer in {PER_REQUEST:?}: the service is stuck");
        };
        assert_eq!(status, StatusCode::NOT_FOUND, "request {n}");
    }

    // Once the output is read again, the writer says how many lines it dropped.
    service.read_stdout();
    let dropped: u64 = wait_for(
        "the count of dropped lines",
        Duration::from_secs(20),
        || {
            let output = service.output();
            let (_, after) = output.split_once("otel-monitor: ")?;
            after.split_once(" console lines dropped")?.0.parse().ok()
        },
    )
    .await;
    let output = service.output();
    let written = output.matches(&format!(" GET {path} 404 ")).count() as u64;
    assert_eq!(
        written + dropped,
        REQUESTS as u64,
        "every access line is either written or counted as dropped:\n{output}"
    );
    assert!(dropped > 0, "{output}");

    let exit = service.stop();
    assert!(exit.status.success(), "{}", exit.output);
}
