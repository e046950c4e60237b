//! The backend-for-frontend proxy (`PROXY_ROUTES`), against a real upstream
//! on its own port: which paths go where, who may call, what the upstream
//! and the browser each receive, streams both ways, failures, WebSockets,
//! and what the operator sees.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite;

use crate::support::upstream::*;
use crate::support::*;

const EMAIL: &str = "ann@example.com";
const FRONTEND: &str = "http://localhost:5173";

/// `/calendar` and `/todos` to the upstream, and one longer prefix inside
/// `/calendar` that goes elsewhere (the longest match wins).
fn routes(upstream: &Upstream) -> String {
    let u = upstream.url("");
    format!("/calendar={u}/api,/calendar/echo/deep={u}/api/echo/longest,/todos={u}/api/echo/todos")
}

async fn proxied_app(upstream: &Upstream, extra: &[(&str, &str)]) -> TestApp {
    let routes = routes(upstream);
    let mut vars = vec![
        ("PROXY_ROUTES", routes.as_str()),
        ("METRICS_BIND", "127.0.0.1:0"),
    ];
    vars.extend_from_slice(extra);
    spawn_app_with(&vars).await
}

async fn signed_in(app: &TestApp) -> Browser {
    create_user(app, EMAIL).await;
    let mut browser = Browser::new(app);
    browser.sign_in(EMAIL, PASSWORD).await;
    browser
}

/// A request as the web client sends it: cookies, and on unsafe methods the
/// CSRF header read from its cookie.
async fn call(browser: &mut Browser, method: Method, path: &str) -> reqwest::Response {
    let unsafe_method = !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let mut request = browser.request(method, path);
    if unsafe_method && let Some(token) = browser.cookie("chronos_csrf") {
        request = request.header("X-CSRF-Token", token);
    }
    browser.send(request).await
}

/// A request line sent as written (no client library normalises its path):
/// the status and body of the answer.
async fn raw_get(app: &TestApp, target: &str, cookie: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nCookie: {cookie}\r\nConnection: close\r\n\r\n",
        app.addr
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").unwrap().1.to_string();
    (status, body)
}

/// Reads `stream` until it has `n` server-sent events (split on blank
/// lines, as the web client does); each event's text and when it came.
async fn read_events(response: reqwest::Response, n: usize) -> Vec<(String, Instant)> {
    let mut chunks = response.bytes_stream();
    let mut pending = String::new();
    let mut events = Vec::new();
    while events.len() < n {
        let chunk = tokio::time::timeout(Duration::from_secs(5), chunks.next())
            .await
            .expect("the next event in time")
            .expect("the stream goes on")
            .unwrap();
        pending.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some((event, rest)) = pending.split_once("\n\n") {
            events.push((event.to_string(), Instant::now()));
            pending = rest.to_string();
        }
    }
    events
}

/// How long until `response`'s body ends or fails, reading what comes.
async fn body_ends_within(response: reqwest::Response, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut chunks = response.bytes_stream();
    loop {
        match tokio::time::timeout(limit, chunks.next()).await {
            Err(_) => panic!("the stream was still open after {limit:?}"),
            Ok(None | Some(Err(_))) => return started.elapsed(),
            Ok(Some(Ok(_))) => assert!(started.elapsed() < limit, "still streaming"),
        }
    }
}

async fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_request_under_a_prefix_reaches_its_upstream_with_the_rest_of_its_path_and_query() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;

    for (path, reached, query) in [
        ("/calendar/echo", "/api/echo", None),
        (
            "/calendar/echo/a/b?x=1&y=%20z&x=2",
            "/api/echo/a/b",
            Some("x=1&y=%20z&x=2"),
        ),
        (
            "/calendar/echo/%C3%A9t%C3%A9",
            "/api/echo/%C3%A9t%C3%A9",
            None,
        ),
        ("/todos", "/api/echo/todos", None),
        ("/todos/", "/api/echo/todos/", None),
        (
            "/todos/todo-lists?q=",
            "/api/echo/todos/todo-lists",
            Some("q="),
        ),
        // The longest prefix wins, at segment boundaries only.
        ("/calendar/echo/deep", "/api/echo/longest", None),
        ("/calendar/echo/deep/x", "/api/echo/longest/x", None),
        ("/calendar/echo/deeper", "/api/echo/deeper", None),
    ] {
        let echo = echoed(call(&mut ann, Method::GET, path).await).await;
        assert_eq!(echo["path"], reached, "{path}");
        assert_eq!(echo["query"].as_str(), query, "{path}");
        assert_eq!(echo["method"], "GET");
    }
    for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        let echo = echoed(call(&mut ann, method.clone(), "/todos/1").await).await;
        assert_eq!(echo["method"], method.as_str());
        assert_eq!(echo["path"], "/api/echo/todos/1");
    }

    // Nothing else is ever forwarded.
    let before = upstream.hits();
    for path in [
        "/calendarx",
        "/calendarx/echo",
        "/todosx",
        "/calendar_",
        "/api/echo",
    ] {
        let response = call(&mut ann, Method::GET, path).await;
        assert_eq!(response.status(), 404, "{path}");
    }
    assert_eq!(
        upstream.hits(),
        before,
        "no request outside the prefixes reached it"
    );
}

