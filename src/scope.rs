//! The instrumentation scopes the crate reports under, each built here and nowhere else: one per
//! source of telemetry, so that a backend groups what one source made under one name, version
//! and schema URL.

use opentelemetry::InstrumentationScope;
use opentelemetry_semantic_conventions::SCHEMA_URL;

/// The scope of what the crate measures itself: [`MonitorLayer`](crate::MonitorLayer)'s and
/// [`MonitorClientLayer`](crate::MonitorClientLayer)'s spans and metrics, the host and process
/// metrics, the counts of telemetry the export lost.
/// All of it is named by the semantic conventions whose schema URL it carries.
pub(crate) fn instrumentation() -> InstrumentationScope {
    InstrumentationScope::builder(env!("CARGO_PKG_NAME"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .with_schema_url(SCHEMA_URL)
        .build()
}

/// The scope of the application's own `tracing` spans, as the crate's span bridge
/// (tracing-opentelemetry) exports them: named apart from [`instrumentation`], and with no
/// schema URL, since their names and fields are the application's, not the conventions'.
///
/// The log bridge (opentelemetry-appender-tracing) keeps the scope it makes itself, with no name
/// and no version: OTLP names each log record's scope after its `tracing` target (`checkout::db`),
/// which is the application's module, and a version of this crate there would be a false one.
pub(crate) fn bridged_spans() -> InstrumentationScope {
    InstrumentationScope::builder(concat!(env!("CARGO_PKG_NAME"), "/tracing"))
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}
