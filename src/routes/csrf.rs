//! `GET /auth/csrf`: a fresh CSRF token in a JavaScript-readable cookie,
//! bound to the session the request's cookies belong to (or, before
//! sign-in, to its flow).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, header};

use crate::cookies::CookieKind;
use crate::routes::state::AppState;
use crate::security::csrf::{Binding, Purpose};
use crate::unix_now;

pub async fn issue(state: Arc<AppState>, req: Request) -> Response {
    let binding = Binding::of(&*state.authority, state.cookies(), req.headers()).await;
    let token = state.csrf().issue(Purpose::Api, &binding, unix_now());
    let mut response = Response::new(Body::from(&br#"{"ok":true}"#[..]));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::SET_COOKIE,
        state.cookies().set(CookieKind::Csrf, &token),
    );
    response
}
