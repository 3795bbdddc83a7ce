//! Where and how one signal is sent: the endpoint, the headers, the timeout, the compression and
//! the TLS material, resolved once at `init()` from the OTLP exporter variables and the builder.
//!
//! Every signal reads the same variables the same way (the OTLP exporter specification,
//! <https://opentelemetry.io/docs/specs/otel/protocol/exporter/>, as of specification 1.44):
//! the per-signal `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_*` variable first, then the general
//! `OTEL_EXPORTER_OTLP_*` one. A value that cannot be used fails `init()` with the variable's
//! name; a header's value never appears in an error, a log line or `Debug` output, and the
//! endpoint is shown without user info or query.

use std::{fmt, time::Duration};

use ::http::{HeaderName, HeaderValue, Uri};
use opentelemetry_otlp::ExporterBuildError;

use super::tls::{Tls, TlsOverrides};
use crate::config::{OtlpProtocol, Warnings, parse_spec_bool};

/// One of the three signals, for naming variables, paths and reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SignalKind {
    Traces,
    Metrics,
    Logs,
}

impl SignalKind {
    /// `traces`, `metrics` or `logs`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Traces => "traces",
            Self::Metrics => "metrics",
            Self::Logs => "logs",
        }
    }

    /// The variable `OTEL_EXPORTER_OTLP_{SIGNAL}_{setting}`, then `OTEL_EXPORTER_OTLP_{setting}`.
    pub(crate) fn variables(self, setting: &str) -> [String; 2] {
        let signal = self.name().to_ascii_uppercase();
        [
            format!("OTEL_EXPORTER_OTLP_{signal}_{setting}"),
            format!("OTEL_EXPORTER_OTLP_{setting}"),
        ]
    }

    /// The OTLP/HTTP path: `v1/traces`, `v1/metrics` or `v1/logs`.
    fn http_path(self) -> &'static str {
        match self {
            Self::Traces => "v1/traces",
            Self::Metrics => "v1/metrics",
            Self::Logs => "v1/logs",
        }
    }
}

/// How a request body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compression {
    None,
    Gzip,
}

/// Where and how one signal is exported over OTLP.
#[derive(Debug, Clone)]
pub(crate) struct Destination {
    pub(crate) kind: SignalKind,
    pub(crate) protocol: OtlpProtocol,
    /// The whole URL: with the signal's path over HTTP, `scheme://host:port` over gRPC.
    pub(crate) endpoint: Uri,
    pub(crate) headers: Headers,
    /// The deadline of one export, retries included.
    pub(crate) timeout: Duration,
    pub(crate) compression: Compression,
    pub(crate) tls: Tls,
    /// Signs every export, when `OTEL_MONITOR_AWS_SIGV4` is `true`.
    #[cfg(feature = "aws")]
    pub(crate) sigv4: Option<super::aws_sigv4::SigV4>,
}

/// The OTLP exporters' default timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

