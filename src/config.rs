//! The settings the OpenTelemetry SDK leaves to the application, resolved from the
//! standard `OTEL_*` environment variables and the builder's overrides.
//!
//! Everything the SDK and the OTLP exporter already read themselves
//! (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`, ...)
//! is left to them. What is resolved here is what they do not read, or only warn about: a bad
//! value is an error naming the variable and the values it accepts, never a silent fallback.

use std::fmt;

use opentelemetry_sdk::metrics::Temporality;

use crate::HostMetricGroup;

/// `OTEL_SDK_DISABLED`: `true` turns every signal off.
pub(crate) const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
/// `OTEL_TRACES_EXPORTER`: where spans go (`otlp`, `console`, `none`).
pub(crate) const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
/// `OTEL_METRICS_EXPORTER`: where metrics go (`otlp`, `console`, `none`).
pub(crate) const OTEL_METRICS_EXPORTER: &str = "OTEL_METRICS_EXPORTER";
/// `OTEL_LOGS_EXPORTER`: where log records go (`otlp`, `console`, `none`).
pub(crate) const OTEL_LOGS_EXPORTER: &str = "OTEL_LOGS_EXPORTER";
/// `OTEL_EXPORTER_OTLP_PROTOCOL`: the OTLP transport of every signal.
pub(crate) const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`: the OTLP transport of spans.
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_METRICS_PROTOCOL`: the OTLP transport of metrics.
pub(crate) const OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_LOGS_PROTOCOL`: the OTLP transport of log records.
pub(crate) const OTEL_EXPORTER_OTLP_LOGS_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL";
/// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`: `cumulative`, `delta` or `lowmemory`.
pub(crate) const OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: &str =
    "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE";
/// `OTEL_PROPAGATORS`: the context propagators (`tracecontext`, `baggage`, `none`).
pub(crate) const OTEL_PROPAGATORS: &str = "OTEL_PROPAGATORS";
/// `OTEL_MONITOR_HOST_METRICS`: `false` turns the host and process metrics off.
pub(crate) const OTEL_MONITOR_HOST_METRICS: &str = "OTEL_MONITOR_HOST_METRICS";
/// `OTEL_MONITOR_HOST_METRICS_GROUPS`: which groups of host and process metrics to report.
pub(crate) const OTEL_MONITOR_HOST_METRICS_GROUPS: &str = "OTEL_MONITOR_HOST_METRICS_GROUPS";
/// `OTEL_MONITOR_PUBLIC_ENDPOINT`: `true` makes a `MonitorLayer` link the incoming trace context
/// instead of continuing it, and drop the incoming baggage.
pub(crate) const OTEL_MONITOR_PUBLIC_ENDPOINT: &str = "OTEL_MONITOR_PUBLIC_ENDPOINT";
/// `OTEL_MONITOR_EXPORT_FILTER`: which `tracing` spans and events become OpenTelemetry spans and
/// log records, in `RUST_LOG`'s syntax (`info` by default); `RUST_LOG` filters the console only.
pub(crate) const OTEL_MONITOR_EXPORT_FILTER: &str = "OTEL_MONITOR_EXPORT_FILTER";
/// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`: the most characters of a span attribute's value.
pub(crate) const OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str =
    "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT";
/// `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`: the same for the attributes of every signal.
pub(crate) const OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: &str = "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT";

/// Where a signal is exported. A signal can go to several; none at all turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Exporter {
    /// OTLP to a collector, over the [`OtlpProtocol`] configured (the default).
    Otlp,
    /// Human-readable lines on standard output, for local development.
    Console,
    /// Metrics only: served for Prometheus to scrape, see
    /// [`Telemetry::prometheus`](crate::Telemetry::prometheus).
    #[cfg(feature = "prometheus")]
    Prometheus,
}

