//! A logout that really ends the session: revocation on every path that
//! accepts a token, "log out everywhere", the sessions list, forward-auth.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::*;

const EMAIL: &str = "ann@example.com";

async fn status(browser: &mut Browser, method: &str, path: &str) -> u16 {
    match method {
        "GET" => browser.get(path).await.status().as_u16(),
        _ => browser.post_api(path).await.status().as_u16(),
    }
}

async fn two_devices(app: &TestApp) -> (Browser, Browser) {
    create_user(app, EMAIL).await;
    let mut laptop = Browser::new(app);
    laptop.sign_in(EMAIL, PASSWORD).await;
    let mut phone = Browser::new(app);
    phone.sign_in(EMAIL, PASSWORD).await;
    (laptop, phone)
}

#[tokio::test]
async fn after_logout_the_copied_cookies_are_refused_everywhere_and_the_other_device_works() {
    let app = spawn_app().await;
    let (mut laptop, mut phone) = two_devices(&app).await;
    let mut stolen = on(&app, &laptop);

    let logout = laptop.logout().await;
    assert_eq!(logout.status(), 200);
    assert_eq!(logout.text().await.unwrap(), r#"{"message":"Logged out"}"#);

    assert_eq!(status(&mut stolen, "GET", "/auth/session").await, 401);
    assert_eq!(status(&mut stolen, "GET", "/auth/verify").await, 401);
    assert_eq!(status(&mut stolen, "POST", "/auth/refresh").await, 401);

    assert_eq!(status(&mut phone, "GET", "/auth/session").await, 200);
    assert_eq!(status(&mut phone, "GET", "/auth/verify").await, 200);
    assert_eq!(status(&mut phone, "POST", "/auth/refresh").await, 200);
}

/// The seed page's logout, with no `X-CSRF-Token` (nor a body): as its
/// usage pattern sends it (`fetch` from the frontend with `credentials:
/// 'include'`: every cookie, and the browser's own headers), or as its curl
/// example does (`Accept: application/json`, the session and refresh
/// cookies only).
async fn seed_logout(app: &TestApp, browser: &Browser, as_curl: bool) {
    let request = app.client().post(app.url("/auth/logout"));
    let request = if as_curl {
        let cookies = format!(
            "chronos_session={}; chronos_refresh={}",
            browser.cookie("chronos_session").unwrap(),
            browser.cookie("chronos_refresh").unwrap()
        );
        request
            .header("Accept", "application/json")
            .header("Cookie", cookies)
    } else {
        request
            .header("Cookie", browser.cookie_header())
            .header("Accept", "*/*")
            .header("Origin", "http://localhost:5173")
            .header("Sec-Fetch-Site", "same-site")
            .header("Sec-Fetch-Mode", "cors")
            .header("Sec-Fetch-Dest", "empty")
    };
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let cookies = set_cookies(response.headers());
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert_cleared(&cookies[name]);
    }
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"message":"Logged out"}"#
    );
}

/// `/auth/session`, `/auth/verify` and `/auth/refresh` (with the CSRF
/// header the browser holds) for a browser.
async fn everywhere(browser: &mut Browser) -> [u16; 3] {
    [
        status(browser, "GET", "/auth/session").await,
        status(browser, "GET", "/auth/verify").await,
        status(browser, "POST", "/auth/refresh").await,
    ]
}

#[tokio::test]
async fn a_seed_style_logout_without_the_csrf_header_refuses_the_copied_cookies_for_each_logout_scope()
 {
    for scope in ["local", "global", "none"] {
        for as_curl in [false, true] {
            let app = spawn_app_with(&[("LOGOUT_SCOPE", scope)]).await;
            let (laptop, mut phone) = two_devices(&app).await;
            // Another client holding copies of the session, refresh and CSRF
            // cookies (its refresh sends the CSRF header from its copy).
            let mut copy = on(&app, &laptop);

            seed_logout(&app, &laptop, as_curl).await;

            let (copied, other_session) = match scope {
                // This session is refused everywhere; the phone's is not.
                "local" => ([401, 401, 401], [200, 200, 200]),
                // Every session of the user.
                "global" => ([401, 401, 401], [401, 401, 401]),
                // The seed's cookie-only logout: nothing ends on the server.
                _ => ([200, 200, 200], [200, 200, 200]),
            };
            let how = if as_curl { "curl" } else { "fetch" };
            assert_eq!(
                everywhere(&mut copy).await,
                copied,
                "LOGOUT_SCOPE={scope}, as {how}: the copied cookies"
            );
            assert_eq!(
                everywhere(&mut phone).await,
                other_session,
                "LOGOUT_SCOPE={scope}, as {how}: the user's other session"
            );
        }
    }
}

