//! Supabase Auth as the identity provider, against the GoTrue test server:
//! first proven faithful with the official client, then driven through
//! Chronos over HTTP (and in Chromium, in supabase_browser.rs).

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::gotrue::*;
use crate::support::*;

macro_rules! require_node {
    () => {
        if let Some(reason) = missing_tooling() {
            return skip_or_fail("Supabase test", &reason);
        }
    };
}

async fn supabase_app(gotrue: &GoTrue, extra: &[(&str, &str)]) -> TestApp {
    let url = gotrue.url();
    let mut vars = vec![
        ("IDENTITY_PROVIDER", "supabase"),
        ("SUPABASE_URL", url.as_str()),
        ("SUPABASE_PUBLISHABLE_KEY", APIKEY),
        ("RATE_LIMIT_AUTH", "10000/minute"),
    ];
    vars.extend_from_slice(extra);
    spawn_app_with(&vars).await
}

async fn sign_in(browser: &mut Browser, login: &str) -> Value {
    let code = consent_code(browser, login).await;
    let response = browser.exchange(&code).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Polls until the server has received a logout with this scope.
pub(crate) async fn logout_arrives(gotrue: &GoTrue, scope: &str, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let arrived = gotrue
            .calls_of("logout")
            .await
            .iter()
            .any(|c| c["scope"] == scope && c["ok"] == true);
        if arrived {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no {scope} logout reached Supabase"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn status(browser: &mut Browser, method: &str, path: &str) -> u16 {
    match method {
        "GET" => browser.get(path).await.status().as_u16(),
        _ => browser.post_api(path).await.status().as_u16(),
    }
}

/// The secret of the legacy HS256 project in these tests.
const LEGACY_SECRET: &str = "a legacy project secret of at least 32 characters";

#[test]
fn the_gotrue_test_server_is_faithful_to_the_official_client() {
    require_node!();
    // As the Chronos tests run it: ES256 (JWKS) and the legacy HS256 secret,
    // each with the reuse interval every other test here uses. The two runs
    // go side by side (each waits out the reuse interval once).
    let runs: Vec<_> = [None, Some(LEGACY_SECRET)]
        .into_iter()
        .map(|secret| {
            std::thread::spawn(move || {
                let env: Vec<(&str, &str)> =
                    secret.map(|s| ("JWT_SECRET", s)).into_iter().collect();
                let gotrue = GoTrue::start(&env);
                let root = env!("CARGO_MANIFEST_DIR");
                let mut command = Command::new("node");
                command
                    .arg(format!("{root}/tests/browser/gotrue-contract.mjs"))
                    .env("GOTRUE_URL", gotrue.auth_url())
                    .env("APIKEY", APIKEY)
                    .env("REUSE_INTERVAL", REUSE_INTERVAL);
                if let Some(secret) = secret {
                    command.env("JWT_SECRET", secret);
                }
                command.output().unwrap()
            })
        })
        .collect();
    for (run, mode) in runs.into_iter().zip(["es256", "hs256"]) {
        let output = run.join().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!("{stdout}");
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            stdout.contains(&format!(
                "gotrue double: faithful ({mode}, reuse interval {REUSE_INTERVAL} s)"
            )),
            "{stdout}"
        );
    }
}

#[tokio::test]
async fn a_person_signs_in_through_supabase_and_the_cookies_hold_supabases_tokens() {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(
        &gotrue,
        &[
            (
                "SUPABASE_SCOPES",
                "https://www.googleapis.com/auth/calendar",
            ),
            ("SUPABASE_AUTH_PARAMS", "access_type=offline&prompt=consent"),
        ],
    )
    .await;
    let mut browser = Browser::new(&app);
    let url = reqwest::Url::parse(&browser.login_url(None).await).unwrap();
    assert_eq!(url.path(), "/auth/v1/authorize");
    let params: std::collections::HashMap<String, String> =
        url.query_pairs().into_owned().collect();
    assert_eq!(params["provider"], "google");
    assert_eq!(
        params["redirect_to"],
        "http://localhost:5173/auth/web/callback"
    );
    assert_eq!(params["code_challenge_method"], "s256");
    assert_eq!(params["code_challenge"].len(), 43);
    assert_eq!(params["scopes"], "https://www.googleapis.com/auth/calendar");
    assert_eq!(params["access_type"], "offline");

    let body = sign_in(&mut browser, "ann").await;
    let user = &body["user"];
    assert_eq!(user["email"], "ann@example.com");
    assert_eq!(user["name"], "Person ann");
    assert_eq!(user["avatar_url"], "https://example.com/ann.png");
    assert_eq!(user["created_at"], "2025-01-02T03:04:05.000Z");
    assert!(user["id"].as_str().unwrap().len() == 36);
    // The session cookie is Supabase's own access token.
    let token = browser.cookie("chronos_session").unwrap();
    let payload: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').nth(1).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["iss"], gotrue.auth_url());
    assert_eq!(payload["aud"], "authenticated");
    assert_eq!(body["expires_at"], payload["exp"]);

    // Checked locally: no call to Supabase for any of these.
    let user_calls = gotrue.calls_of("user").await.len();
    for _ in 0..3 {
        assert_eq!(status(&mut browser, "GET", "/auth/session").await, 200);
        assert_eq!(status(&mut browser, "GET", "/auth/verify").await, 200);
    }
    let session: Value = browser.session().await.json().await.unwrap();
    assert_eq!(session["user"], body["user"]);
    assert_eq!(gotrue.calls_of("user").await.len(), user_calls);
    // The code exchange carried the person's address for Supabase's limits.
    let exchange = gotrue.calls_of("token").await;
    assert_eq!(exchange[0]["grant"], "pkce");
    assert_eq!(exchange[0]["forwardedFor"], "127.0.0.1");
}

#[tokio::test]
async fn two_overlapping_sign_ins_each_keep_their_own_verifier() {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[]).await;
    let mut first = Browser::new(&app);
    let mut second = Browser::new(&app);
    let first_code = consent_code(&mut first, "ann").await;
    let second_code = consent_code(&mut second, "bob").await;
    // The second finishes first; neither overwrote the other's verifier.
    let body: Value = second.exchange(&second_code).await.json().await.unwrap();
    assert_eq!(body["user"]["email"], "bob@example.com");
    let body: Value = first.exchange(&first_code).await.json().await.unwrap();
    assert_eq!(body["user"]["email"], "ann@example.com");
    // A code from the other browser's flow is useless here.
    let stolen = consent_code(&mut first, "ann").await;
    let mut other = Browser::new(&app);
    other.start_login(None).await;
    assert_eq!(other.exchange(&stolen).await.status(), 400);
}

