//! A real browser (Debian's Chromium, driven by playwright-core) signs in
//! through the sign-in page and logs out. `.ci/run` installs both and sets
//! `REQUIRE_EXTERNAL_TESTS=1`, so CI fails instead of skipping; elsewhere the
//! test says clearly that it skipped.

use std::path::Path;
use std::process::Command;

use crate::helpers::*;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

pub fn skip_or_fail(what: &str, reason: &str) {
    if std::env::var("REQUIRE_EXTERNAL_TESTS").is_ok_and(|v| v == "1") {
        panic!("{what} cannot run: {reason}");
    }
    eprintln!("SKIPPED {what}: {reason}");
}

#[test]
fn chromium_signs_in_through_the_page_and_logs_out() {
    if let Some(reason) = missing_browser_tooling() {
        return skip_or_fail("browser test", &reason);
    }
    let api_port = free_port();
    let frontend_port = free_port();
    let api = format!("http://localhost:{api_port}");
    let frontend = format!("http://localhost:{frontend_port}");
    let server = spawn_binary(&[
        ("BIND", &format!("127.0.0.1:{api_port}")),
        ("PUBLIC_URL", &api),
        ("FRONTEND_URL", &frontend),
    ]);
    let dir = server.data_dir.path().to_string_lossy().to_string();
    let password = "browser test password";
    let added = chronos_command(&[("DATA_DIR", dir.as_str())])
        .args(["user", "add", "browser@example.com"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(format!("{password}\n").as_bytes())?;
            child.wait()
        })
        .unwrap();
    assert!(added.success());

    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("node")
        .arg(format!("{root}/tests/browser/signin.mjs"))
        .env("CHRONOS_URL", &api)
        .env("FRONTEND_PORT", frontend_port.to_string())
        .env("EMAIL", "browser@example.com")
        .env("PASSWORD", password)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("signed in as browser@example.com"));
    assert!(stdout.contains("all cookies cleared"));
}
