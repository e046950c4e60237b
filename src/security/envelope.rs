//! The envelope: the security layer around an inner service (the routes),
//! as a tower layer. A request passes these phases, in order:
//!
//! 1. **identify**: its request id (the client's, if sane) and the client
//!    address (the socket peer, or `X-Forwarded-For` from trusted proxies);
//! 2. **bound**: exactly one valid `Host` (400), a head within 32 KiB (431),
//!    a declared body within 64 KiB (413; `PROXY_MAX_BODY` on a proxied
//!    route);
//! 3. **preflight**: a CORS preflight is answered here, nothing else runs;
//! 4. **read**: the body, within its size (413) and time (408) limits (a
//!    proxied body is not read here: the proxy streams it on);
//! 5. **guard**: Origin, Fetch Metadata, rate limit, CSRF ([`guard`]; on a
//!    proxied route CSRF on every unsafe method, `RATE_LIMIT_PROXY`);
//! 6. **inner**: the routes, in the request's logging scope, so every line
//!    a handler logs carries this request's id;
//! 7. **decorate**, on every response (errors, 429s, preflights too): CORS,
//!    the security headers, `Cache-Control: no-store` on `/auth/*`, the
//!    request id;
//! 8. **count, log**: the request's metrics, one access-log line (a
//!    proxied one with its route, the upstream's status and time).

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use tower::Service;

use super::Security;
use super::cors::Cors;
use super::guard;
use crate::error::ApiError;
use crate::limits::ClientKey;
use crate::metrics::route_index;
use crate::telemetry;

/// Request bodies larger than this get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Request heads (request line + headers) larger than this get 431.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Time allowed for a request body to arrive once the head is in.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Headers the envelope adds to every response (CORS, the security
/// headers, cache control, the request id), with room to spare.
const ENVELOPE_HEADERS: usize = 10;
/// Headers a response has room for from the start: a route's (content
/// type, three cookies, a few more) and the envelope's.
const RESPONSE_HEADERS: usize = 6 + ENVELOPE_HEADERS;

/// A 200 response with `body` whose header map is allocated once, at the
/// size the route and the envelope fill (an empty map grows twice on the
/// way: measured ~1,300 instructions a logout).
pub fn response(body: Body) -> Response {
    let mut response = Response::new(body);
    *response.headers_mut() = HeaderMap::with_capacity(RESPONSE_HEADERS);
    response
}

/// [`response`] with a JSON body.
pub fn json_response<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = response(Body::from(bytes));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        }
        Err(e) => ApiError::Internal(e.into()).into_response(),
    }
}

/// The connection's peer, on a proxied request (whether it is a trusted
/// proxy decides if its `X-Forwarded-Proto` and `-Host` are passed on).
#[derive(Debug, Clone, Copy)]
pub struct PeerIp(pub IpAddr);

/// What the proxy reports on its answers: the upstream's status and how
/// long its head took; the access line and the metrics carry both.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamAnswer {
    pub status: u16,
    pub took: Duration,
}

type BoxResponse = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

/// The layer that puts [`Envelope`] around a service.
#[derive(Clone)]
pub struct EnvelopeLayer {
    security: Arc<Security>,
}

impl EnvelopeLayer {
    pub fn new(security: Arc<Security>) -> Self {
        Self { security }
    }
}

impl<S> tower::Layer<S> for EnvelopeLayer {
    type Service = Envelope<S>;

    fn layer(&self, inner: S) -> Envelope<S> {
        Envelope {
            security: self.security.clone(),
            inner,
        }
    }
}

/// The security layer around `inner`. It is called with the connection's
/// peer address ([`serve`](Self::serve)), which the rate limit keys on; it
/// is deliberately not a plain `Service`, which would have to guess one.
#[derive(Clone)]
pub struct Envelope<S> {
    security: Arc<Security>,
    inner: S,
}

impl<S> Envelope<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
{
    /// Serves one request from `peer`.
    pub fn serve<B>(&self, req: http::Request<B>, peer: SocketAddr) -> BoxResponse
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<axum::BoxError>,
    {
        let security = self.security.clone();
        let inner = self.inner.clone();
        Box::pin(async move { Ok(handle(security, inner, req.map(Body::new), peer.ip()).await) })
    }
}

