//! PostgreSQL as the durable store (`DATABASE_URL=postgres://...`): the
//! session lifecycle and the CLI on it, replicas racing on one row, two
//! replicas behind nginx, and the database cut mid-run through a TCP proxy
//! (the machine's PostgreSQL is never touched). Each test works in a schema
//! of its own, dropped at the end.
//!
//! Needs `POSTGRES_URL` (e.g. postgres://postgres@127.0.0.1:5432/test) and,
//! for the replica tests, `REDIS_URL`; without them these tests say
//! SKIPPED, or fail under `REQUIRE_EXTERNAL_TESTS=1` (CI).

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::support::*;

const EMAIL: &str = "ann@example.com";

async fn count(schema: &PgSchema, sql: &'static str) -> i64 {
    let pool = schema.pool().await;
    let n = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
    pool.close().await;
    n
}

#[tokio::test]
async fn accounts_sessions_and_revocations_live_in_postgres_and_the_cli_works_on_it() {
    let Some(base) = postgres_url("postgres_lifecycle") else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let url = schema.url();
    let app = spawn_app_with(&[("DATABASE_URL", &url), ("RATE_LIMIT_AUTH", "1000/minute")]).await;

    let added = cli(
        &app,
        &["user", "add", "Ann@Example.com", "--name", "Ann"],
        Some("a long enough password\n"),
    );
    assert!(added.status.success(), "{added:?}");
    assert_eq!(count(&schema, "SELECT COUNT(*) FROM users").await, 1);
    let duplicate = cli(
        &app,
        &["user", "add", "ann@example.com"],
        Some("another password\n"),
    );
    assert!(!duplicate.status.success());

    let mut laptop = Browser::new(&app);
    let session = laptop.sign_in(EMAIL, "a long enough password").await;
    assert_eq!(session["user"]["email"], EMAIL);
    assert_eq!(laptop.session().await.status(), 200);
    let before = laptop.jar.clone();
    assert_eq!(laptop.refresh().await.status(), 200);
    assert_ne!(before["chronos_refresh"], laptop.jar["chronos_refresh"]);
    assert_eq!(count(&schema, "SELECT COUNT(*) FROM sessions").await, 1);

    let mut phone = Browser::new(&app);
    phone.sign_in(EMAIL, "a long enough password").await;
    let listed = cli(&app, &["session", "list", EMAIL], None);
    let table = String::from_utf8_lossy(&listed.stdout).to_string();
    assert_eq!(table.lines().count(), 3, "header + two sessions: {table}");

    // A logout ends the session in the database: after a restart (memory
    // gone) the copied cookies are still refused.
    let copied = laptop.jar.clone();
    assert_eq!(laptop.logout().await.status(), 200);
    assert_eq!(
        count(
            &schema,
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL"
        )
        .await,
        1
    );
    let app = app.restart().await;
    let mut thief = Browser::new(&app);
    thief.jar = copied;
    assert_eq!(thief.session().await.status(), 401);
    assert_eq!(thief.refresh().await.status(), 401);

    // The operator ends the rest from the CLI; the server refuses at once.
    let mut phone = on(&app, &phone);
    assert_eq!(phone.session().await.status(), 200);
    let ended = cli(&app, &["user", "logout", EMAIL], None);
    assert!(
        String::from_utf8_lossy(&ended.stdout).contains("ended 1 session"),
        "{ended:?}"
    );
    refused_after(&mut phone, Duration::from_secs(1)).await;
    let removed = cli(&app, &["user", "remove", EMAIL], None);
    assert!(removed.status.success(), "{removed:?}");
    assert_eq!(count(&schema, "SELECT COUNT(*) FROM users").await, 0);
    assert_eq!(
        count(&schema, "SELECT COUNT(*) FROM sessions").await,
        0,
        "cascaded"
    );
}

#[tokio::test]
async fn with_database_migrate_off_postgres_is_migrated_only_by_chronos_migrate() {
    let Some(base) = postgres_url("postgres_migrate") else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let url = schema.url();
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_string_lossy().to_string();
    let vars = [
        ("BIND", "127.0.0.1:0"),
        ("DATA_DIR", data.as_str()),
        ("DATABASE_URL", url.as_str()),
        ("DATABASE_MIGRATE", "off"),
    ];
    let refused = chronos_command(&vars).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("DATABASE_MIGRATE") && stderr.contains("chronos migrate"),
        "{stderr}"
    );

    let migrate = || {
        let output = chronos_command(&vars[1..3])
            .arg("migrate")
            .output()
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    let count = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert!(migrate().contains(&format!("({count} migration(s) applied)")));
    assert!(migrate().contains("(0 migration(s) applied)"));
    let server = spawn_binary(&vars[2..]);
    assert_eq!(Browser::at(&server.url("")).ready().await.status(), 200);
}

