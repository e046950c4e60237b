//! The cookie policy: every cookie this server sets or clears is rendered
//! here, from one attribute set, so a cookie is always cleared with exactly
//! the Path, Domain, Secure, SameSite and HttpOnly it was set with.

use http::{HeaderMap, HeaderValue, header};

use crate::config::CookieSettings;

/// The cookies this server owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CookieKind {
    /// The access token (JWT). HttpOnly.
    Session,
    /// The opaque refresh token. HttpOnly.
    Refresh,
    /// The CSRF token; readable by JavaScript so it can echo it in a header.
    Csrf,
    /// A sign-in flow in progress (references the PKCE verifier). HttpOnly.
    Flow,
    /// The sign-in form's own anti-CSRF token. HttpOnly.
    SigninForm,
    /// The short-lived cookie of a device-bound session (DBSC=on). HttpOnly.
    Bound,
}

/// How long the flow and sign-in form cookies live.
pub const FLOW_COOKIE_MAX_AGE: u64 = 600;

impl CookieKind {
    /// The three cookies of the API, the ones logout clears.
    pub const ALL: [CookieKind; 3] = [CookieKind::Session, CookieKind::Refresh, CookieKind::Csrf];

    /// Every cookie this server sets (none of them is passed to a proxied
    /// upstream, nor may an upstream set one).
    pub const EVERY: [CookieKind; 6] = [
        CookieKind::Session,
        CookieKind::Refresh,
        CookieKind::Csrf,
        CookieKind::Flow,
        CookieKind::SigninForm,
        CookieKind::Bound,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// An expiry date in the past, for clearing (some old agents ignore Max-Age=0).
const EPOCH: &str = "Thu, 01 Jan 1970 00:00:00 GMT";

#[derive(Debug, Clone)]
struct Spec {
    name: String,
    http_only: bool,
    max_age: u64,
    /// The clearing header, rendered once.
    cleared: HeaderValue,
}

#[derive(Debug, Clone)]
pub struct CookiePolicy {
    specs: [Spec; 6],
    /// `; Path=/[; Domain=..][; Secure]`, shared by every cookie.
    scope: String,
    same_site: &'static str,
    /// DBSC is on: the bound cookie is cleared with the API's three.
    bound: bool,
}

impl CookiePolicy {
    /// `bound_ttl`: the bound cookie's lifetime when DBSC is on.
    pub fn new(settings: &CookieSettings, csrf_ttl: u64, bound_ttl: Option<u64>) -> Self {
        let mut scope = String::from("; Path=/");
        if let Some(domain) = &settings.domain {
            scope.push_str("; Domain=");
            scope.push_str(domain);
        }
        if settings.secure {
            scope.push_str("; Secure");
        }
        let same_site = settings.same_site.as_str();
        // Our auxiliary cookies take the strongest prefix the settings allow.
        let prefix = match (settings.secure, settings.domain.is_some()) {
            (true, false) => "__Host-",
            (true, true) => "__Secure-",
            (false, _) => "",
        };
        let spec = |name: &str, http_only: bool, max_age: u64| {
            let cleared = render(name, "", &scope, http_only, same_site, None);
            Spec {
                name: name.to_string(),
                http_only,
                max_age,
                cleared,
            }
        };
        Self {
            specs: [
                spec(&settings.session_name, true, settings.max_age),
                spec(&settings.refresh_name, true, settings.max_age),
                spec(&settings.csrf_name, false, csrf_ttl),
                spec(&format!("{prefix}chronos_flow"), true, FLOW_COOKIE_MAX_AGE),
                spec(
                    &format!("{prefix}chronos_signin"),
                    true,
                    FLOW_COOKIE_MAX_AGE,
                ),
                spec(
                    &format!("{prefix}chronos_bound"),
                    true,
                    bound_ttl.unwrap_or(0),
                ),
            ],
            scope,
            same_site,
            bound: bound_ttl.is_some(),
        }
    }

    pub fn name(&self, kind: CookieKind) -> &str {
        &self.specs[kind.index()].name
    }

    /// `Set-Cookie` that stores `value`. Values are base64url/JWT text, which
    /// needs no quoting; anything else is refused by construction upstream.
    pub fn set(&self, kind: CookieKind, value: &str) -> HeaderValue {
        let spec = &self.specs[kind.index()];
        render(
            &spec.name,
            value,
            &self.scope,
            spec.http_only,
            self.same_site,
            Some(spec.max_age),
        )
    }

    /// `Set-Cookie` that removes the cookie: empty value, `Max-Age=0`, an
    /// `Expires` in the past, and otherwise the attributes of [`set`](Self::set).
    pub fn clear(&self, kind: CookieKind) -> HeaderValue {
        self.specs[kind.index()].cleared.clone()
    }

    /// Appends the three clearing headers (logout), and the bound
    /// cookie's when DBSC is on.
    pub fn clear_all(&self, headers: &mut HeaderMap) {
        for kind in CookieKind::ALL {
            headers.append(header::SET_COOKIE, self.clear(kind));
        }
        if self.bound {
            headers.append(header::SET_COOKIE, self.clear(CookieKind::Bound));
        }
    }

    /// The attributes `set` gives the cookie, without its lifetime
    /// (`Path=/; Secure; HttpOnly; SameSite=Lax`): what DBSC's session
    /// instructions name the bound cookie with.
    pub fn attributes(&self, kind: CookieKind) -> String {
        let mut out = self.scope.trim_start_matches("; ").to_string();
        if self.specs[kind.index()].http_only {
            out.push_str("; HttpOnly");
        }
        out.push_str("; SameSite=");
        out.push_str(self.same_site);
        out
    }

    /// The value of one of our cookies in the request, if present and non-empty.
    pub fn read<'a>(&self, headers: &'a HeaderMap, kind: CookieKind) -> Option<&'a str> {
        read_cookie(headers, self.name(kind))
    }
}

