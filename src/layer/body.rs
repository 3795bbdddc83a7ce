//! Body wrappers that count the bytes going through and end the request with the response.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    task::{Context, Poll, ready},
};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::{error_type, future::EndOnPanic, in_flight::InFlight};

pin_project! {
    /// The request body the inner service reads: the inner body, counting the bytes read
    /// for `http.server.request.body.size`.
    #[derive(Debug)]
    pub struct RequestBody<B> {
        #[pin]
        inner: B,
        bytes_read: Option<Arc<AtomicU64>>,
    }
}

impl<B> RequestBody<B> {
    pub(crate) fn counted(inner: B, bytes_read: Arc<AtomicU64>) -> Self {
        Self {
            inner,
            bytes_read: Some(bytes_read),
        }
    }

    pub(crate) fn uncounted(inner: B) -> Self {
        Self {
            inner,
            bytes_read: None,
        }
    }
}

impl<B: Body> Body for RequestBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.inner.poll_frame(cx));
        if let (Some(Ok(frame)), Some(bytes_read)) = (&frame, this.bytes_read)
            && let Some(data) = frame.data_ref()
        {
            bytes_read.fetch_add(bytes::Buf::remaining(data) as u64, Ordering::Relaxed);
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

pin_project! {
    /// The response body the client receives: the inner body, counting the bytes sent, reading
    /// a gRPC call's status from its trailers, and ending the request's span and metrics after
    /// its last frame (or when it is dropped, as
    /// cancelled; or when the inner body panics, as failed with `error.type` `panic`).
    pub struct ResponseBody<B> {
        #[pin]
        inner: B,
        in_flight: Option<Box<InFlight>>,
    }
}

impl<B> ResponseBody<B> {
    pub(crate) fn new(inner: B, in_flight: Option<Box<InFlight>>) -> Self {
        Self { inner, in_flight }
    }
}

impl<B> Body for ResponseBody<B>
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
        let guard = EndOnPanic::arm(this.in_flight.take());
        let poll = this.inner.as_mut().poll_frame(cx);
        *this.in_flight = guard.disarm();
        let frame = ready!(poll);
        let mut sent_all = false;
        if let Some(in_flight) = this.in_flight.as_mut() {
            match &frame {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        sent_all = in_flight.on_response_bytes(bytes::Buf::remaining(data));
                    } else if let Some(trailers) = frame.trailers_ref() {
                        in_flight.on_trailers(trailers);
                    }
                }
                Some(Err(error)) => in_flight.on_error(error_type::of(error)),
                None => {}
            }
        }
        let ended = sent_all || !matches!(frame, Some(Ok(_))) || this.inner.is_end_stream();
        if ended && let Some(in_flight) = this.in_flight.take() {
            in_flight.complete();
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

impl<B> std::fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("in_flight", &self.in_flight.is_some())
            .finish_non_exhaustive()
    }
}
