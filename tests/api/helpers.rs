//! Starting the real application on a random port, and talking to it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use chronos::app::{Application, Identity};
use chronos::config::Settings;
use chronos::routes::state::AppState;
use reqwest::header::HeaderMap;
use tempfile::TempDir;
use tokio::sync::oneshot;

pub struct TestApp {
    pub addr: SocketAddr,
    /// `METRICS_BIND`'s address, when set.
    pub metrics_addr: Option<SocketAddr>,
    pub state: Arc<AppState>,
    /// The authority and accounts behind the server.
    pub identity: Identity,
    pub data_dir: TempDir,
    pub env: HashMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    /// With `TEST_ALL_ON_POSTGRES`: the schema this app's database lives in.
    schema: Option<Arc<PgSchema>>,
}

/// A PostgreSQL schema of one test's own, dropped with everything in it
/// when the test ends, so tests run in parallel on one database.
pub struct PgSchema {
    base: String,
    pub name: String,
}

impl PgSchema {
    pub async fn create(base: &str) -> Self {
        let name = format!("chronos_test_{}", uuid::Uuid::new_v4().simple());
        let pool = sqlx::PgPool::connect(base)
            .await
            .expect("POSTGRES_URL answers");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
        Self {
            base: base.to_string(),
            name,
        }
    }

    /// `DATABASE_URL` for a server whose tables live in this schema.
    pub fn url(&self) -> String {
        let join = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{join}options=-csearch_path%3D{}", self.base, self.name)
    }

    /// Runs one statement in the schema (what a test checks directly).
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.url()).await.unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, name) = (self.base.clone(), self.name.clone());
        // Drop may run inside the test's runtime: a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(pool) = sqlx::PgPool::connect(&base).await {
                    let drop = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop)).execute(&pool).await;
                    pool.close().await;
                }
            });
        })
        .join();
    }
}

/// `POSTGRES_URL` (e.g. postgres://postgres@127.0.0.1:5432/test), or the
/// test says SKIPPED (fails under `REQUIRE_EXTERNAL_TESTS=1`).
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var("POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            crate::browser_e2e::skip_or_fail(test, "POSTGRES_URL is not set");
            None
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A client without a cookie jar that does not follow redirects.
    pub fn client(&self) -> reqwest::Client {
        client_from(None)
    }

    /// A client whose requests come from another loopback address.
    pub fn client_from(&self, ip: &str) -> reqwest::Client {
        client_from(Some(ip.parse().unwrap()))
    }

    /// Stops this instance and starts another on the same DATA_DIR and env.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut env = std::mem::take(&mut self.env);
        // Same address, so PUBLIC_URL (the token issuer) stays the same.
        env.insert("BIND".into(), self.addr.to_string());
        let data_dir = std::mem::replace(&mut self.data_dir, TempDir::new().unwrap());
        let schema = self.schema.take();
        let mut app = start(env, data_dir).await;
        app.schema = schema;
        app
    }

    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub fn client_from(ip: Option<IpAddr>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(20));
    if let Some(ip) = ip {
        builder = builder.local_address(ip);
    }
    builder.build().unwrap()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts the app in-process with these variables on top of a clean
/// development environment (random port, private DATA_DIR).
///
/// With `TEST_ALL_ON_POSTGRES=1` and `POSTGRES_URL`, an app without a
/// `DATABASE_URL` of its own gets a fresh PostgreSQL schema instead of the
/// SQLite file: the whole suite, run that way, exercises the PostgreSQL
/// store (tests of SQLite itself then fail, as they should).
pub async fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("BIND".into(), "127.0.0.1:0".into());
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    let mut schema = None;
    if std::env::var_os("TEST_ALL_ON_POSTGRES").is_some()
        && !env.contains_key("DATABASE_URL")
        && let Ok(base) = std::env::var("POSTGRES_URL")
    {
        let created = PgSchema::create(&base).await;
        env.insert("DATABASE_URL".into(), created.url());
        schema = Some(Arc::new(created));
    }
    let mut app = start(env, TempDir::new().unwrap()).await;
    app.schema = schema;
    app
}

/// Not a server variable: milliseconds between this app's reads of the
/// revocation table (`Settings::storage.revocation_poll`, 250 ms unless set
/// here). A long one takes the database path out of the way, so only
/// Redis's announcement can bring another replica's revocation.
pub const TEST_REVOCATION_POLL_MS: &str = "TEST_REVOCATION_POLL_MS";

/// [`TEST_REVOCATION_POLL_MS`]'s value for "never, during a test": an hour.
pub const NO_REVOCATION_POLL: (&str, &str) = (TEST_REVOCATION_POLL_MS, "3600000");

