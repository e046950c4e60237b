//! The proxy section: which path prefixes this server forwards to the
//! app's own APIs (a backend-for-frontend), and how.

use crate::limits::{Limit, parse_limits};

use super::{ConfigError, Env, VarDoc, parse};

pub const VARS: &[VarDoc] = &[
    VarDoc {
        name: "PROXY_ROUTES",
        default: "(empty: nothing is proxied)",
        help: "the app's APIs behind this server: PREFIX=URL, comma-separated, e.g. /calendar=http://127.0.0.1:9000/calendar; a request under PREFIX goes to URL + the rest of its path and its query, with the session's token",
    },
    VarDoc {
        name: "PROXY_TOKEN",
        default: "jwt",
        help: "what a proxied request carries to the upstream: jwt (Authorization: Bearer <the session's access token>) or none",
    },
    VarDoc {
        name: "PROXY_TIMEOUT",
        default: "30",
        help: "seconds an upstream may take to send its response head (504 after); bodies and streams are never cut while alive",
    },
    VarDoc {
        name: "PROXY_MAX_BODY",
        default: "10485760",
        help: "largest request body forwarded, in bytes (413 beyond, declared or chunked)",
    },
    VarDoc {
        name: "RATE_LIMIT_PROXY",
        default: "(empty: none)",
        help: "per-client limit on proxied requests, in RATE_LIMIT_AUTH's grammar",
    },
];

/// Paths of this server's own that no proxy prefix may touch.
const RESERVED: &[&str] = &[
    "/auth",
    "/health",
    "/.well-known",
    "/oauth",
    "/openapi.json",
];

/// One proxied prefix and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyRoute {
    /// `/calendar`: no trailing slash (shared: it labels the metrics).
    pub prefix: std::sync::Arc<String>,
    /// `http://127.0.0.1:9000/calendar`: no trailing slash.
    pub upstream: String,
}

/// The proxied prefixes, longest first (the longest match wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyRoutes(Vec<ProxyRoute>);

impl ProxyRoutes {
    /// The route `path` falls under (`PREFIX` or `PREFIX/...`), and the
    /// rest of the path after the prefix.
    pub fn matching<'p>(&self, path: &'p str) -> Option<(&ProxyRoute, &'p str)> {
        self.0.iter().find_map(|route| {
            let rest = path.strip_prefix(route.prefix.as_str())?;
            (rest.is_empty() || rest.starts_with('/')).then_some((route, rest))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &ProxyRoute> {
        self.0.iter()
    }
}

/// What a proxied request carries to its upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyToken {
    /// `Authorization: Bearer <the session's access token>`.
    Jwt,
    None,
}

#[derive(Debug, Clone)]
pub struct ProxySettings {
    pub routes: ProxyRoutes,
    pub token: ProxyToken,
    pub timeout: std::time::Duration,
    pub max_body: u64,
    pub limits: Vec<Limit>,
}

/// Whether two prefixes overlap at a segment boundary (one is the other,
/// or lies under it).
fn overlaps(a: &str, b: &str) -> bool {
    let under = |x: &str, y: &str| x == y || x.starts_with(&format!("{y}/"));
    under(a, b) || under(b, a)
}

pub fn parse(env: &Env) -> Result<ProxySettings, ConfigError> {
    let routes = match env.get("PROXY_ROUTES") {
        None => ProxyRoutes::default(),
        Some(v) => routes(&v)?,
    };
    let token = match env
        .get("PROXY_TOKEN")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        None | Some("jwt") => ProxyToken::Jwt,
        Some("none") => ProxyToken::None,
        Some(other) => {
            return Err(ConfigError::new(
                "PROXY_TOKEN",
                format!("expected jwt or none, got {other:?}"),
            ));
        }
    };
    let timeout = parse::seconds_or("PROXY_TIMEOUT", env.get("PROXY_TIMEOUT"), 30, 1)?;
    let max_body = match env.get("PROXY_MAX_BODY") {
        None => 10 * 1024 * 1024,
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ConfigError::new(
                    "PROXY_MAX_BODY",
                    format!("expected a number of bytes, got {v:?}"),
                )
            })?,
    };
    let limits = match env.get("RATE_LIMIT_PROXY") {
        None => Vec::new(),
        Some(v) => parse_limits(&v).map_err(|e| ConfigError::new("RATE_LIMIT_PROXY", e))?,
    };
    Ok(ProxySettings {
        routes,
        token,
        timeout: std::time::Duration::from_secs(timeout),
        max_body,
        limits,
    })
}

