//! The response body of a monitored call: the call ends with its last frame.

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{call::OutgoingCall, error_type};

pin_project! {
    /// The response body the caller reads: the client's body, reading a gRPC call's status from
    /// its trailers, ending the call's span and
    /// recording its duration after its last frame, on its error, or when it is dropped first
    /// (a cancellation: no `error.type`).
    pub struct ClientResponseBody<B> {
        #[pin]
        inner: B,
        call: Option<Box<OutgoingCall>>,
    }
}

impl<B> ClientResponseBody<B> {
    pub(crate) fn new(inner: B, call: Option<Box<OutgoingCall>>) -> Self {
        Self { inner, call }
    }
}

impl<B> Body for ClientResponseBody<B>
where
    B: Body,
    B::Error: 'static,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let frame = ready!(this.inner.as_mut().poll_frame(cx));
        if let Some(call) = this.call.as_mut() {
            match &frame {
                Some(Err(error)) => call.on_error(error_type::of(error)),
                Some(Ok(frame)) => {
                    if let Some(trailers) = frame.trailers_ref() {
                        call.on_trailers(trailers);
                    }
                }
                None => {}
            }
        }
        let ended = !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream();
        if ended && let Some(call) = this.call.take() {
            call.complete();
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> std::fmt::Debug for ClientResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientResponseBody")
            .field("call", &self.call.is_some())
            .finish_non_exhaustive()
    }
}
