//! The HTTP server instruments of the semantic conventions (v1.44, stable).

use opentelemetry::metrics::{Histogram, Meter, UpDownCounter};
use opentelemetry_semantic_conventions::metric::{
    HTTP_SERVER_ACTIVE_REQUESTS, HTTP_SERVER_REQUEST_BODY_SIZE, HTTP_SERVER_REQUEST_DURATION,
    HTTP_SERVER_RESPONSE_BODY_SIZE,
};

/// The explicit bucket boundaries the conventions advise for `http.server.request.duration`, in seconds.
pub(crate) const DURATION_BOUNDARIES: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// The four instruments every request records into.
#[derive(Clone, Debug)]
pub(crate) struct HttpServerMetrics {
    /// `http.server.request.duration`, seconds, to the end of the response body.
    pub(crate) duration: Histogram<f64>,
    /// `http.server.active_requests`, requests in flight.
    pub(crate) active_requests: UpDownCounter<i64>,
    /// `http.server.request.body.size`, bytes read from the request body.
    pub(crate) request_body_size: Histogram<u64>,
    /// `http.server.response.body.size`, bytes written to the response body.
    pub(crate) response_body_size: Histogram<u64>,
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
        }
    }
}
