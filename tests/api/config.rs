//! The binary as an operator meets it: configuration errors, `--help`,
//! start-up, and logs that never carry a secret.

use std::time::{Duration, Instant};

use crate::support::*;

fn start_failure(vars: &[(&str, &str)]) -> (String, Duration) {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_string_lossy().to_string();
    let mut all = vec![("BIND", "127.0.0.1:0"), ("DATA_DIR", data.as_str())];
    all.extend_from_slice(vars);
    let started = Instant::now();
    let output = chronos_command(&all).output().unwrap();
    let elapsed = started.elapsed();
    assert!(!output.status.success(), "{vars:?} started");
    let stderr = String::from_utf8(output.stderr).unwrap();
    (stderr, elapsed)
}

#[test]
fn invalid_configuration_stops_start_up_with_one_line_naming_the_variable() {
    let secret = "s3cr3t-value-that-is-long-enough-0123456789";
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("RATE_LIMIT_AUTH", "lots please")], "RATE_LIMIT_AUTH"),
        (&[("COOKIE_SAMESITE", "sideways")], "COOKIE_SAMESITE"),
        (
            &[
                ("SESSION_COOKIE_NAME", "__Host-s"),
                ("COOKIE_SECURE", "true"),
                ("COOKIE_DOMAIN", "example.com"),
            ],
            "SESSION_COOKIE_NAME",
        ),
        (
            &[("REFRESH_COOKIE_NAME", "__Host-r")],
            "REFRESH_COOKIE_NAME",
        ),
        (&[("ENVIRONMENT", "production")], "CSRF_SECRET_KEY"),
        (
            &[
                ("ENVIRONMENT", "production"),
                ("CSRF_SECRET_KEY", "too-short"),
            ],
            "CSRF_SECRET_KEY",
        ),
        (
            &[
                ("ENVIRONMENT", "production"),
                ("CSRF_SECRET_KEY", secret),
                ("COOKIE_SECURE", "false"),
            ],
            "COOKIE_SECURE",
        ),
        (
            &[
                ("ENVIRONMENT", "production"),
                ("CSRF_SECRET_KEY", secret),
                ("COOKIE_SAMESITE", "none"),
            ],
            "COOKIE_SAMESITE",
        ),
        (&[("TRUSTED_PROXIES", "10.0.0.0/99")], "TRUSTED_PROXIES"),
        (&[("BIND", "not-an-address")], "BIND"),
        (&[("DATABASE_MIGRATE", "sometimes")], "DATABASE_MIGRATE"),
        (&[("METRICS_BIND", "not-an-address")], "METRICS_BIND"),
    ];
    for (vars, var) in cases {
        let (stderr, elapsed) = start_failure(vars);
        assert!(elapsed < Duration::from_secs(1), "{var}: took {elapsed:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{var}: {stderr}");
        assert!(stderr.contains(var), "{var}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !stderr.contains("too-short"),
            "a secret was echoed: {stderr}"
        );
    }
}

#[test]
fn a_busy_port_is_reported_against_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (stderr, _) = start_failure(&[("BIND", addr.as_str())]);
    assert!(stderr.starts_with("chronos: BIND:"), "{stderr}");
}

/// The documented variables: the table every parser's section declares.
fn documented() -> std::collections::BTreeSet<String> {
    chronos::config::variables()
        .map(|v| v.name.to_string())
        .collect()
}

#[test]
fn help_explains_exactly_the_variables() {
    let output = chronos_command(&[]).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    let listed: std::collections::BTreeSet<String> = help
        .split("Configuration (environment variables):")
        .nth(1)
        .unwrap()
        .lines()
        .filter_map(|line| {
            let name = line.split_whitespace().next()?;
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c == '_')
                .then(|| name.to_string())
        })
        .collect();
    assert_eq!(listed, documented());
}

#[test]
fn with_database_migrate_off_only_chronos_migrate_changes_the_schema() {
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_string_lossy().to_string();
    let vars = [("DATA_DIR", data.as_str()), ("DATABASE_MIGRATE", "off")];
    // A fresh database is not started on: the line says what to run.
    let (stderr, _) = start_failure_in(&vars);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("DATABASE_MIGRATE") && stderr.contains("chronos migrate"),
        "{stderr}"
    );

    let migrate = || {
        let output = chronos_command(&[("DATA_DIR", data.as_str())])
            .arg("migrate")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let first = migrate();
    let count = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .unwrap()
        .count();
    assert!(
        first.contains(&format!("({count} migration(s) applied)")),
        "{first}"
    );
    assert!(migrate().contains("(0 migration(s) applied)"));

    // Now up to date: the server starts without migrating.
    let mut all = vec![("BIND", "127.0.0.1:0")];
    all.extend_from_slice(&vars);
    let mut child = chronos_command(&all)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(line.contains("listening"), "{line}");
}

/// [`start_failure`] on a given DATA_DIR.
fn start_failure_in(vars: &[(&str, &str)]) -> (String, Duration) {
    let mut all = vec![("BIND", "127.0.0.1:0")];
    all.extend_from_slice(vars);
    let started = Instant::now();
    let output = chronos_command(&all).output().unwrap();
    assert!(!output.status.success(), "{vars:?} started");
    (String::from_utf8(output.stderr).unwrap(), started.elapsed())
}

