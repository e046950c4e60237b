//! TOTP as a second step (RFC 6238): enrolled on the account page, asked
//! after the password, a code good once and only near its time, recovery
//! codes good once, lock-out after five wrong codes, the per-client rate
//! limit on top, `MFA_REQUIRED` enrolment at sign-in, `chronos user
//! mfa-reset`. The codes are computed here from the RFC's algorithm (HMAC
//! from aws-lc-rs), not with the server's library.

use aws_lc_rs::hmac;
use serde_json::{Value, json};

use crate::support::*;

const EMAIL: &str = "totp@example.com";

/// RFC 4648 base32, no padding.
fn base32(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let (mut bits, mut value, mut out) = (0u32, 0u32, Vec::new());
    for c in text.trim_end_matches('=').bytes() {
        value = (value << 5) | ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((value >> bits) as u8);
        }
    }
    out
}

/// RFC 6238 TOTP: HMAC-SHA-1 over the 30 s step, dynamic truncation, 6 digits.
fn totp(secret: &str, unix: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, &base32(secret));
    let mac = hmac::sign(&key, &(unix / 30).to_be_bytes());
    let mac = mac.as_ref();
    let offset = (mac[19] & 0x0f) as usize;
    let number = u32::from_be_bytes(mac[offset..offset + 4].try_into().unwrap()) & 0x7fff_ffff;
    format!("{:06}", number % 1_000_000)
}

