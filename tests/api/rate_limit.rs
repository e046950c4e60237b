//! `RATE_LIMIT_AUTH` per client IP, with and without trusted proxies.

use crate::support::*;

async fn logout_status(client: &reqwest::Client, url: &str, xff: Option<&str>) -> u16 {
    let mut request = client.post(url);
    if let Some(xff) = xff {
        request = request.header("X-Forwarded-For", xff);
    }
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn the_request_over_the_limit_gets_429_with_detail_and_retry_after() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "3/minute")]).await;
    let client = app.client();
    for _ in 0..3 {
        assert_eq!(
            logout_status(&client, &app.url("/auth/logout"), None).await,
            200
        );
    }
    let response = app.logout().await;
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "Rate limit exceeded: 3 per 1 minute");
}

#[tokio::test]
async fn a_rate_limited_logout_still_clears_the_three_cookies() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "1/minute")]).await;
    let client = app.client();
    assert_eq!(
        logout_status(&client, &app.url("/auth/logout"), None).await,
        200
    );
    let response = app
        .logout_with("chronos_session=abc; chronos_refresh=def", None)
        .await;
    assert_eq!(response.status(), 429);
    let cookies = set_cookies(response.headers());
    for name in ["chronos_session", "chronos_refresh", "chronos_csrf"] {
        assert_cleared(&cookies[name]);
    }
}

#[tokio::test]
async fn other_auth_routes_share_the_budget_and_health_is_not_limited() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "2/minute")]).await;
    let client = app.client();
    assert_eq!(app.csrf().await.status(), 200);
    assert_eq!(
        logout_status(&client, &app.url("/auth/logout"), None).await,
        200
    );
    let csrf = app.csrf().await;
    assert_eq!(csrf.status(), 429);
    assert!(
        csrf.headers().get("set-cookie").is_none(),
        "only logout clears cookies on 429"
    );
    for _ in 0..5 {
        assert_eq!(app.health().await.status(), 200);
    }
}

#[tokio::test]
async fn each_client_ip_has_its_own_budget() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "2/minute")]).await;
    let a = app.client_from("127.0.0.2");
    let b = app.client_from("127.0.0.3");
    let url = app.url("/auth/logout");
    assert_eq!(logout_status(&a, &url, None).await, 200);
    assert_eq!(logout_status(&a, &url, None).await, 200);
    assert_eq!(logout_status(&a, &url, None).await, 429);
    assert_eq!(logout_status(&b, &url, None).await, 200);
}

#[tokio::test]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "2/minute")]).await;
    let client = app.client_from("127.0.0.4");
    let url = app.url("/auth/logout");
    // Rotating a spoofed header does not buy a fresh budget.
    assert_eq!(logout_status(&client, &url, Some("1.1.1.1")).await, 200);
    assert_eq!(logout_status(&client, &url, Some("2.2.2.2")).await, 200);
    assert_eq!(logout_status(&client, &url, Some("3.3.3.3")).await, 429);
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_right_most_untrusted_address_is_the_client() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_AUTH", "2/minute"),
        ("TRUSTED_PROXIES", "127.0.0.5/32, 10.0.0.0/8"),
    ])
    .await;
    let proxy = app.client_from("127.0.0.5");
    let url = app.url("/auth/logout");
    // Two clients behind the proxy are limited separately.
    assert_eq!(logout_status(&proxy, &url, Some("198.51.100.1")).await, 200);
    assert_eq!(logout_status(&proxy, &url, Some("198.51.100.1")).await, 200);
    assert_eq!(logout_status(&proxy, &url, Some("198.51.100.1")).await, 429);
    assert_eq!(logout_status(&proxy, &url, Some("198.51.100.2")).await, 200);
    // A client that forges a left-most entry is still keyed by the address
    // our proxy appended (through an inner trusted hop).
    assert_eq!(
        logout_status(&proxy, &url, Some("198.51.100.2, 198.51.100.1, 10.1.2.3")).await,
        429
    );
    assert_eq!(
        logout_status(&proxy, &url, Some("198.51.100.1, 198.51.100.2")).await,
        200
    );
    assert_eq!(
        logout_status(&proxy, &url, Some("9.9.9.9, 198.51.100.2")).await,
        429
    );
    // The proxy's peer address itself is not a client: without XFF it is
    // its own key, untouched by the clients above.
    assert_eq!(logout_status(&proxy, &url, None).await, 200);
}

