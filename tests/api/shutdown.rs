//! Liveness, readiness and shutdown: `/health` and `/health/ready`, and,
//! through the binary, a SIGTERM that stops accepting while a request in
//! flight still gets its answer, then a clean exit within SHUTDOWN_TIMEOUT.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::support::*;

#[tokio::test]
async fn health_reports_healthy() {
    let app = spawn_app().await;
    let response = app.health().await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "healthy"}));
}

#[tokio::test]
async fn the_readiness_probe_answers_ready_while_serving() {
    let app = spawn_app().await;
    let ready = app.ready().await;
    assert_eq!(ready.status(), 200);
    assert_eq!(ready.headers()["cache-control"], "no-store");
    assert_eq!(ready.text().await.unwrap(), r#"{"status":"ready"}"#);
    let live = app.health().await;
    assert_eq!(live.status(), 200);
}

#[test]
fn sigterm_stops_accepting_finishes_the_request_in_flight_and_exits_0() {
    let mut server = spawn_binary(&[("SHUTDOWN_TIMEOUT", "5")]);
    let mut in_flight = TcpStream::connect(server.addr).unwrap();
    in_flight
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let body = br#"{"code":"not-a-real-code"}"#;
    write!(
        in_flight,
        "POST /auth/web/callback HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.addr,
        body.len()
    )
    .unwrap();
    in_flight.write_all(&body[..5]).unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let signalled = Instant::now();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The listener closes: new connections are refused.
    let refused = loop {
        match TcpStream::connect(server.addr) {
            Err(_) => break true,
            Ok(_) if signalled.elapsed() > Duration::from_secs(2) => break false,
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    assert!(refused, "still accepting two seconds after SIGTERM");
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "exited with a request in flight"
    );

    // The request in flight completes and is answered.
    in_flight.write_all(&body[5..]).unwrap();
    let mut answer = Vec::new();
    let _ = in_flight.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 4"), "{answer}");
    assert!(answer.contains(r#""detail""#), "{answer}");

    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "did not exit within SHUTDOWN_TIMEOUT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status}");
    assert!(
        server.lines().iter().any(|l| l.contains("shutting down")),
        "the log was flushed"
    );
}

#[tokio::test]
async fn sigterm_under_load_fails_no_request_but_refused_connections() {
    let server = spawn_binary(&[
        ("SHUTDOWN_TIMEOUT", "5"),
        ("RATE_LIMIT_AUTH", "1000000/second"),
    ]);
    let url = server.url("/auth/session");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let client = client_from(None);
            let (mut answered, mut refused, mut failed) = (0u32, 0u32, Vec::new());
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                match client.get(&url).send().await {
                    Ok(response) => {
                        assert_eq!(response.status(), 401);
                        answered += 1;
                    }
                    Err(e) if e.is_connect() => {
                        refused += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(e) => failed.push(format!("{e:?}")),
                }
            }
            (answered, refused, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let (mut answered, mut refused, mut failed) = (0, 0, Vec::new());
    for task in tasks {
        let (a, r, f) = task.await.unwrap();
        answered += a;
        refused += r;
        failed.extend(f);
    }
    eprintln!(
        "answered {answered}, refused after close {refused}, failed {}",
        failed.len()
    );
    assert!(answered > 100 && refused > 0);
    assert!(
        failed.is_empty(),
        "{} failed: {:#?}",
        failed.len(),
        &failed[..failed.len().min(3)]
    );
}
