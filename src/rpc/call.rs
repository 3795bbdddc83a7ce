//! One gRPC call as the RPC conventions (v1.44.0) record it, on either side: its method, its
//! status, from the response head or the trailers at the end of the body, and how it ended.

use std::{borrow::Cow, sync::Arc};

use http::{HeaderMap, StatusCode, Uri};
use opentelemetry::{
    KeyValue, Value,
    trace::{SpanRef, Status},
};
use opentelemetry_semantic_conventions::attribute::{
    ERROR_TYPE, RPC_METHOD, RPC_METHOD_ORIGINAL, RPC_RESPONSE_STATUS_CODE, RPC_SYSTEM_NAME,
};

use super::{metrics::RpcSeries, status::Code};

/// `rpc.system.name` of every call recorded here.
const GRPC: &str = "grpc";

/// `rpc.method` of a method that is not recognised.
const OTHER: &str = "_OTHER";

/// `error.type` of a call whose response ended without a status: gRPC requires one (in the
/// trailers, or in the head of a trailers-only response), so the call failed, with no code to
/// name it by; a value of our own, as the conventions allow ("a component-specific, low
/// cardinality error identifier").
const MISSING_STATUS: &str = "missing_grpc_status";

/// Which end of the call is recorded: they disagree on which codes are errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The span is SERVER; `rpc.server.call.duration`.
    Server,
    /// The span is CLIENT; `rpc.client.call.duration`.
    Client,
}

/// A gRPC call between its start and its end.
#[derive(Debug)]
pub(crate) struct RpcCall {
    side: Side,
    /// The request's path without its leading `/`: `package.Service/Method` for a well-formed
    /// one, cut to the attribute value length limit.
    path: Arc<str>,
    /// Whether `path` is `rpc.method` (else `rpc.method` is `_OTHER` and `path` is
    /// `rpc.method_original`): it is `service/method`, and, on a server, the server did not
    /// answer `UNIMPLEMENTED`, which is what a gRPC server (tonic's router, a generated
    /// service) answers to a service or method it does not know. The conventions (v1.44.0,
    /// `rpc.method`) ask for `_OTHER` for a method the server does not know; a layer in front
    /// of the server learns it from that answer, so a handler's own `UNIMPLEMENTED` is recorded
    /// as an unknown method too. This keeps `rpc.method`, a metric attribute, to the methods
    /// the service has, whatever paths clients send.
    recognised: bool,
    status: Option<Code>,
}

/// How a call ended.
#[derive(Debug)]
pub(crate) struct Outcome {
    /// `rpc.response.status_code`, when the call has one.
    status: Option<Code>,
    /// `error.type`, when the call failed.
    error_type: Option<Cow<'static, str>>,
    /// Whether the span's status is Error.
    failed: bool,
}

impl RpcCall {
    /// The call of a request to `uri`, on `side`; `limit` is the attribute value length limit.
    pub(crate) fn of(side: Side, uri: &Uri, limit: usize) -> Self {
        let path = uri.path();
        let path = path.strip_prefix('/').unwrap_or(path);
        let recognised = path.split_once('/').is_some_and(|(service, method)| {
            !service.is_empty() && !method.is_empty() && !method.contains('/')
        });
        Self {
            side,
            path: Arc::from(crate::layer::request::truncated(path, limit)),
            recognised: recognised && path.len() <= limit,
            status: None,
        }
    }

