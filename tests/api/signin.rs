//! Signing in with a password through our sign-in page: the login start
//! and its redirect allow-list, the page and its form (one answer for a
//! wrong password and an unknown email, a form token good for one post,
//! bad input refused without a 500), and a crowd beyond what the cores
//! can hash.

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
