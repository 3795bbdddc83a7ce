//! The fault matrix and the soak (issue 11): the example service under `wrk` while its collector
//! is healthy, absent, a black hole, slow, failing, throttling, restarted or flapping, over gRPC
//! and HTTP/protobuf, then healed.
//!
//! The service exports every signal to a [`FaultInjector`] in front of a real collector (rotel,
//! exporting to its black hole), except that in the `restarted` case the injector stays healthy
//! and rotel itself is killed (SIGKILL) and started again on the same ports. The service also
//! serves its metrics for Prometheus (`OTEL_METRICS_EXPORTER=prometheus,otlp`), so that its own
//! `otel.sdk.*` counters can be read at any time, whatever the collector does.
//!
//! For each case, from the same run: requests that failed (wrk's non-2xx responses and socket
//! errors, time-outs of 2 s included, and those of the trickle that follows the heal: must be 0),
//! p50 and p99, CPU time per request (utime+stime of the service from `/proc`), RSS, open
//! descriptors and threads before and after the load, the spans the service counted as exported,
//! failed and dropped (queue full), which must account for every span it made and agree exactly
//! with the spans the injector saw the collector accept, and the recovery: from the return to
//! health until the first span arrives (under 10 s).
//!
//! Environment (`scripts/fault-bench` sets these for the long form):
//! - `FAULT_BENCH_SECONDS`: seconds of load under each fault (default 3).
//! - `FAULT_BENCH_WARMUP`: seconds of healthy load before each case (default 1).
//! - `FAULT_BENCH_PIN=1`: the service on CPU 0, wrk on CPU 1 (run the tests on CPU 1).
//! - `FAULT_BENCH_OUT`: a directory; each test writes its table there (`<test>.md`).
//! - `FAULT_BENCH_SOAK_MINUTES`: minutes of flapping in the soak (default 2).
//! - `FAULT_BENCH_CASES`: only these cases (comma-separated first words of their names:
//!   `absent,black,slow,failing,throttling,restarted,flapping`; `healthy` always runs).
//! - `EXAMPLE_SERVICE_BIN`: the service binary `support::example` starts; the tests check that
//!   it is the one running.

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::StatusCode;
use support::fault_injector::{FLAP_PERIOD, Fault, FaultInjector, Heal};
use support::{ExampleService, Rotel};

/// The longest recovery allowed: from the return to health to the first span arriving.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);

/// What the service's memory may grow by under a fault, over its healthy run: what its bounded
/// queues hold once full, for the telemetry of this load, plus the allocator's slack.
///
/// - spans: the queue (2,048, `OTEL_BSP_MAX_QUEUE_SIZE`), the batch being exported (512,
///   `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`) and its encoded request: 3,072 span copies at most. A
///   span of `GET /users/42` is a `SpanData` of about 300 bytes with 14 attributes of about 72
///   bytes each and short owned values, 1.5 KiB, rounded up to 2 KiB: 6 MiB;
/// - log records (the access log, one a request): the queue (2,048,
///   `OTEL_BLRP_MAX_QUEUE_SIZE`), a batch (512) and its encoding, 3,072 records of at most 1 KiB
///   (method, path, route, status, duration, trace and span ids): 3 MiB;
/// - metrics: a few series per instrument, each at most a histogram of 15 buckets: under 1 MiB;
/// - the allocator: glibc's per-thread arenas keep some of what the full queues freed: 8 MiB.
///
/// 6 + 3 + 1 + 8 = 18 MiB. (For spans whose five client-controlled attributes, `url.path`,
/// `url.query`, `user_agent.original`, `http.request.method_original` and `server.address`,
/// each hold 2,048 characters of 4 bytes, the default length limit, a span is about 42 KiB and
/// the span queues together 3,072 × 42 KiB = 126 MiB; this load does not make such spans.)
const MEMORY_BOUND_MIB: f64 = 18.0;

/// How much the service's memory may grow from the end of the soak's warm-up to the end of the
/// soak, both read with the queues empty: what glibc's arenas may keep of what the full queues
/// held. A leak of 100 bytes a request over two minutes of this load (about 10^5 requests in a
/// debug build) exceeds it.
const SOAK_MEMORY_BOUND_MIB: f64 = 8.0;

