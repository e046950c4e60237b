//! The rate-limit section.

use super::{ConfigError, Env, VarDoc};
use crate::limits::{Limit, parse_limits};

pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "RATE_LIMIT_AUTH",
        default: "60/minute",
        help: "limit per client IP on /auth/*: e.g. 5/minute, 10 per second, 100/hour;1000/day (all must hold)",
    },
    VarDoc {
        name: "RATE_LIMIT_VERIFY",
        default: "(empty: none)",
        help: "limit per client IP on /auth/verify (forward-auth), same grammar",
    },
    VarDoc {
        name: "RATE_LIMIT_FAIL",
        default: "open",
        help: "when the shared limiter (REDIS_URL) cannot be reached: open (allow) or closed (refuse with 429)",
    },
];

/// What the limiter does when its shared store cannot answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// Allow the request (availability first; the default).
    Open,
    /// Refuse it as if over the limit.
    Closed,
}

#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub auth: Vec<Limit>,
    /// Empty: no limit.
    pub verify: Vec<Limit>,
    pub fail: FailMode,
}

pub fn parse(env: &Env) -> Result<LimitSettings, ConfigError> {
    let auth = parse_limits(
        &env.get("RATE_LIMIT_AUTH")
            .unwrap_or_else(|| "60/minute".into()),
    )
    .map_err(|e| ConfigError::new("RATE_LIMIT_AUTH", e))?;
    let verify = match env.get("RATE_LIMIT_VERIFY") {
        None => Vec::new(),
        Some(v) => parse_limits(&v).map_err(|e| ConfigError::new("RATE_LIMIT_VERIFY", e))?,
    };
    let fail = match env.get("RATE_LIMIT_FAIL").as_deref().map(str::trim) {
        None | Some("open") => FailMode::Open,
        Some("closed") => FailMode::Closed,
        Some(other) => {
            return Err(ConfigError::new(
                "RATE_LIMIT_FAIL",
                format!("expected open or closed, got {other:?}"),
            ));
        }
    };
    Ok(LimitSettings { auth, verify, fail })
}
