//! SigV4 signing of every OTLP/HTTP export, for AWS's own OTLP endpoints (feature `aws`,
//! `OTEL_MONITOR_AWS_SIGV4=true`): traces to X-Ray (`https://xray.<region>.amazonaws.com/v1/traces`,
//! signing name `xray`), log records to CloudWatch Logs
//! (`https://logs.<region>.amazonaws.com/v1/logs`, `logs`), metrics to CloudWatch
//! (`https://monitoring.<region>.amazonaws.com/v1/metrics`, `monitoring`).
//!
//! The signing name follows the signal, not the endpoint's host: AWS has one OTLP endpoint per
//! signal, and a VPC endpoint or a proxy in front of it has another host but the same name.
//! Credentials come from the AWS SDK's default chain (environment, profile, web identity, ECS
//! container and EC2 instance metadata), fetched on the export thread that first needs them and
//! kept until [`REFRESH_BEFORE_EXPIRY`] before they expire. The region is `AWS_REGION`. No
//! credential ever appears in an error, a log line or `Debug` output.

use std::{
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::{Credentials, provider::ProvideCredentials};
use aws_sigv4::{
    http_request::{SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry_otlp::ExporterBuildError;

use super::{
    destination::{SignalKind, invalid},
    failures::render_chain,
};
use crate::config::{OtlpProtocol, Warnings, parse_spec_bool};

/// `OTEL_MONITOR_AWS_SIGV4`: `true` signs every OTLP/HTTP export with SigV4.
pub(crate) const OTEL_MONITOR_AWS_SIGV4: &str = "OTEL_MONITOR_AWS_SIGV4";
/// `AWS_REGION`: the region signed for.
const AWS_REGION: &str = "AWS_REGION";
/// Credentials are fetched again this long before they expire (the AWS SDK refreshes its
/// cached credentials ahead of expiry too), so that no export is signed with credentials that
/// expire in flight.
pub(crate) const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Signs the exports of one signal.
#[derive(Clone)]
pub(crate) struct SigV4 {
    credentials: Arc<CachedCredentials>,
    region: String,
    service: &'static str,
}

impl fmt::Debug for SigV4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigV4")
            .field("region", &self.region)
            .field("service", &self.service)
            .finish_non_exhaustive()
    }
}

impl SigV4 {
    /// The signer of `kind`'s exports when `OTEL_MONITOR_AWS_SIGV4` is `true`; `None` otherwise.
    /// An error when signing is on without a region, or for an OTLP/gRPC export.
    pub(crate) fn resolve(
        kind: SignalKind,
        protocol: OtlpProtocol,
        env: &impl Fn(&str) -> Option<String>,
        warnings: &mut Warnings,
    ) -> Result<Option<Self>, ExporterBuildError> {
        let on = env(OTEL_MONITOR_AWS_SIGV4)
            .filter(|value| !value.trim().is_empty())
            .is_some_and(|value| parse_spec_bool(OTEL_MONITOR_AWS_SIGV4, &value, warnings));
        if !on {
            return Ok(None);
        }
        if protocol != OtlpProtocol::HttpProtobuf {
            return Err(invalid(
                OTEL_MONITOR_AWS_SIGV4,
                format!(
                    "SigV4 signs OTLP/HTTP only, and {} goes over {protocol}: set \
                     OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
                    kind.name()
                ),
            ));
        }
        let region = env(AWS_REGION)
            .map(|region| region.trim().to_owned())
            .filter(|region| !region.is_empty())
            .ok_or_else(|| {
                invalid(
                    OTEL_MONITOR_AWS_SIGV4,
                    "signing needs a region: set AWS_REGION (for example eu-west-1)".to_owned(),
                )
            })?;
        Ok(Some(Self {
            credentials: Arc::new(CachedCredentials::new(&region)?),
            region,
            service: match kind {
                SignalKind::Traces => "xray",
                SignalKind::Logs => "logs",
                SignalKind::Metrics => "monitoring",
            },
        }))
    }

    /// The headers that sign a `POST` of `body` to `uri` with `headers` (which must be every
    /// header the request is sent with): `authorization`, `x-amz-date` and, with temporary
    /// credentials, `x-amz-security-token`. The body's hash is part of the signature. Blocks the
    /// export thread while credentials are fetched.
    pub(crate) fn sign(
        &self,
        uri: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Vec<(HeaderName, HeaderValue)>, String> {
        let identity = self.credentials.current()?.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|error| format!("cannot sign: {error}"))?
            .into();
        let headers = headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let request = SignableRequest::new("POST", uri, headers, SignableBody::Bytes(body))
            .map_err(|error| format!("cannot sign: {error}"))?;
        let (instructions, _) = sign(request, &params)
            .map_err(|error| format!("cannot sign: {error}"))?
            .into_parts();
        let (signed, _) = instructions.into_parts();
        signed
            .into_iter()
            .map(|header| {
                let name = HeaderName::from_bytes(header.name().as_bytes());
                let mut value = HeaderValue::from_str(header.value());
                if let Ok(value) = &mut value {
                    value.set_sensitive(header.sensitive());
                }
                match (name, value) {
                    (Ok(name), Ok(value)) => Ok((name, value)),
                    _ => Err("cannot sign: a signature header is not valid".to_owned()),
                }
            })
            .collect()
    }
}

/// The default credential chain, and the credentials it last gave while they are fresh.
struct CachedCredentials {
    chain: DefaultCredentialsChain,
    /// Runs the chain's fetches (HTTP to the container or instance metadata, STS): taken out and
    /// shut down in the background on drop, which may happen inside the application's runtime.
    runtime: Option<tokio::runtime::Runtime>,
    current: Mutex<Option<Credentials>>,
}

impl CachedCredentials {
    fn new(region: &str) -> Result<Self, ExporterBuildError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("otel-monitor-aws-credentials")
            .build()
            .map_err(|error| ExporterBuildError::InternalFailure(error.to_string()))?;
        let region = aws_config::Region::new(region.to_owned());
        let chain = on_a_thread_of_its_own(&runtime, async move {
            DefaultCredentialsChain::builder()
                .region(region)
                .build()
                .await
        })?;
        Ok(Self {
            chain,
            runtime: Some(runtime),
            current: Mutex::new(None),
        })
    }

    /// Credentials valid for at least [`REFRESH_BEFORE_EXPIRY`] more, fetched when the cached
    /// ones are not; if the fetch fails, the cached ones while they have not expired.
    fn current(&self) -> Result<Credentials, String> {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = SystemTime::now();
        let valid_after = |credentials: &Credentials, instant: SystemTime| {
            credentials.expiry().is_none_or(|expiry| expiry > instant)
        };
        if let Some(credentials) = current.as_ref()
            && valid_after(credentials, now + REFRESH_BEFORE_EXPIRY)
        {
            return Ok(credentials.clone());
        }
        let runtime = self
            .runtime
            .as_ref()
            .ok_or("the AWS credentials are closed")?;
        let fetched = on_a_thread_of_its_own(runtime, self.chain.provide_credentials())
            .map_err(|error| error.to_string())?;
        match fetched {
            Ok(credentials) => {
                *current = Some(credentials.clone());
                Ok(credentials)
            }
            Err(error) => match current.as_ref() {
                Some(credentials) if valid_after(credentials, now) => Ok(credentials.clone()),
                _ => Err(format!(
                    "no AWS credentials from the default chain: {}",
                    render_chain(&error)
                )),
            },
        }
    }
}

