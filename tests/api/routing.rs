//! The hot routes are answered ahead of the router; both must give the
//! same answer, byte for byte, for every request.

use std::sync::Arc;

use chronos::routes::{FAST_ROUTES, Routes};
use chronos::security::envelope::EnvelopeLayer;
use tower::Layer;

use crate::support::*;

/// Serves the same state with every request going through the router.
async fn router_only(app: &TestApp) -> String {
    let service = EnvelopeLayer::new(app.state.security.clone())
        .layer(Routes::router_only(Arc::clone(&app.state)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(chronos::server::serve(
        listener,
        move |req, peer| service.serve(req, peer),
        std::future::pending(),
        std::time::Duration::from_secs(1),
    ));
    format!("http://{addr}")
}

/// Status, headers (minus the per-response request id and date, random
/// token values masked) and body.
async fn answer(response: reqwest::Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let status = response.status().as_u16();
    let mut headers: Vec<(String, String)> = response
        .headers()
        .iter()
        .filter(|(name, _)| !matches!(name.as_str(), "x-request-id" | "date"))
        .map(|(name, value)| {
            let value = value.to_str().unwrap().to_string();
            let value = if name == "set-cookie"
                && value.starts_with("chronos_csrf=")
                && !value.starts_with("chronos_csrf=;")
            {
                format!("chronos_csrf=<token>{}", &value[value.find(';').unwrap()..])
            } else {
                value
            };
            (name.to_string(), value)
        })
        .collect();
    headers.sort();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn the_fast_path_and_the_router_answer_alike() {
    let app = spawn_app().await;
    create_user(&app, "ann@example.com").await;
    let mut browser = Browser::new(&app);
    browser.sign_in("ann@example.com", PASSWORD).await;
    let cookies = browser.cookie_header();
    let routed = router_only(&app).await;
    let fast = app.url("");

    let paths: Vec<&str> = FAST_ROUTES.iter().map(|route| route.path).collect();
    assert_eq!(
        paths,
        [
            "/auth/logout",
            "/auth/csrf",
            "/auth/session",
            "/auth/verify"
        ]
    );
    let client = app.client();
    let mut compared = 0;
    for path in paths {
        for method in ["GET", "POST", "HEAD", "DELETE"] {
            for cookie in [
                None,
                Some(cookies.as_str()),
                Some("chronos_session=garbage"),
            ] {
                // Logout last-but-never with the real cookies: it would end the session.
                if path == "/auth/logout" && cookie == Some(cookies.as_str()) {
                    continue;
                }
                let send = |base: &str| {
                    let mut request = client.request(
                        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                        format!("{base}{path}"),
                    );
                    if let Some(cookie) = cookie {
                        request = request.header("Cookie", cookie);
                    }
                    request.header("Origin", "http://localhost:5173").send()
                };
                let a = answer(send(&fast).await.unwrap()).await;
                let b = answer(send(&routed).await.unwrap()).await;
                assert_eq!(a, b, "{method} {path} with {cookie:?}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 4 * 4 * 3 - 4);
}
