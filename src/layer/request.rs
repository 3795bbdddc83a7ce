//! What a request tells its span and metrics, named as the HTTP semantic conventions name it.
//!
//! Every value a client chooses (the path, the query, an unknown method, the `User-Agent`, the
//! host it addressed, the recorded headers) is cut to the layer's attribute value length limit
//! (see [`truncated`]), and a recorded header keeps at most [`MAX_HEADER_VALUES`] values, so
//! that no request makes a span larger than a bound the service chooses, whatever it sends.

use std::{
    borrow::Cow,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use http::{HeaderMap, Method, Request, Version};
use opentelemetry::{Key, KeyValue, Value};

use super::{
    forwarded::Origin,
    known_methods::KnownMethods,
    redaction::SensitiveQueryParameters,
    routes::{ROUTES, Routes},
};
use crate::{http_metrics::ActiveSeries, rpc::RpcCall};
use opentelemetry_semantic_conventions::attribute::{
    CLIENT_ADDRESS, CLIENT_PORT, HTTP_REQUEST_METHOD, HTTP_REQUEST_METHOD_ORIGINAL, HTTP_ROUTE,
    NETWORK_PEER_ADDRESS, NETWORK_PEER_PORT, NETWORK_PROTOCOL_VERSION, SERVER_ADDRESS, SERVER_PORT,
    URL_PATH, URL_QUERY, URL_SCHEME, USER_AGENT_ORIGINAL,
};

/// How many values of one recorded header are kept, the first ones: a client can repeat a
/// header thousands of times, and legitimate repeats (proxies adding a line each) are a few.
pub(crate) const MAX_HEADER_VALUES: usize = 8;

/// The low-cardinality facts about a request, shared by its span and its metrics.
#[derive(Debug, Clone)]
pub(crate) struct RequestFacts {
    /// The method as the layer knows it (see [`KnownMethods`]), or `_OTHER`.
    pub(crate) method: &'static str,
    /// `http` or `https`: a trusted proxy's word, else the URI's.
    pub(crate) scheme: &'static str,
    /// The route template (`/users/{id}`), never the raw path.
    pub(crate) route: Option<Arc<str>>,
    pub(crate) protocol_version: &'static str,
    /// `{method} {route}`, `{method}` without a route, with `HTTP` for an unknown method.
    pub(crate) span_name: Cow<'static, str>,
    /// Whether the method is `HEAD`, whose response has no content, known or not.
    pub(crate) is_head: bool,
}

impl RequestFacts {
    /// The facts of `request` from `origin`, its span name taken from the process's [`ROUTES`].
    pub(crate) fn of<B>(
        request: &Request<B>,
        known_methods: &KnownMethods,
        origin: &Origin<'_>,
    ) -> Self {
        Self::named_in(request, known_methods, origin, &ROUTES)
    }

    fn named_in<B>(
        request: &Request<B>,
        known_methods: &KnownMethods,
        origin: &Origin<'_>,
        routes: &Routes,
    ) -> Self {
        let method = known_methods.get(request.method()).unwrap_or("_OTHER");
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
            scheme: origin.scheme.unwrap_or(match request.uri().scheme_str() {
                Some("https") => "https",
                _ => "http",
            }),
            route,
            protocol_version: protocol_version(request.version()),
            span_name,
            is_head: request.method() == Method::HEAD,
        }
    }

    /// The attributes of `http.server.active_requests`.
    pub(crate) fn active_series(&self) -> ActiveSeries {
        ActiveSeries {
            method: self.method,
            scheme: self.scheme,
        }
    }

    /// The span's attributes, all given when it starts, so that samplers see those the
    /// conventions (v1.44.0, HTTP server span) mark sampling-relevant and ask for at creation:
    /// `client.address`, `http.request.header.<key>`, `http.request.method`, `server.address`,
    /// `server.port`, `url.path`, `url.query`, `url.scheme`, `user_agent.original`. Each string
    /// a client controls is cut to `limit` characters, the values of the `sensitive` query
    /// parameters redacted.
    pub(crate) fn span_attributes<B>(
        &self,
        request: &Request<B>,
        origin: &Origin<'_>,
        headers_to_record: &[(http::HeaderName, Key)],
        sensitive: &SensitiveQueryParameters,
        limit: usize,
    ) -> Vec<KeyValue> {
        // Room for all of them, and for the status code and error type set at the end.
        let mut attributes = Vec::with_capacity(16 + headers_to_record.len());
        attributes.push(KeyValue::new(HTTP_REQUEST_METHOD, self.method));
        attributes.push(KeyValue::new(URL_SCHEME, self.scheme));
        let path = truncated(request.uri().path(), limit);
        attributes.push(KeyValue::new(URL_PATH, path.to_owned()));
        if let Some(route) = &self.route {
            attributes.push(KeyValue::new(HTTP_ROUTE, Value::from(route.clone())));
        }
        attributes.push(KeyValue::new(
            NETWORK_PROTOCOL_VERSION,
            self.protocol_version,
        ));
        if self.method == "_OTHER" {
            let method = truncated(request.method().as_str(), limit);
            attributes.push(KeyValue::new(
                HTTP_REQUEST_METHOD_ORIGINAL,
                method.to_owned(),
            ));
        }
        if let Some(query) = request.uri().query() {
            attributes.push(KeyValue::new(URL_QUERY, sensitive.redacted(query, limit)));
        }
        if let Some((host, port)) = server(request, origin) {
            let host = truncated(host, limit);
            attributes.push(KeyValue::new(SERVER_ADDRESS, host.to_owned()));
            if let Some(port) = port {
                attributes.push(KeyValue::new(SERVER_PORT, i64::from(port)));
            }
        }
        client_and_peer_attributes(origin, limit, &mut attributes);
        if let Some(agent) = header_str(request.headers(), http::header::USER_AGENT) {
            let agent = truncated(agent, limit);
            attributes.push(KeyValue::new(USER_AGENT_ORIGINAL, agent.to_owned()));
        }
        record_headers(request.headers(), headers_to_record, limit, &mut attributes);
        attributes
    }
}

