//! A real Prometheus server (Debian's 2.42 package, installed by `scripts/test`), scraping a
//! target on 127.0.0.1 every second, and asked questions in PromQL.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use axum::body::Body;
use serde_json::Value;

use super::client::send;

/// A Prometheus process; killed when dropped.
pub struct Prometheus {
    child: Child,
    address: String,
    directory: PathBuf,
}

impl Prometheus {
    /// Starts Prometheus scraping `target` (`127.0.0.1:PORT`, path `/metrics`) every second,
    /// and waits until it answers queries (`/-/ready`).
    pub async fn start_scraping(target: &str) -> Self {
        let binary = which("prometheus");
        let directory = std::env::temp_dir().join(format!(
            "otel-monitor-prometheus-{}-{}",
            std::process::id(),
            target.replace([':', '.'], "-")
        ));
        std::fs::create_dir_all(&directory).unwrap();
        let config = directory.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: otel-monitor-example\n    \
                 static_configs:\n      - targets: ['{target}']\n"
            ),
        )
        .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let log = std::fs::File::create(directory.join("prometheus.log")).unwrap();
        let child = Command::new(binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                directory.join("data").display()
            ))
            .arg(format!("--web.listen-address={address}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start prometheus");
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
                let answered = std::net::TcpStream::connect(&prometheus.address).is_ok()
                    && super::client::get(&ready, &[]).await.0.is_success();
                if answered {
                    Ok(())
                } else {
                    Err(format!("its log:\n{}", prometheus.log()))
                }
            },
        )
        .await;
        prometheus
    }

    /// Runs an instant query and returns its `data.result` (empty when there is no data yet).
    pub async fn query(&self, promql: &str) -> Vec<Value> {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("query", promql)
            .finish();
        let request = http::Request::post(format!("http://{}/api/v1/query", self.address))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .unwrap();
        let (status, _, body) = send(request).await;
        let answer: Value = serde_json::from_slice(&body).unwrap();
        assert!(
            status.is_success(),
            "Prometheus refused {promql}: {status} {answer}"
        );
        answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until `promql` returns at least one sample, and returns the samples.
    pub async fn wait_for_data(&self, promql: &str, timeout: Duration) -> Vec<Value> {
        let what = format!("data for {promql}");
        super::wait_until(&what, timeout, || async {
            let result = self.query(promql).await;
            if result.is_empty() {
                Err(format!("no data; Prometheus's log:\n{}", self.log()))
            } else {
                Ok(result)
            }
        })
        .await
    }

    /// What Prometheus printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.directory.join("prometheus.log")).unwrap_or_default()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.directory);
    }
}

/// The value of an instant-query sample, as a number.
pub fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("not a sample: {sample}"))
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
            panic!("{tool} not found on PATH: run scripts/test, which installs it (Debian's prometheus package)")
        })
}