#[tokio::test]
async fn upstream_connections_are_kept_alive_and_a_closed_one_is_replaced() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let peer = |echo: &Value| echo["peer"].as_str().unwrap().to_string();
    let first = peer(&echoed(call(&mut ann, Method::GET, "/calendar/echo").await).await);
    for path in ["/calendar/echo/a", "/todos", "/calendar/echo/deep/x"] {
        // One origin: every route's requests share its connections.
        let echo = echoed(call(&mut ann, Method::GET, path).await).await;
        assert_eq!(peer(&echo), first, "{path}: a new connection");
    }
    // A stream the browser left closes its connection (the upstream must
    // learn to stop); the next request gets another, and works.
    let stream = call(&mut ann, Method::GET, "/calendar/events?n=100").await;
    let mut chunks = stream.bytes_stream();
    chunks.next().await.unwrap().unwrap();
    drop(chunks);
    wait_for("the stream ends", Duration::from_secs(2), || {
        upstream.open_streams() == 0
    })
    .await;
    echoed(call(&mut ann, Method::GET, "/calendar/echo").await).await;
    // An upstream that closes after answering: the next request is not a
    // 502 for it.
    for _ in 0..5 {
        let closing = call(&mut ann, Method::GET, "/calendar/closing").await;
        assert_eq!(closing.text().await.unwrap(), "closing");
        echoed(call(&mut ann, Method::GET, "/calendar/echo").await).await;
    }
}

#[tokio::test]
async fn an_upstream_that_answers_before_the_upload_ends_holds_no_other_request() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let token = ann.cookie("chronos_csrf").unwrap();
    // An upload that takes 3 s, answered at once.
    let chunks = futures_util::stream::iter(0..30).then(|_| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(vec![1u8; 1000])
    });
    let request = ann
        .request(Method::POST, "/calendar/early")
        .header("X-CSRF-Token", &token)
        .body(reqwest::Body::wrap_stream(chunks));
    let uploading = tokio::spawn(request.send());
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Its connection is still sending: the next request gets another.
    let started = Instant::now();
    echoed(call(&mut ann, Method::GET, "/calendar/echo").await).await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "waited {took:?} behind the upload"
    );
    let answered = uploading.await.unwrap().unwrap();
    assert_eq!(answered.status(), 202);
}

#[tokio::test]
async fn a_path_that_leaves_its_prefix_after_decoding_is_refused_with_400() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let ann = signed_in(&app).await;
    let cookie = ann.cookie_header();

    // Sent as written: an HTTP library would have normalised the dots.
    let (status, _) = raw_get(&app, "/calendar/echo/plain", &cookie).await;
    assert_eq!(status, 200, "the raw client reaches the upstream");
    let before = upstream.hits();
    for target in [
        "/calendar/..",
        "/calendar/../auth/session",
        "/calendar/echo/../../todos",
        "/calendar/echo/./x",
        "/calendar/%2e%2e/auth/session",
        "/calendar/%2E%2E/auth/session",
        "/calendar/.%2e/x",
        "/calendar/echo%2f..%2f..%2fadmin",
        "/calendar/echo%2F..%2Fx",
        "/calendar/echo/..%5c..%5cx",
        "/calendar/echo\\..\\x",
        "/calendar/echo/%zz",
        "/calendar/echo/%00",
        "/todos/%2e",
        "/calendar/echo/..;/x",
        "/calendar/%2e%2e;jsessionid=1/auth",
        "/calendar/echo//x",
    ] {
        let (status, body) = raw_get(&app, target, &cookie).await;
        assert_eq!(status, 400, "{target}: {body}");
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            body["detail"].as_str().unwrap().len() > 5,
            "{target}: a detail"
        );
    }
    assert_eq!(upstream.hits(), before, "none of them reached the upstream");
}

#[tokio::test]
async fn without_a_valid_session_the_answer_is_401_and_the_upstream_is_never_called() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let before = upstream.hits();

    let mut stranger = Browser::new(&app);
    let mut forger = Browser::new(&app);
    forger
        .jar
        .insert("chronos_session".into(), "eyJhbGciOiJub25lIn0.e30.".into());
    for browser in [&mut stranger, &mut forger] {
        // A CSRF token as the web client holds one before signing in.
        assert_eq!(browser.csrf().await.status(), 200);
        for method in [Method::GET, Method::POST] {
            let response = call(browser, method, "/calendar/echo").await;
            assert_eq!(response.status(), 401);
            assert_eq!(
                response.text().await.unwrap(),
                r#"{"detail":"Not authenticated"}"#
            );
        }
    }
    // The handshake of a WebSocket too.
    let response = stranger
        .client
        .get(app.url("/calendar/ws"))
        .header("Connection", "Upgrade")
        .header("Upgrade", "websocket")
        .header("Sec-WebSocket-Version", "13")
        .header("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        upstream.hits(),
        before,
        "no refused request reached the upstream"
    );

    // The web client's recovery: on 401, refresh once and retry.
    let mut expired = ann.clone_jar();
    expired.jar.remove("chronos_session");
    assert_eq!(
        call(&mut expired, Method::GET, "/calendar/echo")
            .await
            .status(),
        401
    );
    assert_eq!(expired.refresh().await.status(), 200);
    echoed(call(&mut expired, Method::GET, "/calendar/echo").await).await;
    echoed(call(&mut ann, Method::GET, "/calendar/echo").await).await;
}

