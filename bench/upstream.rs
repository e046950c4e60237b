//! The app's API for the proxy benchmark (`bench/proxy.py`): a bare hyper
//! server, so what is measured is the path in front of it.
//!
//! - `GET /calendar/calendars[?work_us=N]`: a small JSON answer (the web
//!   client's calendar list, ~200 bytes), after N µs of CPU work (default
//!   0: the bare server; 100 stands for a small real API's handler);
//! - `GET /calendar/sync?first_ms=N`: `text/event-stream`, the head at
//!   once, the first event after N ms (default 50), then one event every
//!   200 ms for as long as the client reads.
//!
//! `cargo run --release --example upstream -- 127.0.0.1:9000`

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::{Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const CALENDARS: &[u8] = br##"{"calendars":[{"id":"primary","summary":"Ann","color":"#3b82f6","access_role":"owner"},{"id":"work","summary":"Work","color":"#10b981","access_role":"writer"}]}"##;

type Body = BoxBody<Bytes, Infallible>;

fn param(query: Option<&str>, name: &str, default: u64) -> u64 {
    query
        .and_then(|q| {
            q.split('&')
                .find_map(|p| p.strip_prefix(name)?.strip_prefix('='))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn answer(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    match req.uri().path() {
        "/calendar/calendars" => {
            let work = Duration::from_micros(param(req.uri().query(), "work_us", 0));
            let started = std::time::Instant::now();
            while started.elapsed() < work {
                std::hint::spin_loop();
            }
            let mut response = Response::new(Full::new(Bytes::from_static(CALENDARS)).boxed());
            response.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/json"),
            );
            Ok(response)
        }
        "/calendar/sync" => {
            let first = Duration::from_millis(param(req.uri().query(), "first_ms", 50));
            let events = futures_util::stream::unfold(0u64, move |i| async move {
                tokio::time::sleep(if i == 0 {
                    first
                } else {
                    Duration::from_millis(200)
                })
                .await;
                let event = format!("event: events\ndata: {{\"i\":{i}}}\n\n");
                Some((Ok::<_, Infallible>(Frame::data(Bytes::from(event))), i + 1))
            });
            let mut response = Response::new(StreamBody::new(events).boxed());
            response.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("text/event-stream"),
            );
            Ok(response)
        }
        _ => {
            let mut response = Response::new(Full::new(Bytes::new()).boxed());
            *response.status_mut() = StatusCode::NOT_FOUND;
            Ok(response)
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into())
        .parse()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(addr).await?;
    println!("upstream listening on {}", listener.local_addr()?);
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