#[test]
fn the_reference_code_is_rfc_6238s() {
    // Appendix B: SHA-1 key "12345678901234567890", T = 59 s -> 94287082.
    assert_eq!(totp("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 59), "287082");
    assert_eq!(
        totp("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 1111111109),
        "081804"
    );
}

/// A JSON call of the account page, with its CSRF header.
async fn account_call(
    browser: &mut Browser,
    method: &str,
    path: &str,
    body: Value,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = browser.request(method, path).json(&body);
    if let Some(token) = browser.cookie("chronos_csrf") {
        request = request.header("X-CSRF-Token", token);
    }
    browser.send(request).await
}

/// Signed in, TOTP turned on from the account page: the secret and the
/// recovery codes.
async fn enrolled(app: &TestApp, browser: &mut Browser) -> (String, Vec<String>) {
    browser.sign_in(EMAIL, PASSWORD).await;
    let page = browser.get("/auth/account").await;
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(page.text().await.unwrap().contains(EMAIL));
    let status: Value = browser.get("/auth/totp").await.json().await.unwrap();
    assert_eq!(
        status,
        json!({ "enabled": false, "recovery_codes_left": 0 })
    );

    // Without the CSRF header: refused, nothing begun.
    let bare = browser
        .request(reqwest::Method::POST, "/auth/totp/enrol")
        .json(&json!({}));
    assert_eq!(browser.send(bare).await.status(), 403);
    let enrolment = account_call(browser, "POST", "/auth/totp/enrol", json!({})).await;
    assert_eq!(enrolment.status(), 200);
    let enrolment: Value = enrolment.json().await.unwrap();
    let secret = enrolment["secret"].as_str().unwrap().to_string();
    assert_eq!(base32(&secret).len(), 20, "a 160-bit secret");
    let uri = enrolment["uri"].as_str().unwrap();
    assert!(
        uri.starts_with("otpauth://totp/Chronos:totp%40example.com?"),
        "{uri}"
    );
    assert!(uri.contains(&format!("secret={secret}")), "{uri}");
    assert!(
        enrolment["qrSvg"].as_str().unwrap().contains("<svg"),
        "a QR drawn here"
    );

    let wrong = account_call(
        browser,
        "POST",
        "/auth/totp/confirm",
        json!({ "code": "000000" }),
    )
    .await;
    assert_eq!(wrong.status(), 401);
    let code = totp(&secret, chronos::unix_now());
    let confirmed = account_call(
        browser,
        "POST",
        "/auth/totp/confirm",
        json!({ "code": code }),
    )
    .await;
    assert_eq!(confirmed.status(), 200);
    let codes: Vec<String> =
        serde_json::from_value(confirmed.json::<Value>().await.unwrap()["recoveryCodes"].clone())
            .unwrap();
    assert_eq!(codes.len(), 10);
    let status: Value = browser.get("/auth/totp").await.json().await.unwrap();
    assert_eq!(
        status,
        json!({ "enabled": true, "recovery_codes_left": 10 })
    );
    // Stored as hashes, never as the codes.
    let stored = db_count(app, "SELECT COUNT(*) FROM recovery_codes").await;
    assert_eq!(stored, 10);
    assert_eq!(browser.logout().await.status(), 200);
    (secret, codes)
}

/// The password posted: the second step's page (200) and its fields.
async fn second_step(browser: &mut Browser) -> Vec<(String, String)> {
    let url = browser.login_url(None).await;
    let posted = browser
        .submit(&url, "signin", &[("email", EMAIL), ("password", PASSWORD)])
        .await;
    assert_eq!(posted.status(), 200, "a second step, not a code");
    let html = posted.text().await.unwrap();
    assert!(html.contains("Two-step sign-in"), "{html}");
    hidden_fields(&html, "second-step")
}

/// Posts `code` to the second step; the answer, and the next step's fields
/// when it showed the step again.
async fn answer(
    browser: &mut Browser,
    fields: &[(String, String)],
    code: &str,
) -> (
    reqwest::StatusCode,
    Option<reqwest::Response>,
    Vec<(String, String)>,
) {
    let mut body = fields.to_vec();
    body.push(("code".into(), code.into()));
    let origin = browser.base.clone();
    let response = browser
        .post_form("signin/second-factor", Some(&origin), &body)
        .await;
    let status = response.status();
    if status == 303 {
        return (status, Some(response), Vec::new());
    }
    let html = response.text().await.unwrap();
    let next = if html.contains("id=\"second-step\"") {
        hidden_fields(&html, "second-step")
    } else {
        Vec::new()
    };
    (status, None, next)
}

#[tokio::test]
async fn totp_is_asked_after_the_password_and_each_code_works_once() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "1000/minute")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let (secret, codes) = enrolled(&app, &mut browser).await;

    // The code that confirmed enrolment is spent; one from four steps ago
    // is outside the window; the next step's is good, once.
    let fields = second_step(&mut browser).await;
    let now = chronos::unix_now();
    let (status, _, fields) = answer(&mut browser, &fields, &totp(&secret, now)).await;
    assert_eq!(status, 401, "the enrolment's code again");
    let (status, _, fields) = answer(&mut browser, &fields, &totp(&secret, now - 120)).await;
    assert_eq!(status, 401, "a code two minutes old");
    let next = totp(&secret, now + 30);
    let (status, response, _) = answer(&mut browser, &fields, &next).await;
    assert_eq!(status, 303);
    let code = code_from_location(&response.unwrap());
    assert_eq!(browser.exchange(&code).await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
    assert_eq!(browser.logout().await.status(), 200);

    // The same step again, in a new sign-in: refused.
    let fields = second_step(&mut browser).await;
    let (status, _, fields) = answer(&mut browser, &fields, &next).await;
    assert_eq!(status, 401, "a TOTP code is good once");
    // A recovery code, as shown (upper case, spaces are forgiven): once.
    let typed = format!(" {} ", codes[0].to_uppercase());
    let (status, response, _) = answer(&mut browser, &fields, &typed).await;
    assert_eq!(status, 303, "a recovery code");
    assert_eq!(
        browser
            .exchange(&code_from_location(&response.unwrap()))
            .await
            .status(),
        200
    );
    assert_eq!(browser.logout().await.status(), 200);
    let fields = second_step(&mut browser).await;
    let (status, _, _) = answer(&mut browser, &fields, &codes[0]).await;
    assert_eq!(status, 401, "a recovery code is good once");

    // The step's token is single-use and bound to the account: a replayed
    // or edited form is refused before any code is looked at.
    let fields = second_step(&mut browser).await;
    let mut edited = fields.clone();
    for (k, v) in edited.iter_mut() {
        if k == "user" {
            *v = "00000000-0000-4000-8000-000000000000".into();
        }
    }
    let (status, _, _) = answer(&mut browser, &edited, &codes[1]).await;
    assert_eq!(status, 403, "another account's id in the form");
    let (status, response, _) = answer(&mut browser, &fields, &codes[1]).await;
    assert_eq!(status, 303, "the form as it was still works");
    let (status, _, _) = answer(&mut browser, &fields, &codes[2]).await;
    assert_eq!(status, 403, "but only once");
    assert_eq!(
        browser
            .exchange(&code_from_location(&response.unwrap()))
            .await
            .status(),
        200
    );
    let status: Value = browser.get("/auth/totp").await.json().await.unwrap();
    assert_eq!(status["recovery_codes_left"], 8, "two of ten used");
}

impl Browser {
    /// Password, then `code` at the second step; signed in.
    async fn sign_in_with_second_step(&mut self, code: &str) {
        let fields = second_step(self).await;
        let (status, response, _) = answer(self, &fields, code).await;
        assert_eq!(status, 303);
        assert_eq!(
            self.exchange(&code_from_location(&response.unwrap()))
                .await
                .status(),
            200
        );
    }
}

#[tokio::test]
async fn five_wrong_codes_lock_the_account_from_every_client() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "1000/minute")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let (_, codes) = enrolled(&app, &mut browser).await;
    let mut fields = second_step(&mut browser).await;
    for attempt in 1..=5 {
        let (status, _, next) = answer(&mut browser, &fields, "123456").await;
        let expected = if attempt < 5 { 401 } else { 429 };
        assert_eq!(status, expected, "wrong code {attempt}");
        fields = next;
    }
    // Locked: even a right recovery code waits, and is not spent.
    let (status, _, _) = answer(&mut browser, &fields, &codes[0]).await;
    assert_eq!(status, 429);
    let left = db_count(&app, "SELECT COUNT(*) FROM recovery_codes").await;
    assert_eq!(left, 10);
    // From another browser too: the lock is the account's.
    let mut elsewhere = Browser::from_address(&app, "127.0.0.7");
    let fields = second_step(&mut elsewhere).await;
    let (status, _, _) = answer(&mut elsewhere, &fields, &codes[0]).await;
    assert_eq!(status, 429);
}

