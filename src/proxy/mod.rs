//! The backend-for-frontend proxy (`PROXY_ROUTES`): the app's API calls
//! come here with the session cookie and go on to the app's own APIs with
//! the session's token instead, answers streamed back as they arrive.
//!
//! By the time a request gets here the security layer has done its part
//! (CORS, Origin, Fetch Metadata, CSRF on every unsafe method, the
//! `RATE_LIMIT_PROXY` budget, a declared body within `PROXY_MAX_BODY`).
//! Here: the path must stay under its prefix ([`target`]), the session must
//! be valid and unrevoked (401 otherwise, the upstream never called), the
//! headers are rewritten ([`headers`]), the bodies streamed ([`body`]), a
//! WebSocket tunnelled ([`tunnel`]).

pub mod body;
pub mod headers;
mod pool;
pub mod target;
mod tunnel;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::connect::HttpConnector;

use crate::config::proxy::{ProxyRoutes, ProxySettings, ProxyToken};
use crate::cookies::CookieKind;
use crate::error::ApiError;
use crate::security::Security;
use crate::security::envelope::{PeerIp, UpstreamAnswer};
use crate::telemetry;

/// What a proxied request's body is sent as (the client's, capped, or none).
type Outgoing = UnsyncBoxBody<Bytes, axum::BoxError>;

/// The proxy: its routes, and one pool of kept-alive connections per
/// upstream origin ([`pool`]).
pub struct Proxy {
    /// Each route's upstream, in `routes`' order.
    upstreams: Vec<Upstream>,
    /// Who holds a session (and the cookies, the client address rules).
    security: Arc<Security>,
    pub routes: ProxyRoutes,
    token: ProxyToken,
    timeout: Duration,
    max_body: u64,
}

/// Where one route's requests go.
struct Upstream {
    prefix: Arc<String>,
    /// The upstream URL's path, without a trailing slash.
    base: String,
    pool: Arc<pool::Pool>,
}

impl Proxy {
    pub fn new(
        settings: &ProxySettings,
        security: Arc<Security>,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        // Upstreams are named in PROXY_ROUTES, never reached through
        // whatever HTTP_PROXY the environment names; an upstream's redirect
        // is the browser's to follow, not ours (nothing here follows one).
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .try_with_platform_verifier()?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        // Routes on one origin share its connections.
        let mut pools: Vec<(String, Arc<pool::Pool>)> = Vec::new();
        let mut upstreams = Vec::new();
        for route in settings.routes.iter() {
            let uri = Uri::try_from(route.upstream.as_str())?;
            let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
                return Err(format!("{} is not an absolute URL", route.upstream).into());
            };
            let origin = format!("{scheme}://{authority}/");
            let pool = match pools.iter().find(|(o, _)| *o == origin) {
                Some((_, pool)) => pool.clone(),
                None => {
                    let pool = Arc::new(pool::Pool::new(
                        connector.clone(),
                        Uri::try_from(origin.as_str())?,
                        HeaderValue::from_str(authority.as_str())?,
                    ));
                    pools.push((origin, pool.clone()));
                    pool
                }
            };
            upstreams.push(Upstream {
                prefix: route.prefix.clone(),
                base: uri.path().trim_end_matches('/').to_string(),
                pool,
            });
        }
        Ok(Self {
            upstreams,
            security,
            routes: settings.routes.clone(),
            token: settings.token,
            timeout: settings.timeout,
            max_body: settings.max_body,
        })
    }

    /// Whether `path` is one of the proxied prefixes or under one.
    pub fn serves(&self, path: &str) -> bool {
        self.routes.matching(path).is_some()
    }
}

