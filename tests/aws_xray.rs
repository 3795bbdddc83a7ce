//! The AWS X-Ray route: the example service exports OTLP/gRPC to rotel, whose X-Ray exporter
//! sends `PutTraceSegments` to an X-Ray API (here moto's, on 127.0.0.1); the test reads the
//! traces back with `GetTraceSummaries` and `BatchGetTraces`, as an X-Ray user would see them.
//!
//! Rotel 0.0.1-alpha10's X-Ray exporter sends traces only, so metrics and logs are routed to its
//! `blackhole` exporter, as in tests/datadog.rs. Its type is `aws-xray` for `--exporter` but
//! `xray` in `--exporters NAME:TYPE` (`aws-xray` there fails with "unknown exporter type").
//!
//! Workaround for a rotel bug: its X-Ray exporter labels its plain JSON body
//! `Content-Encoding: gzip`, and moto, which believes the header, fails to gunzip it and answers
//! 500. So rotel talks to moto through [`ReencodingProxy`], which drops the false header (and
//! really gunzips a body that is gzip) and forwards each request to moto, otherwise unchanged.
//!
//! Rotel's mapping of OTel spans to X-Ray segments (`src/exporters/xray/transformer.rs` in
//! streamfold/rotel) is far thinner than the AWS Distro for OpenTelemetry's, and the assertions
//! below pin what it really produces, gaps included (see the comments), so that a rotel upgrade
//! that changes it shows up here.

mod support;

use std::io::Read;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use support::moto::Moto;
use support::{ExampleService, Rotel, client::get};

const DEADLINE: Duration = Duration::from_secs(20);

/// The W3C Trace Context example ids, sent as the incoming `traceparent` of `/users/42`, so the
/// ids that reach X-Ray can be checked against known values.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const REMOTE_PARENT_ID: &str = "00f067aa0ba902b7";

/// An X-Ray trace id from a 128-bit OTel trace id in hex: version 1, then the first 8 hex digits
/// (in X-Ray's own ids, the start time in epoch seconds), then the remaining 24.
fn xray_trace_id(otel_trace_id: &str) -> String {
    assert_eq!(otel_trace_id.len(), 32, "not a trace id: {otel_trace_id:?}");
    format!("1-{}-{}", &otel_trace_id[..8], &otel_trace_id[8..])
}

/// What the proxy saw of one request from rotel, and moto's answer.
#[derive(Debug, Clone)]
struct Forwarded {
    method: String,
    path: String,
    headers: HeaderMap,
    /// Whether a body labelled gzip really was gzip.
    really_gzip: bool,
    moto_status: StatusCode,
    moto_answer: String,
}

impl Forwarded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// An HTTP server on 127.0.0.1 that forwards every request to moto, minus rotel's false
/// `Content-Encoding: gzip`, and returns moto's answer. Stopped when dropped.
struct ReencodingProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Forwarded>>>,
    server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct ProxyState {
    moto: String,
    seen: Arc<Mutex<Vec<Forwarded>>>,
}

impl ReencodingProxy {
    async fn start(moto_endpoint: String) -> ReencodingProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            moto: moto_endpoint,
            seen: seen.clone(),
        };
        let app = Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy on 127.0.0.1");
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the proxy failed");
        });
        ReencodingProxy { addr, seen, server }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn seen(&self) -> Vec<Forwarded> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ReencodingProxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn forward(State(state): State<ProxyState>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    let received_headers = parts.headers.clone();
    let body = body.collect().await.expect("read rotel's body").to_bytes();
    let mut really_gzip = false;
    let body = match parts.headers.remove(header::CONTENT_ENCODING) {
        Some(encoding) if encoding == "gzip" => {
            let mut plain = Vec::new();
            match flate2::read::GzDecoder::new(&body[..]).read_to_end(&mut plain) {
                Ok(_) => {
                    really_gzip = true;
                    Bytes::from(plain)
                }
                // Rotel's bug: plain JSON labelled gzip. Sent on as it is, unlabelled.
                Err(_) => body,
            }
        }
        Some(other) => panic!("unexpected content-encoding {other:?} from rotel"),
        None => body,
    };
    // hyper sets both again, for the new body and for moto's address. moto does not check
    // SigV4 signatures, so changing the host does not matter.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::HOST);
    let path = parts.uri.path().to_owned();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    parts.uri = format!("{}{path_and_query}", state.moto)
        .parse()
        .expect("moto's URI");
    let method = parts.method.to_string();
    let (status, headers, answer) =
        support::client::send(http::Request::from_parts(parts, Body::from(body))).await;
    state.seen.lock().unwrap().push(Forwarded {
        method,
        path,
        headers: received_headers,
        really_gzip,
        moto_status: status,
        moto_answer: String::from_utf8_lossy(&answer).into_owned(),
    });
    let mut response = (status, answer).into_response();
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    response
}

