//! `GET /openapi.json`: the API as an OpenAPI 3.1 document
//! (`docs/openapi.json`, compiled in). A test validates the running
//! server's answers against it, so the two cannot drift apart.
//!
//! With `PUBLIC_URL` set, the document's `servers` names it (its path
//! included, where a proxy serves the API under one); otherwise it is the
//! repository's document as it is.

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The document this server serves, built once at start-up.
pub fn document(public_url: Option<&str>) -> Bytes {
    match public_url.and_then(|url| with_server(DOCUMENT, url)) {
        Some(document) => Bytes::from(document),
        None => Bytes::from_static(DOCUMENT.as_bytes()),
    }
}

/// `document` with its top-level `servers` array replaced by `url` alone;
/// the rest of the text (and so its order and layout) stays as it is.
fn with_server(document: &str, url: &str) -> Option<String> {
    const KEY: &str = "\n  \"servers\": [";
    let start = document.find(KEY)? + KEY.len() - 1;
    let end = start + document[start..].find("\n  ]")? + "\n  ]".len();
    let servers = serde_json::json!([{ "url": url, "description": "this server (PUBLIC_URL)" }]);
    let servers = serde_json::to_string_pretty(&servers)
        .ok()?
        .replace('\n', "\n  ");
    Some(format!(
        "{}{servers}{}",
        &document[..start],
        &document[end..]
    ))
}

pub async fn serve(document: Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        document,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn public_url_becomes_the_only_server_and_nothing_else_changes() {
        let served = document(Some("http://localhost:5174/api"));
        let mut served: Value = serde_json::from_slice(&served).unwrap();
        let mut original: Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(
            served["servers"],
            serde_json::json!([{
                "url": "http://localhost:5174/api",
                "description": "this server (PUBLIC_URL)"
            }])
        );
        served.as_object_mut().unwrap().remove("servers");
        original.as_object_mut().unwrap().remove("servers");
        assert_eq!(served, original);
        assert_eq!(document(None), DOCUMENT.as_bytes());
    }
}
