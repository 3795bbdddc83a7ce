//! The example service: an axum app observed by `otel-monitor`, configured by nothing but the
//! standard `OTEL_*` environment variables.
//!
//! ```text
//! scripts/run-example            # with a local collector printing what it receives
//! cargo run --example service    # bare: point OTEL_EXPORTER_OTLP_ENDPOINT at your collector
//!
//! # a collector behind TLS whose certificate your own CA signed, with a client certificate:
//! OTEL_EXPORTER_OTLP_ENDPOINT=https://collector.internal:4318 \
//! OTEL_EXPORTER_OTLP_CERTIFICATE=ca.pem \
//! OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=client.pem OTEL_EXPORTER_OTLP_CLIENT_KEY=client.key \
//!   cargo run --example service
//! ```
//!
//! When the collector cannot be reached, the service goes on serving and says so in one warning
//! a minute per signal, with the reason (`connection refused`, `certificate not trusted`).
//!
//! Behind a proxy or load balancer, `OTEL_MONITOR_TRUSTED_PROXIES=10.0.0.0/8` (its addresses or
//! ranges) makes `client.address`, `url.scheme` and `server.address` come from the
//! `X-Forwarded-*` headers it writes (`OTEL_MONITOR_FORWARDED_HEADERS=forwarded` for RFC 7239's
//! `Forwarded`); without it, those headers are ignored.
//!
//! Routes: `GET /`, `GET /users/{id}`, `GET /slow?ms=N`, `GET /error`,
//! `GET /stream?chunks=N&ms=M`, `GET /admin` (401 without `Authorization: Bearer <token>`, 403
//! with a wrong token; the token is `EXAMPLE_ADMIN_TOKEN`, `demo-admin-token` when unset),
//! `GET /chain/{depth}` (see below), `GET /health` (not traced), and with the `prometheus` feature and
//! `OTEL_METRICS_EXPORTER=prometheus`, `GET /metrics`. A 401, 403, or a 404 of no route
//! (`GET /wp-login.php`) logs a security event (`otel_monitor.http.server.refusal`).
//!
//! A distributed trace: `GET /chain/{depth}` calls `DOWNSTREAM_URL` (the service itself when
//! unset) at `/chain/{depth-1}` through [`MonitorClientLayer`], down to `/chain/0`, which
//! answers; `curl localhost:3000/chain/3` makes one trace of SERVER, CLIENT, SERVER, ... spans.
//! Run a second service with `DOWNSTREAM_URL` pointing at it to see the trace cross processes.

use std::{error::Error, net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode, header},
    response::IntoResponse,
    routing::get,
};
use http_body_util::BodyExt;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use otel_monitor::{MonitorClient, MonitorClientLayer, MonitorLayer, Telemetry, UrlTemplate};
use serde_json::json;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};
use tower::{Layer, ServiceExt};