    /// The span's name (v1.44.0, docs/rpc/rpc-spans.md, "Name"): `rpc.method`, or
    /// `rpc.system.name`, `grpc`, when it is `_OTHER`.
    pub(crate) fn span_name(&self) -> Cow<'static, str> {
        if self.recognised {
            Cow::Owned(self.path.to_string())
        } else {
            Cow::Borrowed(GRPC)
        }
    }

    /// Appends the attributes known when the call starts: `rpc.system.name`.
    ///
    /// `rpc.method`, which the conventions would also have samplers see, waits for the end of
    /// the call, where the server's answer says whether it knows the method: the SDK (0.33)
    /// appends an attribute set a second time instead of replacing it, so a method found
    /// unknown at the end would be exported with both values. The span's name, which samplers
    /// do see, is the method from the start.
    pub(crate) fn push_start_attributes(&self, attributes: &mut Vec<KeyValue>) {
        attributes.push(KeyValue::new(RPC_SYSTEM_NAME, GRPC));
    }

    /// Notes the response head: a trailers-only response carries the status there; one without
    /// `grpc-status` and not 200 has the status a client maps its HTTP status to.
    pub(crate) fn on_response_head(&mut self, status: StatusCode, headers: &HeaderMap) {
        self.status = Code::in_headers(headers).or_else(|| Code::of_http_status(status));
    }

    /// Notes that the caller gave up on the call before its status came: a client generates
    /// `CANCELLED` for it.
    pub(crate) fn on_cancelled(&mut self) {
        if self.status.is_none() {
            self.status = Some(Code::CANCELLED);
        }
    }

    /// Notes the trailers at the end of the response body, where the status of a call that
    /// sent a response head of its own is.
    pub(crate) fn on_trailers(&mut self, trailers: &HeaderMap) {
        if let Some(status) = Code::in_headers(trailers) {
            self.status = Some(status);
        }
    }

    /// How the call ended, given the error it failed with before a status came, if any (with
    /// whether that error is a failure of this side: a client that goes away is not the
    /// server's). The status, when there is one, decides: an error for this side's codes (see
    /// [`Code::is_server_error`]), with its name as `error.type`. Without a status and
    /// without an error, the response ended without the status gRPC requires:
    /// `missing_grpc_status`.
    pub(crate) fn outcome(
        &self,
        error_type: Option<Cow<'static, str>>,
        error_is_failure: bool,
    ) -> Outcome {
        match (self.status, error_type) {
            (Some(code), _) => {
                let failed = match self.side {
                    Side::Server => code.is_server_error(),
                    Side::Client => code.is_client_error(),
                };
                Outcome {
                    status: Some(code),
                    error_type: failed.then_some(Cow::Borrowed(code.name())),
                    failed,
                }
            }
            (None, Some(error_type)) => Outcome {
                status: None,
                error_type: Some(error_type),
                failed: error_is_failure,
            },
            (None, None) => Outcome {
                status: None,
                error_type: Some(Cow::Borrowed(MISSING_STATUS)),
                failed: true,
            },
        }
    }

    /// Whether `rpc.method` is the method called, once the call ended as `outcome`.
    fn method_recognised(&self, outcome: &Outcome) -> bool {
        self.recognised
            && !(self.side == Side::Server && outcome.status == Some(Code::UNIMPLEMENTED))
    }

    /// Sets what the end of the call tells its span: `rpc.method` (`_OTHER`, with
    /// `rpc.method_original`, for a method that is not recognised, and the name `grpc`),
    /// `rpc.response.status_code`, `error.type` and the status.
    pub(crate) fn end_span(&self, span: &SpanRef<'_>, outcome: &Outcome) {
        let mut attributes = Vec::with_capacity(4);
        if self.method_recognised(outcome) {
            attributes.push(KeyValue::new(RPC_METHOD, Value::from(self.path.clone())));
        } else {
            if self.recognised {
                span.update_name(GRPC);
            }
            attributes.push(KeyValue::new(RPC_METHOD, OTHER));
            attributes.push(KeyValue::new(
                RPC_METHOD_ORIGINAL,
                Value::from(self.path.clone()),
            ));
        }
        if let Some(status) = outcome.status {
            attributes.push(KeyValue::new(RPC_RESPONSE_STATUS_CODE, status.name()));
        }
        if let Some(error_type) = &outcome.error_type {
            attributes.push(KeyValue::new(ERROR_TYPE, error_type.clone()));
        }
        span.set_attributes(attributes);
        if outcome.failed {
            span.set_status(Status::error(""));
        }
    }

    /// The attributes of the call's duration, once it ended as `outcome`; `server` is
    /// `server.address` and `server.port`, which a client records.
    pub(crate) fn series(
        self,
        outcome: Outcome,
        server: Option<(Arc<str>, Option<u16>)>,
    ) -> RpcSeries {
        let recognised = self.method_recognised(&outcome);
        RpcSeries {
            method: recognised.then_some(self.path),
            status: outcome.status,
            error_type: outcome.error_type,
            server,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(side: Side, path: &str) -> RpcCall {
        RpcCall::of(side, &Uri::try_from(path).unwrap(), 2048)
    }

    #[test]
    fn a_path_that_is_not_service_slash_method_is_other_from_the_start() {
        for path in ["/", "/Svc", "/Svc/", "//Do", "/a/b/c"] {
            let call = call(Side::Server, path);
            assert_eq!(call.span_name(), "grpc", "{path}");
            let outcome = call.outcome(None, false);
            assert_eq!(call.series(outcome, None).method, None, "{path}");
        }
        assert_eq!(call(Side::Server, "/pkg.Svc/Do").span_name(), "pkg.Svc/Do");
    }

    #[test]
    fn a_client_fails_on_every_code_but_ok_and_when_it_gives_up() {
        let mut client = call(Side::Client, "/pkg.Svc/Do");
        let mut server = call(Side::Server, "/pkg.Svc/Do");
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", "5".parse().unwrap());
        client.on_trailers(&trailers);
        server.on_trailers(&trailers);
        let client = client.outcome(None, true);
        let server = server.outcome(None, false);
        assert!(client.failed);
        assert_eq!(client.error_type.as_deref(), Some("NOT_FOUND"));
        assert!(!server.failed);
        assert_eq!(server.error_type, None);
        // An UNIMPLEMENTED answer makes the method unknown on the server's side only.
        let mut unimplemented = HeaderMap::new();
        unimplemented.insert("grpc-status", "12".parse().unwrap());
        for (side, method) in [(Side::Client, Some("pkg.Svc/Do")), (Side::Server, None)] {
            let mut call = call(side, "/pkg.Svc/Do");
            call.on_response_head(StatusCode::OK, &unimplemented);
            let outcome = call.outcome(None, false);
            assert_eq!(call.series(outcome, None).method.as_deref(), method);
        }
    }
}
