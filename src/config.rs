//! Settings, read once from the environment and validated into runtime types.
//!
//! Every variable of API.md's configuration table is here. A bad value stops
//! start-up with a [`ConfigError`] that names the variable in one line; secret
//! values are never echoed back.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use url::Url;

use crate::security::rate_limit::{self, Limit};

/// A configuration error: which variable, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        Self {
            var,
            message: message.into(),
        }
    }
}

/// One documented environment variable (drives `--help` and `.env.example`).
pub struct VarDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// Every variable the server reads, in the order of API.md's table.
pub const VARIABLES: &[VarDoc] = &[
    VarDoc {
        name: "ENVIRONMENT",
        default: "development",
        help: "development or production (production enforces Secure cookies, a CSRF secret, __Host- names)",
    },
    VarDoc {
        name: "BIND",
        default: "127.0.0.1:8000",
        help: "listen address (host:port; port 0 picks a free one)",
    },
    VarDoc {
        name: "PUBLIC_URL",
        default: "http:// + BIND",
        help: "the server's external base URL, used for sign-in page links",
    },
    VarDoc {
        name: "DATA_DIR",
        default: "./data",
        help: "where the embedded stores keep their files (SQLite database, generated secrets)",
    },
    VarDoc {
        name: "DATABASE_URL",
        default: "sqlite://DATA_DIR/chronos.db",
        help: "the identity store (sqlite://...)",
    },
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
    VarDoc {
        name: "LOGOUT_REQUIRE_CSRF",
        default: "false",
        help: "require the X-CSRF-Token check on /auth/logout",
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
        name: "SIGNUP_ENABLED",
        default: "true (production: false)",
        help: "whether the embedded sign-in page offers sign-up",
    },
    VarDoc {
        name: "RUST_LOG",
        default: "info",
        help: "log filter (tracing EnvFilter syntax)",
    },
    VarDoc {
        name: "LOG_FORMAT",
        default: "text",
        help: "text or json (one JSON object per line)",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

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

/// What logout revokes on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutScope {
    /// The seed's behaviour: clear cookies only.
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

/// A secret whose `Debug` prints nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(bytes)
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
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

#[derive(Debug, Clone)]
pub struct Settings {
    pub environment: Environment,
    pub bind: SocketAddr,
    /// Explicit PUBLIC_URL; when `None` it follows the bound address.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    pub database_url: Option<String>,
    pub cookies: CookieSettings,
    /// `None` in development means "generate one and keep it in DATA_DIR".
    pub csrf_secret: Option<Secret>,
    pub csrf_token_ttl: u64,
    pub rate_limit_auth: Vec<Limit>,
    pub rate_limit_verify: Vec<Limit>,
    pub trusted_proxies: Vec<IpNet>,
    /// FRONTEND_URL without a trailing slash.
    pub frontend_url: String,
    /// FRONTEND_URL's origin + CORS_ORIGINS + DESKTOP_PROXY_ORIGINS, deduplicated.
    pub allowed_origins: Vec<String>,
    pub oauth_redirect_urls: Vec<String>,
    pub desktop_redirect_url: String,
    pub logout_require_csrf: bool,
    pub logout_scope: LogoutScope,
    /// The exact `Clear-Site-Data` header value, if any.
    pub logout_clear_site_data: Option<String>,
    pub access_token_ttl: u64,
    pub refresh_reuse_interval: u64,
    pub signup_enabled: bool,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(|name| std::env::var(name).ok())
    }

    /// Reads settings from any source of variables (tests pass a map).
    /// Empty values count as unset.
    pub fn from_source(source: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| source(name).filter(|v| !v.trim().is_empty());

        let environment = match get("ENVIRONMENT") {
            None => Environment::Development,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "development" | "dev" => Environment::Development,
                "production" | "prod" => Environment::Production,
                _ => {
                    return Err(ConfigError::new(
                        "ENVIRONMENT",
                        format!("expected development or production, got {v:?}"),
                    ));
                }
            },
        };
        let production = environment == Environment::Production;

        let bind: SocketAddr = match get("BIND") {
            None => SocketAddr::from(([127, 0, 0, 1], 8000)),
            Some(v) => v.trim().parse().map_err(|_| {
                ConfigError::new(
                    "BIND",
                    format!("expected host:port such as 127.0.0.1:8000, got {v:?}"),
                )
            })?,
        };

        let public_url = get("PUBLIC_URL")
            .map(|v| parse_base_url("PUBLIC_URL", &v))
            .transpose()?;

        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "./data".into()));
        let database_url = get("DATABASE_URL");
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

        let secure = match get("COOKIE_SECURE") {
            None => production,
            Some(v) => parse_bool("COOKIE_SECURE", &v)?,
        };
        if production && !secure {
            return Err(ConfigError::new(
                "COOKIE_SECURE",
                "must be true in production (browsers would send session cookies over plain HTTP)",
            ));
        }
        let same_site = match get("COOKIE_SAMESITE") {
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
        let domain = get("COOKIE_DOMAIN").map(|v| v.trim().to_string());
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
        let max_age = parse_u64("COOKIE_MAX_AGE", get("COOKIE_MAX_AGE"), 604_800, 1)?;

        let cookie_name =
            |var: &'static str, dev: &str, prod: &str| -> Result<String, ConfigError> {
                let name = get(var)
                    .map(|v| v.trim().to_string())
                    .unwrap_or_else(|| if production { prod } else { dev }.to_string());
                validate_cookie_name(var, &name, secure, domain.as_deref())?;
                Ok(name)
            };
        let session_name = cookie_name("SESSION_COOKIE_NAME", "chronos_session", "__Host-session")?;
        let refresh_name = cookie_name("REFRESH_COOKIE_NAME", "chronos_refresh", "__Host-refresh")?;
        let csrf_name = cookie_name("CSRF_COOKIE_NAME", "chronos_csrf", "__Host-csrf")?;
        if session_name == refresh_name || session_name == csrf_name || refresh_name == csrf_name {
            return Err(ConfigError::new(
                "SESSION_COOKIE_NAME",
                "SESSION_COOKIE_NAME, REFRESH_COOKIE_NAME and CSRF_COOKIE_NAME must all differ",
            ));
        }

        let csrf_secret = match get("CSRF_SECRET_KEY") {
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
        let csrf_token_ttl = parse_u64(
            "CSRF_TOKEN_TTL_SECONDS",
            get("CSRF_TOKEN_TTL_SECONDS"),
            3600,
            1,
        )?;

        let rate_limit_auth = match get("RATE_LIMIT_AUTH") {
            None => rate_limit::parse_limits("60/minute")
                .map_err(|e| ConfigError::new("RATE_LIMIT_AUTH", e))?,
            Some(v) => {
                rate_limit::parse_limits(&v).map_err(|e| ConfigError::new("RATE_LIMIT_AUTH", e))?
            }
        };
        let rate_limit_verify = match get("RATE_LIMIT_VERIFY") {
            None => Vec::new(),
            Some(v) => rate_limit::parse_limits(&v)
                .map_err(|e| ConfigError::new("RATE_LIMIT_VERIFY", e))?,
        };

        let trusted_proxies = match get("TRUSTED_PROXIES") {
            None => Vec::new(),
            Some(v) => split_list(&v)
                .map(|item| {
                    parse_cidr(item).ok_or_else(|| {
                        ConfigError::new(
                            "TRUSTED_PROXIES",
                            format!("{item:?} is not an IP address or CIDR (e.g. 10.0.0.0/8)"),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?,
        };

        let default_origin = "http://localhost:5173";
        let frontend_url = parse_base_url(
            "FRONTEND_URL",
            &get("FRONTEND_URL").unwrap_or_else(|| default_origin.into()),
        )?;
        let mut allowed_origins = vec![origin_of("FRONTEND_URL", &frontend_url)?];
        for var in ["CORS_ORIGINS", "DESKTOP_PROXY_ORIGINS"] {
            let value = get(var).unwrap_or_else(|| default_origin.into());
            for item in split_list(&value) {
                let origin = parse_origin(var, item)?;
                if !allowed_origins.contains(&origin) {
                    allowed_origins.push(origin);
                }
            }
        }

        let oauth_redirect_urls = match get("OAUTH_REDIRECT_URLS") {
            None => Vec::new(),
            Some(v) => split_list(&v)
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
        let desktop_redirect_url =
            get("DESKTOP_REDIRECT_URL").unwrap_or_else(|| "chronos://auth/callback".into());
        if Url::parse(desktop_redirect_url.trim()).is_err() {
            return Err(ConfigError::new(
                "DESKTOP_REDIRECT_URL",
                format!("{desktop_redirect_url:?} is not an absolute URL"),
            ));
        }

        let logout_require_csrf = match get("LOGOUT_REQUIRE_CSRF") {
            None => false,
            Some(v) => parse_bool("LOGOUT_REQUIRE_CSRF", &v)?,
        };
        let logout_scope = match get("LOGOUT_SCOPE") {
            None => LogoutScope::Local,
            Some(v) => LogoutScope::parse(&v).ok_or_else(|| {
                ConfigError::new(
                    "LOGOUT_SCOPE",
                    format!("expected none, local or global, got {v:?}"),
                )
            })?,
        };
        let logout_clear_site_data = get("LOGOUT_CLEAR_SITE_DATA")
            .map(|v| parse_clear_site_data(&v))
            .transpose()?;

        let access_token_ttl = parse_u64(
            "ACCESS_TOKEN_TTL_SECONDS",
            get("ACCESS_TOKEN_TTL_SECONDS"),
            3600,
            1,
        )?;
        let refresh_reuse_interval = parse_u64(
            "REFRESH_REUSE_INTERVAL_SECONDS",
            get("REFRESH_REUSE_INTERVAL_SECONDS"),
            10,
            0,
        )?;
        let signup_enabled = match get("SIGNUP_ENABLED") {
            None => !production,
            Some(v) => parse_bool("SIGNUP_ENABLED", &v)?,
        };

        Ok(Settings {
            environment,
            bind,
            public_url,
            data_dir,
            database_url,
            cookies: CookieSettings {
                session_name,
                refresh_name,
                csrf_name,
                max_age,
                domain,
                secure,
                same_site,
            },
            csrf_secret,
            csrf_token_ttl,
            rate_limit_auth,
            rate_limit_verify,
            trusted_proxies,
            frontend_url,
            allowed_origins,
            oauth_redirect_urls,
            desktop_redirect_url: desktop_redirect_url.trim().to_string(),
            logout_require_csrf,
            logout_scope,
            logout_clear_site_data,
            access_token_ttl,
            refresh_reuse_interval,
            signup_enabled,
        })
    }

    /// PUBLIC_URL, or `http://` + the address the server is bound to.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}

fn split_list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn parse_bool(var: &'static str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(ConfigError::new(
            var,
            format!("expected true or false, got {value:?}"),
        )),
    }
}

fn parse_u64(
    var: &'static str,
    value: Option<String>,
    default: u64,
    min: u64,
) -> Result<u64, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.trim().parse::<u64>() {
        Ok(n) if n >= min && n <= 10 * 365 * 86_400 => Ok(n),
        _ => Err(ConfigError::new(
            var,
            format!("expected a whole number of seconds from {min} to 315360000, got {value:?}"),
        )),
    }
}

fn parse_cidr(item: &str) -> Option<IpNet> {
    item.parse::<IpNet>()
        .ok()
        .or_else(|| item.parse::<std::net::IpAddr>().ok().map(IpNet::from))
        .map(|net| net.trunc())
}

/// An absolute http(s) URL used as a base: returned without a trailing slash.
fn parse_base_url(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let value = value.trim();
    match Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(value.trim_end_matches('/').to_string())
        }
        _ => Err(ConfigError::new(
            var,
            format!("expected an absolute http(s) URL, got {value:?}"),
        )),
    }
}