impl Exporter {
    const ACCEPTED: &'static str = "otlp, console, none (comma-separated)";
    #[cfg(feature = "prometheus")]
    const ACCEPTED_FOR_METRICS: &'static str = "otlp, prometheus, console, none (comma-separated)";
    #[cfg(not(feature = "prometheus"))]
    const ACCEPTED_FOR_METRICS: &'static str =
        "otlp, console, none (comma-separated; prometheus needs the `prometheus` feature)";

    /// Parses a comma-separated list as `OTEL_*_EXPORTER` holds it; `none` adds nothing, and
    /// `prometheus` is accepted for `metrics` only.
    #[cfg_attr(not(feature = "prometheus"), allow(unused_variables))]
    fn parse_list(value: &str, metrics: bool) -> Option<Vec<Self>> {
        let mut exporters = Vec::new();
        for name in value
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
        {
            let exporter = match name.as_str() {
                "otlp" => Self::Otlp,
                "console" => Self::Console,
                #[cfg(feature = "prometheus")]
                "prometheus" if metrics => Self::Prometheus,
                "none" => continue,
                _ => return None,
            };
            if !exporters.contains(&exporter) {
                exporters.push(exporter);
            }
        }
        Some(exporters)
    }
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies, port 4318 by default: the specification's default.
    HttpProtobuf,
    /// OTLP/gRPC, port 4317 by default. Runs on the crate's own Tokio runtime thread, so it works
    /// in or out of the application's runtime.
    Grpc,
}

impl OtlpProtocol {
    const ACCEPTED: &'static str = "http/protobuf, grpc";

    fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "http/protobuf" => Some(Self::HttpProtobuf),
            "grpc" => Some(Self::Grpc),
            _ => None,
        }
    }
}

impl fmt::Display for OtlpProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::HttpProtobuf => "http/protobuf",
            Self::Grpc => "grpc",
        })
    }
}

/// The values of `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`.
const TEMPORALITY_ACCEPTED: &str = "cumulative, delta, lowmemory";

/// Reads a temporality preference, case-insensitive, as the OTLP exporter specification (v1.60.0,
/// specification/metrics/sdk_exporters/otlp.md) names them. What each means per instrument kind
/// is the SDK's: under `delta`, Counter, asynchronous Counter and Histogram are delta and both
/// UpDownCounters stay cumulative; under `lowmemory`, only the synchronous Counter and Histogram
/// are delta.
fn parse_temporality(value: &str) -> Option<Temporality> {
    match value.to_ascii_lowercase().as_str() {
        "cumulative" => Some(Temporality::Cumulative),
        "delta" => Some(Temporality::Delta),
        "lowmemory" => Some(Temporality::LowMemory),
        _ => None,
    }
}

/// A context propagator, as named in `OTEL_PROPAGATORS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Propagator {
    /// W3C Trace Context: `traceparent` and `tracestate`.
    TraceContext,
    /// W3C Baggage: `baggage`.
    Baggage,
}

impl Propagator {
    const ACCEPTED: &'static str = "tracecontext, baggage, none";
    /// The default of the specification: W3C Trace Context and Baggage.
    pub(crate) const DEFAULT: [Self; 2] = [Self::TraceContext, Self::Baggage];

    /// Parses a comma-separated list; `none` alone means no propagation.
    fn parse_list(value: &str) -> Option<Vec<Self>> {
        let mut propagators = Vec::new();
        for name in value
            .split(',')
            .map(|name| name.trim().to_ascii_lowercase())
        {
            let propagator = match name.as_str() {
                "tracecontext" => Self::TraceContext,
                "baggage" => Self::Baggage,
                "none" => continue,
                _ => return None,
            };
            if !propagators.contains(&propagator) {
                propagators.push(propagator);
            }
        }
        Some(propagators)
    }
}

/// An environment variable holds a value this crate cannot use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}={value:?} is not valid: expected one of {expected}")]
pub struct ConfigError {
    /// The variable, for example `OTEL_TRACES_EXPORTER`.
    pub variable: &'static str,
    /// The value it held.
    pub value: String,
    /// The values it accepts.
    pub expected: &'static str,
}