/// How many more descriptors the service may hold after the soak than after its warm-up: one
/// more pooled connection to the collector for each of traces, metrics and logs, and one for a
/// connection being replaced.
const SOAK_DESCRIPTOR_SLACK: i64 = 4;

/// How long a case may take to account for every span after the heal: the batch processor's
/// schedule delay (5 s) plus a whole export timeout (10 s) and margin.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(40);

/// rotel: OTLP in on both transports, everything into its black hole.
const ROTEL_ARGS: [&str; 2] = ["--exporter", "blackhole"];

/// The traced route under load: a request span and its `load_user` child, 2 spans a request.
const ROUTE: &str = "/users/42";
const SPANS_PER_REQUEST: u64 = 2;

/// What happens to the collector during a case's load: a fault the injector plays, or rotel
/// killed (SIGKILL) and started again behind a healthy injector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Injected(Fault),
    Restarted,
}

impl Case {
    const HEALTHY: Case = Case::Injected(Fault::Healthy);

    const ALL: [Case; 8] = [
        Case::HEALTHY,
        Case::Injected(Fault::Absent),
        Case::Injected(Fault::BlackHole),
        Case::Injected(Fault::Slow),
        Case::Injected(Fault::Failing),
        Case::Injected(Fault::Throttling),
        Case::Restarted,
        Case::Injected(Fault::Flapping),
    ];

    fn name(self) -> &'static str {
        match self {
            Case::Injected(Fault::Healthy) => "healthy",
            Case::Injected(Fault::Absent) => "absent",
            Case::Injected(Fault::BlackHole) => "black hole",
            Case::Injected(Fault::Slow) => "slow (5 s)",
            Case::Injected(Fault::Failing) => "failing (503 / UNAVAILABLE)",
            Case::Injected(Fault::Throttling) => "throttling (429 / RESOURCE_EXHAUSTED, 1 s)",
            Case::Restarted => "restarted (rotel SIGKILL)",
            Case::Injected(Fault::Flapping) => "flapping (5 s up / 5 s down)",
        }
    }
}

/// The run's parameters, from the environment (see the module documentation).
struct Settings {
    load: Duration,
    warmup: Duration,
    pin: bool,
    soak: Duration,
}

