//! What the tests stand on, none of it a test: the app in-process
//! (`spawn_app`) or as the binary, a cookie-keeping [`Browser`] with one
//! typed helper per endpoint, `Set-Cookie` parsing, the doubles (an OpenID
//! provider, Supabase's GoTrue), nginx, Redis key prefixes and PostgreSQL
//! schemas of a test's own, a TCP proxy to sever, and the rule for tests
//! that need what the machine may lack (SKIPPED, or failed in CI).

mod app;
mod binary;
mod browser;
mod cookies;
pub mod fake_oidc;
pub mod google;
pub mod gotrue;
mod nginx;
mod postgres;
mod proxy;
mod redis;
mod replicas;
mod tooling;
pub mod upstream;

pub use app::*;
pub use binary::*;
pub use browser::*;
pub use cookies::*;
pub use nginx::*;
pub use postgres::*;
pub use proxy::*;
pub use redis::*;
pub use replicas::*;
pub use tooling::*;
