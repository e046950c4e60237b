//! The routes: one module per endpoint family, assembled into [`Routes`],
//! the service the security envelope wraps.
//!
//! The few routes on the path of every page load and every proxied request
//! ([`FAST_ROUTES`]) are answered ahead of the axum router: its per-request
//! work (matching, boxing, a `MatchedPath` extension) measured 12% of a
//! logout. The router serves the same table (HEAD, wrong methods and
//! everything else included), and a test keeps the two answers identical.
//! Paths under a `PROXY_ROUTES` prefix go to [`crate::proxy`] first.

mod account;
mod accounts;
mod csrf;
mod dbsc;
mod desktop;
pub mod extract;
mod health;
mod jwks;
mod login;
pub mod logout;
mod oauth;
mod openapi;
mod risc;
pub mod session;
mod sessions;
/// What every route reads: settings, security parts, authority, sign-in method, flows.
pub mod state;
mod verify;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{MethodFilter, any, delete, get, on, post};
use http::Method;
use tower::{Service, ServiceExt};

use crate::error::ApiError;
use crate::routes::state::AppState;

type BoxResponse = Pin<Box<dyn Future<Output = Response> + Send>>;

/// A route answered ahead of the router.
pub struct FastRoute {
    /// `None`: any method.
    pub method: Option<Method>,
    pub path: &'static str,
    handler: fn(Arc<AppState>, Request) -> BoxResponse,
}

/// The hot routes, in one table that both the fast path and the router use.
pub static FAST_ROUTES: [FastRoute; 4] = [
    FastRoute {
        method: Some(Method::POST),
        path: "/auth/logout",
        handler: |state, req| Box::pin(logout::logout(state, req)),
    },
    FastRoute {
        method: Some(Method::GET),
        path: "/auth/csrf",
        handler: |state, req| Box::pin(csrf::issue(state, req)),
    },
    FastRoute {
        method: Some(Method::GET),
        path: "/auth/session",
        handler: |state, req| Box::pin(session::current(state, req)),
    },
    FastRoute {
        method: None,
        path: "/auth/verify",
        handler: |state, req| Box::pin(verify::verify(state, req)),
    },
];

/// The routes as a service: the fast path, then the router.
#[derive(Clone)]
pub struct Routes {
    state: Arc<AppState>,
    router: Router,
    fast: bool,
}

impl Routes {
    pub fn new(state: Arc<AppState>) -> Self {
        Self {
            router: router(state.clone()),
            state,
            fast: true,
        }
    }

    /// Without the fast path: every request through the router (to check
    /// that both answer alike).
    pub fn router_only(state: Arc<AppState>) -> Self {
        Self {
            fast: false,
            ..Self::new(state)
        }
    }
}

impl Service<Request> for Routes {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // The proxied prefixes never overlap ours (config refuses it).
        if let Some(proxy) = &self.state.proxy
            && proxy.serves(req.uri().path())
        {
            let answer = crate::proxy::forward(proxy.clone(), req);
            return Box::pin(async move { Ok(answer.await) });
        }
        // HEAD goes to the router, which answers it without a body but
        // with the GET answer's length.
        if self.fast
            && req.method() != Method::HEAD
            && let Some(route) = FAST_ROUTES.iter().find(|route| {
                route.path == req.uri().path()
                    && route.method.as_ref().is_none_or(|m| m == req.method())
            })
        {
            let answer = (route.handler)(self.state.clone(), req);
            return Box::pin(async move { Ok(answer.await) });
        }
        let router = self.router.clone();
        Box::pin(router.oneshot(req))
    }
}

fn router(state: Arc<AppState>) -> Router {
    let mut router: Router<Arc<AppState>> = Router::new();
    for route in &FAST_ROUTES {
        let handler =
            move |State(state): State<Arc<AppState>>, req: Request| (route.handler)(state, req);
        router = match &route.method {
            None => router.route(route.path, any(handler)),
            Some(method) => match MethodFilter::try_from(method.clone()) {
                Ok(filter) => router.route(route.path, on(filter, handler)),
                Err(_) => router,
            },
        };
    }
    let document = openapi::document(
        state.settings.server.public_url.as_deref(),
        &state.settings.proxy.routes,
    );
    let router = router
        .route("/health", get(health::health))
        .route("/health/ready", get(health::ready))
        .route("/auth/google/login", get(login::start))
        .route("/auth/web/callback", post(session::exchange))
        .route("/auth/refresh", post(session::refresh))
        .route(
            "/auth/logout/provider",
            get(|State(state): State<Arc<AppState>>, req: Request| logout::at_provider(state, req)),
        )
        .route("/auth/desktop/callback", get(desktop::callback))
        .route("/auth/sessions", get(sessions::list))
        .route("/auth/sessions/{id}", delete(sessions::end))
        .route("/auth/google/connect", get(accounts::connect))
        .route("/auth/accounts", get(accounts::list))
        .route("/auth/accounts/{id}", delete(accounts::remove))
        .route(
            "/auth/google/accounts/{id}",
            delete(accounts::remove_google),
        )
        .route("/auth/account", get(account::page))
        .route(
            "/auth/passkeys",
            get(account::list_passkeys).post(account::add_passkey),
        )
        .route("/auth/passkeys/options", post(account::passkey_options))
        .route(
            "/auth/passkeys/{id}",
            axum::routing::patch(account::rename_passkey).delete(account::remove_passkey),
        )
        .route("/auth/totp", get(account::totp_status))
        .route("/auth/totp/enrol", post(account::totp_enrol))
        .route("/auth/totp/confirm", post(account::totp_confirm))
        .route(
            "/auth/totp/recovery-codes",
            post(account::totp_recovery_codes),
        )
        .route("/auth/totp/disable", post(account::totp_disable))
        .route("/oauth/token", post(oauth::token))
        .route("/auth/risc", post(risc::receive))
        .route(crate::security::dbsc::REGISTER_PATH, post(dbsc::register))
        .route(crate::security::dbsc::REFRESH_PATH, post(dbsc::refresh))
        .route("/.well-known/jwks.json", get(jwks::jwks))
        .route(
            "/openapi.json",
            get(move || openapi::serve(document.clone())),
        )
        .with_state(state.clone());
    // The sign-in method's own pages, when it has any.
    let router = match state.sign_in.clone().routes() {
        Some(pages) => router.merge(pages),
        None => router,
    };
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
