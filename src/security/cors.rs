//! CORS for the configured origins, with credentials (preflight included).

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, header};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::security::envelope::X_REQUEST_ID;
use crate::security::guard::CSRF_HEADER;

pub fn layer(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::CONTENT_TYPE,
            header::ACCEPT,
            X_REQUEST_ID.clone(),
            HeaderName::from_static(CSRF_HEADER),
        ])
        .expose_headers([X_REQUEST_ID.clone(), header::RETRY_AFTER])
        .max_age(Duration::from_secs(600))
}
