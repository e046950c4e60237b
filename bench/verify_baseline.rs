//! Chronos with its revocation set swapped, for the load benchmark's
//! "cost of the revocation check" rows (same binary code, same run):
//!
//!   verify_baseline none          no revocation check at all
//!   verify_baseline revoked:N     N revoked sessions held in memory
//!
//! Configured from the environment like `chronos` itself.

use std::sync::Arc;

use async_trait::async_trait;
use chronos::app::Application;
use chronos::config::Settings;
use chronos::store::revocations::RevocationStore;

/// Revokes nothing and is never asked anything twice.
struct NoRevocations;

#[async_trait]
impl RevocationStore for NoRevocations {
    async fn revoke(&self, _: &[String]) -> anyhow::Result<()> {
        Ok(())
    }
    fn is_revoked(&self, _: &str) -> bool {
        false
    }
    async fn sync(&self) -> anyhow::Result<()> {
        Ok(())
    }
    async fn prune(&self) -> anyhow::Result<()> {
        Ok(())
    }
    fn len(&self) -> usize {
        0
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "none".into());
    let settings = Settings::from_env().map_err(|e| anyhow::anyhow!("{e}"))?;
    let app = if mode == "none" {
        Application::build_with(settings, |state| {
            state.revocations = Arc::new(NoRevocations)
        })
        .await?
    } else {
        let count: usize = mode
            .strip_prefix("revoked:")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("usage: verify_baseline none|revoked:N"))?;
        let app = Application::build(settings).await?;
        let ids: Vec<String> = (0..count)
            .map(|_| uuid::Uuid::new_v4().to_string())
            .collect();
        app.state().revocations.revoke(&ids).await?;
        app
    };
    println!("listening address={}", app.local_addr());
    app.run_until(chronos::server::shutdown_signal()).await?;
    Ok(())
}
