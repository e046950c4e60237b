//! "Google" for the token-vault tests: npm oidc-provider with refresh-token
//! rotation, revocation and introspection, a resource server accepting only
//! its active calendar-scoped access tokens, and a RISC transmitter
//! (tests/browser/vault-provider.mjs); and Chronos set up to keep tokens,
//! with helpers for its connected accounts and token exchange.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use super::*;

pub const OP_SECRET: &str = "chronos vault test secret";
pub const FRONTEND: &str = "http://localhost:5173";
pub const SERVICE: (&str, &str) = ("calendar", "the-calendar-services-secret-of-32-chars");
pub const OFFLINE: (&str, &str) = ("webhooks", "the-webhook-workers-secret-of-32-chars");
pub const EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const ACCOUNT: &str = "urn:chronos:params:oauth:token-type:connected-account";

/// `Some(reason)` when the provider cannot run here.
pub fn missing_tooling() -> Option<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    if !Path::new(&format!("{root}/tests/browser/node_modules/oidc-provider")).exists() {
        return Some("oidc-provider not installed (npm ci --prefix tests/browser)".into());
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node on PATH".into());
    }
    None
}

/// "Google", stopped when dropped.
pub struct Google {
    pub url: String,
    child: Child,
    http: reqwest::Client,
}

impl Drop for Google {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Google {
    pub fn start() -> Self {
        let port = free_port();
        let root = env!("CARGO_MANIFEST_DIR");
        let mut child = Command::new("node")
            .arg(format!("{root}/tests/browser/vault-provider.mjs"))
            .env("OP_PORT", port.to_string())
            .env("RP_REDIRECT_URI", format!("{FRONTEND}/auth/web/callback"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_until_ready(&mut child, "the provider", "listening");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            http: client_from(None),
        }
    }

    /// Stops the provider (it is unreachable from now on).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        response.json().await.unwrap()
    }

    /// The person `login` consents at the provider: the code of the
    /// redirect back to the frontend.
    pub async fn consent(&self, authorize: &str, login: &str) -> String {
        let answer = self
            .get(&format!(
                "/__test/consent?login={}&url={}",
                urlencode(login),
                urlencode(authorize)
            ))
            .await;
        let location = reqwest::Url::parse(answer["location"].as_str().unwrap()).unwrap();
        location
            .query_pairs()
            .find(|(k, _)| k == "code")
            .map(|(_, v)| v.to_string())
            .unwrap_or_else(|| panic!("no code in {location}"))
    }

    pub async fn refreshes(&self) -> u64 {
        self.get("/__test/stats").await["refreshes"]
            .as_u64()
            .unwrap()
    }

    pub async fn refresh_active(&self, sub: &str) -> bool {
        self.get(&format!("/__test/refresh-active?sub={sub}")).await["active"]
            .as_bool()
            .unwrap()
    }

    /// The person revokes the app's access at the provider.
    pub async fn revoke(&self, sub: &str) {
        self.get(&format!("/__test/revoke?sub={sub}")).await;
    }

    /// What the calendar API answers for this access token.
    pub async fn calendar(&self, access_token: &str) -> (u16, Value) {
        let response = self
            .http
            .get(format!("{}/calendar", self.url))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        (
            response.status().as_u16(),
            response.json().await.unwrap_or(Value::Null),
        )
    }

