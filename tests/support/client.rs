//! A plain HTTP/1.1 client for talking to the services under test.

use axum::body::{Body, Bytes};
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;

/// Sends `request` and reads the whole response.
pub async fn send(request: Request<Body>) -> (StatusCode, HeaderMap, Bytes) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Body>();
    let response = client.request(request).await.expect("the request failed");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("the body failed").to_bytes();
    (parts.status, parts.headers, body)
}

/// `GET url` with `headers`.
pub async fn get(url: &str, headers: &[(&str, &str)]) -> (StatusCode, HeaderMap, Bytes) {
    let mut request = Request::get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    send(request.body(Body::empty()).unwrap()).await
}
