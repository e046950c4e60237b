//! The security layer around every request, in order: request id, client
//! IP, size limits (431/413), CORS preflight, body read (408), the guard
//! (Origin, Fetch Metadata, rate limit, CSRF), the router; then, on every
//! response (errors, 429s and preflights included): CORS, the security
//! headers, `Cache-Control: no-store` on `/auth/*`, the request id, and one
//! access-log line.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::Service;

use crate::app::AppState;
use crate::error::ApiError;
use crate::routes;
use crate::security::client_ip::{ClientIp, ClientKey};
use crate::security::cors::Cors;
use crate::security::guard;

/// Request bodies larger than this get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Request heads (request line + headers) larger than this get 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Time allowed for a request body to arrive once the head is in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The headers every response carries, built once from the settings.
pub struct SecurityHeaders {
    common: Vec<(HeaderName, HeaderValue)>,
}

impl SecurityHeaders {
    pub fn new(production: bool) -> Self {
        let mut common = vec![
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("strict-origin-when-cross-origin"),
            ),
            (
                HeaderName::from_static("permissions-policy"),
                HeaderValue::from_static("geolocation=(), microphone=(), camera=()"),
            ),
        ];
        if production {
            common.push((
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static("max-age=63072000; includeSubDomains"),
            ));
        }
        Self { common }
    }

    fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.common {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// A client-supplied id is echoed only if it is short and plain.
fn sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:+/=@".contains(b))
}

fn head_size(req: &Request) -> usize {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + uri
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host header, and a
/// request of any version never has two or an invalid one.
fn host_ok(req: &Request) -> bool {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => req.version() < http::Version::HTTP_11,
        (Some(host), None) => http::uri::Authority::try_from(host.as_bytes()).is_ok(),
        (Some(_), Some(_)) => false,
    }
}

/// Reads the whole body, within the size and time limits, so that every
/// route sees a complete body or none (a chunked body over the limit gets
/// 413 like a declared one; a trickled body gets 408 instead of a stuck task).
async fn buffer_body(req: Request) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let collected = tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(body, MAX_BODY_BYTES).collect(),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout)?;
    match collected {
        Ok(collected) => Ok(Request::from_parts(parts, Body::from(collected.to_bytes()))),
        Err(error) if error.is::<LengthLimitError>() => Err(ApiError::PayloadTooLarge),
        Err(_) => Err(ApiError::BadRequest("Invalid request body")),
    }
}

fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || declared_body_len(headers).is_some_and(|n| n > 0)
}

fn declared_body_len(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A fresh request id: a UUID v4, formatted without a heap string.
fn fresh_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// The whole security layer around the router, as one service: one boxed
/// future per request and nothing cloned but two `Arc`s (axum's per-route
/// layers would clone the layer stack on every request).
#[derive(Clone)]
pub struct Secured {
    pub state: Arc<AppState>,
    pub router: Router,
}

impl<B> Service<Request<B>> for Secured
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(SocketAddr::from(([0, 0, 0, 0], 0)), |c| c.0);
        self.serve(req, peer)
    }
}

impl Secured {
    /// `Service::call` by shared reference (what hyper wants).
    pub fn serve<B>(
        &self,
        req: Request<B>,
        peer: SocketAddr,
    ) -> Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let state = self.state.clone();
        let router = self.router.clone();
        Box::pin(async move { Ok(handle(state, router, req.map(Body::new), peer.ip()).await) })
    }
}

async fn handle(state: Arc<AppState>, router: Router, mut req: Request, peer: IpAddr) -> Response {
    let started = Instant::now();
    let request_id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if sane_request_id(v) => v.clone(),
        _ => fresh_request_id(),
    };
    let client = state.client_ip.resolve(peer, req.headers());
    req.extensions_mut().insert(ClientIp(client));
    let origin = req.headers().get(header::ORIGIN).cloned();
    let method = req.method().clone();
    // Only the path is logged: query strings can carry one-time codes.
    let uri = req.uri().clone();
    let is_auth = uri.path().starts_with("/auth/");
    let preflight = Cors::is_preflight(&method, req.headers());

    let mut response = if !host_ok(&req) {
        ApiError::BadRequest("A request needs exactly one valid Host header").into_response()
    } else if head_size(&req) > MAX_HEADER_BYTES {
        ApiError::HeadersTooLarge.into_response()
    } else if declared_body_len(req.headers()).is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        ApiError::PayloadTooLarge.into_response()
    } else if preflight {
        state.cors.preflight(req.headers())
    } else {
        let req = if has_body(req.headers()) {
            buffer_body(req).await
        } else {
            Ok(req)
        };
        match req {
            Err(error) => error.into_response(),
            Ok(req) => match guard::check(
                &state,
                &method,
                uri.path(),
                req.headers(),
                ClientKey::of(client),
            )
            .await
            {
                Some(refused) => refused,
                None => routes::dispatch(&state, router, req).await,
            },
        }
    };

    let headers = response.headers_mut();
    // Room for what follows, so the map grows once, not per insert.
    headers.reserve(10);
    if !preflight {
        state.cors.decorate(origin.as_ref(), headers);
    }
    state.security_headers.apply(headers);
    if is_auth {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());

    if tracing::enabled!(target: "chronos::access", tracing::Level::INFO) {
        let mut ip = [0u8; 48];
        let ip = format_ip(client, &mut ip);
        tracing::info!(
            target: "chronos::access",
            method = method.as_str(),
            path = uri.path(),
            status = response.status().as_u16(),
            duration_us = started.elapsed().as_micros() as u64,
            request_id = request_id.to_str().unwrap_or("-"),
            client_ip = ip,
        );
    }
    response
}

/// An address as text, without a heap string.
fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &str {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    std::str::from_utf8(&buf[..len]).unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_request_ids_are_echoed() {
        assert!(sane_request_id(&HeaderValue::from_static("abc-123_x.y")));
        assert!(sane_request_id(&HeaderValue::from_static(
            "0f8fad5b-d9cb-469f-a165-70867728950e"
        )));
        assert!(!sane_request_id(&HeaderValue::from_static("")));
        assert!(!sane_request_id(&HeaderValue::from_static("a b")));
        assert!(!sane_request_id(&HeaderValue::from_static("<script>")));
        assert!(!sane_request_id(
            &HeaderValue::from_str(&"a".repeat(129)).unwrap()
        ));
    }
}
