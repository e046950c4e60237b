//! The HTTP client of the identity providers (OpenID discovery, keys and
//! tokens; Supabase Auth): every call has a timeout,
//! and every answer a size bound, so a slow or hostile provider can neither
//! hold a request nor fill our memory.

use std::time::Duration;

use http::StatusCode;
use serde::de::DeserializeOwned;

/// How long one call may take, connection included.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest answer read (discovery, JWKS and token responses are a few KiB).
pub const MAX_ANSWER_BYTES: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProviderCallError {
    /// Not reachable, timed out, or cut off.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The answer was larger than [`MAX_ANSWER_BYTES`].
    #[error("answer larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    /// The answer was not the JSON expected.
    #[error("unexpected answer ({status}): {reason}")]
    Unexpected { status: StatusCode, reason: String },
}

/// An answer: its status and bounded body.
pub struct Answer {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as `T`, whatever the status.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ProviderCallError> {
        serde_json::from_slice(&self.body).map_err(|e| ProviderCallError::Unexpected {
            status: self.status,
            reason: format!("not the JSON expected: {e}"),
        })
    }

    /// The body as `T` when the status is 2xx.
    pub fn ok_json<T: DeserializeOwned>(&self) -> Result<T, ProviderCallError> {
        if !self.status.is_success() {
            return Err(ProviderCallError::Unexpected {
                status: self.status,
                reason: "not a success".into(),
            });
        }
        self.json()
    }
}

/// The outbound HTTP client (rustls, no redirects followed).
#[derive(Clone)]
pub struct ProviderClient {
    client: reqwest::Client,
}

impl ProviderClient {
    pub fn new() -> Result<Self, ProviderCallError> {
        let client = reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .connect_timeout(CALL_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("chronos-auth/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                ProviderCallError::Unreachable(format!("cannot build the HTTP client: {e}"))
            })?;
        Ok(Self { client })
    }

    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.get(url)
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.post(url)
    }

    /// Sends and reads the answer, within the time and size bounds.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<Answer, ProviderCallError> {
        let mut response = request
            .send()
            .await
            .map_err(|e| ProviderCallError::Unreachable(without_url(&e)))?;
        let status = response.status();
        let headers = response.headers().clone();
        if response
            .content_length()
            .is_some_and(|n| n > MAX_ANSWER_BYTES as u64)
        {
            return Err(ProviderCallError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| ProviderCallError::Unreachable(without_url(&e)))?
        {
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                return Err(ProviderCallError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// An error's text without its URL, which may carry a token or code in
/// its query (the log must never see one).
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else if error.is_body() || error.is_decode() {
        "answer cut off"
    } else {
        "request failed"
    };
    let host = error
        .url()
        .and_then(|u| u.host_str().map(String::from))
        .unwrap_or_default();
    format!("{kind} ({host})")
}
