//! Signing up through the sign-in page's second form, and turning it off.

use serde_json::Value;

use crate::support::*;

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
