//! Security events as an analyst receives them: a service behind `MonitorLayer`, with the
//! pipeline `Telemetry` builds, answers 401, 403, 429 and unmatched 404s to clients on two
//! loopback addresses (127.0.0.1 and 127.0.0.2), and what arrives at the collector is read:
//! one WARN log record per refusal, with its event name, attributes and trace, and none for
//! other answers; a burst of one client limited, its next event saying how many were
//! suppressed, the other client unaffected; nothing when switched off; metrics without any
//! client's address.
//!
//! Each test installs the global pipeline, so each runs in a process of its own (nextest).

mod support;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Duration,
};

use axum::{
    Router,
    http::{HeaderMap, StatusCode, header},
    routing::get,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use otel_monitor::{MonitorLayer, MonitorLayerBuilder, Telemetry};
use support::{OtlpReceiver, ReceivedLog, Rotel};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DEADLINE: Duration = Duration::from_secs(15);
const EVENT_NAME: &str = "otel_monitor.http.server.refusal";
const SUPPRESSED: &str = "otel_monitor.http.server.refusal.suppressed";
const FIRST_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 1);
const SECOND_CLIENT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// The attribute value length limit of the layer under test.
const LIMIT: usize = 64;

/// A service whose routes answer each status of interest, and the pipeline it exports through.
struct Service {
    receiver: OtlpReceiver,
    telemetry: Telemetry,
    address: SocketAddr,
    /// Kept running while the test reads what it forwarded.
    _rotel: Option<Rotel>,
    /// Dropped last: the service and the receiver run on it.
    runtime: tokio::runtime::Runtime,
}

impl Service {
    /// Starts the receiver (through rotel when `through_rotel`), the pipeline exporting to it,
    /// and the service with the layer `configure` makes.
    fn start(
        through_rotel: bool,
        configure: impl FnOnce(MonitorLayerBuilder) -> MonitorLayerBuilder,
    ) -> Self {
        // The receiver's threads, started first for its endpoint, read no variables.
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let receiver = runtime.block_on(OtlpReceiver::start());
        let rotel = through_rotel.then(|| Rotel::start_forwarding_to(&receiver.grpc_endpoint()));
        let endpoint = match &rotel {
            Some(rotel) => rotel.endpoint("http/protobuf"),
            None => receiver.http_endpoint(),
        };
        for (name, value) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_BSP_SCHEDULE_DELAY", "50"),
            ("OTEL_BLRP_SCHEDULE_DELAY", "50"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            ("OTEL_MONITOR_HOST_METRICS", "false"),
            ("RUST_LOG", "info"),
        ] {
            // SAFETY: the test runs alone in its process (nextest); the only other threads are
            // the receiver's and rotel's readers, which read no variables.
            unsafe { std::env::set_var(name, value) };
        }
        let telemetry = Telemetry::builder().service_name("secured").init().unwrap();
        let layer = configure(MonitorLayer::builder().attribute_value_length_limit(LIMIT)).build();
        let app = Router::new()
            .route("/admin", get(admin))
            .route("/limited", get(|| async { StatusCode::TOO_MANY_REQUESTS }))
            .route("/items/{id}", get(|| async { StatusCode::NOT_FOUND }))
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/error",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route(
                "/sentinel",
                get(|| async {
                    tracing::warn!("sentinel");
                    "logged"
                }),
            )
            .fallback(|| async { StatusCode::NOT_FOUND })
            .layer(layer);
        let address = runtime.block_on(support::serve(app));
        Self {
            runtime,
            receiver,
            telemetry,
            address,
            _rotel: rotel,
        }
    }

    /// `GET path` from `client` with `headers`: the status.
    fn get(&self, client: Ipv4Addr, path: &str, headers: &[(&str, &str)]) -> u16 {
        self.runtime
            .block_on(request_from(client, self.address, path, headers))
    }

    /// The security events received so far.
    fn events(&self) -> Vec<ReceivedLog> {
        security_events(&self.receiver.logs())
    }

    /// Waits until `pred` holds for the security events received.
    fn wait_for_events(
        &self,
        what: &str,
        pred: impl Fn(&[ReceivedLog]) -> bool,
    ) -> Vec<ReceivedLog> {
        self.runtime.block_on(support::wait_for(what, DEADLINE, || {
            let events = self.events();
            pred(&events).then_some(events)
        }))
    }
}

/// `GET /admin`: 401 without `Authorization`, 403 with anything but `Bearer right`.
async fn admin(headers: HeaderMap) -> StatusCode {
    match headers.get(header::AUTHORIZATION) {
        None => StatusCode::UNAUTHORIZED,
        Some(value) if value == "Bearer right" => StatusCode::OK,
        Some(_) => StatusCode::FORBIDDEN,
    }
}

