//! The future of a monitored request, and the guard that ends a request whose future or body
//! panics while being polled.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use opentelemetry::Context as OtelContext;
use pin_project_lite::pin_project;

use super::{body::ResponseBody, error_type, in_flight::InFlight};

pin_project! {
    /// The response future of [`MonitorService`](super::MonitorService): polls the inner
    /// service's future inside the request's context and hands the request on to the
    /// [`ResponseBody`]. Dropped before it completes, it ends the request as cancelled; if the
    /// inner future panics, the request ends as failed with `error.type` `panic` while the
    /// panic unwinds.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        in_flight: Option<Box<InFlight>>,
        // The context an untraced request's future is polled in: the caller's, as it was at
        // `call()`. A traced request's is the one its `InFlight` holds.
        untraced: OtelContext,
    }
}

impl<F> ResponseFuture<F> {
    /// The future of a traced request, polled in `in_flight`'s context.
    pub(crate) fn traced(inner: F, in_flight: Box<InFlight>) -> Self {
        Self {
            inner,
            in_flight: Some(in_flight),
            untraced: OtelContext::new(),
        }
    }

    /// The future of a request not traced, polled in the context current now.
    pub(crate) fn untraced(inner: F) -> Self {
        Self {
            inner,
            in_flight: None,
            untraced: OtelContext::current(),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
    E: 'static,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let poll = {
            // One clone a poll, as `opentelemetry`'s `WithContext` makes: a context is attached
            // by value.
            let _attached = this
                .in_flight
                .as_ref()
                .map_or(&*this.untraced, |in_flight| in_flight.context())
                .clone()
                .attach();
            let guard = EndOnPanic::arm(this.in_flight.take());
            let poll = this.inner.poll(cx);
            *this.in_flight = guard.disarm();
            poll
        };
        let result = ready!(poll);
        let mut in_flight = this.in_flight.take();
        Poll::Ready(match result {
            Ok(mut response) => {
                if let Some(in_flight) = in_flight.as_mut() {
                    in_flight.on_response(&mut response);
                }
                // A response without content may never have its body polled: end it now.
                if in_flight
                    .as_mut()
                    .is_some_and(|in_flight| in_flight.sends_no_content(&response))
                    && let Some(in_flight) = in_flight.take()
                {
                    in_flight.complete();
                }
                Ok(response.map(|body| ResponseBody::new(body, in_flight)))
            }
            Err(error) => {
                if let Some(mut in_flight) = in_flight {
                    in_flight.on_error(error_type::of(&error));
                    in_flight.complete();
                }
                Err(error)
            }
        })
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("in_flight", &self.in_flight.is_some())
            .finish_non_exhaustive()
    }
}

/// Holds the request across a poll of the inner future or body: dropped without being
/// disarmed, which happens only when that poll panics, it ends the request there and then, as
/// failed with `error.type` `panic`, so that the span ends once, with status Error, and the
/// request is no longer active, whether or not something up the stack catches the panic (the
/// future or body itself is dropped only later, if ever). On the path that does not panic it
/// costs a pointer moved in and out.
pub(super) struct EndOnPanic(Option<Box<InFlight>>);

impl EndOnPanic {
    /// Holds `in_flight` until [`disarm`](Self::disarm).
    pub(super) fn arm(in_flight: Option<Box<InFlight>>) -> Self {
        Self(in_flight)
    }

    /// The poll returned: gives the request back.
    pub(super) fn disarm(mut self) -> Option<Box<InFlight>> {
        self.0.take()
    }
}

impl Drop for EndOnPanic {
    fn drop(&mut self) {
        if let Some(mut in_flight) = self.0.take() {
            in_flight.on_error(error_type::PANIC);
            in_flight.complete();
        }
    }
}
