//! Session lifetimes: `SESSION_IDLE_TIMEOUT` (a session unused that long
//! ends; `COOKIE_MAX_AGE` by default, as before) and `SESSION_MAX_LIFETIME`
//! (a session ends that long after sign-in, however it is used). Past
//! either, every path refuses it, on SQLite and PostgreSQL, and with
//! Supabase too (ended here and logged out there).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::gotrue::*;
use crate::support::*;

const EMAIL: &str = "ann@example.com";

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

async fn sleep_until(start: Instant, seconds: f64) {
    let at = start + Duration::from_secs_f64(seconds);
    tokio::time::sleep(at.saturating_duration_since(Instant::now())).await;
}

async fn max_lifetime_holds(database_url: Option<&str>) {
    let mut vars = vec![
        ("SESSION_MAX_LIFETIME", "6s"),
        ("RATE_LIMIT_AUTH", "10000/minute"),
    ];
    if let Some(url) = database_url {
        vars.push(("DATABASE_URL", url));
    }
    let app = spawn_app_with(&vars).await;
    create_user(&app, EMAIL).await;
    let start = Instant::now();
    let mut laptop = Browser::new(&app);
    let began = now();
    let session = laptop.sign_in(EMAIL, PASSWORD).await;
    let expires_at = session["expires_at"].as_u64().unwrap();
    assert!(
        expires_at <= began + 7,
        "expires_at {expires_at} promises more than the session has"
    );

    // Refreshes in between: each pair still ends with the session.
    for at in [2.0, 4.0] {
        sleep_until(start, at).await;
        let refreshed = laptop.refresh().await;
        assert_eq!(refreshed.status(), 200);
        let body: Value = refreshed.json().await.unwrap();
        assert!(body["expires_at"].as_u64().unwrap() <= began + 7);
        assert_eq!(laptop.session().await.status(), 200);
    }
    let mut phone = Browser::new(&app);
    phone.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(phone.session_list().await.len(), 2);

    sleep_until(start, 7.5).await;
    assert_eq!(laptop.session().await.status(), 401);
    assert_eq!(laptop.verify().await.status(), 401);
    let refused = laptop.refresh().await;
    assert_eq!(refused.status(), 401);
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert_cleared(&set_cookies(refused.headers())[name]);
    }
    assert_eq!(error_detail(refused).await, "Refresh failed");
    // Gone from the list; the younger session goes on.
    let listed = phone.session_list().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["current"], true);
    assert_eq!(phone.session().await.status(), 200);
}

#[tokio::test]
async fn a_session_past_session_max_lifetime_is_refused_on_every_path_on_sqlite() {
    max_lifetime_holds(None).await;
}

#[tokio::test]
async fn a_session_past_session_max_lifetime_is_refused_on_every_path_on_postgres() {
    let Some(base) = postgres_url("lifetimes_postgres") else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    max_lifetime_holds(Some(&schema.url())).await;
}

#[tokio::test]
async fn a_session_unused_for_session_idle_timeout_ends_and_one_in_use_goes_on() {
    let app = spawn_app_with(&[
        ("SESSION_IDLE_TIMEOUT", "3"),
        ("RATE_LIMIT_AUTH", "10000/minute"),
    ])
    .await;
    create_user(&app, EMAIL).await;
    let start = Instant::now();
    let mut idle = Browser::new(&app);
    idle.sign_in(EMAIL, PASSWORD).await;
    let mut busy = Browser::new(&app);
    busy.sign_in(EMAIL, PASSWORD).await;
    for at in [1.5, 3.0, 4.5] {
        sleep_until(start, at).await;
        assert_eq!(
            busy.refresh().await.status(),
            200,
            "used within the timeout"
        );
    }
    let refused = idle.refresh().await;
    assert_eq!(refused.status(), 401);
    assert_cleared(&set_cookies(refused.headers())["chronos_refresh"]);
    let listed = busy.session_list().await;
    assert_eq!(listed.len(), 1, "{listed:?}");
}

