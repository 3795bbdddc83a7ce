//! The RPC call duration of the semantic conventions (v1.44.0, docs/rpc/rpc-metrics.md):
//! `rpc.server.call.duration` or `rpc.client.call.duration`, seconds, bound once per attribute
//! set as the HTTP server instruments are (see `http_metrics`).
//!
//! Its attributes are `rpc.system.name`, `rpc.method`, `rpc.response.status_code` and
//! `error.type` on both sides, and `server.address` and `server.port` on the client's, where
//! the conventions require them ("if available"; they are opt-in on the server's). All are
//! bounded: `rpc.method` by the methods the service has (a method it does not know is
//! `_OTHER`), the status by the 17 codes, `error.type` by the error types of the program, the
//! server by the targets the client's code calls.

use std::{
    borrow::Cow,
    sync::{Arc, PoisonError, RwLock},
};

use opentelemetry::{
    KeyValue,
    metrics::{BoundHistogram, Histogram, Meter},
};
use opentelemetry_semantic_conventions::{
    attribute::{
        ERROR_TYPE, RPC_METHOD, RPC_RESPONSE_STATUS_CODE, RPC_SYSTEM_NAME, SERVER_ADDRESS,
        SERVER_PORT,
    },
    metric::{RPC_CLIENT_CALL_DURATION, RPC_SERVER_CALL_DURATION},
};
use rustc_hash::FxHashMap;

use super::{call::Side, status::Code};
use crate::http_metrics::DURATION_BOUNDARIES;

/// How many attribute combinations keep a bound histogram.
const MAX_BOUND_SERIES: usize = 1_000;

/// The duration of the calls of one side.
#[derive(Debug)]
pub(crate) struct RpcMetrics {
    duration: Histogram<f64>,
    bound: RwLock<FxHashMap<RpcSeries, BoundHistogram<f64>>>,
}

/// The attributes of a call's duration.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct RpcSeries {
    /// `rpc.method`, `None` for `_OTHER`.
    pub(crate) method: Option<Arc<str>>,
    pub(crate) status: Option<Code>,
    pub(crate) error_type: Option<Cow<'static, str>>,
    /// `server.address` and `server.port`, on a client.
    pub(crate) server: Option<(Arc<str>, Option<u16>)>,
}

impl RpcSeries {
    fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(6);
        attributes.push(KeyValue::new(RPC_SYSTEM_NAME, "grpc"));
        attributes.push(match &self.method {
            Some(method) => KeyValue::new(RPC_METHOD, method.clone()),
            None => KeyValue::new(RPC_METHOD, "_OTHER"),
        });
        if let Some(status) = self.status {
            attributes.push(KeyValue::new(RPC_RESPONSE_STATUS_CODE, status.name()));
        }
        if let Some(error_type) = &self.error_type {
            attributes.push(KeyValue::new(ERROR_TYPE, error_type.clone()));
        }
        if let Some((address, port)) = &self.server {
            attributes.push(KeyValue::new(SERVER_ADDRESS, address.clone()));
            if let Some(port) = port {
                attributes.push(KeyValue::new(SERVER_PORT, i64::from(*port)));
            }
        }
        attributes
    }
}

impl RpcMetrics {
    /// The instrument of `side`, with the bucket boundaries the conventions advise for it (the
    /// same as HTTP's).
    pub(crate) fn new(meter: &Meter, side: Side) -> Self {
        let (name, description) = match side {
            Side::Server => (
                RPC_SERVER_CALL_DURATION,
                "Measures the duration of an incoming Remote Procedure Call (RPC).",
            ),
            Side::Client => (
                RPC_CLIENT_CALL_DURATION,
                "Measures the duration of an outgoing Remote Procedure Call (RPC).",
            ),
        };
        Self {
            duration: meter
                .f64_histogram(name)
                .with_description(description)
                .with_unit("s")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            bound: RwLock::default(),
        }
    }

    /// Records a call's duration, in seconds.
    pub(crate) fn record(&self, series: RpcSeries, duration: f64) {
        if let Some(bound) = self
            .bound
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&series)
        {
            return bound.record(duration);
        }
        let mut bound = self.bound.write().unwrap_or_else(PoisonError::into_inner);
        if !bound.contains_key(&series) && bound.len() >= MAX_BOUND_SERIES {
            drop(bound);
            return self.duration.record(duration, &series.attributes());
        }
        bound
            .entry(series)
            .or_insert_with_key(|series| self.duration.bind(&series.attributes()))
            .record(duration);
    }
}
