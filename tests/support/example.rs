//! The example service (`examples/service.rs`), or another example, run as a child process,
//! configured only by its environment and arguments, as a user runs it.

use std::{
    io::{BufRead, BufReader, Read},
    net::SocketAddr,
    path::PathBuf,
    process::{Child, ChildStdout, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex, mpsc},
    thread,
    time::{Duration, Instant},
};

/// Environment that makes the pipeline export quickly enough for a test.
const FAST_EXPORT: [(&str, &str); 4] = [
    ("OTEL_BSP_SCHEDULE_DELAY", "50"),
    ("OTEL_BLRP_SCHEDULE_DELAY", "50"),
    ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
    ("RUST_LOG", "info"),
];

/// An example program and the arguments it runs with.
#[derive(Debug, Clone, Copy)]
pub struct Example<'a> {
    /// Its name in `examples/`.
    pub name: &'a str,
    pub args: &'a [&'a str],
}

/// `examples/service.rs`, with no arguments.
pub const SERVICE: Example<'static> = Example {
    name: "service",
    args: &[],
};

/// How long the service gets to listen once started (it is built beforehand).
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running example service; [`ExampleService::stop`] ends it with SIGTERM, dropping it kills it.
pub struct ExampleService {
    child: Child,
    address: SocketAddr,
    output: Arc<Mutex<String>>,
    /// Its standard output, when nobody reads it yet ([`ExampleService::start_with_unread_stdout`]).
    unread_stdout: Option<ChildStdout>,
}

/// How the service ended.
#[derive(Debug)]
pub struct Exit {
    pub status: ExitStatus,
    /// From SIGTERM to exit.
    pub took: Duration,
    /// Everything it printed, stdout and stderr.
    pub output: String,
}

impl ExampleService {
    /// Starts the service with `env` on top of the fast-export settings, and waits until it
    /// listens.
    ///
    /// # Panics
    /// When it exits first (with what it printed), or does not listen within 20 s.
    pub fn start(env: &[(&str, &str)]) -> Self {
        Self::start_unsetting(&[], env)
    }

    /// Like [`ExampleService::start`], without the harness's own value of each variable named in
    /// `unset` (one of the fast-export settings, e.g. `RUST_LOG` to run with the crate's default).
    ///
    /// The address it listens on comes from its `listening on http://ADDR` line or, when that
    /// line is filtered out (`RUST_LOG=warn`), from the one socket its process listens on.
    ///
    /// # Panics
    /// As [`ExampleService::start`].
    pub fn start_unsetting(unset: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_reading(SERVICE, unset, env, true)
    }

    /// Like [`ExampleService::start`], running `example` instead of the service.
    pub fn start_example(example: Example<'_>, env: &[(&str, &str)]) -> Self {
        Self::start_reading(example, &[], env, true)
    }

    /// Like [`ExampleService::start`], but nobody reads its standard output until
    /// [`ExampleService::read_stdout`]: the pipe fills and stays full, as a pipe nobody reads
    /// does. Its address comes from the socket it listens on.
    pub fn start_with_unread_stdout(env: &[(&str, &str)]) -> Self {
        Self::start_reading(SERVICE, &[], env, false)
    }

    /// Starts reading the standard output that [`ExampleService::start_with_unread_stdout`] left
    /// unread.
    pub fn read_stdout(&mut self) {
        let stdout = self.unread_stdout.take().expect("stdout is read already");
        capture(stdout, self.output.clone(), None);
    }

    fn start_reading(
        example: Example<'_>,
        unset: &[&str],
        env: &[(&str, &str)],
        read_stdout: bool,
    ) -> Self {
        let mut child = spawn(example, unset, env);
        let output = Arc::new(Mutex::new(String::new()));
        let (listening, address) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let unread_stdout = if read_stdout {
            capture(stdout, output.clone(), Some(listening));
            None
        } else {
            Some(stdout)
        };
        capture(child.stderr.take().unwrap(), output.clone(), None);
        // Built first so that a panic below stops the child and shows its output (`Drop`).
        let mut service = Self {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            output,
            unread_stdout,
        };
        let pid = service.pid();
        let started =
            super::wait_for_blocking("the example service to listen", START_TIMEOUT, || {
                if let Ok(address) = address.try_recv() {
                    return Some(Ok(address));
                }
                if let Some(status) = service.child.try_wait().expect("poll the example service") {
                    return Some(Err(status));
                }
                match super::listening_addrs(pid)[..] {
                    [address] => Some(Ok(address)),
                    _ => None,
                }
            });
        match started {
            Ok(address) if address.ip().is_unspecified() => {
                service.address = SocketAddr::from(([127, 0, 0, 1], address.port()));
            }
            Ok(address) => service.address = address,
            Err(status) => {
                let output = service.closed_output();
                panic!("the example service exited at start-up ({status}):\n{output}");
            }
        }
        service
    }

    /// `http://127.0.0.1:PORT` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the service printed so far.
    pub fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Sends SIGTERM and waits (up to 20 s) for the service to exit.
    pub fn stop(mut self) -> Exit {
        let sent = Instant::now();
        terminate(self.child.id());
        let status = wait_for_exit(&mut self.child, "the service to exit after SIGTERM");
        let took = sent.elapsed();
        Exit {
            status,
            took,
            output: self.closed_output(),
        }
    }

