//! CSRF tokens (`GET /auth/csrf`, the double-submit `X-CSRF-Token`): the
//! cookie a script reads, the check on logout when `LOGOUT_REQUIRE_CSRF`
//! asks for it, tokens bound to the session they were issued for, and the
//! web client's refresh after a 401.

use crate::support::*;

#[tokio::test]
async fn the_csrf_endpoint_sets_a_script_readable_cookie() {
    let app = spawn_app_with(&[("CSRF_TOKEN_TTL_SECONDS", "1234")]).await;
    let response = app.csrf().await;
    assert_eq!(response.status(), 200);
    let line = set_cookies(response.headers())["chronos_csrf"].clone();
    assert!(!line.to_ascii_lowercase().contains("httponly"), "{line}");
    assert_eq!(max_age(&line), Some(1234));
    let token = cookie_value(&line);
    assert_eq!(token.split('.').count(), 2, "payload.signature: {token}");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"ok": true}));
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
    assert_eq!(error_detail(missing).await, "Invalid CSRF token");

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
