//! The service [`MonitorClientLayer`](super::MonitorClientLayer) wraps around a client.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use http::{Request, Response};
use tower_service::Service;

use super::{ClientResponseBody, ClientResponseFuture, Shared, call::OutgoingCall};

/// The [`Service`] made by [`MonitorClientLayer`](super::MonitorClientLayer): traces, measures
/// and propagates each call on its way to the client `S`.
#[derive(Clone)]
pub struct MonitorClient<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> MonitorClient<S> {
    pub(crate) fn new(inner: S, shared: Arc<Shared>) -> Self {
        Self { inner, shared }
    }

    /// The inner client.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner client, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for MonitorClient<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    // To read what a failed call's error is (`error.type`).
    S::Error: 'static,
    ResBody: http_body::Body,
{
    type Response = Response<ClientResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ClientResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let call = Box::new(OutgoingCall::start(
            self.shared.clone(),
            &parts.method,
            &parts.uri,
            &mut parts.headers,
            &parts.extensions,
        ));
        let request = Request::from_parts(parts, body);
        let future = match call.recording_context() {
            Some(cx) => {
                let _in_call = cx.clone().attach();
                self.inner.call(request)
            }
            None => self.inner.call(request),
        };
        ClientResponseFuture::new(future, call)
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for MonitorClient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MonitorClient")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}
