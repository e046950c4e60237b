//! What a test needs from the machine (Chromium and node packages, nginx,
//! PostgreSQL, Redis, IPv6): there, or the test says SKIPPED, and fails
//! under `REQUIRE_EXTERNAL_TESTS=1` (CI), so CI never skips silently.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// Waits (20 s at most) for the child, started with a piped stdout, to
/// print a line containing `ready`; its output is drained from then on.
pub fn wait_until_ready(child: &mut Child, what: &str, ready: &str) {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(line) if line.contains(ready) => return,
            Ok(_) => {}
            Err(_) => panic!("{what} did not start"),
        }
    }
}

/// Says the test skipped, or fails it under `REQUIRE_EXTERNAL_TESTS=1`.
pub fn skip_or_fail(what: &str, reason: &str) {
    if std::env::var("REQUIRE_EXTERNAL_TESTS").is_ok_and(|v| v == "1") {
        panic!("{what} cannot run: {reason}");
    }
    eprintln!("SKIPPED {what}: {reason}");
}

/// `Some(reason)` when the browser test cannot run here.
pub fn missing_browser_tooling() -> Option<String> {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let root = env!("CARGO_MANIFEST_DIR");
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "no Chromium at {chromium} (apt-get install chromium)"
        ));
    }
    if !Path::new(&format!(
        "{root}/tests/browser/node_modules/playwright-core"
    ))
    .exists()
    {
        return Some("playwright-core not installed (npm ci --prefix tests/browser)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node on PATH".into());
    }
    None
}

/// `POSTGRES_URL` (e.g. postgres://postgres@127.0.0.1:5432/test), or the
/// test says SKIPPED (fails under `REQUIRE_EXTERNAL_TESTS=1`).
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip_or_fail(test, "POSTGRES_URL is not set");
            None
        }
    }
}

/// `REDIS_URL` (e.g. redis://127.0.0.1:6379), or the test says SKIPPED
/// (fails under `REQUIRE_EXTERNAL_TESTS=1`).
pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip_or_fail(test, "REDIS_URL is not set");
            None
        }
    }
}

/// A loopback port nobody listens on (for a server started next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What a browser script (`node tests/browser/...`) printed, once shown:
/// the script must have succeeded and printed each of `expected`.
pub fn script_passed(output: &std::process::Output, expected: &[&str]) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for expected in expected {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    stdout
}
