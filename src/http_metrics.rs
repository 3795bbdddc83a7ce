//! The HTTP server instruments of the semantic conventions (v1.44, stable), bound once per
//! attribute set.
//!
//! A service answers a small, stable set of (method, route, status, ...) combinations. Recording
//! with an attribute list makes the SDK sort and hash that list on every request; a
//! [`BoundHistogram`] has done it once. So each combination is bound on its first request and the
//! bound instruments are kept, up to [`MAX_BOUND_SERIES`] combinations (past that, for a service
//! whose routes are not templates, recording falls back to attribute lists, and the SDK's own
//! cardinality limit applies). Finding a combination's bound instruments is a hash of a few words
//! (FxHash: the keys are the service's own routes and status codes, not a client's choice); the
//! active requests, with at most 22 combinations (the known methods and `_OTHER`, by 2 schemes),
//! are found by a linear search.

use std::{
    borrow::Cow,
    sync::{Arc, PoisonError, RwLock},
};

use rustc_hash::FxHashMap;

use opentelemetry::{
    KeyValue,
    metrics::{BoundHistogram, BoundUpDownCounter, Histogram, Meter, UpDownCounter},
};
use opentelemetry_semantic_conventions::{
    attribute::{
        ERROR_TYPE, HTTP_REQUEST_METHOD, HTTP_RESPONSE_STATUS_CODE, HTTP_ROUTE,
        NETWORK_PROTOCOL_VERSION, URL_SCHEME,
    },
    metric::{
        HTTP_SERVER_ACTIVE_REQUESTS, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_REQUEST_DURATION,
        HTTP_SERVER_RESPONSE_BODY_SIZE,
    },
};

/// The explicit bucket boundaries the conventions advise for `http.server.request.duration`, in seconds.
pub(crate) const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// How many attribute combinations keep bound instruments.
const MAX_BOUND_SERIES: usize = 1_000;

/// The four instruments every request records into.
#[derive(Debug)]
pub(crate) struct HttpServerMetrics {
    /// `http.server.request.duration`, seconds, to the end of the response body.
    duration: Histogram<f64>,
    /// `http.server.active_requests`, requests in flight.
    active_requests: UpDownCounter<i64>,
    /// `http.server.request.body.size`, bytes read from the request body.
    request_body_size: Histogram<u64>,
    /// `http.server.response.body.size`, bytes written to the response body.
    response_body_size: Histogram<u64>,
    completed: RwLock<FxHashMap<Series, CompletedSeries>>,
    /// At most one entry per known method (10 by default, and `_OTHER`) and scheme (2).
    active: RwLock<Vec<(ActiveSeries, BoundUpDownCounter<i64>)>>,
}

/// The attributes of a completed request's measurements.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Series {
    pub(crate) method: &'static str,
    pub(crate) scheme: &'static str,
    pub(crate) protocol_version: &'static str,
    pub(crate) route: Option<Arc<str>>,
    pub(crate) status_code: Option<u16>,
    pub(crate) error_type: Option<Cow<'static, str>>,
}

/// The attributes of `http.server.active_requests`: only what is known when a request starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ActiveSeries {
    pub(crate) method: &'static str,
    pub(crate) scheme: &'static str,
}

#[derive(Debug)]
struct CompletedSeries {
    duration: BoundHistogram<f64>,
    request_body_size: BoundHistogram<u64>,
    response_body_size: BoundHistogram<u64>,
}

impl CompletedSeries {
    fn record(&self, duration: f64, request_body_bytes: u64, response_body_bytes: u64) {
        self.duration.record(duration);
        self.request_body_size.record(request_body_bytes);
        self.response_body_size.record(response_body_bytes);
    }
}