#[tokio::test]
async fn a_supabase_session_past_session_max_lifetime_is_ended_here_and_logged_out_there() {
    if let Some(reason) = missing_tooling() {
        return skip_or_fail("Supabase test", &reason);
    }
    let gotrue = GoTrue::start(&[]);
    let url = gotrue.url();
    let app = spawn_app_with(&[
        ("IDENTITY_PROVIDER", "supabase"),
        ("SUPABASE_URL", url.as_str()),
        ("SUPABASE_PUBLISHABLE_KEY", APIKEY),
        ("RATE_LIMIT_AUTH", "10000/minute"),
        ("SESSION_MAX_LIFETIME", "4"),
    ])
    .await;
    let start = Instant::now();
    let mut browser = Browser::new(&app);
    let code = consent_code(&mut browser, "ann").await;
    let began = now();
    let signed_in = browser.exchange(&code).await;
    assert_eq!(signed_in.status(), 200);
    let body: Value = signed_in.json().await.unwrap();
    assert!(
        body["expires_at"].as_u64().unwrap() <= began + 5,
        "capped: {body}"
    );
    sleep_until(start, 2.0).await;
    let refreshed = browser.refresh().await;
    assert_eq!(refreshed.status(), 200);
    let body: Value = refreshed.json().await.unwrap();
    assert!(
        body["expires_at"].as_u64().unwrap() <= began + 5,
        "capped: {body}"
    );
    assert_eq!(browser.session().await.status(), 200);
    // The lifetime plus one sweep (2 s): polled, since the session began
    // somewhat after `start` (the consent flow).
    sleep_until(start, 4.0).await;
    let deadline = Instant::now() + Duration::from_secs(6);
    while browser.session().await.status() != 401 {
        assert!(
            Instant::now() < deadline,
            "still signed in past the lifetime"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(browser.verify().await.status(), 401);
    let refused = browser.refresh().await;
    assert_eq!(refused.status(), 401);
    assert_cleared(&set_cookies(refused.headers())["chronos_refresh"]);
    crate::supabase::logout_arrives(&gotrue, "local", Duration::from_secs(5)).await;
}

#[test]
fn lifetimes_are_checked_at_start_up() {
    for (var, value) in [
        ("SESSION_MAX_LIFETIME", "forever"),
        ("SESSION_MAX_LIFETIME", "0"),
        ("SESSION_MAX_LIFETIME", "12y"),
        ("SESSION_IDLE_TIMEOUT", "-1"),
        ("SESSION_IDLE_TIMEOUT", "3650000d"),
    ] {
        let error =
            chronos::config::Settings::from_source(|k| (k == var).then(|| value.to_string()))
                .unwrap_err();
        assert_eq!(error.var, var, "{value}");
    }
    let settings = chronos::config::Settings::from_source(|k| match k {
        "SESSION_MAX_LIFETIME" => Some("12h".into()),
        "SESSION_IDLE_TIMEOUT" => Some("30m".into()),
        _ => None,
    })
    .unwrap();
    assert_eq!(settings.sessions.max_lifetime, Some(12 * 3600));
    assert_eq!(settings.sessions.idle_timeout, 1800);
    let defaults =
        chronos::config::Settings::from_source(|k| (k == "COOKIE_MAX_AGE").then(|| "900".into()))
            .unwrap();
    assert_eq!(
        defaults.sessions.idle_timeout, 900,
        "COOKIE_MAX_AGE by default"
    );
    assert_eq!(defaults.sessions.max_lifetime, None);
}

#[tokio::test]
async fn a_refresh_past_the_lifetime_ends_the_session_so_a_second_try_is_no_reuse_alarm() {
    let app = spawn_app_with(&[
        ("SESSION_MAX_LIFETIME", "2"),
        ("REFRESH_REUSE_INTERVAL_SECONDS", "0"),
        ("METRICS_BIND", "127.0.0.1:0"),
    ])
    .await;
    create_user(&app, EMAIL).await;
    let mut laptop = Browser::new(&app);
    laptop.sign_in(EMAIL, PASSWORD).await;
    let other_tab = laptop.clone_jar();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(laptop.refresh().await.status(), 401);
    let mut other_tab = other_tab;
    assert_eq!(other_tab.refresh().await.status(), 401);
    let (metrics, _) = app.scrape().await;
    assert_eq!(
        metrics
            .get("chronos_refresh_reuse_detected_total")
            .copied()
            .unwrap_or(0.0),
        0.0
    );
}

#[tokio::test]
async fn a_device_bound_session_past_its_lifetime_is_told_to_stop() {
    use crate::dbsc::{DeviceKey, dbsc_refresh, post_proof, registration_of};
    let app = spawn_app_with(&[("DBSC", "on"), ("SESSION_MAX_LIFETIME", "3")]).await;
    create_user(&app, EMAIL).await;
    let mut browser = Browser::new(&app);
    let code = browser.obtain_code(EMAIL, PASSWORD).await;
    let offer = registration_of(&browser.exchange(&code).await).unwrap();
    let key = DeviceKey::es256();
    let bound = post_proof(
        &mut browser,
        &offer.path,
        Some(&key.registration_proof(&offer.challenge)),
    )
    .await;
    assert_eq!(bound.status(), 200);
    let session_id = bound.json::<Value>().await.unwrap()["session_identifier"]
        .as_str()
        .unwrap()
        .to_string();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let ended = dbsc_refresh(&mut browser, "/auth/dbsc/refresh", &session_id, None).await;
    assert_eq!(
        ended.json::<Value>().await.unwrap(),
        serde_json::json!({"continue": false})
    );
}