/// Longest wait `/slow` and `/stream` accept, in milliseconds.
const MAX_WAIT_MS: u64 = 10_000;
/// Most chunks `/stream` sends.
const MAX_CHUNKS: u64 = 1_000;
/// Deepest `/chain/{depth}` accepted: each level is a call, and a chain must end.
const MAX_CHAIN_DEPTH: u32 = 10;
/// The token `GET /admin` asks for when `EXAMPLE_ADMIN_TOKEN` is unset: a demo's, not a secret.
const DEMO_ADMIN_TOKEN: &str = "demo-admin-token";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    // Defaults that OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES can change per deployment.
    let telemetry = Telemetry::builder()
        .default_service_name("otel-monitor-example")
        .default_service_version(env!("CARGO_PKG_VERSION"))
        .init()?;

    let address = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    let address = listener.local_addr()?;

    let admin_token: Arc<str> = std::env::var("EXAMPLE_ADMIN_TOKEN")
        .unwrap_or_else(|_| DEMO_ADMIN_TOKEN.to_owned())
        .into();
    // The calls this service makes, traced as CLIENT spans that carry the trace downstream.
    let downstream = Downstream {
        url: std::env::var("DOWNSTREAM_URL")
            .unwrap_or_else(|_| format!("http://{address}"))
            .into(),
        client: MonitorClientLayer::new().layer(Client::builder(TokioExecutor::new()).build_http()),
    };
    let app = Router::new()
        .route("/", get(|| async { "Hello from otel-monitor\n" }))
        .route("/admin", get(admin).with_state(admin_token))
        .route("/chain/{depth}", get(chain).with_state(downstream))
        .route("/users/{id}", get(user))
        .route("/slow", get(slow))
        .route("/error", get(error))
        .route("/stream", get(stream))
        .route("/health", get(|| async { "ok\n" }))
        // A fallback of the app's own, so that requests no route matches go through the layer
        // (measured, traced as `GET` with no route) also once /metrics is merged below: `merge`
        // keeps the one custom fallback, and without one axum's default has no layer.
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(
            MonitorLayer::builder()
                .filter(|path| path != "/health")
                .access_log(true)
                .build(),
        );
    // With OTEL_METRICS_EXPORTER=prometheus (feature `prometheus`), GET /metrics for Prometheus,
    // added after the layer so that scrapes are not traced.
    #[cfg(feature = "prometheus")]
    let app = match telemetry.prometheus() {
        Some(scrape) => app.merge(scrape.router()),
        None => app,
    };

    log_resources();
    tracing::info!("listening on http://{address}");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;

    tracing::info!("Application finished");
    // Telemetry that cannot be delivered is worth a warning, not a failed exit.
    if let Err(error) = telemetry.shutdown() {
        tracing::warn!(%error, "telemetry was not fully flushed");
    }
    Ok(())
}

/// `Application started`, with the machine's memory and CPUs, as the first line of the log.
fn log_resources() {
    const MIB: u64 = 1024 * 1024;
    let system = System::new_with_specifics(
        RefreshKind::nothing()
            .with_memory(MemoryRefreshKind::nothing().with_ram())
            .with_cpu(CpuRefreshKind::nothing()),
    );
    tracing::info!(
        memory.total_mib = system.total_memory() / MIB,
        memory.used_mib = system.used_memory() / MIB,
        memory.available_mib = system.available_memory() / MIB,
        cpus = system.cpus().len(),
        "Application started",
    );
}

/// `GET /users/{id}`: a user as JSON, or 400 when the id is not a number.
async fn user(Path(id): Path<String>) -> impl IntoResponse {
    match id.parse::<u64>() {
        Ok(id) => (StatusCode::OK, Json(load_user(id).await)).into_response(),
        Err(_) => {
            tracing::warn!(user.id = %id, "the user id is not a number");
            (
                StatusCode::BAD_REQUEST,
                Json(json!({ "error": "the user id must be a number" })),
            )
                .into_response()
        }
    }
}

/// `GET /admin`: 401 without a bearer token, 403 with a wrong one, 200 with the right one.
async fn admin(State(token): State<Arc<str>>, headers: HeaderMap) -> impl IntoResponse {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match given {
        None => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a bearer token is needed\n",
        )
            .into_response(),
        Some(given) if !same_secret(given.as_bytes(), token.as_bytes()) => {
            (StatusCode::FORBIDDEN, "not this token\n").into_response()
        }
        Some(_) => "welcome, admin\n".into_response(),
    }
}

/// Whether `given` is `secret`, in a time that depends on their lengths only, not on where they
/// differ: an early exit would tell an attacker timing the answers how many leading bytes of a
/// guess are right. (The length is not hidden: the token's length is no secret.)
fn same_secret(given: &[u8], secret: &[u8]) -> bool {
    given.len() == secret.len()
        && given
            .iter()
            .zip(secret)
            .fold(0u8, |difference, (a, b)| difference | (a ^ b))
            == 0
}