/// What the configuration ignored, to be logged once the console is set up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Warnings(pub(crate) Vec<String>);

impl Warnings {
    pub(crate) fn push(&mut self, warning: String) {
        self.0.push(warning);
    }
}

/// A boolean variable as the specification reads it (Environment Variable Specification,
/// "Parsing", v1.44): true only for `true`, in any case; anything else is false, and a value
/// other than `false` gets a warning.
pub(crate) fn parse_spec_bool(variable: &str, value: &str, warnings: &mut Warnings) -> bool {
    let value = value.trim();
    if value.eq_ignore_ascii_case("true") {
        return true;
    }
    if !value.eq_ignore_ascii_case("false") {
        warnings.push(format!(
            "{variable}={value:?} is neither true nor false: read as false"
        ));
    }
    false
}

/// What the builder set in code; `None` leaves the choice to the environment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub(crate) sdk_disabled: Option<bool>,
    pub(crate) traces_exporters: Option<Vec<Exporter>>,
    pub(crate) metrics_exporters: Option<Vec<Exporter>>,
    pub(crate) logs_exporters: Option<Vec<Exporter>>,
    pub(crate) protocol: Option<OtlpProtocol>,
    pub(crate) propagators: Option<Vec<Propagator>>,
    pub(crate) host_metrics: Option<bool>,
    pub(crate) host_metric_groups: Option<Vec<HostMetricGroup>>,
}

/// The resolved settings: code first, then the environment, then the specification's defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) sdk_disabled: bool,
    pub(crate) traces: Signal,
    pub(crate) metrics: Signal,
    /// The temporality preference of every push metric exporter (OTLP and console); Prometheus
    /// is cumulative whatever it says.
    pub(crate) metrics_temporality: Temporality,
    pub(crate) logs: Signal,
    pub(crate) propagators: Vec<Propagator>,
    /// The host and process metric groups to report; empty when they are off.
    pub(crate) host_metric_groups: Vec<HostMetricGroup>,
    pub(crate) warnings: Warnings,
}

/// How one signal is exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signal {
    /// Empty when the signal is off.
    pub(crate) exporters: Vec<Exporter>,
    pub(crate) protocol: OtlpProtocol,
}

impl Signal {
    pub(crate) fn exports_to(&self, exporter: Exporter) -> bool {
        self.exporters.contains(&exporter)
    }
}