#[tokio::test]
async fn a_refused_code_is_400_and_supabase_down_is_502() {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[]).await;
    let mut browser = Browser::new(&app);
    browser.start_login(None).await;
    let response = browser.exchange("not-a-code").await;
    assert_eq!(response.status(), 400);
    assert_eq!(
        response.json::<Value>().await.unwrap()["detail"],
        "Authentication failed"
    );
    let code = consent_code(&mut browser, "ann").await;
    gotrue.outage(true).await;
    let response = browser.exchange(&code).await;
    assert_eq!(response.status(), 502);
    assert_eq!(
        response.json::<Value>().await.unwrap()["detail"],
        "External service error"
    );
}

#[tokio::test]
async fn logout_is_effective_here_at_once_and_reaches_supabase() {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&mut browser, "ann").await;
    let mut copy = browser.clone_jar();
    assert_eq!(status(&mut browser, "POST", "/auth/logout").await, 200);
    // Supabase's JWT is still valid, but not here.
    assert_eq!(status(&mut copy, "GET", "/auth/session").await, 401);
    assert_eq!(status(&mut copy, "GET", "/auth/verify").await, 401);
    assert_eq!(status(&mut copy, "POST", "/auth/refresh").await, 401);
    logout_arrives(&gotrue, "local", Duration::from_secs(5)).await;
}