#[tokio::test]
async fn every_unsafe_method_needs_the_sessions_csrf_token_on_every_route() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let mut bob = Browser::new(&app);
    create_user(&app, "bob@example.com").await;
    bob.sign_in("bob@example.com", PASSWORD).await;
    let bobs_token = bob.cookie("chronos_csrf").unwrap();

    let before = upstream.hits();
    for path in [
        "/calendar/echo",
        "/calendar/echo/deep/x",
        "/todos",
        "/calendar/upload",
    ] {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            for token in [None, Some("forged"), Some(bobs_token.as_str())] {
                let mut request = ann.request(method.clone(), path);
                if let Some(token) = token {
                    request = request.header("X-CSRF-Token", token);
                }
                let response = ann.send(request).await;
                assert_eq!(response.status(), 403, "{method} {path} with {token:?}");
                let detail = error_detail(response).await;
                assert!(detail.contains("CSRF"), "{detail}");
            }
        }
    }
    // Methods beyond the four, however spelt: an upstream's catch-all
    // handler may act on them.
    for method in ["post", "Delete", "PROPFIND", "PURGE", "MOVE"] {
        let request = ann.request(
            Method::from_bytes(method.as_bytes()).unwrap(),
            "/calendar/echo",
        );
        let response = ann.send(request).await;
        assert_eq!(response.status(), 403, "{method}");
    }
    // Without any cookie at all, the token is still asked for first.
    let mut stranger = Browser::new(&app);
    let request = stranger.request(Method::POST, "/calendar/echo");
    let response = stranger.send(request).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        upstream.hits(),
        before,
        "no forged call reached the upstream"
    );

    // With its own token each goes through, and the header stays here.
    let echo = echoed(call(&mut ann, Method::PATCH, "/calendar/echo").await).await;
    assert!(received(&echo, "x-csrf-token").is_none());
    // A GET (no token needed) cannot become another method or path upstream.
    let request = ann
        .request(Method::GET, "/calendar/echo")
        .header("X-HTTP-Method-Override", "DELETE")
        .header("X-HTTP-Method", "DELETE")
        .header("X-Method-Override", "DELETE")
        .header("X-Original-URL", "/admin")
        .header("X-Rewrite-URL", "/admin")
        .header("X-Real-IP", "203.0.113.9");
    let echo = echoed(ann.send(request).await).await;
    for gone in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-real-ip",
    ] {
        assert!(received(&echo, gone).is_none(), "{gone}");
    }
}

#[tokio::test]
async fn origin_fetch_metadata_and_cors_apply_to_proxied_calls() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let token = ann.cookie("chronos_csrf").unwrap();
    let before = upstream.hits();

    let request = ann
        .request(Method::POST, "/calendar/echo")
        .header("X-CSRF-Token", &token)
        .header("Origin", "https://evil.example");
    let response = ann.send(request).await;
    assert_eq!(response.status(), 403);
    let request = ann
        .request(Method::DELETE, "/todos/1")
        .header("X-CSRF-Token", &token)
        .header("Sec-Fetch-Site", "cross-site");
    assert_eq!(ann.send(request).await.status(), 403);
    // A preflight is answered here, for the allowed origin only.
    let preflight = app
        .preflight(
            "/calendar/echo",
            FRONTEND,
            Some("x-csrf-token,content-type"),
        )
        .await;
    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], FRONTEND);
    assert_eq!(
        preflight.headers()["access-control-allow-credentials"],
        "true"
    );
    let refused = app
        .preflight("/calendar/echo", "https://evil.example", None)
        .await;
    assert!(
        refused
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
    assert_eq!(
        upstream.hits(),
        before,
        "neither refusal nor preflight reached it"
    );

    // From the web app: through, with our CORS answer (never the upstream's).
    let request = ann
        .request(Method::POST, "/calendar/echo")
        .header("X-CSRF-Token", &token)
        .header("Origin", FRONTEND)
        .header("Sec-Fetch-Site", "same-site");
    let response = ann.send(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], FRONTEND);
    let request = ann
        .request(Method::GET, "/calendar/headers")
        .header("Origin", FRONTEND);
    let response = ann.send(request).await;
    let allowed: Vec<_> = response
        .headers()
        .get_all("access-control-allow-origin")
        .iter()
        .collect();
    assert_eq!(allowed, [FRONTEND], "the upstream's `*` is not passed on");
}

#[tokio::test]
async fn rate_limit_proxy_budgets_proxied_calls_per_client() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[("RATE_LIMIT_PROXY", "3/minute")]).await;
    let mut ann = signed_in(&app).await;
    for _ in 0..3 {
        echoed(call(&mut ann, Method::GET, "/calendar/echo").await).await;
    }
    let before = upstream.hits();
    let limited = call(&mut ann, Method::GET, "/todos").await;
    assert_eq!(limited.status(), 429);
    assert!(limited.headers().contains_key("retry-after"));
    assert_eq!(
        error_detail(limited).await,
        "Rate limit exceeded: 3 per 1 minute"
    );
    assert_eq!(upstream.hits(), before);
    // The sign-in endpoints keep their own budget; another client its own.
    assert_eq!(ann.session().await.status(), 200);
    let mut other = Browser::from_address(&app, "127.0.0.2");
    other.jar = ann.jar.clone();
    echoed(call(&mut other, Method::GET, "/todos").await).await;
    let (series, _) = app.scrape().await;
    assert_eq!(series["chronos_rate_limited_total{limit=\"proxy\"}"], 1.0);
}

