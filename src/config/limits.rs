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
];

#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub auth: Vec<Limit>,
    /// Empty: no limit.
    pub verify: Vec<Limit>,
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
    Ok(LimitSettings { auth, verify })
}
