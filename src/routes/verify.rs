//! `GET /auth/verify`: forward-auth for nginx `auth_request`, Traefik
//! `forwardAuth` and Caddy `forward_auth`. 200 with the user in
//! `X-Auth-User-Id`, `X-Auth-User-Email`, `X-Auth-Session-Id` for a valid,
//! unrevoked session cookie; 401 otherwise. Proxies call it on every
//! request they forward, so it is answered from memory: a cached signature
//! check and the in-memory revocation set.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderName, HeaderValue};

use super::session::authenticate;
use crate::routes::state::AppState;
use crate::security::envelope;

static USER_ID: HeaderName = HeaderName::from_static("x-auth-user-id");
static USER_EMAIL: HeaderName = HeaderName::from_static("x-auth-user-email");
static SESSION_ID: HeaderName = HeaderName::from_static("x-auth-session-id");

pub async fn verify(state: Arc<AppState>, req: Request) -> Response {
    let claims = match authenticate(&state, req.headers()).await {
        Ok(claims) => claims,
        Err(error) => return error.into_response(),
    };
    let mut response = envelope::response(Body::empty());
    let out = response.headers_mut();
    for (name, value) in [
        (&USER_ID, claims.sub.as_str()),
        (&USER_EMAIL, claims.email.as_str()),
        (&SESSION_ID, claims.sid.as_str()),
    ] {
        if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
            out.insert(name.clone(), value);
        }
    }
    response
}
