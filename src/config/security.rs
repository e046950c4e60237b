//! The security section: CSRF, trusted proxies, allowed origins and
//! redirect targets.

use ipnet::IpNet;
use url::Url;

use super::{ConfigError, Env, Secret, VarDoc, parse};

pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "CSRF_SECRET_KEY",
        default: "(generated into DATA_DIR)",
        help: "HMAC key for CSRF tokens; production requires at least 32 bytes",
    },
    VarDoc {
        name: "CSRF_TOKEN_TTL_SECONDS",
        default: "3600",
        help: "CSRF token and cookie lifetime, seconds",
    },
    VarDoc {
        name: "LOGOUT_REQUIRE_CSRF",
        default: "false",
        help: "require the X-CSRF-Token check on /auth/logout",
    },
    VarDoc {
        name: "TRUSTED_PROXIES",
        default: "(empty)",
        help: "comma-separated CIDRs whose X-Forwarded-For is believed",
    },
    VarDoc {
        name: "FRONTEND_URL",
        default: "http://localhost:5173",
        help: "the web app; its origin is allowed and sign-in returns to FRONTEND_URL/auth/web/callback",
    },
    VarDoc {
        name: "CORS_ORIGINS",
        default: "http://localhost:5173",
        help: "further allowed origins, comma-separated",
    },
    VarDoc {
        name: "DESKTOP_PROXY_ORIGINS",
        default: "http://localhost:5173",
        help: "origins of the desktop app's proxy, comma-separated",
    },
    VarDoc {
        name: "OAUTH_REDIRECT_URLS",
        default: "(empty)",
        help: "allowed redirectTo values for /auth/google/login, comma-separated, matched exactly",
    },
    VarDoc {
        name: "DESKTOP_REDIRECT_URL",
        default: "chronos://auth/callback",
        help: "deep link that /auth/desktop/callback hands the code to",
    },
];

#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// `None` in development means "generate one and keep it in DATA_DIR".
    pub csrf_secret: Option<Secret>,
    pub csrf_token_ttl: u64,
    pub logout_require_csrf: bool,
    pub trusted_proxies: Vec<IpNet>,
    /// FRONTEND_URL without a trailing slash.
    pub frontend_url: String,
    /// FRONTEND_URL's origin + CORS_ORIGINS + DESKTOP_PROXY_ORIGINS, deduplicated.
    pub allowed_origins: Vec<String>,
    pub oauth_redirect_urls: Vec<String>,
    pub desktop_redirect_url: String,
}

pub fn parse(env: &Env, production: bool) -> Result<SecuritySettings, ConfigError> {
    let csrf_secret = match env.get("CSRF_SECRET_KEY") {
        Some(v) if production && v.len() < 32 => {
            return Err(ConfigError::new(
                "CSRF_SECRET_KEY",
                format!(
                    "must be at least 32 bytes in production (got {}); generate one with: openssl rand -base64 48",
                    v.len()
                ),
            ));
        }
        Some(v) => Some(Secret::new(v.into_bytes())),
        None if production => {
            return Err(ConfigError::new(
                "CSRF_SECRET_KEY",
                "is required in production (at least 32 bytes); generate one with: openssl rand -base64 48",
            ));
        }
        None => None,
    };
    let csrf_token_ttl = parse::seconds_or(
        "CSRF_TOKEN_TTL_SECONDS",
        env.get("CSRF_TOKEN_TTL_SECONDS"),
        3600,
        1,
    )?;
    let logout_require_csrf =
        parse::bool_or("LOGOUT_REQUIRE_CSRF", env.get("LOGOUT_REQUIRE_CSRF"), false)?;

    let trusted_proxies = match env.get("TRUSTED_PROXIES") {
        None => Vec::new(),
        Some(v) => parse::split_list(&v)
            .map(|item| {
                parse::cidr(item).ok_or_else(|| {
                    ConfigError::new(
                        "TRUSTED_PROXIES",
                        format!("{item:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };

    let default_origin = "http://localhost:5173";
    let frontend_url = parse::base_url(
        "FRONTEND_URL",
        &env.get("FRONTEND_URL")
            .unwrap_or_else(|| default_origin.into()),
    )?;
    let mut allowed_origins = vec![parse::origin_of("FRONTEND_URL", &frontend_url)?];
    for var in ["CORS_ORIGINS", "DESKTOP_PROXY_ORIGINS"] {
        let value = env.get(var).unwrap_or_else(|| default_origin.into());
        for item in parse::split_list(&value) {
            let origin = parse::origin(var, item)?;
            if !allowed_origins.contains(&origin) {
                allowed_origins.push(origin);
            }
        }
    }

    let oauth_redirect_urls = match env.get("OAUTH_REDIRECT_URLS") {
        None => Vec::new(),
        Some(v) => parse::split_list(&v)
            .map(|item| {
                Url::parse(item).map(|_| item.to_string()).map_err(|_| {
                    ConfigError::new(
                        "OAUTH_REDIRECT_URLS",
                        format!("{item:?} is not an absolute URL"),
                    )
                })
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let desktop_redirect_url = env
        .get("DESKTOP_REDIRECT_URL")
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "chronos://auth/callback".into());
    if Url::parse(&desktop_redirect_url).is_err() {
        return Err(ConfigError::new(
            "DESKTOP_REDIRECT_URL",
            format!("{desktop_redirect_url:?} is not an absolute URL"),
        ));
    }
    Ok(SecuritySettings {
        csrf_secret,
        csrf_token_ttl,
        logout_require_csrf,
        trusted_proxies,
        frontend_url,
        allowed_origins,
        oauth_redirect_urls,
        desktop_redirect_url,
    })
}
