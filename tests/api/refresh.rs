//! `POST /auth/refresh`: rotation of the refresh token and all three
//! cookies, the CSRF header it needs, tabs racing on one token, reuse
//! detection ending the family, forged tokens ending nothing, and sessions
//! from before self-describing tokens moving over.

use serde_json::Value;

use crate::support::*;

const EMAIL: &str = "ann@example.com";

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
