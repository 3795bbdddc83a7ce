//! moto, a local server for the AWS APIs (see shared/HARNESS.md), run as a child process, and a
//! small client for its X-Ray API (`GetTraceSummaries`, `BatchGetTraces`).

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::{Request, StatusCode};
use serde_json::{Value, json};

use super::wait::wait_for_blocking;

/// How long moto gets to open its port (it usually takes well under a second).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(20);
/// How many ports moto is tried on before giving up (each lost only to a concurrent bind).
const BIND_ATTEMPTS: usize = 5;

/// A dummy SigV4 `Authorization` header. moto does not check signatures, but its server routes a
/// request to a service by the credential scope (`.../REGION/SERVICE/aws4_request`): an unsigned
/// `POST /Traces` would be taken for S3 and answered 500.
const XRAY_AUTHORIZATION: &str = "AWS4-HMAC-SHA256 \
    Credential=testing/20260101/us-east-1/xray/aws4_request, \
    SignedHeaders=content-type;host, Signature=0";

/// A running `moto_server` on 127.0.0.1; killed when dropped (it keeps everything in memory).
/// If the thread is panicking (a failed test), everything moto printed goes to stderr.
pub struct Moto {
    child: Child,
    addr: SocketAddr,
    log_path: PathBuf,
}

impl Moto {
    /// Starts `moto_server -H 127.0.0.1 -p PORT` on a free port and waits until it serves there.
    ///
    /// moto cannot be told port 0 and report the port it got, so the port is picked here and
    /// released before moto binds it: another process may take it in between. moto then exits
    /// with "Address already in use", and it is started again on a fresh port (up to
    /// [`BIND_ATTEMPTS`] times). The port counts as moto's only once moto itself has written
    /// that it runs there (werkzeug logs `Running on http://127.0.0.1:PORT` after its bind),
    /// so a stranger that won the port is never taken for moto.
    ///
    /// # Panics
    /// When the binary is missing, moto exits early for another reason, or does not serve
    /// within 20 s.
    pub fn start() -> Moto {
        let server = moto_server();
        check_version(&server);
        for attempt in 1..=BIND_ATTEMPTS {
            match Moto::start_on(&server, free_addr()) {
                Ok(moto) => return moto,
                Err(log) if attempt < BIND_ATTEMPTS => {
                    eprintln!("moto_server lost its port to another process, retrying:\n{log}");
                }
                Err(log) => panic!(
                    "moto_server found its port taken {BIND_ATTEMPTS} times in a row:\n{log}"
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// One attempt on `addr`: the running moto, or its log when the port was taken.
    fn start_on(server: &Path, addr: SocketAddr) -> Result<Moto, String> {
        let log_path = new_log_path();
        let log = File::create(&log_path).expect("create moto log file");
        let child = Command::new(server)
            .args(["-H", "127.0.0.1", "-p", &addr.port().to_string()])
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone moto log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("failed to launch {}: {err}", server.display()));
        let mut moto = Moto {
            child,
            addr,
            log_path,
        };
        let running = format!("Running on http://{addr}");
        wait_for_blocking(
            &format!("moto_server to serve on {addr}"),
            STARTUP_TIMEOUT,
            || {
                if let Some(status) = moto.child.try_wait().expect("poll moto_server") {
                    let log = moto.log();
                    if log.contains("Address already in use") {
                        return Some(Err(log));
                    }
                    panic!("moto_server exited early ({status}):\n{log}");
                }
                (moto.log().contains(&running)
                    && TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok())
                .then_some(Ok(()))
            },
        )?;
        Ok(moto)
    }

    /// Like `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Everything moto printed so far (one access-log line per request, and tracebacks).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|err| format!("<cannot read {}: {err}>", self.log_path.display()))
    }

    /// `POST {path}` to moto's X-Ray API with a JSON body, as the AWS SDKs send it (the X-Ray
    /// API is REST-JSON: `/TraceSummaries` is `GetTraceSummaries`, `/Traces` `BatchGetTraces`).
    ///
    /// # Panics
    /// When moto does not answer 200 with JSON.
    pub async fn xray(&self, path: &str, body: &Value) -> Value {
        let request = Request::post(format!("{}{path}", self.endpoint()))
            .header("content-type", "application/json")
            .header("authorization", XRAY_AUTHORIZATION)
            .body(Body::from(body.to_string()))
            .unwrap();
        let (status, _, response) = super::client::send(request).await;
        let text = String::from_utf8_lossy(&response);
        assert_eq!(status, StatusCode::OK, "X-Ray POST {path} {body}: {text}");
        serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("X-Ray POST {path}: not JSON ({err}): {text}"))
    }

    /// `GetTraceSummaries` over the last `window` (and a minute ahead, for clock rounding):
    /// the `TraceSummaries` of every finished trace.
    pub async fn trace_summaries(&self, window: Duration) -> Vec<Value> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let body = json!({
            "StartTime": now - window.as_secs(),
            "EndTime": now + 60,
        });
        let answer = self.xray("/TraceSummaries", &body).await;
        answer["TraceSummaries"]
            .as_array()
            .unwrap_or_else(|| panic!("no TraceSummaries in {answer}"))
            .clone()
    }