impl Settings {
    /// Resolves the settings, reading variables through `env` (the process environment in
    /// production, a map in tests).
    pub(crate) fn resolve(
        overrides: &Overrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let mut warnings = Warnings::default();
        let set = |variable| env(variable).filter(|value| !value.trim().is_empty());
        let sdk_disabled = match overrides.sdk_disabled {
            Some(disabled) => disabled,
            None => set(OTEL_SDK_DISABLED)
                .is_some_and(|value| parse_spec_bool(OTEL_SDK_DISABLED, &value, &mut warnings)),
        };
        // On unless `false`: a value that is neither keeps the default, with a warning.
        let host_metrics = match overrides.host_metrics {
            Some(enabled) => enabled,
            None => match set(OTEL_MONITOR_HOST_METRICS) {
                Some(value) if value.trim().eq_ignore_ascii_case("false") => false,
                Some(value) if !value.trim().eq_ignore_ascii_case("true") => {
                    warnings.push(format!(
                        "{OTEL_MONITOR_HOST_METRICS}={value:?} is neither true nor false: \
                         host metrics stay on"
                    ));
                    true
                }
                _ => true,
            },
        };
        let host_metric_groups = match &overrides.host_metric_groups {
            Some(groups) => groups.clone(),
            None => parse(
                &env,
                OTEL_MONITOR_HOST_METRICS_GROUPS,
                HostMetricGroup::ACCEPTED,
                |value| {
                    let mut groups = Vec::new();
                    for name in value.split(',') {
                        let group = HostMetricGroup::parse(name)?;
                        if !groups.contains(&group) {
                            groups.push(group);
                        }
                    }
                    Some(groups)
                },
            )?
            .unwrap_or_else(|| HostMetricGroup::ALL.to_vec()),
        };
        // `OTEL_SDK_DISABLED` turns every signal off, whatever else says otherwise.
        let exporters = |set: &Option<Vec<Exporter>>, variable| -> Result<_, ConfigError> {
            let metrics = variable == OTEL_METRICS_EXPORTER;
            let expected = if metrics {
                Exporter::ACCEPTED_FOR_METRICS
            } else {
                Exporter::ACCEPTED
            };
            let exporters = match set {
                Some(exporters) => exporters.clone(),
                None => parse(&env, variable, expected, |value| {
                    Exporter::parse_list(value, metrics)
                })?
                .unwrap_or_else(|| vec![Exporter::Otlp]),
            };
            Ok(if sdk_disabled { Vec::new() } else { exporters })
        };
        let general_protocol = parse(
            &env,
            OTEL_EXPORTER_OTLP_PROTOCOL,
            OtlpProtocol::ACCEPTED,
            OtlpProtocol::parse,
        )?;
        let protocol = |variable| -> Result<OtlpProtocol, ConfigError> {
            let per_signal = parse(&env, variable, OtlpProtocol::ACCEPTED, OtlpProtocol::parse)?;
            Ok(overrides
                .protocol
                .or(per_signal)
                .or(general_protocol)
                .unwrap_or(OtlpProtocol::HttpProtobuf))
        };
        let propagators = match &overrides.propagators {
            Some(propagators) => propagators.clone(),
            None => parse(
                &env,
                OTEL_PROPAGATORS,
                Propagator::ACCEPTED,
                Propagator::parse_list,
            )?
            .unwrap_or_else(|| Propagator::DEFAULT.to_vec()),
        };

        // The stock OTLP metric exporter reads this variable too, but only warns about a value it
        // cannot use, and the console exporter does not read it: it is read once here, for both.
        let metrics_temporality = parse(
            &env,
            OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE,
            TEMPORALITY_ACCEPTED,
            parse_temporality,
        )?
        .unwrap_or_default();

        Ok(Self {
            sdk_disabled,
            traces: Signal {
                exporters: exporters(&overrides.traces_exporters, OTEL_TRACES_EXPORTER)?,
                protocol: protocol(OTEL_EXPORTER_OTLP_TRACES_PROTOCOL)?,
            },
            metrics: Signal {
                exporters: exporters(&overrides.metrics_exporters, OTEL_METRICS_EXPORTER)?,
                protocol: protocol(OTEL_EXPORTER_OTLP_METRICS_PROTOCOL)?,
            },
            metrics_temporality,
            logs: Signal {
                exporters: exporters(&overrides.logs_exporters, OTEL_LOGS_EXPORTER)?,
                protocol: protocol(OTEL_EXPORTER_OTLP_LOGS_PROTOCOL)?,
            },
            propagators,
            host_metric_groups: if host_metrics && !sdk_disabled {
                host_metric_groups
            } else {
                Vec::new()
            },
            warnings,
        })
    }
}

/// The span attribute value length limit the environment sets, read through `env`:
/// `OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else `OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT`, else
/// `None` (the specification v1.44.0, "Attribute Limits": the model-specific limit first, then the
/// general one). The OpenTelemetry SDK does not read either. As it reads its count limits
/// (`OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT`), and as the specification asks of a numeric value it
/// cannot use, a value that is not a non-negative integer is ignored as if unset, here with a
/// warning; empty is unset.
pub(crate) fn span_attribute_value_length_limit(
    env: impl Fn(&str) -> Option<String>,
    warnings: &mut Warnings,
) -> Option<usize> {
    [
        OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
        OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT,
    ]
    .into_iter()
    .find_map(|variable| {
        let value = env(variable)?;
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let limit = value.parse().ok();
        if limit.is_none() {
            warnings.push(format!(
                "{variable}={value:?} is not a non-negative integer: ignored"
            ));
        }
        limit
    })
}