#[tokio::test]
async fn supabases_401_403_and_404_at_logout_mean_already_signed_out_so_the_call_is_settled_not_retried()
 {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[]).await;
    let answers = [
        (401, "no_authorization"),
        (403, "session_not_found"),
        (404, "user_not_found"),
    ];
    for (done, (answer, code)) in answers.into_iter().enumerate() {
        let mut browser = Browser::new(&app);
        sign_in(&mut browser, "ann").await;
        let mut copy = browser.clone_jar();
        gotrue.answer_logouts(answer, code, 1).await;
        assert_eq!(status(&mut browser, "POST", "/auth/logout").await, 200);
        assert_eq!(status(&mut copy, "GET", "/auth/session").await, 401);
        let deadline = Instant::now() + Duration::from_secs(5);
        while gotrue.calls_of("logout").await.len() == done {
            assert!(Instant::now() < deadline, "no logout reached Supabase");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        // A retried call would be due again within 2 s (1 s backoff, a
        // delivery every second), and would find a live session there.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let logouts = gotrue.calls_of("logout").await;
        assert_eq!(
            logouts.len(),
            done + 1,
            "{answer}: tried again: {logouts:?}"
        );
        assert_eq!(logouts[done]["status"], answer);
        assert_eq!(
            db_count(&app, "SELECT COUNT(*) FROM outbox").await,
            0,
            "{answer}: the call is still waiting to be retried"
        );
    }
}

#[tokio::test]
async fn a_global_logout_maps_to_supabases_global_scope() {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[("LOGOUT_SCOPE", "global")]).await;
    let mut laptop = Browser::new(&app);
    sign_in(&mut laptop, "ann").await;
    let mut phone = Browser::new(&app);
    sign_in(&mut phone, "ann").await;
    assert_eq!(status(&mut laptop, "POST", "/auth/logout").await, 200);
    assert_eq!(status(&mut phone, "GET", "/auth/session").await, 401);
    logout_arrives(&gotrue, "global", Duration::from_secs(5)).await;
}

#[tokio::test]
async fn with_supabase_down_a_logout_still_answers_and_arrives_later_even_across_a_restart() {
    require_node!();
    let mut gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&mut browser, "ann").await;
    gotrue.stop();
    let started = Instant::now();
    assert_eq!(status(&mut browser, "POST", "/auth/logout").await, 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "logout waited for Supabase"
    );
    // Chronos restarts while Supabase is still away; then Supabase returns.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = app.restart().await;
    gotrue.restart();
    logout_arrives(&gotrue, "local", Duration::from_secs(15)).await;
    drop(app);
}

#[tokio::test]
async fn an_expired_access_token_is_refreshed_before_the_remote_logout() {
    require_node!();
    // 3 s: the refreshed token must still be alive when the logout call
    // follows the refresh, even on a loaded machine (with 1 s it was not
    // always); still far under the 30 s of life delivery asks for, so the
    // refresh happens.
    let gotrue = GoTrue::start(&[("ACCESS_TTL", "3")]);
    let app = supabase_app(&gotrue, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&mut browser, "ann").await;
    tokio::time::sleep(Duration::from_millis(3100)).await;
    assert_eq!(
        status(&mut browser, "GET", "/auth/session").await,
        401,
        "expired"
    );
    // The refresh cookie still proves the session: logout ends it here, and
    // Supabase gets a logout with a live token (refreshed first).
    assert_eq!(status(&mut browser, "POST", "/auth/logout").await, 200);
    logout_arrives(&gotrue, "local", Duration::from_secs(10)).await;
    let refreshes = gotrue
        .calls_of("token")
        .await
        .into_iter()
        .filter(|c| c["grant"] == "refresh_token")
        .count();
    assert_eq!(refreshes, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tabs_refreshing_at_once_share_one_call_to_supabase() {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&mut browser, "ann").await;
    let before = gotrue.calls_of("token").await.len();
    // Each tab a copy of the browser's cookies, refreshing at once.
    let tab = |b: &Browser| {
        let mut tab = b.clone_jar();
        async move { tab.refresh().await }
    };
    let (a, b) = tokio::join!(tab(&browser), tab(&browser));
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let pair = |r: &reqwest::Response| {
        let cookies = set_cookies(r.headers());
        (
            cookie_value(&cookies["chronos_session"]).to_string(),
            cookie_value(&cookies["chronos_refresh"]).to_string(),
        )
    };
    assert_eq!(pair(&a), pair(&b), "both tabs get the same new pair");
    assert_eq!(
        gotrue.calls_of("token").await.len(),
        before + 1,
        "one call to Supabase"
    );
}

#[tokio::test]
async fn a_refresh_supabase_refuses_is_401_and_clears_the_cookies() {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[]).await;
    let mut browser = Browser::new(&app);
    sign_in(&mut browser, "ann").await;
    // The session ends at Supabase behind our back (another client's
    // global sign-out).
    let token = browser.cookie("chronos_session").unwrap();
    let ended = reqwest::Client::new()
        .post(format!("{}/logout?scope=global", gotrue.auth_url()))
        .header("apikey", APIKEY)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 204);
    let response = browser.refresh().await;
    assert_eq!(response.status(), 401);
    let cookies = set_cookies(response.headers());
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert_cleared(&cookies[name]);
    }
    assert_eq!(
        response.json::<Value>().await.unwrap()["detail"],
        "Refresh failed"
    );
}

