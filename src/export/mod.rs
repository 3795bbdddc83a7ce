//! Everything between the SDK's processors and the collector: where each signal goes
//! ([`destination`]), how it is secured ([`tls`]), carried ([`http_client`], [`grpc_runtime`],
//! [`direct`]) and retried ([`retry`]), and the reports of what could not be delivered
//! ([`failures`]).

pub(crate) mod destination;
pub(crate) mod direct;
pub(crate) mod encoding;
pub(crate) mod failures;
pub(crate) mod grpc_runtime;
pub(crate) mod http_client;
pub(crate) mod retry;
pub(crate) mod tls;