#[tokio::test]
async fn the_upstream_receives_the_sessions_token_and_identity_and_none_of_our_cookies() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let session: Value = ann.session().await.json().await.unwrap();
    let current = ann
        .session_list()
        .await
        .into_iter()
        .find(|s| s["current"] == true)
        .unwrap();
    let access_token = ann.cookie("chronos_session").unwrap();

    let request = ann
        .request(Method::POST, "/calendar/echo/sync?calendar_ids=a,b")
        .header("Cookie", "theme=dark; chronos_flow=x; lang=en")
        .header("X-CSRF-Token", ann.cookie("chronos_csrf").unwrap())
        .header("Authorization", "Bearer forged")
        .header("X-Auth-User-Id", "admin")
        .header("x-auth-user-email", "admin@example.com")
        .header("X-Auth-Session-Id", "other")
        .header("X-Forwarded-For", "203.0.113.9")
        .header("X-Forwarded-Host", "evil.example")
        .header("X-Forwarded-Proto", "https")
        .header("Forwarded", "for=203.0.113.9")
        .header("X-Request-ID", "sync-42")
        .header("Connection", "keep-alive, x-hop")
        .header("X-Hop", "private")
        .header("Keep-Alive", "timeout=5")
        .header("Proxy-Authorization", "Basic Zm9vOmJhcg==")
        .header("TE", "trailers")
        .header("X-App", "kept")
        .header("Content-Type", "application/json")
        .body(r#"{"sync":true}"#);
    let echo = echoed(ann.send(request).await).await;

    assert_eq!(
        received(&echo, "authorization"),
        Some(&*format!("Bearer {access_token}"))
    );
    assert_eq!(
        echo["headers"]["authorization"].as_array().unwrap().len(),
        1
    );
    assert_eq!(
        received(&echo, "x-auth-user-id"),
        session["user"]["id"].as_str()
    );
    assert_eq!(received(&echo, "x-auth-user-email"), Some(EMAIL));
    assert_eq!(received(&echo, "x-auth-session-id"), current["id"].as_str());
    for name in ["x-auth-user-id", "x-auth-user-email", "x-auth-session-id"] {
        assert_eq!(
            echo["headers"][name].as_array().unwrap().len(),
            1,
            "{name} replaced"
        );
    }
    // Our cookies (session, refresh, CSRF, flow) are gone; the others pass.
    assert_eq!(received(&echo, "cookie"), Some("theme=dark; lang=en"));
    assert_eq!(received(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(received(&echo, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        received(&echo, "x-forwarded-host"),
        Some(&*app.addr.to_string())
    );
    assert_eq!(received(&echo, "x-request-id"), Some("sync-42"));
    assert_eq!(received(&echo, "host"), Some(&*upstream.addr.to_string()));
    for gone in [
        "x-csrf-token",
        "x-hop",
        "keep-alive",
        "proxy-authorization",
        "te",
        "forwarded",
        "upgrade",
    ] {
        assert!(received(&echo, gone).is_none(), "{gone}: {echo}");
    }
    assert_eq!(received(&echo, "x-app"), Some("kept"));
    assert_eq!(received(&echo, "content-type"), Some("application/json"));
    assert_eq!(echo["body"], r#"{"sync":true}"#);
    assert_eq!(echo["query"], "calendar_ids=a,b");

    // Someone else's cookie with a byte that is not ASCII passes; ours
    // beside it do not.
    let request = ann.request(Method::GET, "/calendar/echo").header(
        "Cookie",
        reqwest::header::HeaderValue::from_bytes(b"lang=fr\xe9; chronos_csrf=x; chronos_session=y")
            .unwrap(),
    );
    let echo = echoed(ann.send(request).await).await;
    let cookies: Vec<_> = echo["headers"]["cookie"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert!(
        cookies
            .iter()
            .all(|c| !c.as_str().unwrap().contains("chronos_")),
        "{echo}"
    );
    assert!(
        cookies
            .iter()
            .any(|c| c.as_str().unwrap().starts_with("lang=fr")),
        "{echo}"
    );

    // Without a request id of its own, the upstream gets the one we log.
    let response = call(&mut ann, Method::GET, "/calendar/echo").await;
    let ours = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        received(&echoed(response).await, "x-request-id"),
        Some(&*ours)
    );
}

#[tokio::test]
async fn proxy_token_none_sends_no_token_and_a_trusted_proxys_forwarding_is_kept() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(
        &upstream,
        &[("PROXY_TOKEN", "none"), ("TRUSTED_PROXIES", "127.0.0.1/32")],
    )
    .await;
    let mut ann = signed_in(&app).await;
    let request = ann
        .request(Method::GET, "/calendar/echo")
        .header("Authorization", "Bearer forged")
        .header("X-Forwarded-For", "198.51.100.7")
        .header("X-Forwarded-Proto", "https")
        .header("X-Forwarded-Host", "calendar.example");
    let echo = echoed(ann.send(request).await).await;
    assert!(received(&echo, "authorization").is_none(), "{echo}");
    assert_eq!(received(&echo, "x-auth-user-email"), Some(EMAIL));
    assert_eq!(received(&echo, "x-forwarded-for"), Some("198.51.100.7"));
    assert_eq!(received(&echo, "x-forwarded-proto"), Some("https"));
    assert_eq!(
        received(&echo, "x-forwarded-host"),
        Some("calendar.example")
    );
}

#[tokio::test]
async fn the_browser_gets_the_upstreams_answer_without_our_cookies_or_hop_by_hop_headers() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let jar_before = ann.jar.clone();

    // What the upstream really sends (so the assertions below can fail).
    let direct = reqwest::get(upstream.url("/api/headers")).await.unwrap();
    let direct_cookies: Vec<_> = direct.headers().get_all("set-cookie").iter().collect();
    assert_eq!(direct_cookies.len(), 6);
    assert!(direct.headers().contains_key("x-private-hop"));
    assert!(direct.headers().contains_key("keep-alive"));
    assert!(direct.headers().contains_key("proxy-authenticate"));

    let response = call(&mut ann, Method::GET, "/calendar/headers").await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
    assert_eq!(cookies, ["theme=dark; Path=/"]);
    for gone in [
        "x-private-hop",
        "keep-alive",
        "proxy-authenticate",
        "access-control-allow-origin",
    ] {
        assert!(!headers.contains_key(gone), "{gone}");
    }
    assert_eq!(headers["x-kept"], "yes");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers.contains_key("x-request-id"));
    assert_eq!(response.text().await.unwrap(), "headers");
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert_eq!(ann.jar.get(name), jar_before.get(name), "{name} untouched");
    }

    // Status, headers and body as the upstream sent them.
    let response = call(&mut ann, Method::GET, "/calendar/echo").await;
    assert_eq!(response.headers()["x-upstream"], "echo");
    assert_eq!(response.headers()["cache-control"], "private, max-age=5");
    let missing = call(&mut ann, Method::GET, "/calendar/nowhere").await;
    assert_eq!(missing.status(), 404, "the upstream's own 404");
}

