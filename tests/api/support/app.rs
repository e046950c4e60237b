//! The real application, in-process on a random port (zero2prod's
//! `spawn_app`), with a private DATA_DIR, or a PostgreSQL schema of its own
//! under `TEST_ALL_ON_POSTGRES`.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chronos::app::{Application, Identity};
use chronos::config::Settings;
use chronos::routes::state::AppState;
use tempfile::TempDir;
use tokio::sync::oneshot;

use super::{Browser, PgSchema};

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

impl TestApp {
    /// One scrape of `/metrics` on `METRICS_BIND`: `name{labels}` → value,
    /// plus the response's content type.
    pub async fn scrape(&self) -> (BTreeMap<String, f64>, String) {
        let addr = self.metrics_addr.expect("METRICS_BIND is set");
        let response = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_string();
        let text = response.text().await.unwrap();
        assert!(
            text.ends_with("# EOF\n"),
            "OpenMetrics text ends with # EOF"
        );
        let mut series = BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = line.rsplit_once(' ').unwrap();
            series.insert(name.to_string(), value.parse().unwrap());
        }
        (series, content_type)
    }
}

/// The API as a client without cookies calls it (a fresh [`Browser`] per
/// request), and the unusual requests tests make by hand.
impl TestApp {
    /// `GET /health`.
    pub async fn health(&self) -> reqwest::Response {
        Browser::new(self).health().await
    }

    /// `GET /health/ready`.
    pub async fn ready(&self) -> reqwest::Response {
        Browser::new(self).ready().await
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> reqwest::Response {
        Browser::new(self).openapi().await
    }

    /// `GET /.well-known/jwks.json`.
    pub async fn jwks(&self) -> reqwest::Response {
        Browser::new(self).jwks().await
    }

    /// `GET /auth/csrf` without cookies.
    pub async fn csrf(&self) -> reqwest::Response {
        Browser::new(self).csrf().await
    }

    /// The token of a `GET /auth/csrf` without cookies (an anonymous one).
    pub async fn csrf_token(&self) -> String {
        let response = self.csrf().await;
        super::cookie_value(&super::set_cookies(response.headers())["chronos_csrf"]).to_string()
    }

    /// `GET /auth/session` without cookies.
    pub async fn session(&self) -> reqwest::Response {
        Browser::new(self).session().await
    }

    /// `GET /auth/verify` without cookies.
    pub async fn verify(&self) -> reqwest::Response {
        Browser::new(self).verify().await
    }

    /// `GET /auth/sessions` without cookies.
    pub async fn sessions(&self) -> reqwest::Response {
        Browser::new(self).sessions().await
    }

    /// `POST /auth/refresh` without cookies.
    pub async fn refresh(&self) -> reqwest::Response {
        Browser::new(self).refresh().await
    }

    /// `POST /auth/logout` without cookies.
    pub async fn logout(&self) -> reqwest::Response {
        Browser::new(self).logout().await
    }

    /// `GET /auth/desktop/callback?{query}`.
    pub async fn desktop_callback(&self, query: &str) -> reqwest::Response {
        Browser::new(self).desktop_callback(query).await
    }

    /// `POST /auth/backchannel-logout` with this form body, as the
    /// provider sends it.
    pub async fn backchannel_logout(&self, body: &str) -> reqwest::Response {
        self.client()
            .post(self.url("/auth/backchannel-logout"))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    /// `POST /auth/logout` with this `Cookie` header and, when given, this
    /// `X-CSRF-Token`: cookies and tokens set by hand, forged or foreign.
    pub async fn logout_with(&self, cookie: &str, csrf: Option<&str>) -> reqwest::Response {
        let mut request = self
            .client()
            .post(self.url("/auth/logout"))
            .header("Cookie", cookie);
        if let Some(token) = csrf {
            request = request.header("X-CSRF-Token", token);
        }
        request.send().await.unwrap()
    }

    /// `GET path` with this `Cookie` header (a token presented by hand).
    pub async fn get_with_cookie(&self, path: &str, cookie: &str) -> reqwest::Response {
        self.client()
            .get(self.url(path))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap()
    }

    /// `POST path` from a page on `origin`, without cookies.
    pub async fn post_from_origin(&self, path: &str, origin: &str) -> reqwest::Response {
        self.client()
            .post(self.url(path))
            .header("Origin", origin)
            .send()
            .await
            .unwrap()
    }

    /// A CORS preflight for a `POST path` from `origin`, asking for these
    /// request headers when given.
    pub async fn preflight(
        &self,
        path: &str,
        origin: &str,
        headers: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client()
            .request(reqwest::Method::OPTIONS, self.url(path))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST");
        if let Some(headers) = headers {
            request = request.header("Access-Control-Request-Headers", headers);
        }
        request.send().await.unwrap()
    }

    /// `METHOD path` and nothing else (unknown routes, wrong methods).
    pub async fn call(&self, method: &str, path: &str) -> reqwest::Response {
        self.client()
            .request(method.parse().unwrap(), self.url(path))
            .send()
            .await
            .unwrap()
    }
}

/// The `detail` of an error answer's JSON body.
pub async fn error_detail(response: reqwest::Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap();
    body["detail"].as_str().unwrap().to_string()
}