impl Drop for CachedCredentials {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Runs `future` to completion on `runtime`, from a thread of its own: the caller may be inside
/// another Tokio runtime (the application's, at `init()`), where blocking on one panics.
fn on_a_thread_of_its_own<F>(
    runtime: &tokio::runtime::Runtime,
    future: F,
) -> Result<F::Output, ExporterBuildError>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("otel-monitor-aws-credentials".to_owned())
            .spawn_scoped(scope, || runtime.block_on(future))
            .map_err(|error| ExporterBuildError::InternalFailure(error.to_string()))?
            .join()
            .map_err(|_| {
                ExporterBuildError::InternalFailure("fetching AWS credentials panicked".to_owned())
            })
    })
}

/// The crate's OTLP/HTTP client, signing each request first when the destination asks for it.
#[derive(Debug)]
pub(crate) struct SigningClient<C> {
    inner: C,
    sigv4: Option<SigV4>,
}

impl<C> SigningClient<C> {
    pub(crate) fn new(inner: C, sigv4: Option<SigV4>) -> Self {
        Self { inner, sigv4 }
    }
}

#[async_trait::async_trait]
impl<C: opentelemetry_http::HttpClient> opentelemetry_http::HttpClient for SigningClient<C> {
    async fn send_bytes(
        &self,
        mut request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        if let Some(sigv4) = &self.sigv4 {
            let signature = sigv4.sign(
                &request.uri().to_string(),
                request.headers(),
                request.body(),
            )?;
            request.headers_mut().extend(signature);
        }
        self.inner.send_bytes(request).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(
        protocol: OtlpProtocol,
        vars: &[(&str, &str)],
    ) -> Result<Option<SigV4>, ExporterBuildError> {
        let env = |name: &str| {
            vars.iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| (*value).to_owned())
        };
        SigV4::resolve(SignalKind::Logs, protocol, &env, &mut Warnings::default())
    }

    #[test]
    fn signing_is_off_unless_asked_and_needs_http_and_a_region() {
        let http = OtlpProtocol::HttpProtobuf;
        assert!(resolve(http, &[]).unwrap().is_none());
        assert!(
            resolve(http, &[(OTEL_MONITOR_AWS_SIGV4, "false")])
                .unwrap()
                .is_none()
        );
        let no_region = resolve(http, &[(OTEL_MONITOR_AWS_SIGV4, "TRUE")]).unwrap_err();
        assert_eq!(
            no_region.to_string(),
            "invalid exporter configuration: OTEL_MONITOR_AWS_SIGV4: signing needs a region: set \
             AWS_REGION (for example eu-west-1)"
        );
        let grpc = resolve(
            OtlpProtocol::Grpc,
            &[(OTEL_MONITOR_AWS_SIGV4, "true"), (AWS_REGION, "eu-west-1")],
        )
        .unwrap_err();
        assert!(
            grpc.to_string().contains("SigV4 signs OTLP/HTTP only"),
            "{grpc}"
        );
        let signer = resolve(
            http,
            &[(OTEL_MONITOR_AWS_SIGV4, "true"), (AWS_REGION, "eu-west-1")],
        )
        .unwrap()
        .unwrap();
        assert_eq!(signer.service, "logs");
        assert_eq!(
            format!("{signer:?}"),
            r#"SigV4 { region: "eu-west-1", service: "logs", .. }"#
        );
    }
}
