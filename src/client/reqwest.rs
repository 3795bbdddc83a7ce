//! [`MonitorClientLayer`] as a [`reqwest_middleware::Middleware`]: the same span, context and
//! duration for reqwest's `Client`, in one line.
//!
//! reqwest 0.13 has no request-level layer of its own: its `Client` is a tower `Service` of
//! `reqwest::Request`, which the calls made with `client.get(url).send()` do not go through,
//! and `ClientBuilder::connector_layer` sees connections, not requests. `reqwest-middleware`
//! (0.5, for reqwest 0.13) wraps the `Client` with the same request-building API, so a reqwest
//! user keeps every call as it is.

use http::Extensions;
use opentelemetry::context::FutureExt as _;
use reqwest::ResponseBuilderExt as _;
use reqwest_middleware::{Middleware, Next};

use super::{ClientResponseBody, MonitorClientLayer, call::OutgoingCall, error_type};

/// Traces, measures and propagates each call of a `reqwest_middleware::ClientWithMiddleware`
/// as the layer does for a tower client; a [`UrlTemplate`](super::UrlTemplate) or
/// [`ResendCount`](super::ResendCount) goes in with `RequestBuilder::with_extension`.
///
/// ```
/// use otel_monitor::{MonitorClientLayer, UrlTemplate};
///
/// # async fn call() -> Result<(), reqwest_middleware::Error> {
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(MonitorClientLayer::new())
///     .build();
/// let response = client
///     .get("http://users.internal/users/42")
///     .with_extension(UrlTemplate::new("/users/{id}"))
///     .send()
///     .await?;
/// # Ok(())
/// # }
/// ```
#[async_trait::async_trait]
impl Middleware for MonitorClientLayer {
    async fn handle(
        &self,
        mut request: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        // A `Url` is always a valid `Uri` but for characters `Uri` refuses (such a URL is then
        // recorded without its address).
        let uri = request
            .url()
            .as_str()
            .parse::<http::Uri>()
            .unwrap_or_default();
        let method = request.method().clone();
        let mut call = Box::new(OutgoingCall::start(
            self.shared.clone(),
            &method,
            &uri,
            request.headers_mut(),
            extensions,
        ));
        let result = match call.recording_context() {
            Some(cx) => {
                let cx = cx.clone();
                next.run(request, extensions).with_context(cx).await
            }
            None => next.run(request, extensions).await,
        };
        let response = match result {
            Ok(response) => response,
            Err(error) => {
                call.on_error(error_type::of(&error));
                call.complete();
                return Err(error);
            }
        };
        call.on_response(response.status(), response.version(), response.headers());
        if call.expects_no_content() {
            call.complete();
            return Ok(response);
        }
        // The body, wrapped to end the call with its last frame; the URL, which the conversion
        // to `http::Response` drops, put back.
        let url = response.url().clone();
        let response: http::Response<reqwest::Body> = response.into();
        let (mut parts, body) = response.into_parts();
        if let Ok(carrier) = http::Response::builder().url(url).body(()) {
            parts.extensions.extend(carrier.into_parts().0.extensions);
        }
        let body = reqwest::Body::wrap(ClientResponseBody::new(body, Some(call)));
        Ok(reqwest::Response::from(http::Response::from_parts(
            parts, body,
        )))
    }
}