impl Destination {
    /// Resolves a signal's destination from `env` (the process environment, or a map in tests)
    /// and the builder's TLS settings; what it ignores with a warning goes to `warnings`.
    pub(crate) fn resolve(
        kind: SignalKind,
        protocol: OtlpProtocol,
        tls: &TlsOverrides,
        env: &impl Fn(&str) -> Option<String>,
        warnings: &mut Warnings,
    ) -> Result<Self, ExporterBuildError> {
        let setting = |name: &str| first_set(env, kind.variables(name));
        let endpoint = match (setting("ENDPOINT"), protocol) {
            (Some((variable, endpoint)), _)
                if variable.contains(&kind.name().to_ascii_uppercase()) =>
            {
                endpoint
            }
            (Some((_, base)), OtlpProtocol::HttpProtobuf) => {
                format!("{}/{}", base.trim_end_matches('/'), kind.http_path())
            }
            (Some((_, base)), OtlpProtocol::Grpc) => base,
            (None, OtlpProtocol::HttpProtobuf) => {
                format!("http://localhost:4318/{}", kind.http_path())
            }
            (None, OtlpProtocol::Grpc) => "http://localhost:4317".to_owned(),
        };
        // OTEL_EXPORTER_OTLP_INSECURE applies only to a gRPC endpoint given without a scheme.
        let endpoint = if protocol == OtlpProtocol::Grpc && !endpoint.contains("://") {
            let insecure = tls.insecure.unwrap_or_else(|| {
                setting("INSECURE")
                    .is_some_and(|(variable, value)| parse_spec_bool(&variable, &value, warnings))
            });
            format!("{}://{endpoint}", if insecure { "http" } else { "https" })
        } else {
            endpoint
        };
        let [endpoint_variable, _] = kind.variables("ENDPOINT");
        let endpoint: Uri = endpoint.parse().map_err(|_| {
            invalid(
                &endpoint_variable,
                format!("{} is not a URL", redact(&endpoint)),
            )
        })?;
        if !matches!(endpoint.scheme_str(), Some("http" | "https")) || endpoint.host().is_none() {
            return Err(invalid(
                &endpoint_variable,
                format!(
                    "{} is not an http:// or https:// URL",
                    redact(&endpoint.to_string())
                ),
            ));
        }

        let headers = match setting("HEADERS") {
            Some((variable, value)) => {
                Headers::parse(&value).map_err(|reason| invalid(&variable, reason))?
            }
            None => Headers::default(),
        };
        let timeout = match setting("TIMEOUT") {
            Some((variable, value)) => value
                .trim()
                .parse()
                .map(Duration::from_millis)
                .map_err(|_| invalid(&variable, format!("{value:?} is not milliseconds")))?,
            None => DEFAULT_TIMEOUT,
        };
        let compression = match setting("COMPRESSION") {
            Some((variable, value)) => match value.trim().to_ascii_lowercase().as_str() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                _ => {
                    return Err(invalid(
                        &variable,
                        format!("{value:?} is not valid: expected one of gzip, none"),
                    ));
                }
            },
            None => Compression::None,
        };
        let tls = Tls::resolve(kind, tls, env)?;
        Ok(Self {
            kind,
            protocol,
            endpoint,
            headers,
            timeout,
            compression,
            tls,
            #[cfg(feature = "aws")]
            sigv4: super::aws_sigv4::SigV4::resolve(kind, protocol, env, warnings)?,
        })
    }

    /// The endpoint without user info or query, for the console.
    pub(crate) fn shown_endpoint(&self) -> String {
        redact(&self.endpoint.to_string())
    }

    /// Whether the connection is TLS.
    pub(crate) fn is_https(&self) -> bool {
        self.endpoint.scheme_str() == Some("https")
    }
}

/// The first of two variables that is set and not empty, with its name.
fn first_set(
    env: &impl Fn(&str) -> Option<String>,
    variables: [String; 2],
) -> Option<(String, String)> {
    variables.into_iter().find_map(|variable| {
        let value = env(&variable).filter(|value| !value.trim().is_empty())?;
        Some((variable, value))
    })
}

pub(crate) fn invalid(setting: &str, reason: String) -> ExporterBuildError {
    ExporterBuildError::InvalidConfiguration(format!("{setting}: {reason}"))
}

/// A URL as it may be shown: without user info, query or fragment, which can hold credentials.
pub(crate) fn redact(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if scheme.is_empty() {
        format!("{host}{path}")
    } else {
        format!("{scheme}://{host}{path}")
    }
}

/// The headers sent with every export, from `OTEL_EXPORTER_OTLP_(SIGNAL_)HEADERS`. Their
/// values are often API keys: `Debug` shows the names only.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) struct Headers(pub(crate) Vec<(HeaderName, HeaderValue)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(name, _)| (name, "<redacted>")))
            .finish()
    }
}

