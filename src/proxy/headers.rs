//! The headers a proxied request and its answer carry across.
//!
//! Upstream: the client's headers minus the hop-by-hop ones (RFC 9110
//! §7.6.1), `Host`, our cookies, our CSRF header and every identity or
//! forwarding header the client could forge; then ours: the session's
//! token, who the user is, where the request came from.
//! Downstream: the upstream's headers minus the hop-by-hop ones, any
//! `Set-Cookie` for one of our cookie names (an upstream must not replace a
//! session) and its CORS headers (CORS is this server's policy).

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::authority::tokens::AccessClaims;
use crate::cookies::{CookieKind, CookiePolicy};
use crate::security::envelope::X_REQUEST_ID;
use crate::security::guard::CSRF_HEADER;

pub static X_AUTH_USER_ID: HeaderName = HeaderName::from_static("x-auth-user-id");
pub static X_AUTH_USER_EMAIL: HeaderName = HeaderName::from_static("x-auth-user-email");
pub static X_AUTH_SESSION_ID: HeaderName = HeaderName::from_static("x-auth-session-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Headers some frameworks let rewrite the path, the method or the client
/// address: from a browser they are forgeries, so they never go upstream
/// (`X-Original-URL` could reach another route, a method override could
/// turn a GET, which needs no CSRF token, into a DELETE).
const FORGEABLE: &[&str] = &[
    "x-original-url",
    "x-rewrite-url",
    "x-real-ip",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-forwarded-server",
    "x-forwarded-scheme",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// What the upstream is told about the request, besides its own headers.
pub struct Forwarding<'a> {
    pub claims: &'a AccessClaims,
    /// `Some(token)`: sent as `Authorization: Bearer <token>`.
    pub bearer: Option<&'a str>,
    pub client_ip: &'a str,
    pub proto: &'a str,
    pub host: Option<&'a HeaderValue>,
    pub request_id: Option<&'a HeaderValue>,
    /// A WebSocket handshake keeps its `Upgrade` and `Connection: upgrade`.
    pub websocket: bool,
}

/// RFC 9110 §7.6.1, and the `Proxy-*` family.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == KEEP_ALIVE
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str().starts_with("proxy-")
}

/// The names a `Connection` header lists (hop-by-hop too).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    // As bytes: one non-ASCII byte must not hide the names beside it.
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
        .collect()
}

/// The name of the cookie a `Cookie` pair or a `Set-Cookie` value is for
/// (bytes up to `=`, trimmed; a pair without `=` is a nameless value).
fn cookie_name(pair: &[u8]) -> &[u8] {
    match pair.iter().position(|b| *b == b'=') {
        Some(eq) => pair[..eq].trim_ascii(),
        None => b"",
    }
}

