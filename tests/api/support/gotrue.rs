//! The GoTrue test server (tests/browser/gotrue-double.mjs, proven faithful
//! to Supabase Auth's wire contract by the official client in the same
//! run), started and controlled from the tests.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use super::free_port;

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
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) if line.contains("listening") => return,
                Ok(_) => {}
                Err(_) => panic!("the GoTrue test server did not start"),
            }
        }
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