impl Headers {
    /// Parses `key=value,key=value`, values percent-decoded, as the OTLP exporter specification
    /// says. An error names the pair by its position and the header by its name, never a value.
    fn parse(value: &str) -> Result<Self, String> {
        value
            .split(',')
            .enumerate()
            .filter(|(_, pair)| !pair.trim().is_empty())
            .map(|(index, pair)| {
                let position = index + 1;
                let (name, value) = pair
                    .split_once('=')
                    .ok_or_else(|| format!("pair {position} is not key=value"))?;
                let name = HeaderName::try_from(name.trim())
                    .map_err(|_| format!("pair {position} does not start with a header name"))?;
                let mut value = percent_decode(value.trim())
                    .and_then(|value| HeaderValue::try_from(value).ok())
                    .ok_or_else(|| format!("the value of {name} is not a valid header value"))?;
                // Sensitive: `Debug` of any map holding it prints `Sensitive`, and HTTP/2 never
                // adds it to a compression table.
                value.set_sensitive(true);
                Ok((name, value))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        if bytes[index] == b'%' {
            let hex = value.get(index + 1..index + 3)?;
            decoded.push(u8::from_str_radix(hex, 16).ok()?);
            index += 3;
        } else {
            decoded.push(bytes[index]);
            index += 1;
        }
    }
    String::from_utf8(decoded).ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn resolve(
        kind: SignalKind,
        protocol: OtlpProtocol,
        vars: &[(&str, &str)],
    ) -> (Result<Destination, ExporterBuildError>, Warnings) {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut warnings = Warnings::default();
        let destination = Destination::resolve(
            kind,
            protocol,
            &TlsOverrides::default(),
            &|name: &str| vars.get(name).cloned(),
            &mut warnings,
        );
        (destination, warnings)
    }

    fn endpoint(kind: SignalKind, protocol: OtlpProtocol, vars: &[(&str, &str)]) -> String {
        resolve(kind, protocol, vars)
            .0
            .unwrap()
            .endpoint
            .to_string()
    }

    #[test]
    fn endpoints_follow_the_exporter_specification() {
        use OtlpProtocol::*;
        use SignalKind::*;
        assert_eq!(
            endpoint(Traces, HttpProtobuf, &[]),
            "http://localhost:4318/v1/traces"
        );
        assert_eq!(endpoint(Logs, Grpc, &[]), "http://localhost:4317/");
        let general = [(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://collector:4318/base/",
        )];
        assert_eq!(
            endpoint(Metrics, HttpProtobuf, &general),
            "https://collector:4318/base/v1/metrics"
        );
        let per_signal = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "https://traces:1234/exact",
            ),
        ];
        assert_eq!(
            endpoint(Traces, HttpProtobuf, &per_signal),
            "https://traces:1234/exact"
        );
        assert_eq!(
            endpoint(Logs, HttpProtobuf, &per_signal),
            "https://collector:4318/v1/logs"
        );
    }

