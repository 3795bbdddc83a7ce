//! The future of a monitored request.

use std::{
    future::Future,
    pin::Pin,
    task::{Context, Poll, ready},
};

use http::Response;
use opentelemetry::context::WithContext;
use pin_project_lite::pin_project;

use super::{body::ResponseBody, in_flight::InFlight};

pin_project! {
    /// The response future of [`MonitorService`](super::MonitorService): polls the inner
    /// service's future inside the request's context and hands the request on to the
    /// [`ResponseBody`]. Dropped before it completes, it ends the request as cancelled.
    pub struct ResponseFuture<F> {
        #[pin]
        inner: WithContext<F>,
        in_flight: Option<Box<InFlight>>,
    }
}

impl<F> ResponseFuture<F> {
    pub(crate) fn new(inner: WithContext<F>, in_flight: Option<Box<InFlight>>) -> Self {
        Self { inner, in_flight }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = ready!(this.inner.poll(cx));
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
                    in_flight.on_error(std::any::type_name::<E>());
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
