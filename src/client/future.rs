//! The future of a monitored call.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use pin_project_lite::pin_project;

use super::{body::ClientResponseBody, call::OutgoingCall, error_type};

pin_project! {
    /// The response future of [`MonitorClient`](super::MonitorClient): polls the client's
    /// future (inside the call's context when its span is recording) and hands the call on to
    /// the [`ClientResponseBody`]. Dropped before it completes, it ends the call as cancelled.
    pub struct ClientResponseFuture<F> {
        #[pin]
        inner: F,
        call: Option<Box<OutgoingCall>>,
    }
}

impl<F> ClientResponseFuture<F> {
    pub(crate) fn new(inner: F, call: Box<OutgoingCall>) -> Self {
        Self {
            inner,
            call: Some(call),
        }
    }
}

impl<F, B, E> Future for ClientResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    E: 'static,
{
    type Output = Result<Response<ClientResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let poll = {
            let _in_call = this
                .call
                .as_ref()
                .and_then(|call| call.recording_context())
                .map(|call_cx| call_cx.clone().attach());
            this.inner.poll(cx)
        };
        let result = ready!(poll);
        let mut call = this.call.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(call) = call.as_mut() {
                    call.on_response(response.status(), response.version(), response.headers());
                }
                // A response without content may never have its body polled: end it now.
                if (response.body().is_end_stream()
                    || call.as_ref().is_some_and(|call| call.expects_no_content()))
                    && let Some(call) = call.take()
                {
                    call.complete();
                }
                Ok(response.map(|body| ClientResponseBody::new(body, call)))
            }
            Err(error) => {
                if let Some(mut call) = call {
                    call.on_error(error_type::of(&error));
                    call.complete();
                }
                Err(error)
            }
        })
    }
}

impl<F> std::fmt::Debug for ClientResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientResponseFuture")
            .field("call", &self.call.is_some())
            .finish_non_exhaustive()
    }
}
