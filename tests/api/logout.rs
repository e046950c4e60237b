//! `POST /auth/logout`, as the seed page says.

use crate::support::*;

const SEED_BODY: &str = r#"{"message":"Logged out"}"#;

async fn assert_logged_out(response: reqwest::Response, names: [&str; 3]) {
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "application/json",
        "JSON body"
    );
    let cookies = set_cookies(response.headers());
    for name in names {
        let line = cookies
            .get(name)
            .unwrap_or_else(|| panic!("{name} is cleared"));
        assert_cleared(line);
    }
    assert_eq!(cookies.len(), 3, "exactly the three cookies: {cookies:?}");
    assert_eq!(response.text().await.unwrap(), SEED_BODY);
}

const DEFAULT_NAMES: [&str; 3] = ["chronos_session", "chronos_refresh", "chronos_csrf"];

#[tokio::test]
async fn logout_without_any_cookie_still_answers_200_and_clears_all_three() {
    let app = spawn_app().await;
    let response = app
        .client()
        .post(app.url("/auth/logout"))
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_logged_out(response, DEFAULT_NAMES).await;
}

#[tokio::test]
async fn logout_with_garbage_cookies_answers_200() {
    let app = spawn_app().await;
    let response = app
        .logout_with(
            "chronos_session=eyJhbG.garbage.x; chronos_refresh=%%%; chronos_csrf=",
            None,
        )
        .await;
    assert_logged_out(response, DEFAULT_NAMES).await;
}