#[tokio::test]
async fn the_per_client_limit_stops_guessing_before_the_account_lock() {
    let mut app = spawn_app_with(&[("RATE_LIMIT_AUTH", "1000/minute")]).await;
    create_user(&app, EMAIL).await;
    let mut owner = Browser::new(&app);
    let (_, codes) = enrolled(&app, &mut owner).await;
    // Now a tight limit per client.
    app.env.insert("RATE_LIMIT_AUTH".into(), "7/minute".into());
    let app = app.restart().await;
    // A guesser with the password: three requests to reach the step, then
    // wrong codes until the limiter answers.
    let mut guesser = Browser::from_address(&app, "127.0.0.22");
    let mut fields = second_step(&mut guesser).await;
    let mut wrong = 0;
    loop {
        let (status, _, next) = answer(&mut guesser, &fields, "654321").await;
        if status == 429 && next.is_empty() {
            break;
        }
        assert_eq!(status, 401);
        wrong += 1;
        fields = next;
    }
    assert!(
        wrong < 5,
        "the client limit came first ({wrong} wrong codes)"
    );
    // The account is not locked: its owner, from elsewhere, signs in.
    let mut third = Browser::from_address(&app, "127.0.0.23");
    third.sign_in_with_second_step(&codes[0]).await;
    assert_eq!(third.session().await.status(), 200);
}

#[tokio::test]
async fn with_mfa_required_a_password_sign_in_enrols_first() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "1000/minute"), ("MFA_REQUIRED", "true")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let url = browser.login_url(None).await;
    let posted = browser
        .submit(&url, "signin", &[("email", EMAIL), ("password", PASSWORD)])
        .await;
    assert_eq!(posted.status(), 200);
    let html = posted.text().await.unwrap();
    assert!(
        html.contains("Set up two-step sign-in") && html.contains("<svg"),
        "{html}"
    );
    let secret = between(&html, "id=\"totp-secret\">", "</code>");
    let fields = hidden_fields(&html, "second-step");

    // A wrong code shows the same secret again.
    let mut body = fields.clone();
    body.push(("code".into(), "000000".into()));
    let origin = browser.base.clone();
    let again = browser
        .post_form("signin/enrol", Some(&origin), &body)
        .await;
    assert_eq!(again.status(), 401);
    let html = again.text().await.unwrap();
    assert_eq!(between(&html, "id=\"totp-secret\">", "</code>"), secret);
    let mut body = hidden_fields(&html, "second-step");
    body.push(("code".into(), totp(&secret, chronos::unix_now())));
    let done = browser
        .post_form("signin/enrol", Some(&origin), &body)
        .await;
    assert_eq!(done.status(), 200);
    let html = done.text().await.unwrap();
    assert_eq!(html.matches("<li>").count(), 10, "ten recovery codes shown");
    let href = between(&html, "id=\"continue\" href=\"", "\"").replace("&amp;", "&");
    let code = reqwest::Url::parse(&href)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    assert_eq!(browser.exchange(&code).await.status(), 200);
    assert_eq!(browser.session().await.status(), 200);
    assert_eq!(browser.logout().await.status(), 200);
    // From now on: the second step.
    second_step(&mut browser).await;

    // Support turns it off; the next sign-in enrols again.
    let dir = app.data_dir.path().to_string_lossy().to_string();
    let out = chronos_command(&[("DATA_DIR", dir.as_str())])
        .args(["user", "mfa-reset", EMAIL])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("two-step sign-in is off for totp@example.com")
    );
    let url = browser.login_url(None).await;
    let posted = browser
        .submit(&url, "signin", &[("email", EMAIL), ("password", PASSWORD)])
        .await;
    assert!(
        posted
            .text()
            .await
            .unwrap()
            .contains("Set up two-step sign-in")
    );
}

