//! Sign-in methods: ways for a person to prove who they are, in front of a
//! session authority. The API's flow is the same whichever is configured:
//!
//! 1. `GET /auth/google/login` starts a flow (PKCE verifier kept server-side,
//!    the browser holds a flow cookie) and answers the method's
//!    [`authorize_url`](SignInMethod::authorize_url);
//! 2. the person signs in there and comes back to the frontend with a code;
//! 3. `POST /auth/web/callback` hands the code to
//!    [`complete`](SignInMethod::complete), which proves the person and
//!    returns the session the authority opened.
//!
//! The password page ([`password`]) is the zero-configuration method; it
//! serves its own pages ([`routes`](SignInMethod::routes)). [`oidc`] signs
//! people in through any OpenID Connect provider.

pub mod oidc;
pub mod password;
/// The identity providers' HTTP client: timeouts, bounded answers.
pub mod provider_client;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;

use crate::authority::{AuthError, ClientInfo, IssuedSession, SessionId};
use crate::store::flows::{Flow, StartedFlow};

/// What the frontend brings back from the provider.
#[derive(Debug, Clone, Copy)]
pub struct Callback<'a> {
    pub code: &'a str,
    /// The `state` parameter, when the client passes it on.
    pub state: Option<&'a str>,
}

#[async_trait]
pub trait SignInMethod: Send + Sync {
    /// Where the browser goes to sign in for this flow; `redirect_uri` has
    /// been allow-listed.
    async fn authorize_url(
        &self,
        flow: &StartedFlow,
        redirect_uri: &str,
    ) -> Result<String, AuthError>;

    /// Proves the person behind `callback` (for the flow this browser
    /// started) and opens their session.
    async fn complete(
        &self,
        callback: Callback<'_>,
        flow: &Flow,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError>;

    /// Pages this method serves itself, ready to merge into the router.
    fn routes(self: Arc<Self>) -> Option<Router> {
        None
    }

    /// Sessions ended through the API (logout, `DELETE /auth/sessions`):
    /// the method tells its provider, if it has one. Never fails the caller.
    async fn sessions_ended(&self, _session_ids: &[SessionId]) {}

    /// Where the browser signs out at the provider (OpenID Connect
    /// RP-Initiated Logout: its `end_session_endpoint`, with the session's
    /// `id_token_hint`, our `client_id` and `post_logout_redirect_uri`);
    /// `None` when the method has no such endpoint. Asked before the
    /// session ends.
    async fn end_session_url(
        &self,
        _session_id: &SessionId,
        _post_logout_redirect_uri: &str,
    ) -> Option<String> {
        None
    }

    /// Work the method does while the server runs (discovery, deliveries).
    async fn run(&self) {}

    /// Deletes what the method keeps that has expired.
    async fn prune(&self) -> anyhow::Result<()> {
        Ok(())
    }
}