/// `scheme://host[:port]` of an absolute URL (non-special schemes such as
/// `tauri://` included, which `Url::origin` would make opaque).
fn origin_of(var: &'static str, value: &str) -> Result<String, ConfigError> {
    let url = Url::parse(value).map_err(|_| {
        ConfigError::new(
            var,
            format!("{value:?} is not an origin (scheme://host[:port])"),
        )
    })?;
    let host = url.host_str().ok_or_else(|| {
        ConfigError::new(
            var,
            format!("{value:?} is not an origin (scheme://host[:port])"),
        )
    })?;
    Ok(match url.port() {
        Some(port) => format!("{}://{}:{}", url.scheme(), host, port),
        None => format!("{}://{}", url.scheme(), host),
    })
}

fn parse_origin(var: &'static str, value: &str) -> Result<String, ConfigError> {
    if value == "*" {
        return Err(ConfigError::new(
            var,
            "\"*\" cannot be used: credentialed CORS needs explicit origins",
        ));
    }
    let origin = origin_of(var, value)?;
    if origin != value.trim_end_matches('/') {
        return Err(ConfigError::new(
            var,
            format!("{value:?} is not an origin (scheme://host[:port], no path)"),
        ));
    }
    Ok(origin)
}

/// Validates a cookie name against RFC 6265 and the browser prefix rules.
fn validate_cookie_name(
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

/// Accepts `"cache", "storage"` (or the same unquoted) and returns the header
/// value with every directive quoted, as the Clear-Site-Data grammar wants.
fn parse_clear_site_data(value: &str) -> Result<String, ConfigError> {
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
    for item in split_list(value) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_source(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_start_in_development_on_localhost_8000() {
        let s = load(&[]).unwrap();
        assert_eq!(s.environment, Environment::Development);
        assert_eq!(s.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(s.cookies.session_name, "chronos_session");
        assert!(!s.cookies.secure);
        assert_eq!(s.cookies.same_site, SameSite::Lax);
        assert_eq!(s.allowed_origins, vec!["http://localhost:5173".to_string()]);
        assert_eq!(s.logout_scope, LogoutScope::Local);
        assert!(s.csrf_secret.is_none());
    }

    #[test]
    fn production_needs_a_long_secret_and_uses_host_cookies() {
        let err = load(&[("ENVIRONMENT", "production")]).unwrap_err();
        assert_eq!(err.var, "CSRF_SECRET_KEY");
        let err = load(&[("ENVIRONMENT", "production"), ("CSRF_SECRET_KEY", "short")]).unwrap_err();
        assert_eq!(err.var, "CSRF_SECRET_KEY");
        assert!(
            !err.to_string().contains("short"),
            "the secret is never echoed"
        );
        let s = load(&[
            ("ENVIRONMENT", "production"),
            ("CSRF_SECRET_KEY", &"k".repeat(32)),
        ])
        .unwrap();
        assert_eq!(s.cookies.session_name, "__Host-session");
        assert!(s.cookies.secure);
        assert!(!s.signup_enabled);
    }

    #[test]
    fn production_refuses_insecure_cookies_and_samesite_none() {
        let key = "k".repeat(32);
        let err = load(&[
            ("ENVIRONMENT", "production"),
            ("CSRF_SECRET_KEY", &key),
            ("COOKIE_SECURE", "false"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "COOKIE_SECURE");
        let err = load(&[
            ("ENVIRONMENT", "production"),
            ("CSRF_SECRET_KEY", &key),
            ("COOKIE_SAMESITE", "none"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "COOKIE_SAMESITE");
    }

    #[test]
    fn host_prefix_needs_secure_and_no_domain() {
        let err = load(&[("SESSION_COOKIE_NAME", "__Host-s")]).unwrap_err();
        assert_eq!(err.var, "SESSION_COOKIE_NAME");
        let err = load(&[
            ("SESSION_COOKIE_NAME", "__Host-s"),
            ("COOKIE_SECURE", "true"),
            ("COOKIE_DOMAIN", "example.com"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "SESSION_COOKIE_NAME");
        let err = load(&[("CSRF_COOKIE_NAME", "__Secure-c")]).unwrap_err();
        assert_eq!(err.var, "CSRF_COOKIE_NAME");
        assert!(
            load(&[
                ("SESSION_COOKIE_NAME", "__Host-s"),
                ("COOKIE_SECURE", "true")
            ])
            .is_ok()
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("COOKIE_SAMESITE", "sometimes"),
            ("RATE_LIMIT_AUTH", "lots"),
            ("RATE_LIMIT_VERIFY", "5/fortnight"),
            ("COOKIE_SECURE", "maybe"),
            ("COOKIE_MAX_AGE", "-1"),
            ("BIND", "localhost"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("CORS_ORIGINS", "*"),
            ("CORS_ORIGINS", "http://a.example/path"),
            ("FRONTEND_URL", "not a url"),
            ("LOGOUT_SCOPE", "everything"),
            ("LOGOUT_CLEAR_SITE_DATA", "\"history\""),
            ("SESSION_COOKIE_NAME", "bad name"),
            ("ENVIRONMENT", "staging"),
            ("DATABASE_URL", "mysql://x"),
        ] {
            let err = load(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value} blamed {}", err.var);
        }
        let err = load(&[("COOKIE_SAMESITE", "none")]).unwrap_err();
        assert_eq!(err.var, "COOKIE_SAMESITE", "SameSite=None needs Secure");
    }

    #[test]
    fn origins_are_merged_and_deduplicated() {
        let s = load(&[
            ("FRONTEND_URL", "https://app.example.com/"),
            (
                "CORS_ORIGINS",
                "https://admin.example.com, https://app.example.com",
            ),
            ("DESKTOP_PROXY_ORIGINS", "tauri://localhost"),
        ])
        .unwrap();
        assert_eq!(s.frontend_url, "https://app.example.com");
        assert_eq!(
            s.allowed_origins,
            vec![
                "https://app.example.com",
                "https://admin.example.com",
                "tauri://localhost"
            ]
        );
    }

    #[test]
    fn clear_site_data_is_normalised_to_quoted_directives() {
        let s = load(&[("LOGOUT_CLEAR_SITE_DATA", "cache, \"storage\"")]).unwrap();
        assert_eq!(
            s.logout_clear_site_data.as_deref(),
            Some("\"cache\", \"storage\"")
        );
    }

    #[test]
    fn secret_debug_prints_nothing() {
        let s = Secret::new(b"hunter2hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