    /// A Security Event Token signed by the transmitter (`forged`: by a
    /// key it does not publish).
    pub async fn security_event(&self, body: Value) -> String {
        let response = self
            .http
            .post(format!("{}/__test/risc-token", self.url))
            .json(&body)
            .send()
            .await
            .unwrap();
        let answer: Value = response.json().await.unwrap();
        answer["token"].as_str().unwrap().to_string()
    }
}

pub fn service_clients() -> String {
    format!(
        "{}:{},{}:{}:offline",
        SERVICE.0, SERVICE.1, OFFLINE.0, OFFLINE.1
    )
}

/// Chronos signing people in with "Google", keeping their tokens.
pub async fn vault_app(google: &Google, extra: &[(&str, &str)]) -> TestApp {
    let risc = format!("{}/risc", google.url);
    let clients = service_clients();
    let mut vars = vec![
        ("IDENTITY_PROVIDER", "oidc"),
        ("OIDC_ISSUER", google.url.as_str()),
        ("OIDC_CLIENT_ID", "chronos"),
        ("OIDC_CLIENT_SECRET", OP_SECRET),
        (
            "OIDC_SCOPES",
            "openid email profile offline_access calendar",
        ),
        ("OIDC_AUTH_PARAMS", "prompt=consent"),
        ("PROVIDER_TOKENS", "keep"),
        ("PROVIDER_TOKEN_REFRESH_MARGIN", "10"),
        ("SERVICE_CLIENTS", clients.as_str()),
        ("RISC_ISSUER", risc.as_str()),
        ("RATE_LIMIT_AUTH", "100000/minute"),
    ];
    vars.extend_from_slice(extra);
    spawn_app_with(&vars).await
}

/// Signs in at "Google" as `login`; the browser holds the session.
pub async fn sign_in(google: &Google, browser: &mut Browser, login: &str) -> Value {
    let start = browser.start_login(None).await;
    assert_eq!(start.status(), 200);
    let body: Value = start.json().await.unwrap();
    let code = google
        .consent(body["redirectUrl"].as_str().unwrap(), login)
        .await;
    let response = browser.exchange(&code).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// Connects another "Google" account (`login`) to the browser's person.
pub async fn connect(google: &Google, browser: &mut Browser, login: &str) -> reqwest::Response {
    let start = browser.get("/auth/google/connect").await;
    assert_eq!(start.status(), 200);
    let body: Value = start.json().await.unwrap();
    let authorize = body["redirectUrl"].as_str().unwrap();
    assert!(authorize.contains("prompt=consent"), "{authorize}");
    let code = google.consent(authorize, login).await;
    browser.exchange(&code).await
}

pub async fn accounts(browser: &mut Browser) -> Vec<Value> {
    let response = browser.get("/auth/accounts").await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    body["accounts"].as_array().unwrap().clone()
}

pub fn account_of<'a>(accounts: &'a [Value], email: &str) -> &'a Value {
    accounts
        .iter()
        .find(|a| a["email"] == email)
        .unwrap_or_else(|| panic!("no account {email} in {accounts:?}"))
}

/// `POST /oauth/token` as `client` with these form fields.
pub async fn exchange(
    app: &TestApp,
    client: (&str, &str),
    form: &[(&str, &str)],
) -> (u16, Value, reqwest::header::HeaderMap) {
    let response = app
        .client()
        .post(app.url("/oauth/token"))
        .basic_auth(client.0, Some(client.1))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.json().await.unwrap(), headers)
}

/// The exchange a service makes with the person's access token.
pub async fn exchange_for(app: &TestApp, subject: &str, hint: Option<&str>) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", EXCHANGE),
        ("subject_token_type", ACCESS),
        ("subject_token", subject),
        ("audience", "google"),
    ];
    if let Some(hint) = hint {
        form.push(("login_hint", hint));
    }
    let (status, body, _) = exchange(app, SERVICE, &form).await;
    (status, body)
}

/// Moves an account's stored access token to expire in `seconds` (past
/// when negative): what time would do.
pub async fn expire_in(app: &TestApp, account_id: &str, seconds: i64) {
    use chronos::store::sql::Value as V;
    let at = chronos::unix_now() as i64 + seconds;
    app.state
        .database
        .write(
            "UPDATE connected_accounts SET access_expires_at = $1 WHERE id = $2",
            vec![V::from(at), V::from(account_id)],
        )
        .await
        .unwrap();
    // What this process read of it is stale now too (the snapshot would
    // lapse within a second).
    if let Some(vault) = &app.state.vault {
        vault.forget_snapshots();
    }
}
