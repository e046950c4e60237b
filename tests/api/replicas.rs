//! Replicas sharing Redis (`REDIS_URL`): one rate-limit budget across them,
//! revocations announced so the others refuse a logged-out session at once,
//! and what happens while Redis is unreachable (a TCP proxy in the test is
//! severed; the machine's Redis is never touched). Each test uses its own
//! key prefix and deletes its keys at the end.
//!
//! Needs `REDIS_URL` (e.g. redis://127.0.0.1:6379); without it these tests
//! say SKIPPED, or fail under `REQUIRE_EXTERNAL_TESTS=1` (CI).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::browser::*;
use crate::browser_e2e::skip_or_fail;
use crate::helpers::*;

const EMAIL: &str = "ann@example.com";

pub fn redis_url(test: &str) -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            skip_or_fail(test, "REDIS_URL is not set");
            None
        }
    }
}

/// A key prefix of this test's own, whose keys are deleted on drop.
pub struct Prefix {
    url: String,
    pub prefix: String,
}

impl Prefix {
    pub fn new(url: &str) -> Self {
        Self {
            url: url.to_string(),
            prefix: format!("chronos-test:{}:", uuid::Uuid::new_v4().simple()),
        }
    }

    fn keys(&self) -> Vec<String> {
        let client = redis::Client::open(self.url.as_str()).unwrap();
        let mut conn = client.get_connection().unwrap();
        redis::cmd("KEYS")
            .arg(format!("{}*", self.prefix))
            .query(&mut conn)
            .unwrap()
    }
}

impl Drop for Prefix {
    fn drop(&mut self) {
        let keys = self.keys();
        if !keys.is_empty() {
            let client = redis::Client::open(self.url.as_str()).unwrap();
            let mut conn = client.get_connection().unwrap();
            let _: () = redis::cmd("DEL").arg(keys).query(&mut conn).unwrap();
        }
    }
}

/// A TCP proxy to Redis or PostgreSQL that the test can sever and restore.
pub struct Proxy {
    port: u16,
    severed: Arc<AtomicBool>,
    links: Arc<std::sync::Mutex<JoinSet<()>>>,
    /// Redis scripts run through the proxy (`EVAL`/`EVALSHA` commands sent).
    pub scripts: Arc<AtomicUsize>,
}

impl Proxy {
    /// A proxy to the host and port of `url` (any scheme).
    pub async fn to(url: &str) -> Self {
        let parsed = url::Url::parse(url).unwrap();
        let upstream = format!(
            "{}:{}",
            parsed.host_str().unwrap(),
            parsed.port().unwrap_or(if parsed.scheme() == "redis" {
                6379
            } else {
                5432
            })
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let severed = Arc::new(AtomicBool::new(false));
        let links = Arc::new(std::sync::Mutex::new(JoinSet::new()));
        let scripts = Arc::new(AtomicUsize::new(0));
        let (flag, set, counted) = (severed.clone(), links.clone(), scripts.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if flag.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (upstream, counted) = (upstream.clone(), counted.clone());
                set.lock().unwrap().spawn(async move {
                    if let Ok(outbound) = TcpStream::connect(&upstream).await {
                        let (mut down_read, mut down_write) = inbound.split();
                        let (mut up_read, mut up_write) = outbound.into_split();
                        tokio::select! {
                            _ = count_scripts(&mut down_read, &mut up_write, &counted) => {}
                            _ = tokio::io::copy(&mut up_read, &mut down_write) => {}
                        }
                    }
                });
            }
        });
        Self {
            port,
            severed,
            links,
            scripts,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn through(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).unwrap();
        parsed.set_host(Some("127.0.0.1")).unwrap();
        parsed.set_port(Some(self.port)).unwrap();
        parsed.to_string()
    }

    /// Closes every connection through the proxy and refuses new ones.
    pub fn sever(&self) {
        self.severed.store(true, Ordering::SeqCst);
        self.links.lock().unwrap().abort_all();
    }

    pub fn restore(&self) {
        self.severed.store(false, Ordering::SeqCst);
    }
}

