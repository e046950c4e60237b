//! The token vault against a real, certified OpenID provider playing
//! Google (npm oidc-provider: refresh-token rotation, revocation,
//! introspection) and a resource server that accepts only the provider's
//! active access tokens with the calendar scope: connected accounts, the
//! RFC 8693 exchange and every error of it, one refresh per account,
//! disconnect revoking at the provider, the provider's own revocations
//! (RISC), an unreachable provider, Supabase mode, replicas on PostgreSQL.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::google::*;
use crate::support::*;

macro_rules! require_provider {
    () => {
        if let Some(reason) = missing_tooling() {
            return skip_or_fail("token vault test", &reason);
        }
    };
}

#[tokio::test]
async fn a_person_connects_a_second_account_and_a_service_gets_working_tokens_for_both() {
    require_provider!();
    let google = Google::start();
    let app = vault_app(&google, &[]).await;
    let mut browser = Browser::new(&app);
    let signed_in = sign_in(&google, &mut browser, "ann").await;
    let sid_before = browser.cookie("chronos_session").unwrap();
    let listed = accounts(&mut browser).await;
    assert_eq!(listed.len(), 1);
    let own = account_of(&listed, "ann@example.com");
    assert_eq!(own["signs_in"], true);
    assert_eq!(own["needs_reauth"], false);
    assert_eq!(own["provider"], "google");
    assert!(
        own["scopes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == "calendar")
    );

    // A second account: the same person, the same session.
    let connected = connect(&google, &mut browser, "ann-work").await;
    assert_eq!(connected.status(), 200);
    let body: Value = connected.json().await.unwrap();
    assert_eq!(body["user"]["id"], signed_in["user"]["id"]);
    assert_eq!(browser.cookie("chronos_session").unwrap(), sid_before);
    assert_eq!(browser.get("/auth/session").await.status(), 200);
    let listed = accounts(&mut browser).await;
    assert_eq!(listed.len(), 2);
    let work = account_of(&listed, "ann-work@example.com");
    assert_eq!(work["signs_in"], false);

    // A service exchanges the person's token for each account's.
    let subject = browser.cookie("chronos_session").unwrap();
    let (status, default) = exchange_for(&app, &subject, None).await;
    assert_eq!(status, 200, "{default}");
    assert_eq!(default["issued_token_type"], ACCESS);
    assert_eq!(default["token_type"], "Bearer");
    assert!(default["expires_in"].as_u64().unwrap() > 3000);
    let token = default["access_token"].as_str().unwrap();
    assert_eq!(
        google.calendar(token).await,
        (200, serde_json::json!({"sub": "ann"}))
    );
    let work_id = work["id"].as_str().unwrap();
    for hint in [work_id, "ann-work@example.com"] {
        let (status, body) = exchange_for(&app, &subject, Some(hint)).await;
        assert_eq!(status, 200, "{body}");
        let (status, seen) = google
            .calendar(body["access_token"].as_str().unwrap())
            .await;
        assert_eq!((status, &seen["sub"]), (200, &Value::from("ann-work")));
    }
    // Tokens at rest are sealed: the database holds none in clear.
    let db = std::fs::read(app.data_dir.path().join("chronos.db")).unwrap_or_default();
    let wal = std::fs::read(app.data_dir.path().join("chronos.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "an access token in clear in the database"
        );
    }
}

#[tokio::test]
async fn an_expiring_token_is_refreshed_once_for_many_concurrent_exchanges() {
    require_provider!();
    let google = Google::start();
    let app = vault_app(&google, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&google, &mut browser, "bob").await;
    let account = accounts(&mut browser).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let subject = browser.cookie("chronos_session").unwrap();
    let (_, first) = exchange_for(&app, &subject, None).await;
    let before = google.refreshes().await;
    // Within the refresh margin, not yet expired.
    expire_in(&app, &account, 5).await;
    let exchanges: Vec<_> = (0..50)
        .map(|_| {
            let (app, subject) = (&app, subject.clone());
            async move { exchange_for(app, &subject, None).await }
        })
        .collect();
    let answers = futures_util::future::join_all(exchanges).await;
    assert_eq!(
        google.refreshes().await,
        before + 1,
        "one refresh at the provider"
    );
    let fresh = &answers[0].1["access_token"];
    assert_ne!(fresh, &first["access_token"]);
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(
            &body["access_token"], fresh,
            "every exchange gets its token"
        );
    }
    assert_eq!(google.calendar(fresh.as_str().unwrap()).await.0, 200);
    // The rotated refresh token was kept: the next refresh works too.
    expire_in(&app, &account, -1).await;
    let (status, next) = exchange_for(&app, &subject, None).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(google.refreshes().await, before + 2);
    assert_eq!(
        google
            .calendar(next["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn disconnecting_revokes_at_the_provider_and_a_grant_revoked_there_needs_reconnecting() {
    require_provider!();
    let google = Google::start();
    let app = vault_app(&google, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&google, &mut browser, "cat").await;
    assert_eq!(
        connect(&google, &mut browser, "cat-work").await.status(),
        200
    );
    let listed = accounts(&mut browser).await;
    let work = account_of(&listed, "cat-work@example.com")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let own = account_of(&listed, "cat@example.com")["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(google.refresh_active("cat-work").await);

    // Someone else's id, or none: 404 (never 403), on both paths.
    let mut stranger = Browser::new(&app);
    sign_in(&google, &mut stranger, "dan").await;
    let response = delete_api(&mut stranger, &format!("/auth/accounts/{work}")).await;
    assert_eq!(response.status(), 404);
    let response = delete_api(&mut stranger, &format!("/auth/google/accounts/{work}")).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "Google account not found");
    // Without the CSRF token: refused.
    let response = browser
        .send(browser.request(reqwest::Method::DELETE, &format!("/auth/accounts/{work}")))
        .await;
    assert_eq!(response.status(), 403);

    let response = delete_api(&mut browser, &format!("/auth/google/accounts/{work}")).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"success": true, "message": "Google account disconnected"})
    );
    revoked(&google, "cat-work").await;
    assert_eq!(accounts(&mut browser).await.len(), 1);
    let subject = browser.cookie("chronos_session").unwrap();
    let (status, body) = exchange_for(&app, &subject, Some(&work)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_target"))
    );

    // The person revokes the app at the provider: the next refresh is
    // refused for good.
    google.revoke("cat").await;
    expire_in(&app, &own, -1).await;
    let (status, body) = exchange_for(&app, &subject, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
    let listed = accounts(&mut browser).await;
    assert_eq!(account_of(&listed, "cat@example.com")["needs_reauth"], true);
    let (status, _) = exchange_for(&app, &subject, None).await;
    assert_eq!(status, 400, "stays refused until reconnected");

    // Reconnecting makes it active again.
    assert_eq!(connect(&google, &mut browser, "cat").await.status(), 200);
    let listed = accounts(&mut browser).await;
    assert_eq!(
        account_of(&listed, "cat@example.com")["needs_reauth"],
        false
    );
    let (status, body) = exchange_for(&app, &subject, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        google
            .calendar(body["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
}

async fn delete_api(browser: &mut Browser, path: &str) -> reqwest::Response {
    let mut request = browser.request(reqwest::Method::DELETE, path);
    if let Some(token) = browser.cookie("chronos_csrf") {
        request = request.header("X-CSRF-Token", token);
    }
    browser.send(request).await
}

#[tokio::test]
async fn an_account_connected_to_someone_else_is_refused_with_409() {
    require_provider!();
    let google = Google::start();
    let app = vault_app(&google, &[]).await;
    let mut eve = Browser::new(&app);
    sign_in(&google, &mut eve, "eve").await;
    let mut fay = Browser::new(&app);
    sign_in(&google, &mut fay, "fay").await;
    let response = connect(&google, &mut fay, "eve").await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "This account is connected to another user");
    assert_eq!(accounts(&mut fay).await.len(), 1);
    // Connecting needs a session.
    let anonymous = app
        .client()
        .get(app.url("/auth/google/connect"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn tokens_survive_logout_for_an_offline_service_and_every_exchange_error_has_its_code() {
    require_provider!();
    let google = Google::start();
    let app = vault_app(&google, &[("METRICS_BIND", "127.0.0.1:0")]).await;
    let mut browser = Browser::new(&app);
    sign_in(&google, &mut browser, "gus").await;
    let account = accounts(&mut browser).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let subject = browser.cookie("chronos_session").unwrap();
    fn ok<'a>(form: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
        let mut all = vec![("grant_type", EXCHANGE)];
        all.extend_from_slice(form);
        all
    }
    let base = [
        ("subject_token_type", ACCESS),
        ("subject_token", subject.as_str()),
    ];

    // Client authentication.
    let (status, body, headers) = exchange(&app, (SERVICE.0, "wrong"), &ok(&base)).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );
    let no_auth = app
        .client()
        .post(app.url("/oauth/token"))
        .form(&ok(&base))
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status(), 401);
    // Each error, RFC 6749 §5.2's shape, never cached.
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            vec![("grant_type", "client_credentials")],
            "unsupported_grant_type",
        ),
        (ok(&[("subject_token_type", ACCESS)]), "invalid_request"),
        (
            ok(&[
                ("subject_token_type", ACCESS),
                ("subject_token", "not.a.token"),
            ]),
            "invalid_request",
        ),
        (
            ok(&[base[0], base[1], ("audience", "microsoft")]),
            "invalid_target",
        ),
        (
            ok(&[base[0], base[1], ("login_hint", "nobody@example.com")]),
            "invalid_target",
        ),
        (
            ok(&[base[0], base[1], ("scope", "calendar admin")]),
            "invalid_scope",
        ),
        (
            ok(&[base[0], base[1], ("requested_token_type", "urn:x")]),
            "invalid_request",
        ),
        (
            ok(&[
                ("subject_token_type", ACCOUNT),
                ("subject_token", account.as_str()),
            ]),
            "unauthorized_client",
        ),
    ];
    for (form, error) in cases {
        let (status, body, headers) = exchange(&app, SERVICE, &form).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{form:?}: {body}"
        );
        assert!(body["error_description"].is_string());
        assert_eq!(headers["cache-control"], "no-store");
    }
    let (status, body, headers) = exchange(
        &app,
        SERVICE,
        &ok(&[base[0], base[1], ("scope", "calendar")]),
    )
    .await;
    assert_eq!(
        (status, body["scope"].as_str()),
        (200, Some("calendar")),
        "{body}"
    );
    assert_eq!(headers["cache-control"], "no-store");

    // After logout, the person's token is refused; the account is not.
    assert_eq!(browser.post_api("/auth/logout").await.status(), 200);
    let (status, body) = exchange_for(&app, &subject, None).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let offline = [
        ("grant_type", EXCHANGE),
        ("subject_token_type", ACCOUNT),
        ("subject_token", account.as_str()),
    ];
    let (status, body, _) = exchange(&app, OFFLINE, &offline).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        google
            .calendar(body["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
    // Counted by result.
    let (series, _) = app.scrape().await;
    for (result, at_least) in [
        ("issued", 2.0),
        ("invalid_client", 2.0),
        ("invalid_request", 4.0),
        ("invalid_target", 2.0),
        ("unauthorized_client", 1.0),
    ] {
        let key = format!("chronos_token_exchanges_total{{result=\"{result}\"}}");
        assert!(
            series.get(&key).copied().unwrap_or(0.0) >= at_least,
            "{key}: {series:?}"
        );
    }
}

#[tokio::test]
async fn with_the_provider_unreachable_a_valid_token_is_served_and_an_expired_one_is_503() {
    require_provider!();
    let mut google = Google::start();
    let app = vault_app(&google, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&google, &mut browser, "hal").await;
    let account = accounts(&mut browser).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let subject = browser.cookie("chronos_session").unwrap();
    let (_, stored) = exchange_for(&app, &subject, None).await;
    google.stop();
    expire_in(&app, &account, 5).await;
    let (status, body) = exchange_for(&app, &subject, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["access_token"], stored["access_token"],
        "the stored token while it lasts"
    );
    expire_in(&app, &account, -1).await;
    let (status, body, headers) = exchange(
        &app,
        SERVICE,
        &[
            ("grant_type", EXCHANGE),
            ("subject_token_type", ACCESS),
            ("subject_token", subject.as_str()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (503, Some("temporarily_unavailable")),
        "{body}"
    );
    assert!(headers.contains_key("retry-after"));
    // Never disconnected for it.
    let listed = accounts(&mut browser).await;
    assert_eq!(listed[0]["needs_reauth"], false);
}

#[tokio::test]
async fn the_providers_security_events_are_verified_and_acted_on_once() {
    require_provider!();
    let google = Google::start();
    let app = vault_app(&google, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&google, &mut browser, "ivy").await;
    let mut copy = browser.clone_jar();
    let post = |token: String| {
        app.client()
            .post(app.url("/auth/risc"))
            .header("Content-Type", "application/secevent+jwt")
            .body(token)
            .send()
    };
    let subject = serde_json::json!({"subject_type": "iss-sub", "iss": google.url, "sub": "ivy"});
    let event = |kind: &str| serde_json::json!({ format!("https://schemas.openid.net/secevent/{kind}"): {"subject": subject} });
    // Refused: a key the transmitter does not publish, another audience,
    // another issuer, not a token.
    for (body, err) in [
        (
            serde_json::json!({"events": event("oauth/event-type/tokens-revoked"), "forged": true}),
            "invalid_key",
        ),
        (
            serde_json::json!({"events": event("oauth/event-type/tokens-revoked"), "aud": "someone-else"}),
            "invalid_audience",
        ),
        (
            serde_json::json!({"events": event("oauth/event-type/tokens-revoked"), "iss": "https://evil.example"}),
            "invalid_issuer",
        ),
    ] {
        let response = post(google.security_event(body).await).await.unwrap();
        assert_eq!(response.status(), 400);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(answer["err"], err, "{answer}");
    }
    let garbage = post("garbage".into()).await.unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(accounts(&mut browser).await[0]["needs_reauth"], false);

    // The verification event is acknowledged.
    let verification = serde_json::json!({"events": {"https://schemas.openid.net/secevent/risc/event-type/verification": {"state": "abc"}}});
    assert_eq!(
        post(google.security_event(verification).await)
            .await
            .unwrap()
            .status(),
        202
    );

    // Tokens revoked at the provider: the account needs reconnecting.
    let token = google
        .security_event(serde_json::json!({"events": event("oauth/event-type/tokens-revoked"), "jti": "tokens-1"}))
        .await;
    assert_eq!(post(token.clone()).await.unwrap().status(), 202);
    assert_eq!(accounts(&mut browser).await[0]["needs_reauth"], true);
    assert_eq!(
        browser.get("/auth/session").await.status(),
        200,
        "the session goes on"
    );
    // The same token again: accepted, not acted on twice.
    assert_eq!(post(token).await.unwrap().status(), 202);

    // Sessions revoked at the provider: the sessions here end too.
    let token = google
        .security_event(serde_json::json!({"events": event("risc/event-type/sessions-revoked")}))
        .await;
    assert_eq!(post(token).await.unwrap().status(), 202);
    assert_eq!(copy.get("/auth/session").await.status(), 401);
    assert_eq!(copy.post_api("/auth/refresh").await.status(), 401);
}

#[tokio::test]
async fn operators_list_and_remove_accounts_and_removing_a_user_revokes_theirs() {
    require_provider!();
    let google = Google::start();
    let app = vault_app(&google, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&google, &mut browser, "jo").await;
    assert_eq!(
        connect(&google, &mut browser, "jo-work").await.status(),
        200
    );
    let listed = accounts(&mut browser).await;
    let work = account_of(&listed, "jo-work@example.com")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = cli(&app, &["account", "list", "jo@example.com"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        text.contains("jo@example.com") && text.contains("jo-work@example.com"),
        "{text}"
    );

    let out = cli(&app, &["account", "remove", &work], None);
    assert!(out.status.success(), "{out:?}");
    revoked(&google, "jo-work").await;
    assert_eq!(accounts(&mut browser).await.len(), 1);
    let out = cli(&app, &["account", "remove", &work], None);
    assert!(
        !out.status.success(),
        "an account removed twice is an error"
    );

    assert!(google.refresh_active("jo").await);
    let out = cli(&app, &["user", "remove", "jo@example.com"], None);
    assert!(out.status.success(), "{out:?}");
    revoked(&google, "jo").await;
}

/// Waits until the provider says `sub`'s refresh tokens are revoked.
async fn revoked(google: &Google, sub: &str) {
    let started = Instant::now();
    while google.refresh_active(sub).await {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{sub} not revoked"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn two_hundred_exchanges_over_two_replicas_on_postgres_refresh_once() {
    require_provider!();
    let test = "two_hundred_exchanges_over_two_replicas_on_postgres_refresh_once";
    let Some(base) = postgres_url(test) else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let google = Google::start();
    let url = schema.url();
    let a = vault_app(&google, &[("DATABASE_URL", url.as_str())]).await;
    let data_dir = a.data_dir.path().to_string_lossy().to_string();
    let public_url = a.url("");
    let b = vault_app(
        &google,
        &[
            ("DATABASE_URL", url.as_str()),
            ("DATA_DIR", data_dir.as_str()),
            ("PUBLIC_URL", public_url.as_str()),
        ],
    )
    .await;
    let mut browser = Browser::new(&a);
    sign_in(&google, &mut browser, "kim").await;
    let account = accounts(&mut browser).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let subject = browser.cookie("chronos_session").unwrap();
    let before = google.refreshes().await;
    expire_in(&a, &account, 5).await;
    let exchanges: Vec<_> = (0..200)
        .map(|i| {
            let (app, subject) = (if i % 2 == 0 { &a } else { &b }, subject.clone());
            async move { exchange_for(app, &subject, None).await }
        })
        .collect();
    let answers = futures_util::future::join_all(exchanges).await;
    assert_eq!(
        google.refreshes().await,
        before + 1,
        "one refresh at the provider for both replicas"
    );
    let token = &answers[0].1["access_token"];
    for (status, body) in &answers {
        assert_eq!(*status, 200, "{body}");
        assert_eq!(&body["access_token"], token);
    }
    assert_eq!(google.calendar(token.as_str().unwrap()).await.0, 200);
}

#[tokio::test]
async fn with_supabase_the_provider_tokens_of_the_pkce_exchange_are_kept_and_exchanged_alike() {
    require_provider!();
    if let Some(reason) = crate::support::gotrue::missing_tooling() {
        return skip_or_fail("token vault test (Supabase)", &reason);
    }
    let google = Google::start();
    let scopes = "openid email profile offline_access calendar";
    let gotrue = crate::support::gotrue::GoTrue::start(&[
        ("PROVIDER_URL", google.url.as_str()),
        (
            "PROVIDER_REDIRECT_URI",
            &format!("{FRONTEND}/auth/web/callback"),
        ),
        ("PROVIDER_SCOPES", scopes),
    ]);
    let supabase_url = gotrue.url();
    let clients = service_clients();
    let app = spawn_app_with(&[
        ("IDENTITY_PROVIDER", "supabase"),
        ("SUPABASE_URL", supabase_url.as_str()),
        ("SUPABASE_PUBLISHABLE_KEY", crate::support::gotrue::APIKEY),
        ("PROVIDER_TOKENS", "keep"),
        ("PROVIDER_ISSUER", google.url.as_str()),
        ("PROVIDER_CLIENT_ID", "chronos"),
        ("PROVIDER_CLIENT_SECRET", OP_SECRET),
        ("PROVIDER_SCOPES", scopes),
        ("PROVIDER_TOKEN_REFRESH_MARGIN", "10"),
        ("SERVICE_CLIENTS", clients.as_str()),
        ("RATE_LIMIT_AUTH", "100000/minute"),
    ])
    .await;
    // Sign in through Supabase, which signs in at "Google".
    let mut browser = Browser::new(&app);
    let code = crate::support::gotrue::consent_code(&mut browser, "lee").await;
    assert_eq!(browser.exchange(&code).await.status(), 200);

    let listed = accounts(&mut browser).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["email"], "lee@example.com");
    assert_eq!(listed[0]["signs_in"], true);
    let account = listed[0]["id"].as_str().unwrap().to_string();
    let subject = browser.cookie("chronos_session").unwrap();
    let (status, body) = exchange_for(&app, &subject, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        google
            .calendar(body["access_token"].as_str().unwrap())
            .await,
        (200, serde_json::json!({"sub": "lee"}))
    );
    // Refreshed at the provider with the PROVIDER_CLIENT_* client.
    let before = google.refreshes().await;
    expire_in(&app, &account, -1).await;
    let (status, body) = exchange_for(&app, &subject, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(google.refreshes().await, before + 1);
    assert_eq!(
        google
            .calendar(body["access_token"].as_str().unwrap())
            .await
            .0,
        200
    );
}