#[tokio::test]
async fn an_unreachable_postgres_stops_start_up_with_one_line_after_the_connect_timeout() {
    // Nothing listens on port 1.
    let dir = tempfile::TempDir::new().unwrap();
    let data = dir.path().to_string_lossy().to_string();
    let started = Instant::now();
    let output = chronos_command(&[
        ("BIND", "127.0.0.1:0"),
        ("DATA_DIR", data.as_str()),
        (
            "DATABASE_URL",
            "postgres://chronos:secret-password@127.0.0.1:1/chronos",
        ),
        ("DATABASE_CONNECT_TIMEOUT", "2"),
    ])
    .output()
    .unwrap();
    let took = started.elapsed();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("secret-password"), "{stderr}");
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

/// Two replicas on one schema: `b` serves `a`'s public URL and keys.
async fn two_on(url: &str, extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    let mut vars = vec![("DATABASE_URL", url), ("RATE_LIMIT_AUTH", "100000/minute")];
    vars.extend_from_slice(extra);
    two_sharing(&vars).await
}

#[tokio::test]
async fn replicas_racing_on_one_session_follow_one_process_rules() {
    let Some(base) = postgres_url("postgres_races") else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let (a, b) = two_on(&schema.url(), &[("REFRESH_REUSE_INTERVAL_SECONDS", "4")]).await;
    create_user(&a, EMAIL).await;

    for round in 0..3 {
        // Twenty refreshes of one token at once, alternating replicas (no
        // Redis: only the database decides): one successor pair.
        let mut ann = Browser::new(&a);
        ann.sign_in(EMAIL, PASSWORD).await;
        let original = ann.jar.clone();
        let mut racing = JoinSet::new();
        for i in 0..20 {
            let mut tab = on(if i % 2 == 0 { &a } else { &b }, &ann);
            racing.spawn(async move {
                let status = tab.refresh().await.status().as_u16();
                (status, tab.jar)
            });
        }
        let mut pairs = std::collections::BTreeSet::new();
        let mut successor = None;
        while let Some(done) = racing.join_next().await {
            let (status, jar) = done.unwrap();
            assert_eq!(status, 200, "round {round}");
            pairs.insert((
                jar["chronos_session"].clone(),
                jar["chronos_refresh"].clone(),
            ));
            successor = Some(jar);
        }
        assert_eq!(pairs.len(), 1, "round {round}: one successor pair");
        let mut next = on(&b, &ann);
        next.jar = successor.unwrap();
        assert_eq!(next.refresh().await.status(), 200);

        if round == 0 {
            // After the reuse interval, the original token is theft: the
            // family ends on both replicas.
            tokio::time::sleep(Duration::from_millis(4100)).await;
            let mut thief = on(&a, &ann);
            thief.jar = original;
            assert_eq!(thief.refresh().await.status(), 401);
            let mut owner = on(&b, &next);
            assert_eq!(owner.refresh().await.status(), 401);
            refused_after(&mut owner, Duration::from_secs(1)).await;
        }
    }

    // One sign-in callback sent to both replicas at once: one session.
    const EXCHANGED: &str = "SELECT COUNT(*) FROM auth_codes WHERE session_id IS NOT NULL";
    let before = count(&schema, EXCHANGED).await;
    for _ in 0..5 {
        let mut ann = Browser::new(&a);
        let code = ann.obtain_code(EMAIL, PASSWORD).await;
        let mut both = JoinSet::new();
        for app in [&a, &b] {
            let mut tab = on(app, &ann);
            let code = code.clone();
            both.spawn(async move { tab.exchange(&code).await.status().as_u16() });
        }
        let mut statuses = Vec::new();
        while let Some(done) = both.join_next().await {
            statuses.push(done.unwrap());
        }
        statuses.sort();
        assert_eq!(statuses[0], 200, "{statuses:?}");
        assert!(statuses[1] >= 400 && statuses[1] < 500, "{statuses:?}");
    }
    assert_eq!(count(&schema, EXCHANGED).await, before + 5);
}