impl Settings {
    fn from_env() -> Settings {
        let number = |name: &str, default: u64| -> u64 {
            std::env::var(name).map_or(default, |value| {
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("{name}={value:?} is not a whole number"))
            })
        };
        Settings {
            load: Duration::from_secs(number("FAULT_BENCH_SECONDS", 3)),
            warmup: Duration::from_secs(number("FAULT_BENCH_WARMUP", 1)),
            pin: std::env::var("FAULT_BENCH_PIN").is_ok_and(|value| value == "1"),
            soak: Duration::from_secs(60 * number("FAULT_BENCH_SOAK_MINUTES", 2)),
        }
    }

    /// The load of a case: flapping gets at least one whole cycle, down and up again.
    fn load_of(&self, case: Case) -> Duration {
        match case {
            Case::Injected(Fault::Flapping) => {
                self.load.max(2 * FLAP_PERIOD + Duration::from_secs(2))
            }
            _ => self.load,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The service, its collector and the injector between them.
// ---------------------------------------------------------------------------------------------

/// The example service exporting to a fault injector in front of rotel.
struct Rig {
    rotel: Option<Rotel>,
    /// rotel's gRPC and HTTP addresses, kept when it is restarted.
    rotel_addrs: (SocketAddr, SocketAddr),
    injector: FaultInjector,
    service: ExampleService,
}

impl Rig {
    async fn start(protocol: &str, settings: &Settings) -> Rig {
        let rotel = Rotel::start_with_args(&ROTEL_ARGS);
        let addr = |endpoint: String| -> SocketAddr {
            endpoint
                .trim_start_matches("http://")
                .parse()
                .expect("rotel's address")
        };
        let rotel_addrs = (addr(rotel.grpc_endpoint()), addr(rotel.http_endpoint()));
        let injector = FaultInjector::start(&rotel.grpc_endpoint(), &rotel.http_endpoint()).await;
        // The SDK's batching defaults, as users run it (schedule delays of 5 s for spans and 1 s
        // for log records), and metrics pushed every second so that they too meet the fault.
        let service = ExampleService::start_unsetting(
            &["OTEL_BSP_SCHEDULE_DELAY", "OTEL_BLRP_SCHEDULE_DELAY"],
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
                ("OTEL_EXPORTER_OTLP_ENDPOINT", &injector.endpoint(protocol)),
                ("OTEL_METRICS_EXPORTER", "prometheus,otlp"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
            ],
        );
        if let Some(binary) = std::env::var_os("EXAMPLE_SERVICE_BIN") {
            // The long form measures that build: make sure it is the one running.
            let running = std::fs::read_link(format!("/proc/{}/exe", service.pid()))
                .expect("/proc/PID/exe of the service");
            assert_eq!(
                running,
                std::fs::canonicalize(&binary).expect("EXAMPLE_SERVICE_BIN names no file"),
                "the service started is not EXAMPLE_SERVICE_BIN"
            );
        }
        if settings.pin {
            pin(service.pid(), "0");
        }
        Rig {
            rotel: Some(rotel),
            rotel_addrs,
            injector,
            service,
        }
    }

    fn pid(&self) -> u32 {
        self.service.pid()
    }

    /// Kills rotel with SIGKILL, as a crash or the OOM killer does.
    fn kill_collector(&mut self) {
        let rotel = self.rotel.take().expect("rotel is running");
        let status = Command::new("kill")
            .args(["-KILL", &rotel.pid().to_string()])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -KILL {} failed", rotel.pid());
        // Reaps it (the SIGTERM its drop sends finds it gone).
        drop(rotel);
    }

    /// Starts rotel again on the ports it had, and tells the injector that health is back.
    fn restart_collector(&mut self) {
        let addrs = self.rotel_addrs;
        let mut attempts = 0;
        let rotel = Rotel::start_picking_ports(
            || {
                // A port of the killed process that is not free yet gets a moment.
                attempts += 1;
                if attempts > 1 {
                    std::thread::sleep(Duration::from_millis(200));
                }
                addrs
            },
            &[],
            &ROTEL_ARGS,
        );
        self.injector.note_heal();
        self.rotel = Some(rotel);
    }

    async fn scrape(&self) -> Counters {
        let (status, _, body) = support::client::get(&self.service.url("/metrics"), &[]).await;
        assert_eq!(status, StatusCode::OK, "GET /metrics");
        Counters::parse(&String::from_utf8_lossy(&body))
    }
}

/// Pins every thread of process `pid` to `cpus` (as `taskset -c` takes them); threads it starts
/// later inherit it.
fn pin(pid: u32, cpus: &str) {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &pid.to_string()])
        .stdout(Stdio::null())
        .status()
        .expect("cannot run taskset");
    assert!(status.success(), "taskset -a -p -c {cpus} {pid} failed");
}

// ---------------------------------------------------------------------------------------------
// What is measured.
// ---------------------------------------------------------------------------------------------

/// The service's own counters, from its `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    /// `otel.sdk.exporter.span.exported` without `error.type`: delivered.
    exported: u64,
    /// `otel.sdk.exporter.span.exported` with an `error.type`: lost in a failed export.
    failed: u64,
    /// `otel.sdk.processor.span.processed` without `error.type`: taken from the queue to export.
    taken: u64,
    /// `otel.sdk.processor.span.processed` with `error.type` (`queue_full`): dropped.
    dropped: u64,
    /// `http.server.request.duration` observations of the route under load: requests served.
    served: u64,
}

