//! Settings, read once from the environment and validated into runtime
//! types, one section per concern: each section documents its variables
//! ([`VarDoc`]) and parses them; [`Settings`] is the sections together.
//!
//! A bad value stops start-up with a [`ConfigError`] that names the variable
//! in one line; secret values are never echoed back. Every read goes
//! through [`Env`], which records what was asked for, so a test can prove
//! that the documented variables are exactly the ones the parsers read.

mod cookies;
mod identity;
mod limits;
mod parse;
pub mod proxy;
mod security;
mod server;
mod sessions;
mod storage;
mod telemetry;
mod vault;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;

pub use cookies::{CookieSettings, SameSite};
pub use identity::{IdentitySettings, OidcSettings, Provider, SupabaseSettings};
pub use limits::{FailMode, LimitSettings};
pub use proxy::{ProxyRoute, ProxyRoutes, ProxySettings, ProxyToken};
pub use security::SecuritySettings;
pub use server::{Environment, ServerSettings, public_path};
pub use sessions::{DEFAULT_TOKEN_CACHE_SIZE, LogoutScope, SessionSettings};
pub use storage::StorageSettings;
pub use telemetry::{DEFAULT_FILTER as DEFAULT_LOG_FILTER, LogFormat, TelemetrySettings};
pub use vault::{ProviderClientSettings, ServiceClient, VaultSettings};

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

/// One documented environment variable (drives `--help`, README and
/// `.env.example`, which a test keeps in step).
pub struct VarDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub help: &'static str,
}

/// The sections' variables, in the order `--help` lists them.
const SECTIONS: &[&[VarDoc]] = &[
    server::VARS,
    storage::VARS,
    cookies::VARS,
    security::VARS,
    limits::VARS,
    sessions::VARS,
    identity::VARS,
    vault::VARS,
    proxy::VARS,
    telemetry::VARS,
];

/// Every variable the server reads.
pub fn variables() -> impl Iterator<Item = &'static VarDoc> {
    SECTIONS.iter().flat_map(|section| section.iter())
}

/// The variables, as the parsers ask for them: empty values count as
/// unset, and every name asked for is recorded.
pub struct Env<'a> {
    source: &'a dyn Fn(&str) -> Option<String>,
    read: RefCell<BTreeSet<&'static str>>,
}

