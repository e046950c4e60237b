//! The benchmark's ceiling: a bare hyper server that answers
//! `POST /auth/logout` with the same status line, headers and body as
//! Chronos (a fixed request id of the same length stands in for the fresh
//! one), and does nothing else. No routing framework, no middleware, no
//! logging, no rate limiting: the fastest an HTTP/1.1 server on this stack
//! can send these bytes.
//!
//! `cargo run --release --example ceiling -- 127.0.0.1:8100`

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"message":"Logged out"}"#;

const HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    (
        "set-cookie",
        "chronos_session=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    ),
    (
        "set-cookie",
        "chronos_refresh=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    ),
    (
        "set-cookie",
        "chronos_csrf=; Path=/; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
    ),
    ("vary", "origin"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    (
        "permissions-policy",
        "geolocation=(), microphone=(), camera=()",
    ),
    ("cache-control", "no-store"),
    ("x-request-id", "00000000-0000-4000-8000-000000000000"),
];

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() != Method::POST || req.uri().path() != "/auth/logout" {
        let mut response = Response::new(Full::new(Bytes::from_static(b"")));
        *response.status_mut() = StatusCode::NOT_FOUND;
        return Ok(response);
    }
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    let headers = response.headers_mut();
    for (name, value) in HEADERS {
        headers.append(*name, hyper::header::HeaderValue::from_static(value));
    }
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8100".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr).await?;
    println!("ceiling listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(answer))
                .await;
        });
    }
}