impl Counters {
    /// Reads the counters from the Prometheus text format.
    fn parse(text: &str) -> Counters {
        let mut counters = Counters::default();
        for line in text.lines().filter(|line| !line.starts_with('#')) {
            let Some((series, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            let value = value as u64;
            let lost = labels.contains("error_type=");
            match name {
                "otel_sdk_exporter_span_exported_total" if lost => counters.failed += value,
                "otel_sdk_exporter_span_exported_total" => counters.exported += value,
                "otel_sdk_processor_span_processed_total" if lost => counters.dropped += value,
                "otel_sdk_processor_span_processed_total" => counters.taken += value,
                "http_server_request_duration_seconds_count"
                    if labels.contains(r#"http_route="/users/{id}""#) =>
                {
                    counters.served += value;
                }
                _ => {}
            }
        }
        counters
    }

    /// Whether every span made is accounted for: dropped, or taken and then delivered or lost.
    fn settled(&self) -> bool {
        self.served * SPANS_PER_REQUEST == self.taken + self.dropped
            && self.taken == self.exported + self.failed
    }
}

/// A process's resources, from `/proc`.
#[derive(Clone, Copy, Debug)]
struct Resources {
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    rss_kib: u64,
    descriptors: i64,
    threads: i64,
}

impl Resources {
    fn of(pid: u32) -> Resources {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
        // `pid (comm) state ...`: utime and stime are the 12th and 13th fields after `comm`.
        let fields: Vec<&str> = stat
            .rsplit_once(") ")
            .expect("a stat line")
            .1
            .split_whitespace()
            .collect();
        let ticks = |index: usize| -> u64 { fields[index].parse().expect("a tick count") };
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/PID/status");
        let field = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|value| value.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
        };
        let descriptors = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("/proc/PID/fd")
            .count();
        Resources {
            cpu_ticks: ticks(11) + ticks(12),
            rss_kib: field("VmRSS:"),
            descriptors: descriptors as i64,
            threads: field("Threads:") as i64,
        }
    }

    fn rss_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0
    }
}

/// The clock ticks per second of `/proc/PID/stat`.
fn clock_ticks_per_second() -> u64 {
    let output = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("cannot run getconf");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("getconf CLK_TCK")
}

/// What wrk measured.
#[derive(Clone, Copy, Debug, Default)]
struct Load {
    requests: u64,
    /// Non-2xx responses and socket errors (connect, read, write, time-out).
    failed: u64,
    p50: Duration,
    p99: Duration,
}

/// `wrk -t1 -c16 -d{seconds}s --latency --timeout 2s url`, on CPU 1 when pinned.
///
/// # Panics
/// When wrk is missing (saying how to install it) or its output cannot be read.
async fn wrk(url: &str, duration: Duration, pin: bool) -> Load {
    let mut command = if pin {
        let mut command = Command::new("taskset");
        command.args(["-c", "1", "wrk"]);
        command
    } else {
        Command::new("wrk")
    };
    command.args([
        "-t1",
        "-c16",
        &format!("-d{}s", duration.as_secs()),
        "--latency",
        "--timeout",
        "2s",
        url,
    ]);
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the wrk thread")
        .unwrap_or_else(|error| {
            panic!(
                "cannot run wrk ({error}): install it with `apt-get install -y \
                 --no-install-recommends wrk` (scripts/test does)"
            )
        });
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "wrk failed: {text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    parse_wrk(&text)
}

fn parse_wrk(text: &str) -> Load {
    let number_before = |marker: &str| -> Option<u64> {
        let before = &text[..text.find(marker)?];
        before.split_whitespace().last()?.parse().ok()
    };
    let requests =
        number_before(" requests in ").unwrap_or_else(|| panic!("no request count in:\n{text}"));
    let mut failed = 0;
    if let Some(line) = text.lines().find(|line| line.contains("Socket errors:")) {
        failed += line
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse::<u64>().ok())
            .sum::<u64>();
    }
    if let Some(line) = text
        .lines()
        .find(|line| line.contains("Non-2xx or 3xx responses:"))
    {
        failed += line
            .rsplit(' ')
            .next()
            .and_then(|n| n.trim().parse::<u64>().ok())
            .unwrap_or_else(|| panic!("unreadable: {line}"));
    }
    let percentile = |label: &str| -> Duration {
        let value = text
            .lines()
            .find_map(|line| line.trim().strip_prefix(label))
            .map(str::trim)
            .unwrap_or_else(|| panic!("no {label} percentile in:\n{text}"));
        let (number, unit) = value.split_at(
            value
                .find(|c: char| c.is_alphabetic())
                .unwrap_or(value.len()),
        );
        let number: f64 = number
            .parse()
            .unwrap_or_else(|_| panic!("unreadable latency {value}"));
        let seconds = match unit {
            "us" => number / 1e6,
            "ms" => number / 1e3,
            "s" => number,
            "m" => number * 60.0,
            _ => panic!("unknown latency unit in {value}"),
        };
        Duration::from_secs_f64(seconds)
    };
    Load {
        requests,
        failed,
        p50: percentile("50%"),
        p99: percentile("99%"),
    }
}

// ---------------------------------------------------------------------------------------------
// A case: warm-up, the fault under load, the heal.
// ---------------------------------------------------------------------------------------------