#[tokio::test]
async fn supabases_rate_limit_is_503_with_retry_after() {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[]).await;
    // The person comes from 127.0.0.7; Chronos reaches Supabase from
    // 127.0.0.1, so Supabase counts the person only through the address
    // Chronos forwards (Sb-Forwarded-For).
    let mut browser = Browser::from_address(&app, "127.0.0.7");
    sign_in(&mut browser, "ann").await;
    gotrue.rate_limit_for("127.0.0.7", 1).await;
    let response = browser.refresh().await;
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    // The cookies are kept: the refresh token is still good.
    assert!(set_cookies(response.headers()).is_empty());
    assert_eq!(browser.refresh().await.status(), 200);
}

#[tokio::test]
async fn sessions_come_from_our_record_and_ending_one_reaches_supabase() {
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[]).await;
    let mut laptop = Browser::new(&app);
    sign_in(&mut laptop, "ann").await;
    let mut phone = Browser::new(&app);
    sign_in(&mut phone, "ann").await;
    let sessions: Vec<Value> = laptop.session_list().await;
    assert_eq!(sessions.len(), 2);
    let other = sessions.iter().find(|s| s["current"] == false).unwrap();
    let id = other["id"].as_str().unwrap();
    let ended = laptop.end_session(id).await;
    assert_eq!(ended.status(), 200);
    assert_eq!(status(&mut phone, "GET", "/auth/session").await, 401);
    assert_eq!(status(&mut laptop, "GET", "/auth/session").await, 200);
    logout_arrives(&gotrue, "local", Duration::from_secs(5)).await;
    let sessions: Vec<Value> = laptop.session_list().await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["current"], json!(true));
}

#[tokio::test]
async fn legacy_hs256_projects_work_with_their_jwt_secret() {
    require_node!();
    let secret = LEGACY_SECRET;
    let gotrue = GoTrue::start(&[("JWT_SECRET", secret)]);
    let app = supabase_app(&gotrue, &[("SUPABASE_JWT_SECRET", secret)]).await;
    let mut browser = Browser::new(&app);
    sign_in(&mut browser, "ann").await;
    assert_eq!(status(&mut browser, "GET", "/auth/session").await, 200);
    assert_eq!(status(&mut browser, "POST", "/auth/refresh").await, 200);
    // Without the secret, Supabase's HS256 tokens cannot be trusted here.
    let app = supabase_app(&gotrue, &[]).await;
    let mut browser = Browser::new(&app);
    let code = consent_code(&mut browser, "ann").await;
    assert_eq!(browser.exchange(&code).await.status(), 502);
}

