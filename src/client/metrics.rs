//! `http.client.request.duration` (the HTTP semantic conventions v1.44, stable), bound once per
//! attribute set, as the server's instruments are (see `http_metrics.rs`).
//!
//! Its attributes are the conventions' (v1.44.0): `http.request.method`, `server.address`,
//! `server.port` (required), `http.response.status_code`, `error.type` (conditionally
//! required), `network.protocol.version` (recommended), and `url.template` (opt-in; recorded
//! when the caller gives one, since the caller chose it to be low-cardinality). `url.scheme`
//! (opt-in) is left out: the port already tells them apart in practice.
//!
//! `http.client.active_requests` (development) is not recorded: it would cost two more metric
//! updates per call for a figure the duration histogram's rate and latency already give, and
//! its attributes (`server.address` and `server.port`) are no finer than the duration's.

use std::{
    borrow::Cow,
    sync::{Arc, PoisonError, RwLock},
};

use opentelemetry::{
    KeyValue, Value,
    metrics::{BoundHistogram, Histogram, Meter},
};
use opentelemetry_semantic_conventions::{
    attribute::{
        ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, NETWORK_PROTOCOL_VERSION,
        SERVER_ADDRESS, SERVER_PORT, URL_TEMPLATE,
    },
    metric::HTTP_CLIENT_REQUEST_DURATION,
};
use rustc_hash::FxHashMap;

use crate::http_metrics::DURATION_BOUNDARIES;

/// How many attribute combinations keep bound instruments, and how many hosts keep a shared
/// string: past either, a call records with an attribute list (hosts that are not a small
/// fixed set, or templates that are not templates).
const MAX_BOUND: usize = 1_000;

/// The duration histogram, and the hosts called so far.
#[derive(Debug)]
pub(crate) struct HttpClientMetrics {
    duration: Histogram<f64>,
    bound: RwLock<FxHashMap<Series, BoundHistogram<f64>>>,
    /// One shared string per host called, for the span attribute and the series key alike.
    addresses: RwLock<FxHashMap<Box<str>, Arc<str>>>,
}

/// The attributes of a completed call's duration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Series {
    pub(crate) method: &'static str,
    pub(crate) server_address: Option<Arc<str>>,
    pub(crate) server_port: Option<u16>,
    pub(crate) url_template: Option<Arc<str>>,
    pub(crate) protocol_version: Option<&'static str>,
    pub(crate) status_code: Option<u16>,
    pub(crate) error_type: Option<Cow<'static, str>>,
}

impl Series {
    fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(7);
        attributes.push(KeyValue::new(HTTP_REQUEST_METHOD, self.method));
        if let Some(address) = &self.server_address {
            attributes.push(KeyValue::new(SERVER_ADDRESS, Value::from(address.clone())));
        }
        if let Some(port) = self.server_port {
            attributes.push(KeyValue::new(SERVER_PORT, i64::from(port)));
        }
        if let Some(template) = &self.url_template {
            attributes.push(KeyValue::new(URL_TEMPLATE, Value::from(template.clone())));
        }
        if let Some(version) = self.protocol_version {
            attributes.push(KeyValue::new(NETWORK_PROTOCOL_VERSION, version));
        }
        if let Some(status) = self.status_code {
            attributes.push(KeyValue::new(HTTP_RESPONSE_STATUS_CODE, i64::from(status)));
        }
        if let Some(error_type) = &self.error_type {
            attributes.push(KeyValue::new(ERROR_TYPE, error_type.clone()));
        }
        attributes
    }
}

impl HttpClientMetrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            duration: meter
                .f64_histogram(HTTP_CLIENT_REQUEST_DURATION)
                .with_description("Duration of HTTP client requests.")
                .with_unit("s")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            bound: RwLock::default(),
            addresses: RwLock::default(),
        }
    }

    /// The shared string of `host`, made on its first call.
    pub(crate) fn address(&self, host: &str) -> Arc<str> {
        if let Some(address) = self
            .addresses
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(host)
        {
            return address.clone();
        }
        let mut addresses = self
            .addresses
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if addresses.len() >= MAX_BOUND && !addresses.contains_key(host) {
            return Arc::from(host);
        }
        addresses
            .entry(host.into())
            .or_insert_with(|| Arc::from(host))
            .clone()
    }

    /// Records a completed call's duration, in seconds.
    pub(crate) fn record(&self, series: Series, duration: f64) {
        if let Some(bound) = self
            .bound
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&series)
        {
            return bound.record(duration);
        }
        let mut bound = self.bound.write().unwrap_or_else(PoisonError::into_inner);
        if bound.len() >= MAX_BOUND && !bound.contains_key(&series) {
            drop(bound);
            return self.duration.record(duration, &series.attributes());
        }
        bound
            .entry(series)
            .or_insert_with_key(|series| self.duration.bind(&series.attributes()))
            .record(duration);
    }
}
