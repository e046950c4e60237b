//! The access token in the session cookie: what `GET /auth/session` and
//! `/auth/verify` refuse (missing, garbage, tampered, foreign, dated in the
//! future, expired), a third party's odd cookie bytes beside it, and the
//! JWKS that verifies it.

use serde_json::Value;

use crate::support::*;

const EMAIL: &str = "ann@example.com";

#[tokio::test]
async fn the_session_check_refuses_missing_garbage_tampered_and_foreign_tokens() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let token = browser.cookie("chronos_session").unwrap();

    let check = |cookie: Option<String>| {
        let app = &app;
        async move {
            let response = match cookie {
                Some(cookie) => app.get_with_cookie("/auth/session", &cookie).await,
                None => app.session().await,
            };
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["detail"].as_str().map(String::from))
        }
    };
    let unauthenticated = (401, Some("Not authenticated".to_string()));
    assert_eq!(check(None).await, unauthenticated);
    assert_eq!(
        check(Some("chronos_session=garbage".into())).await,
        unauthenticated
    );

    // Flip one character of the payload: the signature no longer matches.
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload = parts[1].to_string();
    let flipped = if payload.ends_with('A') { "B" } else { "A" };
    payload.replace_range(payload.len() - 1.., flipped);
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    assert_eq!(
        check(Some(format!("chronos_session={tampered}"))).await,
        unauthenticated
    );

    // A token signed by another server (another key).
    let other = spawn_app().await;
    create_user(&other, EMAIL).await;
    let mut elsewhere = Browser::new(&other);
    elsewhere.sign_in(EMAIL, PASSWORD).await;
    let foreign = elsewhere.cookie("chronos_session").unwrap();
    assert_eq!(
        check(Some(format!("chronos_session={foreign}"))).await,
        unauthenticated
    );

    assert_eq!(check(Some(format!("chronos_session={token}"))).await.0, 200);
}

#[tokio::test]
async fn an_access_token_dated_in_the_future_is_refused_even_with_a_valid_signature() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let token = browser.cookie("chronos_session").unwrap();
    // The server's own key (as someone holding DATA_DIR could use it).
    let keys = chronos::authority::tokens::AccessTokens::load_or_generate(
        app.data_dir.path(),
        &app.url(""),
        3600,
        100,
    )
    .unwrap();
    let genuine = keys.verify(&token, chronos::unix_now()).unwrap();
    let now = chronos::unix_now();
    let forge = |iat: u64, nbf: Option<u64>| {
        let mut claims = (*genuine).clone();
        // (What verification consumed is not kept with the claims.)
        claims.iss = app.url("");
        claims.aud = chronos::authority::tokens::AUDIENCE.into();
        claims.jti = "forged".into();
        claims.iat = iat;
        claims.nbf = nbf;
        claims.exp = now + 7200;
        keys.sign(&claims).unwrap()
    };
    for (what, forged) in [
        ("iat an hour ahead", forge(now + 3600, None)),
        ("nbf ten minutes ahead", forge(now, Some(now + 600))),
    ] {
        for path in ["/auth/session", "/auth/verify"] {
            let response = app
                .get_with_cookie(path, &format!("chronos_session={forged}"))
                .await;
            assert_eq!(response.status(), 401, "{what} on {path}");
        }
    }
    // The same forgery dated now passes: the refusal is about the dates.
    let response = app
        .get_with_cookie(
            "/auth/session",
            &format!("chronos_session={}", forge(now, Some(now))),
        )
        .await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_third_party_cookie_with_odd_bytes_does_not_sign_anyone_out() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let ours = browser.cookie_header();
    let with_odd = |path: &str| {
        let mut header = b"prefs=caf\xc3\xa9; tracker=\xff\xfe; ".to_vec();
        header.extend_from_slice(ours.as_bytes());
        header.extend_from_slice(b"; lang=\xe9t\xe9");
        app.client()
            .get(app.url(path))
            .header(
                "Cookie",
                reqwest::header::HeaderValue::from_bytes(&header).unwrap(),
            )
            .send()
    };
    let session = with_odd("/auth/session").await.unwrap();
    assert_eq!(session.status(), 200);
    let body: Value = session.json().await.unwrap();
    assert_eq!(body["user"]["email"], EMAIL);
    assert_eq!(with_odd("/auth/verify").await.unwrap().status(), 200);
    assert_eq!(with_odd("/auth/sessions").await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_expired_access_token_is_refused() {
    // 3 s, not 1: `iat` and `exp` are whole seconds and `exp <= now` is
    // refused, so a 1 s token minted late in a second is dead at once; a
    // 3 s one lives at least 2 s, ample for the checks made right after.
    let app = spawn_app_with(&[("ACCESS_TOKEN_TTL_SECONDS", "3")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let signed_in = browser.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(browser.session().await.status(), 200);
    wait_until_expired(&signed_in).await;
    assert_eq!(browser.session().await.status(), 401);
    // The refresh token still works and brings a fresh access token.
    assert_eq!(browser.refresh().await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
}

#[tokio::test]
async fn the_jwks_verifies_the_session_token() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let token = browser.cookie("chronos_session").unwrap();
    let jwks: jsonwebtoken::jwk::JwkSet = app.jwks().await.json().await.unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::EdDSA);
    let jwk = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("kid in JWKS");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_audience(&["chronos"]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &validation)
        .unwrap()
        .claims;
    for claim in ["sub", "email", "sid", "jti", "iat", "exp"] {
        assert!(!claims[claim].is_null(), "{claim}");
    }
    assert_eq!(claims["email"], EMAIL);
}
