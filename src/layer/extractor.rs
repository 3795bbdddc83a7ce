//! Reading a request's trace context from its headers: all of it ([`RequestHeaders`]), or, on a
//! public endpoint, only the span context ([`SpanContextHeaders`]).

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

/// The most bytes of `baggage` handed to the propagators, over all its lines: the W3C Baggage
/// limit (8,192 bytes, which the 2020 working draft set as a maximum and the Candidate
/// Recommendation as what a platform must propagate at least).
const MAX_BAGGAGE_BYTES: usize = 8192;

/// The most list-members of `baggage` handed to the propagators, over all its lines: the W3C
/// Baggage working draft's maximum (180). The SDK's `BaggagePropagator` keeps only the first 64
/// (the least the Candidate Recommendation asks a platform to propagate); this bounds any other
/// propagator the service configures.
const MAX_BAGGAGE_MEMBERS: usize = 180;

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
    /// [`MAX_TRACEPARENT_LEN`] bytes; for `baggage`, within the W3C Baggage limits).
    fn get(&self, key: &str) -> Option<&str> {
        let value = self.values(key).iter().next()?;
        let readable = match key {
            "traceparent" => value.len() <= MAX_TRACEPARENT_LEN,
            "baggage" => within_baggage_limits([value]),
            _ => true,
        };
        if !readable {
            return None;
        }
        value.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }

    /// Every value of `key` that is visible ASCII, or `None` when there is none at all (or, for
    /// `baggage`, when its lines together exceed the W3C Baggage limits).
    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        let values = self.values(key);
        if key == "baggage" && !within_baggage_limits(values.iter()) {
            return None;
        }
        let mut values = values.iter().peekable();
        values.peek()?;
        Some(values.filter_map(|value| value.to_str().ok()).collect())
    }
}

/// Whether `baggage` lines hold at most [`MAX_BAGGAGE_BYTES`] and [`MAX_BAGGAGE_MEMBERS`] in all.
/// A baggage beyond either is ignored whole, as a malformed one is: W3C Baggage forbids passing
/// on part of a list-member, and which whole ones to keep would be the client's choice.
fn within_baggage_limits<'a>(lines: impl IntoIterator<Item = &'a HeaderValue>) -> bool {
    let (mut bytes, mut members) = (0, 0);
    for line in lines {
        bytes += line.len();
        if bytes > MAX_BAGGAGE_BYTES {
            return false;
        }
        // One more list-member than separators, empty ones included (they are allowed).
        members += 1 + line.as_bytes().iter().filter(|&&byte| byte == b',').count();
    }
    members <= MAX_BAGGAGE_MEMBERS
}

/// The request's headers as propagators read them on a public endpoint: only what a span context
/// is made of. `tracestate` and `baggage` are not handed over, so they cost nothing to parse: the
/// span context becomes a link, which carries no `tracestate` of the client's, and the client's
/// baggage is dropped.
pub(crate) struct SpanContextHeaders<'a>(pub(crate) RequestHeaders<'a>);

impl Extractor for SpanContextHeaders<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        match key {
            "tracestate" | "baggage" => None,
            _ => self.0.get(key),
        }
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys()
    }

    fn get_all(&self, key: &str) -> Option<Vec<&str>> {
        match key {
            "tracestate" | "baggage" => None,
            _ => self.0.get_all(key),
        }
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

    fn baggage(members: usize, member: &str) -> HeaderValue {
        HeaderValue::from_str(&vec![member; members].join(",")).unwrap()
    }

    #[test]
    fn a_baggage_beyond_the_w3c_limits_is_not_read() {
        let read = |lines: &[HeaderValue]| {
            let mut headers = HeaderMap::new();
            for line in lines {
                headers.append("baggage", line.clone());
            }
            let extractor = RequestHeaders(&headers);
            (
                extractor.get("baggage").map(str::len),
                extractor.get_all("baggage").map(|values| values.len()),
            )
        };
        let at_the_limits = baggage(180, "k=v");
        assert_eq!(read(&[at_the_limits]), (Some(180 * 4 - 1), Some(1)));
        assert_eq!(read(&[baggage(181, "k=v")]), (None, None), "181 members");
        let just_bytes = HeaderValue::from_str(&format!("k={}", "v".repeat(8190))).unwrap();
        assert_eq!(read(&[just_bytes]), (Some(8192), Some(1)));
        let one_more = HeaderValue::from_str(&format!("k={}", "v".repeat(8191))).unwrap();
        assert_eq!(read(&[one_more]), (None, None), "8,193 bytes");
        assert_eq!(read(&[baggage(0, "")]), (Some(0), Some(1)), "empty");
        assert_eq!(
            read(&[baggage(180, "")]),
            (Some(179), Some(1)),
            "empty members"
        );
        assert_eq!(
            read(&[baggage(181, "")]),
            (None, None),
            "empty members count"
        );

        // Several lines: each is read as the first, all together within the limits.
        let half = baggage(90, "k=v");
        assert_eq!(read(&[half.clone(), half.clone()]), (Some(359), Some(2)));
        let over = baggage(91, "k=v");
        assert_eq!(read(&[half.clone(), over]), (Some(359), None), "181 in all");
        let bytes = HeaderValue::from_str(&format!("k={}", "v".repeat(4095))).unwrap();
        assert_eq!(read(&[bytes.clone(), bytes.clone()]), (Some(4097), None));
    }

    #[test]
    fn a_public_endpoint_reads_only_the_span_context() {
        let mut headers = HeaderMap::new();
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        headers.insert("traceparent", HeaderValue::from_static(traceparent));
        headers.insert("tracestate", HeaderValue::from_static("k=v"));
        headers.insert("baggage", HeaderValue::from_static("a=1"));
        headers.insert("x-b3", HeaderValue::from_static("yes"));
        let extractor = SpanContextHeaders(RequestHeaders(&headers));
        assert_eq!(extractor.get("traceparent"), Some(traceparent));
        assert_eq!(extractor.get_all("traceparent"), Some(vec![traceparent]));
        assert_eq!(extractor.get("x-b3"), Some("yes"));
        for hidden in ["tracestate", "baggage"] {
            assert_eq!(extractor.get(hidden), None, "{hidden}");
            assert_eq!(extractor.get_all(hidden), None, "{hidden}");
        }
        assert_eq!(extractor.keys().len(), 4);
    }
}
