//! What an outgoing call records, computed in one place: its span name and the attributes known
//! when it starts (the request), and those known when the response head arrives.
//!
//! Every value taken from the request that may be long (`url.full`, `server.address`,
//! `http.request.method_original`) is cut to the layer's attribute value length limit.

use std::{borrow::Cow, sync::Arc};

use http::{Extensions, HeaderMap, Method, Uri};
use opentelemetry::{KeyValue, Value};
use opentelemetry_semantic_conventions::attribute::{
    HTTP_REQUEST_METHOD, HTTP_REQUEST_METHOD_ORIGINAL, HTTP_REQUEST_RESEND_COUNT, SERVER_ADDRESS,
    SERVER_PORT, URL_FULL, URL_TEMPLATE,
};

use super::{ResendCount, Shared, UrlTemplate};
use crate::layer::{
    redaction::SensitiveQueryParameters,
    request::{split_authority, truncated, truncated_owned},
    routes::ROUTES,
};
use crate::rpc::RpcCall;

/// The low-cardinality facts of a call, shared by its span and its duration metric.
#[derive(Debug)]
pub(crate) struct CallFacts {
    /// The method as the layer knows it, or `_OTHER`.
    pub(crate) method: &'static str,
    /// `{method}` or `{method} {url.template}`, with `HTTP` for an unknown method.
    pub(crate) span_name: Cow<'static, str>,
    /// The host called, one shared string per host (see [`HttpClientMetrics::address`]).
    ///
    /// [`HttpClientMetrics::address`]: super::metrics::HttpClientMetrics::address
    pub(crate) server_address: Option<Arc<str>>,
    pub(crate) server_port: Option<u16>,
    pub(crate) url_template: Option<Arc<str>>,
    /// The caller's [`ResendCount`], 0 for a first attempt.
    pub(crate) resend_count: u32,
    /// Whether the method is `HEAD`, whose response has no content.
    pub(crate) is_head: bool,
}

impl CallFacts {
    /// The facts of a request to `uri` with these headers and extensions.
    pub(crate) fn of(
        shared: &Shared,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        extensions: &Extensions,
    ) -> Self {
        let known = shared.known_methods.get(method);
        let name_method = known.unwrap_or("HTTP");
        let (url_template, span_name) = match extensions.get::<UrlTemplate>() {
            Some(template) => {
                let (template, name) = ROUTES.named(name_method, template.as_str());
                (Some(template), name)
            }
            None => (None, Cow::Borrowed(name_method)),
        };
        let (server_address, server_port) = match server(uri, headers) {
            Some((host, port)) => {
                let host = truncated(host, shared.value_length_limit);
                let port = port.or_else(|| default_port(uri));
                (Some(shared.metrics.address(host)), port)
            }
            None => (None, None),
        };
        Self {
            method: known.unwrap_or("_OTHER"),
            span_name,
            server_address,
            server_port,
            url_template,
            resend_count: extensions.get::<ResendCount>().map_or(0, |count| count.0),
            is_head: method == Method::HEAD,
        }
    }

    /// The span's attributes, all given when it starts, so that samplers see those the
    /// conventions (v1.44.0, HTTP client span) mark sampling-relevant: `http.request.method`,
    /// `server.address`, `server.port`, `url.full`.
    pub(crate) fn span_attributes(
        &self,
        shared: &Shared,
        method: &Method,
        uri: &Uri,
    ) -> Vec<KeyValue> {
        let limit = shared.value_length_limit;
        // Room for all of them, and for the status code, protocol version and error type.
        let mut attributes = Vec::with_capacity(10);
        attributes.push(KeyValue::new(HTTP_REQUEST_METHOD, self.method));
        if self.method == "_OTHER" {
            let original = truncated(method.as_str(), limit);
            attributes.push(KeyValue::new(
                HTTP_REQUEST_METHOD_ORIGINAL,
                original.to_owned(),
            ));
        }
        if let Some(address) = &self.server_address {
            attributes.push(KeyValue::new(SERVER_ADDRESS, Value::from(address.clone())));
        }
        if let Some(port) = self.server_port {
            attributes.push(KeyValue::new(SERVER_PORT, i64::from(port)));
        }
        attributes.push(KeyValue::new(
            URL_FULL,
            url_full(uri, &shared.sensitive_query_parameters, limit),
        ));
        if let Some(template) = &self.url_template {
            attributes.push(KeyValue::new(URL_TEMPLATE, Value::from(template.clone())));
        }
        if self.resend_count > 0 {
            attributes.push(KeyValue::new(
                HTTP_REQUEST_RESEND_COUNT,
                i64::from(self.resend_count),
            ));
        }
        attributes
    }
}