#[tokio::test]
async fn an_event_stream_reaches_the_browser_event_by_event() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;

    let started = Instant::now();
    let response = call(&mut ann, Method::POST, "/calendar/events?n=5&every=300").await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let events = read_events(response, 5).await;
    for (i, (event, _)) in events.iter().enumerate() {
        assert_eq!(event, &format!("event: sync\ndata: {{\"i\":{i}}}"));
    }
    // The first at once, each later one when the upstream sent it: nothing
    // waited for the next or for the end.
    assert!(
        events[0].1 - started < Duration::from_millis(250),
        "first event late"
    );
    for pair in events.windows(2) {
        let gap = pair[1].1 - pair[0].1;
        assert!(
            gap > Duration::from_millis(200),
            "events came together: {gap:?}"
        );
    }
}

#[tokio::test]
async fn a_stream_that_stalls_is_not_cut_while_it_is_alive() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[("PROXY_TIMEOUT", "1")]).await;
    let mut ann = signed_in(&app).await;
    let response = call(&mut ann, Method::GET, "/calendar/events?n=3&every=1300").await;
    let events = read_events(response, 3).await;
    assert!(events[2].1 - events[0].1 > Duration::from_millis(2500));
}

#[tokio::test]
async fn request_bodies_stream_to_the_upstream_within_proxy_max_body() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[("PROXY_MAX_BODY", "1000000")]).await;
    let mut ann = signed_in(&app).await;
    let token = ann.cookie("chronos_csrf").unwrap();

    // Far over the 64 KiB our own endpoints take, within PROXY_MAX_BODY.
    let request = ann
        .request(Method::POST, "/calendar/upload")
        .header("X-CSRF-Token", &token)
        .body(vec![7u8; 1_000_000]);
    let answer: Value = ann.send(request).await.json().await.unwrap();
    assert_eq!(answer["bytes"], 1_000_000);
    // Chunked, in pieces that come one by one.
    let chunks = futures_util::stream::iter(0..10).then(|_| async {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, std::io::Error>(vec![1u8; 50_000])
    });
    let request = ann
        .request(Method::POST, "/calendar/upload")
        .header("X-CSRF-Token", &token)
        .body(reqwest::Body::wrap_stream(chunks));
    let answer: Value = ann.send(request).await.json().await.unwrap();
    assert_eq!(answer["bytes"], 500_000);

    // Declared over the limit: refused before the upstream hears of it.
    let before = upstream.hits();
    let request = ann
        .request(Method::POST, "/calendar/upload")
        .header("X-CSRF-Token", &token)
        .body(vec![7u8; 1_000_001]);
    let refused = ann.send(request).await;
    assert_eq!(refused.status(), 413);
    assert_eq!(error_detail(refused).await, "Request body too large");
    assert_eq!(upstream.hits(), before);
    // Chunked over the limit: 413 when it passes it.
    let chunks =
        futures_util::stream::iter(0..30).map(|_| Ok::<_, std::io::Error>(vec![1u8; 50_000]));
    let request = ann
        .request(Method::POST, "/calendar/upload")
        .header("X-CSRF-Token", &token)
        .body(reqwest::Body::wrap_stream(chunks));
    let refused = ann.send(request).await;
    assert_eq!(refused.status(), 413);
    assert_eq!(error_detail(refused).await, "Request body too large");
}

