//! Starting the real application on a random port, and talking to it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use std::sync::Arc;

use chronos::app::{Application, Identity};
use chronos::config::Settings;
use chronos::state::AppState;
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
    env: HashMap<String, String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
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
        start(env, data_dir).await
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
pub async fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    let mut env: HashMap<String, String> = HashMap::new();
    env.insert("BIND".into(), "127.0.0.1:0".into());
    for (k, v) in vars {
        env.insert(k.to_string(), v.to_string());
    }
    start(env, TempDir::new().unwrap()).await
}

async fn start(env: HashMap<String, String>, data_dir: TempDir) -> TestApp {
    let dir = data_dir.path().to_string_lossy().to_string();
    let settings = Settings::from_source(|k| {
        if k == "DATA_DIR" {
            return env.get(k).cloned().or_else(|| Some(dir.clone()));
        }
        env.get(k).cloned()
    })
    .expect("test settings are valid");
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
    }
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
