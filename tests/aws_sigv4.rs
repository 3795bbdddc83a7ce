//! Straight to AWS without a collector (feature `aws`, `OTEL_MONITOR_AWS_SIGV4=true`): every
//! OTLP/HTTP export signed with SigV4, each signature checked by botocore's signer
//! (tests/support/sigv4_verifier.py), an implementation independent of the crate's; a body
//! changed in transit refused; credentials from the container endpoint refreshed before they
//! expire; no secret on the console.
#![cfg(feature = "aws")]

mod support;

use std::time::Duration;

use http::StatusCode;
use support::{
    ExampleService,
    client::get,
    example::Exit,
    sigv4::{SeenRequest, SigV4Verifier},
    wait_until,
};

const DEADLINE: Duration = Duration::from_secs(20);
const REGION: &str = "eu-west-3";
const ACCESS_KEY: &str = "AKIAOTELMONITORTEST";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYOTELMONITOR";
const TOKEN: &str = "IQoJb3JpZ2luX2VjEOTELMONITORSESSIONTOKEN";
const LOG_GROUP: &str = "/otel-monitor/test";
const LOG_STREAM: &str = "checkout";
const PATHS: [(&str, &str); 3] = [
    ("/v1/traces", "xray"),
    ("/v1/metrics", "monitoring"),
    ("/v1/logs", "logs"),
];

/// What every run needs: signing on, the region, nothing from a profile or the instance
/// metadata, the CloudWatch Logs group and stream on the log exports, and the endpoint.
fn env<'a>(endpoint: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut env = vec![
        ("OTEL_MONITOR_AWS_SIGV4", "true"),
        ("AWS_REGION", REGION),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_CONFIG_FILE", "/nonexistent/otel-monitor/config"),
        (
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/otel-monitor/credentials",
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        (
            "OTEL_EXPORTER_OTLP_LOGS_HEADERS",
            "x-aws-log-group=/otel-monitor/test,x-aws-log-stream=checkout",
        ),
        ("RUST_LOG", "debug"),
    ];
    env.extend_from_slice(extra);
    env
}