/// One case, measured.
struct Outcome {
    case: Case,
    protocol: &'static str,
    /// The load under the fault.
    load: Load,
    /// Every request that failed: warm-up, load and the trickle after the heal.
    failed: u64,
    /// Service CPU time per request under the fault.
    cpu_per_request: Duration,
    /// Before and after the load under the fault.
    start: Resources,
    end: Resources,
    /// The service's counters once every span is accounted for.
    spans: Counters,
    /// The spans the injector saw the collector accept.
    received: u64,
    heals: Vec<Heal>,
}

async fn run_case(protocol: &'static str, case: Case, settings: &Settings) -> Outcome {
    let mut rig = Rig::start(protocol, settings).await;
    let url = rig.service.url(ROUTE);
    let warmup = wrk(&url, settings.warmup, settings.pin).await;
    let start = Resources::of(rig.pid());
    match case {
        Case::Injected(fault) => rig.injector.set(fault).await,
        Case::Restarted => rig.kill_collector(),
    }
    let load = wrk(&url, settings.load_of(case), settings.pin).await;
    let end = Resources::of(rig.pid());
    let mut trickle_failed = 0;
    if case != Case::HEALTHY {
        match case {
            Case::Injected(_) => rig.injector.set(Fault::Healthy).await,
            Case::Restarted => rig.restart_collector(),
        }
        trickle_failed = trickle_until_recovered(&rig, &url).await;
    }
    let spans = settle(&rig).await;
    let ticks = (end.cpu_ticks - start.cpu_ticks) as f64 / clock_ticks_per_second() as f64;
    Outcome {
        case,
        protocol,
        load,
        failed: warmup.failed + load.failed + trickle_failed,
        cpu_per_request: Duration::from_secs_f64(ticks / load.requests.max(1) as f64),
        start,
        end,
        spans,
        received: rig.injector.accepted_spans(),
        heals: rig.injector.heals(),
    }
}

/// Requests the route one at a time, 20 ms apart, until the first span arrives after the last
/// return to health (or [`RECOVERY_BOUND`] and 20 s more have passed, so that a slow recovery
/// is still measured). Returns how many requests did not answer 200.
async fn trickle_until_recovered(rig: &Rig, url: &str) -> u64 {
    let deadline = Instant::now() + RECOVERY_BOUND + Duration::from_secs(20);
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    let mut failed = 0;
    while Instant::now() < deadline {
        let recovered = rig
            .injector
            .heals()
            .last()
            .is_some_and(|heal| heal.first_span.is_some());
        if recovered {
            break;
        }
        pace.tick().await;
        let (status, _, _) = support::client::get(url, &[]).await;
        if status != StatusCode::OK {
            failed += 1;
        }
    }
    failed
}

/// Waits until the service has accounted for every span it made (dropped, delivered or lost),
/// and returns its counters.
async fn settle(rig: &Rig) -> Counters {
    support::wait_until(
        "every span made to be accounted for",
        FLUSH_TIMEOUT,
        || async {
            let counters = rig.scrape().await;
            if counters.settled() {
                Ok(counters)
            } else {
                Err(format!("{counters:?}"))
            }
        },
    )
    .await
}

impl Outcome {
    fn what(&self) -> String {
        format!("{} over {}", self.case.name(), self.protocol)
    }

    /// The longest recovery, and whether every return to health saw a span.
    fn recovery(&self) -> (Option<Duration>, bool) {
        let longest = self.heals.iter().filter_map(Heal::recovery).max();
        (
            longest,
            self.heals.iter().all(|heal| heal.first_span.is_some()),
        )
    }

