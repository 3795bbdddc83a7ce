//! `error.type` of a call whose inner service or response body failed: the client's failures
//! named by what they are (`timeout`, `connection_refused`, ...), the rest as the server layer
//! names errors (see `layer/error_type.rs`). The table is in [`MonitorClientLayer`]'s docs.
//!
//! [`MonitorClientLayer`]: super::MonitorClientLayer

use std::{any::Any, error::Error, io};

use crate::layer::error_type::{self as server, OTHER, io_kind};

/// `error.type` of a call that could not connect, when no I/O error says why.
const CONNECT_ERROR: &str = "connect_error";

/// `error.type` of a call that took too long.
const TIMEOUT: &str = "timeout";

/// `error.type` of an error returned by the inner service or the response body.
pub(crate) fn of<E: 'static>(error: &E) -> &'static str {
    as_dyn_error(error)
        .and_then(of_chain)
        .unwrap_or_else(|| server::of(error))
}

/// `error` as a `dyn Error`, when it is one of the error types clients return.
fn as_dyn_error<E: 'static>(error: &E) -> Option<&(dyn Error + 'static)> {
    let error: &dyn Any = error;
    if let Some(boxed) = error.downcast_ref::<Box<dyn Error + Send + Sync>>() {
        return Some(&**boxed);
    }
    if let Some(error) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<io::Error>() {
        return Some(error);
    }
    if let Some(error) = error.downcast_ref::<reqwest::Error>() {
        return Some(error);
    }
    // A tonic `Channel`'s: a connection refused is an `io::Error` down its source chain.
    if let Some(error) = error.downcast_ref::<tonic::transport::Error>() {
        return Some(error);
    }
    #[cfg(feature = "reqwest")]
    if let Some(error) = error.downcast_ref::<reqwest_middleware::Error>() {
        return Some(match error {
            reqwest_middleware::Error::Reqwest(error) => error,
            reqwest_middleware::Error::Middleware(error) => error.as_ref(),
        });
    }
    None
}

/// The client failure `error` or an error it wraps is, if it is one.
fn of_chain(error: &(dyn Error + 'static)) -> Option<&'static str> {
    let mut connect = false;
    let mut next = Some(error);
    while let Some(error) = next {
        next = error.source();
        if error.is::<tower::timeout::error::Elapsed>() || error.is::<tokio::time::error::Elapsed>()
        {
            return Some(TIMEOUT);
        }
        if let Some(error) = error.downcast_ref::<reqwest::Error>() {
            if error.is_timeout() {
                return Some(TIMEOUT);
            }
            connect |= error.is_connect();
        }
        if let Some(error) = error.downcast_ref::<hyper_util::client::legacy::Error>() {
            connect |= error.is_connect();
        }
        if let Some(error) = error.downcast_ref::<io::Error>() {
            match io_kind(error.kind()) {
                OTHER => {}
                kind => return Some(kind),
            }
        }
    }
    connect.then_some(CONNECT_ERROR)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(io::Error);

    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapper")
        }
    }

    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn timeouts_are_timeout_wherever_they_are_in_the_chain() {
        let elapsed: tower::BoxError = Box::new(tower::timeout::error::Elapsed::new());
        assert_eq!(of(&elapsed), "timeout");
        let timed_out: tower::BoxError =
            Box::new(Wrapper(io::Error::from(io::ErrorKind::TimedOut)));
        assert_eq!(of(&timed_out), "timeout");
    }

    #[test]
    fn io_errors_in_the_chain_are_their_kind_and_others_as_the_server_names_them() {
        let refused: tower::BoxError =
            Box::new(Wrapper(io::Error::from(io::ErrorKind::ConnectionRefused)));
        assert_eq!(of(&refused), "connection_refused");
        assert_eq!(of(&io::Error::other("x")), "_OTHER");
        assert_eq!(of(&std::fmt::Error), "core::fmt::Error");
        let message: tower::BoxError = "a message".into();
        assert_eq!(of(&message), "_OTHER");
    }
}
