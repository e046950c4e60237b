//! JSON request bodies that answer bad input in our `{"detail"}` shape.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. The envelope has already bounded its size and read time;
/// here a missing or malformed body becomes 422 with a safe detail (serde's
/// messages can quote the input, which may be a code, so only the kind of
/// problem is reported).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|_| ApiError::Unprocessable("Invalid request body".into()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::Unprocessable("Request body required".into()));
        }
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| {
            let detail = if e.is_syntax() || e.is_eof() {
                "Request body is not valid JSON".to_string()
            } else {
                // "missing field `code`" names our field, never the input.
                let message = e.to_string();
                match message.split_once(" at line") {
                    Some((what, _)) if what.starts_with("missing field") => {
                        format!("Invalid request body: {what}")
                    }
                    _ => "Invalid request body: unexpected field types".to_string(),
                }
            };
            ApiError::Unprocessable(detail)
        })
    }
}
