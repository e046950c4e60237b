//! The headers every response carries (errors, 429s and preflights too).

use http::{HeaderMap, HeaderName, HeaderValue, header};

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

    pub fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.common {
            headers.insert(name.clone(), value.clone());
        }
    }
}
