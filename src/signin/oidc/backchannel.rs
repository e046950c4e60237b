//! `POST /auth/backchannel-logout`: OpenID Connect Back-Channel Logout 1.0.
//! The provider posts `logout_token=<JWT>` when a person signs out there;
//! the sessions started under that provider session (`sid`), or all of the
//! person's (`sub` alone), end at once. The answer is 200, or 400 with an
//! OAuth error; never cached (the security layer adds `no-store`).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use http::StatusCode;
use serde_json::json;

use super::OidcSignIn;
use super::tokens::{LOGOUT_TOKEN_MAX_AGE, LogoutClaims};
use crate::authority::{EndSessions, SessionAuthority};
use crate::secrets::hash_token;
use crate::security::guard::BACKCHANNEL_LOGOUT;
use crate::store::nonces::OneTime;
use crate::unix_now;

pub fn router(method: Arc<OidcSignIn>) -> Router {
    Router::new()
        .route(BACKCHANNEL_LOGOUT, post(receive))
        .with_state(method)
}

/// 400 `{"error": ..., "error_description": ...}` (and our `detail`).
fn refuse(error: &str, description: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({
            "error": error,
            "error_description": description,
            "detail": description,
        })),
    )
        .into_response()
}

async fn receive(State(method): State<Arc<OidcSignIn>>, body: Bytes) -> Response {
    let token = url::form_urlencoded::parse(&body)
        .find(|(name, _)| name == "logout_token")
        .map(|(_, value)| value.into_owned());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return refuse("invalid_request", "logout_token is required");
    };
    let Ok(provider) = method.client.provider().await else {
        return refuse(
            "temporarily_unavailable",
            "the identity provider's keys are not known yet",
        );
    };
    let now = unix_now();
    let claims = match method
        .client
        .verifier(&provider)
        .logout_token(&token, now)
        .await
    {
        Ok(claims) => claims,
        Err(error) => {
            tracing::warn!(error = %error, "back-channel logout token refused");
            return refuse("invalid_request", "the logout token is not valid");
        }
    };
    match end_sessions(&method, &claims, now).await {
        Ok(Some(ended)) => {
            tracing::info!(sessions = ended, "back-channel logout ended sessions");
            StatusCode::OK.into_response()
        }
        Ok(None) => refuse("invalid_request", "this logout token was already used"),
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "back-channel logout failed");
            // Not a 200: the provider may retry.
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Records the token's `jti` (a replay is refused: `None`), then ends the
/// matching sessions; the count ended.
async fn end_sessions(
    method: &OidcSignIn,
    claims: &LogoutClaims,
    now: u64,
) -> anyhow::Result<Option<usize>> {
    let jti = claims.jti.as_deref().unwrap_or_default();
    let expires_at = claims.exp.unwrap_or(now).max(now) + LOGOUT_TOKEN_MAX_AGE;
    let jti_hash = hash_token(&format!("{}\n{jti}", method.settings.issuer));
    let fresh = method
        .nonces
        .first_use(OneTime::LogoutToken, jti_hash, expires_at as i64)
        .await?;
    if !fresh {
        return Ok(None);
    }
    let issuer = &method.settings.issuer;
    let mut ended = 0;
    match (&claims.sid, &claims.sub) {
        (Some(sid), sub) => {
            let sessions = method
                .provider_sessions
                .by_provider_sid(issuer, sid, sub.as_deref())
                .await?;
            for session_id in sessions {
                ended += method
                    .authority
                    .end_sessions(EndSessions::Any { session_id })
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .len();
            }
        }
        (None, Some(sub)) => {
            let user = method.accounts.linked(issuer, sub).await?;
            if let Some(user_id) = user {
                ended += method
                    .authority
                    .end_sessions(EndSessions::AllOf { user_id })
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?
                    .len();
            }
        }
        (None, None) => {}
    }
    Ok(Some(ended))
}
