//! The SigV4 verifier (`tests/support/sigv4_verifier.py`): botocore's SigV4 signer, an
//! implementation independent of the crate's, checking every OTLP export's signature; with a
//! proxy in front of it that flips a byte of each body, and an ECS container credentials endpoint
//! handing out short-lived keys. Run with the `.venv` Python (`scripts/install-botocore`).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

/// A running verifier; killed when dropped.
pub struct SigV4Verifier {
    child: Child,
    port: u16,
    tamper_port: u16,
}

/// One export as the verifier saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub path: String,
    pub status: u16,
    pub refusal: Option<String>,
    pub access_key: String,
    pub service: String,
    pub signed_headers: Vec<String>,
    pub header: serde_json::Map<String, Value>,
}

/// Credentials the container endpoint handed out: the key, when (epoch seconds) and until when.
#[derive(Debug, Clone)]
pub struct Issued {
    pub access_key: String,
    pub issued_at: f64,
    pub expires_at: f64,
}

impl SigV4Verifier {
    /// Starts the verifier for `region`, accepting `keys` (`ACCESS_KEY:SECRET[:TOKEN]`) and the
    /// keys its container endpoint hands out, each valid for `lifetime_secs`.
    ///
    /// # Panics
    /// When the `.venv` Python or botocore is missing, or the verifier does not start.
    pub fn start(region: &str, keys: &[&str], lifetime_secs: f64) -> Self {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let python = root.join(".venv/bin/python");
        assert!(
            python.is_file(),
            "{} not found: run scripts/install-botocore (scripts/test does this)",
            python.display()
        );
        let mut command = Command::new(python);
        command
            .arg(root.join("tests/support/sigv4_verifier.py"))
            .args(["--region", region, "--lifetime", &lifetime_secs.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for key in keys {
            command.args(["--key", key]);
        }
        let mut child = command.spawn().expect("start the SigV4 verifier");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the verifier's ports");
        let ports: Vec<u16> = line
            .strip_prefix("ports ")
            .unwrap_or_else(|| panic!("the verifier did not start: {line:?} (botocore missing?)"))
            .split_whitespace()
            .map(|port| port.parse().unwrap())
            .collect();
        Self {
            child,
            port: ports[0],
            tamper_port: ports[1],
        }
    }

    /// `http://127.0.0.1:PORT`: the OTLP base URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The base URL of the proxy that flips a byte of every body on its way to the verifier.
    pub fn tampering_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.tamper_port)
    }

    /// For `AWS_CONTAINER_CREDENTIALS_FULL_URI`.
    pub fn credentials_uri(&self) -> String {
        format!("{}/credentials", self.endpoint())
    }

    async fn seen(&self) -> Value {
        let (status, _, body) = super::client::get(&format!("{}/seen", self.endpoint()), &[]).await;
        assert!(status.is_success());
        serde_json::from_slice(&body).unwrap()
    }

    /// Every export received so far, in arrival order.
    pub async fn requests(&self) -> Vec<SeenRequest> {
        let seen = self.seen().await;
        let text = |value: &Value, key: &str| value[key].as_str().unwrap_or_default().to_owned();
        seen["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|request| SeenRequest {
                path: text(request, "path"),
                status: request["status"].as_u64().unwrap() as u16,
                refusal: request["refusal"].as_str().map(str::to_owned),
                access_key: text(request, "access_key"),
                service: text(request, "service"),
                signed_headers: request["signed_headers"]
                    .as_array()
                    .map(|names| {
                        names
                            .iter()
                            .map(|name| name.as_str().unwrap().to_owned())
                            .collect()
                    })
                    .unwrap_or_default(),
                header: request["headers"].as_object().cloned().unwrap_or_default(),
            })
            .collect()
    }

    /// Every set of credentials the container endpoint handed out, in order.
    pub async fn issued(&self) -> Vec<Issued> {
        self.seen().await["issued"]
            .as_array()
            .unwrap()
            .iter()
            .map(|issued| Issued {
                access_key: issued["access_key"].as_str().unwrap().to_owned(),
                issued_at: issued["issued_at"].as_f64().unwrap(),
                expires_at: issued["expires_at"].as_f64().unwrap(),
            })
            .collect()
    }
}

impl Drop for SigV4Verifier {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
