//! Reading a request's trace context from its headers.

use http::{HeaderMap, HeaderName, HeaderValue, header::GetAll};
use opentelemetry::propagation::Extractor;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
const BAGGAGE: HeaderName = HeaderName::from_static("baggage");

/// The longest `traceparent` handed to the propagators. Version 00 is 55 bytes; a later version
/// may add fields after these four, of which a reader of version 00 parses the first four
/// (W3C Trace Context Level 2, 3.2.4). The SDK's parser splits the value into one string per
/// `-` before it checks anything, 35 bytes of memory a byte: a longer value is not read, and
/// the request starts a new trace as with any malformed one.
const MAX_TRACEPARENT_LEN: usize = 512;

/// The request's headers as propagators read them: `opentelemetry_http::HeaderExtractor`, except
/// that the names the W3C propagators ask for on every request are looked up as prebuilt
/// [`HeaderName`]s. Looking a header up by a `&str` parses the name first, which is most of the
/// lookup's cost.
pub(crate) struct RequestHeaders<'a>(pub(crate) &'a HeaderMap);

impl RequestHeaders<'_> {
    fn values(&self, key: &str) -> GetAll<'_, HeaderValue> {
        match key {
            "traceparent" => self.0.get_all(TRACEPARENT),
            "tracestate" => self.0.get_all(TRACESTATE),
            "baggage" => self.0.get_all(BAGGAGE),
            other => self.0.get_all(other),
        }
    }
}

impl Extractor for RequestHeaders<'_> {
    /// The first value of `key`, if it is visible ASCII (and, for `traceparent`, at most
    /// [`MAX_TRACEPARENT_LEN`] bytes).
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.values(key).iter().next()?;
        if key == "traceparent" && value.len() > MAX_TRACEPARENT_LEN {
            return None;
        }
        value.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    /// Every value of `key` that is visible ASCII, or `None` when there is none at all.
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values = self.values(key);
        let mut values = values.iter().peekable();
        values.peek()?;
        Some(values.filter_map(|value| value.to_str().ok()).collect())
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_http::HeaderExtractor;

    use super::*;

    #[test]
    fn reads_what_the_http_crate_extractor_reads() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "traceparent",
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        headers.append("baggage", HeaderValue::from_static("a=1"));
        headers.append("baggage", HeaderValue::from_static("b=2"));
        headers.insert("x-custom", HeaderValue::from_static("yes"));
        headers.insert("tracestate", HeaderValue::from_bytes(b"k=\xff").unwrap());
        let ours = RequestHeaders(&headers);
        let theirs = HeaderExtractor(&headers);
        for key in [
            "traceparent",
            "tracestate",
            "baggage",
            "x-custom",
            "X-Custom",
            "absent",
        ] {
            assert_eq!(ours.get(key), theirs.get(key), "get {key}");
            assert_eq!(ours.get_all(key), theirs.get_all(key), "get_all {key}");
        }
        assert_eq!(ours.keys(), theirs.keys());
    }

    #[test]
    fn a_traceparent_longer_than_512_bytes_is_not_read() {
        let version_ff = format!(
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-{}",
            "a".repeat(MAX_TRACEPARENT_LEN - 56)
        );
        let mut headers = HeaderMap::new();
        headers.insert("traceparent", HeaderValue::from_str(&version_ff).unwrap());
        assert_eq!(
            RequestHeaders(&headers).get("traceparent"),
            Some(&*version_ff)
        );
        let longer = format!("{version_ff}a");
        headers.insert("traceparent", HeaderValue::from_str(&longer).unwrap());
        assert_eq!(RequestHeaders(&headers).get("traceparent"), None);
    }
}