/// The attributes a gRPC call's span starts with (v1.44.0, docs/rpc/grpc.md, the server
/// span): the call's own (see [`RpcCall`]), `server.address` and `server.port` as an HTTP
/// request has them, and `network.peer.address` and `network.peer.port`.
pub(crate) fn rpc_span_attributes<B>(
    request: &Request<B>,
    origin: &Origin<'_>,
    call: &RpcCall,
    limit: usize,
) -> Vec<KeyValue> {
    let mut attributes = Vec::with_capacity(8);
    call.push_start_attributes(&mut attributes);
    if let Some((host, port)) = server(request, origin) {
        let host = truncated(host, limit);
        attributes.push(KeyValue::new(SERVER_ADDRESS, host.to_owned()));
        if let Some(port) = port {
            attributes.push(KeyValue::new(SERVER_PORT, i64::from(port)));
        }
    }
    if let Some(peer) = origin.peer {
        let address = ip_string(peer.ip(), limit);
        attributes.push(KeyValue::new(NETWORK_PEER_ADDRESS, Value::from(address)));
        attributes.push(KeyValue::new(NETWORK_PEER_PORT, i64::from(peer.port())));
    }
    attributes
}

/// The server the request addressed: a trusted proxy's host, when it is `host[:port]`; else the
/// request's own.
#[inline]
fn server<'a, B>(request: &'a Request<B>, origin: &Origin<'a>) -> Option<(&'a str, Option<u16>)> {
    origin
        .host
        .and_then(split_authority)
        .or_else(|| authority(request).and_then(split_authority))
}

