//! Origin, CORS preflight, Fetch Metadata, CSRF and the headers every
//! response carries.

use crate::support::*;

const FRONTEND: &str = "http://localhost:5173";

async fn detail(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["detail"].as_str().unwrap().to_string()
}

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
    assert_eq!(detail(response).await, "Invalid origin");

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
    assert_eq!(detail(response).await, "Blocked by Fetch Metadata policy");

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
async fn logout_needs_no_csrf_token_by_default() {
    let app = spawn_app().await;
    let response = app.logout_with("chronos_session=abc", None).await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn with_logout_require_csrf_the_double_submit_token_is_checked() {
    let app = spawn_app_with(&[("LOGOUT_REQUIRE_CSRF", "true")]).await;
    let token = app.csrf_token().await;
    let other = app.csrf_token().await;

    let missing = app.logout_with("chronos_session=abc", None).await;
    assert_eq!(missing.status(), 403);
    assert!(missing.headers().get("set-cookie").is_none());
    assert_eq!(detail(missing).await, "Invalid CSRF token");

    let no_cookie = app.logout_with("chronos_session=abc", Some(&token)).await;
    assert_eq!(no_cookie.status(), 403, "header without cookie");

    let mismatch = app
        .logout_with(
            &format!("chronos_session=abc; chronos_csrf={token}"),
            Some(&other),
        )
        .await;
    assert_eq!(mismatch.status(), 403, "header and cookie differ");

    let forged = format!("{}x", &token[..token.len() - 1]);
    let forged_pair = app
        .logout_with(
            &format!("chronos_session=abc; chronos_csrf={forged}"),
            Some(&forged),
        )
        .await;
    assert_eq!(forged_pair.status(), 403, "matching but forged");

    let ok = app
        .logout_with(
            &format!("chronos_session=abc; chronos_csrf={token}"),
            Some(&token),
        )
        .await;
    assert_eq!(ok.status(), 200);

    // A request without session or refresh cookie has nothing to forge.
    let anonymous = app.logout().await;
    assert_eq!(anonymous.status(), 200);
}

#[tokio::test]
async fn a_token_signed_by_another_server_is_refused() {
    let ours = spawn_app_with(&[("LOGOUT_REQUIRE_CSRF", "true")]).await;
    let theirs = spawn_app().await;
    let foreign = theirs.csrf_token().await;
    let response = ours
        .logout_with(
            &format!("chronos_session=abc; chronos_csrf={foreign}"),
            Some(&foreign),
        )
        .await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn the_generated_csrf_secret_survives_a_restart() {
    let app = spawn_app_with(&[("LOGOUT_REQUIRE_CSRF", "true")]).await;
    let token = app.csrf_token().await;
    let app = app.restart().await;
    let response = app
        .logout_with(
            &format!("chronos_session=abc; chronos_csrf={token}"),
            Some(&token),
        )
        .await;
    assert_eq!(response.status(), 200);
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
    assert_eq!(detail(response).await, "Not Found");
    let response = app.call("GET", "/auth/logout").await;
    assert_eq!(response.status(), 405);
    assert_eq!(detail(response).await, "Method Not Allowed");
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

/// A signed-in browser of its own.
async fn signed_in(app: &TestApp, email: &str) -> Browser {
    create_user(app, email).await;
    let mut browser = Browser::new(app);
    browser.sign_in(email, PASSWORD).await;
    browser
}

/// `POST path` with these cookies and this `X-CSRF-Token`.
async fn post_as(
    browser: &Browser,
    path: &str,
    jar: &std::collections::BTreeMap<String, String>,
    token: &str,
) -> u16 {
    let cookie = jar
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("; ");
    browser
        .client
        .post(browser.url(path))
        .header("Cookie", cookie)
        .header("X-CSRF-Token", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn a_csrf_token_works_only_in_the_session_it_was_issued_for() {
    let app = spawn_app_with(&[("LOGOUT_REQUIRE_CSRF", "true")]).await;
    let alice = signed_in(&app, "alice@example.com").await;
    let bob = signed_in(&app, "bob@example.com").await;
    let alices_token = alice.cookie("chronos_csrf").unwrap();

    // Alice's token, planted as both cookie and header next to Bob's
    // session cookies: refused on every state-changing route.
    let mut planted = bob.jar.clone();
    planted.insert("chronos_csrf".into(), alices_token.clone());
    for path in ["/auth/refresh", "/auth/logout"] {
        assert_eq!(
            post_as(&bob, path, &planted, &alices_token).await,
            403,
            "{path}"
        );
    }
    // A token minted with no cookies at all (anonymous) is no better.
    let anonymous = app.csrf_token().await;
    planted.insert("chronos_csrf".into(), anonymous.clone());
    assert_eq!(
        post_as(&bob, "/auth/refresh", &planted, &anonymous).await,
        403
    );
    // Bob's own token works.
    let bobs_token = bob.cookie("chronos_csrf").unwrap();
    assert_eq!(
        post_as(&bob, "/auth/refresh", &bob.jar, &bobs_token).await,
        200
    );
    // So does a token from /auth/csrf asked with Alice's cookies, for Alice.
    let mut alice = alice;
    assert_eq!(alice.csrf().await.status(), 200);
    let fresh = alice.cookie("chronos_csrf").unwrap();
    assert_ne!(fresh, alices_token);
    assert_eq!(
        post_as(&alice, "/auth/refresh", &alice.jar, &fresh).await,
        200
    );
}

#[tokio::test]
async fn a_csrf_token_from_before_a_logout_is_worthless_afterwards() {
    let app = spawn_app().await;
    let mut browser = signed_in(&app, "ann@example.com").await;
    let old_token = browser.cookie("chronos_csrf").unwrap();
    assert_eq!(browser.logout().await.status(), 200);
    browser.sign_in("ann@example.com", PASSWORD).await;
    let mut jar = browser.jar.clone();
    jar.insert("chronos_csrf".into(), old_token.clone());
    assert_eq!(
        post_as(&browser, "/auth/refresh", &jar, &old_token).await,
        403
    );
    // The new session's token works.
    assert_eq!(browser.refresh().await.status(), 200);
}

#[tokio::test]
async fn the_web_clients_refresh_works_with_an_expired_access_token_or_none() {
    // 3 s, not 1 (whole-second `iat`/`exp`): each token refreshed below is
    // still alive for the session check that follows it.
    let app = spawn_app_with(&[("ACCESS_TOKEN_TTL_SECONDS", "3")]).await;
    let mut browser = signed_in(&app, "ann@example.com").await;
    let session: serde_json::Value = browser.session().await.json().await.unwrap();
    wait_until_expired(&session).await;
    assert_eq!(browser.session().await.status(), 401);
    // What the upstream client does on a 401: GET /auth/csrf, then refresh
    // with the token it read from the cookie.
    assert_eq!(browser.csrf().await.status(), 200);
    assert_eq!(browser.refresh().await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
    // Without the session cookie at all, the refresh cookie names the session.
    browser.jar.remove("chronos_session");
    assert_eq!(browser.csrf().await.status(), 200);
    assert_eq!(browser.refresh().await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
}
