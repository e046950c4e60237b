//! The server section: environment, listen address, public URL, data directory.

use std::net::SocketAddr;
use std::path::PathBuf;

use super::{ConfigError, Env, VarDoc, parse};

pub const VARS: &[VarDoc] = &[
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
        help: "the server's external base URL as browsers reach it, a path allowed behind a proxy that strips it (sign-in page links, the access-token issuer)",
    },
    VarDoc {
        name: "DATA_DIR",
        default: "./data",
        help: "where the embedded stores keep their files (SQLite database, generated secrets)",
    },
    VarDoc {
        name: "METRICS_BIND",
        default: "(off)",
        help: "listen address of the Prometheus metrics endpoint GET /metrics (host:port; keep it private)",
    },
    VarDoc {
        name: "SHUTDOWN_TIMEOUT",
        default: "10",
        help: "seconds in-flight requests may take to finish after SIGTERM or SIGINT",
    },
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub environment: Environment,
    pub bind: SocketAddr,
    /// Explicit PUBLIC_URL; when `None` it follows the bound address.
    pub public_url: Option<String>,
    pub data_dir: PathBuf,
    /// How long a shutdown waits for in-flight requests.
    pub shutdown_timeout: std::time::Duration,
    /// Where `GET /metrics` is served; off when `None`.
    pub metrics_bind: Option<SocketAddr>,
}

impl ServerSettings {
    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}

/// PUBLIC_URL: an absolute http(s) URL, a path allowed (without the
/// trailing slash), no query or fragment (the server appends its paths).
fn parse_public_url(value: &str) -> Result<String, ConfigError> {
    let url = parse::base_url("PUBLIC_URL", value)?;
    match url::Url::parse(&url) {
        Ok(parsed) if parsed.query().is_none() && parsed.fragment().is_none() => Ok(url),
        _ => Err(ConfigError::new(
            "PUBLIC_URL",
            format!("expected a base URL without ?query or #fragment, got {value:?}"),
        )),
    }
}

/// The path of a public URL, without its trailing slash: `""` at the root,
/// `"/api"` for `http://localhost:5174/api`. A proxy in front strips it
/// before a request reaches the server's routes, so every URL the server
/// writes for the browser starts with it.
pub fn public_path(public_url: &str) -> String {
    url::Url::parse(public_url)
        .map(|url| url.path().trim_end_matches('/').to_string())
        .unwrap_or_default()
}

pub fn parse(env: &Env) -> Result<ServerSettings, ConfigError> {
    let environment = match env.get("ENVIRONMENT") {
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
    let bind = match env.get("BIND") {
        None => SocketAddr::from(([127, 0, 0, 1], 8000)),
        Some(v) => v.trim().parse().map_err(|_| {
            ConfigError::new(
                "BIND",
                format!("expected host:port such as 127.0.0.1:8000, got {v:?}"),
            )
        })?,
    };
    let public_url = env
        .get("PUBLIC_URL")
        .map(|v| parse_public_url(&v))
        .transpose()?;
    let data_dir = PathBuf::from(env.get("DATA_DIR").unwrap_or_else(|| "./data".into()));
    let shutdown_timeout = std::time::Duration::from_secs(parse::seconds_or(
        "SHUTDOWN_TIMEOUT",
        env.get("SHUTDOWN_TIMEOUT"),
        10,
        0,
    )?);
    let metrics_bind = match env.get("METRICS_BIND") {
        None => None,
        Some(v) => {
            let addr: SocketAddr = v.trim().parse().map_err(|_| {
                ConfigError::new(
                    "METRICS_BIND",
                    format!("expected host:port such as 127.0.0.1:9090, got {v:?}"),
                )
            })?;
            if addr.port() != 0 && addr == bind {
                return Err(ConfigError::new(
                    "METRICS_BIND",
                    "must differ from BIND: metrics are never served on the public port",
                ));
            }
            Some(addr)
        }
    };
    Ok(ServerSettings {
        metrics_bind,
        environment,
        bind,
        public_url,
        data_dir,
        shutdown_timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::public_path;
    use crate::config::tests::load;

    #[test]
    fn public_url_may_have_a_path_but_no_query_or_fragment() {
        let public = |value: &str| {
            load(&[("PUBLIC_URL", value)]).map(|s| s.server.public_url.unwrap_or_default())
        };
        assert_eq!(
            public("http://localhost:5174/api/").unwrap(),
            "http://localhost:5174/api"
        );
        assert_eq!(
            public("https://example.com/").unwrap(),
            "https://example.com"
        );
        for bad in [
            "http://localhost/api?x=1",
            "http://localhost/#top",
            "/api",
            "ftp://x",
        ] {
            let error = public(bad).unwrap_err().to_string();
            assert!(error.contains("PUBLIC_URL"), "{bad}: {error}");
        }
    }

    #[test]
    fn the_path_is_what_written_urls_start_with() {
        assert_eq!(public_path("http://localhost:5174/api"), "/api");
        assert_eq!(public_path("http://localhost:5174/a/b/"), "/a/b");
        assert_eq!(public_path("https://auth.example.com"), "");
        assert_eq!(public_path("http://localhost:5174/my api"), "/my%20api");
    }
}