#[tokio::test]
async fn two_replicas_on_postgres_and_redis_behind_nginx_behave_as_one_server() {
    let test = "postgres_nginx";
    let (Some(base), Some(redis)) = (postgres_url(test), redis_url(test)) else {
        return;
    };
    let Some(nginx) = nginx_binary() else {
        return skip_or_fail(test, "no nginx (apt-get install nginx-light)");
    };
    let schema = PgSchema::create(&base).await;
    let url = schema.url();
    behave_as_one_behind_nginx(&redis, &nginx, &[("DATABASE_URL", &url)]).await;
    assert!(count(&schema, "SELECT COUNT(*) FROM revocations").await >= 1);
}

/// Polls until `sql` counts at least one row, for at most `limit`.
async fn eventually(schema: &PgSchema, sql: &'static str, limit: Duration) {
    let started = Instant::now();
    while count(schema, sql).await < 1 {
        assert!(started.elapsed() < limit, "not within {limit:?}: {sql}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn while_postgres_is_cut_sign_in_and_refresh_answer_503_sessions_keep_working_and_logout_is_kept()
 {
    let test = "postgres_cut";
    let (Some(base), Some(redis)) = (postgres_url(test), redis_url(test)) else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let prefix = Prefix::new(&redis);
    let proxy = Proxy::to(&base).await;
    let direct = schema.url();
    let cut = proxy.through(&direct);
    // `a` reaches the database through the proxy; `b` directly. Both share
    // Redis (announcements) and keys.
    let a = spawn_app_with(&[
        ("DATABASE_URL", &cut),
        ("REDIS_URL", &redis),
        ("REDIS_KEY_PREFIX", &prefix.prefix),
        ("RATE_LIMIT_AUTH", "100000/minute"),
    ])
    .await;
    let data_dir = a.data_dir.path().to_string_lossy().to_string();
    let public_url = a.url("");
    let b_vars = [
        ("DATABASE_URL", direct.as_str()),
        ("REDIS_URL", redis.as_str()),
        ("REDIS_KEY_PREFIX", prefix.prefix.as_str()),
        ("RATE_LIMIT_AUTH", "100000/minute"),
        ("DATA_DIR", data_dir.as_str()),
        ("PUBLIC_URL", public_url.as_str()),
    ];
    let b = spawn_app_with(&b_vars).await;
    create_user(&a, EMAIL).await;
    let mut ann = Browser::new(&a);
    ann.sign_in(EMAIL, PASSWORD).await;
    let mut bob = Browser::new(&a);
    bob.sign_in(EMAIL, PASSWORD).await;
    let mut copied_on_a = on(&a, &ann);
    let mut copied_on_b = on(&b, &ann);

    proxy.sever();
    // Sign-in and refresh need the database: 503 with a detail, promptly.
    for path in ["/auth/google/login", "/auth/refresh"] {
        let started = Instant::now();
        let response = if path == "/auth/refresh" {
            bob.post_api(path).await
        } else {
            Browser::new(&a).start_login(None).await
        };
        let took = started.elapsed();
        assert_eq!(response.status(), 503, "{path}");
        assert_eq!(response.headers()["retry-after"], "1");
        let body: serde_json::Value = response.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains("unavailable"),
            "{body}"
        );
        assert!(took < Duration::from_secs(3), "{path} took {took:?}");
    }
    // Sessions are checked from tokens and the revocation set.
    assert_eq!(bob.session().await.status(), 200);
    assert_eq!(bob.verify().await.status(), 200);
    // Logout answers 200 and clears the cookies; the session is refused
    // here at once and on the other replica within 100 ms.
    let logout = ann.logout().await;
    assert_eq!(logout.status(), 200);
    assert_eq!(logout.text().await.unwrap(), r#"{"message":"Logged out"}"#);
    assert!(ann.jar.get("chronos_session").is_none_or(String::is_empty));
    assert_eq!(copied_on_a.session().await.status(), 401);
    refused_after(&mut copied_on_b, Duration::from_millis(100)).await;
    assert_eq!(
        count(&schema, "SELECT COUNT(*) FROM revocations").await,
        0,
        "not stored while cut"
    );

    proxy.restore();
    // Stored once the database is back, without another request.
    eventually(
        &schema,
        "SELECT COUNT(*) FROM revocations",
        Duration::from_secs(10),
    )
    .await;
    eventually(
        &schema,
        "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL",
        Duration::from_secs(1),
    )
    .await;
    // A replica started afterwards, without Redis, refuses it from the
    // database alone; and everything works again.
    let c = spawn_app_with(
        &b_vars[..1]
            .iter()
            .chain(&b_vars[3..])
            .copied()
            .collect::<Vec<_>>(),
    )
    .await;
    let mut late = on(&c, &copied_on_a);
    assert_eq!(late.session().await.status(), 401);
    assert_eq!(late.refresh().await.status(), 401);
    let started = Instant::now();
    while bob.refresh().await.status() != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "refresh did not recover"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Browser::new(&a).sign_in(EMAIL, PASSWORD).await;
}

#[tokio::test]
async fn a_logout_held_during_an_outage_is_stored_after_a_restart() {
    let test = "a_logout_held_during_an_outage_is_stored_after_a_restart";
    let Some(base) = postgres_url(test) else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let proxy = Proxy::to(&base).await;
    let cut = proxy.through(&schema.url());
    let mut app = spawn_app_with(&[("DATABASE_URL", &cut)]).await;
    create_user(&app, EMAIL).await;
    let mut ann = Browser::new(&app);
    ann.sign_in(EMAIL, PASSWORD).await;
    let copied = on(&app, &ann);

    proxy.sever();
    assert_eq!(ann.logout().await.status(), 200);
    // The process stops before the database is back: what it held is in
    // DATA_DIR, not only in its memory.
    app.stop().await;
    assert_eq!(count(&schema, "SELECT COUNT(*) FROM revocations").await, 0);
    proxy.restore();
    let app = app.restart().await;
    eventually(
        &schema,
        "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(count(&schema, "SELECT COUNT(*) FROM revocations").await, 1);
    let mut late = on(&app, &copied);
    assert_eq!(late.session().await.status(), 401);
    assert_eq!(late.refresh().await.status(), 401);
    // Stored: nothing is left held on disk.
    let held = app.data_dir.path().join("held-session-ends");
    assert!(
        std::fs::read_dir(&held).map_or(true, |mut d| d.next().is_none()),
        "still held in {held:?}"
    );
}

/// The files in DATA_DIR/held-session-ends (none when it does not exist).
fn held_files(app: &TestApp) -> Vec<String> {
    let dir = app.data_dir.path().join("held-session-ends");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().to_string())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[tokio::test]
async fn an_operator_command_leaves_the_servers_held_session_ends_to_the_server() {
    let test = "an_operator_command_leaves_the_servers_held_session_ends_to_the_server";
    let Some(base) = postgres_url(test) else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let proxy = Proxy::to(&base).await;
    // The server reaches the database through the proxy; the operator's
    // command directly (the server's link is the one that broke).
    let app = spawn_app_with(&[("DATABASE_URL", &proxy.through(&schema.url()))]).await;
    create_user(&app, EMAIL).await;
    let mut ann = Browser::new(&app);
    ann.sign_in(EMAIL, PASSWORD).await;
    let copied = on(&app, &ann);
    proxy.sever();
    assert_eq!(ann.logout().await.status(), 200);
    let held = held_files(&app);
    assert_eq!(
        held.len(),
        1,
        "the server holds the end in a file of its own"
    );

    let dir = app.data_dir.path().to_string_lossy().to_string();
    let listed = chronos_command(&[("DATA_DIR", dir.as_str()), ("DATABASE_URL", &schema.url())])
        .args(["session", "list"])
        .output()
        .unwrap();
    assert!(listed.status.success(), "{listed:?}");
    assert_eq!(
        held_files(&app),
        held,
        "the server's file is still the server's"
    );

    proxy.restore();
    eventually(
        &schema,
        "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL",
        Duration::from_secs(10),
    )
    .await;
    let mut late = on(&app, &copied);
    assert_eq!(late.session().await.status(), 401);
    let started = Instant::now();
    while !held_files(&app).is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "left held: {:?}",
            held_files(&app)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_global_logout_during_an_outage_refuses_the_users_other_sessions_at_once() {
    let test = "a_global_logout_during_an_outage_refuses_the_users_other_sessions_at_once";
    let Some(base) = postgres_url(test) else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let proxy = Proxy::to(&base).await;
    let app = spawn_app_with(&[
        ("DATABASE_URL", &proxy.through(&schema.url())),
        ("LOGOUT_SCOPE", "global"),
    ])
    .await;
    create_user(&app, EMAIL).await;
    let mut laptop = Browser::new(&app);
    laptop.sign_in(EMAIL, PASSWORD).await;
    let mut phone = Browser::new(&app);
    phone.sign_in(EMAIL, PASSWORD).await;
    let mut phone_copy = on(&app, &phone);

    proxy.sever();
    assert_eq!(laptop.logout().await.status(), 200);
    // The phone's session is the user's too: refused now, from memory.
    assert_eq!(phone_copy.session().await.status(), 401);
    assert_eq!(phone_copy.verify().await.status(), 401);

    // Sessions begun after the logout are not its business, even when it
    // is stored late.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    proxy.restore();
    let mut later = Browser::new(&app);
    later.sign_in(EMAIL, PASSWORD).await;
    eventually(
        &schema,
        "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(
        count(
            &schema,
            "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NOT NULL"
        )
        .await,
        2
    );
    assert_eq!(phone_copy.refresh().await.status(), 401);
    assert_eq!(later.session().await.status(), 200);
    assert_eq!(later.refresh().await.status(), 200);
}

#[tokio::test]
async fn a_global_logout_during_an_outage_is_announced_to_the_other_replicas() {
    let test = "a_global_logout_during_an_outage_is_announced_to_the_other_replicas";
    let (Some(base), Some(redis)) = (postgres_url(test), redis_url(test)) else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let prefix = Prefix::new(&redis);
    let proxy = Proxy::to(&base).await;
    let direct = schema.url();
    let shared = [
        ("REDIS_URL", redis.as_str()),
        ("REDIS_KEY_PREFIX", prefix.prefix.as_str()),
        ("LOGOUT_SCOPE", "global"),
    ];
    // `a` loses the database; `b` keeps it, but nothing is stored there
    // while `a` is cut off: only the announcement can tell `b`.
    let cut = proxy.through(&direct);
    let mut a_vars = vec![("DATABASE_URL", cut.as_str())];
    a_vars.extend_from_slice(&shared);
    let a = spawn_app_with(&a_vars).await;
    let data_dir = a.data_dir.path().to_string_lossy().to_string();
    let public_url = a.url("");
    let mut b_vars = vec![
        ("DATABASE_URL", direct.as_str()),
        ("DATA_DIR", data_dir.as_str()),
        ("PUBLIC_URL", public_url.as_str()),
    ];
    b_vars.extend_from_slice(&shared);
    let b = spawn_app_with(&b_vars).await;
    create_user(&a, EMAIL).await;
    let mut laptop = Browser::new(&a);
    laptop.sign_in(EMAIL, PASSWORD).await;
    let mut phone = Browser::new(&a);
    phone.sign_in(EMAIL, PASSWORD).await;
    let mut phone_on_b = on(&b, &phone);
    assert_eq!(phone_on_b.session().await.status(), 200);

    proxy.sever();
    assert_eq!(laptop.logout().await.status(), 200);
    refused_after(&mut phone_on_b, Duration::from_millis(500)).await;
    assert_eq!(
        count(&schema, "SELECT COUNT(*) FROM revocations").await,
        0,
        "nothing stored yet: b heard it"
    );
}

#[tokio::test]
async fn sessions_made_on_sqlite_refresh_and_log_out_on_postgres_after_migrate_data() {
    let test = "sessions_made_on_sqlite_refresh_and_log_out_on_postgres_after_migrate_data";
    let Some(base) = postgres_url(test) else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let data = tempfile::TempDir::new().unwrap();
    let dir = data.path().to_string_lossy().to_string();
    let sqlite = format!("sqlite://{dir}/chronos.db");
    let mut before = spawn_app_with(&[("DATA_DIR", &dir), ("DATABASE_URL", &sqlite)]).await;
    create_user(&before, EMAIL).await;
    let mut ann = Browser::new(&before);
    ann.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(ann.refresh().await.status(), 200);
    // A session that ended on SQLite stays ended on PostgreSQL.
    let mut ended = Browser::new(&before);
    ended.sign_in(EMAIL, PASSWORD).await;
    let ended_copy = on(&before, &ended);
    assert_eq!(ended.logout().await.status(), 200);
    let public_url = before.url("");
    before.stop().await;

    let migrate = || {
        chronos_command(&[("DATA_DIR", dir.as_str())])
            .args(["migrate-data", "--from", &sqlite, "--to", &schema.url()])
            .output()
            .unwrap()
    };
    let moved = migrate();
    assert!(moved.status.success(), "{moved:?}");
    let said = String::from_utf8_lossy(&moved.stdout);
    assert!(
        said.contains("moved 1 users") && said.contains("2 sessions"),
        "{said}"
    );
    // A target that is not empty is refused, with one line saying why.
    let again = migrate();
    assert!(!again.status.success());
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("not empty"), "{stderr}");

    let after = spawn_app_with(&[
        ("DATA_DIR", &dir),
        ("DATABASE_URL", &schema.url()),
        ("PUBLIC_URL", &public_url),
    ])
    .await;
    let mut ann = on(&after, &ann);
    assert_eq!(ann.session().await.status(), 200);
    assert_eq!(ann.refresh().await.status(), 200, "refreshes on PostgreSQL");
    let copied = on(&after, &ann);
    assert_eq!(ann.logout().await.status(), 200);
    let mut copied = copied;
    assert_eq!(
        copied.session().await.status(),
        401,
        "logs out on PostgreSQL"
    );
    assert_eq!(copied.refresh().await.status(), 401);
    let mut ended_copy = on(&after, &ended_copy);
    assert_eq!(ended_copy.session().await.status(), 401);
    assert_eq!(ended_copy.refresh().await.status(), 401);
    // The account moved with its password.
    let signed_in = after.identity.passwords.authenticate(EMAIL, PASSWORD).await;
    assert!(signed_in.unwrap().is_some());
}

#[tokio::test]
async fn with_database_max_connections_busy_a_request_waits_2_s_for_one_then_gets_503() {
    let test = "with_database_max_connections_busy_a_request_waits_2_s_for_one_then_gets_503";
    let Some(base) = postgres_url(test) else {
        return;
    };
    let schema = PgSchema::create(&base).await;
    let app = spawn_app_with(&[
        ("DATABASE_URL", &schema.url()),
        ("DATABASE_MAX_CONNECTIONS", "2"),
        ("RATE_LIMIT_AUTH", "100000/minute"),
    ])
    .await;
    create_user(&app, EMAIL).await;
    let mut ann = Browser::new(&app);
    ann.sign_in(EMAIL, PASSWORD).await;

    // The test holds the sessions table locked, so two session listings
    // each hold one of the server's connections while they wait for it.
    // Nothing below panics while the lock is held (a panic would leave it
    // held, and the schema's DROP would wait for it forever).
    let locker = schema.pool().await;
    let mut lock = locker.begin().await.unwrap();
    sqlx::query("LOCK TABLE sessions IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let mut listings = JoinSet::new();
    for _ in 0..2 {
        let request = ann.request(reqwest::Method::GET, "/auth/sessions");
        listings.spawn(async move { request.send().await.map(|r| r.status().as_u16()) });
    }
    // Both inside PostgreSQL, waiting for the lock: two connections in use
    // at once (with a pool of one, the second would wait in the pool).
    const WAITING: &str =
        "SELECT COUNT(*) FROM pg_locks WHERE relation = 'sessions'::regclass AND NOT granted";
    let started = Instant::now();
    let mut waiting = 0;
    while waiting < 2 && started.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waiting = count(&schema, WAITING).await;
    }
    // A third request that needs the database (it writes a sign-in flow,
    // another table) waits for a connection for 2 s, then gets 503.
    let started = Instant::now();
    let refused = Browser::new(&app)
        .client
        .get(app.url("/auth/google/login"))
        .send()
        .await;
    let waited = started.elapsed();
    lock.rollback().await.unwrap();

    assert_eq!(
        waiting, 2,
        "two requests did not reach the database at once"
    );
    let refused = refused.unwrap();
    assert_eq!(refused.status(), 503);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(
        body["detail"],
        "The session store is unavailable; try again shortly"
    );
    assert!(
        waited >= Duration::from_millis(1900) && waited < Duration::from_millis(3500),
        "answered after {waited:?}"
    );
    // Released: the waiting listings finish, and the pool serves again.
    while let Some(listed) = listings.join_next().await {
        assert_eq!(listed.unwrap().unwrap(), 200);
    }
    assert_eq!(Browser::new(&app).start_login(None).await.status(), 200);
    locker.close().await;
}