impl Series {
    fn attributes(&self) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(6);
        attributes.push(KeyValue::new(HTTP_REQUEST_METHOD, self.method));
        attributes.push(KeyValue::new(URL_SCHEME, self.scheme));
        attributes.push(KeyValue::new(
            NETWORK_PROTOCOL_VERSION,
            self.protocol_version,
        ));
        if let Some(route) = &self.route {
            attributes.push(KeyValue::new(HTTP_ROUTE, route.clone()));
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

impl ActiveSeries {
    fn attributes(self) -> [KeyValue; 2] {
        [
            KeyValue::new(HTTP_REQUEST_METHOD, self.method),
            KeyValue::new(URL_SCHEME, self.scheme),
        ]
    }
}

impl HttpServerMetrics {
    pub(crate) fn new(meter: &Meter) -> Self {
        Self {
            duration: meter
                .f64_histogram(HTTP_SERVER_REQUEST_DURATION)
                .with_description("Duration of HTTP server requests.")
                .with_unit("s")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            active_requests: meter
                .i64_up_down_counter(HTTP_SERVER_ACTIVE_REQUESTS)
                .with_description("Number of active HTTP server requests.")
                .with_unit("{request}")
                .build(),
            request_body_size: meter
                .u64_histogram(HTTP_SERVER_REQUEST_BODY_SIZE)
                .with_description("Size of HTTP server request bodies.")
                .with_unit("By")
                .build(),
            response_body_size: meter
                .u64_histogram(HTTP_SERVER_RESPONSE_BODY_SIZE)
                .with_description("Size of HTTP server response bodies.")
                .with_unit("By")
                .build(),
            completed: RwLock::default(),
            active: RwLock::default(),
        }
    }

    /// Adds `change` (1 when a request starts, -1 when it ends) to the active requests.
    pub(crate) fn add_active(&self, series: ActiveSeries, change: i64) {
        let find = |active: &[(ActiveSeries, BoundUpDownCounter<i64>)]| {
            active.iter().position(|(known, _)| *known == series)
        };
        {
            let active = self.active.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(index) = find(&active) {
                return active[index].1.add(change);
            }
        }
        let mut active = self.active.write().unwrap_or_else(PoisonError::into_inner);
        let index = find(&active).unwrap_or_else(|| {
            active.push((series, self.active_requests.bind(&series.attributes())));
            active.len() - 1
        });
        active[index].1.add(change);
    }

    /// Records a completed request's duration (seconds) and body sizes (bytes).
    pub(crate) fn record_completed(
        &self,
        series: Series,
        duration: f64,
        request_body_bytes: u64,
        response_body_bytes: u64,
    ) {
        if let Some(bound) = self
            .completed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&series)
        {
            return bound.record(duration, request_body_bytes, response_body_bytes);
        }
        let mut completed = self
            .completed
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !completed.contains_key(&series) && completed.len() >= MAX_BOUND_SERIES {
            drop(completed);
            let attributes = series.attributes();
            self.duration.record(duration, &attributes);
            self.request_body_size
                .record(request_body_bytes, &attributes);
            self.response_body_size
                .record(response_body_bytes, &attributes);
            return;
        }
        completed
            .entry(series)
            .or_insert_with_key(|series| {
                let attributes = series.attributes();
                CompletedSeries {
                    duration: self.duration.bind(&attributes),
                    request_body_size: self.request_body_size.bind(&attributes),
                    response_body_size: self.response_body_size.bind(&attributes),
                }
            })
            .record(duration, request_body_bytes, response_body_bytes);
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::metrics::MeterProvider as _;
    use opentelemetry_sdk::metrics::{
        InMemoryMetricExporter, PeriodicReader, SdkMeterProvider, Temporality,
        data::{AggregatedMetrics, MetricData},
    };

    use super::*;

    fn series(route: &str, status_code: u16) -> Series {
        Series {
            method: "GET",
            scheme: "http",
            protocol_version: "1.1",
            route: Some(Arc::from(route)),
            status_code: Some(status_code),
            error_type: None,
        }
    }

    #[test]
    fn every_series_is_recorded_past_the_bound_ones() {
        let exporter = InMemoryMetricExporter::default();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let metrics = HttpServerMetrics::new(&provider.meter("test"));
        let routes = MAX_BOUND_SERIES + 5;
        for _ in 0..2 {
            for route in 0..routes {
                metrics.record_completed(series(&format!("/r{route}"), 200), 0.01, 0, 22);
            }
        }
        let active = ActiveSeries {
            method: "GET",
            scheme: "http",
        };
        let other = ActiveSeries {
            method: "POST",
            scheme: "https",
        };
        for change in [1, 1, -1] {
            metrics.add_active(active, change);
        }
        metrics.add_active(other, 1);
        provider.force_flush().unwrap();

        let exported = exporter.get_finished_metrics().unwrap();
        let metric = |name: &str| {
            exported
                .iter()
                .flat_map(|resource| resource.scope_metrics())
                .flat_map(|scope| scope.metrics())
                .find(|metric| metric.name() == name)
                .map(|metric| metric.data())
                .unwrap_or_else(|| panic!("{name} was not exported"))
        };
        let AggregatedMetrics::F64(MetricData::Histogram(duration)) =
            metric("http.server.request.duration")
        else {
            panic!("the duration is an f64 histogram");
        };
        let counts: Vec<u64> = duration.data_points().map(|point| point.count()).collect();
        assert_eq!(counts.len(), routes, "one series per route");
        assert!(counts.iter().all(|&count| count == 2), "{counts:?}");

        let AggregatedMetrics::I64(MetricData::Sum(active_requests)) =
            metric("http.server.active_requests")
        else {
            panic!("the active requests are an i64 sum");
        };
        assert!(!active_requests.is_monotonic(), "an up-down counter");
        assert_eq!(active_requests.temporality(), Temporality::Cumulative);
        let mut values: Vec<(Vec<String>, i64)> = active_requests
            .data_points()
            .map(|point| {
                let mut attributes: Vec<String> = point
                    .attributes()
                    .map(|attribute| format!("{}={}", attribute.key, attribute.value))
                    .collect();
                attributes.sort();
                (attributes, point.value())
            })
            .collect();
        values.sort();
        assert_eq!(
            values,
            [
                (
                    vec![
                        "http.request.method=GET".to_owned(),
                        "url.scheme=http".to_owned()
                    ],
                    1
                ),
                (
                    vec![
                        "http.request.method=POST".to_owned(),
                        "url.scheme=https".to_owned()
                    ],
                    1
                ),
            ]
        );
    }
}
