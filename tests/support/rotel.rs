//! Rotel, a real OpenTelemetry collector, run as a child process (see shared/HARNESS.md).

use std::fs::{self, File};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::wait::wait_for_blocking;

/// How long rotel gets to open its ports (it usually takes ~60 ms).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long rotel gets to flush and exit after SIGTERM before it is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times rotel is started on fresh ports when a port it was given was taken meanwhile.
pub const START_ATTEMPTS: usize = 5;

/// A running `rotel-agent` receiving OTLP on 127.0.0.1 over gRPC and HTTP.
///
/// Dropping it sends SIGTERM (rotel then flushes pending batches), and kills it after 5 s.
/// If the thread is panicking (a failed test), everything rotel printed goes to stderr.
pub struct Rotel {
    child: Child,
    grpc_addr: SocketAddr,
    http_addr: SocketAddr,
    log_path: PathBuf,
}

impl Rotel {
    /// Starts rotel with an OTLP gRPC exporter towards `otlp_grpc_endpoint` (like `http://127.0.0.1:PORT`).
    pub fn start_forwarding_to(otlp_grpc_endpoint: &str) -> Rotel {
        Rotel::start_with_args(&[
            "--exporter",
            "otlp",
            "--otlp-exporter-endpoint",
            otlp_grpc_endpoint,
            "--otlp-exporter-retry-initial-backoff",
            "100ms",
        ])
    }

    /// Starts `rotel-agent start` with its OTLP receivers on free ports, a 20 ms batch timeout, and
    /// `extra` arguments (the exporter and its options), then waits until rotel listens on both
    /// ports (on fresh ports if one was taken meanwhile: see [`Rotel::start_picking_ports`]).
    ///
    /// # Panics
    /// When the binary is missing or not the pinned version, rotel exits early, or its ports do
    /// not open within 10 s.
    pub fn start_with_args(extra: &[&str]) -> Rotel {
        Rotel::start_with_env_and_args(&[], extra)
    }

    /// Like [`Rotel::start_with_args`], with `env` added to rotel's environment: the options of
    /// exporters named with `--exporters` are only read from `ROTEL_EXPORTER_<NAME>_<PARAM>`.
    ///
    /// # Panics
    /// As [`Rotel::start_with_args`].
    pub fn start_with_env_and_args(env: &[(&str, &str)], extra: &[&str]) -> Rotel {
        Rotel::start_picking_ports(two_free_addrs, env, extra)
    }

    /// Like [`Rotel::start_with_env_and_args`], with each attempt's gRPC and HTTP addresses
    /// given by `pick`.
    ///
    /// Rotel cannot listen on port 0 and say which port it got (it panics), so it is given ports
    /// that were free a moment before; another process (a parallel test) can take one meanwhile.
    /// Rotel then exits with `Address already in use`, and it is started again on the next pick,
    /// up to [`START_ATTEMPTS`] times. It counts as started once rotel's own process listens
    /// on both addresses, not merely once something accepts there.
    ///
    /// # Panics
    /// When the binary is missing or not the pinned version, rotel exits early for another
    /// reason, its ports do not open within 10 s, or every attempt found a port taken.
    pub fn start_picking_ports(
        mut pick: impl FnMut() -> (SocketAddr, SocketAddr),
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Rotel {
        let agent = rotel_agent();
        let mut taken = Vec::new();
        for _ in 0..START_ATTEMPTS {
            let (grpc_addr, http_addr) = pick();
            match Rotel::launch(&agent, (grpc_addr, http_addr), env, extra) {
                Ok(rotel) => return rotel,
                Err(output) => taken.push(format!(
                    "grpc {grpc_addr}, http {http_addr}: {}",
                    output.trim()
                )),
            }
        }
        panic!(
            "rotel-agent found a port taken in each of {START_ATTEMPTS} attempts:\n{}",
            taken.join("\n")
        );
    }

    /// Starts rotel on these addresses and waits until its process listens on both. `Err` with
    /// its output when it exited because an address was taken.
    ///
    /// # Panics
    /// When rotel exits for another reason or does not listen within [`STARTUP_TIMEOUT`].
    fn launch(
        agent: &Path,
        (grpc_addr, http_addr): (SocketAddr, SocketAddr),
        env: &[(&str, &str)],
        extra: &[&str],
    ) -> Result<Rotel, String> {
        let log_path = new_log_path();
        let log = File::create(&log_path).expect("create rotel log file");
        let child = Command::new(agent)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied())
            .arg("start")
            .args(["--otlp-grpc-endpoint", &grpc_addr.to_string()])
            .args(["--otlp-http-endpoint", &http_addr.to_string()])
            .args(["--batch-timeout", "20ms"])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone rotel log file"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| panic!("failed to launch {}: {err}", agent.display()));
        let mut rotel = Rotel {
            child,
            grpc_addr,
            http_addr,
            log_path,
        };

        let pid = rotel.pid();
        let what = format!("rotel-agent to listen on {grpc_addr} and {http_addr}");
        // `Some(None)`: listening; `Some(Some(status))`: exited.
        let exited = wait_for_blocking(&what, STARTUP_TIMEOUT, || {
            if let Some(status) = rotel.child.try_wait().expect("poll rotel-agent") {
                return Some(Some(status));
            }
            let listening = super::listening_addrs(pid);
            (listening.contains(&grpc_addr) && listening.contains(&http_addr)).then_some(None)
        });
        match exited {
            None => Ok(rotel),
            Some(_) if rotel.log().contains("Address already in use") => Err(rotel.log()),
            Some(status) => panic!("rotel-agent exited early ({status})"),
        }
    }