    /// Everything the service printed, once it has exited: the capture threads see end-of-file
    /// once the process is gone.
    fn closed_output(&self) -> String {
        closed_output(&self.output)
    }
}

impl Drop for ExampleService {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if thread::panicking() {
            eprintln!("---- example service output ----\n{}", self.output());
        }
    }
}

/// Runs the service with `env` and returns how it exits by itself (for configurations that
/// must fail at start-up).
pub fn run_to_exit(env: &[(&str, &str)]) -> Exit {
    run_to_exit_unsetting(&[], env)
}

/// Like [`run_to_exit`], without the harness's own value of each variable named in `unset`.
pub fn run_to_exit_unsetting(unset: &[&str], env: &[(&str, &str)]) -> Exit {
    run_example_to_exit(SERVICE, unset, env)
}

/// Runs `example` with `env` (without the harness's own value of each variable named in
/// `unset`) and returns how it exits by itself.
pub fn run_example_to_exit(example: Example<'_>, unset: &[&str], env: &[(&str, &str)]) -> Exit {
    let mut child = spawn(example, unset, env);
    let started = Instant::now();
    // Read while it runs, so that a full pipe cannot block it.
    let output = Arc::new(Mutex::new(String::new()));
    capture(child.stdout.take().unwrap(), output.clone(), None);
    capture(child.stderr.take().unwrap(), output.clone(), None);
    let status = wait_for_exit(&mut child, "the service to exit by itself");
    Exit {
        status,
        took: started.elapsed(),
        output: closed_output(&output),
    }
}

/// `output` once every capture thread writing to it has ended.
fn closed_output(output: &Arc<Mutex<String>>) -> String {
    super::wait_for_blocking(
        "the service's output to close",
        Duration::from_secs(5),
        || (Arc::strong_count(output) == 1).then(|| output.lock().unwrap().clone()),
    )
}

fn spawn(example: Example<'_>, unset: &[&str], env: &[(&str, &str)]) -> Child {
    Command::new(binary(example.name))
        .args(example.args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .envs(
            FAST_EXPORT
                .iter()
                .copied()
                .filter(|(name, _)| !unset.contains(name)),
        )
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start the example service")
}

/// Copies a pipe into `output`; on the `listening on http://ADDR` line, sends ADDR.
fn capture(
    pipe: impl Read + Send + 'static,
    output: Arc<Mutex<String>>,
    listening: Option<mpsc::Sender<SocketAddr>>,
) {
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let (Some(listening), Some(address)) =
                (&listening, line.split("listening on http://").nth(1))
            {
                let _ = listening.send(address.trim().parse().expect("listening address"));
            }
            let mut output = output.lock().unwrap();
            output.push_str(&line);
            output.push('\n');
        }
    });
}

/// The binary of example `name`: for the service, `$EXAMPLE_SERVICE_BIN` when it is set (a build
/// made beforehand, as `scripts/fault-bench` makes one in release); else the example built with
/// every feature, once per test process.
fn binary(name: &str) -> PathBuf {
    static BUILT: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());
    if name == "service"
        && let Some(path) = super::path_from_env("EXAMPLE_SERVICE_BIN")
    {
        return path;
    }
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((_, path)) = built.iter().find(|(built, _)| built == name) {
        return path.clone();
    }
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--all-features", "--example", name])
        .current_dir(&manifest_dir)
        .status()
        .expect("cannot run cargo to build the example");
    assert!(status.success(), "the example {name} does not build");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("target"));
    let examples = target_dir.join("debug/examples");
    let path = own_build(&examples, name, &manifest_dir).unwrap_or_else(|| examples.join(name));
    built.push((name.to_owned(), path.clone()));
    path
}

/// The newest build of example `name` made from this checkout's sources: `name-HASH`, whose
/// dependency file names `MANIFEST_DIR/examples/name.rs`. A target directory shared by several
/// checkouts of the crate holds one `examples/name` for all of them, the last one built, while
/// each checkout's build keeps its own `name-HASH`.
fn own_build(
    examples: &std::path::Path,
    name: &str,
    manifest_dir: &std::path::Path,
) -> Option<PathBuf> {
    let source = manifest_dir.join("examples").join(format!("{name}.rs"));
    let source = source.to_str()?;
    let prefix = format!("{name}-");
    std::fs::read_dir(examples)
        .ok()?
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|file| file.to_str())
                .and_then(|file| file.strip_prefix(&prefix))
                .is_some_and(|hash| hash.bytes().all(|byte| byte.is_ascii_hexdigit()))
        })
        .filter(|path| {
            std::fs::read_to_string(path.with_extension("d"))
                .is_ok_and(|dependencies| dependencies.contains(source))
        })
        .max_by_key(|path| {
            std::fs::metadata(path)
                .and_then(|meta| meta.modified())
                .ok()
        })
}

fn terminate(pid: u32) {
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("cannot run kill");
    assert!(status.success(), "kill -TERM {pid} failed");
}

fn wait_for_exit(child: &mut Child, what: &str) -> ExitStatus {
    super::wait_for_blocking(what, Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    })
}
