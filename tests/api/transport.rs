//! Bounded requests: oversized heads and bodies, and clients that trickle.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Sends raw bytes and reads until the server closes or `limit` passes.
async fn raw_exchange(app: &TestApp, request: &[u8], limit: Duration) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).to_string()
}

#[tokio::test]
async fn a_70_kb_cookie_header_gets_431_with_a_detail() {
    let app = spawn_app().await;
    let response = app
        .logout_with(&format!("chronos_session={}", "a".repeat(70_000)), None)
        .await;
    assert_eq!(response.status(), 431);
    assert!(response.headers().contains_key("x-request-id"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("too large"));
    // And the server is still fine.
    let ok = app.health().await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_head_far_beyond_any_limit_is_refused_not_crashed() {
    let app = spawn_app().await;
    let mut request = b"GET /health HTTP/1.1\r\nHost: x\r\n".to_vec();
    for i in 0..400 {
        request.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "b".repeat(1000)).as_bytes());
    }
    request.extend_from_slice(b"\r\n");
    let answer = raw_exchange(&app, &request, Duration::from_secs(5)).await;
    assert!(
        answer.starts_with("HTTP/1.1 431") || answer.starts_with("HTTP/1.1 400"),
        "{}",
        answer.lines().next().unwrap_or("(connection closed)")
    );
    let ok = app.health().await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_body_over_64_kb_gets_413() {
    let app = spawn_app().await;
    let response = app
        .client()
        .post(app.url("/auth/logout"))
        .header("Content-Type", "application/json")
        .body(vec![b'x'; 64 * 1024 + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert!(response.headers().contains_key("x-request-id"));
    // The unread body is still on the wire: the connection is not reused,
    // and the client is told so (found by the soak: clients that reused it
    // got broken pipes).
    assert_eq!(response.headers()["connection"], "close");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "Request body too large");
}

#[tokio::test]
async fn malformed_requests_are_answered_with_400_not_a_crash() {
    let app = spawn_app().await;
    for garbage in [
        &b"NOT HTTP AT ALL\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"GET /\x01\x02 HTTP/1.1\r\n\r\n",
    ] {
        let answer = raw_exchange(&app, garbage, Duration::from_secs(5)).await;
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
            "{answer}"
        );
    }
    let ok = app.health().await;
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn a_client_that_trickles_its_headers_is_cut_off() {
    let app = spawn_app().await;
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    stream.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
    let started = Instant::now();
    // One header byte every second, never finishing the head.
    let closed_after = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if stream.write_all(b"X").await.is_err() {
            break started.elapsed();
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break started.elapsed(),
            Ok(Ok(_)) => break started.elapsed(), // an error response, then close
            Err(_) => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "still connected after 20 s"
        );
    };
    assert!(closed_after >= Duration::from_secs(5), "{closed_after:?}");
}

#[tokio::test]
async fn a_chunked_body_over_64_kb_gets_413_too() {
    let app = spawn_app().await;
    let mut request = b"POST /auth/logout HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..5 {
        request.extend_from_slice(format!("{:x}\r\n", 20_000).as_bytes());
        request.extend_from_slice(&vec![b'y'; 20_000]);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let answer = raw_exchange(&app, &request, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("Request body too large"), "{answer}");
}

#[tokio::test]
async fn a_body_that_never_finishes_gets_408_instead_of_holding_the_server() {
    let app = spawn_app().await;
    let started = Instant::now();
    let answer = raw_exchange(
        &app,
        b"POST /auth/logout HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"partial\":",
        Duration::from_secs(20),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test]
async fn a_request_without_exactly_one_valid_host_gets_400() {
    let app = spawn_app().await;
    for request in [
        &b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET /health HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\nConnection: close\r\n\r\n",
        b"POST /auth/logout HTTP/1.1\r\nHost: a\r\nHost: a\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        b"GET /auth/session HTTP/1.1\r\nHost: a b/c\r\nConnection: close\r\n\r\n",
        b"GET /health HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n",
    ] {
        let answer = raw_exchange(&app, request, Duration::from_secs(5)).await;
        let first = answer.lines().next().unwrap_or_default().to_string();
        assert!(first.ends_with(" 400 Bad Request"), "{first}");
        assert!(answer.contains("Host header"), "{answer}");
        assert!(answer.to_ascii_lowercase().contains("x-request-id"), "{answer}");
    }
    // One Host (HTTP/1.1), or none in HTTP/1.0, is fine.
    for request in [
        &b"GET /health HTTP/1.1\r\nHost: a.example:8000\r\nConnection: close\r\n\r\n"[..],
        b"GET /health HTTP/1.0\r\n\r\n",
    ] {
        let answer = raw_exchange(&app, request, Duration::from_secs(5)).await;
        assert!(answer.contains(" 200 OK"), "{answer}");
    }
}

#[tokio::test]
async fn long_urls_get_431_up_to_64_kb_and_414_beyond() {
    let app = spawn_app().await;
    for (len, status) in [(40_000, 431), (70_000, 414)] {
        let request = format!(
            "GET /auth/session?q={} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            "a".repeat(len)
        );
        let answer = raw_exchange(&app, request.as_bytes(), Duration::from_secs(5)).await;
        let first = answer.lines().next().unwrap_or_default().to_string();
        assert!(
            first.starts_with(&format!("HTTP/1.1 {status}")),
            "{len}: {first}"
        );
    }
}
