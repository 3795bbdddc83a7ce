//! TLS to the collector, with rustls and aws-lc-rs, for both transports.
//!
//! Which certificates are trusted:
//! - with `OTEL_EXPORTER_OTLP_(SIGNAL_)CERTIFICATE` (or [`otlp_certificate`]), that CA bundle
//!   only, as the Go and Java SDKs read "the trusted certificate" of the specification;
//! - otherwise the platform's trust store (rustls-native-certs, which honours `SSL_CERT_FILE`
//!   and `SSL_CERT_DIR`), where operations teams install their corporate CAs, and Mozilla's
//!   roots (webpki-roots) beside it, so that a scratch container without a trust store still
//!   reaches a public endpoint.
//!
//! `OTEL_EXPORTER_OTLP_(SIGNAL_)CLIENT_CERTIFICATE` and `..._CLIENT_KEY` give the client
//! certificate for mutual TLS. Every file is read and parsed at `init()`: a file that cannot be
//! read or holds no PEM certificate or key fails it with the variable's name and the path.
//!
//! [`otlp_certificate`]: crate::TelemetryBuilder::otlp_certificate

use std::{
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
};

use opentelemetry_otlp::ExporterBuildError;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

use super::destination::{SignalKind, invalid};

/// The TLS files the builder gave, over the variables of every signal.
#[derive(Debug, Clone, Default)]
pub(crate) struct TlsOverrides {
    pub(crate) certificate: Option<PathBuf>,
    pub(crate) client_identity: Option<(PathBuf, PathBuf)>,
    /// Plain text to gRPC endpoints given without a scheme, over `OTEL_EXPORTER_OTLP_INSECURE`.
    pub(crate) insecure: Option<bool>,
}

/// What one signal's TLS connections trust and present.
#[derive(Debug, Clone, Default)]
pub(crate) struct Tls {
    /// The CA bundle to trust instead of the platform's roots, as PEM.
    certificate: Option<Certificates>,
    /// The client certificate chain and key, as PEM.
    identity: Option<(Certificates, Key)>,
}

type Certificates = Pem<Vec<CertificateDer<'static>>>;
type Key = Pem<Arc<PrivateKeyDer<'static>>>;

/// A file's PEM text and what was parsed from it. `Debug` shows neither: one may be a key.
#[derive(Clone)]
struct Pem<T> {
    text: Vec<u8>,
    parsed: T,
}

impl<T> std::fmt::Debug for Pem<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pem({} bytes)", self.text.len())
    }
}

/// Where a setting came from: a variable's name or a builder method, for errors.
struct Source<'a> {
    setting: &'a str,
    path: PathBuf,
}

