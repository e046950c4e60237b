//! The storage section: where durable state lives.

use super::{ConfigError, Env, VarDoc};

pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "DATABASE_URL",
        default: "sqlite://DATA_DIR/chronos.db",
        help: "the durable store: sqlite://path, or postgres://user@host:port/db for many replicas",
    },
    VarDoc {
        name: "DATABASE_CONNECT_TIMEOUT",
        default: "10",
        help: "PostgreSQL: seconds start-up waits for the database before giving up",
    },
    VarDoc {
        name: "DATABASE_MAX_CONNECTIONS",
        default: "16",
        help: "PostgreSQL: connections per process at most (requests wait at most 2 s for one, then 503)",
    },
    VarDoc {
        name: "DATABASE_MIGRATE",
        default: "auto",
        help: "auto: migrate the database at start; off: refuse to start on a database `chronos migrate` has not brought up to date",
    },
    VarDoc {
        name: "REDIS_URL",
        default: "(empty: none)",
        help: "redis://host:port/db shared by replicas: rate-limit counters and instant revocation",
    },
    VarDoc {
        name: "REDIS_KEY_PREFIX",
        default: "chronos:",
        help: "prefix of every Redis key and channel (several deployments on one Redis)",
    },
];

#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// `None`: the SQLite file in DATA_DIR.
    pub database_url: Option<String>,
    /// PostgreSQL: how long start-up waits for the database.
    pub connect_timeout: std::time::Duration,
    /// PostgreSQL: the pool's size.
    pub max_connections: u32,
    /// `DATABASE_MIGRATE=auto` (the default): migrations run at start.
    pub migrate_at_start: bool,
    /// `None`: counters and revocations stay in this process.
    pub redis_url: Option<String>,
    pub redis_prefix: String,
    /// How often the revocation table is read for other processes'
    /// revocations ([`DEFAULT_REVOCATION_POLL`]). Not read from the
    /// environment: tests lengthen it to take the database path out of the
    /// way, so only Redis's announcement can deliver a revocation.
    pub revocation_poll: std::time::Duration,
}

/// How often revocations recorded by other processes (the CLI, replicas)
/// are picked up: the bound on how long a revoked session lingers here.
pub const DEFAULT_REVOCATION_POLL: std::time::Duration = std::time::Duration::from_millis(250);

pub fn parse(env: &Env) -> Result<StorageSettings, ConfigError> {
    let database_url = env.get("DATABASE_URL");
    if let Some(url) = &database_url
        && !url.starts_with("sqlite:")
    {
        let scheme = url.split(':').next().unwrap_or_default();
        let parsed = url::Url::parse(url).ok();
        if !matches!(scheme, "postgres" | "postgresql")
            || parsed
                .as_ref()
                .and_then(url::Url::host_str)
                .is_none_or(str::is_empty)
        {
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!(
                    "expected sqlite://path or postgres://user@host[:port]/database, got a {scheme:?} URL"
                ),
            ));
        }
    }
    let connect_timeout = std::time::Duration::from_secs(super::parse::seconds_or(
        "DATABASE_CONNECT_TIMEOUT",
        env.get("DATABASE_CONNECT_TIMEOUT"),
        10,
        1,
    )?);
    let max_connections = match env.get("DATABASE_MAX_CONNECTIONS") {
        None => 16,
        Some(value) => match value.trim().parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => n,
            _ => {
                return Err(ConfigError::new(
                    "DATABASE_MAX_CONNECTIONS",
                    format!("expected a whole number from 1 to 1000, got {value:?}"),
                ));
            }
        },
    };
    let migrate_at_start = match env.get("DATABASE_MIGRATE").as_deref().map(str::trim) {
        None | Some("auto") => true,
        Some("off") => false,
        Some(other) => {
            return Err(ConfigError::new(
                "DATABASE_MIGRATE",
                format!("expected auto or off, got {other:?}"),
            ));
        }
    };
    let redis_url = env.get("REDIS_URL").filter(|url| !url.trim().is_empty());
    if let Some(url) = &redis_url {
        let parsed = url::Url::parse(url)
            .map_err(|e| ConfigError::new("REDIS_URL", format!("not a URL: {e}")))?;
        if parsed.scheme() != "redis" || parsed.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::new(
                "REDIS_URL",
                format!(
                    "expected redis://host[:port][/db], got a {:?} URL",
                    parsed.scheme()
                ),
            ));
        }
    }
    let redis_prefix = env
        .get("REDIS_KEY_PREFIX")
        .unwrap_or_else(|| "chronos:".into());
    if redis_prefix.is_empty() || redis_prefix.chars().any(|c| c.is_whitespace()) {
        return Err(ConfigError::new(
            "REDIS_KEY_PREFIX",
            "expected a non-empty prefix without spaces",
        ));
    }
    Ok(StorageSettings {
        database_url,
        connect_timeout,
        max_connections,
        migrate_at_start,
        redis_url,
        redis_prefix,
        revocation_poll: DEFAULT_REVOCATION_POLL,
    })
}