    #[test]
    fn a_grpc_endpoint_without_scheme_is_tls_unless_insecure() {
        let endpoint_only = [("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")];
        assert_eq!(
            endpoint(SignalKind::Traces, OtlpProtocol::Grpc, &endpoint_only),
            "https://collector:4317/"
        );
        let insecure = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "TRUE"),
        ];
        assert_eq!(
            endpoint(SignalKind::Traces, OtlpProtocol::Grpc, &insecure),
            "http://collector:4317/"
        );
        // An explicit scheme wins over INSECURE.
        let explicit = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4317"),
            ("OTEL_EXPORTER_OTLP_INSECURE", "true"),
        ];
        assert_eq!(
            endpoint(SignalKind::Traces, OtlpProtocol::Grpc, &explicit),
            "https://collector:4317/"
        );
        // The builder's choice wins over the variable.
        let mut warnings = Warnings::default();
        let overridden = Destination::resolve(
            SignalKind::Traces,
            OtlpProtocol::Grpc,
            &TlsOverrides {
                insecure: Some(false),
                ..TlsOverrides::default()
            },
            &|name: &str| {
                insecure
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            },
            &mut warnings,
        );
        assert_eq!(
            overridden.unwrap().endpoint.to_string(),
            "https://collector:4317/"
        );
        // A value that is neither true nor false is false, with a warning naming it.
        let odd = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317"),
            ("OTEL_EXPORTER_OTLP_TRACES_INSECURE", "1"),
        ];
        let (destination, warnings) = resolve(SignalKind::Traces, OtlpProtocol::Grpc, &odd);
        assert_eq!(
            destination.unwrap().endpoint.to_string(),
            "https://collector:4317/"
        );
        assert_eq!(warnings.0.len(), 1);
        assert!(
            warnings.0[0].contains("OTEL_EXPORTER_OTLP_TRACES_INSECURE"),
            "{:?}",
            warnings.0
        );
    }

    #[test]
    fn urls_are_shown_without_user_info_or_query() {
        assert_eq!(
            redact("https://user:secret@collector:4318/v1/traces?api_key=secret#x"),
            "https://collector:4318/v1/traces"
        );
        assert_eq!(redact("http://localhost:4317"), "http://localhost:4317");
        let (error, _) = resolve(
            SignalKind::Traces,
            OtlpProtocol::HttpProtobuf,
            &[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "ftp://user:secret@host?k=secret",
            )],
        );
        let error = error.unwrap_err().to_string();
        assert!(
            error.contains("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");
    }

    #[test]
    fn headers_are_parsed_percent_decoded_and_never_shown() {
        let headers = Headers::parse("api-key=a%20b%3Dc, x-tenant = blue ,").unwrap();
        assert_eq!(
            headers.0,
            [
                (
                    HeaderName::from_static("api-key"),
                    HeaderValue::from_static("a b=c")
                ),
                (
                    HeaderName::from_static("x-tenant"),
                    HeaderValue::from_static("blue")
                ),
            ]
        );
        assert_eq!(
            format!("{headers:?}"),
            r#"{"api-key": "<redacted>", "x-tenant": "<redacted>"}"#
        );
        for (value, reason) in [
            ("x-api-key:SECRET", "pair 1 is not key=value"),
            (
                "a=1,bad name=SECRET",
                "pair 2 does not start with a header name",
            ),
            (
                "key=%zzSECRET",
                "the value of key is not a valid header value",
            ),
        ] {
            let (error, _) = resolve(
                SignalKind::Logs,
                OtlpProtocol::Grpc,
                &[("OTEL_EXPORTER_OTLP_HEADERS", value)],
            );
            let error = error.unwrap_err().to_string();
            assert!(
                error.contains(&format!("OTEL_EXPORTER_OTLP_HEADERS: {reason}")),
                "{error}"
            );
            assert!(!error.contains("SECRET"), "{error}");
        }
    }

    #[test]
    fn debug_output_shows_no_header_value() {
        let (destination, _) = resolve(
            SignalKind::Traces,
            OtlpProtocol::HttpProtobuf,
            &[("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=hunter2")],
        );
        let destination = destination.unwrap();
        let debug = format!("{destination:?}");
        assert!(debug.contains("x-api-key"), "{debug}");
        assert!(!debug.contains("hunter2"), "{debug}");
        let map: ::http::HeaderMap = destination.headers.0.into_iter().collect();
        assert!(!format!("{map:?}").contains("hunter2"), "{map:?}");
    }

    #[test]
    fn without_variables_an_export_has_10_s_and_no_compression_on_every_signal_and_transport() {
        for kind in [SignalKind::Traces, SignalKind::Metrics, SignalKind::Logs] {
            for protocol in [OtlpProtocol::HttpProtobuf, OtlpProtocol::Grpc] {
                let destination = resolve(kind, protocol, &[]).0.unwrap();
                assert_eq!(destination.timeout, Duration::from_millis(10000));
                assert_eq!(destination.compression, Compression::None);
            }
        }
    }

    #[test]
    fn timeout_and_compression_are_read_per_signal_then_generally() {
        let vars = [
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            ("OTEL_EXPORTER_OTLP_METRICS_COMPRESSION", "none"),
        ];
        let traces = resolve(SignalKind::Traces, OtlpProtocol::Grpc, &vars)
            .0
            .unwrap();
        assert_eq!(traces.timeout, Duration::from_millis(2500));
        assert_eq!(traces.compression, Compression::Gzip);
        let metrics = resolve(SignalKind::Metrics, OtlpProtocol::Grpc, &vars)
            .0
            .unwrap();
        assert_eq!(metrics.compression, Compression::None);
        for (variable, value) in [
            ("OTEL_EXPORTER_OTLP_LOGS_COMPRESSION", "zstd"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
        ] {
            let (error, _) = resolve(
                SignalKind::Logs,
                OtlpProtocol::HttpProtobuf,
                &[(variable, value)],
            );
            let error = error.unwrap_err().to_string();
            assert!(error.contains(variable), "{error}");
        }
    }
}