/// Appends `client.address` and `client.port`, `network.peer.address` and `network.peer.port`.
/// An IP address is at most 39 characters: cut only under a smaller limit. When the client is
/// the peer, both addresses share one string.
fn client_and_peer_attributes(origin: &Origin<'_>, limit: usize, attributes: &mut Vec<KeyValue>) {
    let peer = origin.peer.map(|peer| (peer, ip_string(peer.ip(), limit)));
    if let Some((address, port)) = origin.client {
        let shared = peer
            .as_ref()
            .filter(|(peer, _)| peer.ip() == address)
            .map(|(_, string)| string.clone());
        let string = shared.unwrap_or_else(|| ip_string(address, limit));
        attributes.push(KeyValue::new(CLIENT_ADDRESS, Value::from(string)));
        if let Some(port) = port {
            attributes.push(KeyValue::new(CLIENT_PORT, i64::from(port)));
        }
    }
    if let Some((peer, string)) = peer {
        attributes.push(KeyValue::new(NETWORK_PEER_ADDRESS, Value::from(string)));
        attributes.push(KeyValue::new(NETWORK_PEER_PORT, i64::from(peer.port())));
    }
}

/// `address` as text, cut to `limit` characters, in one allocation.
fn ip_string(address: IpAddr, limit: usize) -> Arc<str> {
    use std::io::Write as _;
    // Rust writes an IP address in at most 39 bytes (eight groups of four hex digits).
    let mut buffer = [0u8; 64];
    let mut free = &mut buffer[..];
    let written = write!(free, "{address}").map_or(0, |()| 64 - free.len());
    let text = std::str::from_utf8(&buffer[..written]).unwrap_or_default();
    Arc::from(truncated(text, limit))
}