/// Forwards `req` to its route's upstream; every failure is answered here
/// with a status and a `detail`, never passed on as a 500.
pub async fn forward(proxy: Arc<Proxy>, mut req: Request) -> Response {
    let security = &proxy.security;
    let Some((route, rest)) = proxy.routes.matching(req.uri().path()) else {
        return ApiError::NotFound.into_response();
    };
    let route = route.clone();
    let Some(upstream_of_route) = proxy
        .upstreams
        .iter()
        .find(|u| Arc::ptr_eq(&u.prefix, &route.prefix))
    else {
        return ApiError::NotFound.into_response();
    };
    let Some(uri) = target::upstream_path(&upstream_of_route.base, rest, req.uri().query())
        .ok()
        .and_then(|path| Uri::try_from(path).ok())
    else {
        return ApiError::BadRequest("The path leaves its proxied prefix").into_response();
    };
    let claims = match security.authenticate(req.headers()).await {
        Ok(claims) => claims,
        Err(error) => return error.into_response(),
    };
    let websocket = req.method() == Method::GET && headers::is_websocket(req.headers());
    let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));

    let cookies = &security.cookies;
    let client_ip =
        telemetry::current_client_ip().map_or_else(|| "-".to_string(), |ip| ip.to_string());
    let peer_trusted = req
        .extensions()
        .get::<PeerIp>()
        .is_some_and(|peer| security.client_ip.is_trusted_peer(peer.0));
    let (proto, host) = {
        let headers = req.headers();
        let forwarded = |name: &str| {
            headers
                .get(name)
                .filter(|_| peer_trusted)
                .and_then(|v| v.to_str().ok())
        };
        let proto = match forwarded("x-forwarded-proto") {
            Some("https") => "https",
            _ => "http",
        };
        let host = forwarded("x-forwarded-host")
            .and_then(|v| HeaderValue::from_str(v).ok())
            .or_else(|| headers.get(header::HOST).cloned());
        (proto, host)
    };
    let token = match proxy.token {
        ProxyToken::Jwt => cookies.read(req.headers(), CookieKind::Session),
        ProxyToken::None => None,
    };
    let outgoing = headers::upstream(
        req.headers(),
        cookies,
        &headers::Forwarding {
            claims: &claims,
            bearer: token,
            client_ip: &client_ip,
            proto,
            host: host.as_ref(),
            request_id: req.headers().get("x-request-id"),
            websocket,
        },
    );
    let method = req.method().clone();
    let has_body = crate::security::envelope::has_body(req.headers());
    let (body, sending) = body::Capped::new(req.into_body(), proxy.max_body);
    // Without one, none: an empty stream would go out chunked.
    let body = if has_body {
        body.boxed_unsync()
    } else {
        sending.done.store(true, Ordering::Release);
        http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync()
    };
    let mut request = http::Request::new(body);
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = outgoing;
    let pool = upstream_of_route.pool.clone();
    // The upstream's own name, as a client reaching it directly sends it.
    request
        .headers_mut()
        .insert(header::HOST, pool.host.clone());

    let started = Instant::now();
    let answer = tokio::time::timeout(proxy.timeout, pool.send(request)).await;
    let took = started.elapsed();
    let (mut upstream, connection) = match answer {
        Err(_) => {
            tracing::warn!(route = %route.prefix, timeout_s = proxy.timeout.as_secs(), "upstream sent no answer in time");
            return ApiError::GatewayTimeout.into_response();
        }
        Ok(Err(_)) if sending.over.load(Ordering::Relaxed) => {
            return ApiError::PayloadTooLarge.into_response();
        }
        Ok(Err(error)) => {
            tracing::warn!(route = %route.prefix, error = %describe(&*error), "upstream failed");
            return ApiError::BadGateway.into_response();
        }
        Ok(Ok(answer)) => answer,
    };
    // Revoked while the upstream was working: its answer is not theirs.
    if security.authority.refuses(&claims) {
        return ApiError::NotAuthenticated.into_response();
    }
    let status = upstream.status();
    let report = UpstreamAnswer {
        status: status.as_u16(),
        took,
    };
    let mut response = match client_upgrade {
        Some(client_upgrade) if status == StatusCode::SWITCHING_PROTOCOLS => {
            let headers = headers::downstream(upstream.headers(), cookies, true);
            match hyper::upgrade::on(&mut upstream).await {
                Ok(upstream_io) => {
                    tunnel::spawn(
                        client_upgrade,
                        upstream_io,
                        security.authority.clone(),
                        claims,
                    );
                    let mut response = Response::new(Body::empty());
                    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                    *response.headers_mut() = headers;
                    response
                }
                Err(error) => {
                    tracing::warn!(route = %route.prefix, error = %describe(&error), "upstream did not switch protocols");
                    ApiError::BadGateway.into_response()
                }
            }
        }
        // Switching protocols nobody asked for: not an answer to pass on
        // (and not a connection to reuse).
        None if status == StatusCode::SWITCHING_PROTOCOLS => {
            tracing::warn!(route = %route.prefix, "upstream switched protocols unasked");
            ApiError::BadGateway.into_response()
        }
        _ => {
            let (parts, upstream_body) = upstream.into_parts();
            let headers = headers::downstream(&parts.headers, cookies, false);
            let upstream_body = pool::Returning::new(upstream_body, connection, pool, sending);
            let body = body::Watched::new(upstream_body, security.authority.clone(), claims);
            let mut response = Response::new(Body::new(body));
            *response.status_mut() = parts.status;
            *response.headers_mut() = headers;
            response
        }
    };
    response.extensions_mut().insert(report);
    response
}

/// An upstream error and its causes (hyper's and the connector's texts
/// name no URL and no header).
fn describe(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}