/// One segment document as `BatchGetTraces` returned it, with the id of its trace.
#[derive(Debug)]
struct Segment {
    trace_id: String,
    document: Value,
}

impl Segment {
    fn name(&self) -> &str {
        self.document["name"].as_str().unwrap_or_default()
    }
}

fn find<'a>(segments: &'a [Segment], name: &str) -> &'a Segment {
    segments
        .iter()
        .find(|segment| segment.name() == name)
        .unwrap_or_else(|| panic!("no segment named {name:?} in {segments:#?}"))
}

/// Polls `GetTraceSummaries` then `BatchGetTraces` until segments with all of `names` are in.
async fn wait_for_segments(
    moto: &Moto,
    proxy: &ReencodingProxy,
    names: &[&str],
) -> (Vec<Value>, Vec<Segment>) {
    let what = format!("segments {names:?}");
    support::wait_until(&what, DEADLINE, || async {
        // Finished traces that started in the last 10 minutes.
        let summaries = moto.trace_summaries(Duration::from_secs(600)).await;
        let ids: Vec<String> = summaries
            .iter()
            .map(|summary| summary["Id"].as_str().expect("a summary Id").to_owned())
            .collect();
        let segments: Vec<Segment> = if ids.is_empty() {
            Vec::new()
        } else {
            moto.traces(&ids)
                .await
                .into_iter()
                .flat_map(|(trace_id, documents)| {
                    documents.into_iter().map(move |document| Segment {
                        trace_id: trace_id.clone(),
                        document,
                    })
                })
                .collect()
        };
        if names
            .iter()
            .all(|name| segments.iter().any(|s| s.name() == *name))
        {
            Ok((summaries, segments))
        } else {
            Err(format!(
                "moto has {segments:#?}; the proxy forwarded {:#?}",
                proxy.seen()
            ))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_reach_aws_xray_through_rotel() {
    let moto = tokio::task::spawn_blocking(Moto::start).await.unwrap();
    let proxy = ReencodingProxy::start(moto.endpoint()).await;
    // With `--exporters`, rotel reads each named exporter's options only from
    // `ROTEL_EXPORTER_<NAME>_<PARAM>`. It signs with SigV4 from the usual AWS variables.
    let rotel = Rotel::start_with_env_and_args(
        &[
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("ROTEL_EXPORTER_XRAY_REGION", "us-east-1"),
            ("ROTEL_EXPORTER_XRAY_CUSTOM_ENDPOINT", &proxy.endpoint()),
        ],
        &[
            "--exporters",
            "xray:xray,sink:blackhole",
            "--exporters-traces",
            "xray",
            "--exporters-metrics",
            "sink",
            "--exporters-logs",
            "sink",
        ],
    );
    let service = ExampleService::start(&[
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &rotel.grpc_endpoint()),
        ("OTEL_SERVICE_NAME", "checkout"),
    ]);

    let traceparent = format!("00-{TRACE_ID}-{REMOTE_PARENT_ID}-01");
    let (status, _, _) = get(&service.url("/users/42"), &[("traceparent", &traceparent)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = get(&service.url("/error"), &[]).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);

    let (summaries, segments) = wait_for_segments(
        &moto,
        &proxy,
        &["GET /users/{id}", "load_user", "GET /error"],
    )
    .await;
    assert_eq!(segments.len(), 3, "{segments:#?}");

    // Every segment: named after the OTel span name, not after the service as the AWS Distro
    // for OpenTelemetry would (rotel ignores `service.name`: "checkout" appears nowhere), with
    // `aws.region` from rotel's own AWS_REGION and `metadata.environment` from rotel's own
    // `--environment` (default "production"), not from the service's resource.
    for segment in &segments {
        let what = segment.name();
        let document = &segment.document;
        assert_eq!(document["aws"], json!({ "region": "us-east-1" }), "{what}");
        assert_eq!(
            document["metadata"],
            json!({ "environment": "production" }),
            "{what}"
        );
        assert!(!document.to_string().contains("checkout"), "{document:#}");
        assert_eq!(document["trace_id"], json!(segment.trace_id), "{what}");
        let (start, end) = (&document["start_time"], &document["end_time"]);
        let (start, end) = (start.as_f64().unwrap(), end.as_f64().unwrap());
        assert!(start > 1.6e9 && start < end, "{what}: {start} .. {end}");
        let id = document["id"].as_str().unwrap();
        assert!(
            id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()),
            "{what}: segment id {id:?}"
        );
    }

    // The request span: the X-Ray trace id is the incoming OTel trace id split after 8 hex
    // digits. Rotel makes any span with a parent a `subsegment`, even when the parent is remote
    // (here the caller's span from `traceparent`), and sends it as an independent subsegment.
    let user = find(&segments, "GET /users/{id}");
    assert_eq!(user.trace_id, xray_trace_id(TRACE_ID));
    assert_eq!(user.trace_id, "1-4bf92f35-77b34da6a3ce929d0e0e4736");
    assert_eq!(user.document["type"], "subsegment");
    assert_eq!(user.document["parent_id"], REMOTE_PARENT_ID);
    // The X-Ray `http` block: rotel copies only *string* attributes named `http.request.*` and
    // `http.response.*`, with the prefix cut. So `http.request.method` becomes
    // `request.method`, but the integer `http.response.status_code` is dropped (the response
    // block stays empty), and `url.*`, `http.route` and `server.*` are not mapped at all: an
    // X-Ray user sees neither the URL nor the status code.
    assert_eq!(
        user.document["http"],
        json!({ "request": { "method": "GET" }, "response": {} })
    );
    assert!(user.document.get("fault").is_none(), "{:#}", user.document);
    assert!(user.document.get("error").is_none(), "{:#}", user.document);

    // The handler's `#[instrument]`ed span: a subsegment in the same trace, under the request.
    // Its fields (`id=42`) are not mapped either: only `annotation.*`/`metadata.*` attributes are.
    let child = find(&segments, "load_user");
    assert_eq!(child.trace_id, user.trace_id);
    assert_eq!(child.document["type"], "subsegment");
    assert_eq!(child.document["parent_id"], user.document["id"]);
    assert!(child.document.get("http").is_none(), "{:#}", child.document);
    assert!(child.document.get("annotations").is_none());

    // The failed request: a root span, so a `segment` of its own trace, whose X-Ray id comes
    // from the OTel trace id the service logged. Rotel sets `fault` only from a *string*
    // `http.response.status` starting with 5, which no semantic convention emits, and ignores
    // the OTel span status (Error): the 500 shows as neither fault nor error in X-Ray.
    let error = find(&segments, "GET /error");
    assert_eq!(error.document["type"], "segment");
    assert!(
        error.document.get("parent_id").is_none(),
        "{:#}",
        error.document
    );
    assert_ne!(error.trace_id, user.trace_id);
    let error_otel_trace_id = service
        .output()
        .lines()
        .find(|line| line.contains("GET /error 500"))
        .and_then(|line| line.split("trace_id=").nth(1))
        .map(|id| id.trim().to_owned())
        .expect("the access log line of GET /error with its trace id");
    assert_eq!(error.trace_id, xray_trace_id(&error_otel_trace_id));
    assert_eq!(
        error.document["http"],
        json!({ "request": { "method": "GET" }, "response": {} })
    );
    for flag in ["fault", "error", "throttle"] {
        assert!(
            error.document.get(flag).is_none(),
            "{flag}: {:#}",
            error.document
        );
    }

    // GetTraceSummaries lists both traces (finished: every segment has an end time), neither
    // with a fault, since no segment says so.
    let summary = |id: &str| {
        summaries
            .iter()
            .find(|s| s["Id"] == id)
            .unwrap_or_else(|| panic!("no summary for {id} in {summaries:#?}"))
    };
    for id in [&user.trace_id, &error.trace_id] {
        assert_eq!(summary(id)["HasFault"], false, "{id}");
        assert_eq!(summary(id)["HasError"], false, "{id}");
    }

    let exit = service.stop();
    assert!(exit.status.success(), "{exit:?}");
    // Metrics and logs went to the blackhole exporter: nothing was refused.
    assert!(!exit.output.contains("cannot export"), "{}", exit.output);
    // SIGTERM makes rotel flush; its stop waits (blocking) for it to exit.
    tokio::task::spawn_blocking(move || drop(rotel))
        .await
        .unwrap();

    // What rotel sent: PutTraceSegments (REST-JSON `POST /TraceSegments`), SigV4-signed with
    // the dummy key for X-Ray in us-east-1, all accepted by moto once the false gzip label was
    // dropped.
    let requests = proxy.seen();
    assert!(!requests.is_empty());
    for request in &requests {
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/TraceSegments"),
            "{request:#?}"
        );
        assert_eq!(request.moto_status, StatusCode::OK, "{request:#?}");
        assert_eq!(
            serde_json::from_str::<Value>(&request.moto_answer).unwrap(),
            json!({ "UnprocessedTraceSegments": [] }),
            "{request:#?}"
        );
        let authorization = request.header("authorization").unwrap_or_default();
        assert!(
            authorization.starts_with("AWS4-HMAC-SHA256 Credential=testing/")
                && authorization.contains("/us-east-1/xray/aws4_request"),
            "{request:#?}"
        );
        // The rotel bug this proxy works around: if this fails because the body really is
        // gzip (or is no longer labelled), rotel was fixed and the proxy can go.
        assert_eq!(request.header("content-encoding"), Some("gzip"));
        assert!(!request.really_gzip, "{request:#?}");
    }
}
