//! `POST /oauth/token`: OAuth 2.0 Token Exchange (RFC 8693) for the app's
//! services. A service (one of `SERVICE_CLIENTS`, HTTP Basic, RFC 6749
//! §2.3.1) presents a person's Chronos access token and gets a fresh
//! access token of that person's connected account at the provider; an
//! `offline` service may present an account id instead (a webhook with no
//! person online). Answers and errors in RFC 6749 §5 shapes, never cached.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::config::ServiceClient;
use crate::routes::state::AppState;
use crate::store::connected_accounts::Held;
use crate::vault::{VaultError, normalize_scopes};

pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Our subject token type for a connected account's id (offline services).
pub const CONNECTED_ACCOUNT_TYPE: &str = "urn:chronos:params:oauth:token-type:connected-account";

/// An OAuth error answer.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error,
            description: description.into(),
            retry_after: None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            Json(json!({ "error": self.error, "error_description": self.description })),
        )
            .into_response();
        let headers = response.headers_mut();
        no_store(headers);
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="chronos""#),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}

fn no_store(headers: &mut HeaderMap) {
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A secret no client has, compared against when the id is unknown, so
/// the time taken does not tell which ids exist.
const NO_SECRET: &[u8] = b"\0no client has this secret, it is never equal\0";

/// The service client the request authenticates as (HTTP Basic; id and
/// secret form-urlencoded inside, RFC 6749 §2.3.1), secrets compared in
/// constant time.
fn authenticate_client<'a>(
    clients: &'a [ServiceClient],
    headers: &HeaderMap,
) -> Option<&'a ServiceClient> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (decode(id), decode(secret));
    let client = clients.iter().find(|c| c.id == id);
    let expected = client.map_or(NO_SECRET, |c| c.secret.expose());
    let equal: bool = secret.as_bytes().ct_eq(expected).into();
    client.filter(|_| equal)
}

pub async fn token(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = exchange(&state, &headers, &body).await;
    let result = match &answer {
        Ok(_) => "issued",
        Err(e) => e.error,
    };
    state.security.metrics.token_exchange(result);
    match answer {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn exchange(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, OAuthError> {
    let clients = &state.settings.vault.service_clients;
    let client = authenticate_client(clients, headers).ok_or(OAuthError {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_client",
        description: "client authentication failed".into(),
        retry_after: None,
    })?;
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
    let param = |name: &str| -> Result<Option<&str>, OAuthError> {
        let mut values = form
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        let first = values.next().filter(|v| !v.is_empty());
        if values.next().is_some() {
            return Err(OAuthError::new(
                "invalid_request",
                format!("{name} is given more than once"),
            ));
        }
        Ok(first)
    };
    let required = |name: &'static str| -> Result<&str, OAuthError> {
        param(name)?.ok_or_else(|| OAuthError::new("invalid_request", format!("{name} is missing")))
    };
    match param("grant_type")? {
        Some(TOKEN_EXCHANGE) => {}
        Some(_) => {
            return Err(OAuthError::new(
                "unsupported_grant_type",
                format!("only {TOKEN_EXCHANGE} is supported"),
            ));
        }
        None => return Err(OAuthError::new("invalid_request", "grant_type is missing")),
    }
    let vault = state.vault.as_ref().ok_or_else(|| {
        OAuthError::new(
            "unsupported_grant_type",
            "the server keeps no provider tokens (PROVIDER_TOKENS=session)",
        )
    })?;
    let subject_token = required("subject_token")?;
    let subject_type = required("subject_token_type")?;
    if param("actor_token")?.is_some() || param("actor_token_type")?.is_some() {
        return Err(OAuthError::new(
            "invalid_request",
            "actor tokens (delegation) are not supported",
        ));
    }
    if let Some(requested) = param("requested_token_type")?
        && requested != ACCESS_TOKEN_TYPE
    {
        return Err(OAuthError::new(
            "invalid_request",
            format!("requested_token_type must be {ACCESS_TOKEN_TYPE}"),
        ));
    }
    let provider = &vault.settings().name;
    if let Some(audience) = param("audience")?
        && audience != provider
    {
        return Err(OAuthError::new(
            "invalid_target",
            format!("no tokens are issued for audience {audience:?} (only {provider:?})"),
        ));
    }
    let hint = param("login_hint")?;
    let held: Held = match subject_type {
        ACCESS_TOKEN_TYPE => {
            let claims = state
                .authority
                .authenticate(subject_token)
                .await
                .map_err(|_| {
                    OAuthError::new(
                        "invalid_request",
                        "the subject token is not valid (malformed, expired, or of an ended session)",
                    )
                })?;
            vault
                .account_of(&claims.sub, hint)
                .await
                .map_err(internal)?
                .ok_or_else(|| {
                    OAuthError::new("invalid_target", "the person has no such connected account")
                })?
        }
        CONNECTED_ACCOUNT_TYPE if client.offline => vault
            .accounts()
            .held(subject_token)
            .await
            .map_err(internal)?
            .ok_or_else(|| OAuthError::new("invalid_target", "no such connected account"))?,
        CONNECTED_ACCOUNT_TYPE => {
            return Err(OAuthError::new(
                "unauthorized_client",
                "this client may not exchange connected accounts (it is not offline)",
            ));
        }
        _ => {
            return Err(OAuthError::new(
                "invalid_request",
                format!(
                    "subject_token_type must be {ACCESS_TOKEN_TYPE} or {CONNECTED_ACCOUNT_TYPE}"
                ),
            ));
        }
    };
    let account = &held.account;
    let scope = match param("scope")? {
        Some(requested) => {
            let granted: Vec<&str> = account.scopes.split_whitespace().collect();
            if let Some(missing) = requested.split_whitespace().find(|s| !granted.contains(s)) {
                return Err(OAuthError::new(
                    "invalid_scope",
                    format!("the account has not granted {missing:?}"),
                ));
            }
            normalize_scopes(requested)
        }
        None => account.scopes.clone(),
    };
    let served = vault.token(&held).await.map_err(|e| match e {
        VaultError::NeedsReauth => OAuthError::new(
            "invalid_grant",
            "the provider refused this account's grant; the person must connect it again",
        ),
        VaultError::NoAccount => OAuthError::new("invalid_target", "no such connected account"),
        VaultError::Unavailable { retry_after } => OAuthError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: "the provider cannot be reached and the stored token has expired".into(),
            retry_after: Some(retry_after),
        },
        VaultError::Internal(e) => internal(e),
    })?;
    let mut response = Json(json!({
        "access_token": served.access_token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": served.expires_in,
        "scope": scope,
    }))
    .into_response();
    no_store(response.headers_mut());
    Ok(response)
}

fn internal(e: impl Into<anyhow::Error>) -> OAuthError {
    let e = e.into();
    if crate::store::database::is_unavailable(e.as_ref()) {
        tracing::error!(error = format!("{e:#}"), "database unavailable");
        return OAuthError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: "the session store is unavailable; try again shortly".into(),
            retry_after: Some(1),
        };
    }
    tracing::error!(error = format!("{e:#}"), "token exchange failed");
    OAuthError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        error: "server_error",
        description: "internal error".into(),
        retry_after: None,
    }
}
