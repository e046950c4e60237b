//! A real browser (Debian's Chromium, driven by playwright-core) signs in
//! through the sign-in page and logs out. `.ci/run` installs both and sets
//! `REQUIRE_EXTERNAL_TESTS=1`, so CI fails instead of skipping; elsewhere the
//! test says clearly that it skipped.

use std::process::Command;

use crate::support::*;

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
    let password = "browser test password";
    server.add_user("browser@example.com", password);

    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("node")
        .arg(format!("{root}/tests/browser/signin.mjs"))
        .env("CHRONOS_URL", &api)
        .env("FRONTEND_PORT", frontend_port.to_string())
        .env("EMAIL", "browser@example.com")
        .env("PASSWORD", password)
        .output()
        .unwrap();
    script_passed(
        &output,
        &["signed in as browser@example.com", "all cookies cleared"],
    );
}

/// With `DBSC=on`, the web client in Chromium (no hardware key here, so
/// the session stays unbound) signs in, refreshes and logs out as before:
/// the compatibility test of device-bound sessions.
#[test]
fn chromium_without_a_device_key_works_unbound_with_dbsc_on() {
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
        ("DBSC", "on"),
    ]);
    let password = "browser test password";
    server.add_user("browser@example.com", password);

    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("node")
        .arg(format!("{root}/tests/browser/dbsc-signin.mjs"))
        .env("CHRONOS_URL", &api)
        .env("FRONTEND_PORT", frontend_port.to_string())
        .env("EMAIL", "browser@example.com")
        .env("PASSWORD", password)
        .output()
        .unwrap();
    script_passed(
        &output,
        &[
            "signed in as browser@example.com",
            "registration offered: yes",
            "session 200 browser@example.com",
            "refresh 200",
            "after refresh, session 200 browser@example.com",
            "cookies: chronos_csrf, chronos_refresh, chronos_session",
            "dbsc calls: none",
            "logout 200 Logged out",
            "after logout, session 401",
            "cookies left: none",
        ],
    );
}