async fn start(env: HashMap<String, String>, data_dir: TempDir) -> TestApp {
    let dir = data_dir.path().to_string_lossy().to_string();
    let mut settings = Settings::from_source(|k| {
        if k == "DATA_DIR" {
            return env.get(k).cloned().or_else(|| Some(dir.clone()));
        }
        env.get(k).cloned()
    })
    .expect("test settings are valid");
    if let Some(ms) = env.get(TEST_REVOCATION_POLL_MS) {
        settings.storage.revocation_poll = Duration::from_millis(ms.parse().unwrap());
    }
    let app = Application::build(settings).await.expect("app starts");
    let addr = app.local_addr();
    let metrics_addr = app.metrics_addr();
    let state = app.state().clone();
    let identity = app.identity().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        app.run_until(async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    TestApp {
        addr,
        metrics_addr,
        state,
        identity,
        data_dir,
        env,
        stop: Some(stop),
        task: Some(task),
        schema: None,
    }
}

/// A number one SQL statement reads from the app's own database (SQLite,
/// or PostgreSQL under `TEST_ALL_ON_POSTGRES`), e.g. `SELECT COUNT(*) FROM outbox`.
pub async fn db_count(app: &TestApp, sql: &'static str) -> i64 {
    use chronos::store::database::Database;
    match &app.state.database {
        Database::Sqlite { pool, .. } => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
        Database::Postgres(pool) => sqlx::query_scalar(sql).fetch_one(pool).await.unwrap(),
    }
}

/// Sleeps until the access token of a session response (`expires_at`,
/// whole seconds) has expired: `exp <= now` is refused.
pub async fn wait_until_expired(session: &serde_json::Value) {
    let exp = session["expires_at"].as_u64().expect("expires_at");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let left = Duration::from_secs(exp).saturating_sub(now);
    tokio::time::sleep(left + Duration::from_millis(50)).await;
}

/// All `Set-Cookie` headers of a response, by cookie name.
pub fn set_cookies(headers: &HeaderMap) -> HashMap<String, String> {
    headers
        .get_all("set-cookie")
        .iter()
        .map(|v| {
            let v = v.to_str().unwrap().to_string();
            let name = v.split('=').next().unwrap().to_string();
            (name, v)
        })
        .collect()
}

/// The attributes of a Set-Cookie line other than value, Max-Age and
/// Expires, normalised for comparison.
pub fn scope_attributes(set_cookie: &str) -> Vec<String> {
    let mut attrs: Vec<String> = set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_ascii_lowercase())
        .filter(|a| !a.starts_with("max-age") && !a.starts_with("expires"))
        .collect();
    attrs.sort();
    attrs
}

pub fn cookie_value(set_cookie: &str) -> &str {
    set_cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
}

pub fn max_age(set_cookie: &str) -> Option<i64> {
    set_cookie.split(';').find_map(|a| {
        let (k, v) = a.trim().split_once('=')?;
        k.eq_ignore_ascii_case("max-age")
            .then(|| v.parse().unwrap())
    })
}

/// Asserts a Set-Cookie line is a clearing one: empty value, Max-Age=0, past Expires.
pub fn assert_cleared(set_cookie: &str) {
    assert_eq!(cookie_value(set_cookie), "", "{set_cookie}");
    assert_eq!(max_age(set_cookie), Some(0), "{set_cookie}");
    assert!(
        set_cookie.contains("Expires=Thu, 01 Jan 1970"),
        "{set_cookie}"
    );
}

/// A running `chronos` binary (for what only a process shows: exit codes,
/// stderr, logs).
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    pub stdout: std::sync::mpsc::Receiver<String>,
    pub data_dir: TempDir,
}

impl Binary {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Log lines printed so far.
    pub fn lines(&self) -> Vec<String> {
        self.stdout.try_iter().collect()
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn chronos_command(vars: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_chronos"));
    cmd.env_clear();
    if let Ok(path) = std::env::var("PATH") {
        cmd.env("PATH", path);
    }
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd
}

/// Starts the binary on a random port and waits for its "listening" line.
pub fn spawn_binary(vars: &[(&str, &str)]) -> Binary {
    let data_dir = TempDir::new().unwrap();
    let dir = data_dir.path().to_string_lossy().to_string();
    let mut all = vec![("BIND", "127.0.0.1:0"), ("DATA_DIR", dir.as_str())];
    all.extend_from_slice(vars);
    let mut child = chronos_command(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let addr = loop {
        let Ok(line) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) else {
            let _ = child.kill();
            panic!("the server did not print its listening line");
        };
        // logfmt `address=127.0.0.1:1234`, or JSON `"address":"127.0.0.1:1234"`.
        let rest = line
            .split("address=")
            .nth(1)
            .or_else(|| line.split("\"address\":\"").nth(1));
        if let Some(rest) = rest {
            let addr = rest.split([' ', '"']).next().unwrap_or_default();
            break addr.parse().unwrap();
        }
    };
    Binary {
        child,
        addr,
        stdout: rx,
        data_dir,
    }
}