#[test]
fn with_no_configuration_the_server_starts_and_serves() {
    let server = spawn_binary(&[]);
    let started = Instant::now();
    assert_eq!(curl_status(&server.url("/health")), 200);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[test]
fn logs_have_one_line_per_request_and_never_a_cookie_or_token() {
    let server = spawn_binary(&[("RUST_LOG", "info")]);
    let secret = "eyJhbGciOiJFZERTQSJ9.SECRET-SESSION-VALUE.sig";
    let status = std::process::Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-X",
            "POST",
            "-H",
            &format!("Cookie: chronos_session={secret}; chronos_refresh=SECRET-REFRESH"),
            "-H",
            "X-CSRF-Token: SECRET-CSRF",
            "-H",
            "X-Request-ID: log-check-1",
            &server.url("/auth/logout?code=SECRET-CODE"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(300));
    let lines = server.lines();
    let request_lines: Vec<&String> = lines.iter().filter(|l| l.contains("log-check-1")).collect();
    assert_eq!(request_lines.len(), 1, "{lines:#?}");
    let line = request_lines[0];
    for field in ["POST", "/auth/logout", "200", "duration_us"] {
        assert!(line.contains(field), "{field} in {line}");
    }
    for leak in [
        "SECRET-SESSION-VALUE",
        "SECRET-REFRESH",
        "SECRET-CSRF",
        "SECRET-CODE",
    ] {
        assert!(!lines.iter().any(|l| l.contains(leak)), "{leak} logged");
    }
}

/// A blocking GET through curl, for process tests (no runtime in #[test]).
fn curl_status(url: &str) -> u16 {
    let output = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", url])
        .output()
        .unwrap();
    String::from_utf8(output.stdout)
        .unwrap()
        .parse()
        .unwrap_or(0)
}

#[test]
fn readme_and_env_example_document_exactly_the_variables() {
    let root = env!("CARGO_MANIFEST_DIR");
    let readme = std::fs::read_to_string(format!("{root}/README.md")).unwrap();
    let example = std::fs::read_to_string(format!("{root}/.env.example")).unwrap();
    // README's configuration table: its rows' first cells.
    let table = readme
        .split("## Configuration")
        .nth(1)
        .unwrap()
        .split("\n## ")
        .next()
        .unwrap();
    let in_readme: std::collections::BTreeSet<String> = table
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split('`').next())
        .map(String::from)
        .collect();
    assert_eq!(in_readme, documented(), "README's configuration table");
    let in_example: std::collections::BTreeSet<String> = example
        .lines()
        .filter_map(|line| line.strip_prefix('#')?.split_once('='))
        .map(|(name, _)| name.to_string())
        .filter(|name| name.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .collect();
    assert_eq!(in_example, documented(), ".env.example");
}

/// Signs in, rotates the refresh token, then replays the old one with
/// `request_id`: the reuse warning is logged inside the request.
async fn replay_a_refresh_token(server: &Binary, request_id: &str) {
    server.add_user("ann@example.com", PASSWORD);
    let mut browser = Browser::at(&server.url(""));
    browser.sign_in("ann@example.com", PASSWORD).await;
    let stale = browser.jar.clone();
    assert_eq!(browser.refresh().await.status(), 200);
    tokio::time::sleep(Duration::from_millis(20)).await;
    browser.jar = stale;
    let token = browser.cookie("chronos_csrf").unwrap();
    let replay = browser
        .request(reqwest::Method::POST, "/auth/refresh")
        .header("X-CSRF-Token", token)
        .header("X-Request-ID", request_id)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 401);
    assert_eq!(replay.headers()["x-request-id"], request_id);
    tokio::time::sleep(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_line_logged_inside_a_request_carries_its_request_id() {
    let server = spawn_binary(&[("REFRESH_REUSE_INTERVAL_SECONDS", "0")]);
    replay_a_refresh_token(&server, "reuse-check-7").await;
    let lines = server.lines();
    let tagged: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("request_id=reuse-check-7"))
        .collect();
    assert_eq!(
        tagged.len(),
        2,
        "the warning and the access line: {lines:#?}"
    );
    assert!(
        tagged[0].contains("WARN") && tagged[0].contains("reuse detected"),
        "{tagged:?}"
    );
    assert!(tagged[1].contains("status=401"), "{tagged:?}");
}

#[tokio::test]
async fn json_logs_carry_the_request_id_too() {
    let server = spawn_binary(&[
        ("REFRESH_REUSE_INTERVAL_SECONDS", "0"),
        ("LOG_FORMAT", "json"),
    ]);
    replay_a_refresh_token(&server, "reuse-check-8").await;
    let warning = server
        .lines()
        .into_iter()
        .find(|l| l.contains("reuse detected"))
        .expect("the warning was logged");
    let json: serde_json::Value = serde_json::from_str(&warning).unwrap();
    assert_eq!(json["request_id"], "reuse-check-8", "{json}");
}