/// Whether the environment makes the service a public endpoint (`OTEL_MONITOR_PUBLIC_ENDPOINT`,
/// read through `env`): only `true` is true; unset and empty are false, and any other value is
/// false with a warning, as the specification reads a boolean (v1.44.0), whose unset value must
/// be false: hence a name under which off, continuing the incoming trace as today, is the
/// default.
pub(crate) fn public_endpoint(
    env: impl Fn(&str) -> Option<String>,
    warnings: &mut Warnings,
) -> bool {
    env(OTEL_MONITOR_PUBLIC_ENDPOINT)
        .filter(|value| !value.trim().is_empty())
        .is_some_and(|value| parse_spec_bool(OTEL_MONITOR_PUBLIC_ENDPOINT, &value, warnings))
}

/// Reads `variable` through `env` and parses it; unset and empty are `None`, and a value the
/// parser refuses is an error naming the variable and the `expected` values.
fn parse<T>(
    env: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    expected: &'static str,
    parser: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ConfigError> {
    let Some(value) = env(variable).filter(|value| !value.trim().is_empty()) else {
        return Ok(None);
    };
    match parser(value.trim()) {
        Some(parsed) => Ok(Some(parsed)),
        None => Err(ConfigError {
            variable,
            value,
            expected,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(vars: &[(&str, &str)], overrides: Overrides) -> Result<Settings, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::resolve(&overrides, |name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_follow_the_specification() {
        let settings = resolve(&[], Overrides::default()).unwrap();
        assert!(!settings.sdk_disabled);
        for signal in [settings.traces, settings.metrics, settings.logs] {
            assert_eq!(signal.exporters, [Exporter::Otlp]);
            assert_eq!(signal.protocol, OtlpProtocol::HttpProtobuf);
        }
        assert_eq!(
            settings.propagators,
            [Propagator::TraceContext, Propagator::Baggage]
        );
        assert_eq!(settings.host_metric_groups, HostMetricGroup::ALL);
    }

    #[test]
    fn host_metrics_can_be_turned_off_or_narrowed() {
        let off = resolve(
            &[("OTEL_MONITOR_HOST_METRICS", "false")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(off.host_metric_groups, []);
        let narrowed = resolve(
            &[("OTEL_MONITOR_HOST_METRICS_GROUPS", "memory, CPU,memory")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(
            narrowed.host_metric_groups,
            [HostMetricGroup::Memory, HostMetricGroup::Cpu]
        );
        let code_wins = resolve(
            &[("OTEL_MONITOR_HOST_METRICS", "false")],
            Overrides {
                host_metrics: Some(true),
                host_metric_groups: Some(vec![HostMetricGroup::Process]),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert_eq!(code_wins.host_metric_groups, [HostMetricGroup::Process]);
    }

    #[test]
    fn environment_values_are_read_case_insensitively() {
        let settings = resolve(
            &[
                ("OTEL_TRACES_EXPORTER", "console"),
                ("OTEL_METRICS_EXPORTER", " none "),
                ("OTEL_LOGS_EXPORTER", "Console, OTLP,console"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_PROPAGATORS", "baggage"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(settings.traces.exporters, [Exporter::Console]);
        assert_eq!(settings.metrics.exporters, []);
        assert_eq!(settings.logs.exporters, [Exporter::Console, Exporter::Otlp]);
        assert_eq!(settings.traces.protocol, OtlpProtocol::Grpc);
        assert_eq!(settings.propagators, [Propagator::Baggage]);
    }

    #[test]
    fn otel_sdk_disabled_turns_every_signal_off() {
        let settings = resolve(
            &[
                ("OTEL_SDK_DISABLED", "TRUE"),
                ("OTEL_TRACES_EXPORTER", "console"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert!(settings.sdk_disabled);
        for signal in [settings.traces, settings.metrics, settings.logs] {
            assert_eq!(signal.exporters, []);
        }
    }

    #[test]
    fn booleans_follow_the_specification_and_warn_on_other_values() {
        let one = resolve(&[("OTEL_SDK_DISABLED", "1")], Overrides::default()).unwrap();
        assert!(!one.sdk_disabled, "only `true` is true");
        assert_eq!(
            one.warnings.0,
            [r#"OTEL_SDK_DISABLED="1" is neither true nor false: read as false"#]
        );
        let quiet = resolve(&[("OTEL_SDK_DISABLED", "FALSE")], Overrides::default()).unwrap();
        assert!(!quiet.sdk_disabled);
        assert_eq!(quiet.warnings.0, Vec::<String>::new());
        let off = resolve(
            &[("OTEL_MONITOR_HOST_METRICS", "off")],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(off.host_metric_groups, HostMetricGroup::ALL);
        assert_eq!(
            off.warnings.0,
            [r#"OTEL_MONITOR_HOST_METRICS="off" is neither true nor false: host metrics stay on"#]
        );
    }

    #[test]
    fn the_temporality_preference_is_cumulative_unless_set_and_read_in_any_case() {
        let default = resolve(&[], Overrides::default()).unwrap();
        assert_eq!(default.metrics_temporality, Temporality::Cumulative);
        for (value, expected) in [
            ("delta", Temporality::Delta),
            ("Delta", Temporality::Delta),
            (" LOWMEMORY ", Temporality::LowMemory),
            ("LowMemory", Temporality::LowMemory),
            ("cumulative", Temporality::Cumulative),
            ("", Temporality::Cumulative),
        ] {
            let settings = resolve(
                &[(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, value)],
                Overrides::default(),
            )
            .unwrap();
            assert_eq!(settings.metrics_temporality, expected, "{value:?}");
        }
        let error = resolve(
            &[(OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE, "deltas")],
            Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE=\"deltas\" is not valid: \
             expected one of cumulative, delta, lowmemory"
        );
    }

    #[test]
    fn a_signal_protocol_overrides_the_general_one() {
        let settings = resolve(
            &[
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "http/protobuf"),
            ],
            Overrides::default(),
        )
        .unwrap();
        assert_eq!(settings.traces.protocol, OtlpProtocol::Grpc);
        assert_eq!(settings.metrics.protocol, OtlpProtocol::HttpProtobuf);
    }

    #[test]
    fn code_overrides_the_environment() {
        let settings = resolve(
            &[
                ("OTEL_TRACES_EXPORTER", "none"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                ("OTEL_PROPAGATORS", "none"),
                ("OTEL_SDK_DISABLED", "true"),
            ],
            Overrides {
                sdk_disabled: Some(false),
                traces_exporters: Some(vec![Exporter::Otlp]),
                metrics_exporters: None,
                logs_exporters: None,
                protocol: Some(OtlpProtocol::HttpProtobuf),
                propagators: Some(vec![Propagator::TraceContext]),
                ..Overrides::default()
            },
        )
        .unwrap();
        assert!(!settings.sdk_disabled);
        assert_eq!(settings.traces.exporters, [Exporter::Otlp]);
        assert_eq!(settings.traces.protocol, OtlpProtocol::HttpProtobuf);
        assert_eq!(settings.propagators, [Propagator::TraceContext]);
    }

    #[test]
    fn none_alone_disables_propagation_and_empty_values_are_unset() {
        let settings = resolve(
            &[("OTEL_PROPAGATORS", "none"), ("OTEL_TRACES_EXPORTER", "")],
            Overrides::default(),
        )
        .unwrap();
        assert!(settings.propagators.is_empty());
        assert_eq!(settings.traces.exporters, [Exporter::Otlp]);
    }

    #[test]
    fn invalid_values_name_the_variable_and_the_accepted_values() {
        // The accepted values as the README's table lists them, written out here rather than
        // taken from the constants the messages are built from.
        #[cfg(feature = "prometheus")]
        let metrics_expected = "otlp, prometheus, console, none (comma-separated)";
        #[cfg(not(feature = "prometheus"))]
        let metrics_expected =
            "otlp, console, none (comma-separated; prometheus needs the `prometheus` feature)";
        let cases = [
            (
                "OTEL_TRACES_EXPORTER",
                "jaeger",
                "otlp, console, none (comma-separated)",
            ),
            (
                "OTEL_TRACES_EXPORTER",
                "otlp,zipkin",
                "otlp, console, none (comma-separated)",
            ),
            ("OTEL_METRICS_EXPORTER", "statsd", metrics_expected),
            (
                "OTEL_LOGS_EXPORTER",
                "prometheus",
                "otlp, console, none (comma-separated)",
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_PROTOCOL",
                "http",
                "http/protobuf, grpc",
            ),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                "http/json",
                "http/protobuf, grpc",
            ),
            (
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
                "udp",
                "http/protobuf, grpc",
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_PROTOCOL",
                "thrift",
                "http/protobuf, grpc",
            ),
            (
                "OTEL_PROPAGATORS",
                "tracecontext,b3",
                "tracecontext, baggage, none",
            ),
            (
                "OTEL_MONITOR_HOST_METRICS_GROUPS",
                "cpu,gpu",
                "cpu, memory, network, filesystem, load, process",
            ),
        ];
        for (variable, value, expected) in cases {
            let error = resolve(&[(variable, value)], Overrides::default()).unwrap_err();
            assert_eq!(
                error.to_string(),
                format!("{variable}=\"{value}\" is not valid: expected one of {expected}")
            );
            assert_eq!(error.variable, variable);
            assert_eq!(error.value, value);
            assert_eq!(error.expected, expected);
        }
    }

    #[test]
    fn the_span_value_length_limit_comes_before_the_general_one_and_invalid_values_are_unset() {
        let read = |vars: &[(&str, &str)]| {
            let vars: HashMap<&str, &str> = vars.iter().copied().collect();
            let mut warnings = Warnings::default();
            let limit = span_attribute_value_length_limit(
                |name| vars.get(name).map(|value| value.to_string()),
                &mut warnings,
            );
            (limit, warnings.0.len())
        };
        let span = OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT;
        let general = OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT;
        assert_eq!(read(&[]), (None, 0));
        assert_eq!(read(&[(span, "100"), (general, "50")]), (Some(100), 0));
        assert_eq!(read(&[(general, "50")]), (Some(50), 0));
        assert_eq!(read(&[(span, " 0 ")]), (Some(0), 0));
        assert_eq!(read(&[(span, ""), (general, "50")]), (Some(50), 0));
        for invalid in ["-1", "abc", "1.5", "1e3", "99999999999999999999999"] {
            assert_eq!(read(&[(span, invalid), (general, "50")]), (Some(50), 1));
            assert_eq!(read(&[(span, invalid)]), (None, 1), "{invalid}");
            assert_eq!(read(&[(span, invalid), (general, invalid)]), (None, 2));
        }
    }

    #[test]
    fn a_public_endpoint_is_only_true_and_other_values_warn() {
        let read = |value: Option<&str>| {
            let mut warnings = Warnings::default();
            let public = public_endpoint(
                |name| {
                    assert_eq!(name, OTEL_MONITOR_PUBLIC_ENDPOINT);
                    value.map(str::to_owned)
                },
                &mut warnings,
            );
            (public, warnings.0)
        };
        for value in ["true", "TRUE", " True "] {
            assert_eq!(read(Some(value)), (true, vec![]), "{value:?}");
        }
        for value in [None, Some(""), Some("  "), Some("false"), Some("FALSE")] {
            assert_eq!(read(value), (false, vec![]), "{value:?}");
        }
        assert_eq!(
            read(Some("yes")),
            (
                false,
                vec![r#"OTEL_MONITOR_PUBLIC_ENDPOINT="yes" is neither true nor false: read as false"#.to_owned()]
            )
        );
    }
}
