//! The GoTrue test server (tests/browser/gotrue-double.mjs, proven faithful
//! to Supabase Auth's wire contract by the official client in the same
//! run), started and controlled from the tests.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use tempfile::TempDir;

use super::{Browser, code_from_location, free_port, wait_until_ready};

pub const APIKEY: &str = "sb_publishable_test";

/// The refresh-token reuse interval, seconds, of every test server unless a
/// test says otherwise: Supabase's default, which the Chronos tests run
/// against and gotrue-contract.mjs proves with the official client.
pub const REUSE_INTERVAL: &str = "10";

pub struct GoTrue {
    pub port: u16,
    child: Option<Child>,
    state: TempDir,
    env: Vec<(String, String)>,
}

/// `Some(reason)` when the Node side cannot run here.
pub fn missing_tooling() -> Option<String> {
    let root = env!("CARGO_MANIFEST_DIR");
    for package in ["jose", "@supabase/auth-js"] {
        if !std::path::Path::new(&format!("{root}/tests/browser/node_modules/{package}")).exists() {
            return Some(format!(
                "{package} not installed (npm ci --prefix tests/browser)"
            ));
        }
    }
    if Command::new("node").arg("--version").output().is_err() {
        return Some("no node on PATH".into());
    }
    None
}

/// Starts a sign-in and consents at the double's "Google" as `login`: the
/// code the frontend gets back.
pub async fn consent_code(browser: &mut Browser, login: &str) -> String {
    let authorize = browser.login_url(None).await;
    let client = browser.client.clone();
    let consent = client.get(&authorize).send().await.unwrap();
    assert_eq!(consent.status(), 302, "{authorize}");
    let location = consent.headers()["location"].to_str().unwrap();
    let consent_url = reqwest::Url::parse(&authorize)
        .unwrap()
        .join(location)
        .unwrap();
    let flow = consent_url
        .query_pairs()
        .find(|(k, _)| k == "flow")
        .unwrap()
        .1
        .to_string();
    let back = client
        .post(consent_url.join("/__google/consent").unwrap())
        .form(&[("flow", flow.as_str()), ("login", login)])
        .send()
        .await
        .unwrap();
    assert_eq!(back.status(), 302);
    code_from_location(&back)
}

impl GoTrue {
    /// Starts a fresh server; `env` adds JWT_SECRET, ACCESS_TTL, or another
    /// REUSE_INTERVAL than [`REUSE_INTERVAL`].
    pub fn start(env: &[(&str, &str)]) -> Self {
        let mut vars = vec![("REUSE_INTERVAL".to_string(), REUSE_INTERVAL.to_string())];
        vars.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let mut server = Self {
            port: free_port(),
            child: None,
            state: TempDir::new().unwrap(),
            env: vars,
        };
        server.spawn();
        server
    }

    fn state_file(&self) -> PathBuf {
        self.state.path().join("state.json")
    }

    fn spawn(&mut self) {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut command = Command::new("node");
        command
            .arg(format!("{root}/tests/browser/gotrue-double.mjs"))
            .env("PORT", self.port.to_string())
            .env("APIKEY", APIKEY)
            .env("STATE_FILE", self.state_file())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &self.env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        wait_until_ready(&mut child, "the GoTrue test server", "listening");
        self.child = Some(child);
    }

    /// Stops the process (connections refused from now on).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port with the same state.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    /// The project URL (`SUPABASE_URL`).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn auth_url(&self) -> String {
        format!("{}/auth/v1", self.url())
    }

    async fn control(&self, path: &str) -> Value {
        reqwest::Client::new()
            .post(format!("{}{path}", self.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Every call made to it: `{"call": "token"|"logout"|"user", ...}`.
    pub async fn calls(&self) -> Vec<Value> {
        let state: Value = reqwest::get(format!("{}/__test/state", self.url()))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        state["calls"].as_array().unwrap().clone()
    }

    pub async fn calls_of(&self, kind: &str) -> Vec<Value> {
        self.calls()
            .await
            .into_iter()
            .filter(|c| c["call"] == kind)
            .collect()
    }

    /// 503 on every Auth API call while on.
    pub async fn outage(&self, on: bool) {
        self.control(&format!("/__test/outage?on={}", u8::from(on)))
            .await;
    }

    /// The next `count` token calls made for `ip` (Sb-Forwarded-For) get 429.
    pub async fn rate_limit_for(&self, ip: &str, count: u32) {
        self.control(&format!("/__test/rate-limit?count={count}&ip={ip}"))
            .await;
    }

    /// The next `count` logouts are answered `status` with error `code`.
    pub async fn answer_logouts(&self, status: u16, code: &str, count: u32) {
        self.control(&format!(
            "/__test/logout-answer?status={status}&code={code}&count={count}"
        ))
        .await;
    }
}

impl Drop for GoTrue {
    fn drop(&mut self) {
        self.stop();
    }
}