impl<'a> Env<'a> {
    pub fn new(source: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            source,
            read: RefCell::new(BTreeSet::new()),
        }
    }

    pub fn get(&self, name: &'static str) -> Option<String> {
        self.read.borrow_mut().insert(name);
        (self.source)(name).filter(|v| !v.trim().is_empty())
    }

    /// The names asked for so far.
    pub fn read(&self) -> BTreeSet<&'static str> {
        self.read.borrow().clone()
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
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub cookies: CookieSettings,
    pub security: SecuritySettings,
    pub limits: LimitSettings,
    pub sessions: SessionSettings,
    pub identity: IdentitySettings,
    pub vault: VaultSettings,
    pub proxy: ProxySettings,
    pub telemetry: TelemetrySettings,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_source(|name| std::env::var(name).ok())
    }

    /// Reads settings from any source of variables (tests pass a map).
    pub fn from_source(source: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Self::parse(&Env::new(&source))
    }

    /// Parses every section from `env`.
    pub fn parse(env: &Env) -> Result<Self, ConfigError> {
        let server = server::parse(env)?;
        let production = server.is_production();
        let cookies = cookies::parse(env, production)?;
        let identity = identity::parse(env, production)?;
        Ok(Settings {
            storage: storage::parse(env)?,
            security: security::parse(env, production)?,
            limits: limits::parse(env)?,
            sessions: sessions::parse(env, cookies.max_age)?,
            vault: vault::parse(env, &identity, production)?,
            proxy: proxy::parse(env)?,
            identity,
            telemetry: telemetry::parse(env)?,
            cookies,
            server,
        })
    }

    /// PUBLIC_URL, or `http://` + the address the server is bound to.
    pub fn public_url_for(&self, bound: SocketAddr) -> String {
        self.server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }

    pub fn is_production(&self) -> bool {
        self.server.is_production()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    pub(super) fn load(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_source(|k| map.get(k).cloned())
    }

    #[test]
    fn the_parsers_read_exactly_the_documented_variables() {
        let documented: BTreeSet<&str> = variables().map(|v| v.name).collect();
        assert_eq!(
            documented.len(),
            variables().count(),
            "a variable is documented twice"
        );
        let none = |_: &str| None;
        let env = Env::new(&none);
        Settings::parse(&env).unwrap();
        assert_eq!(env.read(), documented);
    }

    #[test]
    fn defaults_start_in_development_on_localhost_8000() {
        let s = load(&[]).unwrap();
        assert_eq!(s.server.environment, Environment::Development);
        assert_eq!(s.server.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(s.cookies.session_name, "chronos_session");
        assert!(!s.cookies.secure);
        assert_eq!(s.cookies.same_site, SameSite::Lax);
        assert_eq!(
            s.security.allowed_origins,
            vec!["http://localhost:5173".to_string()]
        );
        assert_eq!(s.sessions.logout_scope, LogoutScope::Local);
        assert!(s.security.csrf_secret.is_none());
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
        assert!(!s.identity.signup_enabled);
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
            ("DATABASE_URL", "postgres://"),
            ("DATABASE_CONNECT_TIMEOUT", "0"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("TOKEN_CACHE_SIZE", "lots"),
            ("LOG_FORMAT", "xml"),
            ("RUST_LOG", "info,[=nonsense"),
            ("IDENTITY_PROVIDER", "ldap"),
            ("OIDC_ISSUER", "https://accounts.google.com"),
        ] {
            let err = load(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value} blamed {}", err.var);
        }
        let err = load(&[("COOKIE_SAMESITE", "none")]).unwrap_err();
        assert_eq!(err.var, "COOKIE_SAMESITE", "SameSite=None needs Secure");
    }

    #[test]
    fn oidc_combinations_are_checked() {
        let oidc = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("IDENTITY_PROVIDER", "oidc"),
                ("OIDC_ISSUER", "https://accounts.google.com"),
                ("OIDC_CLIENT_ID", "client"),
            ];
            pairs.extend_from_slice(extra);
            load(&pairs)
        };
        let s = oidc(&[("OIDC_AUTH_PARAMS", "access_type=offline&prompt=consent")]).unwrap();
        let Provider::Oidc(o) = s.identity.provider else {
            panic!("oidc expected")
        };
        assert_eq!(o.scopes, ["openid", "email", "profile"]);
        assert_eq!(o.auth_params.len(), 2);
        assert!(o.require_verified_email && o.revoke_on_logout);
        for (var, value) in [
            ("OIDC_ISSUER", "http://accounts.google.com"),
            ("OIDC_ISSUER", "not a url"),
            ("OIDC_SCOPES", "email profile"),
            ("OIDC_AUTH_PARAMS", "state=fixed"),
            ("OIDC_AUTH_PARAMS", "redirect_uri=https://evil.example"),
            ("OIDC_ALLOWED_EMAIL_DOMAINS", "not a domain"),
            ("OIDC_REQUIRE_VERIFIED_EMAIL", "sometimes"),
        ] {
            let err = oidc(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}: {err}");
        }
        let err = load(&[
            ("IDENTITY_PROVIDER", "oidc"),
            ("OIDC_ISSUER", "https://x.example"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OIDC_CLIENT_ID");
        // Plain http only on loopback, and never in production.
        assert!(oidc(&[("OIDC_ISSUER", "http://127.0.0.1:4010")]).is_ok());
        let err = load(&[
            ("ENVIRONMENT", "production"),
            ("CSRF_SECRET_KEY", &"k".repeat(32)),
            ("IDENTITY_PROVIDER", "oidc"),
            ("OIDC_ISSUER", "http://127.0.0.1:4010"),
            ("OIDC_CLIENT_ID", "client"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "OIDC_ISSUER");
        // The secret is never echoed.
        let err = oidc(&[("OIDC_CLIENT_SECRET", "hunter2"), ("OIDC_SCOPES", "x")]).unwrap_err();
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn supabase_combinations_are_checked() {
        let supabase = |extra: &[(&str, &str)]| {
            let mut pairs = vec![
                ("IDENTITY_PROVIDER", "supabase"),
                ("SUPABASE_URL", "https://abcd.supabase.co/"),
                ("SUPABASE_ANON_KEY", "anon-key"),
            ];
            pairs.extend_from_slice(extra);
            load(&pairs)
        };
        let s =
            supabase(&[("SUPABASE_AUTH_PARAMS", "access_type=offline&prompt=consent")]).unwrap();
        let Provider::Supabase(sb) = s.identity.provider else {
            panic!("supabase expected")
        };
        assert_eq!(sb.auth_url(), "https://abcd.supabase.co/auth/v1");
        assert_eq!(sb.oauth_provider, "google");
        assert_eq!(sb.auth_params.len(), 2);
        for (var, value) in [
            ("SUPABASE_URL", "http://abcd.supabase.co"),
            ("SUPABASE_URL", "https://abcd.supabase.co/auth/v1"),
            ("SUPABASE_PUBLISHABLE_KEY", "sb_secret_abc"),
            ("SUPABASE_JWT_SECRET", "short"),
            ("SUPABASE_OAUTH_PROVIDER", "goo gle"),
            ("SUPABASE_AUTH_PARAMS", "redirect_to=https://evil.example"),
        ] {
            let err = supabase(&[(var, value)]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}: {err}");
        }
        let err = load(&[("IDENTITY_PROVIDER", "supabase")]).unwrap_err();
        assert_eq!(err.var, "SUPABASE_URL");
        let err = load(&[
            ("IDENTITY_PROVIDER", "supabase"),
            ("SUPABASE_URL", "https://abcd.supabase.co"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "SUPABASE_PUBLISHABLE_KEY");
        let err = load(&[("SUPABASE_URL", "https://abcd.supabase.co")]).unwrap_err();
        assert_eq!(
            err.var, "SUPABASE_URL",
            "set without IDENTITY_PROVIDER=supabase"
        );
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
        assert_eq!(s.security.frontend_url, "https://app.example.com");
        assert_eq!(
            s.security.allowed_origins,
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
            s.sessions.logout_clear_site_data.as_deref(),
            Some("\"cache\", \"storage\"")
        );
    }

    #[test]
    fn secret_debug_prints_nothing() {
        let s = Secret::new(b"hunter2hunter2".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
