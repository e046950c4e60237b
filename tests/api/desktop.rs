//! The desktop app's hand-off page (`GET /auth/desktop/callback`).

use crate::support::*;

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
