//! Sign-in through an OpenID Connect provider, against a scriptable
//! provider on loopback: the happy path, and every way a provider can
//! answer wrongly; none of those may create a session or an account.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::support::fake_oidc::*;
use crate::support::*;

async fn oidc_app(fake: &FakeProvider, extra: &[(&str, &str)]) -> TestApp {
    let mut vars = vec![
        ("IDENTITY_PROVIDER", "oidc"),
        ("OIDC_ISSUER", fake.issuer.as_str()),
        ("OIDC_CLIENT_ID", CLIENT_ID),
        ("OIDC_CLIENT_SECRET", CLIENT_SECRET),
        ("RATE_LIMIT_AUTH", "10000/minute"),
    ];
    vars.extend_from_slice(extra);
    spawn_app_with(&vars).await
}

/// `GET /auth/google/login`: the authorize URL's parameters.
async fn start(browser: &mut Browser) -> std::collections::HashMap<String, String> {
    let url = reqwest::Url::parse(&browser.login_url(None).await).unwrap();
    url.query_pairs().into_owned().collect()
}

async fn detail(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(json!({}));
    (
        status,
        body["detail"].as_str().unwrap_or_default().to_string(),
    )
}

async fn no_account_and_no_session(app: &TestApp, browser: &mut Browser) {
    assert!(app.identity.accounts.list().await.unwrap().is_empty());
    assert!(browser.cookie("chronos_session").is_none());
    assert_eq!(browser.session().await.status(), 401);
}

#[tokio::test]
async fn a_person_signs_in_through_the_provider_and_gets_our_own_session() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(
        &fake,
        &[("OIDC_AUTH_PARAMS", "access_type=offline&prompt=consent")],
    )
    .await;
    let mut browser = Browser::new(&app);
    let params = start(&mut browser).await;
    assert_eq!(params["response_type"], "code");
    assert_eq!(params["client_id"], CLIENT_ID);
    assert_eq!(
        params["redirect_uri"],
        "http://localhost:5173/auth/web/callback"
    );
    assert_eq!(params["scope"], "openid email profile");
    assert_eq!(params["code_challenge_method"], "S256");
    assert_eq!(params["access_type"], "offline");
    assert_eq!(params["prompt"], "consent");
    assert!(params["state"].len() >= 16 && params["nonce"].len() >= 16);

    fake.answer(&fake.claims(&params["nonce"]), Some("op-refresh-1"));
    let response = browser.exchange("the-code").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ann@example.com");
    assert_eq!(body["user"]["name"], "Ann Example");
    assert_eq!(body["user"]["avatar_url"], "https://example.com/ann.png");
    // Our own tokens in the cookies, never the provider's.
    for value in browser.jar.values() {
        assert!(!value.contains("op-refresh") && !value.contains("op-access"));
    }
    assert!(!body.to_string().contains("op-"));
    assert_eq!(browser.session().await.status(), 200);
    assert_eq!(browser.verify().await.status(), 200);
    assert_eq!(browser.refresh().await.status(), 200);

    // The code went to the token endpoint with our verifier and
    // client_secret_basic (id and secret form-encoded, RFC 6749 §2.3.1).
    let (headers, form) = fake.script().token_requests.last().cloned().unwrap();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], "the-code");
    assert_eq!(
        form["redirect_uri"],
        "http://localhost:5173/auth/web/callback"
    );
    assert_eq!(
        chronos::secrets::pkce_challenge(&form["code_verifier"]),
        params["code_challenge"]
    );
    let basic = headers["authorization"]
        .to_str()
        .unwrap()
        .strip_prefix("Basic ")
        .unwrap();
    let decoded = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(basic)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(decoded, "chronos-test:s3cret+with+spaces%26symbols");
    assert!(!form.contains_key("client_secret"));

    // The provider's refresh token is kept sealed, never in clear.
    let db = std::fs::read(app.data_dir.path().join("chronos.db")).unwrap();
    let wal = std::fs::read(app.data_dir.path().join("chronos.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(!bytes.windows(12).any(|w| w == b"op-refresh-1"));
    }

    // The next sign-in refreshes the profile, on the same account.
    let mut again = Browser::new(&app);
    let params = start(&mut again).await;
    let mut claims = fake.claims(&params["nonce"]);
    claims["name"] = json!("Ann Renamed");
    fake.answer(&claims, None);
    let body: Value = again.exchange("code-2").await.json().await.unwrap();
    assert_eq!(body["user"]["name"], "Ann Renamed");
    assert_eq!(app.identity.accounts.list().await.unwrap().len(), 1);
}

