//! CORS for the configured origins, with credentials (preflight included).
//!
//! Done here from headers rendered once, rather than with tower-http's
//! `CorsLayer`, which clones its configuration (and allocates) on every
//! request: this sits on the path of every page load.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use axum::body::Body;
use axum::response::Response;

/// Response headers CORS adds, ready to send.
pub struct Cors {
    allowed: Vec<HeaderValue>,
    allow_methods: HeaderValue,
    allow_headers: HeaderValue,
    expose_headers: HeaderValue,
    max_age: HeaderValue,
    vary_preflight: HeaderValue,
}

impl Cors {
    pub fn new(origins: &[String]) -> Self {
        Self {
            allowed: origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
            allow_methods: HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE, OPTIONS"),
            allow_headers: HeaderValue::from_static(
                "content-type, accept, x-request-id, x-csrf-token",
            ),
            expose_headers: HeaderValue::from_static("x-request-id, retry-after"),
            max_age: HeaderValue::from_static("600"),
            vary_preflight: HeaderValue::from_static(
                "origin, access-control-request-method, access-control-request-headers",
            ),
        }
    }

    /// Whether `origin` is one of FRONTEND_URL, CORS_ORIGINS, DESKTOP_PROXY_ORIGINS.
    pub fn allows(&self, origin: &HeaderValue) -> bool {
        self.allowed.iter().any(|a| a == origin)
    }

    /// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
    pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && headers.contains_key(header::ORIGIN)
            && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to a preflight. A foreign origin gets no permission
    /// headers, and the browser stops there.
    pub fn preflight(&self, headers: &HeaderMap) -> Response {
        let mut response = Response::new(Body::empty());
        *response.status_mut() = StatusCode::OK;
        let out = response.headers_mut();
        out.insert(header::VARY, self.vary_preflight.clone());
        if let Some(origin) = headers.get(header::ORIGIN).filter(|o| self.allows(o)) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                self.allow_methods.clone(),
            );
            out.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                self.allow_headers.clone(),
            );
            out.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        }
        response
    }

    /// Adds the CORS headers of an actual (non-preflight) response.
    pub fn decorate(&self, origin: Option<&HeaderValue>, out: &mut HeaderMap) {
        out.append(header::VARY, HeaderValue::from_static("origin"));
        if let Some(origin) = origin.filter(|o| self.allows(o)) {
            out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            out.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                self.expose_headers.clone(),
            );
        }
    }
}