#[tokio::test]
async fn scope_global_logs_out_everywhere() {
    let app = spawn_app().await;
    let (mut laptop, mut phone) = two_devices(&app).await;
    let mut stolen = on(&app, &laptop);
    assert_eq!(laptop.logout_with_scope("global").await.status(), 200);
    for browser in [&mut stolen, &mut phone] {
        assert_eq!(status(browser, "GET", "/auth/session").await, 401);
        assert_eq!(status(browser, "GET", "/auth/verify").await, 401);
        assert_eq!(status(browser, "POST", "/auth/refresh").await, 401);
    }
}

#[tokio::test]
async fn logout_scope_global_can_be_the_default() {
    let app = spawn_app_with(&[("LOGOUT_SCOPE", "global")]).await;
    let (mut laptop, mut phone) = two_devices(&app).await;
    assert_eq!(laptop.logout().await.status(), 200);
    assert_eq!(status(&mut phone, "GET", "/auth/session").await, 401);
    // ...and ?scope=local narrows it again.
    let mut tablet = Browser::new(&app);
    tablet.sign_in(EMAIL, PASSWORD).await;
    let mut desk = Browser::new(&app);
    desk.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(tablet.logout_with_scope("local").await.status(), 200);
    assert_eq!(status(&mut desk, "GET", "/auth/session").await, 200);
}

#[tokio::test]
async fn logout_scope_none_is_the_seeds_cookie_only_logout() {
    let app = spawn_app_with(&[("LOGOUT_SCOPE", "none")]).await;
    let (mut laptop, _) = two_devices(&app).await;
    let mut copy = on(&app, &laptop);
    let logout = laptop.logout().await;
    assert_eq!(logout.status(), 200);
    let cookies = set_cookies(logout.headers());
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert_cleared(&cookies[name]);
    }
    assert_eq!(status(&mut copy, "GET", "/auth/session").await, 200);
    assert_eq!(status(&mut copy, "POST", "/auth/refresh").await, 200);
    // ?scope=none on a revoking server does the same.
    let app = spawn_app().await;
    let (mut laptop, _) = two_devices(&app).await;
    let mut copy = on(&app, &laptop);
    assert_eq!(laptop.logout_with_scope("none").await.status(), 200);
    assert_eq!(status(&mut copy, "GET", "/auth/session").await, 200);
}

#[tokio::test]
async fn revocations_hold_across_a_restart() {
    let app = spawn_app().await;
    let (mut laptop, mut phone) = two_devices(&app).await;
    let mut stolen = on(&app, &laptop);
    assert_eq!(laptop.logout().await.status(), 200);
    let app = app.restart().await;
    stolen.base = app.url("");
    phone.base = app.url("");
    assert_eq!(status(&mut stolen, "GET", "/auth/session").await, 401);
    assert_eq!(status(&mut stolen, "GET", "/auth/verify").await, 401);
    assert_eq!(status(&mut stolen, "POST", "/auth/refresh").await, 401);
    assert_eq!(status(&mut phone, "GET", "/auth/session").await, 200);
    assert_eq!(
        status(&mut phone, "POST", "/auth/logout?scope=global").await,
        200
    );
    let app = app.restart().await;
    let mut again = on(&app, &phone);
    assert_eq!(status(&mut again, "GET", "/auth/verify").await, 401);
}

#[tokio::test]
async fn logout_with_garbage_forged_or_foreign_cookies_revokes_nothing() {
    let app = spawn_app().await;
    let (victim, _) = two_devices(&app).await;
    let victim_token = victim.cookie("chronos_session").unwrap();

    // A token with the victim's claims signed by another server's key.
    let other = spawn_app().await;
    create_user(&other, EMAIL).await;
    let mut elsewhere = Browser::new(&other);
    elsewhere.sign_in(EMAIL, PASSWORD).await;
    let foreign = elsewhere.cookie("chronos_session").unwrap();
    let parts: Vec<&str> = victim_token.split('.').collect();
    let foreign_sig = foreign.split('.').nth(2).unwrap();
    let forged = format!("{}.{}.{foreign_sig}", parts[0], parts[1]);

    for cookie in [
        "chronos_session=garbage; chronos_refresh=garbage".to_string(),
        format!("chronos_session={forged}"),
        format!("chronos_session={foreign}"),
        "chronos_refresh=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_string(),
    ] {
        for scope in ["local", "global"] {
            let response = app
                .client()
                .post(app.url(&format!("/auth/logout?scope={scope}")))
                .header("Cookie", &cookie)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            let cookies = set_cookies(response.headers());
            assert_cleared(&cookies["chronos_session"]);
        }
    }
    let mut victim = victim;
    assert_eq!(status(&mut victim, "GET", "/auth/session").await, 200);
    assert_eq!(status(&mut victim, "POST", "/auth/refresh").await, 200);
}

