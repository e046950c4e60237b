//! Sign-in through the embedded provider and the session lifecycle:
//! code exchange, session check, refresh rotation, reuse detection.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;

const EMAIL: &str = "ann@example.com";

#[tokio::test]
async fn a_person_signs_in_through_the_page_and_gets_a_session() {
    let app = spawn_app().await;
    let user = create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);

    let start = browser.start_login(None).await;
    assert_eq!(start.status(), 200);
    let flow_cookie = set_cookies(start.headers())["chronos_flow"].clone();
    assert!(flow_cookie.contains("HttpOnly"), "{flow_cookie}");
    let redirect_url = start.json::<Value>().await.unwrap()["redirectUrl"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        redirect_url.starts_with(&app.url("/auth/signin?")),
        "{redirect_url}"
    );
    assert!(redirect_url.contains("code_challenge_method=S256"));

    let page = browser.get(&redirect_url).await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("'nonce-"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(html.contains("name=\"email\"") && html.contains("name=\"password\""));

    let posted = browser
        .submit(
            &redirect_url,
            "signin",
            &[("email", "Ann@Example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(posted.status(), 303);
    let location = posted.headers()["location"].to_str().unwrap().to_string();
    assert!(
        location.starts_with("http://localhost:5173/auth/web/callback?code="),
        "{location}"
    );
    let code = code_from_location(&posted);

    let exchanged = browser.exchange(&code).await;
    assert_eq!(exchanged.status(), 200);
    let cookies = set_cookies(exchanged.headers());
    for name in ["chronos_session", "chronos_refresh"] {
        let line = &cookies[name];
        assert!(line.contains("HttpOnly"), "{line}");
        assert_eq!(max_age(line), Some(604_800), "{line}");
    }
    assert!(!cookies["chronos_csrf"].contains("HttpOnly"));
    assert_cleared(&cookies["chronos_flow"]);
    let body: Value = exchanged.json().await.unwrap();
    assert_eq!(body["user"]["id"], user.id.as_str());
    assert_eq!(body["user"]["email"], EMAIL);
    assert_eq!(body["user"]["name"], "Test User");
    assert!(body["user"]["avatar_url"].is_null());
    assert!(body["user"]["created_at"].as_str().unwrap().ends_with('Z'));
    let expires_at = body["expires_at"].as_u64().unwrap();
    let now = chronos::unix_now();
    assert!(
        expires_at > now + 3500 && expires_at <= now + 3600,
        "{expires_at}"
    );

    let session = browser.session().await;
    assert_eq!(session.status(), 200);
    let session: Value = session.json().await.unwrap();
    assert_eq!(session, body);
}

#[tokio::test]
async fn a_wrong_password_and_an_unknown_email_get_the_same_answer() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut answers = Vec::new();
    for (email, password) in [(EMAIL, "wrong password"), ("nobody@example.com", PASSWORD)] {
        let mut browser = Browser::new(&app);
        let url = browser.login_url(None).await;
        let posted = browser
            .submit(&url, "signin", &[("email", email), ("password", password)])
            .await;
        let status = posted.status();
        let html = posted.text().await.unwrap();
        let error = html
            .split("role=\"alert\">")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .unwrap()
            .to_string();
        answers.push((status, error));
    }
    assert_eq!(answers[0], answers[1]);
    assert_eq!(answers[0].0, 401);
    assert_eq!(answers[0].1, "Invalid email or password.");
}

#[tokio::test]
async fn a_code_works_once() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let code = browser.obtain_code(EMAIL, PASSWORD).await;
    assert_eq!(browser.exchange(&code).await.status(), 200);
    // Start a fresh flow in the same browser and replay the old code.
    browser.start_login(None).await;
    let replay = browser.exchange(&code).await;
    assert_eq!(replay.status(), 400);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["detail"], "Authentication failed");
}

#[tokio::test]
async fn a_replayed_code_ends_the_session_it_created() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let code = browser.obtain_code(EMAIL, PASSWORD).await;
    assert_eq!(browser.exchange(&code).await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
    let mut attacker = Browser::new(&app);
    attacker.start_login(None).await;
    assert_eq!(attacker.exchange(&code).await.status(), 400);
    assert_eq!(browser.session().await.status(), 401);
}

