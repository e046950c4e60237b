//! Micro-benchmarks of the per-request primitives: CSRF tokens, access
//! token verification (signature vs cached), the rate limiter's check as
//! the server makes it (`RateLimiter::check`, through the store trait).
//! `cargo bench --bench micro`
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use chronos::authority::tokens::{AUDIENCE, AccessClaims, AccessTokens};
use chronos::limits::{ClientKey, parse_limits};
use chronos::security::csrf::{Binding, CsrfTokens, Purpose};
use chronos::security::rate_limit::RateLimiter;
use chronos::store::memory::MemoryRateLimitStore;
use chronos::unix_now;
use criterion::{Criterion, criterion_group, criterion_main};

fn csrf(c: &mut Criterion) {
    let tokens = CsrfTokens::new(b"0123456789abcdef0123456789abcdef", 3600);
    let now = unix_now();
    let session = Binding::Session(uuid::Uuid::new_v4().to_string().into());
    let token = tokens.issue(Purpose::Api, &session, now);
    c.bench_function("csrf_issue", |b| {
        b.iter(|| black_box(tokens.issue(Purpose::Api, &session, black_box(now))))
    });
    c.bench_function("csrf_verify", |b| {
        b.iter(|| black_box(tokens.verify(Purpose::Api, &session, black_box(&token), now)))
    });
}

fn jwt(c: &mut Criterion) {
    let tokens =
        AccessTokens::from_seed(&[7u8; 32], "http://127.0.0.1:8000", 3600, 1 << 20).unwrap();
    let now = unix_now();
    let claims = AccessClaims {
        iss: "http://127.0.0.1:8000".into(),
        aud: AUDIENCE.into(),
        sub: uuid::Uuid::new_v4().to_string().into(),
        email: "bench@example.com".into(),
        sid: uuid::Uuid::new_v4().to_string().into(),
        jti: "abcdefghijklmnopqrstuv".into(),
        iat: now,
        exp: now + 3600,
        nbf: None,
        name: Some("Bench".into()),
        avatar_url: None,
        created_at: "2026-11-25T00:00:00Z".into(),
    };
    let token = tokens.sign(&claims).unwrap();
    c.bench_function("jwt_sign", |b| {
        b.iter(|| black_box(tokens.sign(black_box(&claims))))
    });
    c.bench_function("jwt_verify_signature", |b| {
        b.iter(|| black_box(tokens.verify_signature(black_box(&token))))
    });
    c.bench_function("jwt_verify_cached", |b| {
        b.iter(|| black_box(tokens.verify(black_box(&token), now)))
    });
}

/// Polls a future that completes at once (the in-memory store never waits).
fn ready<T>(future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("the in-memory limiter never waits"),
    }
}

fn limiter(c: &mut Criterion) {
    let limiter = |spec: &str| {
        let limits = parse_limits(spec).unwrap();
        RateLimiter::new(limits.clone(), Arc::new(MemoryRateLimitStore::new(&limits)))
    };
    let open = limiter("1000000000/second");
    c.bench_function("limiter_check_one_key", |b| {
        b.iter(|| black_box(ready(open.check(black_box(ClientKey(42))))))
    });
    let mut next = 0u128;
    c.bench_function("limiter_check_new_keys", |b| {
        b.iter(|| {
            next += 1;
            black_box(ready(open.check(ClientKey(next))))
        })
    });
    let tight = limiter("1/hour");
    let _ = ready(tight.check(ClientKey(1)));
    c.bench_function("limiter_check_refused", |b| {
        b.iter(|| black_box(ready(tight.check(black_box(ClientKey(1))))))
    });
}

criterion_group!(benches, csrf, jwt, limiter);
criterion_main!(benches);