async fn handle<S>(security: Arc<Security>, inner: S, req: Request, peer: IpAddr) -> Response
where
    S: Service<Request, Response = Response, Error = Infallible> + Send,
    S::Future: Send,
{
    // 1. identify
    let started = Instant::now();
    let request_id = match req.headers().get(&X_REQUEST_ID) {
        Some(v) if sane_request_id(v) => v.clone(),
        _ => fresh_request_id(),
    };
    let client = security.client_ip.resolve(peer, req.headers());
    let origin = req.headers().get(header::ORIGIN).cloned();
    let method = req.method().clone();
    // Only the path is logged: query strings can carry one-time codes.
    let uri = req.uri().clone();
    let is_auth = uri.path().starts_with("/auth/");
    let preflight = Cors::is_preflight(&method, req.headers());
    // A proxied request streams its body to the upstream, within its own
    // limit; every other request is read whole, within 64 KiB.
    let proxied = security
        .proxy_routes
        .matching(uri.path())
        .map(|(route, _)| route.prefix.clone());
    let body_limit = match proxied {
        Some(_) => security.proxy_max_body,
        None => MAX_BODY_BYTES as u64,
    };

    let declared = declared_body_len(req.headers());

    // 2. bound, 3. preflight
    let mut response = if !host_ok(&req) {
        ApiError::BadRequest("A request needs exactly one valid Host header").into_response()
    } else if head_size(&req) > MAX_HEADER_BYTES {
        ApiError::HeadersTooLarge.into_response()
    } else if declared.is_some_and(|n| n > body_limit) {
        ApiError::PayloadTooLarge.into_response()
    } else if preflight {
        security.cors.preflight(req.headers())
    } else {
        // 4. read
        let req = if proxied.is_none() && has_declared_body(req.headers(), declared) {
            buffer_body(req).await
        } else {
            Ok(req)
        };
        match req {
            Err(error) => error.into_response(),
            Ok(mut req) => {
                // 5. guard
                match guard::check(
                    &security,
                    &method,
                    uri.path(),
                    proxied.is_some(),
                    req.headers(),
                    ClientKey::of(client),
                )
                .await
                {
                    Some(refused) => refused,
                    // 6. inner
                    None => {
                        if proxied.is_some() {
                            req.headers_mut()
                                .insert(X_REQUEST_ID.clone(), request_id.clone());
                            req.extensions_mut().insert(PeerIp(peer));
                        }
                        let mut inner = inner;
                        let answer = async move {
                            std::future::poll_fn(|cx| inner.poll_ready(cx)).await?;
                            inner.call(req).await
                        };
                        let scope = telemetry::RequestScope {
                            id: request_id.clone(),
                            client_ip: client,
                        };
                        match telemetry::in_request(scope, answer).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        }
                    }
                }
            }
        }
    };

    // 7. decorate
    let headers = response.headers_mut();
    // Room for what follows, so the map grows once, not per insert.
    headers.reserve(ENVELOPE_HEADERS);
    if !preflight {
        security.cors.decorate(origin.as_ref(), headers);
    }
    security.headers.apply(headers);
    if is_auth {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(X_REQUEST_ID.clone(), request_id.clone());
    // A body we refused to read (too large, too slow) is still on the
    // wire: the connection cannot carry another request, and says so.
    if matches!(
        response.status(),
        http::StatusCode::PAYLOAD_TOO_LARGE | http::StatusCode::REQUEST_TIMEOUT
    ) {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }

    // 8. count, log
    let took = started.elapsed();
    let status = response.status().as_u16();
    let upstream = response.extensions().get::<UpstreamAnswer>().copied();
    match &proxied {
        Some(route) => {
            security
                .metrics
                .proxied(route, status, upstream.map(|u| u.took));
        }
        None => security
            .metrics
            .request(route_index(uri.path()), &method, status, took),
    }
    if telemetry::access_direct()
        || tracing::enabled!(target: "chronos::access", tracing::Level::INFO)
    {
        let mut ip = [0u8; 48];
        let line = telemetry::AccessLine {
            method: method.as_str(),
            path: uri.path(),
            status,
            duration_us: took.as_micros() as u64,
            request_id: request_id.to_str().unwrap_or("-"),
            client_ip: format_ip(client, &mut ip),
            proxy: proxied.as_ref().map(|route| telemetry::ProxyFields {
                route: route.as_str(),
                upstream_status: upstream.map_or(0, |u| u.status),
                upstream_us: upstream.map_or(0, |u| u.took.as_micros() as u64),
            }),
        };
        if !telemetry::access(&line) {
            // The proxy's fields are recorded only on proxied requests
            // (tracing leaves a `None` out).
            let proxy = line.proxy.as_ref();
            tracing::info!(
                target: "chronos::access",
                method = line.method,
                path = line.path,
                status = line.status,
                duration_us = line.duration_us,
                request_id = line.request_id,
                client_ip = line.client_ip,
                route = proxy.map(|p| p.route),
                upstream_status = proxy.map(|p| p.upstream_status),
                upstream_us = proxy.map(|p| p.upstream_us),
            );
        }
    }
    response
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

/// A fresh request id: a UUID v4, formatted without a heap string.
fn fresh_request_id() -> HeaderValue {
    let mut buf = uuid::Uuid::encode_buffer();
    let id = uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buf);
    HeaderValue::from_str(id).unwrap_or_else(|_| HeaderValue::from_static("-"))
}

/// RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host header, and a
/// request of any version never has two or an invalid one.
fn host_ok(req: &Request) -> bool {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (None, _) => req.version() < http::Version::HTTP_11,
        (Some(host), None) => valid_host(host.as_bytes()),
        (Some(_), Some(_)) => false,
    }
}

/// `host[:port]` as RFC 3986 allows it (reg-name, IPv4, `[IPv6]`): a
/// table lookup per byte, cheap enough for every request (a full URI parse
/// is not).
fn valid_host(host: &[u8]) -> bool {
    const ALLOWED: [bool; 256] = {
        let mut table = [false; 256];
        let mut b = 0;
        while b < 256 {
            let c = b as u8;
            table[b] = c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'-' | b'.'
                        | b'_'
                        | b'~'
                        | b'%'
                        | b'!'
                        | b'$'
                        | b'&'
                        | b'\''
                        | b'('
                        | b')'
                        | b'*'
                        | b'+'
                        | b','
                        | b';'
                        | b'='
                        | b':'
                        | b'['
                        | b']'
                );
            b += 1;
        }
        table
    };
    !host.is_empty() && host.len() <= 255 && host.iter().all(|b| ALLOWED[usize::from(*b)])
}

fn head_size(req: &Request) -> usize {
    let uri = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + uri
}

/// Whether a request has a body: one declared, or chunked.
pub fn has_body(headers: &HeaderMap) -> bool {
    has_declared_body(headers, declared_body_len(headers))
}

/// [`has_body`], given the declared length already parsed.
fn has_declared_body(headers: &HeaderMap, declared: Option<u64>) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) || declared.is_some_and(|n| n > 0)
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

/// An address as text, without a heap string.
fn format_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &str {
    let len = match ip {
        // Digit by digit: `Display` for an address measured ~600
        // instructions, a twentieth of a logout.
        IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[len] = b'.';
                    len += 1;
                }
                let mut digits = itoa::Buffer::new();
                let digits = digits.format(octet).as_bytes();
                buf[len..len + digits.len()].copy_from_slice(digits);
                len += digits.len();
            }
            len
        }
        IpAddr::V6(_) => {
            use std::io::Write;
            let mut cursor = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cursor, "{ip}");
            cursor.position() as usize
        }
    };
    std::str::from_utf8(&buf[..len]).unwrap_or("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_checked_byte_by_byte() {
        for good in [
            "a",
            "a.example:8000",
            "127.0.0.1",
            "[::1]:443",
            "xn--bcher-kva.example",
        ] {
            assert!(valid_host(good.as_bytes()), "{good}");
        }
        for bad in ["", "a b", "a/b", "a?b", "a#b", "user@host", "a\tb"] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn addresses_are_formatted_as_display_does() {
        for ip in [
            "0.0.0.0",
            "255.255.255.255",
            "10.2.34.200",
            "::1",
            "2001:db8::8a2e:370:7334",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut buf = [0u8; 48];
            assert_eq!(format_ip(ip, &mut buf), ip.to_string());
        }
    }

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