    /// The Markdown row of this case; `healthy` is the healthy run of the same protocol.
    fn row(&self, healthy: &Outcome) -> String {
        let ms = |d: Duration| format!("{:.2}", d.as_secs_f64() * 1e3);
        let ratio = |d: Duration, base: Duration| {
            format!("{:.2}×", d.as_secs_f64() / base.as_secs_f64().max(1e-9))
        };
        let recovery = match (self.case, self.recovery()) {
            (Case::HEALTHY, _) => "—".to_owned(),
            (_, (Some(longest), true)) if self.heals.len() > 1 => format!(
                "{:.2} (longest of {})",
                longest.as_secs_f64(),
                self.heals.len()
            ),
            (_, (Some(longest), true)) => format!("{:.2}", longest.as_secs_f64()),
            _ => "none within the bound".to_owned(),
        };
        format!(
            "| {} | {} | {} | {} | {} ({}) | {} ({}) | {:.1} | {:.1} → {:.1} | {} → {} | {} → {} | {} / {} / {} | {} | {} |",
            self.case.name(),
            self.protocol,
            self.load.requests,
            self.failed,
            ms(self.load.p50),
            ratio(self.load.p50, healthy.load.p50),
            ms(self.load.p99),
            ratio(self.load.p99, healthy.load.p99),
            self.cpu_per_request.as_secs_f64() * 1e6,
            self.start.rss_mib(),
            self.end.rss_mib(),
            self.start.descriptors,
            self.end.descriptors,
            self.start.threads,
            self.end.threads,
            self.spans.exported,
            self.spans.failed,
            self.spans.dropped,
            self.received,
            recovery,
        )
    }

    /// What every case must show.
    ///
    /// # Panics
    /// When a request failed, the service's count of delivered spans differs from the
    /// collector's, a fault cost no span (it was not injected), a recovery took 10 s or more,
    /// or the memory grew past [`MEMORY_BOUND_MIB`] over the healthy run.
    fn check(&self, healthy: &Outcome) {
        let what = self.what();
        assert_eq!(self.failed, 0, "{what}: requests failed");
        assert_eq!(
            self.spans.exported, self.received,
            "{what}: the service counted {} spans exported, the collector accepted {}",
            self.spans.exported, self.received
        );
        if self.case == Case::HEALTHY {
            assert_eq!(self.spans.failed, 0, "{what}: exports failed");
        } else {
            assert!(
                self.spans.failed + self.spans.dropped > 0,
                "{what}: the fault cost no span, so it was not injected: {:?}",
                self.spans
            );
            let (longest, all) = self.recovery();
            assert!(
                all,
                "{what}: a return to health saw no span: {:?}",
                self.heals
            );
            let longest = longest.expect("every heal recovered");
            assert!(
                longest < RECOVERY_BOUND,
                "{what}: the first span came {longest:?} after the return to health"
            );
        }
        let growth = self.end.rss_mib() - healthy.end.rss_mib();
        assert!(
            growth < MEMORY_BOUND_MIB,
            "{what}: RSS {:.1} MiB, {growth:.1} MiB over the healthy run's {:.1} MiB (bound {MEMORY_BOUND_MIB} MiB)",
            self.end.rss_mib(),
            healthy.end.rss_mib()
        );
    }
}

const TABLE_HEADER: &str = "| case | protocol | requests | failed | p50 ms (vs healthy) | p99 ms (vs healthy) | CPU µs/request | RSS MiB start → end | fds start → end | threads start → end | spans exported / failed / dropped | spans received | recovery s |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|";

/// Writes `table` to stderr and, with `FAULT_BENCH_OUT`, to `<dir>/<name>.md`.
fn publish(name: &str, table: &str) {
    eprintln!("{table}");
    if let Some(dir) = std::env::var_os("FAULT_BENCH_OUT") {
        let dir = std::path::PathBuf::from(dir);
        std::fs::create_dir_all(&dir).expect("create FAULT_BENCH_OUT");
        std::fs::write(dir.join(format!("{name}.md")), table).expect("write the table");
    }
}

/// The cases to run: `FAULT_BENCH_CASES` (comma-separated names as in the table's first word,
/// e.g. `absent,flapping`; `healthy` is always run, the others compare with it), else all.
fn cases() -> Vec<Case> {
    let Ok(wanted) = std::env::var("FAULT_BENCH_CASES") else {
        return Case::ALL.to_vec();
    };
    let wanted: Vec<&str> = wanted.split(',').map(str::trim).collect();
    Case::ALL
        .into_iter()
        .filter(|case| {
            let first = case.name().split(' ').next().unwrap_or_default();
            *case == Case::HEALTHY || wanted.contains(&first) || wanted.contains(&case.name())
        })
        .collect()
}

