//! The storage section: where durable state lives.

use super::{ConfigError, Env, VarDoc};

pub const VARS: &[VarDoc] = &[VarDoc {
    name: "DATABASE_URL",
    default: "sqlite://DATA_DIR/chronos.db",
    help: "the identity store (sqlite://...)",
}];

#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// `None`: the SQLite file in DATA_DIR.
    pub database_url: Option<String>,
}

pub fn parse(env: &Env) -> Result<StorageSettings, ConfigError> {
    let database_url = env.get("DATABASE_URL");
    if let Some(url) = &database_url
        && !url.starts_with("sqlite:")
    {
        return Err(ConfigError::new(
            "DATABASE_URL",
            format!(
                "only sqlite:// URLs are supported, got a {:?} URL",
                url.split(':').next().unwrap_or_default()
            ),
        ));
    }
    Ok(StorageSettings { database_url })
}