/// Where `/chain/{depth}` calls, and the client it calls with.
#[derive(Clone)]
struct Downstream {
    url: Arc<str>,
    client: MonitorClient<Client<HttpConnector, Body>>,
}

/// `GET /chain/{depth}`: calls `/chain/{depth-1}` downstream and says what it answered; 0
/// answers itself, above 10 is a 400, and a downstream that fails or cannot be reached is a 502.
async fn chain(
    State(downstream): State<Downstream>,
    Path(depth): Path<u32>,
) -> (StatusCode, String) {
    if depth > MAX_CHAIN_DEPTH {
        let message = format!("depth {depth} is deeper than {MAX_CHAIN_DEPTH}\n");
        return (StatusCode::BAD_REQUEST, message);
    }
    if depth == 0 {
        return (StatusCode::OK, "chain 0: the end\n".to_owned());
    }
    let url = format!("{}/chain/{}", downstream.url, depth - 1);
    let request = http::Request::get(&url)
        // The low-cardinality name of what is called: the span is `GET /chain/{depth}`.
        .extension(UrlTemplate::new("/chain/{depth}"))
        .body(Body::empty());
    let Ok(request) = request else {
        let message = format!("chain {depth}: DOWNSTREAM_URL gives {url}, which is not a URL\n");
        return (StatusCode::INTERNAL_SERVER_ERROR, message);
    };
    let answer = match downstream.client.oneshot(request).await {
        Ok(response) => {
            let status = response.status();
            match response.into_body().collect().await {
                Ok(body) => Ok((status, body.to_bytes())),
                Err(error) => Err(error.to_string()),
            }
        }
        Err(error) => Err(error.to_string()),
    };
    match answer {
        Ok((status, body)) => {
            let body = String::from_utf8_lossy(&body);
            let ours = if status.is_success() {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (
                ours,
                format!("chain {depth}: {url} answered {status}\n{body}"),
            )
        }
        Err(error) => {
            tracing::warn!(%error, %url, "the downstream call failed");
            (
                StatusCode::BAD_GATEWAY,
                format!("chain {depth}: {url} failed: {error}\n"),
            )
        }
    }
}

/// A child span of the request's span, as any `#[instrument]`ed function of a handler is.
#[tracing::instrument]
async fn load_user(id: u64) -> serde_json::Value {
    tokio::time::sleep(Duration::from_millis(2)).await;
    json!({ "id": id, "name": format!("user {id}") })
}

#[derive(serde::Deserialize)]
struct SlowParams {
    ms: Option<u64>,
}

/// `GET /slow?ms=N`: answers after N milliseconds (at most 10 000).
async fn slow(Query(params): Query<SlowParams>) -> String {
    let ms = params.ms.unwrap_or(100).min(MAX_WAIT_MS);
    tokio::time::sleep(Duration::from_millis(ms)).await;
    format!("waited {ms} ms\n")
}

/// `GET /error`: always fails with 500.
async fn error() -> (StatusCode, &'static str) {
    tracing::error!("An error occurred");
    (StatusCode::INTERNAL_SERVER_ERROR, "An error occurred\n")
}

#[derive(serde::Deserialize)]
struct StreamParams {
    chunks: Option<u64>,
    ms: Option<u64>,
}

/// `GET /stream?chunks=N&ms=M`: N chunks, M milliseconds apart.
async fn stream(Query(params): Query<StreamParams>) -> Body {
    let chunks = params.chunks.unwrap_or(5).min(MAX_CHUNKS);
    let pause = Duration::from_millis(params.ms.unwrap_or(100).min(MAX_WAIT_MS));
    let body = futures_util::stream::unfold(0, move |sent| async move {
        if sent == chunks {
            return None;
        }
        if sent > 0 {
            tokio::time::sleep(pause).await;
        }
        let chunk = Bytes::from(format!("chunk {sent}\n"));
        Some((Ok::<_, std::convert::Infallible>(chunk), sent + 1))
    });
    Body::from_stream(body)
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