#[tokio::test]
async fn logout_ignores_bodies_even_malformed_json_and_query_parameters() {
    let app = spawn_app().await;
    for (content_type, body) in [
        ("application/json", "{not json"),
        ("application/json", r#"{"everything": true}"#),
        ("text/plain", "hello"),
        ("application/x-www-form-urlencoded", "a=b"),
    ] {
        let response = app
            .client()
            .post(app.url("/auth/logout?foo=bar&scope"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_logged_out(response, DEFAULT_NAMES).await;
    }
}

#[tokio::test]
async fn logout_is_idempotent() {
    let app = spawn_app().await;
    for _ in 0..3 {
        let response = app.logout().await;
        assert_logged_out(response, DEFAULT_NAMES).await;
    }
}

#[tokio::test]
async fn logout_clears_cookies_by_their_configured_names() {
    let app = spawn_app_with(&[
        ("SESSION_COOKIE_NAME", "__Host-s"),
        ("REFRESH_COOKIE_NAME", "__Host-r"),
        ("CSRF_COOKIE_NAME", "__Host-c"),
        ("COOKIE_SECURE", "true"),
    ])
    .await;
    let response = app.logout().await;
    assert_logged_out(response, ["__Host-s", "__Host-r", "__Host-c"]).await;
}

/// The clearing line must carry exactly the attributes the cookie was set
/// with. The CSRF cookie is set by `/auth/csrf`; session and refresh get the
/// same scope attributes plus HttpOnly.
async fn compare_set_and_clear(vars: &[(&str, &str)], expect: &[&str]) {
    let app = spawn_app_with(vars).await;
    let issued = app.csrf().await;
    let set = set_cookies(issued.headers());
    let csrf_name = vars
        .iter()
        .find(|(k, _)| *k == "CSRF_COOKIE_NAME")
        .map_or("chronos_csrf", |(_, v)| v);
    let set_line = set[csrf_name].clone();
    assert!(!cookie_value(&set_line).is_empty());

    let cleared = set_cookies(app.logout().await.headers());
    assert_eq!(
        scope_attributes(&set_line),
        scope_attributes(&cleared[csrf_name])
    );
    let mut expected: Vec<String> = expect.iter().map(|s| s.to_ascii_lowercase()).collect();
    expected.sort();
    assert_eq!(scope_attributes(&set_line), expected, "{set_line}");
    for (name, line) in &cleared {
        if name != csrf_name {
            let mut with_http_only = expected.clone();
            with_http_only.push("httponly".into());
            with_http_only.sort();
            assert_eq!(scope_attributes(line), with_http_only, "{line}");
        }
    }
}

#[tokio::test]
async fn cookies_are_cleared_with_the_attributes_they_were_set_with_by_default() {
    compare_set_and_clear(&[], &["Path=/", "SameSite=Lax"]).await;
}

#[tokio::test]
async fn cookies_are_cleared_with_domain_secure_and_strict_when_configured() {
    compare_set_and_clear(
        &[
            ("COOKIE_DOMAIN", "example.test"),
            ("COOKIE_SECURE", "true"),
            ("COOKIE_SAMESITE", "strict"),
            ("SESSION_COOKIE_NAME", "my_s"),
            ("REFRESH_COOKIE_NAME", "my_r"),
            ("CSRF_COOKIE_NAME", "my_c"),
        ],
        &["Path=/", "Domain=example.test", "Secure", "SameSite=Strict"],
    )
    .await;
}

#[tokio::test]
async fn cookie_domain_is_on_the_session_and_refresh_cookies_set_at_sign_in_and_on_their_clearing()
{
    let app = spawn_app_with(&[("COOKIE_DOMAIN", "example.test")]).await;
    create_user(&app, "ann@example.com").await;
    let mut browser = Browser::new(&app);
    let code = browser.obtain_code("ann@example.com", PASSWORD).await;
    let signed_in = browser.exchange(&code).await;
    assert_eq!(signed_in.status(), 200);
    let set = set_cookies(signed_in.headers());
    let refreshed = browser.refresh().await;
    assert_eq!(refreshed.status(), 200);
    let rewritten = set_cookies(refreshed.headers());
    let cleared = set_cookies(browser.logout().await.headers());
    for name in DEFAULT_NAMES {
        let line = &set[name];
        assert!(!cookie_value(line).is_empty(), "{line}");
        let mut expected = vec!["domain=example.test", "path=/", "samesite=lax"];
        if name != "chronos_csrf" {
            expected.push("httponly");
        }
        expected.sort_unstable();
        assert_eq!(scope_attributes(line), expected, "set at sign-in: {line}");
        assert_eq!(
            scope_attributes(&rewritten[name]),
            expected,
            "rewritten by refresh"
        );
        assert_cleared(&cleared[name]);
        assert_eq!(
            scope_attributes(&cleared[name]),
            expected,
            "cleared with the same Domain: {}",
            cleared[name]
        );
    }
}

/// `GET /auth/logout/provider` with the embedded provider (no
/// `end_session_endpoint`): the session ends as with `POST /auth/logout`,
/// and the browser goes straight to the allow-listed page.
#[tokio::test]
async fn logout_at_the_provider_ends_the_session_here_and_redirects_only_to_allowed_pages() {
    let app = spawn_app_with(&[("OAUTH_REDIRECT_URLS", "https://app.example/bye")]).await;
    create_user(&app, "ann@example.com").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("ann@example.com", PASSWORD).await;
    let copy = on(&app, &browser);

    // Not allowed: refused, and nothing ended.
    let refused = browser
        .get("/auth/logout/provider?redirectTo=https://evil.example/")
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(error_detail(refused).await, "Invalid redirect URL");
    assert_eq!(browser.session().await.status(), 200);
    // A cross-site subresource (an image) cannot sign anyone out.
    let image = browser
        .request(reqwest::Method::GET, "/auth/logout/provider")
        .header("Sec-Fetch-Site", "cross-site")
        .header("Sec-Fetch-Mode", "no-cors")
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 403);
    assert_eq!(browser.session().await.status(), 200);

    let out = browser.get("/auth/logout/provider").await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "http://localhost:5173/login");
    let cleared = set_cookies(out.headers());
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert_cleared(&cleared[name]);
    }
    // Ended on the server, not only in this browser.
    let mut copy = copy;
    assert_eq!(copy.session().await.status(), 401);
    assert_eq!(copy.refresh().await.status(), 401);

    // An allow-listed target.
    let mut again = Browser::new(&app);
    again.sign_in("ann@example.com", PASSWORD).await;
    let out = again
        .get("/auth/logout/provider?redirectTo=https://app.example/bye")
        .await;
    assert_eq!(out.status(), 303);
    assert_eq!(out.headers()["location"], "https://app.example/bye");
    // Without a session: straight to the page, cookies cleared all the same.
    let anonymous = Browser::new(&app).get("/auth/logout/provider").await;
    assert_eq!(anonymous.status(), 303);
    assert_eq!(set_cookies(anonymous.headers()).len(), 3);
}
