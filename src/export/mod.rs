//! Everything between the SDK's processors and the collector: where each signal goes
//! ([`destination`]), how it is secured ([`tls`]) and signed (`aws_sigv4`, feature `aws`), carried ([`http_client`], [`grpc_runtime`],
//! [`direct`]) and retried ([`retry`]), and the reports of what could not be delivered
//! ([`failures`]).

#[cfg(feature = "aws")]
pub(crate) mod aws_sigv4;
pub(crate) mod destination;
pub(crate) mod direct;
pub(crate) mod encoding;
pub(crate) mod failures;
pub(crate) mod grpc_runtime;
pub(crate) mod http_client;
pub(crate) mod retry;
pub(crate) mod tls;