    /// The process id of `rotel-agent`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The OTLP gRPC endpoint, like `http://127.0.0.1:PORT`.
    pub fn grpc_endpoint(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    /// The OTLP HTTP base endpoint, like `http://127.0.0.1:PORT` (without `/v1/...`).
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.http_addr)
    }

    /// The endpoint for `OTEL_EXPORTER_OTLP_PROTOCOL=protocol`: gRPC's for `grpc`, else HTTP's.
    pub fn endpoint(&self, protocol: &str) -> String {
        match protocol {
            "grpc" => self.grpc_endpoint(),
            _ => self.http_endpoint(),
        }
    }

    /// Everything rotel printed so far (stdout and stderr interleaved).
    pub fn log(&self) -> String {
        fs::read(&self.log_path)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_else(|err| format!("<cannot read {}: {err}>", self.log_path.display()))
    }

    /// SIGTERM, then a kill if rotel is still running after [`SHUTDOWN_TIMEOUT`].
    fn stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        // Plain `kill` keeps libc out of the dependencies.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "---- rotel-agent output (grpc {}, http {}) ----\n{}---- end of rotel-agent output ----",
                self.grpc_addr,
                self.http_addr,
                self.log()
            );
        }
        let _ = fs::remove_file(&self.log_path);
    }
}

/// `$ROTEL_AGENT` if set, else the binary that `scripts/install-rotel` put in `.venv`, which must
/// be the version pinned there.
///
/// # Panics
/// When there is none, or the one in `.venv` is another version, saying what to run.
fn rotel_agent() -> PathBuf {
    if let Some(path) = super::path_from_env("ROTEL_AGENT") {
        return path;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let lib = root.join(".venv/lib");
    let site_packages = fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().starts_with("python3"))
        .map(|entry| entry.path().join("site-packages"))
        .find(|site_packages| site_packages.join("rotel/rotel-agent").is_file())
        .unwrap_or_else(|| {
            panic!(
                "rotel-agent not found: run scripts/install-rotel (scripts/test does this); \
                 looked for {}/python3*/site-packages/rotel/rotel-agent and $ROTEL_AGENT",
                lib.display()
            )
        });
    // `rotel-agent --version` names the same version for every build: pip's metadata tells them
    // apart.
    let pinned = pinned_version(&root.join("scripts/install-rotel"));
    let installed: Vec<String> = fs::read_dir(&site_packages)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            Some(
                name.strip_prefix("rotel-")?
                    .strip_suffix(".dist-info")?
                    .to_owned(),
            )
        })
        .collect();
    assert!(
        installed == [pinned.clone()],
        "rotel in {} is {installed:?}, not the pinned {pinned}: run scripts/install-rotel",
        site_packages.display()
    );
    site_packages.join("rotel/rotel-agent")
}

/// The `ROTEL_VERSION="..."` that `scripts/install-rotel` installs.
fn pinned_version(script: &Path) -> String {
    let text = fs::read_to_string(script)
        .unwrap_or_else(|err| panic!("cannot read {}: {err}", script.display()));
    text.lines()
        .find_map(|line| {
            line.strip_prefix("ROTEL_VERSION=\"")?
                .strip_suffix('"')
                .map(str::to_owned)
        })
        .unwrap_or_else(|| panic!("no ROTEL_VERSION=\"...\" line in {}", script.display()))
}

/// Two distinct free ports on 127.0.0.1 (both held while picking, released before returning).
pub fn two_free_addrs() -> (SocketAddr, SocketAddr) {
    let bind = || TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port on 127.0.0.1");
    let (a, b) = (bind(), bind());
    let addr = |l: &TcpListener| l.local_addr().expect("ephemeral listener address");
    (addr(&a), addr(&b))
}

/// A fresh temp file name for this process's next rotel.
fn new_log_path() -> PathBuf {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("otel-monitor-rotel-{}-{n}.log", std::process::id()))
}
