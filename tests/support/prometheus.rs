//! A real Prometheus server (Debian's 2.42 package, installed by `scripts/test`), scraping
//! targets on 127.0.0.1 every second, and asked questions in PromQL.
//!
//! Prometheus listens on port 0 and the harness reads the port it got from its log (`msg="Listening
//! on" address=127.0.0.1:PORT`): no port is picked, released and bound again, so tests running in
//! parallel cannot take each other's.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::OnceLock,
    time::{Duration, Instant},
};

use axum::body::Body;
use serde_json::Value;

use super::client::send;

/// The Prometheus release the tests are written for: `scripts/test` installs Debian bookworm's
/// package, and the tests rely on its behaviour (no OTLP receiver, left-closed range windows,
/// the text exposition format 0.0.4).
pub const EXPECTED_VERSION: &str = "2.42.";

/// A Prometheus process; killed when dropped.
pub struct Prometheus {
    child: Child,
    address: String,
    directory: PathBuf,
}

/// One scrape job: its name (the `job` label) and its target (`127.0.0.1:PORT`, path `/metrics`).
pub struct ScrapeJob<'a> {
    pub job: &'a str,
    pub target: &'a str,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (job `otel-monitor-example`) every second.
    pub async fn start_scraping(target: &str) -> Self {
        Self::start(&[ScrapeJob {
            job: "otel-monitor-example",
            target,
        }])
        .await
    }

    /// Starts Prometheus scraping each job's target every second, and waits until it answers
    /// queries.
    ///
    /// # Panics
    /// When `prometheus` is missing or not 2.42.x, or does not become ready.
    pub async fn start(jobs: &[ScrapeJob<'_>]) -> Self {
        let binary = checked_tool("prometheus");
        let directory = std::env::temp_dir().join(format!(
            "otel-monitor-prometheus-{}-{}",
            std::process::id(),
            jobs.iter()
                .map(|job| job.target.replace([':', '.'], "-"))
                .collect::<Vec<_>>()
                .join("_")
        ));
        let _ = std::fs::remove_dir_all(&directory);
        std::fs::create_dir_all(&directory).unwrap();
        let config = directory.join("prometheus.yml");
        // The SLO rules (alerts/otel-monitor.slo.rules.yml) record their objectives, which the
        // dashboard's error budget panels read.
        let mut yaml = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - '{}'\nscrape_configs:\n",
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("alerts/otel-monitor.slo.rules.yml")
                .display()
        );
        for job in jobs {
            yaml.push_str(&format!(
                "  - job_name: {}\n    static_configs:\n      - targets: ['{}']\n",
                job.job, job.target
            ));
        }
        std::fs::write(&config, yaml).unwrap();

        let log_path = directory.join("prometheus.log");
        let log = std::fs::File::create(&log_path).unwrap();
        let mut child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.join("data").display()
            ))
            // Port 0: the kernel picks a free port as Prometheus binds it, so no other process
            // can take it in between; Prometheus logs the port it got.
            .arg("--web.listen-address=127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start prometheus");
        let address = match wait_for_address(&mut child, &log_path) {
            Ok(address) => address,
            Err(failure) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{failure}");
            }
        };
        let prometheus = Self {
            child,
            address,
            directory,
        };
        let ready = format!("http://{}/-/ready", prometheus.address);
        super::wait_until(
            "Prometheus to be ready",
            Duration::from_secs(20),
            || async {
                let log = prometheus.log();
                if log.contains("Server is ready to receive web requests.")
                    && super::client::get(&ready, &[]).await.0.is_success()
                {
                    Ok(())
                } else {
                    Err(format!("its log:\n{log}"))
                }
            },
        )
        .await;
        prometheus
    }

    /// Runs an instant query now and returns its `data.result` (empty when there is no data).
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        self.query_with(&[("query", promql)]).await
    }

    /// Runs an instant query evaluated at `time_ms` (milliseconds since the epoch) and returns
    /// its `data.result`.
    pub async fn query_at(&self, promql: &str, time_ms: i64) -> Vec<Value> {
        let time = format!("{}.{:03}", time_ms / 1000, time_ms % 1000);
        self.query_with(&[("query", promql), ("time", &time)]).await
    }

    async fn query_with(&self, parameters: &[(&str, &str)]) -> Vec<Value> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(parameters)
            .finish();
        let answer = self.post("/api/v1/query", body).await;
        let promql = parameters[0].1;
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no result for {promql}: {answer}"))
    }

    /// The values of label `name` over the series `matcher` selects (`/api/v1/label/…/values`).
    pub async fn label_values(&self, name: &str, matcher: &str) -> Vec<String> {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("match[]", matcher)
            .finish();
        let request = http::Request::get(format!(
            "http://{}/api/v1/label/{name}/values?{query}",
            self.address
        ))
        .body(Body::empty())
        .unwrap();
        let (status, _, body) = send(request).await;
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert!(status.is_success(), "label values of {name}: {answer}");
        answer["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|value| value.as_str().unwrap().to_owned())
            .collect()
    }

    /// Every series `matcher` selects, by their label sets (`/api/v1/series`).
    pub async fn series(&self, matcher: &str) -> Vec<Value> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("match[]", matcher)
            .finish();
        let answer = self.post("/api/v1/series", body).await;
        answer["data"].as_array().cloned().unwrap()
    }

    async fn post(&self, path: &str, body: String) -> Value {
        let request = http::Request::post(format!("http://{}{path}", self.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body.clone()))
            .unwrap();
        let (status, _, answer) = send(request).await;
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        assert!(
            status.is_success(),
            "Prometheus refused {path} {body}: {status} {answer}"
        );
        answer
    }

    /// Waits until `promql` returns at least one sample, and returns the samples.
    pub async fn wait_for_data(&self, promql: &str, timeout: Duration) -> Vec<Value> {
        self.wait_for(promql, timeout, |result| !result.is_empty())
            .await
    }

    /// Waits until what `promql` returns satisfies `done`, and returns it.
    pub async fn wait_for(
        &self,
        promql: &str,
        timeout: Duration,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let what = format!("{promql} to return what the test waits for");
        super::wait_until(&what, timeout, || async {
            let result = self.query(promql).await;
            if done(&result) {
                Ok(result)
            } else {
                Err(format!(
                    "{result:?}; Prometheus's log:\n{}",
                    tail(&self.log())
                ))
            }
        })
        .await
    }

    /// What Prometheus printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("prometheus.log")).unwrap_or_default()
    }
}

