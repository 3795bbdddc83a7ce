//! Security events: one log record for each response that says "who are you" (401), "not you"
//! (403), "slow down" (429) or "no such thing" (404 from no route: what scanners get), for
//! preventive analysis and forensics.
//!
//! The event is a `tracing` event at WARN, emitted inside the request's context when the
//! request ends, so that the console line and the OpenTelemetry log record carry its trace id;
//! opentelemetry-appender-tracing (0.33) makes the event's `name` the log record's event name.
//! Its name, `otel_monitor.http.server.refusal`, follows the semantic conventions v1.44.0
//! (docs/general/naming.md, "Recommendations for application developers"): the conventions
//! define no such event, and a name of our own is prefixed with our own name rather than put in
//! the `http` namespace they own, where `http.server.security` could clash with one they add.
//! Its attributes are the conventions' own (`client.address`, `network.peer.address`,
//! `user_agent.original`, `http.request.method`, `url.path`, `http.route`,
//! `http.response.status_code`), each value a client controls cut to the attribute value length
//! limit as on the span; and, under the event's namespace as naming.md asks of an attribute
//! only it uses, `otel_monitor.http.server.refusal.suppressed`: how many events of this client
//! the rate limit ([`RefusalLimiter`]) suppressed since its last one.
//!
//! A request pays for this only when its response is one of those four: every other request
//! keeps two reference-counted handles (on its path and its `User-Agent`) and its peer's
//! address, and compares its status (one with a method the conventions do not know keeps a
//! copy of it too, cut to the length limit).

use std::net::IpAddr;

use http::{HeaderValue, Request, StatusCode, uri::PathAndQuery};
use opentelemetry::Context;

use super::{
    forwarded::Origin,
    refusal_limit::{Admission, RefusalLimiter},
    request::{RequestFacts, truncated},
};

/// The `tracing` target of security events.
pub(crate) const TARGET: &str = "otel_monitor::security";

/// Whether a response with `status` refuses the request, for a security event: 401, 403, 429,
/// and 404 when no route matched (a 404 of a route is the service's answer about a resource).
pub(crate) fn is_refusal(status: u16, route_matched: bool) -> bool {
    matches!(status, 401 | 403 | 429) || (status == 404 && !route_matched)
}

/// What a request's security event needs from it, kept from its start in case it is refused
/// (and read by its access log line too): handles on the request's own bytes, not copies.
#[derive(Debug)]
pub(crate) struct Witness {
    path: Option<PathAndQuery>,
    user_agent: Option<HeaderValue>,
    /// The method when the conventions do not know it (`http.request.method` is `_OTHER`),
    /// cut to the length limit: a copy, made only for such a method.
    method_original: Option<Box<str>>,
    client: Option<IpAddr>,
    peer: Option<IpAddr>,
}

impl Witness {
    /// What `request`, from `origin`, would tell its security event; `limit` is the attribute
    /// value length limit.
    pub(crate) fn of<B>(
        request: &Request<B>,
        facts: &RequestFacts,
        origin: &Origin<'_>,
        limit: usize,
    ) -> Self {
        Self {
            path: request.uri().path_and_query().cloned(),
            user_agent: request.headers().get(http::header::USER_AGENT).cloned(),
            method_original: (facts.method == "_OTHER")
                .then(|| truncated(request.method().as_str(), limit).into()),
            // The client as trusted proxies tell it (the peer without them), the limit's key.
            client: origin.client.map(|(address, _)| address),
            peer: origin.peer.map(|peer| peer.ip()),
        }
    }

    /// The request's client, when known.
    pub(crate) fn client(&self) -> Option<IpAddr> {
        self.client
    }

    /// The request's path, whole; `None` for a request without one (`CONNECT host:port`), whose
    /// `Uri::path` is empty.
    pub(crate) fn path(&self) -> Option<&str> {
        self.path.as_ref().map(PathAndQuery::path)
    }

    /// Emits the security event of a request that ended with `status`, in context `cx`, if the
    /// response refused it and the rate limit lets it through.
    pub(crate) fn report(
        &self,
        limiter: &RefusalLimiter,
        facts: &RequestFacts,
        status: Option<u16>,
        cx: &Context,
        limit: usize,
    ) {
        let Some(status) = status else { return };
        if !is_refusal(status, facts.route.is_some()) {
            return;
        }
        let Admission::Emit { suppressed } = limiter.admit(self.client) else {
            return;
        };
        let path = truncated(self.path().unwrap_or("/"), limit);
        let user_agent = self
            .user_agent
            .as_ref()
            .and_then(|agent| agent.to_str().ok())
            .map(|agent| truncated(agent, limit));
        let method_original = self.method_original.as_deref();
        let reason = StatusCode::from_u16(status)
            .ok()
            .and_then(|status| status.canonical_reason())
            .unwrap_or("");
        let client = self.client.map(tracing::field::display);
        let _in_request = cx.clone().attach();
        tracing::event!(
            name: "otel_monitor.http.server.refusal",
            target: TARGET,
            tracing::Level::WARN,
            client.address = client,
            network.peer.address = self.peer.map(tracing::field::display),
            user_agent.original = user_agent,
            http.request.method = facts.method,
            http.request.method_original = method_original,
            url.path = path,
            http.route = facts.route.as_deref(),
            http.response.status_code = status,
            otel_monitor.http.server.refusal.suppressed = (suppressed > 0).then_some(suppressed),
            "{status} {reason}: {} {path} from {}",
            method_original.unwrap_or(facts.method),
            self.client.map_or_else(|| "an unknown client".into(), |client| client.to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::is_refusal;

    #[test]
    fn refusals_are_401_403_429_and_a_404_of_no_route() {
        for (status, route_matched, refusal) in [
            (401, true, true),
            (401, false, true),
            (403, true, true),
            (429, true, true),
            (429, false, true),
            (404, false, true),
            (404, true, false),
            (200, false, false),
            (400, true, false),
            (405, true, false),
            (500, false, false),
        ] {
            assert_eq!(
                is_refusal(status, route_matched),
                refusal,
                "{status} {route_matched}"
            );
        }
    }
}
