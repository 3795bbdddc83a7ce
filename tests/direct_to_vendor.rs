//! Straight to a vendor's OTLP intake, without a collector, with the standard `OTEL_*`
//! variables only: the README's Datadog agentless and Grafana Cloud recipes, played against the
//! in-process receiver over TLS. What is asserted is what the vendor would receive (the
//! credential header on every export of every signal, delta metrics for Datadog) and what the
//! console shows (never the credential, even at `RUST_LOG=debug`).

mod support;

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use opentelemetry_proto::tonic::metrics::v1::{AggregationTemporality, metric::Data};
use support::{
    ExampleService, OtlpReceiver, ReceiverOptions, TestPki, client::get, example::Exit, wait_for,
};

const DEADLINE: Duration = Duration::from_secs(20);
const SIGNALS: [&str; 3] = ["traces", "metrics", "logs"];

/// A TLS receiver, and the service exporting to it with the recipe's `env` on top of the CA that
/// stands for the vendor's public certificate; sends a request that makes a span, a log record
/// and the duration histogram, waits until every signal arrived, and stops the service.
async fn run_recipe(
    pki: &TestPki,
    receiver: &OtlpReceiver,
    endpoint: &str,
    env: &[(&str, &str)],
) -> Exit {
    let ca = pki.ca_path();
    let mut all = vec![
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap()),
        // Everything the crate and its dependencies say at debug level reaches the console.
        ("RUST_LOG", "debug"),
    ];
    all.extend_from_slice(env);
    let service = ExampleService::start(&all);
    let (status, _, _) = get(&service.url("/users/abc"), &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    for signal in SIGNALS {
        wait_for(signal, DEADLINE, || {
            (!receiver.export_headers(signal).is_empty()).then_some(())
        })
        .await;
    }
    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    exit
}

/// Every export of `signal` carried `name: value`.
fn assert_header_on_every_export(receiver: &OtlpReceiver, signal: &str, name: &str, value: &str) {
    let exports: Vec<HeaderMap> = receiver.export_headers(signal);
    assert!(!exports.is_empty(), "no {signal} export");
    for headers in &exports {
        assert_eq!(
            headers.get(name).and_then(|value| value.to_str().ok()),
            Some(value),
            "{signal}: {name}"
        );
    }
}

async fn tls_receiver(pki: &TestPki) -> OtlpReceiver {
    OtlpReceiver::start_with(ReceiverOptions {
        tls: Some(pki.server_tls()),
        ..ReceiverOptions::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_datadog_agentless_recipe_sends_the_api_key_and_delta_metrics_and_never_prints_the_key()
{
    const API_KEY: &str = "0123456789abcdef0123456789abcdef";
    let pki = TestPki::generate();
    let receiver = tls_receiver(&pki).await;
    let headers = format!("dd-api-key={API_KEY}");
    let log_headers = format!("dd-protocol=otlp,dd-api-key={API_KEY}");
    let exit = run_recipe(
        &pki,
        &receiver,
        &receiver.http_endpoint(),
        &[
            ("OTEL_EXPORTER_OTLP_HEADERS", &headers),
            // Datadog's logs intake also asks for `dd-protocol: otlp`; a signal's own variable
            // replaces the general one, so it repeats the key.
            ("OTEL_EXPORTER_OTLP_LOGS_HEADERS", &log_headers),
            ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
        ],
    )
    .await;
    for signal in SIGNALS {
        assert_header_on_every_export(&receiver, signal, "dd-api-key", API_KEY);
    }
    assert_header_on_every_export(&receiver, "logs", "dd-protocol", "otlp");
    let duration = receiver
        .latest_metric("http.server.request.duration")
        .unwrap();
    let Some(Data::Histogram(histogram)) = duration.metric.data else {
        panic!("{:?}", duration.metric);
    };
    assert_eq!(
        histogram.aggregation_temporality,
        AggregationTemporality::Delta as i32
    );
    assert!(
        !exit.output.contains(API_KEY),
        "the API key reached the console:\n{}",
        exit.output
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_cloud_recipe_sends_basic_auth_decoded_over_tls_and_never_prints_it() {
    // base64("123456:glc_eyJvIjoiZGVtbyJ9"): the instance id and a token.
    const CREDENTIALS: &str = "MTIzNDU2OmdsY19leUp2SWpvaVpHVnRieUo5";
    const TOKEN: &str = "glc_eyJvIjoiZGVtbyJ9";
    let pki = TestPki::generate();
    // The value as Grafana's page copies it (`%20`, percent-encoded as the specification's W3C
    // Baggage format has it) and with a plain space, which is accepted too.
    for header in [
        format!("Authorization=Basic%20{CREDENTIALS}"),
        format!("Authorization=Basic {CREDENTIALS}"),
    ] {
        let receiver = tls_receiver(&pki).await;
        // The gateway's base URL has a path: each signal's path goes after it.
        let endpoint = format!("{}/otlp", receiver.http_endpoint());
        let exit = run_recipe(
            &pki,
            &receiver,
            &endpoint,
            &[("OTEL_EXPORTER_OTLP_HEADERS", &header)],
        )
        .await;
        for signal in SIGNALS {
            assert_header_on_every_export(
                &receiver,
                signal,
                "authorization",
                &format!("Basic {CREDENTIALS}"),
            );
        }
        for secret in [CREDENTIALS, TOKEN] {
            assert!(
                !exit.output.contains(secret),
                "{header}: a credential reached the console:\n{}",
                exit.output
            );
        }
    }
}
