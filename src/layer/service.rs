//! The service [`MonitorLayer`](super::MonitorLayer) wraps around the inner one.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{RequestBody, ResponseBody, ResponseFuture, Shared, in_flight::InFlight};

/// The [`Service`] made by [`MonitorLayer`](super::MonitorLayer): traces and measures each
/// request on its way to the inner service `S`.
#[derive(Clone)]
pub struct MonitorService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> MonitorService<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MonitorService<S>
where
    S: Service<Request<RequestBody<ReqBody>>, Response = Response<ResBody>>,
    // To read what a failed request's error is (`error.type`); every error a server can take
    // (`Infallible`, tower's `BoxError`, `hyper::Error`) is `'static`.
    S::Error: 'static,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let traced = self
            .shared
            .filter
            .as_ref()
            .is_none_or(|filter| filter(request.uri().path()));
        if !traced {
            // Called in the caller's context, and polled in it.
            let future = self.inner.call(request.map(RequestBody::uncounted));
            return ResponseFuture::untraced(future);
        }

        let in_flight = Box::new(InFlight::start(self.shared.clone(), &request));
        let bytes_read = in_flight.request_body_bytes();
        // The inner service's `call()` runs in the request's context as its future does: what
        // it starts there (tower-http's `TraceLayer` makes its span in `call()`) joins the
        // request's trace. A context is attached by value, so this is a clone of `in_flight`'s,
        // which the response future attaches again at each poll.
        let attached = in_flight.context().clone().attach();
        let future = self
            .inner
            .call(request.map(|body| RequestBody::counted(body, bytes_read)));
        drop(attached);
        ResponseFuture::traced(future, in_flight)
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for MonitorService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
