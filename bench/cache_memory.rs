//! The verified-token cache at size: N entries with realistic claims and
//! token lengths, with the server's allocator. Prints the process RSS when
//! idle, full (and so the bytes per entry), and after the sweep that drops
//! expired tokens.
//!
//! `cargo run --release --example cache_memory [ENTRIES]` (default 1,048,576)
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use chronos::authority::cache::VerifiedCache;
use chronos::authority::tokens::{AUDIENCE, AccessClaims};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "rss.rs"]
mod rss;
use rss::{mib, rss};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(chronos::config::DEFAULT_TOKEN_CACHE_SIZE);
    let cache = VerifiedCache::new(n);
    // A header.payload of a real token's length (~510 characters) and an
    // 86-character signature; the cache keeps digests, not the token.
    let filler = "x".repeat(420);
    let idle = rss();
    let started = Instant::now();
    for i in 0..n {
        let sid = uuid::Uuid::new_v4().to_string();
        let token = format!("eyJhbGciOiJFZERTQSJ9.{filler}{i:012}.{:086}", i);
        cache.insert(
            &token,
            AccessClaims {
                iss: "https://auth.example.com".into(),
                aud: AUDIENCE.into(),
                sub: uuid::Uuid::new_v4().to_string().into(),
                email: format!("person{i}@example.com"),
                sid: sid.into(),
                jti: "HV4Z9r2ItuvW1YWP2h4Ym2".into(),
                iat: 1,
                exp: 1 + (i % 2) as u64 * 3600,
                nbf: None,
                name: Some(format!("Person {i}")),
                avatar_url: None,
                created_at: "2026-11-26T17:13:10Z".into(),
            },
        );
    }
    let filled = started.elapsed();
    let full = rss();
    let entries = cache.len();
    let started = Instant::now();
    cache.sweep(2);
    let swept = started.elapsed();
    // mimalloc returns freed pages lazily, on later allocator activity.
    for _ in 0..20 {
        drop(vec![0u8; 1 << 20]);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    println!(
        "entries={entries} idle_mib={:.1} full_mib={:.1} bytes_per_entry={:.0} fill_ms={} \
         sweep_half_ms={} after_sweep_entries={} after_sweep_mib={:.1}",
        mib(idle),
        mib(full),
        (full - idle) as f64 / entries as f64,
        filled.as_millis(),
        swept.as_millis(),
        cache.len(),
        mib(rss()),
    );
}
