//! A real browser (Debian's Chromium, driven by playwright-core) signs in
//! through the sign-in page and logs out. `.ci/run` installs both and sets
//! `REQUIRE_EXTERNAL_TESTS=1`, so CI fails instead of skipping; elsewhere the
//! test says clearly that it skipped.

use std::process::Command;

use crate::support::*;

/// Starts the binary with `vars` (beside its address, PUBLIC_URL and
/// FRONTEND_URL) and an account, and runs the web client's `script` in
/// Chromium against it: the script's output, or `None` after saying the
/// test skipped.
fn run_web_client(script: &str, vars: &[(&str, &str)]) -> Option<std::process::Output> {
    if let Some(reason) = missing_browser_tooling() {
        skip_or_fail("browser test", &reason);
        return None;
    }
    let api_port = free_port();
    let frontend_port = free_port();
    let bind = format!("127.0.0.1:{api_port}");
    let api = format!("http://localhost:{api_port}");
    let frontend = format!("http://localhost:{frontend_port}");
    let mut all = vec![
        ("BIND", bind.as_str()),
        ("PUBLIC_URL", api.as_str()),
        ("FRONTEND_URL", frontend.as_str()),
    ];
    all.extend_from_slice(vars);
    let server = spawn_binary(&all);
    let password = "browser test password";
    server.add_user("browser@example.com", password);

    let root = env!("CARGO_MANIFEST_DIR");
    Some(
        Command::new("node")
            .arg(format!("{root}/tests/browser/{script}"))
            .env("CHRONOS_URL", &api)
            .env("FRONTEND_PORT", frontend_port.to_string())
            .env("EMAIL", "browser@example.com")
            .env("PASSWORD", password)
            .output()
            .unwrap(),
    )
}

#[test]
fn chromium_signs_in_through_the_page_and_logs_out() {
    let Some(output) = run_web_client("signin.mjs", &[]) else {
        return;
    };
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
    let Some(output) = run_web_client("dbsc-signin.mjs", &[("DBSC", "on")]) else {
        return;
    };
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

/// Passkeys in Chromium with a CDP virtual authenticator: added on the
/// account page after a password sign-in, renamed, used through the web
/// client (autofill and button) with no second step though TOTP is on, a
/// passkey-only sign-up; a challenge
/// answered twice, an older sign counter, another origin, another
/// account's key and the removed passkey are refused, each for its reason.
#[test]
fn chromium_signs_in_with_a_passkey_and_the_wrong_answers_are_refused() {
    let Some(output) = run_web_client("passkey-signin.mjs", &[("RATE_LIMIT_AUTH", "1000/minute")])
    else {
        return;
    };
    script_passed(
        &output,
        &[
            "password sign-in: signed in as browser@example.com",
            "account page lists: Laptop",
            "renamed: Work laptop",
            "the authenticator holds 1 resident key for localhost",
            "two-step sign-in on, 10 recovery codes",
            "passkey from the email field's autofill (conditional mediation): signed in as browser@example.com",
            "passkey button: signed in as browser@example.com",
            "passkey-only sign-up: signed in as passkey-only@example.com",
            "a challenge answered twice: 200, then 401 The passkey challenge is unknown, used or expired",
            "an answer with an older sign counter: 401 The passkey's sign counter went back",
            "was made for another site",
            "another account's key with this account's handle: 401 The passkey was not accepted",
            "the password asks for the second step",
            "removed on the account page",
            "the removed passkey: This passkey is not registered here",
        ],
    );
}
