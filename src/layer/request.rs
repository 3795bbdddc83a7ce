//! What a request tells its span and metrics, named as the HTTP semantic conventions name it.

use std::{borrow::Cow, sync::Arc};

use http::{HeaderMap, Method, Request, Version};
use opentelemetry::{Key, KeyValue, Value};

use super::routes::Routes;
use crate::http_metrics::ActiveSeries;
use opentelemetry_semantic_conventions::attribute::{
    CLIENT_ADDRESS, HTTP_REQUEST_METHOD, HTTP_REQUEST_METHOD_ORIGINAL, HTTP_ROUTE,
    NETWORK_PROTOCOL_VERSION, SERVER_ADDRESS, SERVER_PORT, URL_PATH, URL_QUERY, URL_SCHEME,
    USER_AGENT_ORIGINAL,
};

/// Query parameters whose values the conventions say to redact by default.
const SENSITIVE_QUERY_PARAMETERS: [&str; 4] =
    ["AWSAccessKeyId", "Signature", "sig", "X-Goog-Signature"];

/// The low-cardinality facts about a request, shared by its span and its metrics.
#[derive(Debug, Clone)]
pub(crate) struct RequestFacts {
    /// The method as the conventions know it, or `_OTHER`.
    pub(crate) method: &'static str,
    pub(crate) scheme: &'static str,
    /// The route template (`/users/{id}`), never the raw path.
    pub(crate) route: Option<Arc<str>>,
    pub(crate) protocol_version: &'static str,
    /// `{method} {route}`, `{method}` without a route, with `HTTP` for an unknown method.
    pub(crate) span_name: Cow<'static, str>,
}

impl RequestFacts {
    pub(crate) fn of<B>(request: &Request<B>, routes: &Routes) -> Self {
        let method = known_method(request.method()).unwrap_or("_OTHER");
        let name_method = match method {
            "_OTHER" => "HTTP",
            method => method,
        };
        let (route, span_name) = match matched_route(request) {
            Some(route) => {
                let (template, name) = routes.named(name_method, route);
                (Some(template), name)
            }
            None => (None, Cow::Borrowed(name_method)),
        };
        Self {
            method,
            scheme: match request.uri().scheme_str() {
                Some("https") => "https",
                _ => "http",
            },
            route,
            protocol_version: protocol_version(request.version()),
            span_name,
        }
    }

    /// The attributes of `http.server.active_requests`.
    pub(crate) fn active_series(&self) -> ActiveSeries {
        ActiveSeries {
            method: self.method,
            scheme: self.scheme,
        }
    }

    /// The attributes given when the span starts, so that samplers see them.
    pub(crate) fn sampling_attributes<B>(&self, request: &Request<B>) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(16);
        attributes.push(KeyValue::new(HTTP_REQUEST_METHOD, self.method));
        attributes.push(KeyValue::new(URL_SCHEME, self.scheme));
        attributes.push(KeyValue::new(URL_PATH, request.uri().path().to_owned()));
        if let Some(route) = &self.route {
            attributes.push(KeyValue::new(HTTP_ROUTE, Value::from(route.clone())));
        }
        attributes
    }

    /// The attributes worth computing only when the span is recording.
    pub(crate) fn recording_attributes<B>(
        &self,
        request: &Request<B>,
        headers_to_record: &[(http::HeaderName, Key)],
    ) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(8 + headers_to_record.len());
        attributes.push(KeyValue::new(
            NETWORK_PROTOCOL_VERSION,
            self.protocol_version,
        ));
        if self.method == "_OTHER" {
            attributes.push(KeyValue::new(
                HTTP_REQUEST_METHOD_ORIGINAL,
                request.method().as_str().to_owned(),
            ));
        }
        if let Some(query) = request.uri().query() {
            attributes.push(KeyValue::new(URL_QUERY, redact_query(query).into_owned()));
        }
        if let Some((host, port)) = authority(request).and_then(split_authority) {
            attributes.push(KeyValue::new(SERVER_ADDRESS, host.to_owned()));
            if let Some(port) = port {
                attributes.push(KeyValue::new(SERVER_PORT, i64::from(port)));
            }
        }
        if let Some(client) = client_address(request) {
            attributes.push(KeyValue::new(CLIENT_ADDRESS, client));
        }
        if let Some(agent) = header_str(request.headers(), http::header::USER_AGENT) {
            attributes.push(KeyValue::new(USER_AGENT_ORIGINAL, agent.to_owned()));
        }
        record_headers(request.headers(), headers_to_record, &mut attributes);
        attributes
    }
}

/// Appends `http.{request,response}.header.<name>` attributes, one string array each.
pub(crate) fn record_headers(
    headers: &HeaderMap,
    headers_to_record: &[(http::HeaderName, Key)],
    attributes: &mut Vec<KeyValue>,
) {
    for (name, key) in headers_to_record {
        let values: Vec<_> = headers
            .get_all(name)
            .iter()
            .map(|value| {
                String::from_utf8_lossy(value.as_bytes())
                    .into_owned()
                    .into()
            })
            .collect();
        if !values.is_empty() {
            attributes.push(KeyValue::new(
                key.clone(),
                Value::Array(opentelemetry::Array::String(values)),
            ));
        }
    }
}

