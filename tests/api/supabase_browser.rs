//! Real Chromium against Chronos in Supabase mode (the GoTrue test server):
//! two browsers sign in with overlapping flows, one refreshes and logs out
//! (the logout reaching Supabase), the other stays signed in.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::gotrue::*;
use crate::support::*;

#[tokio::test]
async fn chromium_signs_in_twice_at_once_through_supabase_refreshes_and_logs_out() {
    if let Some(reason) = missing_browser_tooling().or_else(missing_tooling) {
        return skip_or_fail("Supabase browser test", &reason);
    }
    let gotrue = GoTrue::start(&[]);
    let (api_port, frontend_port) = (free_port(), free_port());
    let api = format!("http://localhost:{api_port}");
    let frontend = format!("http://localhost:{frontend_port}");
    let url = gotrue.url();
    let _server = spawn_binary(&[
        ("BIND", &format!("127.0.0.1:{api_port}")),
        ("PUBLIC_URL", &api),
        ("FRONTEND_URL", &frontend),
        ("IDENTITY_PROVIDER", "supabase"),
        ("SUPABASE_URL", &url),
        ("SUPABASE_PUBLISHABLE_KEY", APIKEY),
    ]);
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new("node")
        .arg(format!("{root}/tests/browser/supabase-signin.mjs"))
        .env("CHRONOS_URL", &api)
        .env("FRONTEND_PORT", frontend_port.to_string())
        .env("GOTRUE_URL", &url)
        .output()
        .unwrap();
    script_passed(
        &output,
        &[
            "bob: signed in as bob@example.com",
            "ann: signed in as ann@example.com",
            "after reload, ann's session 200 ann@example.com",
            "ann's refresh 200",
            "after refresh, ann's session 200 ann@example.com",
            "ann's logout 200 Logged out",
            "after logout, ann's session 401",
            "bob's session 200 bob@example.com",
        ],
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gotrue
        .calls_of("logout")
        .await
        .iter()
        .any(|c| c["scope"] == "local" && c["ok"] == true)
    {
        assert!(
            Instant::now() < deadline,
            "the logout did not reach Supabase"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