    /// `BatchGetTraces`: for each trace moto has, its id and its segment documents, parsed.
    pub async fn traces(&self, trace_ids: &[String]) -> Vec<(String, Vec<Value>)> {
        let answer = self
            .xray("/Traces", &json!({ "TraceIds": trace_ids }))
            .await;
        let traces = answer["Traces"]
            .as_array()
            .unwrap_or_else(|| panic!("no Traces in {answer}"));
        traces
            .iter()
            .map(|trace| {
                let id = trace["Id"].as_str().expect("a trace Id").to_owned();
                let segments = trace["Segments"]
                    .as_array()
                    .expect("the trace's Segments")
                    .iter()
                    .map(|segment| {
                        let document = segment["Document"].as_str().expect("a segment Document");
                        serde_json::from_str(document).unwrap_or_else(|err| {
                            panic!("segment document is not JSON ({err}): {document}")
                        })
                    })
                    .collect();
                (id, segments)
            })
            .collect()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- moto_server output ({}) ----\n{}---- end of moto_server output ----",
                self.addr,
                self.log()
            );
        }
        let _ = fs::remove_file(&self.log_path);
    }
}

/// `$MOTO_SERVER` if set, else the script that `scripts/install-moto` put in `.venv/bin`.
fn moto_server() -> PathBuf {
    if let Some(path) = super::path_from_env("MOTO_SERVER") {
        return path;
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(
        path.is_file(),
        "moto_server not found: run scripts/install-moto (scripts/test does this); \
         looked for {} and $MOTO_SERVER",
        path.display()
    );
    path
}

/// The moto version `scripts/install-moto` pins (its `MOTO_VERSION="..."` line).
fn pinned_version() -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install-moto");
    let text = fs::read_to_string(&script)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", script.display()));
    text.lines()
        .find_map(|line| line.strip_prefix("MOTO_VERSION=\""))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or_else(|| panic!("no MOTO_VERSION=\"...\" line in {}", script.display()))
        .to_owned()
}

/// Fails unless the moto behind `server` (a Python console script) is the pinned version: the
/// tests read moto's X-Ray answers, which change between versions. Asks the script's own
/// interpreter (its `#!` line) for the installed distribution's version, without importing moto.
fn check_version(server: &Path) {
    let script = fs::read_to_string(server)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", server.display()));
    let python = script
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("#!"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{} has no #! line naming its Python", server.display()));
    let output = Command::new(python)
        .args([
            "-c",
            "import importlib.metadata as m; print(m.version('moto'))",
        ])
        .output()
        .unwrap_or_else(|err| panic!("cannot run {python}: {err}"));
    let installed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let pinned = pinned_version();
    assert_eq!(
        installed,
        pinned,
        "{} runs moto {installed:?}, but scripts/install-moto pins {pinned}: run it again \
         (stderr: {})",
        server.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A free port on 127.0.0.1 (released before returning).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port on 127.0.0.1")
}

/// A fresh temp file name for this process's next moto.
fn new_log_path() -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("otel-monitor-moto-{}-{n}.log", std::process::id()))
}
