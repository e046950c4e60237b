//! The identity section: how people sign in.

use super::{ConfigError, Env, VarDoc, parse};

pub const VARS: &[VarDoc] = &[VarDoc {
    name: "SIGNUP_ENABLED",
    default: "true (production: false)",
    help: "whether the embedded sign-in page offers sign-up",
}];

#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub signup_enabled: bool,
}

pub fn parse(env: &Env, production: bool) -> Result<IdentitySettings, ConfigError> {
    Ok(IdentitySettings {
        signup_enabled: parse::bool_or("SIGNUP_ENABLED", env.get("SIGNUP_ENABLED"), !production)?,
    })
}