#[tokio::test]
async fn ipv6_clients_behind_a_proxy_are_keyed_by_their_64() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_AUTH", "2/minute"),
        ("TRUSTED_PROXIES", "127.0.0.0/8"),
    ])
    .await;
    let proxy = app.client_from("127.0.0.6");
    let url = app.url("/auth/logout");
    assert_eq!(
        logout_status(&proxy, &url, Some("2001:db8:1:2::1")).await,
        200
    );
    assert_eq!(
        logout_status(&proxy, &url, Some("2001:db8:1:2::ffff")).await,
        200
    );
    assert_eq!(
        logout_status(&proxy, &url, Some("2001:db8:1:2:abcd::9")).await,
        429,
        "same /64"
    );
    assert_eq!(
        logout_status(&proxy, &url, Some("2001:db8:1:3::1")).await,
        200
    );
}

#[tokio::test]
async fn trusted_proxies_take_ipv6_cidrs_for_the_peer_and_for_inner_hops() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        return skip_or_fail(
            "trusted_proxies_take_ipv6_cidrs_for_the_peer_and_for_inner_hops",
            "no IPv6 loopback",
        );
    }
    // The server listens on ::1, so its peer (the proxy) is ::1.
    let app = spawn_app_with(&[
        ("BIND", "[::1]:0"),
        ("RATE_LIMIT_AUTH", "2/minute"),
        ("TRUSTED_PROXIES", "::1/128, fd00:0:0:7::/64"),
    ])
    .await;
    assert!(app.addr.is_ipv6());
    let proxy = app.client();
    let url = app.url("/auth/logout");
    // Two clients behind the trusted ::1 are limited separately.
    for expected in [200, 200, 429] {
        assert_eq!(
            logout_status(&proxy, &url, Some("2001:db8:a::1")).await,
            expected
        );
    }
    assert_eq!(
        logout_status(&proxy, &url, Some("2001:db8:b::1")).await,
        200
    );
    // An inner hop inside fd00:0:0:7::/64 is skipped: still 2001:db8:b::1.
    let via_inner = Some("2001:db8:b::1, fd00:0:0:7::42");
    assert_eq!(logout_status(&proxy, &url, via_inner).await, 200);
    assert_eq!(logout_status(&proxy, &url, via_inner).await, 429);
    // A hop just outside that /64 is not trusted: it is the client.
    assert_eq!(
        logout_status(&proxy, &url, Some("2001:db8:a::1, fd00:0:0:8::1")).await,
        200
    );

    // With an IPv6 CIDR that does not hold ::1, the header is not believed:
    // rotating it buys no fresh budget.
    let app = spawn_app_with(&[
        ("BIND", "[::1]:0"),
        ("RATE_LIMIT_AUTH", "2/minute"),
        ("TRUSTED_PROXIES", "fd00::/8"),
    ])
    .await;
    let url = app.url("/auth/logout");
    let client = app.client();
    for (xff, expected) in [
        ("2001:db8:c::1", 200),
        ("2001:db8:d::1", 200),
        ("2001:db8:e::1", 429),
    ] {
        assert_eq!(logout_status(&client, &url, Some(xff)).await, expected);
    }
}

#[tokio::test]
async fn several_limits_must_all_hold() {
    let app = spawn_app_with(&[("RATE_LIMIT_AUTH", "100 per second; 2 per hour")]).await;
    let client = app.client();
    let url = app.url("/auth/logout");
    assert_eq!(logout_status(&client, &url, None).await, 200);
    assert_eq!(logout_status(&client, &url, None).await, 200);
    let response = app.logout().await;
    assert_eq!(response.status(), 429);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["detail"], "Rate limit exceeded: 2 per 1 hour");
}

#[tokio::test]
async fn with_logout_require_csrf_a_rate_limited_logout_clears_only_with_a_valid_token() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_AUTH", "1/minute"),
        ("LOGOUT_REQUIRE_CSRF", "true"),
    ])
    .await;
    // The one allowed request fetches a token.
    let token = app.csrf_token().await;

    let forged = app.logout_with("chronos_session=abc", None).await;
    assert_eq!(forged.status(), 429);
    assert!(
        forged.headers().get("set-cookie").is_none(),
        "no token, no clearing"
    );

    let own = app
        .logout_with(
            &format!("chronos_session=abc; chronos_csrf={token}"),
            Some(&token),
        )
        .await;
    assert_eq!(own.status(), 429);
    assert_cleared(&set_cookies(own.headers())["chronos_session"]);
}
