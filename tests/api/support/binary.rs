//! The real `chronos` binary: a server process (for what only a process
//! shows: exit codes, stderr, logs) and the operator's CLI on an app's data.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::TestApp;

/// A running `chronos` binary.
pub struct Binary {
    pub child: Child,
    pub addr: SocketAddr,
    pub stdout: std::sync::mpsc::Receiver<String>,
    pub data_dir: TempDir,
}

impl Binary {
    /// Creates an account with `password` in this server's data directory,
    /// as an operator does (`chronos user add`, the password on stdin).
    pub fn add_user(&self, email: &str, password: &str) {
        use std::io::Write;
        let dir = self.data_dir.path().to_string_lossy().to_string();
        let mut child = chronos_command(&[("DATA_DIR", dir.as_str())])
            .args(["user", "add", email])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success());
    }

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

/// Runs the CLI (`chronos ARGS`) on the app's DATA_DIR and database, with
/// `stdin` as its input.
pub fn cli(app: &TestApp, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    use std::io::Write;
    let dir = app.data_dir.path().to_string_lossy().to_string();
    let mut vars = vec![("DATA_DIR", dir.as_str())];
    if let Some(url) = app.env.get("DATABASE_URL") {
        vars.push(("DATABASE_URL", url));
    }
    let mut child = chronos_command(&vars)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}
