//! Integration tests: the real application on a real socket, spoken to over
//! HTTP. One binary: `support` holds what the tests stand on (`spawn_app`,
//! the `Browser` with one helper per endpoint, the doubles), every other
//! module the tests of one area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod access_token;
mod browser_e2e;
mod code_exchange;
mod config;
mod csrf;
mod dbsc;
mod desktop;
mod layout;
mod lifetimes;
mod logout;
mod metrics;
mod nginx;
mod oidc;
mod oidc_provider;
mod openapi;
mod postgres;
mod prefix;
mod proxy;
mod rate_limit;
mod refresh;
mod replicas;
mod revocation;
mod routing;
mod second_factor;
mod security;
mod shutdown;
mod signin;
mod signup;
mod supabase;
mod supabase_browser;
mod transport;
mod vault;
