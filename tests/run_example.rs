//! The README's first command, `scripts/run-example`, run as a newcomer runs it: nothing
//! configured, a local collector started by the script, a `collector |` line for what arrives,
//! and Ctrl-C (SIGINT to the foreground process group) flushing the last request's telemetry.
//!
//! The script's collector listens on the well-known ports 127.0.0.1:4317 and 4318, so this test is
//! in the nextest group `well-known-ports` (`.config/nextest.toml`): one such test at a time.

mod support;

use std::{
    io::{BufRead, BufReader, Read},
    net::{SocketAddr, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use support::{OtlpReceiver, client::get, wait_for};

const DEADLINE: Duration = Duration::from_secs(60);

/// `scripts/run-example` in its own process group, as a shell runs a foreground job.
struct RunExample {
    child: Child,
    output: Arc<Mutex<String>>,
}

impl RunExample {
    /// Runs the script with nothing configured but `env`.
    fn start(env: &[(&str, &str)]) -> Self {
        use std::os::unix::process::CommandExt;
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(root.join("scripts/run-example"))
            .current_dir(&root)
            // Nothing configured, as on a fresh machine; the service on a free port.
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .env_remove("OTEL_TRACES_EXPORTER")
            .env_remove("OTEL_METRICS_EXPORTER")
            .env_remove("OTEL_LOGS_EXPORTER")
            .env_remove("RUST_LOG")
            .env("LISTEN_ADDR", "127.0.0.1:0")
            .envs(env.iter().copied())
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run scripts/run-example");
        let output = Arc::new(Mutex::new(String::new()));
        for pipe in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut output = output.lock().unwrap();
                    output.push_str(&line);
                    output.push('\n');
                }
            });
        }
        RunExample { child, output }
    }

    /// The service's base URL, once it listens.
    async fn service_url(&self) -> String {
        let line = self.wait_for_line(&["listening on http://"]).await;
        let address = line.split("listening on http://").nth(1).unwrap().trim();
        format!("http://{address}")
    }

    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Waits until the output has a line containing every one of `parts`, and returns it.
    async fn wait_for_line(&self, parts: &[&str]) -> String {
        wait_for(&format!("a line with {parts:?}"), DEADLINE, || {
            self.output()
                .lines()
                .find(|line| parts.iter().all(|part| line.contains(part)))
                .map(str::to_owned)
        })
        .await
    }

    /// Ctrl-C, and the script's exit within 10 s.
    async fn stop(mut self) -> std::process::ExitStatus {
        self.interrupt();
        let interrupted = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                interrupted.elapsed() < Duration::from_secs(10),
                "scripts/run-example still runs 10 s after Ctrl-C:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ctrl-C: SIGINT to the whole process group, as a terminal sends it.
    fn interrupt(&self) {
        let group = format!("-{}", self.child.id());
        let status = Command::new("kill")
            .args(["-INT", "--", &group])
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -INT -- {group} failed");
    }
}

impl Drop for RunExample {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
}

fn collector_log() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/example/collector.log");
    std::fs::read_to_string(&path).unwrap_or_default()
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn run_example_shows_telemetry_arriving_at_a_local_collector_and_ctrl_c_flushes_it() {
    assert!(
        !port_open(4318) && !port_open(4317),
        "something already listens on 127.0.0.1:4317/4318: the script would export to it"
    );
    let script = RunExample::start(&[]);

    let base = script.service_url().await;
    let url = |path: &str| format!("{base}{path}");
    let banner = script
        .wait_for_line(&["Collector: rotel on 127.0.0.1:4318"])
        .await;
    assert!(banner.contains(":4317 (gRPC)"), "{banner}");
    assert!(
        script
            .output()
            .contains("full dump: target/example/collector.log"),
        "{}",
        script.output()
    );

    let (status, _, _) = get(&url("/users/42"), &[]).await;
    assert_eq!(status, 200);
    let (status, _, _) = get(&url("/users/abc"), &[]).await;
    assert_eq!(status, 400);
    let (status, _, _) = get(&url("/error"), &[]).await;
    assert_eq!(status, 500);
    let started = Instant::now();
    let (status, _, body) = get(&url("/stream?chunks=3&ms=100"), &[]).await;
    assert_eq!(status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "three chunks 100 ms apart"
    );
    assert!(!body.is_empty());
    let (status, _, _) = get(&url("/health"), &[]).await;
    assert_eq!(status, 200);

    // One `collector |` line per span, log record and metric export, as the README shows them.
    let user = script
        .wait_for_line(&[
            "collector | span",
            "GET /users/{id}",
            "SERVER",
            "status UNSET",
        ])
        .await;
    assert!(user.contains(" ms "), "{user}");
    script
        .wait_for_line(&["collector | span", "GET /error", "SERVER", "status ERROR"])
        .await;
    script
        .wait_for_line(&["collector | log", "WARN", "the user id is not a number"])
        .await;
    // The span of a streamed response lasts until its last chunk (200 ms at least).
    let stream = script
        .wait_for_line(&["collector | span", "GET /stream", "SERVER"])
        .await;
    let ms: f64 = stream
        .split_whitespace()
        .skip_while(|word| *word != "SERVER")
        .nth(1)
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {stream:?}"));
    assert!(ms >= 200.0, "the /stream span lasted {ms} ms: {stream}");
    script
        .wait_for_line(&["collector | metrics export #1"])
        .await;
    script
        .wait_for_line(&["collector |   new metric http.server.request.duration"])
        .await;
    assert!(
        collector_log().contains("http.server.request.duration"),
        "the full dump is in target/example/collector.log"
    );

    // Ctrl-C right after a request: its span is still in the batch (1 s delay in the script), so
    // it reaches the collector only through the flush at shutdown.
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_id}-00f067aa0ba902b7-01");
    let (status, _, _) = get(&url("/users/7"), &[("traceparent", &traceparent)]).await;
    assert_eq!(status, 200);
    let output = script.output.clone();
    let status = script.stop().await;
    let output = output.lock().unwrap().clone();
    assert!(status.success(), "{status}:\n{output}");
    let log = collector_log();
    assert!(
        log.contains(trace_id),
        "the last request's span was not flushed at Ctrl-C:\n{output}"
    );
    assert!(!log.contains("GET /health"), "/health is not traced");
    // The collector stops with the script.
    wait_for(
        "the collector's ports to close",
        Duration::from_secs(10),
        || (!port_open(4318) && !port_open(4317)).then_some(()),
    )
    .await;
    for trouble in [
        "cannot export",
        "panicked",
        "AfterShutdown",
        "error sending request",
    ] {
        assert!(
            !output.contains(trouble),
            "a newcomer's run shows no export trouble ({trouble}):\n{output}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_example_exports_to_the_configured_collector_instead_of_starting_one() {
    let receiver = OtlpReceiver::start().await;
    let endpoint = receiver.http_endpoint();
    let script = RunExample::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]);
    script
        .wait_for_line(&["Exporting to your collector at", &endpoint])
        .await;
    let base = script.service_url().await;
    let (status, _, _) = get(&format!("{base}/users/42"), &[]).await;
    assert_eq!(status, 200);
    receiver
        .wait_for_spans(
            "the request's span at the configured collector",
            DEADLINE,
            |spans| spans.iter().any(|span| span.span.name == "GET /users/{id}"),
        )
        .await;
    let output = script.output.clone();
    let status = script.stop().await;
    let output = output.lock().unwrap().clone();
    assert!(status.success(), "{status}:\n{output}");
    assert!(
        !output.contains("Collector: rotel"),
        "no collector of its own:\n{output}"
    );
}