#[tokio::test]
async fn a_valid_code_from_a_browser_that_did_not_start_the_flow_is_useless() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut victim = Browser::new(&app);
    let code = victim.obtain_code(EMAIL, PASSWORD).await;

    // No flow cookie at all.
    let mut stranger = Browser::new(&app);
    assert_eq!(stranger.exchange(&code).await.status(), 400);
    // A flow of its own: its verifier does not match the code's challenge.
    let mut attacker = Browser::new(&app);
    attacker.start_login(None).await;
    assert_eq!(attacker.exchange(&code).await.status(), 400);
    assert_eq!(attacker.session().await.status(), 401);
}

#[tokio::test]
async fn redirect_targets_must_be_allow_listed() {
    let app = spawn_app_with(&[("OAUTH_REDIRECT_URLS", "http://localhost:5173/elsewhere")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    for bad in [
        "https://evil.example/steal",
        "http://localhost:5173/elsewhere/../x",
        "http://localhost:5173.evil.example/elsewhere",
    ] {
        let response = browser.start_login(Some(bad)).await;
        assert_eq!(response.status(), 400, "{bad}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["detail"], "Invalid redirect URL");
    }
    let ok = browser
        .start_login(Some("http://localhost:5173/elsewhere"))
        .await;
    assert_eq!(ok.status(), 200);
    let url = ok.json::<Value>().await.unwrap()["redirectUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let posted = browser
        .submit(&url, "signin", &[("email", EMAIL), ("password", PASSWORD)])
        .await;
    assert!(
        posted.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("http://localhost:5173/elsewhere?code=")
    );
    // The sign-in page itself refuses a target that is not allowed.
    let forged = url.replace(
        "http%3A%2F%2Flocalhost%3A5173%2Felsewhere",
        "https%3A%2F%2Fevil.example%2F",
    );
    assert_ne!(forged, url);
    assert_eq!(browser.get(&forged).await.status(), 400);
}

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
async fn refresh_rotates_the_refresh_token_and_rewrites_all_three_cookies() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let old_refresh = browser.cookie("chronos_refresh").unwrap();
    let old_csrf = browser.cookie("chronos_csrf").unwrap();

    let refreshed = browser.refresh().await;
    assert_eq!(refreshed.status(), 200);
    let cookies = set_cookies(refreshed.headers());
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert!(!cookie_value(&cookies[name]).is_empty(), "{name} rewritten");
    }
    let body: Value = refreshed.json().await.unwrap();
    assert_eq!(body["user"]["email"], EMAIL);
    assert!(body["expires_at"].as_u64().is_some());
    assert_ne!(browser.cookie("chronos_refresh").unwrap(), old_refresh);
    assert_ne!(browser.cookie("chronos_csrf").unwrap(), old_csrf);
    assert_eq!(browser.session().await.status(), 200);
}

#[tokio::test]
async fn refresh_needs_the_csrf_header_and_a_refresh_cookie() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let response = browser.refresh_without_csrf().await;
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "Invalid CSRF token");

    let anonymous = app.refresh().await;
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.unwrap();
    assert_eq!(body["detail"], "Refresh failed");
}

#[tokio::test]
async fn two_tabs_refreshing_at_once_get_the_same_new_pair() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let mut other_tab = on(&app, &browser);

    let first = browser.refresh().await;
    let second = other_tab.refresh().await;
    assert_eq!(first.status(), 200);
    assert_eq!(second.status(), 200);
    assert_eq!(
        browser.cookie("chronos_refresh"),
        other_tab.cookie("chronos_refresh")
    );
    assert_eq!(
        browser.cookie("chronos_session"),
        other_tab.cookie("chronos_session")
    );
    // And the chain continues from there.
    assert_eq!(browser.refresh().await.status(), 200);
}

