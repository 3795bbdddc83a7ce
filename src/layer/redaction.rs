//! What is never recorded of the credentials a client sends, in spans, log records and console
//! lines alike:
//!
//! - the values of the sensitive query parameters, `REDACTED` in their place in `url.query`
//!   ([`SensitiveQueryParameters`]), as the HTTP semantic conventions (v1.44.0, `url.query`) say;
//! - the headers that carry credentials ([`CREDENTIAL_HEADERS`] and those the service adds with
//!   [`never_record_headers`](super::MonitorLayerBuilder::never_record_headers)), even when listed
//!   to be recorded, and any header value marked sensitive
//!   ([`HeaderValue::is_sensitive`](http::HeaderValue::is_sensitive)).
//!
//! The user info of a URL (`user:password@`) has no attribute to reach: the layer records no
//! `url.full`, and `server.address` is the host alone (see `request.rs`). The access log holds
//! the path, never the query or a header.

use std::borrow::Cow;

use http::HeaderName;

use super::request::{truncated, truncated_owned};

/// The query parameters whose values are redacted unless the service lists its own: the HTTP
/// semantic conventions' list (v1.44.0, `url.query`: AWS Signature Version 4, Azure SAS, Google
/// Cloud Storage V4 signed URLs), and the two that older versions of the conventions listed,
/// `AWSAccessKeyId` and `Signature`, of the version 2 signed URLs that S3 still accepts for
/// buckets older than June 2020, S3-compatible stores and Google Cloud Storage (V2 signing)
/// still issue, and whose `Signature` grants access until it expires.
pub(crate) const DEFAULT_SENSITIVE_QUERY_PARAMETERS: [&str; 7] = [
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "sig",
    "X-Goog-Signature",
    "AWSAccessKeyId",
    "Signature",
];

/// Headers whose values are never recorded, even when listed: they carry credentials.
pub(crate) const CREDENTIAL_HEADERS: [HeaderName; 4] = [
    http::header::AUTHORIZATION,
    http::header::COOKIE,
    http::header::SET_COOKIE,
    http::header::PROXY_AUTHORIZATION,
];

/// The names of the query parameters whose values `url.query` redacts, matched
/// case-sensitively, as the conventions say (v1.44.0: "Matching of query parameter keys against
/// the sensitive list SHOULD be case-sensitive").
#[derive(Debug, Clone)]
pub(crate) struct SensitiveQueryParameters(Box<[Box<str>]>);

impl Default for SensitiveQueryParameters {
    fn default() -> Self {
        Self::new(DEFAULT_SENSITIVE_QUERY_PARAMETERS)
    }
}

impl SensitiveQueryParameters {
    /// Exactly these names: none redacts nothing.
    pub(crate) fn new<I, N>(names: I) -> Self
    where
        I: IntoIterator<Item = N>,
        N: AsRef<str>,
    {
        Self(names.into_iter().map(|name| name.as_ref().into()).collect())
    }

    fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|sensitive| **sensitive == *name)
    }

    /// `query` with the values of the sensitive parameters replaced by `REDACTED` (their names
    /// kept: `q=1&sig=REDACTED`), cut to `limit` characters.
    ///
    /// Redacted before it is cut, since a cut could hide a parameter's name and keep its value,
    /// and built only as far as the cut: past `4 × limit` bytes (characters of any width) the
    /// rest would be cut anyway. A client's query of any length costs at most about that much
    /// memory.
    pub(crate) fn redacted(&self, query: &str, limit: usize) -> String {
        let any_sensitive = !self.0.is_empty()
            && query
                .split('&')
                .any(|pair| self.contains(pair.split_once('=').map_or(pair, |(name, _)| name)));
        if !any_sensitive {
            return truncated(query, limit).to_owned();
        }
        let enough = limit.saturating_mul(4);
        let mut redacted = String::with_capacity(query.len().min(enough));
        for (index, pair) in query.split('&').enumerate() {
            if redacted.len() >= enough {
                break;
            }
            if index > 0 {
                redacted.push('&');
            }
            match pair.split_once('=') {
                Some((name, _)) if self.contains(name) => {
                    redacted.push_str(name);
                    redacted.push_str("=REDACTED");
                }
                _ => redacted.push_str(pair),
            }
        }
        truncated_owned(Cow::Owned(redacted), limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted_query(query: &str, limit: usize) -> String {
        SensitiveQueryParameters::default().redacted(query, limit)
    }

    #[test]
    fn sensitive_query_values_are_redacted_and_others_kept() {
        assert_eq!(redacted_query("q=rust&page=2", 2048), "q=rust&page=2");
        assert_eq!(
            redacted_query(
                "sig=abc&q=1&Signature=x&AWSAccessKeyId=k&X-Goog-Signature=g&flag&sig",
                2048
            ),
            "sig=REDACTED&q=1&Signature=REDACTED&AWSAccessKeyId=REDACTED&X-Goog-Signature=REDACTED&flag&sig"
        );
    }

    #[test]
    fn a_presigned_s3_url_keeps_no_credential() {
        // As the AWS SDKs presign a GetObject with temporary credentials.
        let query = "X-Amz-Algorithm=AWS4-HMAC-SHA256\
            &X-Amz-Credential=ASIAEXAMPLE%2F20261201%2Fus-east-1%2Fs3%2Faws4_request\
            &X-Amz-Date=20261201T000000Z&X-Amz-Expires=900\
            &X-Amz-Security-Token=IQoJb3JpZ2luX2VjEXAMPLE&X-Amz-SignedHeaders=host\
            &x-id=GetObject&X-Amz-Signature=0123abcd";
        assert_eq!(
            redacted_query(query, 2048),
            "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=REDACTED\
            &X-Amz-Date=20261201T000000Z&X-Amz-Expires=900\
            &X-Amz-Security-Token=REDACTED&X-Amz-SignedHeaders=host\
            &x-id=GetObject&X-Amz-Signature=REDACTED"
        );
    }

    #[test]
    fn names_match_case_sensitively_as_the_conventions_say() {
        assert_eq!(
            redacted_query("SIG=1&x-amz-signature=2&Sig=3", 2048),
            "SIG=1&x-amz-signature=2&Sig=3"
        );
    }

    #[test]
    fn a_list_of_the_service_replaces_the_default_one() {
        let own = SensitiveQueryParameters::new(["token", "api_key"]);
        assert_eq!(
            own.redacted("token=t&sig=s&api_key=k&X-Amz-Signature=a", 2048),
            "token=REDACTED&sig=s&api_key=REDACTED&X-Amz-Signature=a"
        );
        let none = SensitiveQueryParameters::new([""; 0]);
        assert_eq!(none.redacted("sig=s&token=t", 2048), "sig=s&token=t");
        assert_eq!(none.redacted("sig=s&token=t", 3), "sig");
    }

    #[test]
    fn a_long_query_is_redacted_as_far_as_it_is_kept_and_no_further() {
        let pairs = ["q=é", "sig=secret", "&", "x"];
        for limit in [0, 1, 5, 13, 40] {
            for count in [1, 10, 1000] {
                let query = pairs.repeat(count).join("&");
                let whole = query
                    .split('&')
                    .map(|pair| match pair.split_once('=') {
                        Some(("sig", _)) => "sig=REDACTED",
                        _ => pair,
                    })
                    .collect::<Vec<_>>()
                    .join("&");
                let redacted = redacted_query(&query, limit);
                assert_eq!(redacted, truncated(&whole, limit), "{limit}, {count}");
                // Built to at most one pair past 4 × limit bytes, doubling as it grows.
                assert!(redacted.capacity() <= 2 * (4 * limit + "&sig=REDACTED".len()));
            }
        }
    }
}