#[tokio::test]
async fn a_client_that_goes_away_cancels_the_upstream_request() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let response = call(&mut ann, Method::GET, "/calendar/events?n=100").await;
    let mut chunks = response.bytes_stream();
    chunks.next().await.unwrap().unwrap();
    assert_eq!(upstream.open_streams(), 1);
    drop(chunks);
    wait_for("the upstream's stream ends", Duration::from_secs(2), || {
        upstream.open_streams() == 0
    })
    .await;
    assert_eq!(upstream.cut_streams(), 1, "it ended before its last event");
}

#[tokio::test]
async fn a_revoked_session_is_refused_and_its_open_stream_cut_within_a_second() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let mut tab = ann.clone_jar();

    // By logout.
    let stream = call(&mut tab, Method::GET, "/calendar/events?n=100").await;
    assert_eq!(stream.status(), 200);
    assert_eq!(ann.logout().await.status(), 200);
    let took = body_ends_within(stream, Duration::from_secs(3)).await;
    assert!(took < Duration::from_secs(1), "cut after {took:?}");
    assert_eq!(
        call(&mut tab, Method::GET, "/calendar/echo").await.status(),
        401
    );
    wait_for("the upstream's stream ends", Duration::from_secs(1), || {
        upstream.open_streams() == 0
    })
    .await;

    // By the operator, from the command line (another process).
    let mut bob = Browser::new(&app);
    create_user(&app, "bob@example.com").await;
    bob.sign_in("bob@example.com", PASSWORD).await;
    let stream = call(&mut bob, Method::GET, "/calendar/events?n=100").await;
    let mut chunks = stream.bytes_stream();
    chunks.next().await.unwrap().unwrap();
    let ended = cli(&app, &["user", "logout", "bob@example.com"], None);
    assert!(ended.status.success());
    let revoked_at = Instant::now();
    loop {
        match tokio::time::timeout(Duration::from_secs(3), chunks.next()).await {
            Err(_) => panic!("still streaming"),
            Ok(None | Some(Err(_))) => break,
            Ok(Some(Ok(_))) => {}
        }
    }
    // The server reads the revocation table every 250 ms.
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_millis(1250), "cut after {took:?}");
    assert_eq!(
        call(&mut bob, Method::GET, "/calendar/echo").await.status(),
        401
    );
}

#[tokio::test]
async fn a_revoked_stream_lets_the_upstream_go_even_when_the_browser_stopped_reading() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    // 64 KiB events every 10 ms to a client that reads only the head:
    // the socket buffers fill and the server stops polling the answer.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "GET /calendar/events?n=100000&every=10&pad=65536 HTTP/1.1\r\nHost: {}\r\nCookie: {}\r\n\r\n",
        app.addr,
        ann.cookie_header()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut first = [0u8; 12];
    stream.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        upstream.open_streams(),
        1,
        "still streaming into full buffers"
    );
    assert_eq!(ann.logout().await.status(), 200);
    wait_for(
        "the upstream's stream is let go",
        Duration::from_millis(1500),
        || upstream.open_streams() == 0,
    )
    .await;
    assert_eq!(upstream.cut_streams(), 1);
    drop(stream);
}

#[tokio::test]
async fn a_session_revoked_on_another_replica_is_cut_here() {
    let upstream = spawn_upstream().await;
    let routes = routes(&upstream);
    let (a, b) = two_sharing(&[("PROXY_ROUTES", &routes)]).await;
    create_user(&a, EMAIL).await;
    let mut on_a = Browser::new(&a);
    on_a.sign_in(EMAIL, PASSWORD).await;
    let mut on_b = on(&b, &on_a);
    let stream = call(&mut on_a, Method::GET, "/calendar/events?n=100").await;
    assert_eq!(stream.status(), 200);
    assert_eq!(on_b.logout().await.status(), 200);
    let took = body_ends_within(stream, Duration::from_secs(3)).await;
    assert!(took < Duration::from_millis(1250), "cut after {took:?}");
    assert_eq!(call(&mut on_a, Method::GET, "/todos").await.status(), 401);
}

#[tokio::test]
async fn upstream_failures_are_502_or_504_never_a_500_or_a_hang() {
    let upstream = spawn_upstream().await;
    let refused = refused_port().await;
    let resetting = resetting_upstream().await;
    let routes = format!(
        "{},/down=http://127.0.0.1:{refused}/x,/reset=http://{resetting}/x",
        routes(&upstream)
    );
    let app = spawn_app_with(&[
        ("PROXY_ROUTES", &routes),
        ("PROXY_TIMEOUT", "1"),
        ("METRICS_BIND", "127.0.0.1:0"),
    ])
    .await;
    let mut ann = signed_in(&app).await;
    for path in ["/down", "/down/a?b=c", "/reset/a"] {
        let response = call(&mut ann, Method::GET, path).await;
        assert_eq!(response.status(), 502, "{path}");
        assert_eq!(
            response.text().await.unwrap(),
            r#"{"detail":"Bad gateway"}"#
        );
    }
    let started = Instant::now();
    let response = call(&mut ann, Method::GET, "/calendar/slow?ms=4000").await;
    assert_eq!(response.status(), 504);
    assert_eq!(
        response.text().await.unwrap(),
        r#"{"detail":"Gateway timeout"}"#
    );
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // And the next request is served as ever.
    echoed(call(&mut ann, Method::GET, "/calendar/echo").await).await;
    let (series, _) = app.scrape().await;
    assert_eq!(
        series["chronos_proxy_requests_total{route=\"/down\",status=\"502\"}"],
        2.0
    );
    assert_eq!(
        series["chronos_proxy_requests_total{route=\"/reset\",status=\"502\"}"],
        1.0
    );
    assert_eq!(
        series["chronos_proxy_requests_total{route=\"/calendar\",status=\"504\"}"],
        1.0
    );
}