#[tokio::test]
async fn an_expired_access_token_with_its_refresh_token_still_logs_out() {
    let app = spawn_app_with(&[("ACCESS_TOKEN_TTL_SECONDS", "1")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let copied = on(&app, &browser);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(browser.logout().await.status(), 200);
    let mut copied = copied;
    assert_eq!(status(&mut copied, "POST", "/auth/refresh").await, 401);
}

#[tokio::test]
async fn the_sessions_list_shows_the_callers_sessions_and_marks_the_current_one() {
    let app = spawn_app().await;
    let (mut laptop, mut phone) = two_devices(&app).await;
    let response = laptop.sessions().await;
    assert_eq!(response.status(), 200);
    let sessions: Vec<Value> = response.json().await.unwrap();
    assert_eq!(sessions.len(), 2);
    let current: Vec<&Value> = sessions.iter().filter(|s| s["current"] == true).collect();
    assert_eq!(current.len(), 1);
    for session in &sessions {
        for field in [
            "id",
            "created_at",
            "last_used_at",
            "user_agent",
            "ip",
            "current",
        ] {
            assert!(session.get(field).is_some(), "{field} in {session}");
        }
        assert_eq!(session["ip"], "127.0.0.0/24");
    }
    let phone_view: Vec<Value> = phone.session_list().await;
    let phone_current = phone_view.iter().find(|s| s["current"] == true).unwrap();
    assert_ne!(phone_current["id"], current[0]["id"]);

    // Anonymous: 401.
    let anonymous = app.sessions().await;
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_person_ends_one_of_their_sessions_but_never_someone_elses() {
    let app = spawn_app().await;
    let (mut laptop, mut phone) = two_devices(&app).await;
    create_user(&app, "bob@example.com").await;
    let mut bob = Browser::new(&app);
    bob.sign_in("bob@example.com", PASSWORD).await;
    let bobs: Vec<Value> = bob.session_list().await;
    let bob_session = bobs[0]["id"].as_str().unwrap().to_string();

    // Ann tries to end Bob's session: 404, and Bob is still signed in.
    let response = laptop.end_session(&bob_session).await;
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "Session not found");
    assert_eq!(status(&mut bob, "GET", "/auth/session").await, 200);
    // An unknown id: the same 404.
    assert_eq!(laptop.end_session("not-a-session").await.status(), 404);

    // Ann ends her phone's session from the laptop; DELETE needs the CSRF header.
    let phone_sessions: Vec<Value> = phone.session_list().await;
    let phone_id = phone_sessions
        .iter()
        .find(|s| s["current"] == true)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        laptop.end_session_without_csrf(&phone_id).await.status(),
        403
    );
    let response = laptop.end_session(&phone_id).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Session ended");
    assert_eq!(status(&mut phone, "GET", "/auth/session").await, 401);
    assert_eq!(status(&mut phone, "POST", "/auth/refresh").await, 401);
    assert_eq!(status(&mut laptop, "GET", "/auth/session").await, 200);
    let left: Vec<Value> = laptop.session_list().await;
    assert_eq!(left.len(), 1);
}

#[tokio::test]
async fn verify_answers_forward_auth_with_the_user_in_headers() {
    // Signing in takes four /auth/* requests, the sessions list a fifth.
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "5/minute")]).await;
    let user = create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let session: Vec<Value> = browser.session_list().await;
    assert_eq!(browser.session().await.status(), 429, "budget spent");
    // RATE_LIMIT_AUTH does not apply to /auth/verify.
    for _ in 0..10 {
        let response = browser.verify().await;
        assert_eq!(response.status(), 200);
        let h = response.headers();
        assert_eq!(h["x-auth-user-id"], user.id.as_str());
        assert_eq!(h["x-auth-user-email"], EMAIL);
        assert_eq!(h["x-auth-session-id"], session[0]["id"].as_str().unwrap());
    }
    // Proxies may forward the original method; the answer is the same.
    let post = browser
        .request(reqwest::Method::POST, "/auth/verify")
        .header("Origin", "https://calendar.example")
        .header("Sec-Fetch-Site", "cross-site");
    assert_eq!(browser.send(post).await.status(), 200);
    let anonymous = app.verify().await;
    assert_eq!(anonymous.status(), 401);
    assert!(anonymous.headers().get("x-auth-user-id").is_none());
}

#[tokio::test]
async fn verify_has_its_own_rate_limit() {
    let app = spawn_app_with(&[("RATE_LIMIT_VERIFY", "2/minute")]).await;
    for expected in [401, 401, 429] {
        let response = app.verify().await;
        assert_eq!(response.status(), expected);
    }
}