/// Copies a client's bytes to Redis, counting the `EVAL`/`EVALSHA`
/// commands among them (RESP sends each as a bulk string `$4\r\nEVAL` or
/// `$7\r\nEVALSHA`; a match cut by a read is found across the two).
async fn count_scripts(
    from: &mut (impl tokio::io::AsyncRead + Unpin),
    to: &mut (impl tokio::io::AsyncWrite + Unpin),
    count: &AtomicUsize,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
        let mut seen = std::mem::take(&mut tail);
        seen.extend_from_slice(&buf[..n]);
        let found = ["$4\r\nEVAL\r\n", "$7\r\nEVALSHA\r\n"]
            .iter()
            .map(|word| {
                seen.windows(word.len())
                    .filter(|w| w == &word.as_bytes())
                    .count()
            })
            .sum::<usize>();
        count.fetch_add(found, Ordering::Relaxed);
        // Keep less than one match, so none is counted twice.
        tail = seen[seen.len().saturating_sub(12)..].to_vec();
    }
}

/// Two replicas on one database and one Redis: the second serves the
/// first's public URL (one issuer, as behind a load balancer).
async fn two_replicas(redis: &str, prefix: &Prefix, extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    let mut vars = vec![
        ("REDIS_URL", redis),
        ("REDIS_KEY_PREFIX", prefix.prefix.as_str()),
    ];
    vars.extend_from_slice(extra);
    two_sharing(&vars).await
}

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

pub fn on(app: &TestApp, browser: &Browser) -> Browser {
    let mut copy = Browser::new(app);
    copy.jar = browser.jar.clone();
    copy
}

/// A logout from 127.0.0.3, a client of its own (browsers are 127.0.0.1).
async fn logout(app: &TestApp) -> reqwest::Response {
    app.client_from("127.0.0.3")
        .post(app.url("/auth/logout"))
        .send()
        .await
        .unwrap()
}

async fn logout_status(app: &TestApp) -> u16 {
    logout(app).await.status().as_u16()
}