#[tokio::test]
async fn a_websocket_is_authenticated_origin_checked_tunnelled_and_closed_on_revocation() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    let url = format!("ws://{}/calendar/ws", app.addr);
    let handshake = |cookie: Option<&str>, origin: &str| {
        let mut request =
            tungstenite::client::IntoClientRequest::into_client_request(url.as_str()).unwrap();
        if let Some(cookie) = cookie {
            request
                .headers_mut()
                .insert("cookie", cookie.parse().unwrap());
        }
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        request
    };
    let status_of = |error: tungstenite::Error| match error {
        tungstenite::Error::Http(response) => response.status().as_u16(),
        other => panic!("{other}"),
    };

    let before = upstream.hits();
    let refused = tokio_tungstenite::connect_async(handshake(None, FRONTEND)).await;
    assert_eq!(status_of(refused.unwrap_err()), 401);
    let cookie = ann.cookie_header();
    let refused =
        tokio_tungstenite::connect_async(handshake(Some(&cookie), "https://evil.example")).await;
    assert_eq!(
        status_of(refused.unwrap_err()),
        403,
        "cross-site WebSocket hijacking"
    );
    assert_eq!(upstream.hits(), before);

    let (mut socket, response) =
        tokio_tungstenite::connect_async(handshake(Some(&cookie), FRONTEND))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "again"] {
        socket.send(tungstenite::Message::text(text)).await.unwrap();
        let reply = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(reply.into_text().unwrap().as_str(), format!("echo: {text}"));
    }
    socket
        .send(tungstenite::Message::binary(vec![1u8, 2, 3]))
        .await
        .unwrap();
    let reply = socket.next().await.unwrap().unwrap();
    assert_eq!(reply.into_data().as_ref(), [1, 2, 3]);
    assert_eq!(upstream.open_sockets(), 1);

    assert_eq!(ann.logout().await.status(), 200);
    let revoked_at = Instant::now();
    match tokio::time::timeout(Duration::from_secs(3), socket.next()).await {
        Err(_) => panic!("the socket stayed open"),
        Ok(None | Some(Err(_)) | Some(Ok(tungstenite::Message::Close(_)))) => {}
        Ok(Some(Ok(other))) => panic!("unexpected {other:?}"),
    }
    let took = revoked_at.elapsed();
    assert!(took < Duration::from_secs(1), "closed after {took:?}");
    wait_for(
        "the upstream's socket closes",
        Duration::from_secs(2),
        || upstream.open_sockets() == 0,
    )
    .await;
}

#[tokio::test]
async fn metrics_count_proxied_requests_by_route_and_status_and_time_the_upstream() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let mut ann = signed_in(&app).await;
    for _ in 0..3 {
        echoed(call(&mut ann, Method::GET, "/calendar/echo").await).await;
    }
    call(&mut ann, Method::GET, "/calendar/nowhere").await;
    echoed(call(&mut ann, Method::GET, "/todos").await).await;
    call(&mut Browser::new(&app), Method::GET, "/todos").await;

    let (series, _) = app.scrape().await;
    let count = |route: &str, status: &str| {
        series
            .get(&format!(
                "chronos_proxy_requests_total{{route=\"{route}\",status=\"{status}\"}}"
            ))
            .copied()
    };
    assert_eq!(count("/calendar", "200"), Some(3.0));
    assert_eq!(count("/calendar", "404"), Some(1.0));
    assert_eq!(count("/todos", "200"), Some(1.0));
    assert_eq!(count("/todos", "401"), Some(1.0));
    // Upstream latency for the answers an upstream gave (not the 401).
    assert_eq!(
        series["chronos_proxy_upstream_duration_seconds_count{route=\"/calendar\"}"],
        4.0
    );
    assert_eq!(
        series["chronos_proxy_upstream_duration_seconds_count{route=\"/todos\"}"],
        1.0
    );
    // Proxied requests are not counted as requests to our own routes.
    assert!(
        !series
            .keys()
            .any(|k| k.starts_with("chronos_http_requests_total") && k.contains("/calendar"))
    );
}

