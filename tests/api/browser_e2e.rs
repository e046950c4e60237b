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
