//! Debian's real nginx, configured with `examples/nginx-forward-auth.conf`
//! (the configuration README shows), in front of a protected upstream.

use std::path::Path;

use axum::Json;
use axum::routing::get;
use http::HeaderMap;
use serde_json::{Value, json};

use crate::support::*;

const EXAMPLE: &str = include_str!("../../examples/nginx-forward-auth.conf");

/// The protected service: tells who nginx said the user is.
async fn spawn_upstream() -> std::net::SocketAddr {
    let app = axum::Router::new().fallback(get(|headers: HeaderMap| async move {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        Json(json!({
            "calendar": "secret",
            "user_id": header("x-auth-user-id"),
            "email": header("x-auth-user-email"),
            "session_id": header("x-auth-session-id"),
        }))
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn start_nginx(binary: &str, dir: &Path, port: u16, chronos: &str, upstream: &str) -> Nginx {
    let server = EXAMPLE
        .replace("listen 80;", &format!("listen 127.0.0.1:{port};"))
        .replace("127.0.0.1:8000", chronos)
        .replace("127.0.0.1:9000", upstream);
    start_nginx_with(binary, dir, port, &server)
}

#[tokio::test]
async fn nginx_forward_auth_lets_a_signed_in_user_through_and_stops_them_after_logout() {
    let Some(binary) = nginx_binary() else {
        return skip_or_fail("nginx test", "no nginx (apt-get install nginx-light)");
    };
    let app = spawn_app_with(&[("TRUSTED_PROXIES", "127.0.0.1/32")]).await;
    create_user(&app, "ann@example.com").await;
    let upstream = spawn_upstream().await;
    let dir = tempfile::TempDir::new().unwrap();
    let port = free_port();
    let _nginx = start_nginx(
        &binary,
        dir.path(),
        port,
        &app.addr.to_string(),
        &upstream.to_string(),
    );
    let front = format!("http://127.0.0.1:{port}");

    let mut browser = Browser::new(&app);
    let session = browser.sign_in("ann@example.com", PASSWORD).await;
    browser.base = front.clone();

    // Signed in: the upstream answers, and learns who the user is, whatever
    // the client claimed.
    let request = browser
        .request(reqwest::Method::GET, "/calendar/today")
        .header("X-Auth-User-Email", "mallory@example.com");
    let response = browser.send(request).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["calendar"], "secret");
    assert_eq!(body["email"], "ann@example.com");
    assert_eq!(body["user_id"], session["user"]["id"]);
    assert!(!body["session_id"].as_str().unwrap().is_empty());

    // Anonymous: 401 from nginx, the upstream never sees it.
    let anonymous = app
        .client()
        .get(format!("{front}/calendar/today"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // Logout through nginx; the copied cookies then stop working.
    let copied = browser.jar.clone();
    let logout = browser.logout().await;
    assert_eq!(logout.status(), 200);
    let mut replay = Browser::new(&app);
    replay.base = front.clone();
    replay.jar = copied;
    let response = replay.get("/calendar/today").await;
    assert_eq!(response.status(), 401);
}

#[test]
fn the_readme_shows_exactly_the_tested_configuration() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(EXAMPLE.trim_end()),
        "README's nginx block differs from examples/nginx-forward-auth.conf"
    );
}