async fn matrix(protocol: &'static str) {
    let settings = Settings::from_env();
    let mut outcomes = Vec::new();
    for case in cases() {
        outcomes.push(run_case(protocol, case, &settings).await);
    }
    let healthy = &outcomes[0];
    let rows: Vec<String> = outcomes
        .iter()
        .map(|outcome| outcome.row(healthy))
        .collect();
    publish(
        &format!("matrix-{}", protocol.replace('/', "-")),
        &format!("{TABLE_HEADER}\n{}\n", rows.join("\n")),
    );
    // After the table, so that a failure still shows every figure.
    for outcome in &outcomes {
        outcome.check(healthy);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_over_grpc_fails_no_request_counts_every_span_and_recovers_within_10_s() {
    matrix("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_over_http_protobuf_fails_no_request_counts_every_span_and_recovers_within_10_s()
 {
    matrix("http/protobuf").await;
}

// ---------------------------------------------------------------------------------------------
// The soak: flapping for minutes.
// ---------------------------------------------------------------------------------------------

/// Healthy load before the soak's reference readings: long enough for every pool, cache and
/// arena the service fills under load to reach its size.
const SOAK_WARMUP: Duration = Duration::from_secs(10);

async fn soak(protocol: &'static str) {
    let settings = Settings::from_env();
    let rig = Rig::start(protocol, &settings).await;
    let url = rig.service.url(ROUTE);
    let warmup = wrk(&url, SOAK_WARMUP, settings.pin).await;
    // Both readings with every span accounted for: the queues empty, wrk's connections closed.
    settle(&rig).await;
    let after_warmup = Resources::of(rig.pid());
    rig.injector.set(Fault::Flapping).await;
    let load = wrk(&url, settings.soak, settings.pin).await;
    rig.injector.set(Fault::Healthy).await;
    let trickle_failed = trickle_until_recovered(&rig, &url).await;
    let spans = settle(&rig).await;
    let end = Resources::of(rig.pid());
    let received = rig.injector.accepted_spans();
    let heals = rig.injector.heals();
    let longest = heals.iter().filter_map(Heal::recovery).max();
    publish(
        &format!("soak-{}", protocol.replace('/', "-")),
        &format!(
            "| soak | protocol | minutes | requests | failed | p50 ms | p99 ms | RSS MiB after warm-up → end | fds after warm-up → end | threads after warm-up → end | spans exported / failed / dropped | spans received | returns to health | longest recovery s |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n\
             | flapping | {protocol} | {} | {} | {} | {:.2} | {:.2} | {:.1} → {:.1} | {} → {} | {} → {} | {} / {} / {} | {received} | {} | {} |\n",
            settings.soak.as_secs() / 60,
            load.requests,
            warmup.failed + load.failed + trickle_failed,
            load.p50.as_secs_f64() * 1e3,
            load.p99.as_secs_f64() * 1e3,
            after_warmup.rss_mib(),
            end.rss_mib(),
            after_warmup.descriptors,
            end.descriptors,
            after_warmup.threads,
            end.threads,
            spans.exported,
            spans.failed,
            spans.dropped,
            heals.len(),
            longest.map_or("none".to_owned(), |d| format!("{:.2}", d.as_secs_f64())),
        ),
    );

    assert_eq!(
        warmup.failed + load.failed + trickle_failed,
        0,
        "requests failed"
    );
    assert_eq!(
        spans.exported, received,
        "exported spans against the collector's count"
    );
    assert!(
        heals.iter().all(|heal| heal.first_span.is_some()),
        "a return to health saw no span: {heals:?}"
    );
    let longest = longest.expect("at least one return to health");
    assert!(longest < RECOVERY_BOUND, "a recovery took {longest:?}");
    let growth = end.rss_mib() - after_warmup.rss_mib();
    assert!(
        growth < SOAK_MEMORY_BOUND_MIB,
        "RSS grew by {growth:.1} MiB (bound {SOAK_MEMORY_BOUND_MIB} MiB)"
    );
    assert!(
        end.descriptors <= after_warmup.descriptors + SOAK_DESCRIPTOR_SLACK,
        "descriptors: {} after warm-up, {} at the end",
        after_warmup.descriptors,
        end.descriptors
    );
    assert_eq!(
        end.threads, after_warmup.threads,
        "threads after warm-up and at the end"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_soak_over_grpc_fails_no_request_and_leaks_no_memory_descriptor_or_thread() {
    soak("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flapping_soak_over_http_protobuf_fails_no_request_and_leaks_no_memory_descriptor_or_thread()
 {
    soak("http/protobuf").await;
}
