//! One error type for the HTTP layer. Every variant maps to one status and
//! one `{"detail": ...}` body, in the single `match` below; the cause of a
//! 5xx goes to the log, never to the client.

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

use crate::store::database::is_unavailable;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: a request the API cannot act on, with a safe explanation.
    #[error("{0}")]
    BadRequest(&'static str),
    /// 400 `Authentication failed`: bad, expired or reused code.
    #[error("Authentication failed")]
    AuthenticationFailed,
    /// 401 `Not authenticated`.
    #[error("Not authenticated")]
    NotAuthenticated,
    /// 401 `Refresh failed`.
    #[error("Refresh failed")]
    RefreshFailed,
    /// 403 `Invalid origin`.
    #[error("Invalid origin")]
    InvalidOrigin,
    /// 403 `Blocked by Fetch Metadata policy`.
    #[error("Blocked by Fetch Metadata policy")]
    FetchMetadata,
    /// 401 with a reason: a credential (a DBSC proof) was refused.
    #[error("{0}")]
    Refused(&'static str),
    /// 403 with a reason: the request is not allowed as it is.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 403 `Invalid CSRF token`.
    #[error("Invalid CSRF token")]
    InvalidCsrf,
    /// 404 `Not Found`.
    #[error("Not Found")]
    NotFound,
    /// 404 for a session id that is not one of the caller's.
    #[error("Session not found")]
    SessionNotFound,
    /// 404 for an id that is not one of the caller's (a connected account).
    #[error("{0}")]
    NotTheirs(&'static str),
    /// 409: the request conflicts with what another person holds.
    #[error("{0}")]
    Conflict(&'static str),
    /// 405 `Method Not Allowed`.
    #[error("Method Not Allowed")]
    MethodNotAllowed,
    /// 408: the body did not arrive in time.
    #[error("Request body timeout")]
    RequestTimeout,
    /// 413: the body is over the limit.
    #[error("Request body too large")]
    PayloadTooLarge,
    /// 422: the body is missing or not the JSON we expect.
    #[error("{0}")]
    Unprocessable(String),
    /// 429 with `Retry-After`; the body (`Rate limit exceeded: ...`) comes
    /// pre-rendered from the limiter.
    #[error("Rate limit exceeded")]
    RateLimited {
        body: bytes::Bytes,
        retry_after: u64,
    },
    /// 431: the request headers are over the limit.
    #[error("Request header fields too large")]
    HeadersTooLarge,
    /// 502 `External service error`: a provider we depend on failed (the
    /// upstream backend's status and words).
    #[error("External service error")]
    ProviderUnavailable(anyhow::Error),
    /// 502 `Bad gateway`: a proxied upstream refused or reset the request.
    #[error("Bad gateway")]
    BadGateway,
    /// 504 `Gateway timeout`: a proxied upstream sent no response head in time.
    #[error("Gateway timeout")]
    GatewayTimeout,
    /// 503 with `Retry-After`: a provider we depend on asks us to slow down.
    #[error("The identity provider is busy; try again shortly")]
    ProviderBusy { retry_after: u64 },
    /// 503 with `Retry-After`: the database cannot be reached (PostgreSQL
    /// down or its pool exhausted for 2 s); nothing was changed.
    #[error("The session store is unavailable; try again shortly")]
    StoreUnavailable,
    /// 500: anything unexpected. The cause is logged, not sent.
    #[error("Internal Server Error")]
    Internal(anyhow::Error),
}

impl ApiError {
    pub fn internal(cause: impl Into<anyhow::Error>) -> Self {
        Self::Internal(cause.into())
    }

    /// A failure of the session authority or a sign-in method: `rejected`
    /// for a refused code or token (its meaning differs per endpoint), 500
    /// for the rest.
    pub fn from_auth(error: crate::authority::AuthError, rejected: ApiError) -> Self {
        use crate::authority::AuthError;
        match error {
            AuthError::Rejected => rejected,
            AuthError::Unavailable(e) => Self::ProviderUnavailable(e),
            AuthError::Busy { retry_after } => Self::ProviderBusy { retry_after },
            AuthError::Internal(e) => Self::Internal(e),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::AuthenticationFailed => StatusCode::BAD_REQUEST,
            Self::NotAuthenticated | Self::RefreshFailed | Self::Refused(_) => {
                StatusCode::UNAUTHORIZED
            }
            Self::InvalidOrigin | Self::FetchMetadata | Self::InvalidCsrf | Self::Forbidden(_) => {
                StatusCode::FORBIDDEN
            }
            Self::NotFound | Self::SessionNotFound | Self::NotTheirs(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::ProviderUnavailable(_) | Self::BadGateway => StatusCode::BAD_GATEWAY,
            Self::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            Self::ProviderBusy { .. } | Self::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let this = match self {
            Self::Internal(cause) if is_unavailable(cause.as_ref()) => {
                tracing::error!(error = format!("{cause:#}"), "database unavailable");
                Self::StoreUnavailable
            }
            other => other,
        };
        let status = this.status();
        match &this {
            Self::Internal(cause) => {
                tracing::error!(error = format!("{cause:#}"), "request failed")
            }
            Self::ProviderUnavailable(cause) => {
                tracing::warn!(
                    error = format!("{cause:#}"),
                    "identity provider unavailable"
                )
            }
            _ => {}
        }
        if let Self::RateLimited { body, retry_after } = this {
            let mut response = Response::new(axum::body::Body::from(body));
            *response.status_mut() = status;
            let headers = response.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            return response;
        }
        let retry_after = match &this {
            Self::ProviderBusy { retry_after } => Some(*retry_after),
            Self::StoreUnavailable => Some(1),
            _ => None,
        };
        let mut response = (status, Json(json!({ "detail": this.to_string() }))).into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        response
    }
}