/// `PROXY_ROUTES`'s value, parsed and checked.
pub fn routes(value: &str) -> Result<ProxyRoutes, ConfigError> {
    let fail = |message: String| ConfigError::new("PROXY_ROUTES", message);
    let mut routes: Vec<ProxyRoute> = Vec::new();
    for item in parse::split_list(value) {
        let (prefix, upstream) = item
            .split_once('=')
            .ok_or_else(|| fail(format!("expected PREFIX=URL, got {item:?}")))?;
        let prefix = prefix.trim().trim_end_matches('/');
        let ok = prefix.starts_with('/')
            && prefix.len() > 1
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.~".contains(&b))
            && !prefix.contains("//")
            && !prefix.split('/').any(|s| s == "." || s == "..");
        if !ok {
            return Err(fail(format!(
                "{prefix:?} is not a path prefix (e.g. /calendar)"
            )));
        }
        if let Some(reserved) = RESERVED.iter().find(|r| overlaps(prefix, r)) {
            return Err(fail(format!(
                "{prefix:?} overlaps this server's own {reserved}"
            )));
        }
        if routes.iter().any(|r| r.prefix.as_str() == prefix) {
            return Err(fail(format!("{prefix:?} is listed twice")));
        }
        let url = url::Url::parse(upstream.trim())
            .map_err(|_| fail(format!("{upstream:?} is not a URL")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(fail(format!("{upstream:?} is not an http(s) URL")));
        }
        if url.query().is_some() || url.fragment().is_some() || url.username() != "" {
            return Err(fail(format!(
                "{upstream:?} must have no query, fragment or credentials"
            )));
        }
        routes.push(ProxyRoute {
            prefix: std::sync::Arc::new(prefix.to_string()),
            upstream: url.as_str().trim_end_matches('/').to_string(),
        });
    }
    routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
    Ok(ProxyRoutes(routes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes_of(value: &str) -> Result<ProxyRoutes, ConfigError> {
        routes(value)
    }

    #[test]
    fn the_longest_prefix_wins_and_only_at_a_segment_boundary() {
        let routes =
            routes_of("/calendar=http://a:1/c,/calendar/admin=http://b:2/x,/todos=http://a:1/t")
                .unwrap();
        let at = |path| {
            routes
                .matching(path)
                .map(|(r, rest)| (r.prefix.as_str(), rest))
        };
        assert_eq!(at("/calendar"), Some(("/calendar", "")));
        assert_eq!(at("/calendar/events"), Some(("/calendar", "/events")));
        assert_eq!(at("/calendar/admin/x"), Some(("/calendar/admin", "/x")));
        assert_eq!(at("/calendarx"), None);
        assert_eq!(at("/todos/"), Some(("/todos", "/")));
        assert_eq!(at("/auth/session"), None);
    }

    #[test]
    fn prefixes_over_our_own_paths_and_bad_urls_are_refused() {
        for bad in [
            "/auth=http://a:1",
            "/auth/x=http://a:1",
            "/health=http://a:1",
            "/.well-known=http://a:1",
            "/oauth=http://a:1",
            "/openapi.json=http://a:1",
            "/=http://a:1",
            "calendar=http://a:1",
            "/a/../b=http://a:1",
            "/c=ftp://a:1",
            "/c=http://a:1/x?y=1",
            "/c",
            "/c=http://a:1,/c=http://b:1",
        ] {
            let error = routes_of(bad).unwrap_err();
            assert_eq!(error.var, "PROXY_ROUTES", "{bad}");
        }
        // "/authors" is not "/auth".
        assert!(routes_of("/authors=http://a:1").is_ok());
    }
}
