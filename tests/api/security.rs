//! Origin, CORS preflight, Fetch Metadata, and the headers every response
//! carries (CSRF tokens: csrf.rs).

use crate::support::*;

const FRONTEND: &str = "http://localhost:5173";

#[tokio::test]
async fn a_state_changing_request_from_a_foreign_origin_is_refused() {
    let app = spawn_app().await;
    let response = app
        .post_from_origin("/auth/logout", "https://evil.example")
        .await;
    assert_eq!(response.status(), 403);
    assert!(
        response.headers().get("set-cookie").is_none(),
        "a forged logout clears nothing"
    );
    assert_eq!(error_detail(response).await, "Invalid origin");

    for origin in ["null", "http://localhost:5174", "http://localhost"] {
        let response = app.post_from_origin("/auth/logout", origin).await;
        assert_eq!(response.status(), 403, "{origin}");
    }
}

#[tokio::test]
async fn configured_origins_are_allowed_with_credentials() {
    let app = spawn_app_with(&[
        ("FRONTEND_URL", "https://app.example.test"),
        ("CORS_ORIGINS", "https://admin.example.test"),
        ("DESKTOP_PROXY_ORIGINS", "http://127.0.0.1:1420"),
    ])
    .await;
    for origin in [
        "https://app.example.test",
        "https://admin.example.test",
        "http://127.0.0.1:1420",
    ] {
        let response = app.post_from_origin("/auth/logout", origin).await;
        assert_eq!(response.status(), 200, "{origin}");
        assert_eq!(response.headers()["access-control-allow-origin"], origin);
        assert_eq!(
            response.headers()["access-control-allow-credentials"],
            "true"
        );
    }
    // The default frontend is no longer allowed once FRONTEND_URL moves.
    let response = app.post_from_origin("/auth/logout", FRONTEND).await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_preflight_from_the_frontend_is_answered_with_credentials() {
    let app = spawn_app().await;
    let response = app
        .preflight("/auth/logout", FRONTEND, Some("content-type, x-csrf-token"))
        .await;
    assert!(response.status().is_success());
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], FRONTEND);
    assert_eq!(h["access-control-allow-credentials"], "true");
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    assert!(
        methods.contains("POST") && methods.contains("DELETE"),
        "{methods}"
    );
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for needed in ["content-type", "accept", "x-request-id", "x-csrf-token"] {
        assert!(allowed.contains(needed), "{needed} in {allowed}");
    }
    assert!(h.contains_key("x-request-id"));
    assert_eq!(h["x-frame-options"], "DENY");
}

#[tokio::test]
async fn a_preflight_from_a_foreign_origin_gets_no_permission() {
    let app = spawn_app().await;
    let response = app
        .preflight("/auth/logout", "https://evil.example", None)
        .await;
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn a_cross_site_request_carrying_a_session_cookie_is_blocked_by_fetch_metadata() {
    let app = spawn_app().await;
    let response = logout_fetched(&app, Some("chronos_session=abc"), "cross-site").await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        error_detail(response).await,
        "Blocked by Fetch Metadata policy"
    );

    for site in ["same-origin", "same-site", "none"] {
        let response = logout_fetched(&app, Some("chronos_refresh=abc"), site).await;
        assert_eq!(response.status(), 200, "{site}");
    }
    // Without an auth cookie there is nothing to protect.
    let response = logout_fetched(&app, None, "cross-site").await;
    assert_eq!(response.status(), 200);
}

/// A logout with these cookies, as a browser sends it with `Sec-Fetch-Site`.
async fn logout_fetched(app: &TestApp, cookie: Option<&str>, site: &str) -> reqwest::Response {
    let mut request = app.client().post(app.url("/auth/logout"));
    if let Some(cookie) = cookie {
        request = request.header("Cookie", cookie);
    }
    request.header("Sec-Fetch-Site", site).send().await.unwrap()
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_a_request_id() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "1/minute")]).await;
    let client = app.client();
    let requests = [
        client.get(app.url("/health")),
        client.get(app.url("/auth/csrf")),
        client.get(app.url("/auth/csrf")), // 429
        client.get(app.url("/no/such/route")),
        client.put(app.url("/health")),
        client
            .post(app.url("/auth/logout"))
            .header("Origin", "https://evil.example"),
    ];
    let mut statuses = Vec::new();
    for request in requests {
        let response = request.send().await.unwrap();
        statuses.push(response.status().as_u16());
        let h = response.headers();
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "strict-origin-when-cross-origin");
        assert_eq!(
            h["permissions-policy"],
            "geolocation=(), microphone=(), camera=()"
        );
        assert!(!h["x-request-id"].is_empty());
        assert!(h.get("strict-transport-security").is_none(), "development");
    }
    assert_eq!(statuses, [200, 200, 429, 404, 405, 403]);
}

#[tokio::test]
async fn auth_responses_are_never_cached() {
    let app = spawn_app().await;
    for (method, path) in [
        ("GET", "/auth/csrf"),
        ("POST", "/auth/logout"),
        ("GET", "/auth/nope"),
    ] {
        let response = app.call(method, path).await;
        assert_eq!(response.headers()["cache-control"], "no-store", "{path}");
    }
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_answer_json() {
    let app = spawn_app().await;
    let response = app.call("GET", "/does-not-exist").await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_detail(response).await, "Not Found");
    let response = app.call("GET", "/auth/logout").await;
    assert_eq!(response.status(), 405);
    assert_eq!(error_detail(response).await, "Method Not Allowed");
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_an_odd_one_replaced() {
    let app = spawn_app().await;
    let health_with_request_id = |id: &'static str| {
        app.client()
            .get(app.url("/health"))
            .header("X-Request-ID", id)
            .send()
    };
    let response = health_with_request_id("trace-42.abc").await.unwrap();
    assert_eq!(response.headers()["x-request-id"], "trace-42.abc");
    let response = health_with_request_id("<script>alert(1)</script>")
        .await
        .unwrap();
    let id = response.headers()["x-request-id"].to_str().unwrap();
    assert_ne!(id, "<script>alert(1)</script>");
    assert_eq!(id.len(), 36, "a fresh UUID: {id}");
}

#[tokio::test]
async fn production_adds_strict_transport_security() {
    let app = spawn_app_with(&[
        ("ENVIRONMENT", "production"),
        ("CSRF_SECRET_KEY", "0123456789abcdef0123456789abcdef-prod"),
    ])
    .await;
    let response = app.health().await;
    assert!(
        response.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    let cleared = set_cookies(app.logout().await.headers());
    assert!(cleared["__Host-session"].contains("Secure"));
}
