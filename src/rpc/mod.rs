//! gRPC calls, server and client, recorded under the RPC semantic conventions (v1.44.0,
//! docs/rpc/rpc-spans.md, rpc-metrics.md and grpc.md) instead of the HTTP ones.
//!
//! A request is a gRPC call when it is a `POST` whose `content-type` is `application/grpc` or
//! `application/grpc+{codec}` (`application/grpc+proto`, ...), as gRPC's PROTOCOL-HTTP2.md
//! defines them; the method is tested first, so a request of any other method costs one
//! comparison, and a `POST` one header lookup more.
//!
//! What is recorded, by the names of v1.44.0, which renamed most of them (`rpc.system` is now
//! `rpc.system.name`, `rpc.grpc.status_code` the string `rpc.response.status_code`,
//! `rpc.service` part of `rpc.method`, `rpc.server.duration` in milliseconds
//! `rpc.server.call.duration` in seconds):
//! - the span is named `rpc.method` (`package.Service/Method`), or `grpc` when the method is
//!   `_OTHER`, with `rpc.system.name` `grpc`, `rpc.method` (and `rpc.method_original` when it is
//!   `_OTHER`), `server.address` and `server.port`, `network.peer.address` and
//!   `network.peer.port`;
//! - `rpc.response.status_code` is the `grpc-status` of the trailers at the end of the response
//!   body, or of its head in a trailers-only response, or, with neither and a status other than
//!   200, the code gRPC maps that status to;
//! - on a SERVER span, `UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`,
//!   `UNAVAILABLE` and `DATA_LOSS` are errors; on a CLIENT span, every code but `OK`; an error
//!   sets the span status to Error and `error.type` to the code's name;
//! - a call that fails before a status comes has the `error.type` of its error (as the HTTP
//!   side names them), a call whose other end went away `cancelled`, a response that ended
//!   without a status `missing_grpc_status`;
//! - the call's duration goes to `rpc.server.call.duration` or `rpc.client.call.duration`.

mod call;
mod metrics;
mod status;

pub(crate) use call::{RpcCall, Side};
pub(crate) use metrics::RpcMetrics;

use http::{HeaderMap, Method, header::CONTENT_TYPE};

/// Whether a request with this method and these headers is a gRPC call: a `POST` of
/// `application/grpc` or `application/grpc+...`.
#[inline]
pub(crate) fn is_grpc(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::POST && has_grpc_content_type(headers)
}

fn has_grpc_content_type(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|value| {
        let value = value.as_bytes();
        let Some(rest) = value.strip_prefix(b"application/grpc") else {
            return false;
        };
        // `application/grpc-web` is another protocol, with its status in the body.
        rest.is_empty() || rest.starts_with(b"+") || rest.starts_with(b";")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post(content_type: &str) -> http::Request<()> {
        http::Request::post("/pkg.Svc/Do")
            .header(CONTENT_TYPE, content_type)
            .body(())
            .unwrap()
    }

    fn is_grpc_request(request: &http::Request<()>) -> bool {
        is_grpc(request.method(), request.headers())
    }

    #[test]
    fn a_grpc_call_is_a_post_of_application_grpc() {
        assert!(is_grpc_request(&post("application/grpc")));
        assert!(is_grpc_request(&post("application/grpc+proto")));
        assert!(is_grpc_request(&post("application/grpc;charset=utf-8")));
        assert!(!is_grpc_request(&post("application/grpc-web")));
        assert!(!is_grpc_request(&post("application/grpc-web+proto")));
        assert!(!is_grpc_request(&post("application/json")));
        assert!(!is_grpc_request(
            &http::Request::post("/").body(()).unwrap()
        ));
        let get = http::Request::get("/pkg.Svc/Do")
            .header(CONTENT_TYPE, "application/grpc")
            .body(())
            .unwrap();
        assert!(!is_grpc_request(&get));
    }
}
