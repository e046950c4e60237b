//! Against a real, certified OpenID provider (npm oidc-provider on
//! loopback): a real Chromium signs in through the provider's own login
//! and consent pages, reloads, refreshes and logs out, after which the
//! provider's introspection shows the refresh token Chronos held revoked;
//! then a logout at the provider reaches Chronos by back-channel and the
//! copied cookies stop working within a second.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::support::*;

const SECRET: &str = "chronos provider test secret";

/// The provider's process, stopped when dropped.
struct Provider(Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_provider(op_port: u16, frontend: &str, api: &str) -> Provider {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut child = Command::new("node")
        .arg(format!("{root}/tests/browser/oidc-provider.mjs"))
        .env("OP_PORT", op_port.to_string())
        .env("RP_REDIRECT_URI", format!("{frontend}/auth/web/callback"))
        .env("RP_LOGOUT_URI", format!("{frontend}/login"))
        .env("RP_BACKCHANNEL", format!("{api}/auth/backchannel-logout"))
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_until_ready(&mut child, "the OpenID provider", "listening");
    Provider(child)
}

#[test]
fn chromium_signs_in_through_a_real_openid_provider_and_every_logout_reaches_where_it_should() {
    if let Some(reason) = missing_browser_tooling() {
        return skip_or_fail("OpenID provider test", &reason);
    }
    let root = env!("CARGO_MANIFEST_DIR");
    if !Path::new(&format!("{root}/tests/browser/node_modules/oidc-provider")).exists() {
        return skip_or_fail(
            "OpenID provider test",
            "oidc-provider not installed (npm ci --prefix tests/browser)",
        );
    }
    let (op_port, api_port, frontend_port) = (free_port(), free_port(), free_port());
    let api = format!("http://localhost:{api_port}");
    let frontend = format!("http://localhost:{frontend_port}");
    let op = format!("http://127.0.0.1:{op_port}");
    // Chronos calls the back-channel URI on 127.0.0.1 (the provider's view).
    let _provider = start_provider(op_port, &frontend, &format!("http://127.0.0.1:{api_port}"));
    let _server = spawn_binary(&[
        ("BIND", &format!("127.0.0.1:{api_port}")),
        ("PUBLIC_URL", &api),
        ("FRONTEND_URL", &frontend),
        ("IDENTITY_PROVIDER", "oidc"),
        ("OIDC_ISSUER", &op),
        ("OIDC_CLIENT_ID", "chronos"),
        ("OIDC_CLIENT_SECRET", SECRET),
        ("OIDC_SCOPES", "openid email profile offline_access"),
        ("OIDC_AUTH_PARAMS", "prompt=consent"),
    ]);
    let output = Command::new("node")
        .arg(format!("{root}/tests/browser/oidc-signin.mjs"))
        .env("CHRONOS_URL", &api)
        .env("FRONTEND_PORT", frontend_port.to_string())
        .env("OP_URL", &op)
        .env("OP_SECRET", SECRET)
        .output()
        .unwrap();
    let stdout = script_passed(
        &output,
        &[
            "signed in as ann@example.com",
            "provider refresh token active before logout: true",
            "after reload, session 200 ann@example.com",
            "browser: refresh 200",
            "after refresh, session 200 ann@example.com",
            "browser: logout 200 Logged out",
            "after logout, session 401",
            "provider refresh token active after logout: false",
            "copied cookies before the provider logout: 200,200,200",
            "copied cookies after the provider logout: 401,401,401",
            "backchannel.success",
            "at the provider's end_session_endpoint with id_token_hint: yes",
            "after RP-initiated logout, landed on /login",
            "after RP-initiated logout, session 401",
            "after RP-initiated logout, the provider asks to sign in: yes",
        ],
    );
    let took: u64 = stdout
        .split("401,401,401 within ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap();
    assert!(
        took < 1000,
        "the back-channel logout took {took} ms to apply"
    );
}
