//! The Tokio runtime that carries the OTLP/gRPC connections, on a thread of its own.
//!
//! tonic's channels need a Tokio runtime to run on. Borrowing the application's would tie the
//! last flush to it: on a current-thread runtime, a `shutdown()` called from async code blocks
//! the only thread that could drive the connection, and the final batch is lost. It would also
//! make `init()` fail outside a runtime. One small runtime of the crate's own avoids both; every
//! gRPC channel of every signal is made on it.

use std::thread;

use opentelemetry_otlp::ExporterBuildError;
use tokio::{runtime::Handle, sync::oneshot};
use tonic::transport::Channel;

use super::{
    destination::{Destination, invalid},
    failures::render_chain,
};

/// A current-thread runtime running on its own thread until this value is dropped.
#[derive(Debug)]
pub(crate) struct GrpcRuntime {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl GrpcRuntime {
    pub(crate) fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        thread::Builder::new()
            .name("otel-monitor-grpc".to_owned())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }

    /// The runtime's handle: enter it to build channels, spawn on it to use them.
    pub(crate) fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for GrpcRuntime {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A lazily connecting channel to the destination, TLS for `https://`, made on `runtime`.
pub(crate) fn channel(
    destination: &Destination,
    runtime: &GrpcRuntime,
) -> Result<Channel, ExporterBuildError> {
    let endpoint_variable = &destination.kind.variables("ENDPOINT")[0];
    let mut endpoint = Channel::builder(destination.endpoint.clone()).timeout(destination.timeout);
    if destination.is_https() {
        endpoint = endpoint
            .tls_config(destination.tls.tonic_config())
            .map_err(|error| invalid(endpoint_variable, render_chain(&error)))?;
    }
    let _entered = runtime.handle().enter();
    Ok(endpoint.connect_lazy())
}