/// Requests until the verifier has seen `enough` of what it received, then stops the service.
async fn serve_until(
    env: &[(&str, &str)],
    verifier: &SigV4Verifier,
    enough: impl Fn(&[SeenRequest]) -> bool,
) -> (Exit, Vec<SeenRequest>) {
    let service = ExampleService::start(env);
    let seen = wait_until("the exports the test waits for", DEADLINE, || async {
        let (status, _, _) = get(&service.url("/users/abc"), &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let seen = verifier.requests().await;
        if enough(&seen) {
            Ok(seen)
        } else {
            Err(format!("{seen:?}"))
        }
    })
    .await;
    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    (exit, seen)
}

/// Whether each signal's path has been seen.
fn every_signal(seen: &[SeenRequest]) -> bool {
    PATHS
        .iter()
        .all(|(path, _)| seen.iter().any(|request| request.path == *path))
}

fn assert_no_secret_on_the_console(exit: &Exit, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !exit.output.contains(secret),
            "a secret reached the console:\n{}",
            exit.output
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_export_of_every_signal_is_signed_for_its_service_and_botocore_accepts_it() {
    let verifier =
        SigV4Verifier::start(REGION, &[&format!("{ACCESS_KEY}:{SECRET}:{TOKEN}")], 3600.0);
    let endpoint = verifier.endpoint();
    let (exit, seen) = serve_until(
        &env(
            &endpoint,
            &[
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
                ("AWS_SESSION_TOKEN", TOKEN),
                // The signature covers the body as sent: compressed, for spans.
                ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
            ],
        ),
        &verifier,
        every_signal,
    )
    .await;
    for request in &seen {
        assert_eq!(request.status, 200, "{request:?}");
        assert_eq!(request.access_key, ACCESS_KEY);
        let (_, service) = PATHS
            .iter()
            .find(|(path, _)| *path == request.path)
            .unwrap();
        assert_eq!(request.service, *service, "{request:?}");
        for header in ["host", "x-amz-date", "x-amz-security-token", "content-type"] {
            assert!(
                request.signed_headers.iter().any(|name| name == header),
                "{header} not signed: {request:?}"
            );
        }
    }
    let traces = seen.iter().find(|request| request.path == "/v1/traces");
    assert_eq!(
        traces.unwrap().header["content-encoding"].as_str(),
        Some("gzip")
    );
    for logs in seen.iter().filter(|request| request.path == "/v1/logs") {
        assert_eq!(logs.header["x-aws-log-group"].as_str(), Some(LOG_GROUP));
        assert_eq!(logs.header["x-aws-log-stream"].as_str(), Some(LOG_STREAM));
        for header in ["x-aws-log-group", "x-aws-log-stream"] {
            assert!(logs.signed_headers.iter().any(|name| name == header));
        }
    }
    assert_no_secret_on_the_console(&exit, &[SECRET, TOKEN]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_changed_in_transit_is_refused() {
    let verifier = SigV4Verifier::start(REGION, &[&format!("{ACCESS_KEY}:{SECRET}")], 3600.0);
    let endpoint = verifier.tampering_endpoint();
    let (exit, seen) = serve_until(
        &env(
            &endpoint,
            &[
                ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
                ("AWS_SECRET_ACCESS_KEY", SECRET),
            ],
        ),
        &verifier,
        every_signal,
    )
    .await;
    for request in &seen {
        assert_eq!(request.status, 403, "{request:?}");
        assert_eq!(
            request.refusal.as_deref(),
            Some("signature does not match"),
            "{request:?}"
        );
    }
    assert_no_secret_on_the_console(&exit, &[SECRET]);
}

/// The distinct keys the exports of `path` were signed with, in the order they were first used.
fn keys_used(seen: &[SeenRequest], path: &str) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for request in seen.iter().filter(|request| request.path == path) {
        if !keys.contains(&request.access_key) {
            keys.push(request.access_key.clone());
        }
    }
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_credentials_are_refreshed_before_they_expire() {
    // Each key handed out expires 302 s later: 2 s after it is fetched, it is within the 300 s
    // the crate refreshes ahead of expiry.
    let verifier = SigV4Verifier::start(REGION, &[], 302.0);
    let (endpoint, credentials) = (verifier.endpoint(), verifier.credentials_uri());
    let (exit, seen) = serve_until(
        &env(
            &endpoint,
            &[("AWS_CONTAINER_CREDENTIALS_FULL_URI", &credentials)],
        ),
        &verifier,
        |seen| {
            PATHS
                .iter()
                .all(|(path, _)| keys_used(seen, path).len() >= 2)
        },
    )
    .await;
    assert!(seen.iter().all(|request| request.status == 200), "{seen:?}");
    let issued = verifier.issued().await;
    let handed: Vec<&str> = issued.iter().map(|i| i.access_key.as_str()).collect();
    for (path, _) in PATHS {
        // Each signal moved on to newer keys, in the order they were handed out, and fetched
        // each one while the one it replaced was still valid.
        let used: Vec<usize> = keys_used(&seen, path)
            .iter()
            .map(|key| handed.iter().position(|h| h == key).unwrap())
            .collect();
        assert!(
            used.windows(2).all(|pair| pair[0] < pair[1]),
            "{path}: {used:?}"
        );
        for pair in used.windows(2) {
            let (old, new) = (&issued[pair[0]], &issued[pair[1]]);
            assert!(
                new.issued_at < old.expires_at,
                "{path}: {old:?} replaced by {new:?} only after it expired"
            );
        }
    }
    assert_no_secret_on_the_console(&exit, &["SecretAccessKey"]);
}

#[test]
fn signing_without_a_region_fails_start_up_with_one_clear_error() {
    let exit = support::example::run_to_exit(&[
        ("OTEL_MONITOR_AWS_SIGV4", "true"),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", SECRET),
    ]);
    assert!(!exit.status.success());
    assert!(
        exit.output
            .contains("OTEL_MONITOR_AWS_SIGV4: signing needs a region: set AWS_REGION"),
        "{}",
        exit.output
    );
    assert_eq!(
        exit.output.matches("AWS_REGION").count(),
        1,
        "{}",
        exit.output
    );
    assert_no_secret_on_the_console(&exit, &[SECRET]);
}