/// Copies what may cross a hop, dropping hop-by-hop headers.
fn end_to_end(from: &HeaderMap, keep: impl Fn(&HeaderName) -> bool) -> HeaderMap {
    let listed = connection_listed(from);
    let mut out = HeaderMap::with_capacity(from.len() + 8);
    for (name, value) in from {
        if !is_hop_by_hop(name) && !listed.contains(name) && keep(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// The headers the upstream receives.
pub fn upstream(headers: &HeaderMap, cookies: &CookiePolicy, with: &Forwarding<'_>) -> HeaderMap {
    let replaced = [
        &header::HOST,
        &header::AUTHORIZATION,
        &header::COOKIE,
        &X_AUTH_USER_ID,
        &X_AUTH_USER_EMAIL,
        &X_AUTH_SESSION_ID,
        &X_FORWARDED_FOR,
        &X_FORWARDED_PROTO,
        &X_FORWARDED_HOST,
        &X_REQUEST_ID,
        &FORWARDED,
    ];
    let mut out = end_to_end(headers, |name| {
        !replaced.contains(&name)
            && name.as_str() != CSRF_HEADER
            && !FORGEABLE.contains(&name.as_str())
    });
    if let Some(cookie) = other_cookies(headers, cookies) {
        out.insert(header::COOKIE, cookie);
    }
    if let Some(token) = with.bearer
        && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {token}"))
    {
        value.set_sensitive(true);
        out.insert(header::AUTHORIZATION, value);
    }
    let claims = with.claims;
    for (name, value) in [
        (&X_AUTH_USER_ID, claims.sub.as_str()),
        (&X_AUTH_USER_EMAIL, claims.email.as_str()),
        (&X_AUTH_SESSION_ID, claims.sid.as_str()),
        (&X_FORWARDED_FOR, with.client_ip),
        (&X_FORWARDED_PROTO, with.proto),
    ] {
        if let Ok(value) = HeaderValue::from_str(value) {
            out.insert(name.clone(), value);
        }
    }
    if let Some(host) = with.host {
        out.insert(X_FORWARDED_HOST.clone(), host.clone());
    }
    if let Some(id) = with.request_id {
        out.insert(X_REQUEST_ID.clone(), id.clone());
    }
    if with.websocket {
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    out
}

/// The client's cookies without ours, as one `Cookie` header (none left:
/// `None`).
fn other_cookies(headers: &HeaderMap, cookies: &CookiePolicy) -> Option<HeaderValue> {
    let ours = CookieKind::EVERY.map(|kind| cookies.name(kind));
    let mut kept: Vec<u8> = Vec::new();
    // As bytes: someone else's non-ASCII cookie passes, and never hides ours.
    for pair in headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
    {
        let pair = pair.trim_ascii();
        let name = cookie_name(pair);
        if pair.is_empty() || ours.iter().any(|ours| ours.as_bytes() == name) {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    (!kept.is_empty())
        .then(|| HeaderValue::from_bytes(&kept).ok())
        .flatten()
}

/// The headers the browser receives from the upstream's answer (ours are
/// added by the security layer after). A WebSocket's `101` keeps its
/// `Upgrade` and `Connection`.
pub fn downstream(headers: &HeaderMap, cookies: &CookiePolicy, websocket: bool) -> HeaderMap {
    let ours = CookieKind::EVERY.map(|kind| cookies.name(kind));
    let mut out = end_to_end(headers, |name| {
        !name.as_str().starts_with("access-control-")
    });
    // Read as bytes, so no unusual byte elsewhere in the header can hide
    // the name; a nameless cookie (`=chronos_session=x`, which browsers
    // send back as that cookie) is dropped too.
    let set_cookies: Vec<HeaderValue> = out
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|value| {
            let first = value
                .as_bytes()
                .split(|b| *b == b';')
                .next()
                .unwrap_or_default();
            let name = cookie_name(first);
            !name.is_empty() && !ours.iter().any(|ours| ours.as_bytes() == name)
        })
        .cloned()
        .collect();
    out.remove(header::SET_COOKIE);
    for value in set_cookies {
        out.append(header::SET_COOKIE, value);
    }
    // Both framings: the chunks were already taken apart, so a length
    // beside them is not this answer's (RFC 9112 §6.3).
    if headers.contains_key(header::TRANSFER_ENCODING) {
        out.remove(header::CONTENT_LENGTH);
    }
    if websocket {
        out.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        out.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    out
}

/// Whether a request asks for a WebSocket (RFC 6455 §4.1).
pub fn is_websocket(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    upgrade && connection_listed(headers).contains(&header::UPGRADE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{CookieSettings, SameSite};

    fn policy() -> CookiePolicy {
        let settings = CookieSettings {
            session_name: "chronos_session".into(),
            refresh_name: "chronos_refresh".into(),
            csrf_name: "chronos_csrf".into(),
            max_age: 3600,
            domain: None,
            secure: false,
            same_site: SameSite::Lax,
        };
        CookiePolicy::new(&settings, 3600, None)
    }

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn our_cookies_leave_the_cookie_header_and_others_stay_in_order() {
        let cookies = policy();
        let headers = map(&[
            (
                "cookie",
                "theme=dark; chronos_session=tok; chronos_refresh=r",
            ),
            ("cookie", "chronos_csrf=c;  lang=en ;chronos_flow=f"),
        ]);
        assert_eq!(
            other_cookies(&headers, &cookies).unwrap(),
            "theme=dark; lang=en"
        );
        let only_ours = map(&[("cookie", "chronos_session=tok")]);
        assert_eq!(other_cookies(&only_ours, &cookies), None);
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go_both_ways() {
        let cookies = policy();
        let headers = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-t"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("set-cookie", "chronos_session=evil; Path=/"),
            ("set-cookie", "upstream=1; Path=/"),
            ("access-control-allow-origin", "*"),
            ("content-type", "text/event-stream"),
        ]);
        let out = downstream(&headers, &cookies, false);
        let mut names: Vec<&str> = out.keys().map(|n| n.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["content-type", "set-cookie"]);
        let set: Vec<_> = out.get_all("set-cookie").iter().collect();
        assert_eq!(set, ["upstream=1; Path=/"]);
    }

    #[test]
    fn an_answer_framed_both_ways_loses_its_length() {
        let cookies = policy();
        let both = map(&[
            ("transfer-encoding", "chunked"),
            ("content-length", "5"),
            ("content-type", "text/plain"),
        ]);
        let out = downstream(&both, &cookies, false);
        assert!(!out.contains_key("content-length"));
        assert!(!out.contains_key("transfer-encoding"));
        let length_only = map(&[("content-length", "5")]);
        assert_eq!(
            downstream(&length_only, &cookies, false)["content-length"],
            "5"
        );
    }

    #[test]
    fn a_websocket_handshake_is_recognised_by_its_two_headers() {
        assert!(is_websocket(&map(&[
            ("upgrade", "WebSocket"),
            ("connection", "keep-alive, Upgrade"),
        ])));
        assert!(!is_websocket(&map(&[("upgrade", "websocket")])));
        assert!(!is_websocket(&map(&[
            ("upgrade", "h2c"),
            ("connection", "upgrade")
        ])));
    }
}
