//! A gRPC service and a client calling it, both observed by `otel-monitor`: the server under
//! `MonitorLayer`, the client's channel wrapped in `MonitorClientLayer`, both recording gRPC
//! calls under the RPC semantic conventions (v1.44), so that each call is one trace of a CLIENT
//! span and the SERVER span it caused; configured, as `examples/service.rs` is, by nothing but
//! the standard `OTEL_*` variables.
//!
//! ```text
//! cargo run --example grpc                  # serves, calls itself 5 times, flushes and exits
//! cargo run --example grpc -- serve         # serves until Ctrl-C or SIGTERM
//! cargo run --example grpc -- call http://127.0.0.1:50051   # calls that server 5 times, exits
//! ```
//!
//! It listens on `LISTEN_ADDR` (`127.0.0.1:50051` by default). The calls: `SayHello` three
//! times, which answers `OK`; once with an empty name, `INVALID_ARGUMENT` (the client's mistake:
//! an error on the CLIENT span, not on the SERVER span); once with the name `boom`, `INTERNAL`
//! (an error on both).
//!
//! The service, `greeter.Greeter`, is written by hand as tonic's code generator would write it
//! from this `.proto`, so that the example builds without `protoc`:
//!
//! ```proto
//! syntax = "proto3";
//! package greeter;
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
//!
//! In your own service, `tonic-build` (or `tonic-prost-build`) generates the same from the
//! `.proto`, and `MonitorLayer` goes on the server the same way.

use std::{
    convert::Infallible,
    error::Error,
    future::Future,
    pin::Pin,
    process::ExitCode,
    task::{Context, Poll},
};

use http::uri::PathAndQuery;
use otel_monitor::{MonitorClientLayer, MonitorLayer, Telemetry};
use tonic::{
    Request, Response, Status,
    body::Body,
    server::{Grpc, NamedService, UnaryService},
    transport::{Channel, Server, server::TcpIncoming},
};
use tonic_prost::ProstCodec;

/// `SayHello`'s request.
#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

/// `SayHello`'s reply.
#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            let mut source = error.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn Error>> {
    let mode: Vec<String> = std::env::args().skip(1).collect();
    let telemetry = Telemetry::builder()
        .default_service_name("otel-monitor-grpc-example")
        .default_service_version(env!("CARGO_PKG_VERSION"))
        // Its first log line, `telemetry pipeline ready`, says where each signal goes.
        .init()?;

    match mode.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => {
            let listener = bind().await?;
            let url = format!("http://{}", listener.local_addr()?);
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let server = tokio::spawn(serve(listener, async {
                let _ = stopped.await;
            }));
            call(&url).await?;
            let _ = stop.send(());
            server.await??;
        }
        ["serve"] => serve(bind().await?, shutdown_signal()).await?,
        ["call", url] => call(url).await?,
        _ => return Err("usage: grpc [serve | call URL]".into()),
    }

    // Telemetry that cannot be delivered is worth a warning, not a failed exit.
    if let Err(error) = telemetry.shutdown() {
        tracing::warn!(%error, "telemetry was not fully flushed");
    }
    Ok(())
}

/// Listens on `LISTEN_ADDR`.
async fn bind() -> std::io::Result<tokio::net::TcpListener> {
    let address = std::env::var("LISTEN_ADDR").unwrap_or_else(|_| "127.0.0.1:50051".to_owned());
    let listener = tokio::net::TcpListener::bind(&address).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    Ok(listener)
}

/// Serves `greeter.Greeter` on `listener` until `signal`.
async fn serve(
    listener: tokio::net::TcpListener,
    signal: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    Server::builder()
        // The gRPC calls become SERVER spans and `rpc.server.call.duration`.
        .layer(MonitorLayer::new())
        .add_service(GreeterServer)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal)
        .await
}

/// Calls the server at `url` five times: three `OK`, an `INVALID_ARGUMENT`, an `INTERNAL`.
async fn call(url: &str) -> Result<(), Box<dyn Error>> {
    let origin: http::Uri = url.parse()?;
    let channel = Channel::builder(origin.clone()).connect().await?;
    // The calls become CLIENT spans and `rpc.client.call.duration`, and carry `traceparent`.
    let channel = tower::ServiceBuilder::new()
        .layer(MonitorClientLayer::new())
        .service(channel);
    // With its origin, each request names the server, which the CLIENT span records as
    // `server.address` and `server.port` (a generated client has `with_origin` too).
    let mut client = tonic::client::Grpc::with_origin(channel, origin);
    for name in ["world", "gRPC", "tonic", "", "boom"] {
        client.ready().await?;
        let reply: Result<Response<HelloReply>, Status> = client
            .unary(
                Request::new(HelloRequest {
                    name: name.to_owned(),
                }),
                PathAndQuery::from_static("/greeter.Greeter/SayHello"),
                ProstCodec::default(),
            )
            .await;
        match reply {
            Ok(reply) => tracing::info!("SayHello({name:?}): {}", reply.into_inner().message),
            Err(status) => tracing::warn!(
                "SayHello({name:?}) failed: {:?} {}",
                status.code(),
                status.message()
            ),
        }
    }
    Ok(())
}

/// `greeter.Greeter`, as a tonic server serves it.
#[derive(Debug, Clone)]
struct GreeterServer;

impl NamedService for GreeterServer {
    const NAME: &'static str = "greeter.Greeter";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// `SayHello`: `hello {name}`; an empty name is `INVALID_ARGUMENT`, `boom` is `INTERNAL`.
struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFuture<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let name = request.into_inner().name;
        Box::pin(async move {
            match name.as_str() {
                "" => Err(Status::invalid_argument("a name, please")),
                "boom" => {
                    tracing::error!("the greeter exploded");
                    Err(Status::internal("boom"))
                }
                name => {
                    // A log record of the call, with its trace id.
                    tracing::info!(greeter.name = name, "greeting");
                    Ok(Response::new(HelloReply {
                        message: format!("hello {name}"),
                    }))
                }
            }
        })
    }
}

impl<B> tower::Service<http::Request<B>> for GreeterServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match request.uri().path() {
            "/greeter.Greeter/SayHello" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::default());
                Ok(grpc.unary(SayHello, request).await)
            }),
            // What a generated server answers to a method it does not have.
            _ => Box::pin(async { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