impl Tls {
    /// Reads and parses a signal's TLS files.
    pub(crate) fn resolve(
        kind: SignalKind,
        overrides: &TlsOverrides,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ExporterBuildError> {
        let from_env = |setting: &str| {
            kind.variables(setting).into_iter().find_map(|variable| {
                let path = env(&variable).filter(|path| !path.trim().is_empty())?;
                Some((variable, PathBuf::from(path)))
            })
        };
        let certificate = match &overrides.certificate {
            Some(path) => Some((
                "TelemetryBuilder::otlp_certificate".to_owned(),
                path.clone(),
            )),
            None => from_env("CERTIFICATE"),
        };
        let identity = match &overrides.client_identity {
            Some((certificate, key)) => Some((
                (
                    "TelemetryBuilder::otlp_client_identity".to_owned(),
                    certificate.clone(),
                ),
                (
                    "TelemetryBuilder::otlp_client_identity".to_owned(),
                    key.clone(),
                ),
            )),
            None => match (from_env("CLIENT_CERTIFICATE"), from_env("CLIENT_KEY")) {
                (Some(certificate), Some(key)) => Some((certificate, key)),
                (None, None) => None,
                (Some((variable, _)), None) | (None, Some((variable, _))) => {
                    let [certificate, key] = [
                        kind.variables("CLIENT_CERTIFICATE")[1].clone(),
                        kind.variables("CLIENT_KEY")[1].clone(),
                    ];
                    return Err(invalid(
                        &variable,
                        format!(
                            "mutual TLS needs both {certificate} and {key} (or their per-signal forms)"
                        ),
                    ));
                }
            },
        };

        let certificate = certificate
            .map(|(setting, path)| {
                certificates(&Source {
                    setting: &setting,
                    path,
                })
            })
            .transpose()?;
        let identity = identity
            .map(|((cert_setting, cert_path), (key_setting, key_path))| {
                let chain = certificates(&Source {
                    setting: &cert_setting,
                    path: cert_path,
                })?;
                let key = private_key(&Source {
                    setting: &key_setting,
                    path: key_path,
                })?;
                // The key must match the certificate: rustls checks it when the client
                // configuration is built, so a mismatch fails here rather than at the first export.
                ClientConfig::builder_with_provider(provider())
                    .with_safe_default_protocol_versions()
                    .and_then(|builder| {
                        builder
                            .with_root_certificates(RootCertStore::empty())
                            .with_client_auth_cert(chain.parsed.clone(), key.parsed.clone_key())
                    })
                    .map_err(|error| {
                        invalid(
                            &cert_setting,
                            format!("does not go with {key_setting}: {error}"),
                        )
                    })?;
                Ok((chain, key))
            })
            .transpose()?;
        Ok(Self {
            certificate,
            identity,
        })
    }

    /// The rustls configuration of an OTLP/HTTP client (HTTP/1.1); without `roots`, it trusts
    /// nothing (for a plain `http://` destination, which never loads the platform's roots).
    pub(crate) fn rustls_config(&self, roots: bool) -> Result<ClientConfig, ExporterBuildError> {
        let roots = match (&self.certificate, roots) {
            (_, false) => RootCertStore::empty(),
            (Some(bundle), true) => {
                let mut roots = RootCertStore::empty();
                roots.add_parsable_certificates(bundle.parsed.iter().cloned());
                roots
            }
            (None, true) => platform_roots().as_ref().clone(),
        };
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| ExporterBuildError::InternalFailure(error.to_string()))?
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.parsed.clone(), key.parsed.clone_key())
                .map_err(|error| ExporterBuildError::InternalFailure(error.to_string()))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }

    /// The same trust and identity for a tonic channel.
    pub(crate) fn tonic_config(&self) -> tonic::transport::ClientTlsConfig {
        use tonic::transport::{Certificate, ClientTlsConfig, Identity};
        let config = match &self.certificate {
            Some(bundle) => {
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&bundle.text))
            }
            None => ClientTlsConfig::new()
                .with_native_roots()
                .with_webpki_roots(),
        };
        match &self.identity {
            Some((chain, key)) => config.identity(Identity::from_pem(&chain.text, &key.text)),
            None => config,
        }
    }
}

/// aws-lc-rs, the provider reqwest and tonic use here; passed explicitly, so the process-wide
/// default provider is neither needed nor changed.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The platform's trust store and Mozilla's roots, loaded once per process.
fn platform_roots() -> &'static Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut roots = RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        Arc::new(roots)
    })
}

fn read(source: &Source<'_>) -> Result<Vec<u8>, ExporterBuildError> {
    std::fs::read(&source.path).map_err(|error| {
        invalid(
            source.setting,
            format!("cannot read {}: {error}", display(&source.path)),
        )
    })
}

fn certificates(
    source: &Source<'_>,
) -> Result<Pem<Vec<CertificateDer<'static>>>, ExporterBuildError> {
    let text = read(source)?;
    let parsed: Vec<_> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|error| {
            invalid(
                source.setting,
                format!(
                    "{} is not a PEM certificate file: {error}",
                    display(&source.path)
                ),
            )
        })?;
    if parsed.is_empty() {
        return Err(invalid(
            source.setting,
            format!("{} holds no PEM certificate", display(&source.path)),
        ));
    }
    Ok(Pem { text, parsed })
}