#[tokio::test]
async fn logout_revokes_the_providers_refresh_token_off_the_response_path_with_retries() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(&fake, &[]).await;
    let mut browser = Browser::new(&app);
    let params = start(&mut browser).await;
    fake.answer(&fake.claims(&params["nonce"]), Some("op-refresh-7"));
    assert_eq!(browser.exchange("code").await.status(), 200);
    // The provider is briefly down: the first two revocation calls fail.
    fake.script().revoke_failures = 2;
    let started = Instant::now();
    let logout = browser.logout().await;
    assert_eq!(logout.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "logout does not wait"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.script().revoked.is_empty() {
        assert!(Instant::now() < deadline, "the revocation never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake.script().revoked, ["op-refresh-7"]);
    assert_eq!(fake.script().revoke_failures, 0, "it was retried");
}

/// Signs in through the fake provider with these ID-token claims (their
/// nonce set to the flow's); the callback's status.
async fn sign_in_with(fake: &FakeProvider, browser: &mut Browser, mut claims: Value) -> u16 {
    let params = start(browser).await;
    claims["nonce"] = json!(params["nonce"]);
    fake.answer(&claims, Some("op-refresh"));
    browser.exchange("code").await.status().as_u16()
}

#[tokio::test]
async fn with_oidc_require_verified_email_false_emails_the_provider_does_not_verify_sign_in_as_entra_id_needs()
 {
    let fake = FakeProvider::start().await;
    // Entra ID says nothing of email_verified; some providers say false.
    let unsaid = |sub: &str, email: &str| {
        let mut claims = fake.claims("");
        let o = claims.as_object_mut().unwrap();
        o.remove("email_verified");
        o.insert("sub".into(), json!(sub));
        o.insert("email".into(), json!(email));
        claims
    };
    let mut said_false = fake.claims("");
    said_false["sub"] = json!("user-2");
    said_false["email"] = json!("bob@example.com");
    said_false["email_verified"] = json!(false);

    // By default both are refused.
    let strict = oidc_app(&fake, &[("OIDC_ALLOWED_EMAIL_DOMAINS", "example.com")]).await;
    for claims in [unsaid("user-1", "ann@example.com"), said_false.clone()] {
        let mut browser = Browser::new(&strict);
        assert_eq!(sign_in_with(&fake, &mut browser, claims).await, 400);
        no_account_and_no_session(&strict, &mut browser).await;
    }

    // README's Entra ID example: both sign in, the allow-list still holds.
    let app = oidc_app(
        &fake,
        &[
            ("OIDC_REQUIRE_VERIFIED_EMAIL", "false"),
            ("OIDC_ALLOWED_EMAIL_DOMAINS", "example.com"),
        ],
    )
    .await;
    for (claims, email) in [
        (unsaid("user-1", "ann@example.com"), "ann@example.com"),
        (said_false, "bob@example.com"),
    ] {
        let mut browser = Browser::new(&app);
        assert_eq!(sign_in_with(&fake, &mut browser, claims).await, 200);
        let session: Value = browser.session().await.json().await.unwrap();
        assert_eq!(session["user"]["email"], email);
        assert_eq!(browser.verify().await.status(), 200);
    }
    let mut outsider = Browser::new(&app);
    let claims = unsaid("user-3", "eve@elsewhere.example");
    assert_eq!(sign_in_with(&fake, &mut outsider, claims).await, 400);
    assert_eq!(app.identity.accounts.list().await.unwrap().len(), 2);
}

#[tokio::test]
async fn with_oidc_revoke_on_logout_false_logout_ends_our_session_and_keeps_the_providers_refresh_token()
 {
    let fake = FakeProvider::start().await;
    // Logs a person in and out of `app`; the copy of their cookies must be
    // refused at once either way.
    let sign_in_and_out = async |app: &TestApp, refresh: &str| {
        let mut browser = Browser::new(app);
        let params = start(&mut browser).await;
        fake.answer(&fake.claims(&params["nonce"]), Some(refresh));
        assert_eq!(browser.exchange("code").await.status(), 200);
        let mut copy = browser.clone_jar();
        assert_eq!(browser.logout().await.status(), 200);
        assert_eq!(copy.session().await.status(), 401);
        assert_eq!(copy.refresh().await.status(), 401);
    };
    // The default revokes at the provider within moments (the delivery
    // runs every second): the wait below is long enough to see it.
    let revoking = oidc_app(&fake, &[]).await;
    sign_in_and_out(&revoking, "op-refresh-revoked").await;
    let deadline = Instant::now() + Duration::from_secs(3);
    while fake.script().revoked.is_empty() {
        assert!(Instant::now() < deadline, "the default did not revoke");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let keeping = oidc_app(&fake, &[("OIDC_REVOKE_ON_LOGOUT", "false")]).await;
    sign_in_and_out(&keeping, "op-refresh-kept").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(fake.script().revoked, ["op-refresh-revoked"]);
    assert_eq!(db_count(&keeping, "SELECT COUNT(*) FROM outbox").await, 0);
}

#[tokio::test]
async fn a_bad_id_token_never_creates_a_session_or_an_account() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(&fake, &[("OIDC_ALLOWED_EMAIL_DOMAINS", "example.com")]).await;
    let hs_key = EncodingKey::from_secret(rsa_jwk(RSA_KID).to_string().as_bytes());
    type Forge = Box<dyn Fn(&FakeProvider, &str) -> String>;
    let cases: Vec<(&str, Forge)> = vec![
        (
            "wrong nonce",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["nonce"] = json!("another-nonce");
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        (
            "no nonce",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c.as_object_mut().unwrap().remove("nonce");
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        (
            "wrong iss",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["iss"] = json!("https://evil.example");
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        (
            "wrong aud",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["aud"] = json!("another-client");
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        (
            "two audiences, no azp",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["aud"] = json!([CLIENT_ID, "another-client"]);
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        (
            "azp of another client",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["azp"] = json!("another-client");
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        (
            "expired",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["exp"] = json!(chronos::unix_now() - 600);
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        (
            "issued in the future",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["iat"] = json!(chronos::unix_now() + 3600);
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        ("alg none", Box::new(|f, n| unsigned(&f.claims(n)))),
        (
            "HS256 with the public key as secret",
            Box::new(move |f, n| {
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(RSA_KID.into());
                sign(&f.claims(n), header, &hs_key)
            }),
        ),
        (
            "unknown kid",
            Box::new(|f, n| sign(&f.claims(n), rs256("rotated-away"), &rsa_key())),
        ),
        (
            "tampered payload",
            Box::new(|f, n| {
                let token = sign(&f.claims(n), rs256(RSA_KID), &rsa_key());
                let mut parts: Vec<String> = token.split('.').map(String::from).collect();
                let mut c = f.claims(n);
                c["sub"] = json!("admin");
                parts[1] = B64.encode(c.to_string());
                parts.join(".")
            }),
        ),
        (
            "unverified email",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["email_verified"] = json!(false);
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        (
            "email outside the allowed domains",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["email"] = json!("mallory@evil.example");
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        (
            "Workspace domain outside the allowed ones",
            Box::new(|f, n| {
                let mut c = f.claims(n);
                c["hd"] = json!("evil.example");
                sign(&c, rs256(RSA_KID), &rsa_key())
            }),
        ),
        ("not a JWT", Box::new(|_, _| "garbage".to_string())),
    ];
    for (what, forge) in cases {
        let mut browser = Browser::new(&app);
        let params = start(&mut browser).await;
        fake.answer_raw(forge(&fake, &params["nonce"]), Some("op-refresh"));
        let (status, text) = detail(browser.exchange("code").await).await;
        assert_eq!(
            (status, text.as_str()),
            (400, "Authentication failed"),
            "{what}"
        );
        no_account_and_no_session(&app, &mut browser).await;
    }
}

#[tokio::test]
async fn an_unknown_key_refetches_the_keys_at_most_once_a_minute() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(&fake, &[]).await;
    let mut browser = Browser::new(&app);
    start(&mut browser).await;
    let fetched_at_discovery = fake.script().jwks_fetches;
    for _ in 0..3 {
        let mut browser = Browser::new(&app);
        let params = start(&mut browser).await;
        fake.answer_raw(
            sign(&fake.claims(&params["nonce"]), rs256("new-key"), &rsa_key()),
            None,
        );
        assert_eq!(browser.exchange("code").await.status(), 400);
    }
    assert_eq!(fake.script().jwks_fetches, fetched_at_discovery + 1);
    // A key the provider rotated in is found at the next refetch.
    fake.script().jwks = json!({"keys": [rsa_jwk("new-key")]});
    let app = oidc_app(&fake, &[]).await;
    let mut browser = Browser::new(&app);
    let params = start(&mut browser).await;
    fake.answer_raw(
        sign(&fake.claims(&params["nonce"]), rs256("new-key"), &rsa_key()),
        None,
    );
    assert_eq!(browser.exchange("code").await.status(), 200);
}

#[tokio::test]
async fn the_token_endpoints_refusal_is_400_and_its_failures_are_502() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(&fake, &[]).await;
    for (reply, expected) in [
        (
            TokenReply::Status(400, json!({"error": "invalid_grant"})),
            (400, "Authentication failed"),
        ),
        (
            TokenReply::Status(401, json!({"error": "invalid_client"})),
            (400, "Authentication failed"),
        ),
        (
            TokenReply::Status(500, json!({"error": "server_error"})),
            (502, "External service error"),
        ),
        (
            TokenReply::Status(200, json!({"no": "tokens"})),
            (400, "Authentication failed"),
        ),
        (TokenReply::Huge, (502, "External service error")),
    ] {
        let mut browser = Browser::new(&app);
        start(&mut browser).await;
        fake.script().token = reply;
        assert_eq!(
            detail(browser.exchange("code").await).await,
            (expected.0, expected.1.to_string())
        );
        no_account_and_no_session(&app, &mut browser).await;
    }
    // A provider that does not answer at all: 502 within the call timeout.
    let mut browser = Browser::new(&app);
    start(&mut browser).await;
    fake.script().token = TokenReply::Hang;
    let started = Instant::now();
    let (status, _) = detail(browser.exchange("code").await).await;
    assert_eq!(status, 502);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_state_that_does_not_match_the_flow_is_refused() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(&fake, &[]).await;
    let mut browser = Browser::new(&app);
    let params = start(&mut browser).await;
    fake.answer(&fake.claims(&params["nonce"]), None);
    let response = browser
        .send(
            browser
                .request(reqwest::Method::POST, "/auth/web/callback")
                .json(&json!({"code": "code", "state": "not-the-flows-state"})),
        )
        .await;
    assert_eq!(response.status(), 400);
    no_account_and_no_session(&app, &mut browser).await;
}

#[tokio::test]
async fn the_email_may_come_from_userinfo_for_the_same_person_only() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(&fake, &[]).await;
    let without_email = |f: &FakeProvider, nonce: &str| {
        let mut c = f.claims(nonce);
        let o = c.as_object_mut().unwrap();
        o.remove("email");
        o.remove("email_verified");
        c
    };
    // Userinfo speaks of someone else: refused.
    fake.script().userinfo =
        json!({"sub": "someone-else", "email": "eve@example.com", "email_verified": true});
    let mut browser = Browser::new(&app);
    let params = start(&mut browser).await;
    fake.answer(&without_email(&fake, &params["nonce"]), None);
    assert_eq!(browser.exchange("code").await.status(), 400);
    no_account_and_no_session(&app, &mut browser).await;
    // The same person: the email comes from there.
    fake.script().userinfo =
        json!({"sub": "user-1", "email": "ann@example.com", "email_verified": true});
    let mut browser = Browser::new(&app);
    let params = start(&mut browser).await;
    fake.answer(&without_email(&fake, &params["nonce"]), None);
    let body: Value = browser.exchange("code").await.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ann@example.com");
}

#[tokio::test]
async fn with_the_provider_down_at_start_the_server_serves_and_sign_in_is_502_until_it_returns() {
    // Reserve an address, start Chronos against it while nothing listens.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = reserved.local_addr().unwrap();
    drop(reserved);
    let issuer = format!("http://{addr}");
    let app = spawn_app_with(&[
        ("IDENTITY_PROVIDER", "oidc"),
        ("OIDC_ISSUER", issuer.as_str()),
        ("OIDC_CLIENT_ID", CLIENT_ID),
    ])
    .await;
    assert_eq!(app.health().await.status(), 200);
    let mut browser = Browser::new(&app);
    let response = browser.start_login(None).await;
    assert_eq!(
        detail(response).await,
        (502, "External service error".to_string())
    );
    assert_eq!(browser.session().await.status(), 401);
    assert_eq!(browser.logout().await.status(), 200);

    // The provider comes up on that address: sign-in works again.
    let fake = FakeProvider::start_at(addr).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let params = loop {
        let response = browser.start_login(None).await;
        if response.status() == 200 {
            let body: Value = response.json().await.unwrap();
            let url = reqwest::Url::parse(body["redirectUrl"].as_str().unwrap()).unwrap();
            break url
                .query_pairs()
                .into_owned()
                .collect::<std::collections::HashMap<_, _>>();
        }
        assert!(Instant::now() < deadline, "discovery never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    fake.answer(&fake.claims(&params["nonce"]), None);
    assert_eq!(browser.exchange("code").await.status(), 200);
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let fake = FakeProvider::start().await;
    fake.script().discovery["issuer"] = json!("https://evil.example");
    let app = oidc_app(&fake, &[]).await;
    let mut browser = Browser::new(&app);
    assert_eq!(browser.start_login(None).await.status(), 502);
}

/// Posts a back-channel logout token as the provider would.
async fn backchannel(app: &TestApp, token: &str) -> reqwest::Response {
    app.backchannel_logout(&format!("logout_token={}", urlencode(token)))
        .await
}

async fn signed_in(app: &TestApp, fake: &FakeProvider, sid: &str) -> Browser {
    let mut browser = Browser::new(app);
    let params = start(&mut browser).await;
    let mut claims = fake.claims(&params["nonce"]);
    claims["sid"] = json!(sid);
    fake.answer(&claims, None);
    assert_eq!(browser.exchange("code").await.status(), 200);
    browser
}

#[tokio::test]
async fn a_back_channel_logout_ends_the_sessions_of_that_provider_session() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(&fake, &[]).await;
    let mut laptop = signed_in(&app, &fake, "op-session-A").await;
    let mut phone = signed_in(&app, &fake, "op-session-B").await;

    let token = sign(
        &fake.logout_token(Some("op-session-A"), Some("user-1"), "jti-1"),
        logout_header(),
        &rsa_key(),
    );
    let response = backchannel(&app, &token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    assert_eq!(laptop.session().await.status(), 401);
    assert_eq!(laptop.verify().await.status(), 401);
    assert_eq!(laptop.refresh().await.status(), 401);
    assert_eq!(
        phone.session().await.status(),
        200,
        "another provider session"
    );

    // The same token again: a replay, refused.
    let replay = backchannel(&app, &token).await;
    assert_eq!(replay.status(), 400);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_request");

    // `sub` alone: every session of the person.
    let token = sign(
        &fake.logout_token(None, Some("user-1"), "jti-2"),
        logout_header(),
        &rsa_key(),
    );
    assert_eq!(backchannel(&app, &token).await.status(), 200);
    assert_eq!(phone.session().await.status(), 401);
}

fn logout_header() -> Header {
    let mut header = rs256(RSA_KID);
    header.typ = Some("logout+jwt".into());
    header
}

#[tokio::test]
async fn a_bad_logout_token_is_refused_with_400_and_ends_nothing() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(&fake, &[]).await;
    let mut browser = signed_in(&app, &fake, "op-session-A").await;
    let now = chronos::unix_now();
    let good = || fake.logout_token(Some("op-session-A"), Some("user-1"), "jti-x");
    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut no_events = good();
    no_events.as_object_mut().unwrap().remove("events");
    cases.push(("no events", sign(&no_events, logout_header(), &rsa_key())));
    let mut with_nonce = good();
    with_nonce["nonce"] = json!("n");
    cases.push(("a nonce", sign(&with_nonce, logout_header(), &rsa_key())));
    let mut no_jti = good();
    no_jti.as_object_mut().unwrap().remove("jti");
    cases.push(("no jti", sign(&no_jti, logout_header(), &rsa_key())));
    let mut neither = good();
    let o = neither.as_object_mut().unwrap();
    o.remove("sid");
    o.remove("sub");
    cases.push((
        "neither sid nor sub",
        sign(&neither, logout_header(), &rsa_key()),
    ));
    let mut wrong_aud = good();
    wrong_aud["aud"] = json!("another-client");
    cases.push((
        "another audience",
        sign(&wrong_aud, logout_header(), &rsa_key()),
    ));
    let mut wrong_iss = good();
    wrong_iss["iss"] = json!("https://evil.example");
    cases.push((
        "another issuer",
        sign(&wrong_iss, logout_header(), &rsa_key()),
    ));
    let mut old = good();
    old["iat"] = json!(now - 3600);
    old["exp"] = json!(now - 3480);
    cases.push(("old", sign(&old, logout_header(), &rsa_key())));
    let mut id_typed = rs256(RSA_KID);
    id_typed.typ = Some("JWT+id".into());
    cases.push((
        "typed as something else",
        sign(&good(), id_typed, &rsa_key()),
    ));
    cases.push(("unsigned", unsigned(&good())));
    cases.push(("garbage", "a.b.c".into()));
    for (what, token) in cases {
        let response = backchannel(&app, &token).await;
        assert_eq!(response.status(), 400, "{what}");
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
    let empty = app.backchannel_logout("").await;
    assert_eq!(empty.status(), 400);
    assert_eq!(browser.session().await.status(), 200, "nothing ended");
}

#[tokio::test]
async fn many_back_channel_logouts_at_once_are_not_rate_limited() {
    let fake = FakeProvider::start().await;
    let app = oidc_app(&fake, &[("RATE_LIMIT_AUTH", "2/minute")]).await;
    for n in 0..5 {
        let token = sign(
            &fake.logout_token(Some(&format!("op-session-{n}")), None, &format!("jti-{n}")),
            logout_header(),
            &rsa_key(),
        );
        assert_eq!(backchannel(&app, &token).await.status(), 200, "logout {n}");
    }
}