#[test]
fn the_access_line_names_the_route_and_upstream_and_no_log_line_holds_a_token() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let upstream = runtime.block_on(spawn_upstream());
    let refused = runtime.block_on(refused_port());
    let routes = format!("{},/down=http://127.0.0.1:{refused}/x", routes(&upstream));
    let port = free_port();
    let server = spawn_binary(&[
        ("BIND", &format!("127.0.0.1:{port}")),
        ("PROXY_ROUTES", &routes),
        ("PROXY_TIMEOUT", "1"),
    ]);
    server.add_user(EMAIL, PASSWORD);
    let (token, refresh) = runtime.block_on(async {
        let mut ann = Browser::at(&server.url(""));
        ann.sign_in(EMAIL, PASSWORD).await;
        echoed(call(&mut ann, Method::GET, "/calendar/echo?secret=q").await).await;
        assert_eq!(call(&mut ann, Method::GET, "/down").await.status(), 502);
        assert_eq!(
            call(&mut ann, Method::GET, "/calendar/slow?ms=3000")
                .await
                .status(),
            504
        );
        (
            ann.cookie("chronos_session").unwrap(),
            ann.cookie("chronos_refresh").unwrap(),
        )
    });
    std::thread::sleep(Duration::from_millis(300));
    let lines = server.lines();
    let access = |path: &str| {
        lines
            .iter()
            .find(|l| l.contains(&format!("path={path} ")))
            .unwrap_or_else(|| panic!("no access line for {path}: {lines:#?}"))
            .clone()
    };
    let echo = access("/calendar/echo");
    assert!(echo.contains("status=200 "), "{echo}");
    assert!(
        echo.contains(" route=/calendar upstream_status=200 upstream_us="),
        "{echo}"
    );
    let down = access("/down");
    assert!(
        down.contains("status=502 ") && down.contains(" route=/down upstream_status=0 "),
        "{down}"
    );
    let slow = access("/calendar/slow");
    assert!(
        slow.contains("status=504 ") && slow.contains(" upstream_status=0 "),
        "{slow}"
    );
    assert!(
        lines.iter().any(|l| l.contains("upstream failed")),
        "the failure is logged"
    );
    for line in &lines {
        assert!(!line.contains(&token), "a token in the log: {line}");
        assert!(!line.contains(&refresh), "a token in the log: {line}");
        assert!(
            !line.contains("secret=q"),
            "a query string in the log: {line}"
        );
    }
}

#[tokio::test]
async fn openapi_documents_the_proxied_prefixes_and_their_answers() {
    let upstream = spawn_upstream().await;
    let app = proxied_app(&upstream, &[]).await;
    let document: Value = app.openapi().await.json().await.unwrap();
    for path in [
        "/calendar",
        "/calendar/{path}",
        "/todos",
        "/todos/{path}",
        "/calendar/echo/deep",
    ] {
        let item = &document["paths"][path];
        assert!(item.is_object(), "{path} documented");
    }
    let resolve = |reference: &Value| -> Value {
        let name = reference["$ref"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap();
        document["components"]["pathItems"][name].clone()
    };
    let item = resolve(&document["paths"]["/calendar/{path}"]);
    for method in ["get", "post", "put", "patch", "delete"] {
        let responses = &item[method]["responses"];
        for status in ["401", "403", "413", "502", "504"] {
            assert!(responses[status].is_object(), "{method} {status}");
        }
    }
    // Without PROXY_ROUTES, nothing of it.
    let plain = spawn_app().await;
    let document: Value = plain.openapi().await.json().await.unwrap();
    assert!(document["paths"].get("/calendar").is_none());
}

#[test]
fn a_prefix_over_our_own_paths_stops_start_up_naming_proxy_routes() {
    for routes in [
        "/auth=http://127.0.0.1:9/x",
        "/auth/google=http://127.0.0.1:9/x",
        "/=http://127.0.0.1:9/x",
        "/health=http://127.0.0.1:9/x",
        "/.well-known/x=http://127.0.0.1:9/x",
        "/oauth=http://127.0.0.1:9/x",
        "/openapi.json=http://127.0.0.1:9/x",
        "/calendar=ftp://127.0.0.1/x",
        "/calendar",
        "calendar=http://127.0.0.1:9/x",
        "/calendar=http://127.0.0.1:9/x,/calendar=http://127.0.0.1:9/y",
    ] {
        let output = chronos_command(&[("PROXY_ROUTES", routes)])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{routes}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<_> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{routes}: {stderr}");
        assert!(lines[0].contains("PROXY_ROUTES"), "{routes}: {stderr}");
    }
}

#[tokio::test]
async fn chromium_runs_the_web_clients_streaming_sync_through_the_proxy() {
    const WHAT: &str = "proxy browser test";
    if let Some(reason) = missing_browser_tooling() {
        return skip_or_fail(WHAT, &reason);
    }
    let upstream = spawn_upstream().await;
    let (api_port, client_port) = (free_port(), free_port());
    let api = format!("http://localhost:{api_port}");
    let front = format!("http://localhost:{client_port}");
    let routes = routes(&upstream);
    let app = spawn_app_with(&[
        ("BIND", &format!("127.0.0.1:{api_port}")),
        ("PUBLIC_URL", &api),
        ("FRONTEND_URL", &front),
        ("PROXY_ROUTES", &routes),
    ])
    .await;
    create_user(&app, "browser@example.com").await;

    let root = env!("CARGO_MANIFEST_DIR");
    let output = tokio::process::Command::new("node")
        .arg(format!("{root}/tests/browser/proxy-sync.mjs"))
        .env("CHRONOS_URL", &api)
        .env("FRONTEND_PORT", client_port.to_string())
        .env("EMAIL", "browser@example.com")
        .env("PASSWORD", PASSWORD)
        .output()
        .await
        .unwrap();
    script_passed(
        &output,
        &[
            "signed in as browser@example.com",
            "sync 200: events@",
            "events one by one",
            "upstream saw bearer=true our_cookies=false",
            "after logout sync 401",
        ],
    );
}