fn render(
    name: &str,
    value: &str,
    scope: &str,
    http_only: bool,
    same_site: &str,
    max_age: Option<u64>,
) -> HeaderValue {
    let mut out = String::with_capacity(name.len() + value.len() + 96);
    out.push_str(name);
    out.push('=');
    out.push_str(value);
    out.push_str(scope);
    if http_only {
        out.push_str("; HttpOnly");
    }
    out.push_str("; SameSite=");
    out.push_str(same_site);
    match max_age {
        Some(age) => {
            out.push_str("; Max-Age=");
            out.push_str(&age.to_string());
        }
        None => {
            out.push_str("; Max-Age=0; Expires=");
            out.push_str(EPOCH);
        }
    }
    // Names are validated at start-up and values are token text; a value
    // that would not fit a header is a bug, and an empty cookie is safer.
    // (The string's buffer becomes the header value: no copy.)
    HeaderValue::from_maybe_shared(bytes::Bytes::from(out))
        .unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Finds `name` in the request's `Cookie` headers (first well-formed
/// occurrence wins). The header is read as bytes, pair by pair: a pair that
/// is not valid (non-ASCII bytes from someone else's cookie on the same
/// domain, no `=`) is skipped on its own instead of making the whole header
/// unreadable. This runs several times on every request.
pub fn read_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .find_map(|v| find_in(v.as_bytes(), name.as_bytes()))
}

fn find_in<'a>(header: &'a [u8], name: &[u8]) -> Option<&'a str> {
    let is_space = |b: &u8| *b == b' ' || *b == b'\t';
    let mut rest = header;
    loop {
        // Pair by pair: a header holds a few, so splitting on `;` costs less
        // than searching for the name (building a substring searcher
        // measured ~600 instructions a call).
        let start = rest.iter().position(|b| !is_space(b)).unwrap_or(rest.len());
        let rest_of_header = &rest[start..];
        let end = memchr::memchr(b';', rest_of_header).unwrap_or(rest_of_header.len());
        if let Some(value) = value_of(&rest_of_header[..end], name) {
            return Some(value);
        }
        if end == rest_of_header.len() {
            return None;
        }
        rest = &rest_of_header[end + 1..];
    }
}

