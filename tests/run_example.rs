//! The README's first command, `scripts/run-example`, run as a newcomer runs it: nothing
//! configured, a local collector started by the script, a `collector |` line for what arrives,
//! and Ctrl-C (SIGINT to the foreground process group) flushing the last request's telemetry;
//! and, where rotel cannot be installed, the same script printing the telemetry on the console.
//!
//! The script's collector listens on the well-known ports 127.0.0.1:4317 and 4318, so this test is
//! in the nextest group `well-known-ports` (`.config/nextest.toml`): one such test at a time.

mod support;

use std::{
    io::{BufRead, BufReader, Read},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
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
        Self::start_in(&PathBuf::from(env!("CARGO_MANIFEST_DIR")), env)
    }

    /// Runs `root`'s `scripts/run-example` from `root`, with nothing configured but `env`.
    fn start_in(root: &Path, env: &[(&str, &str)]) -> Self {
        use std::os::unix::process::CommandExt;
        let mut child = Command::new(root.join("scripts/run-example"))
            .current_dir(root)
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
    let (status, _, _) = get(&url("/admin"), &[]).await;
    assert_eq!(status, 401);

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
    // The security event of the 401, with its event name, in the request's trace.
    let refusal = script
        .wait_for_line(&[
            "collector | log",
            "WARN",
            "401 Unauthorized: GET /admin from 127.0.0.1",
            "event otel_monitor.http.server.refusal",
        ])
        .await;
    let admin = script
        .wait_for_line(&["collector | span", "GET /admin", "SERVER"])
        .await;
    let trace_of = |line: &str| {
        let rest = line.split(" trace ").nth(1);
        rest.and_then(|rest| rest.get(..16))
            .unwrap_or_else(|| panic!("no trace id in {line:?}"))
            .to_owned()
    };
    assert_eq!(trace_of(&refusal), trace_of(&admin), "{refusal}\n{admin}");
    // The service's console shows it too.
    script
        .wait_for_line(&[
            "WARN otel_monitor::security: 401 Unauthorized: GET /admin from 127.0.0.1",
            "client.address=127.0.0.1",
            "trace_id=",
        ])
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
    // `/chain/2` is one trace the lines show as a tree: SERVER > CLIENT > SERVER > CLIENT >
    // SERVER, each span's parent the one before it.
    let (status, _, _) = get(&url("/chain/2"), &[]).await;
    assert_eq!(status, 200);
    let chain = wait_for("the five spans of /chain/2", DEADLINE, || {
        let lines: Vec<String> = script
            .output()
            .lines()
            .filter(|line| line.contains("collector | span") && line.contains("GET /chain/{depth}"))
            .map(str::to_owned)
            .collect();
        (lines.len() >= 5).then_some(lines)
    })
    .await;
    // The word after the last `name` (`collector | span` starts each line).
    let field = |line: &str, name: &str| -> String {
        let words: Vec<&str> = line.split_whitespace().collect();
        words
            .iter()
            .rposition(|word| *word == name)
            .and_then(|at| words.get(at + 1))
            .unwrap_or_else(|| panic!("no {name} in {line:?}"))
            .to_string()
    };
    let kind = |line: &str| {
        ["SERVER", "CLIENT"]
            .into_iter()
            .find(|kind| line.contains(kind))
    };
    let mut parent = "-".to_owned();
    for expected in ["SERVER", "CLIENT", "SERVER", "CLIENT", "SERVER"] {
        let line = chain
            .iter()
            .find(|line| field(line, "parent") == parent)
            .unwrap_or_else(|| panic!("no span under {parent}:\n{}", chain.join("\n")));
        assert_eq!(kind(line), Some(expected), "{line}");
        assert_eq!(field(line, "trace"), field(&chain[0], "trace"), "{line}");
        parent = field(line, "span");
    }
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

/// A stand-in for the repository on a machine where rotel cannot be installed: the real
/// `scripts/run-example` (a symlink, so the script's `cd "$(dirname ...)/.."` lands here), a
/// `scripts/install-rotel` that fails as it does without PyPI, and `target` linked to the
/// repository's, so the script runs the repository's `target/debug/examples/service`.
///
/// The script's `cargo build` goes through a `cargo` first on `PATH` that runs the real cargo in
/// the repository itself. Building in this directory instead, from symlinked sources, is a new
/// package path to cargo: it compiles otel-monitor again for every temporary directory (a build of
/// the library alone from such a directory took 77 s on the 2-core machine, with the example still
/// to build and link), leaves that copy in `target`, and replaces the
/// `target/debug/examples/service` that other tests run.
struct CheckoutWithoutRotel {
    root: PathBuf,
}

impl CheckoutWithoutRotel {
    fn new() -> Self {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let repository = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| repository.join("target"));
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let root = std::env::temp_dir().join(format!(
            "otel-monitor-no-rotel-{}-{nanos}",
            std::process::id()
        ));
        let checkout = CheckoutWithoutRotel { root };
        let root = &checkout.root;
        std::fs::create_dir_all(root.join("scripts")).unwrap();
        std::fs::create_dir_all(root.join("bin")).unwrap();
        symlink(
            repository.join("scripts/run-example"),
            root.join("scripts/run-example"),
        )
        .unwrap();
        symlink(&target, root.join("target")).unwrap();
        let executable = |path: PathBuf, text: String| {
            std::fs::write(&path, text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        executable(
            root.join("scripts/install-rotel"),
            "#!/bin/sh\necho 'install-rotel: pip cannot reach PyPI' >&2\nexit 1\n".to_owned(),
        );
        executable(
            root.join("bin/cargo"),
            format!(
                "#!/bin/sh\ncd '{}' && exec '{}' \"$@\"\n",
                repository.display(),
                env!("CARGO")
            ),
        );
        // Built beforehand, with the script's own command, so that the script's build is quick
        // and its output is waited for within the usual deadline.
        let status = Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--all-features", "--example", "service"])
            .current_dir(&repository)
            .status()
            .expect("cannot run cargo to build the example");
        assert!(status.success(), "the example service does not build");
        checkout
    }

    /// `PATH` with this checkout's `cargo` first.
    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.root.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

impl Drop for CheckoutWithoutRotel {
    fn drop(&mut self) {
        // Removes the symlinks, not what they point to.
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn run_example_prints_every_signal_on_the_console_and_starts_no_collector_when_rotel_cannot_be_installed()
 {
    assert!(
        !port_open(4318) && !port_open(4317),
        "something already listens on 127.0.0.1:4317/4318: the script would export to it"
    );
    let checkout = CheckoutWithoutRotel::new();
    let script = RunExample::start_in(&checkout.root, &[("PATH", &checkout.path())]);
    script
        .wait_for_line(&[
            "rotel could not be installed (is PyPI reachable?): printing telemetry on the console.",
        ])
        .await;
    script
        .wait_for_line(&[
            "telemetry pipeline ready",
            "traces=console (stdout) metrics=console (stdout) logs=console (stdout)",
        ])
        .await;
    let base = script.service_url().await;
    assert!(
        !port_open(4318) && !port_open(4317),
        "no collector is started:\n{}",
        script.output()
    );

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{trace_id}-b7ad6b7169203331-01");
    let (status, _, _) = get(
        &format!("{base}/users/42"),
        &[("traceparent", &traceparent)],
    )
    .await;
    assert_eq!(status, 200);
    // The console exporter's record of the request's span: its name, then this request's trace.
    wait_for(
        "the request's span printed by the console exporter",
        DEADLINE,
        || {
            let output = script.output();
            let lines: Vec<&str> = output.lines().map(str::trim).collect();
            lines
                .windows(2)
                .any(|pair| {
                    pair == [
                        "Name         : GET /users/{id}",
                        &format!("TraceId      : {trace_id}"),
                    ]
                })
                .then_some(())
        },
    )
    .await;

    let output = script.output.clone();
    let status = script.stop().await;
    let output = output.lock().unwrap().clone();
    assert!(status.success(), "{status}:\n{output}");
    assert!(!output.contains("Collector: rotel"), "{output}");
    assert!(!output.contains("panicked"), "{output}");
    // Every signal is on the console: nothing is sent to a collector that is not there.
    assert!(!output.contains("cannot export"), "{output}");
    // The request's duration is on the console too, at the latest in the flush at Ctrl-C.
    assert!(
        output
            .lines()
            .any(|line| line.trim() == "Name         : http.server.request.duration"),
        "no http.server.request.duration on the console:\n{output}"
    );
}