fn private_key(
    source: &Source<'_>,
) -> Result<Pem<Arc<PrivateKeyDer<'static>>>, ExporterBuildError> {
    let text = read(source)?;
    let parsed = PrivateKeyDer::from_pem_slice(&text).map_err(|_| {
        invalid(
            source.setting,
            format!("{} holds no PEM private key", display(&source.path)),
        )
    })?;
    Ok(Pem {
        text,
        parsed: Arc::new(parsed),
    })
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(vars: &[(&str, &str)]) -> Result<Tls, String> {
        let vars: std::collections::HashMap<_, _> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Tls::resolve(
            SignalKind::Traces,
            &TlsOverrides::default(),
            &|name: &str| vars.get(name).cloned(),
        )
        .map_err(|error| error.to_string())
    }

    #[test]
    fn a_missing_or_unparsable_file_names_the_variable_and_the_path() {
        let error =
            resolve(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", "/nonexistent/ca.pem")]).unwrap_err();
        assert!(error.contains("OTEL_EXPORTER_OTLP_CERTIFICATE"), "{error}");
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");

        let not_pem =
            std::env::temp_dir().join(format!("otel-monitor-not-pem-{}", std::process::id()));
        std::fs::write(&not_pem, "not a certificate").unwrap();
        let path = not_pem.to_str().unwrap();
        let error = resolve(&[("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", path)]).unwrap_err();
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE"),
            "{error}"
        );
        assert!(
            error.contains(&format!("{path} holds no PEM certificate")),
            "{error}"
        );
        let error = resolve(&[
            (
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                "/nonexistent/client.pem",
            ),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", path),
        ])
        .unwrap_err();
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE"),
            "{error}"
        );
        std::fs::remove_file(not_pem).unwrap();
    }

    #[test]
    fn a_client_certificate_needs_its_key() {
        let error =
            resolve(&[("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/some/client.pem")]).unwrap_err();
        assert!(error.contains("OTEL_EXPORTER_OTLP_CLIENT_KEY"), "{error}");
    }

    #[test]
    fn without_files_the_platform_roots_are_trusted() {
        let config = resolve(&[]).unwrap().rustls_config(true).unwrap();
        assert_eq!(config.alpn_protocols, [b"http/1.1".to_vec()]);
        assert!(!platform_roots().is_empty());
    }

    /// Set in a process [`rerun_with`] starts: the test runs its own assertions there.
    const RERUN: &str = "OTEL_MONITOR_TEST_RERUN";
    /// In such a process, the CA certificate (PEM) its platform store was given.
    const RERUN_CA: &str = "OTEL_MONITOR_TEST_RERUN_CA";

    /// Runs the test `name` of this test binary again, in a process of its own whose
    /// environment has no `SSL_CERT_FILE` or `SSL_CERT_DIR` (this machine sets both) but `env`.
    /// `platform_roots` reads the platform's store once per process, from those variables, and
    /// a test cannot set them safely while other tests of its process run (`cargo test` runs
    /// them as threads of one process; nextest gives each its own, but neither is assumed).
    fn rerun_with(name: &str, env: &[(&str, &Path)]) {
        let test = format!("{}::{name}", module_path!().split_once("::").unwrap().1);
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([test.as_str(), "--exact", "--nocapture", "--test-threads=1"])
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR")
            .envs(env.iter().map(|(name, path)| (name, path.as_os_str())))
            .env(RERUN, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // The filter matched one test, and it passed.
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "{test} with {env:?}: {}\n{stdout}\n{stderr}",
            output.status
        );
    }

    /// A fresh directory for one test's files, in a process of its own.
    fn scratch_dir(test: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("otel-monitor-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// What a certificate becomes in a root store.
    fn anchor(certificate: CertificateDer<'static>) -> rustls::pki_types::TrustAnchor<'static> {
        let mut store = RootCertStore::empty();
        store.add(certificate).unwrap();
        store.roots.remove(0)
    }

    #[test]
    fn with_an_empty_platform_store_every_mozilla_root_is_still_trusted() {
        if std::env::var_os(RERUN).is_none() {
            // A scratch container: no certificate in the platform's file or directory.
            let dir = scratch_dir("empty-trust-store");
            let (file, certs) = (dir.join("ca-certificates.crt"), dir.join("certs"));
            std::fs::write(&file, "").unwrap();
            std::fs::create_dir(&certs).unwrap();
            rerun_with(
                "with_an_empty_platform_store_every_mozilla_root_is_still_trusted",
                &[("SSL_CERT_FILE", &file), ("SSL_CERT_DIR", &certs)],
            );
            std::fs::remove_dir_all(dir).unwrap();
            return;
        }
        let native = rustls_native_certs::load_native_certs();
        assert!(
            native.certs.is_empty() && native.errors.is_empty(),
            "{native:?}"
        );
        assert_eq!(platform_roots().roots, webpki_roots::TLS_SERVER_ROOTS);
        // And an HTTP/protobuf client trusts them.
        resolve(&[]).unwrap().rustls_config(true).unwrap();
    }

    #[test]
    fn a_ca_in_ssl_cert_file_or_ssl_cert_dir_is_trusted_beside_every_mozilla_root() {
        if std::env::var_os(RERUN).is_none() {
            let dir = scratch_dir("platform-ca");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "otel-monitor corporate test CA");
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            let key = rcgen::KeyPair::generate().unwrap();
            let ca = params.self_signed(&key).unwrap();
            let (file, certs) = (dir.join("corporate-ca.pem"), dir.join("certs"));
            std::fs::write(&file, ca.pem()).unwrap();
            std::fs::create_dir(&certs).unwrap();
            std::fs::write(certs.join("corporate-ca.pem"), ca.pem()).unwrap();
            let name = "a_ca_in_ssl_cert_file_or_ssl_cert_dir_is_trusted_beside_every_mozilla_root";
            rerun_with(name, &[("SSL_CERT_FILE", &file), (RERUN_CA, &file)]);
            rerun_with(name, &[("SSL_CERT_DIR", &certs), (RERUN_CA, &file)]);
            std::fs::remove_dir_all(dir).unwrap();
            return;
        }
        let pem = std::fs::read(std::env::var_os(RERUN_CA).unwrap()).unwrap();
        let ca = anchor(CertificateDer::from_pem_slice(&pem).unwrap());
        let roots = &platform_roots().roots;
        // The platform's one CA, then Mozilla's roots, every one of them.
        assert_eq!(roots.len(), 1 + webpki_roots::TLS_SERVER_ROOTS.len());
        assert_eq!(roots[0], ca);
        assert_eq!(roots[1..], *webpki_roots::TLS_SERVER_ROOTS);
    }

    #[test]
    fn the_platform_store_and_mozillas_roots_are_both_trusted() {
        // The platform's store as this process finds it (this machine's bundle).
        let mut platform = RootCertStore::empty();
        platform.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        assert!(!platform.is_empty());
        let roots = &platform_roots().roots;
        assert_eq!(
            roots.len(),
            platform.len() + webpki_roots::TLS_SERVER_ROOTS.len()
        );
        assert_eq!(roots[..platform.len()], platform.roots);
        assert_eq!(roots[platform.len()..], *webpki_roots::TLS_SERVER_ROOTS);
    }

    #[test]
    fn grpc_trusts_the_platform_store_and_mozillas_roots_unless_a_ca_is_configured() {
        // tonic loads both stores itself when it connects: its configuration says it will.
        let config = format!("{:?}", resolve(&[]).unwrap().tonic_config());
        assert!(config.contains("with_native_roots: true"), "{config}");
        assert!(config.contains("with_webpki_roots: true"), "{config}");

        let dir = scratch_dir("grpc-ca");
        let ca = dir.join("ca.pem");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        std::fs::write(&ca, params.self_signed(&key).unwrap().pem()).unwrap();
        let config = format!(
            "{:?}",
            resolve(&[("OTEL_EXPORTER_OTLP_CERTIFICATE", ca.to_str().unwrap())])
                .unwrap()
                .tonic_config()
        );
        std::fs::remove_dir_all(dir).unwrap();
        assert!(config.contains("with_native_roots: false"), "{config}");
        assert!(config.contains("with_webpki_roots: false"), "{config}");
    }
}