/// Waits (up to 20 s) for Prometheus's `msg="Listening on" address=127.0.0.1:PORT` line and
/// returns the address; fails when Prometheus exits first.
fn wait_for_address(child: &mut Child, log_path: &Path) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        if let Some(address) = log
            .lines()
            .filter(|line| line.contains(r#"msg="Listening on""#))
            .find_map(|line| line.split("address=").nth(1))
        {
            return Ok(address.trim().to_owned());
        }
        if let Some(status) = child.try_wait().unwrap() {
            return Err(format!(
                "Prometheus exited ({status}) before listening; its log:\n{log}"
            ));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "Prometheus did not say where it listens within 20 s; its log:\n{log}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// The last lines of a log, for a panic message.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// The value of an instant-query sample, as a number.
pub fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("not a sample: {sample}"))
}

/// The value of label `name` of a sample or series (`""` when it has no such label, as in PromQL).
pub fn label<'a>(sample: &'a Value, name: &str) -> &'a str {
    let labels = if sample["metric"].is_object() {
        &sample["metric"]
    } else {
        sample
    };
    labels[name].as_str().unwrap_or("")
}

/// `prometheus` or `promtool` from the PATH, once its `--version` says 2.42.x.
///
/// # Panics
/// When the tool is missing, or is another release: the tests are written for 2.42.
pub fn checked_tool(tool: &'static str) -> &'static Path {
    static PROMETHEUS: OnceLock<PathBuf> = OnceLock::new();
    static PROMTOOL: OnceLock<PathBuf> = OnceLock::new();
    let cell = match tool {
        "prometheus" => &PROMETHEUS,
        "promtool" => &PROMTOOL,
        other => panic!("not a Prometheus tool: {other}"),
    };
    cell.get_or_init(|| {
        let path = which(tool);
        let output = Command::new(&path)
            .arg("--version")
            .output()
            .unwrap_or_else(|error| panic!("cannot run {} --version: {error}", path.display()));
        // prometheus prints its version on stdout, promtool on stdout or stderr by release.
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        let version = version_of(&printed);
        assert!(
            version.is_some_and(|version| version.starts_with(EXPECTED_VERSION)),
            "{} is not Prometheus {EXPECTED_VERSION}x, which the tests are written for \
             (scripts/test installs Debian's prometheus package 2.42.0); it says:\n{printed}",
            path.display()
        );
        path
    })
}

/// `2.42.0+ds` out of `prometheus, version 2.42.0+ds (branch: ...)`.
fn version_of(printed: &str) -> Option<&str> {
    printed
        .split("version ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
}

/// Finds `tool` on the PATH, or fails loudly: the README's test command installs it.
pub fn which(tool: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|directory| directory.join(tool))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!("{tool} not found on PATH: run scripts/test, which installs it (Debian's prometheus package 2.42)")
        })
}
