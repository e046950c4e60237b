//! Micro-benchmarks of the per-request primitives: CSRF tokens, access
//! token verification (signature vs cached), the rate limiter's check.
//! `cargo bench --bench micro`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use chronos::identity::tokens::{AUDIENCE, AccessClaims, AccessTokens};
use chronos::security::client_ip::ClientKey;
use chronos::security::csrf::CsrfTokens;
use chronos::security::rate_limit::parse_limits;
use chronos::store::memory::MemoryRateLimitStore;
use chronos::unix_now;
use criterion::{Criterion, criterion_group, criterion_main};

fn csrf(c: &mut Criterion) {
    let tokens = CsrfTokens::new(b"0123456789abcdef0123456789abcdef", 3600);
    let now = unix_now();
    let token = tokens.issue(now);
    c.bench_function("csrf_issue", |b| {
        b.iter(|| black_box(tokens.issue(black_box(now))))
    });
    c.bench_function("csrf_verify", |b| {
        b.iter(|| black_box(tokens.verify(black_box(&token), now)))
    });
}

fn jwt(c: &mut Criterion) {
    let tokens = AccessTokens::from_seed(&[7u8; 32], "http://127.0.0.1:8000", 3600);
    let now = unix_now();
    let claims = AccessClaims {
        iss: "http://127.0.0.1:8000".into(),
        aud: AUDIENCE.into(),
        sub: uuid::Uuid::new_v4().to_string(),
        email: "bench@example.com".into(),
        sid: uuid::Uuid::new_v4().to_string(),
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

fn limiter(c: &mut Criterion) {
    let store = MemoryRateLimitStore::new(&parse_limits("1000000000/second").unwrap());
    c.bench_function("limiter_check_one_key", |b| {
        b.iter(|| black_box(store.check(black_box(ClientKey(42)))))
    });
    let mut next = 0u128;
    c.bench_function("limiter_check_new_keys", |b| {
        b.iter(|| {
            next += 1;
            black_box(store.check(ClientKey(next)))
        })
    });
    let tight = MemoryRateLimitStore::new(&parse_limits("1/hour").unwrap());
    let _ = tight.check(ClientKey(1));
    c.bench_function("limiter_check_refused", |b| {
        b.iter(|| black_box(tight.check(black_box(ClientKey(1)))))
    });
}

criterion_group!(benches, csrf, jwt, limiter);
criterion_main!(benches);
