//! Chronos with its revocation set swapped, for the load benchmark's
//! "cost of the revocation check" rows (same binary, same run):
//!
//!   verify_baseline normal        exactly the server (empty revocation set)
//!   verify_baseline none          no revocation check at all
//!   verify_baseline revoked:N     N revoked sessions held in memory
//!
//! Configured from the environment like `chronos` itself, with the same
//! allocator and logging.

use std::sync::Arc;

use async_trait::async_trait;
use chronos::app::Application;
use chronos::config::Settings;
use chronos::store::ids::SessionId;
use chronos::store::revocations::RevocationStore;

/// Revokes nothing and is never asked anything twice.
struct NoRevocations;

#[async_trait]
impl RevocationStore for NoRevocations {
    async fn revoke(&self, _: &[SessionId]) -> anyhow::Result<()> {
        Ok(())
    }
    fn recorded(&self, _: i64, _: &SessionId) {}
    fn heard(&self, _: &str, _: u64) {}
    fn heard_user(&self, _: &str, _: u64) {}
    fn is_revoked(&self, _: &str) -> bool {
        false
    }
    fn refuses(&self, _: &str, _: &str, _: u64) -> bool {
        false
    }
    async fn sync(&self) -> anyhow::Result<()> {
        Ok(())
    }
    async fn prune(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn forget_expired(&self) {}
    fn len(&self) -> usize {
        0
    }
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "none".into());
    let settings = Settings::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let _log_flush = chronos::telemetry::init(&settings.telemetry);
    let app = if mode == "normal" {
        Application::build(settings).await?
    } else if mode == "none" {
        Application::build_with(settings, |stores| {
            stores.revocations = Arc::new(NoRevocations)
        })
        .await?
    } else {
        let count: usize = mode
            .strip_prefix("revoked:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("usage: verify_baseline normal|none|revoked:N"))?;
        let app = Application::build(settings).await?;
        let ids: Vec<SessionId> = (0..count).map(|_| SessionId::random()).collect();
        app.stores().revocations.revoke(&ids).await?;
        app
    };
    tracing::info!(address = %app.local_addr(), "listening");
    app.run_until(chronos::server::shutdown_signal()).await?;
    Ok(())
}
