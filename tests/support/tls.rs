//! Certificates made at test time for the TLS receiver: a CA, server and client certificates it
//! signs, and an unrelated CA nobody trusts. The files a client needs (CA certificates, the client
//! certificate and its key) go in a fresh temporary directory, removed when [`TestPki`] is dropped:
//! no private key is ever written into the repository.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A test PKI; see [`TestPki::generate`].
pub struct TestPki {
    dir: PathBuf,
    server: ServerTls,
    mismatched_server: ServerTls,
    ca_pem: String,
}

/// What a TLS server of the test receiver presents, and whom it trusts as clients.
#[derive(Clone)]
pub struct ServerTls {
    /// The server certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
    /// With `Some`, the server requires a client certificate signed by this CA (PEM): mTLS.
    pub client_ca_pem: Option<String>,
}

/// Makes each temporary directory name unique within the process; the pid makes it unique
/// across the concurrently running test binaries.
static NEXT_DIR: AtomicUsize = AtomicUsize::new(0);

impl TestPki {
    /// A CA, a server certificate signed by it for `localhost` and `127.0.0.1`, a server
    /// certificate signed by it for `otel.invalid` only (hostname mismatch), and a client
    /// certificate signed by it. Also a second, unrelated CA (`untrusted_ca_path`) whose
    /// certificate nobody trusts.
    ///
    /// # Panics
    /// When a certificate cannot be made or the temporary directory cannot be written.
    pub fn generate() -> TestPki {
        let ca = certificate_authority("otel-monitor test CA");
        let untrusted_ca = certificate_authority("otel-monitor untrusted test CA");
        let (server_cert, server_key) = leaf(
            &ca,
            "localhost",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (mismatched_cert, mismatched_key) = leaf(
            &ca,
            "otel.invalid",
            &["otel.invalid"],
            ExtendedKeyUsagePurpose::ServerAuth,
        );
        let (client_cert, client_key) = leaf(
            &ca,
            "otel-monitor test client",
            &["otel-monitor-client.invalid"],
            ExtendedKeyUsagePurpose::ClientAuth,
        );

        let dir = std::env::temp_dir().join(format!(
            "otel-monitor-test-pki-{}-{}",
            std::process::id(),
            NEXT_DIR.fetch_add(1, Ordering::Relaxed)
        ));
        // A leftover of an earlier process that had the same pid: never reuse it.
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap_or_else(|err| panic!("create {}: {err}", dir.display()));
        let pki = TestPki {
            server: ServerTls {
                cert_pem: server_cert,
                key_pem: server_key,
                client_ca_pem: None,
            },
            mismatched_server: ServerTls {
                cert_pem: mismatched_cert,
                key_pem: mismatched_key,
                client_ca_pem: None,
            },
            ca_pem: ca.pem(),
            dir,
        };
        write_file(&pki.ca_path(), &pki.ca_pem);
        write_file(&pki.untrusted_ca_path(), &untrusted_ca.pem());
        write_file(&pki.client_cert_path(), &client_cert);
        write_file(&pki.client_key_path(), &client_key);
        pki
    }

    /// The CA certificate, PEM.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Another CA's certificate, PEM: trusting it does not make the servers trusted.
    pub fn untrusted_ca_path(&self) -> PathBuf {
        self.dir.join("untrusted-ca.pem")
    }

    /// A client certificate signed by the CA, PEM.
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir.join("client.pem")
    }

    /// The client certificate's private key, PEM (PKCS#8).
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.join("client-key.pem")
    }

    /// The `localhost` and `127.0.0.1` certificate, no client authentication.
    pub fn server_tls(&self) -> ServerTls {
        self.server.clone()
    }

    /// A certificate for `otel.invalid` only, signed by the CA: a hostname mismatch for a client
    /// of `localhost`.
    pub fn mismatched_server_tls(&self) -> ServerTls {
        self.mismatched_server.clone()
    }

    /// The `localhost` certificate, requiring a client certificate signed by the CA.
    pub fn mutual_server_tls(&self) -> ServerTls {
        ServerTls {
            client_ca_pem: Some(self.ca_pem.clone()),
            ..self.server.clone()
        }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A self-signed CA allowed to sign certificates.
fn certificate_authority(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().expect("CA key");
    CertifiedIssuer::self_signed(params, key).expect("self-signed CA certificate")
}

/// A certificate for `names` signed by `ca`, and its key: `(certificate PEM, key PEM)`.
fn leaf(
    ca: &CertifiedIssuer<'static, KeyPair>,
    common_name: &str,
    names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> (String, String) {
    let names: Vec<String> = names.iter().map(|&name| name.to_owned()).collect();
    let mut params = CertificateParams::new(names).expect("certificate parameters");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().expect("certificate key");
    let cert = params.signed_by(&key, ca).expect("sign the certificate");
    (cert.pem(), key.serialize_pem())
}

/// Writes `contents` to a new file, readable by its owner only (it may be a private key).
fn write_file(path: &Path, contents: &str) {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .unwrap_or_else(|err| panic!("create {}: {err}", path.display()));
    file.write_all(contents.as_bytes())
        .unwrap_or_else(|err| panic!("write {}: {err}", path.display()));
}
