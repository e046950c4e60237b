//! The rate limiter under attack: one million distinct client keys, with
//! the server's allocator and limiter. Prints the process RSS when idle, at
//! the peak, and after the window has passed and the store was pruned.
//!
//! `cargo run --release --example limiter_memory [KEYS]`
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use chronos::limits::ClientKey;
use chronos::limits::parse_limits;
use chronos::store::RateLimitStore;
use chronos::store::memory::MemoryRateLimitStore;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "rss.rs"]
mod rss;
use rss::{mib, rss};

fn main() {
    let keys: u32 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    // The default policy; a client seen once refills after 1 s.
    let store = MemoryRateLimitStore::new(&parse_limits("60/minute").unwrap());
    let idle = rss();

    let started = Instant::now();
    for i in 0..keys {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0b00_0000u32 + i));
        let _ = store.check(ClientKey::of(ip));
    }
    let elapsed = started.elapsed();
    let peak = rss();
    let tracked = store.tracked_keys();

    // governor forgets a key once its state is indistinguishable from a
    // fresh one: one emission interval (1 s here) after its budget refilled.
    std::thread::sleep(Duration::from_millis(2100));
    store.prune();
    // A live server keeps serving; mimalloc returns freed pages to the OS
    // lazily, on later allocator activity after its purge delay.
    for round in 0..20u32 {
        for i in 0..1000u32 {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0c00_0000u32 + round * 1000 + i));
            let _ = store.check(ClientKey::of(ip));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let after = rss();

    println!("keys={keys}");
    println!(
        "checks_per_second={:.0}",
        f64::from(keys) / elapsed.as_secs_f64()
    );
    println!("rss_idle_mib={:.1}", mib(idle));
    println!("rss_peak_mib={:.1}", mib(peak));
    println!("tracked_keys_at_peak={tracked}");
    println!(
        "bytes_per_key={:.0}",
        peak.saturating_sub(idle) as f64 / f64::from(keys)
    );
    println!("tracked_keys_after_prune={}", store.tracked_keys());
    println!("rss_after_prune_mib={:.1}", mib(after));
}