/// Polls `/auth/session` on `browser` until it answers 401; the time taken.
pub async fn refused_after(browser: &mut Browser, limit: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if browser.get("/auth/session").await.status() == 401 {
            return started.elapsed();
        }
        assert!(started.elapsed() < limit, "still accepted after {limit:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_auth_rate_limit_is_one_budget_across_replicas() {
    let Some(redis) = redis_url("the_auth_rate_limit_is_one_budget_across_replicas") else {
        return;
    };
    let prefix = Prefix::new(&redis);
    let (a, b) = two_replicas(&redis, &prefix, &[("RATE_LIMIT_AUTH", "5/minute")]).await;
    for app in [&a, &a, &a, &b, &b] {
        assert_eq!(logout_status(app).await, 200);
    }
    for app in [&a, &b] {
        let refused = logout(app).await;
        assert_eq!(refused.status(), 429);
        let wait: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=12).contains(&wait), "Retry-After {wait}");
        assert_eq!(
            refused.text().await.unwrap(),
            r#"{"detail":"Rate limit exceeded: 5 per 1 minute"}"#
        );
    }
    // Another client has its own budget; the keys expire by themselves.
    assert_eq!(
        a.client_from("127.0.0.2")
            .post(a.url("/auth/logout"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let client = redis::Client::open(redis.as_str()).unwrap();
    let mut conn = client.get_connection().unwrap();
    for key in prefix.keys() {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!(ttl > 0 && ttl <= 61_000, "{key} expires in {ttl} ms");
    }
}

#[tokio::test]
async fn under_a_large_limit_leases_never_admit_more_than_the_one_budget() {
    let Some(redis) = redis_url("leases_within_budget") else {
        return;
    };
    let prefix = Prefix::new(&redis);
    // 300 a second, below what the clients ask: each replica takes up to
    // 3 at a time (10 ms of the rate).
    let (a, b) = two_replicas(&redis, &prefix, &[("RATE_LIMIT_AUTH", "300/second")]).await;
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for task in 0..16 {
        let app = if task % 2 == 0 { a.url("") } else { b.url("") };
        tasks.spawn(async move {
            let client = client_from(Some("127.0.0.9".parse().unwrap()));
            let mut admitted = 0;
            for _ in 0..200 {
                let status = client
                    .post(format!("{app}/auth/logout"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert!(status == 200 || status == 429, "{status}");
                admitted += usize::from(status == 200);
            }
            admitted
        });
    }
    let mut admitted = 0;
    while let Some(done) = tasks.join_next().await {
        admitted += done.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    // GCRA's bound: the burst plus the rate over the time taken (leases are
    // served up to 10 ms after Redis counted them: 3 more per replica).
    let bound = 300.0 + 300.0 * elapsed + 6.0;
    assert!(
        (admitted as f64) <= bound,
        "{admitted} admitted in {elapsed:.2} s (bound {bound:.0})"
    );
    // And the budget is used, not wasted on lapsed leases (a loaded
    // machine may send fewer than the budget allows: then all of them).
    let usable = bound.min(3200.0);
    assert!(
        admitted as f64 >= 0.8 * usable,
        "only {admitted} admitted in {elapsed:.2} s (bound {bound:.0})"
    );
    eprintln!("{admitted} of 3200 admitted in {elapsed:.2} s (bound {bound:.0})");
}

#[tokio::test]
async fn requests_that_run_out_of_a_lease_together_take_one_lease_not_one_each() {
    let Some(redis) =
        redis_url("requests_that_run_out_of_a_lease_together_take_one_lease_not_one_each")
    else {
        return;
    };
    let prefix = Prefix::new(&redis);
    let proxy = Proxy::to(&redis).await;
    let through = proxy.url();
    // A limit far above the load: leases grow to 256 (10 ms of the rate).
    let app = spawn_app_with(&[
        ("REDIS_URL", through.as_str()),
        ("REDIS_KEY_PREFIX", prefix.prefix.as_str()),
        ("RATE_LIMIT_AUTH", "1000000/second"),
    ])
    .await;
    let before = proxy.scripts.load(Ordering::Relaxed);
    // 32 connections at once, one client: when a lease is used up, every
    // request in flight finds it empty together.
    let mut tasks = JoinSet::new();
    for _ in 0..32 {
        let url = app.url("/auth/logout");
        tasks.spawn(async move {
            let client = client_from(Some("127.0.0.9".parse().unwrap()));
            for _ in 0..100 {
                let status = client.post(&url).send().await.unwrap().status();
                assert_eq!(status, 200);
            }
        });
    }
    let started = Instant::now();
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let trips = proxy.scripts.load(Ordering::Relaxed) - before;
    // 3200 requests: each lease serves what the client sends in 10 ms, and
    // the ones that ran out together share the next. Each taking its own
    // (the herd) cost a trip per handful of requests.
    let per_span = (3200.0 / elapsed / 100.0).max(1.0);
    eprintln!(
        "{trips} script calls for 3200 requests in {elapsed:.2} s ({per_span:.0} requests per 10 ms)"
    );
    assert!(
        trips > 0,
        "the limiter never reached Redis through the proxy"
    );
    assert!(
        (trips as f64) <= 3200.0 / per_span.min(256.0) * 2.0 + 20.0,
        "{trips} script calls for 3200 requests in {elapsed:.2} s"
    );
}

#[tokio::test]
async fn a_logout_on_one_replica_is_refused_on_the_other_within_100_ms() {
    let Some(redis) = redis_url("a_logout_on_one_replica_is_refused_on_the_other_within_100_ms")
    else {
        return;
    };
    let prefix = Prefix::new(&redis);
    // Neither replica reads the revocation table during the test (it is
    // read every 250 ms by default, which alone would pass 100 ms about
    // 40% of the time): only Redis's announcement can refuse the session
    // on the other replica, and without it this fails every round.
    let (a, b) = two_replicas(
        &redis,
        &prefix,
        &[("RATE_LIMIT_AUTH", "100000/minute"), NO_REVOCATION_POLL],
    )
    .await;
    create_user(&a, EMAIL).await;
    for _ in 0..5 {
        let mut on_a = Browser::new(&a);
        on_a.sign_in(EMAIL, PASSWORD).await;
        let mut on_b = on(&b, &on_a);
        assert_eq!(on_b.get("/auth/session").await.status(), 200);
        assert_eq!(on_b.post_api("/auth/refresh").await.status(), 200);
        on_a.jar = on_b.jar.clone();
        let mut copied = on(&b, &on_a);
        assert_eq!(on_a.post_api("/auth/logout").await.status(), 200);
        let took = refused_after(&mut copied, Duration::from_millis(100)).await;
        assert_eq!(copied.get("/auth/verify").await.status(), 401);
        eprintln!("refused on the other replica after {took:?}");
    }
}

#[tokio::test]
async fn while_redis_is_cut_the_limiter_fails_open_revocations_go_through_the_database_and_all_recovers()
 {
    let Some(redis) = redis_url("redis_cut_open") else {
        return;
    };
    let prefix = Prefix::new(&redis);
    let proxy = Proxy::to(&redis).await;
    let (a, b) = two_replicas(&proxy.url(), &prefix, &[("RATE_LIMIT_AUTH", "6/minute")]).await;
    // A third replica that never reads the revocation table during the
    // test: what it refuses after Redis is back, only an announcement told it.
    let c = third_replica(&a, &proxy.url(), &prefix).await;
    create_user(&a, EMAIL).await;
    let mut on_a = Browser::new(&a);
    on_a.sign_in(EMAIL, PASSWORD).await; // one hit of the budget (the form post)
    let mut copied = on(&b, &on_a);

    proxy.sever();
    // Fail open: no 5xx, no 429, no waiting on Redis.
    for _ in 0..10 {
        let started = Instant::now();
        assert_eq!(logout_status(&b).await, 200);
        assert!(started.elapsed() < Duration::from_millis(600));
    }
    // The revocation reaches the other replica through the database.
    assert_eq!(on_a.post_api("/auth/logout").await.status(), 200);
    let took = refused_after(&mut copied, Duration::from_millis(1500)).await;
    eprintln!("refused through the database after {took:?}");

    proxy.restore();
    // Back by itself: within a few seconds each replica counts in the
    // shared budget again (each notices on its own), so both refuse.
    for app in [&a, &b] {
        let started = Instant::now();
        while logout_status(app).await != 429 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the limiter did not come back"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // And announcements flow again (a browser on a budget of its own), once
    // the three listeners are subscribed again (each reconnects on its own
    // backoff, up to 5 s): to the replica that does not poll, within 100 ms.
    subscribed(&redis, &prefix, 3).await;
    let mut on_a = Browser::new(&a);
    on_a.client = client_from(Some("127.0.0.4".parse().unwrap()));
    on_a.sign_in(EMAIL, PASSWORD).await;
    let mut copied = on(&c, &on_a);
    copied.client = client_from(Some("127.0.0.5".parse().unwrap()));
    assert_eq!(copied.get("/auth/session").await.status(), 200);
    assert_eq!(on_a.post_api("/auth/logout").await.status(), 200);
    refused_after(&mut copied, Duration::from_millis(100)).await;
}

/// A replica on `a`'s database, keys and issuer, on Redis at `redis`,
/// that does not read the revocation table during the test.
async fn third_replica(a: &TestApp, redis: &str, prefix: &Prefix) -> TestApp {
    let data_dir = a.data_dir.path().to_string_lossy().to_string();
    let public_url = a.url("");
    let mut vars = vec![
        ("REDIS_URL", redis),
        ("REDIS_KEY_PREFIX", prefix.prefix.as_str()),
        ("RATE_LIMIT_AUTH", "100000/minute"),
        ("DATA_DIR", data_dir.as_str()),
        ("PUBLIC_URL", public_url.as_str()),
        NO_REVOCATION_POLL,
    ];
    if let Some(url) = a.env.get("DATABASE_URL") {
        vars.push(("DATABASE_URL", url));
    }
    spawn_app_with(&vars).await
}

/// Waits (up to 10 s) until `count` listeners are subscribed to the
/// prefix's revocation channel.
async fn subscribed(redis: &str, prefix: &Prefix, count: i64) {
    let client = redis::Client::open(redis).unwrap();
    let mut conn = client.get_connection().unwrap();
    let channel = format!("{}revocations", prefix.prefix);
    let started = Instant::now();
    loop {
        let (_, listeners): (String, i64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query(&mut conn)
            .unwrap();
        if listeners >= count {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{listeners} of {count} listeners subscribed again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn with_rate_limit_fail_closed_an_unreachable_redis_refuses() {
    let Some(redis) = redis_url("redis_cut_closed") else {
        return;
    };
    let prefix = Prefix::new(&redis);
    let proxy = Proxy::to(&redis).await;
    let app = spawn_app_with(&[
        ("REDIS_URL", &proxy.url()),
        ("REDIS_KEY_PREFIX", &prefix.prefix),
        ("RATE_LIMIT_FAIL", "closed"),
    ])
    .await;
    assert_eq!(logout_status(&app).await, 200);
    proxy.sever();
    let started = Instant::now();
    let refused = logout(&app).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(started.elapsed() < Duration::from_millis(600));
    proxy.restore();
    let started = Instant::now();
    while logout_status(&app).await != 200 {
        assert!(started.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_unreachable_redis_is_logged_once_not_per_request() {
    let Some(_) = redis_url("an_unreachable_redis_is_logged_once_not_per_request") else {
        return;
    };
    // Nothing listens on port 1: every attempt fails at once.
    let server = spawn_binary(&[("REDIS_URL", "redis://127.0.0.1:1")]);
    let client = client_from(None);
    for _ in 0..30 {
        let status = client
            .post(server.url("/auth/logout"))
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200, "fails open by default");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = server.lines();
    let errors: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("redis unreachable"))
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("level=ERROR") || errors[0].contains("ERROR"));
}

/// Requests one replica answered for `route`, from its `/metrics`.
async fn answered(app: &TestApp, route: &str) -> f64 {
    let (series, _) = crate::metrics::scrape(app).await;
    let prefix = format!("chronos_http_requests_total{{route=\"{route}\"");
    series
        .iter()
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(_, value)| value)
        .sum()
}

#[tokio::test]
async fn two_replicas_behind_nginx_round_robin_behave_as_one_server() {
    let test = "two_replicas_behind_nginx_round_robin_behave_as_one_server";
    let Some(redis) = redis_url(test) else {
        return;
    };
    let Some(nginx) = crate::nginx::nginx_binary() else {
        return skip_or_fail(test, "no nginx (apt-get install nginx-light)");
    };
    behave_as_one_behind_nginx(&redis, &nginx, &[]).await;
}

/// Two replicas on one database (the SQLite file they share, or `extra`'s
/// `DATABASE_URL`) and one Redis, behind nginx round robin.
pub async fn behave_as_one_behind_nginx(redis: &str, nginx: &str, extra: &[(&str, &str)]) {
    let prefix = Prefix::new(redis);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
    let _nginx = crate::nginx::start_nginx_with(nginx, conf_dir.path(), port, &server);

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
    assert_eq!(ann.post_api("/auth/refresh").await.status(), 200);
    let refused = ann.post_api("/auth/refresh").await;
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
            let response = tab.post_api("/auth/refresh").await;
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
    assert_eq!(successor.get("/auth/session").await.status(), 200);
    assert_eq!(successor.post_api("/auth/refresh").await.status(), 200);

    // Log out through nginx; the copied cookies are refused by both
    // replicas within 100 ms (the one that did not answer the logout knows
    // only from Redis).
    let mut carol = person("198.51.100.3");
    carol.sign_in(EMAIL, PASSWORD).await;
    let copied = carol.jar.clone();
    assert_eq!(carol.post_api("/auth/logout").await.status(), 200);
    for app in [&a, &b] {
        let mut direct = Browser::new(app);
        direct.jar = copied.clone();
        refused_after(&mut direct, Duration::from_millis(100)).await;
    }
}
