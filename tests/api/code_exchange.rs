//! The code exchange (`POST /auth/web/callback`): a code is good once and
//! only for the browser that started the flow; bad bodies get 422; codes
//! and flows in progress survive a restart.

use serde_json::Value;

use crate::support::*;

const EMAIL: &str = "ann@example.com";

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