#[tokio::test]
async fn many_refreshes_of_one_token_racing_all_get_the_same_new_pair() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let before = browser.cookie("chronos_refresh");
    // Sent together: the writer sees them in one batch or in a row.
    let tabs: Vec<_> = (0..16)
        .map(|_| {
            let mut tab = browser.clone_jar();
            tokio::spawn(async move {
                let status = tab.refresh().await.status();
                (status, tab.jar)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for tab in tabs {
        answers.push(tab.await.unwrap());
    }
    let pair = |jar: &std::collections::BTreeMap<String, String>| {
        (
            jar["chronos_session"].clone(),
            jar["chronos_refresh"].clone(),
        )
    };
    let first = pair(&answers[0].1);
    for (status, jar) in &answers {
        assert_eq!(*status, 200);
        // (The CSRF token is a fresh nonce in every answer.)
        assert_eq!(pair(jar), first, "every racer holds the same pair");
    }
    assert_ne!(Some(&first.1), before.as_ref());
    // The last racer's cookies carry on.
    browser.jar = answers.pop().unwrap().1;
    assert_eq!(browser.session().await.status(), 200);
    assert_eq!(browser.refresh().await.status(), 200);
}

#[tokio::test]
async fn a_rotated_refresh_token_replayed_after_the_interval_ends_the_whole_session() {
    let app = spawn_app_with(&[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let mut thief = on(&app, &browser);

    assert_eq!(browser.refresh().await.status(), 200);
    // No pause: with an interval of 0 there is no grace at all.
    let replay = thief.refresh().await;
    assert_eq!(replay.status(), 401);
    // A refused refresh clears the cookies that carried it.
    let cleared = set_cookies(replay.headers());
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert_cleared(&cleared[name]);
    }
    let legit = browser.refresh().await;
    assert_eq!(legit.status(), 401, "the new token dies with the family");
    assert_eq!(browser.session().await.status(), 401);
}

#[tokio::test]
async fn sessions_codes_and_flows_survive_a_restart() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let mut pending = Browser::new(&app);
    let code = pending.obtain_code(EMAIL, PASSWORD).await;

    let app = app.restart().await;
    let port_changed = |b: &mut Browser| b.base = app.url("");
    port_changed(&mut browser);
    port_changed(&mut pending);

    assert_eq!(browser.session().await.status(), 200);
    assert_eq!(browser.refresh().await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
    assert_eq!(pending.exchange(&code).await.status(), 200);
}

#[tokio::test]
async fn logout_ends_the_refresh_token_family() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let copied = browser.jar.clone();
    let logout = browser.logout().await;
    assert_eq!(logout.status(), 200);
    assert!(browser.jar.is_empty(), "cookies cleared: {:?}", browser.jar);
    let mut replay = Browser::new(&app);
    replay.jar = copied;
    assert_eq!(replay.refresh().await.status(), 401);
}

#[tokio::test]
async fn bad_callback_bodies_get_422() {
    let app = spawn_app().await;
    let client = app.client();
    for (content_type, body) in [
        ("application/json", ""),
        ("application/json", "{not json"),
        ("application/json", "{}"),
        ("application/json", r#"{"code": 42}"#),
        ("application/json", "[]"),
    ] {
        let response = client
            .post(app.url("/auth/web/callback"))
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{body:?}");
        let detail: Value = response.json().await.unwrap();
        assert!(detail["detail"].is_string());
    }
    let unknown = Browser::new(&app).exchange("nope").await;
    assert_eq!(unknown.status(), 400);
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

#[tokio::test]
async fn sign_up_creates_an_account_and_signs_in() {
    let app = spawn_app().await;
    let mut browser = Browser::new(&app);
    let url = browser.login_url(None).await;
    let posted = browser
        .submit(
            &url,
            "signup",
            &[
                ("email", "new@example.com"),
                ("password", PASSWORD),
                ("name", "<b>New</b>"),
            ],
        )
        .await;
    assert_eq!(posted.status(), 303);
    let code = code_from_location(&posted);
    let session: Value = browser.exchange(&code).await.json().await.unwrap();
    assert_eq!(session["user"]["email"], "new@example.com");
    assert_eq!(session["user"]["name"], "<b>New</b>");

    let weak = browser
        .submit(
            &url,
            "signup",
            &[("email", "weak@example.com"), ("password", "short")],
        )
        .await;
    assert_eq!(weak.status(), 400);
}

#[tokio::test]
async fn sign_up_can_be_disabled() {
    let app = spawn_app_with(&[("SIGNUP_ENABLED", "false")]).await;
    let mut browser = Browser::new(&app);
    let url = browser.login_url(None).await;
    let page = browser.get(&url).await.text().await.unwrap();
    assert!(!page.contains("id=\"signup\""));
    let hidden = hidden_fields(&page, "signin");
    let mut body = hidden.clone();
    body.push(("email".into(), "x@example.com".into()));
    body.push(("password".into(), PASSWORD.into()));
    assert_eq!(browser.post_form("signup", None, &body).await.status(), 403);
    assert!(
        app.identity
            .accounts
            .find_by_email("x@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn the_sign_in_form_rejects_bad_input_without_a_500() {
    let app = spawn_app_with(&[("CORS_ORIGINS", "https://admin.example.com")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let url = browser.login_url(None).await;
    let page = browser.get(&url).await.text().await.unwrap();
    let hidden = hidden_fields(&page, "signin");

    let post = |body: Vec<u8>| {
        let request = browser
            .request(reqwest::Method::POST, "/auth/signin")
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body);
        async move { request.send().await.unwrap() }
    };
    // Missing fields.
    let response = post(encode_form(&hidden).into_bytes()).await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Enter your email and password")
    );
    // Not UTF-8.
    let mut bad = encode_form(&hidden).into_bytes();
    bad.extend_from_slice(b"&email=%FF%FE&password=\xff");
    assert_eq!(post(bad).await.status(), 400);
    // Nothing at all.
    assert_eq!(post(Vec::new()).await.status(), 400);
    // Too big.
    let mut big = encode_form(&hidden).into_bytes();
    big.extend_from_slice(format!("&password={}", "a".repeat(70_000)).as_bytes());
    assert_eq!(post(big).await.status(), 413);
    // Without the form's own cookie (posted from elsewhere): refused.
    let mut body = hidden.clone();
    body.push(("email".into(), EMAIL.into()));
    body.push(("password".into(), PASSWORD.into()));
    let response = Browser::new(&app).send_form("signin", None, &body).await;
    assert_eq!(response.status(), 403);
    // From a foreign origin: refused by the Origin check.
    let response = browser
        .send_form("signin", Some("https://evil.example"), &body)
        .await;
    assert_eq!(response.status(), 403);
    // Nor from the frontend or any other CORS origin: the form is ours.
    for origin in ["http://localhost:5173", "https://admin.example.com", "null"] {
        for form in ["signin", "signup"] {
            let response = browser.send_form(form, Some(origin), &body).await;
            assert_eq!(response.status(), 403, "{form} from {origin}");
            let detail: Value = response.json().await.unwrap();
            assert_eq!(detail["detail"], "Invalid origin");
        }
    }
    // From our own origin, with a fresh form (each form token is good for
    // one post, and the posts above used this one), it works.
    let mut body = browser.form_fields(&url, "signin").await;
    body.push(("email".into(), EMAIL.into()));
    body.push(("password".into(), PASSWORD.into()));
    let response = browser.send_form("signin", Some(&app.url("")), &body).await;
    assert_eq!(response.status(), 303, "our own origin is fine");
}

#[tokio::test]
async fn a_sign_in_form_token_is_good_for_one_post_and_only_on_the_form() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let url = browser.login_url(None).await;
    let mut body = browser.form_fields(&url, "signin").await;
    body.push(("email".into(), EMAIL.into()));
    body.push(("password".into(), "wrong password".into()));
    let first = browser.send_form("signin", Some(&app.url("")), &body).await;
    assert_eq!(first.status(), 401, "a wrong password, and a fresh form");
    // The same token again (a replayed post): refused before any password check.
    body.pop();
    body.push(("password".into(), PASSWORD.into()));
    let replay = browser.send_form("signin", Some(&app.url("")), &body).await;
    assert_eq!(replay.status(), 403);
    assert!(replay.text().await.unwrap().contains("already sent"));

    // An API token from /auth/csrf, put where the form's goes: refused.
    let api = browser.csrf().await;
    assert_eq!(api.status(), 200);
    let api_token = browser.cookie("chronos_csrf").unwrap();
    let html = browser.get(&url).await.text().await.unwrap();
    let mut body: Vec<(String, String)> = hidden_fields(&html, "signin")
        .into_iter()
        .filter(|(k, _)| k != "csrf")
        .collect();
    body.push(("csrf".into(), api_token.clone()));
    body.push(("email".into(), EMAIL.into()));
    body.push(("password".into(), PASSWORD.into()));
    let mut forged = browser.clone_jar();
    forged.jar.insert(
        browser
            .jar
            .keys()
            .find(|k| k.ends_with("chronos_signin"))
            .cloned()
            .unwrap_or_else(|| "chronos_signin".into()),
        api_token,
    );
    let response = forged.send_form("signin", Some(&app.url("")), &body).await;
    assert_eq!(response.status(), 403, "an API token is not a form token");
}

#[tokio::test]
async fn the_desktop_callback_escapes_everything_and_uses_a_nonce() {
    let app = spawn_app().await;
    let evil = "\"><script>alert(1)</script><img src=x onerror=alert(2)>";
    let response = app
        .desktop_callback(&format!(
            "code={}&error=&error_description=",
            urlencode(evil)
        ))
        .await;
    assert_eq!(response.status(), 200);
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    let nonce = csp
        .split("'nonce-")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    assert!(csp.contains("default-src 'none'"));
    let html = response.text().await.unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(!html.contains("<img src=x"), "{html}");
    assert!(html.contains(&format!("<script nonce=\"{nonce}\">")));
    assert!(html.contains(&format!("<style nonce=\"{nonce}\">")));
    assert_eq!(html.matches("<script").count(), 1);
    assert!(html.contains("chronos://auth/callback?code=%22%3E%3Cscript%3E"));

    let response = app
        .desktop_callback(&format!(
            "error=access_denied&error_description={}",
            urlencode("<b>Denied</b>")
        ))
        .await;
    let html = response.text().await.unwrap();
    assert!(html.contains("&lt;b&gt;Denied&lt;/b&gt;"));
    assert!(html.contains("chronos://auth/callback?error=access_denied"));
}

#[tokio::test]
async fn a_removed_user_loses_their_sessions_within_a_second_of_chronos_user_remove() {
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut laptop = Browser::new(&app);
    laptop.sign_in(EMAIL, PASSWORD).await;
    let mut phone = Browser::new(&app);
    phone.sign_in(EMAIL, PASSWORD).await;
    let mut copy = laptop.clone_jar();
    assert_eq!(laptop.session().await.status(), 200);
    // The operator's command, from another process, while the server runs:
    // nothing ends the sessions first but the command itself.
    let removed = cli(&app, &["user", "remove", EMAIL], None);
    assert!(removed.status.success(), "{removed:?}");
    // The server follows the revocation table (every 250 ms).
    let started = std::time::Instant::now();
    for browser in [&mut laptop, &mut phone, &mut copy] {
        while browser.session().await.status() != 401 {
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "a removed user's session is still accepted"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(browser.verify().await.status(), 401);
        assert_eq!(browser.refresh().await.status(), 401);
    }
    assert!(
        app.identity
            .accounts
            .find_by_email(EMAIL)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_of_sign_ins_gets_a_friendly_503_beyond_what_the_cores_can_hash() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "100000/minute")]).await;
    create_user(&app, EMAIL).await;
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let crowd = cores * 5 + 40;
    // Everyone opens the form first, then all post at once.
    let mut ready = Vec::new();
    for _ in 0..crowd {
        let mut browser = Browser::new(&app);
        let url = browser.login_url(None).await;
        let mut body = browser.form_fields(&url, "signin").await;
        body.push(("email".into(), EMAIL.into()));
        body.push(("password".into(), PASSWORD.into()));
        ready.push(browser.form_request("signin", Some(&app.url("")), &body));
    }
    let posts: Vec<_> = ready
        .into_iter()
        .map(|request| tokio::spawn(request.send()))
        .collect();
    let (mut signed_in, mut busy) = (0, 0);
    for post in posts {
        let response = post.await.unwrap().unwrap();
        match response.status().as_u16() {
            303 => signed_in += 1,
            503 => {
                busy += 1;
                assert_eq!(response.headers()["retry-after"], "1");
                let page = response.text().await.unwrap();
                assert!(page.contains("try again in a moment"), "{page}");
                assert!(page.contains("id=\"signin\""), "the form comes back");
            }
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    assert!(signed_in >= cores, "{signed_in} signed in, {busy} busy");
    assert!(busy > 0, "{signed_in} signed in, {busy} busy");
    // The crowd gone, signing in works again.
    let mut late = Browser::new(&app);
    late.sign_in(EMAIL, PASSWORD).await;
}

#[tokio::test]
async fn any_earlier_refresh_token_replayed_later_ends_the_family() {
    let app = spawn_app_with(&[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let first = browser.cookie("chronos_refresh").unwrap();
    for _ in 0..5 {
        assert_eq!(browser.refresh().await.status(), 200);
    }
    assert_eq!(browser.session().await.status(), 200);
    // The very first token, five rotations ago, comes back: theft.
    let mut thief = on(&app, &browser);
    thief.jar.insert("chronos_refresh".into(), first);
    assert_eq!(thief.refresh().await.status(), 401);
    assert_eq!(browser.session().await.status(), 401, "the family ended");
    assert_eq!(browser.refresh().await.status(), 401);
}

#[tokio::test]
async fn a_refresh_token_with_a_forged_counter_or_mac_ends_nothing() {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let app = spawn_app().await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let token = browser.cookie("chronos_refresh").unwrap();
    let mut bytes = b64.decode(&token).unwrap();
    bytes[24] ^= 1; // another counter, the MAC left as it was
    let mut forger = on(&app, &browser);
    forger
        .jar
        .insert("chronos_refresh".into(), b64.encode(&bytes));
    assert_eq!(forger.refresh().await.status(), 401);
    assert_eq!(browser.session().await.status(), 200);
    assert_eq!(browser.refresh().await.status(), 200);
}

#[tokio::test]
async fn a_session_from_before_self_describing_tokens_moves_over_at_its_next_refresh() {
    let app = spawn_app_with(&[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]).await;
    let user = create_user(&app, EMAIL).await;
    // A session as the previous version left it: a chain token, hashed.
    let now = chronos::unix_now() as i64;
    let legacy = "legacy-chain-token-0123456789abcdefghijklmnop";
    let session_id = uuid::Uuid::new_v4().to_string();
    let db = chronos::store::sqlite::connect(&format!(
        "sqlite://{}",
        app.data_dir.path().join("chronos.db").display()
    ))
    .await
    .unwrap();
    sqlx::query("INSERT INTO sessions (id, user_id, created_at, last_used_at) VALUES (?, ?, ?, ?)")
        .bind(&session_id)
        .bind(user.id.as_str())
        .bind(now)
        .bind(now)
        .execute(&db)
        .await
        .unwrap();
    sqlx::query("INSERT INTO refresh_tokens (token_hash, session_id, created_at) VALUES (?, ?, ?)")
        .bind(chronos::secrets::hash_token(legacy))
        .bind(&session_id)
        .bind(now)
        .execute(&db)
        .await
        .unwrap();
    let mut browser = Browser::new(&app);
    browser.jar.insert("chronos_refresh".into(), legacy.into());
    let csrf = browser.csrf().await;
    assert_eq!(csrf.status(), 200);
    let refreshed = browser.refresh().await;
    assert_eq!(refreshed.status(), 200);
    let body: Value = refreshed.json().await.unwrap();
    assert_eq!(body["user"]["email"], EMAIL);
    assert_ne!(browser.cookie("chronos_refresh").unwrap(), legacy);
    assert_eq!(browser.refresh().await.status(), 200, "new scheme");
    // The old chain token, replayed: theft, the session ends.
    let mut thief = on(&app, &browser);
    thief.jar.insert("chronos_refresh".into(), legacy.into());
    assert_eq!(thief.refresh().await.status(), 401);
    assert_eq!(browser.session().await.status(), 401);
}
