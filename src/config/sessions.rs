//! The session section: token lifetimes, refresh reuse, what logout does.

use super::{ConfigError, Env, VarDoc, parse};

pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "ACCESS_TOKEN_TTL_SECONDS",
        default: "3600",
        help: "access token (JWT) lifetime, seconds",
    },
    VarDoc {
        name: "REFRESH_REUSE_INTERVAL_SECONDS",
        default: "10",
        help: "grace window in which a just-rotated refresh token may be presented again",
    },
    VarDoc {
        name: "TOKEN_CACHE_SIZE",
        default: "1048576",
        help: "verified access tokens remembered (a miss costs an Ed25519 signature check); memory follows the tokens in use, a few hundred bytes each",
    },
    VarDoc {
        name: "LOGOUT_SCOPE",
        default: "local",
        help: "what logout revokes server-side: none, local (this session) or global (every session of the user)",
    },
    VarDoc {
        name: "LOGOUT_CLEAR_SITE_DATA",
        default: "(empty: no header)",
        help: "Clear-Site-Data directives sent on logout, e.g. \"cache\", \"storage\"",
    },
    VarDoc {
        name: "SESSION_IDLE_TIMEOUT",
        default: "(COOKIE_MAX_AGE)",
        help: "a session unused this long ends (its refresh token dies): seconds, or 30m, 12h, 7d",
    },
    VarDoc {
        name: "SESSION_MAX_LIFETIME",
        default: "(none)",
        help: "a session ends this long after sign-in however it is used (e.g. 12h); access tokens never outlive it",
    },
    VarDoc {
        name: "DBSC",
        default: "off",
        help: "Device Bound Session Credentials: on offers browsers with a device key to bind their session to it (off or on)",
    },
    VarDoc {
        name: "DBSC_COOKIE_TTL",
        default: "600",
        help: "lifetime of a bound session's short-lived cookie, seconds (5 to 86400); the browser renews it with a proof of its key",
    },
];

/// What logout revokes on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    /// Cookies cleared, nothing revoked (the original contract).
    None,
    /// End the session the cookies belong to.
    Local,
    /// End every session of that user.
    Global,
}

impl LogoutScope {
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "local" => Some(Self::Local),
            "global" => Some(Self::Global),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub access_token_ttl: u64,
    pub refresh_reuse_interval: u64,
    /// Verified access tokens remembered.
    pub token_cache_size: usize,
    pub logout_scope: LogoutScope,
    /// The exact `Clear-Site-Data` header value, if any.
    pub logout_clear_site_data: Option<String>,
    /// `DBSC=on`: the bound cookie's lifetime, seconds.
    pub dbsc_cookie_ttl: Option<u64>,
    /// How long a session lives unused (its refresh token), seconds.
    pub idle_timeout: u64,
    /// How long a session lives from sign-in at most, seconds.
    pub max_lifetime: Option<u64>,
}

/// `TOKEN_CACHE_SIZE` unset: verified access tokens remembered.
pub const DEFAULT_TOKEN_CACHE_SIZE: usize = 1 << 20;

/// `cookie_max_age`: `COOKIE_MAX_AGE`, the idle timeout's default.
pub fn parse(env: &Env, cookie_max_age: u64) -> Result<SessionSettings, ConfigError> {
    let idle_timeout = parse::duration_or(
        "SESSION_IDLE_TIMEOUT",
        env.get("SESSION_IDLE_TIMEOUT"),
        cookie_max_age,
        1,
    )?;
    let max_lifetime = match env.get("SESSION_MAX_LIFETIME") {
        None => None,
        value => Some(parse::duration_or("SESSION_MAX_LIFETIME", value, 0, 1)?),
    };
    let access_token_ttl = parse::seconds_or(
        "ACCESS_TOKEN_TTL_SECONDS",
        env.get("ACCESS_TOKEN_TTL_SECONDS"),
        3600,
        1,
    )?;
    let refresh_reuse_interval = parse::seconds_or(
        "REFRESH_REUSE_INTERVAL_SECONDS",
        env.get("REFRESH_REUSE_INTERVAL_SECONDS"),
        10,
        0,
    )?;
    let token_cache_size = match env.get("TOKEN_CACHE_SIZE") {
        None => DEFAULT_TOKEN_CACHE_SIZE,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) if n <= 100_000_000 => n,
            _ => {
                return Err(ConfigError::new(
                    "TOKEN_CACHE_SIZE",
                    format!(
                        "expected a number of tokens from 0 (no cache) to 100000000, got {v:?}"
                    ),
                ));
            }
        },
    };
    let logout_scope = match env.get("LOGOUT_SCOPE") {
        None => LogoutScope::Local,
        Some(v) => LogoutScope::parse(&v).ok_or_else(|| {
            ConfigError::new(
                "LOGOUT_SCOPE",
                format!("expected none, local or global, got {v:?}"),
            )
        })?,
    };
    let logout_clear_site_data = env
        .get("LOGOUT_CLEAR_SITE_DATA")
        .map(|v| clear_site_data(&v))
        .transpose()?;
    let dbsc = match env.get("DBSC") {
        None => false,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "on" => true,
            "off" => false,
            _ => {
                return Err(ConfigError::new(
                    "DBSC",
                    format!("expected off or on, got {v:?}"),
                ));
            }
        },
    };
    let dbsc_cookie_ttl = parse::seconds_or("DBSC_COOKIE_TTL", env.get("DBSC_COOKIE_TTL"), 600, 5)?;
    if dbsc_cookie_ttl > 86_400 {
        return Err(ConfigError::new(
            "DBSC_COOKIE_TTL",
            format!("expected a whole number of seconds from 5 to 86400, got {dbsc_cookie_ttl}"),
        ));
    }
    Ok(SessionSettings {
        access_token_ttl,
        refresh_reuse_interval,
        token_cache_size,
        logout_scope,
        logout_clear_site_data,
        dbsc_cookie_ttl: dbsc.then_some(dbsc_cookie_ttl),
        idle_timeout,
        max_lifetime,
    })
}

/// Accepts `"cache", "storage"` (or the same unquoted) and returns the header
/// value with every directive quoted, as the Clear-Site-Data grammar wants.
fn clear_site_data(value: &str) -> Result<String, ConfigError> {
    const KNOWN: &[&str] = &[
        "cache",
        "cookies",
        "storage",
        "executionContexts",
        "clientHints",
        "prefetchCache",
        "prerenderCache",
        "*",
    ];
    let mut out = Vec::new();
    for item in parse::split_list(value) {
        let bare = item.trim_matches('"');
        if !KNOWN.contains(&bare) {
            return Err(ConfigError::new(
                "LOGOUT_CLEAR_SITE_DATA",
                format!(
                    "unknown directive {item:?}; expected some of \"cache\", \"cookies\", \"storage\", \"executionContexts\", \"*\""
                ),
            ));
        }
        out.push(format!("\"{bare}\""));
    }
    if out.is_empty() {
        return Err(ConfigError::new(
            "LOGOUT_CLEAR_SITE_DATA",
            "expected directives such as \"cache\", \"storage\"",
        ));
    }
    Ok(out.join(", "))
}