#[tokio::test]
async fn clear_site_data_is_sent_only_when_configured() {
    let app = spawn_app().await;
    let response = app.logout().await;
    assert!(response.headers().get("clear-site-data").is_none());
    let app = spawn_app_with(&[("LOGOUT_CLEAR_SITE_DATA", "\"cache\", \"storage\"")]).await;
    let response = app.logout().await;
    assert_eq!(
        response.headers()["clear-site-data"],
        "\"cache\", \"storage\""
    );
    assert_eq!(response.status(), 200);
}

/// Polls until `path` answers `expected` or a second has passed.
async fn within_a_second(browser: &mut Browser, path: &str, expected: u16) -> Duration {
    let started = Instant::now();
    loop {
        if browser.get(path).await.status().as_u16() == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{path} did not become {expected} within a second"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn operators_manage_users_and_end_sessions_from_the_cli_while_the_server_runs() {
    let app = spawn_app().await;
    let added = cli(
        &app,
        &["user", "add", "Carol@Example.com", "--name", "Carol"],
        Some("a long enough password\n"),
    );
    assert!(added.status.success(), "{added:?}");
    assert!(String::from_utf8_lossy(&added.stdout).contains("carol@example.com"));
    let duplicate = cli(
        &app,
        &["user", "add", "carol@example.com"],
        Some("another password\n"),
    );
    assert!(!duplicate.status.success());
    assert_eq!(
        String::from_utf8_lossy(&duplicate.stderr)
            .trim()
            .lines()
            .count(),
        1
    );

    let listed = cli(&app, &["user", "list"], None);
    let listing = String::from_utf8_lossy(&listed.stdout).to_string();
    assert!(
        listing.contains("carol@example.com") && listing.contains("Carol"),
        "{listing}"
    );

    let mut laptop = Browser::new(&app);
    laptop
        .sign_in("carol@example.com", "a long enough password")
        .await;
    let mut phone = Browser::new(&app);
    phone
        .sign_in("carol@example.com", "a long enough password")
        .await;
    let sessions = cli(&app, &["session", "list", "carol@example.com"], None);
    let table = String::from_utf8_lossy(&sessions.stdout).to_string();
    assert_eq!(table.lines().count(), 3, "header + two sessions: {table}");

    let ended = cli(&app, &["user", "logout", "carol@example.com"], None);
    assert!(ended.status.success(), "{ended:?}");
    assert!(String::from_utf8_lossy(&ended.stdout).contains("ended 2 session"));
    within_a_second(&mut laptop, "/auth/session", 401).await;
    within_a_second(&mut phone, "/auth/verify", 401).await;
    assert_eq!(status(&mut phone, "POST", "/auth/refresh").await, 401);

    // Removing a user ends their sessions too.
    let mut again = Browser::new(&app);
    again
        .sign_in("carol@example.com", "a long enough password")
        .await;
    let removed = cli(&app, &["user", "remove", "carol@example.com"], None);
    assert!(removed.status.success(), "{removed:?}");
    within_a_second(&mut again, "/auth/session", 401).await;
    let listed = cli(&app, &["user", "list"], None);
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("carol@example.com"));
    let missing = cli(&app, &["user", "remove", "carol@example.com"], None);
    assert!(!missing.status.success());
}

/// Settings of another process (the CLI) on this app's data directory.
fn operator_settings(app: &TestApp) -> chronos::config::Settings {
    let dir = app.data_dir.path().to_string_lossy().to_string();
    let database = app.env.get("DATABASE_URL").cloned();
    chronos::config::Settings::from_source(|k| match k {
        "DATA_DIR" => Some(dir.clone()),
        "DATABASE_URL" => database.clone(),
        _ => None,
    })
    .unwrap()
}

#[tokio::test]
async fn an_operators_logout_is_seen_even_when_the_server_writes_a_revocation_of_its_own_first() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "1000/minute")]).await;
    let operator = operator_settings(&app);
    for round in 0..5 {
        let alice = format!("alice{round}@example.com");
        let bob = format!("bob{round}@example.com");
        create_user(&app, &alice).await;
        create_user(&app, &bob).await;
        let mut alices = Browser::new(&app);
        alices.sign_in(&alice, PASSWORD).await;
        let mut bobs = Browser::new(&app);
        bobs.sign_in(&bob, PASSWORD).await;

        // Another process ends bob's sessions; before the server's next
        // poll, alice logs out here, so the server writes the newer row.
        chronos::cli::user_logout(&operator, &bob).await.unwrap();
        assert_eq!(alices.logout().await.status(), 200);

        within_a_second(&mut bobs, "/auth/session", 401).await;
        within_a_second(&mut bobs, "/auth/verify", 401).await;
        assert_eq!(status(&mut alices, "GET", "/auth/session").await, 401);
    }
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