impl CallFacts {
    /// The attributes a gRPC call's CLIENT span starts with (v1.44.0, docs/rpc/grpc.md): the
    /// call's own (see [`RpcCall`]), and `server.address` and `server.port`, which the
    /// conventions require, from the URI's authority as for an HTTP call. A tonic client gives
    /// the requests an authority when it has an origin (`Grpc::with_origin`, or a generated
    /// client's `with_origin`); built on a bare `Channel`, its requests carry only the path,
    /// and the channel adds its endpoint below this layer.
    pub(crate) fn rpc_span_attributes(&self, call: &RpcCall) -> Vec<KeyValue> {
        let mut attributes = Vec::with_capacity(6);
        call.push_start_attributes(&mut attributes);
        if let Some(address) = &self.server_address {
            attributes.push(KeyValue::new(SERVER_ADDRESS, Value::from(address.clone())));
            if let Some(port) = self.server_port {
                attributes.push(KeyValue::new(SERVER_PORT, i64::from(port)));
            }
        }
        attributes
    }
}

/// The host and port called: the URI's authority (absolute-form, as clients send), else the
/// `Host` header; `None` when neither is `host[:port]`.
fn server<'a>(uri: &'a Uri, headers: &'a HeaderMap) -> Option<(&'a str, Option<u16>)> {
    match uri.authority() {
        Some(authority) => split_authority(authority.as_str()),
        None => split_authority(headers.get(http::header::HOST)?.to_str().ok()?),
    }
}

/// The port of a URI that names none: the default of its scheme.
fn default_port(uri: &Uri) -> Option<u16> {
    match uri.scheme_str()? {
        "http" | "ws" => Some(80),
        "https" | "wss" => Some(443),
        _ => None,
    }
}

/// `url.full` of a request to `uri`, as the conventions (v1.44.0, `url.full`) ask: user info
/// replaced by `REDACTED:REDACTED`, the values of the `sensitive` query parameters by
/// `REDACTED`, cut to `limit` characters after both. A URI without an authority (a client that
/// adds it below this layer, as tonic's `Channel` does) gives its path and query alone.
pub(crate) fn url_full(uri: &Uri, sensitive: &SensitiveQueryParameters, limit: usize) -> String {
    let path = truncated(uri.path(), limit);
    let query = uri.query().map(|query| sensitive.redacted(query, limit));
    let mut full =
        String::with_capacity(64 + path.len() + query.as_ref().map_or(0, |query| query.len() + 1));
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        full.push_str(scheme);
        full.push_str("://");
        let authority = authority.as_str();
        match authority.rsplit_once('@') {
            Some((_, host)) => {
                full.push_str("REDACTED:REDACTED@");
                full.push_str(host);
            }
            None => full.push_str(authority),
        }
    }
    full.push_str(path);
    if let Some(query) = query {
        full.push('?');
        full.push_str(&query);
    }
    truncated_owned(Cow::Owned(full), limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(uri: &str, limit: usize) -> String {
        url_full(
            &uri.parse().unwrap(),
            &SensitiveQueryParameters::default(),
            limit,
        )
    }

    #[test]
    fn url_full_keeps_no_user_info_and_no_sensitive_query_value() {
        assert_eq!(
            full("https://user:secret@example.com:8443/a?q=1&sig=abc", 2048),
            "https://REDACTED:REDACTED@example.com:8443/a?q=1&sig=REDACTED"
        );
        assert_eq!(
            full("http://token@[::1]/", 2048),
            "http://REDACTED:REDACTED@[::1]/"
        );
        assert_eq!(full("http://example.com", 2048), "http://example.com/");
        assert_eq!(full("/pkg.Service/Method", 2048), "/pkg.Service/Method");
    }

    #[test]
    fn url_full_is_redacted_before_it_is_cut() {
        assert_eq!(
            full("http://h/?Signature=0123456789abcdef", 22),
            "http://h/?Signature=RE"
        );
        assert_eq!(full("http://h/é/é", 10), "http://h/é");
    }

    #[test]
    fn the_port_defaults_to_the_schemes() {
        let uri = |uri: &str| uri.parse::<Uri>().unwrap();
        assert_eq!(default_port(&uri("http://h/")), Some(80));
        assert_eq!(default_port(&uri("https://h/")), Some(443));
        assert_eq!(default_port(&uri("ftp://h/")), None);
        assert_eq!(default_port(&uri("/path")), None);
        let headers = HeaderMap::new();
        assert_eq!(
            server(&uri("http://u:p@[::1]:8080/"), &headers),
            Some(("::1", Some(8080)))
        );
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, "api.internal:81".parse().unwrap());
        assert_eq!(
            server(&uri("/x"), &headers),
            Some(("api.internal", Some(81)))
        );
    }
}
