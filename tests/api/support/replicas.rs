//! Several replicas of one deployment: one DATA_DIR (keys), public URL
//! (issuer) and database, and the round-robin scenario both stores run.

use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::*;

const EMAIL: &str = "ann@example.com";

/// Two replicas with these variables: the second shares the first's
/// DATA_DIR (keys), public URL (issuer) and database.
pub async fn two_sharing(vars: &[(&str, &str)]) -> (TestApp, TestApp) {
    let a = spawn_app_with(vars).await;
    let data_dir = a.data_dir.path().to_string_lossy().to_string();
    let public_url = a.url("");
    let mut b_vars = vars.to_vec();
    b_vars.push(("DATA_DIR", &data_dir));
    b_vars.push(("PUBLIC_URL", &public_url));
    // One database (under TEST_ALL_ON_POSTGRES, a's schema).
    if let Some(url) = a.env.get("DATABASE_URL") {
        b_vars.push(("DATABASE_URL", url));
    }
    let b = spawn_app_with(&b_vars).await;
    (a, b)
}

/// Polls `/auth/session` on `browser` until it answers 401; the time taken.
pub async fn refused_after(browser: &mut Browser, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if browser.session().await.status() == 401 {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Requests one replica answered for `route`, from its `/metrics`.
async fn answered(app: &TestApp, route: &str) -> f64 {
    let (series, _) = app.scrape().await;
    let prefix = format!("chronos_http_requests_total{{route=\"{route}\"");
    series
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(_, value)| value)
        .sum()
}

/// Two replicas on one database (the SQLite file they share, or `extra`'s
/// `DATABASE_URL`) and one Redis, behind nginx round robin.
pub async fn behave_as_one_behind_nginx(redis: &str, nginx: &str, extra: &[(&str, &str)]) {
    let prefix = Prefix::new(redis);
    let port = free_port();
    let front = format!("http://127.0.0.1:{port}");
    let data_dir = tempfile::TempDir::new().unwrap();
    let dir = data_dir.path().to_string_lossy().to_string();
    let mut vars = vec![
        ("REDIS_URL", redis),
        ("REDIS_KEY_PREFIX", prefix.prefix.as_str()),
        ("DATA_DIR", dir.as_str()),
        ("PUBLIC_URL", front.as_str()),
        ("TRUSTED_PROXIES", "127.0.0.1/32"),
        ("RATE_LIMIT_AUTH", "5/minute"),
        ("METRICS_BIND", "127.0.0.1:0"),
        // The logout at the end reaches the other replica by announcement
        // only: neither reads the revocation table during the test.
        NO_REVOCATION_POLL,
    ];
    vars.extend_from_slice(extra);
    let a = spawn_app_with(&vars).await;
    let database = a.env.get("DATABASE_URL").cloned();
    if let Some(url) = &database {
        vars.push(("DATABASE_URL", url));
    }
    let b = spawn_app_with(&vars).await;
    create_user(&a, EMAIL).await;
    let conf_dir = tempfile::TempDir::new().unwrap();
    let server = format!(
        "upstream chronos {{ server {}; server {}; }}\n\
         server {{\n listen 127.0.0.1:{port};\n location / {{\n  proxy_pass http://chronos;\n  \
         proxy_next_upstream off;\n  proxy_set_header Host $http_host;\n  \
         proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n }}\n}}",
        a.addr, b.addr
    );
    let _nginx = start_nginx_with(nginx, conf_dir.path(), port, &server);

    // Each person comes through nginx from an address of their own (nginx
    // appends its own hop, which the replicas trust): one auth budget of 5
    // a minute per person, shared by both replicas.
    let person = |ip: &str| {
        let mut browser = Browser::at(&front);
        browser.client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .default_headers(
                [(
                    reqwest::header::HeaderName::from_static("x-forwarded-for"),
                    ip.parse().unwrap(),
                )]
                .into_iter()
                .collect(),
            )
            .build()
            .unwrap();
        browser
    };

    // Sign in (login, page, form, code: four requests over both replicas),
    // then a refresh: five of the five.
    let mut ann = person("198.51.100.1");
    ann.sign_in(EMAIL, PASSWORD).await;
    assert_eq!(ann.refresh().await.status(), 200);
    let refused = ann.refresh().await;
    assert_eq!(
        refused.status(),
        429,
        "the sixth, whichever replica it reached"
    );
    assert!(
        answered(&a, "/auth/google/login").await + answered(&b, "/auth/google/login").await >= 1.0
    );
    let served_a = answered(&a, "/auth/refresh").await + answered(&a, "/auth/web/callback").await;
    let served_b = answered(&b, "/auth/refresh").await + answered(&b, "/auth/web/callback").await;
    assert!(
        served_a >= 1.0 && served_b >= 1.0,
        "round robin: {served_a} / {served_b}"
    );

    // Twenty concurrent refreshes of one token, spread over both replicas,
    // each from its own address: one successor pair for all of them.
    let mut bob = person("198.51.100.2");
    bob.sign_in(EMAIL, PASSWORD).await;
    let jar = bob.jar.clone();
    let mut racing = JoinSet::new();
    for i in 0..20 {
        let mut tab = person(&format!("198.51.100.{}", 10 + i));
        tab.jar = jar.clone();
        racing.spawn(async move {
            let response = tab.refresh().await;
            (response.status().as_u16(), tab.jar)
        });
    }
    let mut pairs = std::collections::BTreeSet::new();
    let mut last = None;
    while let Some(result) = racing.join_next().await {
        let (status, jar) = result.unwrap();
        assert_eq!(status, 200);
        pairs.insert((
            jar["chronos_session"].clone(),
            jar["chronos_refresh"].clone(),
        ));
        last = Some(jar);
    }
    assert_eq!(pairs.len(), 1, "every racer got the same new pair");
    assert_ne!(pairs.first().unwrap().1, jar["chronos_refresh"]);
    // The successor pair works on either replica.
    let mut successor = person("198.51.100.40");
    successor.jar = last.unwrap();
    assert_eq!(successor.session().await.status(), 200);
    assert_eq!(successor.refresh().await.status(), 200);

    // Log out through nginx; the copied cookies are refused by both
    // replicas within 100 ms (the one that did not answer the logout knows
    // only from Redis).
    let mut carol = person("198.51.100.3");
    carol.sign_in(EMAIL, PASSWORD).await;
    let copied = carol.jar.clone();
    assert_eq!(carol.logout().await.status(), 200);
    for app in [&a, &b] {
        let mut direct = Browser::new(app);
        direct.jar = copied.clone();
        refused_after(&mut direct, Duration::from_millis(100)).await;
    }
}
