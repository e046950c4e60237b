//! Prometheus metrics on their own listener: the counters move exactly with
//! what clients did (n logouts → n, k refusals → k), labels stay bounded,
//! and nothing is served on the public port.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::*;

const EMAIL: &str = "ann@example.com";

fn value(series: &BTreeMap<String, f64>, key: &str) -> f64 {
    series.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn the_counters_move_exactly_with_what_clients_did() {
    let app = spawn_app_with(&[
        ("METRICS_BIND", "127.0.0.1:0"),
        ("RATE_LIMIT_AUTH", "1000/minute"),
        ("REFRESH_REUSE_INTERVAL_SECONDS", "0"),
    ])
    .await;
    let (before, content_type) = app.scrape().await;
    assert!(content_type.starts_with("application/openmetrics-text"));
    assert_eq!(
        value(&before, r#"chronos_logouts_total{scope="local"}"#),
        0.0
    );
    assert!(value(&before, "process_resident_memory_bytes") > 1e6);
    assert!(value(&before, "process_open_fds") > 0.0);

    create_user(&app, EMAIL).await;
    // Three signed-in browsers log out; two anonymous ones too.
    for _ in 0..3 {
        let mut browser = Browser::new(&app);
        browser.sign_in(EMAIL, PASSWORD).await;
        assert_eq!(browser.session().await.status(), 200);
        assert_eq!(browser.logout().await.status(), 200);
    }
    for _ in 0..2 {
        let response = app.logout().await;
        assert_eq!(response.status(), 200);
    }
    let response = Browser::new(&app).logout_with_scope("none").await;
    assert_eq!(response.status(), 200);

    // A stolen refresh token replayed: reuse detected, the session ends.
    let mut browser = Browser::new(&app);
    browser.sign_in(EMAIL, PASSWORD).await;
    let mut thief = on(&app, &browser);
    assert_eq!(browser.refresh().await.status(), 200);
    assert_eq!(thief.refresh().await.status(), 401);

    // A session ended from the sessions list.
    let mut laptop = Browser::new(&app);
    laptop.sign_in(EMAIL, PASSWORD).await;
    let mut phone = Browser::new(&app);
    phone.sign_in(EMAIL, PASSWORD).await;
    let other = laptop.other_session_id().await;
    let ended = laptop.end_session(&other).await;
    assert_eq!(ended.status(), 200);

    // Paths nobody routes share one label, whatever they are.
    for path in ["/nope", "/auth/nope/1", "/auth/sessions/a/b"] {
        let response = app.call("GET", path).await;
        assert_eq!(response.status(), 404);
    }

    let (after, _) = app.scrape().await;
    let moved = |key: &str| value(&after, key) - value(&before, key);
    assert_eq!(moved(r#"chronos_logouts_total{scope="local"}"#), 5.0);
    assert_eq!(moved(r#"chronos_logouts_total{scope="none"}"#), 1.0);
    assert_eq!(
        moved(r#"chronos_http_requests_total{route="/auth/logout",method="POST",status="200"}"#),
        6.0
    );
    assert_eq!(
        moved(r#"chronos_sessions_ended_total{reason="logout"}"#),
        3.0
    );
    assert_eq!(
        moved(r#"chronos_sessions_ended_total{reason="reuse"}"#),
        1.0
    );
    assert_eq!(moved(r#"chronos_sessions_ended_total{reason="user"}"#), 1.0);
    assert_eq!(moved("chronos_refresh_reuse_detected_total"), 1.0);
    assert_eq!(
        moved(r#"chronos_http_requests_total{route="/auth/refresh",method="POST",status="401"}"#),
        1.0
    );
    assert_eq!(
        moved(
            r#"chronos_http_requests_total{route="/auth/sessions/{id}",method="DELETE",status="200"}"#
        ),
        1.0
    );
    assert_eq!(
        moved(r#"chronos_http_requests_total{route="unmatched",method="GET",status="404"}"#),
        3.0
    );
    assert_eq!(
        moved(r#"chronos_http_request_duration_seconds_count{route="/auth/logout"}"#),
        6.0
    );
    assert_eq!(moved("chronos_revocation_failures_total"), 0.0);
    assert_eq!(value(&after, "chronos_revoked_sessions"), 5.0);
    assert!(
        after.keys().all(|k| !k.contains("/nope")),
        "raw paths never become labels"
    );

    // Not on the public port.
    let public = app.call("GET", "/metrics").await;
    assert_eq!(public.status(), 404);
}

#[tokio::test]
async fn rate_limited_requests_are_counted_one_by_one() {
    let app = spawn_app_with(&[
        ("METRICS_BIND", "127.0.0.1:0"),
        ("RATE_LIMIT_AUTH", "4/minute"),
    ])
    .await;
    let mut browser = Browser::from_address(&app, "127.0.0.7");
    let mut limited = 0;
    for _ in 0..11 {
        let response = browser.logout().await;
        if response.status() == 429 {
            limited += 1;
        }
    }
    assert_eq!(limited, 7);
    let (series, _) = app.scrape().await;
    assert_eq!(
        value(&series, r#"chronos_rate_limited_total{limit="auth"}"#),
        7.0
    );
    assert_eq!(
        value(
            &series,
            r#"chronos_http_requests_total{route="/auth/logout",method="POST",status="429"}"#
        ),
        7.0
    );
    // Refused logouts are not logouts.
    assert_eq!(
        value(&series, r#"chronos_logouts_total{scope="local"}"#),
        4.0
    );
    assert!(value(&series, r#"chronos_rate_limit_keys{limit="auth"}"#) >= 1.0);
}

#[tokio::test]
async fn sessions_an_operator_ends_from_the_cli_are_counted_by_the_server() {
    let app = spawn_app_with(&[("METRICS_BIND", "127.0.0.1:0")]).await;
    create_user(&app, EMAIL).await;
    for _ in 0..2 {
        Browser::new(&app).sign_in(EMAIL, PASSWORD).await;
    }
    let ended = cli(&app, &["user", "logout", EMAIL], None);
    assert!(ended.status.success(), "{ended:?}");
    let key = r#"chronos_sessions_ended_total{reason="operator"}"#;
    let started = Instant::now();
    loop {
        let (series, _) = app.scrape().await;
        if value(&series, key) == 2.0 {
            // Counted once, however often the server re-reads the table.
            tokio::time::sleep(Duration::from_millis(600)).await;
            let (series, _) = app.scrape().await;
            assert_eq!(value(&series, key), 2.0);
            assert_eq!(
                value(&series, r#"chronos_sessions_ended_total{reason="logout"}"#),
                0.0
            );
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(2), "{series:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_bind_must_not_be_the_public_port_and_is_validated() {
    for (bind, metrics) in [
        ("127.0.0.1:8555", "127.0.0.1:8555"),
        ("127.0.0.1:0", "nonsense"),
    ] {
        let output = chronos_command(&[("BIND", bind), ("METRICS_BIND", metrics)])
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains("METRICS_BIND"), "{stderr}");
    }
}

#[tokio::test]
async fn an_unreachable_identity_provider_is_counted_per_failed_call() {
    // An issuer nobody listens on: discovery fails, each login is a 502.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let app = spawn_app_with(&[
        ("METRICS_BIND", "127.0.0.1:0"),
        ("IDENTITY_PROVIDER", "oidc"),
        ("OIDC_ISSUER", issuer.as_str()),
        ("OIDC_CLIENT_ID", "chronos"),
        ("OIDC_CLIENT_SECRET", "secret"),
    ])
    .await;
    for _ in 0..3 {
        let response = Browser::new(&app).start_login(None).await;
        assert_eq!(response.status(), 502);
    }
    let (series, _) = app.scrape().await;
    assert_eq!(
        value(
            &series,
            r#"chronos_provider_failures_total{operation="login"}"#
        ),
        3.0
    );
}