/// Appends `http.{request,response}.header.<name>` attributes, one string array each: the
/// first [`MAX_HEADER_VALUES`] values of the header, each cut to `value_length_limit`
/// characters (as the specification limits a string array: each element on its own). A value
/// marked sensitive ([`HeaderValue::is_sensitive`](http::HeaderValue::is_sensitive), as
/// tower-http's `SetSensitiveHeaders` marks them) is left out.
pub(crate) fn record_headers(
    headers: &HeaderMap,
    headers_to_record: &[(http::HeaderName, Key)],
    value_length_limit: usize,
    attributes: &mut Vec<KeyValue>,
) {
    for (name, key) in headers_to_record {
        let values: Vec<_> = headers
            .get_all(name)
            .iter()
            .filter(|value| !value.is_sensitive())
            .take(MAX_HEADER_VALUES)
            .map(|value| {
                // Enough bytes for `value_length_limit` characters of any width: the rest would
                // be cut, so it is not converted.
                let bytes = value.as_bytes();
                let kept = bytes.len().min(value_length_limit.saturating_mul(4));
                let value = String::from_utf8_lossy(&bytes[..kept]);
                truncated_owned(value, value_length_limit).into()
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

/// `value` cut to its first `limit` characters, at a character boundary: the attribute value
/// length limit of the OpenTelemetry specification (v1.44.0, "Attribute Limits": a string longer
/// than the limit, counting each character as 1, is truncated to at most the limit).
///
/// Free for every value that fits: a string of at most `limit` bytes has at most `limit`
/// characters, so only longer ones are counted.
#[inline]
pub(crate) fn truncated(value: &str, limit: usize) -> &str {
    if value.len() <= limit {
        return value;
    }
    truncated_by_characters(value, limit)
}

/// [`truncated`] for a value longer than `limit` bytes, which may still fit.
#[cold]
fn truncated_by_characters(value: &str, limit: usize) -> &str {
    match value.char_indices().nth(limit) {
        Some((end, _)) => &value[..end],
        None => value,
    }
}

/// [`truncated`] for a value that may already be owned, cut in place: one allocation at most,
/// as many as copying it whole.
pub(crate) fn truncated_owned(value: Cow<'_, str>, limit: usize) -> String {
    match value {
        Cow::Borrowed(value) => truncated(value, limit).to_owned(),
        Cow::Owned(mut value) => {
            let end = truncated(&value, limit).len();
            value.truncate(end);
            value
        }
    }
}

pub(crate) fn protocol_version(version: Version) -> &'static str {
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

/// The socket peer, as axum's `ConnectInfo<SocketAddr>` gives it, in canonical form (an
/// IPv4-mapped IPv6 address, as a dual-stack socket gives an IPv4 peer, as the IPv4 address).
#[cfg(feature = "axum")]
pub(crate) fn peer_address<B>(request: &Request<B>) -> Option<SocketAddr> {
    use axum::extract::ConnectInfo;
    let ConnectInfo(peer) = request.extensions().get::<ConnectInfo<SocketAddr>>()?;
    Some(SocketAddr::new(peer.ip().to_canonical(), peer.port()))
}

#[cfg(not(feature = "axum"))]
pub(crate) fn peer_address<B>(_request: &Request<B>) -> Option<SocketAddr> {
    None
}

/// The socket peer of a gRPC call: axum's `ConnectInfo` as for any request, else what tonic's
/// own server gives (`TcpConnectInfo`, inside `TlsConnectInfo` over TLS), canonical as
/// [`peer_address`] gives it.
pub(crate) fn grpc_peer_address<B>(request: &Request<B>) -> Option<SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    let peer = peer_address(request)
        .or_else(|| extensions.get::<TcpConnectInfo>()?.remote_addr())
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()?
                .get_ref()
                .remote_addr()
        })?;
    Some(SocketAddr::new(peer.ip().to_canonical(), peer.port()))
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
pub(crate) fn split_authority(authority: &str) -> Option<(&str, Option<u16>)> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The facts of `request` with the default known methods and no proxy.
    fn facts_of<B>(request: &Request<B>) -> RequestFacts {
        RequestFacts::named_in(
            request,
            &KnownMethods::default(),
            &Origin::default(),
            &Routes::new(),
        )
    }

    /// The span attributes of `request` from no known peer, with no header recorded and the
    /// default sensitive query parameters.
    fn default_attributes<B>(
        facts: &RequestFacts,
        request: &Request<B>,
        limit: usize,
    ) -> Vec<KeyValue> {
        facts.span_attributes(
            request,
            &Origin::default(),
            &[],
            &SensitiveQueryParameters::default(),
            limit,
        )
    }

    #[test]
    fn a_query_is_redacted_before_it_is_cut() {
        let request = Request::get("/?Signature=0123456789abcdef&q=1")
            .body(())
            .unwrap();
        let facts = facts_of(&request);
        let attributes = default_attributes(&facts, &request, 14);
        assert!(attributes.contains(&KeyValue::new("url.query", "Signature=REDA")));
    }

    #[test]
    fn unknown_methods_become_other_and_name_the_span_http() {
        let request = Request::builder()
            .method(Method::from_bytes(b"PURGE").unwrap())
            .uri("/cache")
            .body(())
            .unwrap();
        let facts = facts_of(&request);
        assert_eq!(facts.method, "_OTHER");
        assert_eq!(facts.span_name, "HTTP");
        let attributes = default_attributes(&facts, &request, 2048);
        assert!(attributes.contains(&KeyValue::new("http.request.method_original", "PURGE")));
    }

    #[test]
    fn values_are_cut_to_the_limit_counted_in_characters_at_a_character_boundary() {
        // ASCII: bytes are characters.
        assert_eq!(truncated("abcdef", 3), "abc");
        assert_eq!(truncated("abc", 3), "abc");
        assert_eq!(truncated("ab", 3), "ab");
        // Limit 0 empties every value; an empty value stays empty.
        assert_eq!(truncated("abc", 0), "");
        assert_eq!(truncated("é", 0), "");
        assert_eq!(truncated("", 0), "");
        // Multi-byte: longer in bytes than the limit, yet within it in characters.
        assert_eq!(truncated("aé", 2), "aé");
        assert_eq!(truncated("€€€", 3), "€€€");
        // Cut after the limit-th character, never inside one.
        assert_eq!(truncated("aéb", 2), "aé");
        assert_eq!(truncated("€€€€", 3), "€€€");
        assert_eq!(truncated("a😀b", 1), "a");
        assert_eq!(truncated("a😀b", 2), "a😀");
        let long = "ü".repeat(3000);
        let cut = truncated(&long, 2048);
        assert_eq!((cut.chars().count(), cut.len()), (2048, 4096));
    }

    #[test]
    fn an_owned_value_is_cut_in_place_and_a_borrowed_one_copied_once() {
        let owned = "x".repeat(100);
        let buffer = owned.as_ptr();
        let cut = truncated_owned(Cow::Owned(owned), 10);
        assert_eq!(cut, "x".repeat(10));
        assert_eq!(cut.as_ptr(), buffer);
        assert_eq!(truncated_owned(Cow::Borrowed("ab€c"), 3), "ab€");
        assert_eq!(truncated_owned(Cow::Borrowed("ab"), 3), "ab");
    }

    #[test]
    fn a_recorded_header_keeps_its_first_8_values_each_cut_to_the_limit() {
        let mut headers = HeaderMap::new();
        for n in 0..10_000 {
            headers.append(
                "x-tag",
                http::HeaderValue::from_str(&format!("{n}-abcdef")).unwrap(),
            );
        }
        // Bytes that are not UTF-8 become U+FFFD, one character each.
        headers.append(
            "x-raw",
            http::HeaderValue::from_bytes(b"\xffok\xfe").unwrap(),
        );
        // Only the first 4 × 3 bytes are converted: the cut through the third emoji is past
        // the third character.
        headers.append(
            "x-wide",
            http::HeaderValue::from_bytes("a😀😀😀😀".as_bytes()).unwrap(),
        );
        let recorded = [
            (http::HeaderName::from_static("x-tag"), Key::new("tag")),
            (http::HeaderName::from_static("x-raw"), Key::new("raw")),
            (http::HeaderName::from_static("x-wide"), Key::new("wide")),
        ];
        let mut attributes = Vec::new();
        record_headers(&headers, &recorded, 3, &mut attributes);
        let strings = |values: &[&str]| {
            Value::Array(opentelemetry::Array::String(
                values
                    .iter()
                    .map(|value| value.to_string().into())
                    .collect(),
            ))
        };
        assert_eq!(
            attributes,
            [
                KeyValue::new(
                    "tag",
                    strings(&["0-a", "1-a", "2-a", "3-a", "4-a", "5-a", "6-a", "7-a"])
                ),
                KeyValue::new("raw", strings(&["\u{fffd}ok"])),
                KeyValue::new("wide", strings(&["a😀😀"])),
            ]
        );
    }

    #[test]
    fn a_header_value_marked_sensitive_is_not_recorded() {
        let mut headers = HeaderMap::new();
        let mut secret = http::HeaderValue::from_static("k3y-marked-sensitive");
        secret.set_sensitive(true);
        headers.append("x-api-key", secret);
        headers.append("x-api-key", http::HeaderValue::from_static("public"));
        let recorded = [(http::HeaderName::from_static("x-api-key"), Key::new("key"))];
        let mut attributes = Vec::new();
        record_headers(&headers, &recorded, 2048, &mut attributes);
        let kept = Value::Array(opentelemetry::Array::String(vec!["public".into()]));
        assert_eq!(attributes, [KeyValue::new("key", kept)]);
    }

    #[test]
    fn user_info_reaches_no_attribute() {
        // Absolute form (HTTP/1.1 to a proxy), `:authority` (HTTP/2) and a `Host` header, each
        // with user info: `server.address` is the host alone.
        let absolute = Request::get("http://alice:s3cret@example.com:8080/p?q=1")
            .body(())
            .unwrap();
        let http2 = Request::get("https://alice:s3cret@example.com:8080/p?q=1")
            .version(Version::HTTP_2)
            .body(())
            .unwrap();
        let host = Request::get("/p?q=1")
            .header("host", "alice:s3cret@example.com:8080")
            .body(())
            .unwrap();
        for request in [absolute, http2, host] {
            let attributes = default_attributes(&facts_of(&request), &request, 2048);
            assert!(attributes.contains(&KeyValue::new("server.address", "example.com")));
            assert!(attributes.contains(&KeyValue::new("server.port", 8080)));
            assert!(attributes.contains(&KeyValue::new("url.path", "/p")));
            let all = format!("{attributes:?}");
            assert!(!all.contains("s3cret") && !all.contains("alice"), "{all}");
        }
    }

    #[test]
    fn every_value_a_client_controls_is_cut_and_the_others_are_not() {
        let long = "a".repeat(50);
        let request = Request::builder()
            .method(Method::from_bytes(long.to_uppercase().as_bytes()).unwrap())
            .uri(format!("/{long}?q={long}"))
            .header("host", format!("{long}.example:8080"))
            .header("user-agent", &long)
            .header("x-id", &long)
            .body(())
            .unwrap();
        let facts = facts_of(&request);
        let recorded = [(http::HeaderName::from_static("x-id"), Key::new("id"))];
        let attributes = facts.span_attributes(
            &request,
            &Origin::default(),
            &recorded,
            &SensitiveQueryParameters::default(),
            4,
        );
        let value = |key: &str| {
            let found = attributes.iter().find(|kv| kv.key.as_str() == key);
            found.map(|kv| kv.value.clone())
        };
        for (key, expected) in [
            ("url.path", "/aaa"),
            ("url.query", "q=aa"),
            ("http.request.method_original", "AAAA"),
            ("server.address", "aaaa"),
            ("user_agent.original", "aaaa"),
            ("http.request.method", "_OTHER"),
            ("url.scheme", "http"),
            ("network.protocol.version", "1.1"),
        ] {
            assert_eq!(value(key), Some(Value::from(expected)), "{key}");
        }
        assert_eq!(value("server.port"), Some(Value::I64(8080)));
        let id = Value::Array(opentelemetry::Array::String(vec!["aaaa".into()]));
        assert_eq!(value("id"), Some(id));
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
    fn a_trusted_origin_gives_scheme_server_and_client_and_the_socket_gives_the_peer() {
        let request = Request::get("/")
            .header("host", "internal:80")
            .body(())
            .unwrap();
        let mut origin = Origin {
            peer: Some("10.0.0.1:5000".parse().unwrap()),
            client: Some(("2001:db8::7".parse().unwrap(), Some(4711))),
            scheme: Some("https"),
            host: Some("shop.example:8443"),
        };
        let facts =
            RequestFacts::named_in(&request, &KnownMethods::default(), &origin, &Routes::new());
        assert_eq!(facts.scheme, "https");
        let attributes = facts.span_attributes(
            &request,
            &origin,
            &[],
            &SensitiveQueryParameters::default(),
            2048,
        );
        for expected in [
            KeyValue::new("url.scheme", "https"),
            KeyValue::new("server.address", "shop.example"),
            KeyValue::new("server.port", 8443),
            KeyValue::new("client.address", "2001:db8::7"),
            KeyValue::new("client.port", 4711),
            KeyValue::new("network.peer.address", "10.0.0.1"),
            KeyValue::new("network.peer.port", 5000),
        ] {
            assert!(attributes.contains(&expected), "{expected:?}");
        }
        // A forwarded host that is not `host[:port]` leaves the request's; an IP address is cut
        // only under a limit shorter than it.
        origin.host = Some("bad host");
        let attributes = facts.span_attributes(
            &request,
            &origin,
            &[],
            &SensitiveQueryParameters::default(),
            4,
        );
        assert!(attributes.contains(&KeyValue::new("server.address", "inte")));
        assert!(attributes.contains(&KeyValue::new("server.port", 80)));
        assert!(attributes.contains(&KeyValue::new("client.address", "2001")));
        assert!(attributes.contains(&KeyValue::new("network.peer.address", "10.0")));
    }

    #[test]
    fn ip_addresses_are_written_whole_up_to_the_longest() {
        let longest: IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.254"
            .parse()
            .unwrap();
        assert_eq!(longest.to_string().len(), 39);
        assert_eq!(&*ip_string(longest, 2048), longest.to_string());
        assert_eq!(&*ip_string("192.0.2.1".parse().unwrap(), 2048), "192.0.2.1");
        assert_eq!(&*ip_string("192.0.2.1".parse().unwrap(), 3), "192");
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
            let facts = facts_of(&request);
            let attributes = default_attributes(&facts, &request, 2048);
            assert!(attributes.contains(&KeyValue::new("server.address", host)));
            assert!(attributes.contains(&KeyValue::new("server.port", port)));
        }
    }
}