fn between(text: &str, start: &str, end: &str) -> String {
    let from = text.find(start).unwrap() + start.len();
    let to = from + text[from..].find(end).unwrap();
    text[from..to].to_string()
}

/// The same rules on PostgreSQL: a code once, a recovery code once, the
/// lock-out; and a passkey ceremony taken by its one answer.
#[tokio::test]
async fn on_postgres_codes_work_once_the_lock_holds_and_a_ceremony_is_taken_once() {
    let Some(base) = postgres_url("postgres_second_factor") else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let url = schema.url();
    let port = free_port();
    let bind = format!("127.0.0.1:{port}");
    let public = format!("http://localhost:{port}");
    let app = spawn_app_with(&[
        ("RATE_LIMIT_AUTH", "1000/minute"),
        ("DATABASE_URL", url.as_str()),
        ("BIND", bind.as_str()),
        ("PUBLIC_URL", public.as_str()),
    ])
    .await;
    assert!(app.state.database.is_postgres());
    create_user(&app, EMAIL).await;
    let mut browser = Browser::at(&public);
    let (secret, codes) = enrolled(&app, &mut browser).await;

    let fields = second_step(&mut browser).await;
    let next = totp(&secret, chronos::unix_now() + 30);
    let (status, response, _) = answer(&mut browser, &fields, &next).await;
    assert_eq!(status, 303);
    assert_eq!(
        browser
            .exchange(&code_from_location(&response.unwrap()))
            .await
            .status(),
        200
    );
    assert_eq!(browser.logout().await.status(), 200);
    let fields = second_step(&mut browser).await;
    let (status, _, fields) = answer(&mut browser, &fields, &next).await;
    assert_eq!(status, 401, "a TOTP code is good once");
    let (status, response, _) = answer(&mut browser, &fields, &codes[0]).await;
    assert_eq!(status, 303, "a recovery code");
    assert_eq!(
        browser
            .exchange(&code_from_location(&response.unwrap()))
            .await
            .status(),
        200
    );
    assert_eq!(browser.logout().await.status(), 200);
    let mut fields = second_step(&mut browser).await;
    let (status, _, next) = answer(&mut browser, &fields, &codes[0]).await;
    assert_eq!(status, 401, "a recovery code is good once");
    fields = next;
    for attempt in 2..=5 {
        let (status, _, next) = answer(&mut browser, &fields, "123456").await;
        assert_eq!(
            status,
            if attempt < 5 { 401 } else { 429 },
            "wrong code {attempt}"
        );
        fields = next;
    }
    let (status, _, _) = answer(&mut browser, &fields, &codes[1]).await;
    assert_eq!(status, 429, "locked");

    // A passkey ceremony: begun, taken by its (malformed) answer, gone.
    let flow = json!({
        "redirect_uri": "http://localhost:5173/auth/web/callback",
        "code_challenge": "b".repeat(43),
        "code_challenge_method": "S256",
    });
    let client = app.client();
    let begun: Value = client
        .post(app.url("/auth/signin/passkey/options"))
        .json(&flow)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        db_count(&app, "SELECT COUNT(*) FROM webauthn_ceremonies").await,
        1
    );
    let mut body = flow.clone();
    body["ceremonyId"] = begun["ceremonyId"].clone();
    body["credential"] = json!({});
    let first = client
        .post(app.url("/auth/signin/passkey"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 422, "the answer is malformed");
    let again = client
        .post(app.url("/auth/signin/passkey"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 401, "but it took the ceremony");
    assert_eq!(
        db_count(&app, "SELECT COUNT(*) FROM webauthn_ceremonies").await,
        0
    );
}