#[tokio::test]
async fn a_replayed_refresh_token_after_the_reuse_interval_reaches_supabase_and_ends_the_family() {
    require_node!();
    // Supabase's reuse interval and ours, both 1 s.
    let gotrue = GoTrue::start(&[("REUSE_INTERVAL", "1")]);
    let app = supabase_app(&gotrue, &[("REFRESH_REUSE_INTERVAL_SECONDS", "1")]).await;
    let mut browser = Browser::new(&app);
    sign_in(&mut browser, "ann").await;
    // What a thief copied right after the sign-in.
    let mut thief = browser.clone_jar();
    assert_eq!(browser.refresh().await.status(), 200);
    assert_eq!(browser.refresh().await.status(), 200);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let calls = gotrue.calls_of("token").await.len();
    // The thief's CSRF token is bound to the session its cookies name.
    assert_eq!(thief.csrf().await.status(), 200);
    let replay = thief.refresh().await;
    assert_eq!(
        replay.status(),
        401,
        "no live tokens for a replay after the interval"
    );
    let cookies = set_cookies(replay.headers());
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert_cleared(&cookies[name]);
    }
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["detail"], "Refresh failed");
    assert_eq!(
        gotrue.calls_of("token").await.len(),
        calls + 1,
        "the replay reached Supabase"
    );
    // The session ended here too: its newest access and refresh tokens are
    // refused, whatever Supabase would still accept.
    assert_eq!(browser.session().await.status(), 401);
    assert_eq!(browser.refresh().await.status(), 401);
}

#[tokio::test]
async fn a_supabase_session_binds_to_a_device_key_like_our_own() {
    use crate::dbsc::{DeviceKey, challenge_of, dbsc_refresh, post_proof, registration_of};
    require_node!();
    let gotrue = GoTrue::start(&[]);
    let app = supabase_app(&gotrue, &[("DBSC", "on")]).await;
    let mut browser = Browser::new(&app);
    let code = consent_code(&mut browser, "ann").await;
    let signed_in = browser.exchange(&code).await;
    assert_eq!(signed_in.status(), 200);
    let offer = registration_of(&signed_in).expect("the callback offers DBSC");
    let key = DeviceKey::es256();
    let bound = post_proof(
        &mut browser,
        &offer.path,
        Some(&key.registration_proof(&offer.challenge)),
    )
    .await;
    assert_eq!(bound.status(), 200);
    let instructions: Value = bound.json().await.unwrap();
    let session_id = instructions["session_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(status(&mut browser, "GET", "/auth/session").await, 200);

    // Without the bound cookie: no session, and Supabase's refresh token
    // alone renews nothing (Supabase rotates it, but no pair is handed out).
    let bound_cookie = browser.jar.remove("chronos_bound").unwrap();
    assert_eq!(status(&mut browser, "GET", "/auth/session").await, 401);
    let refused = browser.refresh().await;
    assert_eq!(refused.status(), 401);
    let set = set_cookies(refused.headers());
    assert!(!set.contains_key("chronos_session") && !set.contains_key("chronos_refresh"));
    browser.jar.insert("chronos_bound".into(), bound_cookie);
    assert_eq!(browser.refresh().await.status(), 200);

    // Renewed with a proof; ended by logout.
    browser.jar.remove("chronos_bound");
    let asked = dbsc_refresh(&mut browser, "/auth/dbsc/refresh", &session_id, None).await;
    let (challenge, _) = challenge_of(&asked).unwrap();
    let proof = key.refresh_proof(&challenge);
    let renewed = dbsc_refresh(
        &mut browser,
        "/auth/dbsc/refresh",
        &session_id,
        Some(&proof),
    )
    .await;
    assert_eq!(renewed.status(), 200);
    assert_eq!(status(&mut browser, "GET", "/auth/session").await, 200);
    assert_eq!(browser.logout().await.status(), 200);
    let ended = dbsc_refresh(&mut browser, "/auth/dbsc/refresh", &session_id, None).await;
    assert_eq!(
        ended.json::<Value>().await.unwrap(),
        json!({"continue": false})
    );
}
