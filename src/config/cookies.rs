//! The cookie section: names and the attributes every cookie shares.

use super::{ConfigError, Env, VarDoc, parse};

pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "SESSION_COOKIE_NAME",
        default: "chronos_session (production: __Host-session)",
        help: "access-token cookie",
    },
    VarDoc {
        name: "REFRESH_COOKIE_NAME",
        default: "chronos_refresh (production: __Host-refresh)",
        help: "refresh-token cookie",
    },
    VarDoc {
        name: "CSRF_COOKIE_NAME",
        default: "chronos_csrf (production: __Host-csrf)",
        help: "CSRF cookie (readable by JavaScript)",
    },
    VarDoc {
        name: "COOKIE_MAX_AGE",
        default: "604800",
        help: "session and refresh cookie lifetime, seconds",
    },
    VarDoc {
        name: "COOKIE_DOMAIN",
        default: "(empty: host-only)",
        help: "Domain attribute of every cookie; not allowed with __Host- names",
    },
    VarDoc {
        name: "COOKIE_SECURE",
        default: "false (production: true, required)",
        help: "Secure attribute of every cookie",
    },
    VarDoc {
        name: "COOKIE_SAMESITE",
        default: "lax",
        help: "lax, strict or none (none needs COOKIE_SECURE=true; not allowed in production)",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Lax,
    Strict,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Lax => "Lax",
            SameSite::Strict => "Strict",
            SameSite::None => "None",
        }
    }
}

#[derive(Debug, Clone)]
pub struct CookieSettings {
    pub session_name: String,
    pub refresh_name: String,
    pub csrf_name: String,
    pub max_age: u64,
    pub domain: Option<String>,
    pub secure: bool,
    pub same_site: SameSite,
}

pub fn parse(env: &Env, production: bool) -> Result<CookieSettings, ConfigError> {
    let secure = parse::bool_or("COOKIE_SECURE", env.get("COOKIE_SECURE"), production)?;
    if production && !secure {
        return Err(ConfigError::new(
            "COOKIE_SECURE",
            "must be true in production (browsers would send session cookies over plain HTTP)",
        ));
    }
    let same_site = match env.get("COOKIE_SAMESITE") {
        None => SameSite::Lax,
        Some(v) => match v.trim().to_ascii_lowercase().as_str() {
            "lax" => SameSite::Lax,
            "strict" => SameSite::Strict,
            "none" => SameSite::None,
            _ => {
                return Err(ConfigError::new(
                    "COOKIE_SAMESITE",
                    format!("expected lax, strict or none, got {v:?}"),
                ));
            }
        },
    };
    if same_site == SameSite::None && production {
        return Err(ConfigError::new(
            "COOKIE_SAMESITE",
            "none is not allowed in production (it sends the session cookie on cross-site requests); use lax or strict",
        ));
    }
    if same_site == SameSite::None && !secure {
        return Err(ConfigError::new(
            "COOKIE_SAMESITE",
            "none requires COOKIE_SECURE=true (browsers drop SameSite=None cookies without Secure)",
        ));
    }
    let domain = env.get("COOKIE_DOMAIN").map(|v| v.trim().to_string());
    if let Some(d) = &domain
        && !d
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(ConfigError::new(
            "COOKIE_DOMAIN",
            format!("{d:?} is not a domain name"),
        ));
    }
    let max_age = parse::seconds_or("COOKIE_MAX_AGE", env.get("COOKIE_MAX_AGE"), 604_800, 1)?;

    let name = |var: &'static str, dev: &str, prod: &str| -> Result<String, ConfigError> {
        let name = env
            .get(var)
            .map(|v| v.trim().to_string())
            .unwrap_or_else(|| if production { prod } else { dev }.to_string());
        validate_name(var, &name, secure, domain.as_deref())?;
        Ok(name)
    };
    let session_name = name("SESSION_COOKIE_NAME", "chronos_session", "__Host-session")?;
    let refresh_name = name("REFRESH_COOKIE_NAME", "chronos_refresh", "__Host-refresh")?;
    let csrf_name = name("CSRF_COOKIE_NAME", "chronos_csrf", "__Host-csrf")?;
    if session_name == refresh_name || session_name == csrf_name || refresh_name == csrf_name {
        return Err(ConfigError::new(
            "SESSION_COOKIE_NAME",
            "SESSION_COOKIE_NAME, REFRESH_COOKIE_NAME and CSRF_COOKIE_NAME must all differ",
        ));
    }
    Ok(CookieSettings {
        session_name,
        refresh_name,
        csrf_name,
        max_age,
        domain,
        secure,
        same_site,
    })
}

/// A cookie name against RFC 6265 and the browser prefix rules.
fn validate_name(
    var: &'static str,
    name: &str,
    secure: bool,
    domain: Option<&str>,
) -> Result<(), ConfigError> {
    let token_char = |c: char| c.is_ascii_graphic() && !"()<>@,;:\\\"/[]?={}".contains(c);
    if name.is_empty() || !name.chars().all(token_char) {
        return Err(ConfigError::new(
            var,
            format!("{name:?} is not a valid cookie name"),
        ));
    }
    if name.starts_with("__Host-") {
        if !secure {
            return Err(ConfigError::new(
                var,
                format!("{name:?} has the __Host- prefix, which requires COOKIE_SECURE=true"),
            ));
        }
        if domain.is_some() {
            return Err(ConfigError::new(
                var,
                format!("{name:?} has the __Host- prefix, which forbids COOKIE_DOMAIN"),
            ));
        }
    }
    if name.starts_with("__Secure-") && !secure {
        return Err(ConfigError::new(
            var,
            format!("{name:?} has the __Secure- prefix, which requires COOKIE_SECURE=true"),
        ));
    }
    Ok(())
}