fn known_method(method: &Method) -> Option<&'static str> {
    Some(match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => return None,
    })
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

#[cfg(feature = "axum")]
fn matched_route<B>(request: &Request<B>) -> Option<&str> {
    request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|path| path.as_str())
}

#[cfg(not(feature = "axum"))]
fn matched_route<B>(_request: &Request<B>) -> Option<&str> {
    None
}

#[cfg(feature = "axum")]
fn client_address<B>(request: &Request<B>) -> Option<String> {
    use axum::extract::ConnectInfo;
    request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(peer)| peer.ip().to_string())
}

#[cfg(not(feature = "axum"))]
fn client_address<B>(_request: &Request<B>) -> Option<String> {
    None
}

/// The authority the client addressed: the URI's (HTTP/2) or the `Host` header's (HTTP/1.1).
fn authority<B>(request: &Request<B>) -> Option<&str> {
    match request.uri().authority() {
        Some(authority) => Some(authority.as_str()),
        None => header_str(request.headers(), http::header::HOST),
    }
}

/// The host (an IPv6 address without its brackets) and the port of `authority`; `None` when it is
/// not `host[:port]`. Split in place: parsing it into an [`Authority`](http::uri::Authority)
/// copies it and scans it three times.
fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
    let authority = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (host, rest) = bracketed.split_once(']')?;
            match rest {
                "" => (host, None),
                rest => (host, Some(rest.strip_prefix(':')?)),
            }
        }
        // Only a bracketed host (IPv6) may hold a colon.
        None => match authority.rsplit_once(':') {
            Some((host, _)) if host.contains(':') => return None,
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let valid_host = !host.is_empty()
        && !host
            .bytes()
            .any(|byte| byte.is_ascii_whitespace() || matches!(byte, b'/' | b'[' | b']' | b'@'));
    if !valid_host {
        return None;
    }
    match port {
        None => Some((host, None)),
        Some(port) => Some((host, Some(port.parse().ok()?))),
    }
}

fn header_str(headers: &HeaderMap, name: http::HeaderName) -> Option<&str> {
    headers.get(name)?.to_str().ok()
}

/// Replaces the values of the parameters the conventions deem sensitive with `REDACTED`.
fn redact_query(query: &str) -> Cow<'_, str> {
    let is_sensitive = |pair: &str| {
        let name = pair.split_once('=').map_or(pair, |(name, _)| name);
        SENSITIVE_QUERY_PARAMETERS.contains(&name)
    };
    if !query.split('&').any(is_sensitive) {
        return Cow::Borrowed(query);
    }
    let redacted: Vec<Cow<'_, str>> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if is_sensitive(pair) => Cow::Owned(format!("{name}=REDACTED")),
            _ => Cow::Borrowed(pair),
        })
        .collect();
    Cow::Owned(redacted.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sensitive_query_values_are_redacted_and_others_kept() {
        assert_eq!(redact_query("q=rust&page=2"), "q=rust&page=2");
        assert_eq!(
            redact_query("sig=abc&q=1&Signature=x&AWSAccessKeyId=k&X-Goog-Signature=g&flag"),
            "sig=REDACTED&q=1&Signature=REDACTED&AWSAccessKeyId=REDACTED&X-Goog-Signature=REDACTED&flag"
        );
    }

    #[test]
    fn unknown_methods_become_other_and_name_the_span_http() {
        let request = Request::builder()
            .method(Method::from_bytes(b"PURGE").unwrap())
            .uri("/cache")
            .body(())
            .unwrap();
        let facts = RequestFacts::of(&request, &Routes::default());
        assert_eq!(facts.method, "_OTHER");
        assert_eq!(facts.span_name, "HTTP");
        let attributes = facts.recording_attributes(&request, &[]);
        assert!(attributes.contains(&KeyValue::new("http.request.method_original", "PURGE")));
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        for (authority, expected) in [
            ("example.com", Some(("example.com", None))),
            ("example.com:8080", Some(("example.com", Some(8080)))),
            ("user:pw@example.com:80", Some(("example.com", Some(80)))),
            ("[::1]", Some(("::1", None))),
            ("[2001:db8::1]:8443", Some(("2001:db8::1", Some(8443)))),
            ("10.0.0.1:3000", Some(("10.0.0.1", Some(3000)))),
            ("example.com:", None),
            ("example.com:http", None),
            ("example.com:70000", None),
            ("[::1", None),
            ("[::1]x", None),
            (":8080", None),
            ("::1:8080", None),
            ("", None),
            ("a b", None),
            ("a/b:1", None),
        ] {
            assert_eq!(split_authority(authority), expected, "{authority:?}");
        }
    }

    #[test]
    fn server_address_comes_from_the_host_header_or_the_uri() {
        let http1 = Request::builder()
            .uri("/")
            .header("host", "example.com:8080")
            .body(())
            .unwrap();
        let http2 = Request::builder()
            .uri("https://[::1]:8443/")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        for (request, host, port) in [(http1, "example.com", 8080), (http2, "::1", 8443)] {
            let facts = RequestFacts::of(&request, &Routes::default());
            let attributes = facts.recording_attributes(&request, &[]);
            assert!(attributes.contains(&KeyValue::new("server.address", host)));
            assert!(attributes.contains(&KeyValue::new("server.port", port)));
        }
    }
}