/// One HTTP/1.1 request from the loopback address `client`, on a connection of its own: the
/// response's status.
async fn request_from(
    client: Ipv4Addr,
    server: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> u16 {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((client, 0))).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {server}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    response
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

fn security_events(logs: &[ReceivedLog]) -> Vec<ReceivedLog> {
    logs.iter()
        .filter(|log| log.record.event_name == EVENT_NAME)
        .cloned()
        .collect()
}

fn int(log: &ReceivedLog, key: &str) -> Option<i64> {
    support::attr_int(&log.record.attributes, key)
}

fn from(events: &[ReceivedLog], client: Ipv4Addr) -> Vec<ReceivedLog> {
    let client = client.to_string();
    events
        .iter()
        .filter(|event| event.attr_str("client.address") == Some(client.as_str()))
        .cloned()
        .collect()
}

#[test]
fn each_refusal_arrives_through_the_collector_as_one_warn_event_in_its_trace_and_nothing_else_does()
{
    let service = Service::start(true, |layer| layer);
    let long_agent = "a".repeat(100);
    let long_path = format!("/{}", "b".repeat(100));
    // What must give no event, first: had they one, it would arrive before the others.
    for (path, status) in [("/ok", 200), ("/items/7", 404), ("/error", 500)] {
        assert_eq!(service.get(FIRST_CLIENT, path, &[]), status, "{path}");
    }
    let refusals = [
        ("/admin", vec![("user-agent", "curl/8.5.0")], 401),
        (
            "/admin",
            vec![
                ("user-agent", "stuffer/1.0"),
                ("authorization", "Bearer wrong"),
            ],
            403,
        ),
        ("/limited", vec![("user-agent", long_agent.as_str())], 429),
        (long_path.as_str(), vec![("user-agent", "scanner")], 404),
    ];
    for (path, headers, status) in &refusals {
        assert_eq!(service.get(FIRST_CLIENT, path, headers), *status, "{path}");
    }

    let events = service.wait_for_events("the four security events", |events| events.len() >= 4);
    let spans = service.runtime.block_on(service.receiver.wait_for_spans(
        "the seven spans",
        DEADLINE,
        |spans| spans.len() >= 7,
    ));
    assert_eq!(
        events.len(),
        4,
        "one event per refusal and none for 200, a route's 404, 500"
    );
    let agents = ["curl/8.5.0", "stuffer/1.0", &long_agent[..LIMIT], "scanner"];
    let paths = ["/admin", "/admin", "/limited", &long_path[..LIMIT]];
    let routes = [Some("/admin"), Some("/admin"), Some("/limited"), None];
    for (index, (_, _, status)) in refusals.iter().enumerate() {
        let event = events
            .iter()
            .find(|event| int(event, "http.response.status_code") == Some(i64::from(*status)))
            .unwrap_or_else(|| panic!("no event of the {status}: {events:?}"));
        assert_eq!(event.record.severity_number, 13, "WARN");
        assert_eq!(event.record.severity_text, "WARN");
        assert_eq!(event.attr_str("client.address"), Some("127.0.0.1"));
        assert_eq!(event.attr_str("network.peer.address"), Some("127.0.0.1"));
        assert_eq!(event.attr_str("user_agent.original"), Some(agents[index]));
        assert_eq!(event.attr_str("http.request.method"), Some("GET"));
        assert_eq!(event.attr_str("url.path"), Some(paths[index]));
        assert_eq!(event.attr_str("http.route"), routes[index]);
        assert_eq!(int(event, SUPPRESSED), None, "nothing suppressed yet");
        assert_eq!(
            support::attr_str(&event.resource, "service.name"),
            Some("secured")
        );
        let span = spans
            .iter()
            .find(|span| span.attr_str("user_agent.original") == Some(agents[index]))
            .unwrap_or_else(|| panic!("the span of {:?}", paths[index]));
        assert_eq!(
            event.trace_id_hex(),
            span.trace_id_hex(),
            "{}",
            paths[index]
        );
        assert_eq!(event.span_id_hex(), span.span_id_hex(), "{}", paths[index]);
    }
    let unauthorized = events
        .iter()
        .find(|event| int(event, "http.response.status_code") == Some(401));
    assert_eq!(
        unauthorized.and_then(ReceivedLog::body_str),
        Some("401 Unauthorized: GET /admin from 127.0.0.1")
    );
    service.telemetry.shutdown().unwrap();
}

#[test]
fn a_burst_of_one_client_is_limited_its_next_event_counts_what_was_suppressed_and_another_client_is_not_limited()
 {
    // 30 a minute: a burst of 30, then one every 2 s.
    let service = Service::start(false, |layer| layer.security_events_per_client(30));
    for _ in 0..40 {
        assert_eq!(service.get(FIRST_CLIENT, "/admin", &[]), 401);
    }
    for _ in 0..5 {
        assert_eq!(service.get(SECOND_CLIENT, "/wp-login.php", &[]), 404);
    }
    let events = service.wait_for_events("both clients' events", |events| {
        from(events, FIRST_CLIENT).len() >= 30 && from(events, SECOND_CLIENT).len() >= 5
    });
    assert_eq!(from(&events, FIRST_CLIENT).len(), 30, "the burst, limited");
    assert_eq!(
        from(&events, SECOND_CLIENT).len(),
        5,
        "another client, unaffected"
    );
    assert!(events.iter().all(|event| int(event, SUPPRESSED).is_none()));

    // Refused again until the limit lets one through: it carries the 10, plus the refusals
    // suppressed while waiting.
    let mut waiting = 0;
    let reported = service.runtime.block_on(support::wait_until(
        "the first client's next event",
        DEADLINE,
        || {
            waiting += 1;
            let status = request_from(FIRST_CLIENT, service.address, "/admin", &[]);
            let receiver = &service.receiver;
            async move {
                assert_eq!(status.await, 401);
                let events = from(&security_events(&receiver.logs()), FIRST_CLIENT);
                match events.iter().find_map(|event| int(event, SUPPRESSED)) {
                    Some(suppressed) => Ok(suppressed),
                    None => Err(format!("{} events", events.len())),
                }
            }
        },
    ));
    assert!(
        (10..10 + waiting).contains(&reported),
        "{reported} suppressed reported, after a burst of 40 and {waiting} refusals while waiting"
    );
    let events = from(&service.events(), FIRST_CLIENT);
    assert_eq!(
        events
            .iter()
            .filter(|event| int(event, SUPPRESSED).is_some())
            .count(),
        1
    );
    service.telemetry.shutdown().unwrap();
}

#[test]
fn switched_off_no_refusal_gives_an_event() {
    let service = Service::start(false, |layer| layer.security_events(false));
    for (path, status) in [("/admin", 401), ("/limited", 429), ("/wp-login.php", 404)] {
        assert_eq!(service.get(FIRST_CLIENT, path, &[]), status, "{path}");
    }
    assert_eq!(
        service.get(FIRST_CLIENT, "/admin", &[("authorization", "Bearer no")]),
        403
    );
    // Logged after them, by the same pipeline: once it is here, they would be too.
    assert_eq!(service.get(FIRST_CLIENT, "/sentinel", &[]), 200);
    let logs = service.runtime.block_on(service.receiver.wait_for_logs(
        "the sentinel",
        DEADLINE,
        |logs| logs.iter().any(|log| log.body_str() == Some("sentinel")),
    ));
    assert_eq!(security_events(&logs).len(), 0);
    service.telemetry.shutdown().unwrap();
}

#[test]
fn the_request_metrics_of_refusals_carry_no_client_address() {
    let service = Service::start(false, |layer| layer);
    for client in [FIRST_CLIENT, SECOND_CLIENT] {
        for (path, status) in [("/admin", 401), ("/limited", 429), ("/wp-login.php", 404)] {
            assert_eq!(
                service.get(client, path, &[("user-agent", "scanner")]),
                status
            );
        }
    }
    service.wait_for_events("the events", |events| events.len() >= 6);
    let metric = service.runtime.block_on(support::wait_for(
        "the refusals' durations",
        DEADLINE,
        || {
            let metric = service
                .receiver
                .latest_metric("http.server.request.duration")?;
            let Some(Data::Histogram(histogram)) = &metric.metric.data else {
                panic!("not a histogram: {metric:?}");
            };
            let count: u64 = histogram.data_points.iter().map(|point| point.count).sum();
            (count == 6).then_some(histogram.data_points.clone())
        },
    ));
    // Three series, one per status, whichever client: the address is nowhere.
    assert_eq!(metric.len(), 3, "{metric:?}");
    for point in &metric {
        for attribute in &point.attributes {
            assert!(
                [
                    "http.request.method",
                    "url.scheme",
                    "http.route",
                    "http.response.status_code",
                    "network.protocol.version",
                    "error.type",
                ]
                .contains(&attribute.key.as_str()),
                "{}",
                attribute.key
            );
            let value = format!("{:?}", attribute.value);
            assert!(!value.contains("127.0.0."), "{value}");
        }
    }
    let addresses: Vec<IpAddr> = service
        .events()
        .iter()
        .filter_map(|event| event.attr_str("client.address")?.parse().ok())
        .collect();
    assert_eq!(addresses.len(), 6, "while the events name them");
    service.telemetry.shutdown().unwrap();
}
