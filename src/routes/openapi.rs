//! `GET /openapi.json`: the API as an OpenAPI 3.1 document
//! (`docs/openapi.json`, compiled in). A test validates the running
//! server's answers against it, so the two cannot drift apart.
//!
//! With `PUBLIC_URL` set, the document's `servers` names it (its path
//! included, where a proxy serves the API under one); otherwise it is the
//! repository's document as it is. With `PROXY_ROUTES`, each prefix is
//! listed under `paths` as `PREFIX` and `PREFIX/{path}`, both referring to
//! the document's `components.pathItems` (the answers a proxied route adds
//! to its upstream's: 400, 401, 403, 413, 429, 502, 504).

use axum::body::Bytes;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use crate::config::proxy::ProxyRoutes;

const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// The document this server serves, built once at start-up.
pub fn document(public_url: Option<&str>, routes: &ProxyRoutes) -> Bytes {
    let served = public_url.and_then(|url| with_server(DOCUMENT, url));
    let served = match with_proxied(served.as_deref().unwrap_or(DOCUMENT), routes) {
        Some(document) => Some(document),
        None => served,
    };
    match served {
        Some(document) => Bytes::from(document),
        None => Bytes::from_static(DOCUMENT.as_bytes()),
    }
}

/// `document` with the proxied prefixes first in its `paths` (none: `None`).
fn with_proxied(document: &str, routes: &ProxyRoutes) -> Option<String> {
    if routes.is_empty() {
        return None;
    }
    const KEY: &str = "\n  \"paths\": {";
    let at = document.find(KEY)? + KEY.len();
    let mut prefixes: Vec<&str> = routes.iter().map(|route| route.prefix.as_str()).collect();
    prefixes.sort_unstable();
    let mut entries = String::new();
    for prefix in prefixes {
        for (path, item) in [
            (prefix.to_string(), "ProxiedPrefix"),
            (format!("{prefix}/{{path}}"), "ProxiedSubpath"),
        ] {
            let path = serde_json::to_string(&path).ok()?;
            entries.push_str(&format!(
                "\n    {path}: {{\n      \"$ref\": \"#/components/pathItems/{item}\"\n    }},"
            ));
        }
    }
    Some(format!("{}{entries}{}", &document[..at], &document[at..]))
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
        let served = document(Some("http://localhost:5174/api"), &ProxyRoutes::default());
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
        assert_eq!(document(None, &ProxyRoutes::default()), DOCUMENT.as_bytes());
    }

    #[test]
    fn each_proxied_prefix_is_listed_twice_and_the_document_stays_valid() {
        let routes =
            crate::config::proxy::routes("/todos=http://a/t,/calendar=http://a/c").unwrap();
        let served: Value = serde_json::from_slice(&document(None, &routes)).unwrap();
        let paths = served["paths"].as_object().unwrap();
        let original: Value = serde_json::from_str(DOCUMENT).unwrap();
        assert_eq!(
            paths.len(),
            original["paths"].as_object().unwrap().len() + 4
        );
        for (path, item) in [
            ("/calendar", "ProxiedPrefix"),
            ("/calendar/{path}", "ProxiedSubpath"),
            ("/todos", "ProxiedPrefix"),
            ("/todos/{path}", "ProxiedSubpath"),
        ] {
            let reference = format!("#/components/pathItems/{item}");
            assert_eq!(paths[path]["$ref"], reference.as_str());
            assert!(served.pointer(&reference[1..]).is_some());
        }
    }
}