/// The value of `pair` (`name=value`, spaces allowed around `=`, the value
/// possibly quoted) if it is `name`'s and well-formed.
fn value_of<'a>(pair: &'a [u8], name: &[u8]) -> Option<&'a str> {
    let after = pair.strip_prefix(name)?.trim_ascii_start();
    let value = after.strip_prefix(b"=")?.trim_ascii();
    let value = value
        .strip_prefix(b"\"")
        .and_then(|v| v.strip_suffix(b"\""))
        .unwrap_or(value);
    // Values we set are token text: plain ASCII. Anything else under our
    // name is not ours; look further.
    if value.is_empty() || !value.is_ascii() {
        return None;
    }
    std::str::from_utf8(value).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SameSite;

    fn settings(domain: Option<&str>, secure: bool, same_site: SameSite) -> CookieSettings {
        CookieSettings {
            session_name: "s".into(),
            refresh_name: "r".into(),
            csrf_name: "c".into(),
            max_age: 604_800,
            domain: domain.map(Into::into),
            secure,
            same_site,
        }
    }

    #[test]
    fn set_and_clear_share_every_attribute() {
        let p = CookiePolicy::new(
            &settings(Some("example.com"), true, SameSite::Strict),
            3600,
            Some(600),
        );
        assert_eq!(
            p.set(CookieKind::Session, "abc"),
            "s=abc; Path=/; Domain=example.com; Secure; HttpOnly; SameSite=Strict; Max-Age=604800"
        );
        assert_eq!(
            p.clear(CookieKind::Session),
            "s=; Path=/; Domain=example.com; Secure; HttpOnly; SameSite=Strict; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        );
        assert_eq!(
            p.set(CookieKind::Csrf, "t"),
            "c=t; Path=/; Domain=example.com; Secure; SameSite=Strict; Max-Age=3600"
        );
        assert_eq!(
            p.set(CookieKind::Bound, "b"),
            "__Secure-chronos_bound=b; Path=/; Domain=example.com; Secure; HttpOnly; SameSite=Strict; Max-Age=600"
        );
        assert_eq!(
            p.attributes(CookieKind::Bound),
            "Path=/; Domain=example.com; Secure; HttpOnly; SameSite=Strict"
        );
        let mut cleared = HeaderMap::new();
        p.clear_all(&mut cleared);
        assert_eq!(cleared.get_all(header::SET_COOKIE).iter().count(), 4);
    }

    #[test]
    fn host_only_insecure_cookies_carry_no_domain_or_secure() {
        let p = CookiePolicy::new(&settings(None, false, SameSite::Lax), 3600, None);
        assert_eq!(
            p.clear(CookieKind::Csrf),
            "c=; Path=/; SameSite=Lax; Max-Age=0; Expires=Thu, 01 Jan 1970 00:00:00 GMT"
        );
        // Without DBSC, logout clears the API's three, as the seed says.
        let mut cleared = HeaderMap::new();
        p.clear_all(&mut cleared);
        assert_eq!(cleared.get_all(header::SET_COOKIE).iter().count(), 3);
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "a=1; s=first".parse().unwrap());
        h.append(header::COOKIE, "s=second; c=\"\"".parse().unwrap());
        assert_eq!(read_cookie(&h, "s"), Some("first"));
        assert_eq!(read_cookie(&h, "c"), None);
        assert_eq!(read_cookie(&h, "missing"), None);
    }

    #[test]
    fn an_odd_pair_is_skipped_and_the_rest_still_read() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"theme=caf\xc3\xa9; junk; s=tok.en-1_x; x=\xff\xfe").unwrap(),
        );
        assert_eq!(read_cookie(&h, "s"), Some("tok.en-1_x"));
        assert_eq!(read_cookie(&h, "theme"), None, "not a cookie-octet value");
        // A malformed value under our own name does not hide a good one.
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_bytes(b"s=bad\xe9; s=good").unwrap(),
        );
        assert_eq!(read_cookie(&h, "s"), Some("good"));
        // The name inside another cookie's name or value is not a match.
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "xs=1; a=s=2; s =3".parse().unwrap());
        assert_eq!(read_cookie(&h, "s"), Some("3"));
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, "s=; t=1".parse().unwrap());
        assert_eq!(read_cookie(&h, "s"), None);
    }
}
