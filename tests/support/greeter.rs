//! A small gRPC service, `greeter.Greeter`, written by hand as tonic's code generator would write
//! it (this machine has no `protoc`): prost messages derived with `prost::Message`, the server
//! and the client on tonic's `server::Grpc` and `client::Grpc` with `tonic_prost::ProstCodec`.
//!
//! - `SayHello`: answers `hello {name}`; an empty name is `INVALID_ARGUMENT`, the name `boom`
//!   is `INTERNAL`, both as tonic sends an error from a unary method: a trailers-only response.
//! - `StreamHellos`: streams one `hello {name}`, then ends `OK`; for the name `fail`, it ends
//!   with `DATA_LOSS` in the trailers, after the message; for `hang`, it never ends.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll},
};

use futures_util::{Stream, StreamExt as _};
use http::uri::PathAndQuery;
use tonic::{
    Request, Response, Status,
    body::Body,
    server::{Grpc, NamedService, ServerStreamingService, UnaryService},
    transport::Channel,
};
use tonic_prost::ProstCodec;

/// The request of both methods.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    #[prost(string, tag = "1")]
    pub name: String,
}

/// The reply of both methods.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    #[prost(string, tag = "1")]
    pub message: String,
}

/// The service, as a tonic server serves it.
#[derive(Debug, Clone, Default)]
pub struct GreeterServer;

impl NamedService for GreeterServer {
    const NAME: &'static str = "greeter.Greeter";
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type HelloStream = Pin<Box<dyn Stream<Item = Result<HelloReply, Status>> + Send>>;

struct SayHello;

impl UnaryService<HelloRequest> for SayHello {
    type Response = HelloReply;
    type Future = BoxFuture<Result<Response<HelloReply>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let name = request.into_inner().name;
        Box::pin(async move {
            match name.as_str() {
                "" => Err(Status::invalid_argument("a name, please")),
                "boom" => Err(Status::internal("boom")),
                name => Ok(Response::new(HelloReply {
                    message: format!("hello {name}"),
                })),
            }
        })
    }
}

struct StreamHellos;

impl ServerStreamingService<HelloRequest> for StreamHellos {
    type Response = HelloReply;
    type ResponseStream = HelloStream;
    type Future = BoxFuture<Result<Response<HelloStream>, Status>>;

    fn call(&mut self, request: Request<HelloRequest>) -> Self::Future {
        let name = request.into_inner().name;
        let hello = futures_util::stream::once(futures_util::future::ready(Ok(HelloReply {
            message: format!("hello {name}"),
        })));
        let end: HelloStream = match name.as_str() {
            "fail" => Box::pin(futures_util::stream::once(futures_util::future::ready(
                Err(Status::data_loss("lost")),
            ))),
            "hang" => Box::pin(futures_util::stream::pending()),
            _ => Box::pin(futures_util::stream::empty()),
        };
        Box::pin(async move { Ok(Response::new(Box::pin(hello.chain(end)) as HelloStream)) })
    }
}

impl<B> tower::Service<http::Request<B>> for GreeterServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
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
            "/greeter.Greeter/StreamHellos" => Box::pin(async move {
                let mut grpc = Grpc::new(ProstCodec::default());
                Ok(grpc.server_streaming(StreamHellos, request).await)
            }),
            // What a generated server answers to a method it does not have.
            _ => Box::pin(async { Ok(Status::unimplemented("").into_http()) }),
        }
    }
}

/// A client of the service over `channel`, any gRPC transport (a tonic `Channel`, or one
/// wrapped in a layer).
#[derive(Debug, Clone)]
pub struct GreeterClient<T> {
    grpc: tonic::client::Grpc<T>,
}

impl GreeterClient<Channel> {
    /// A client of the service at `address`, over a plain tonic channel.
    pub async fn connect(address: SocketAddr) -> Self {
        let channel = Channel::from_shared(format!("http://{address}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        Self::new(channel)
    }
}

impl<T> GreeterClient<T>
where
    T: tonic::client::GrpcService<Body>,
    T::ResponseBody: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    <T::ResponseBody as http_body::Body>::Error:
        Into<Box<dyn std::error::Error + Send + Sync>> + Send,
    T::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    /// A client over `transport`.
    pub fn new(transport: T) -> Self {
        Self {
            grpc: tonic::client::Grpc::new(transport),
        }
    }

    /// A client over `transport` whose requests name the server `origin` (`http://host:port`),
    /// as a generated client's `with_origin` makes them: a layer above a `Channel` sees the
    /// server in their URI.
    pub fn with_origin(transport: T, origin: http::Uri) -> Self {
        Self {
            grpc: tonic::client::Grpc::with_origin(transport, origin),
        }
    }

    /// Calls `method` (`SayHello`, or any other name, which the server does not have) with
    /// `name`.
    pub async fn say_hello_as(&mut self, method: &str, name: &str) -> Result<String, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|error| Status::unavailable(error.into().to_string()))?;
        let path = PathAndQuery::try_from(format!("/greeter.Greeter/{method}")).unwrap();
        let request = Request::new(HelloRequest {
            name: name.to_owned(),
        });
        let response: Response<HelloReply> = self
            .grpc
            .unary(request, path, ProstCodec::default())
            .await?;
        Ok(response.into_inner().message)
    }

    /// Calls `SayHello` with `name`.
    pub async fn say_hello(&mut self, name: &str) -> Result<String, Status> {
        self.say_hello_as("SayHello", name).await
    }

    /// Calls `StreamHellos` with `name`: the stream of replies.
    pub async fn stream_hellos(
        &mut self,
        name: &str,
    ) -> Result<tonic::Streaming<HelloReply>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|error| Status::unavailable(error.into().to_string()))?;
        let path = PathAndQuery::from_static("/greeter.Greeter/StreamHellos");
        let request = Request::new(HelloRequest {
            name: name.to_owned(),
        });
        let response = self
            .grpc
            .server_streaming(request, path, ProstCodec::default())
            .await?;
        Ok(response.into_inner())
    }
}
