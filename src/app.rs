//! Building the application: state from settings, the router with its
//! layers, a bound listener (port 0 allowed, for tests), and running it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::from_fn_with_state;
use tokio::net::TcpListener;

use crate::config::{ConfigError, Settings};
use crate::cookies::CookiePolicy;
use crate::routes;
use crate::secrets;
use crate::security::client_ip::ClientIpResolver;
use crate::security::csrf::CsrfTokens;
use crate::security::envelope::{self, MAX_BODY_BYTES, SecurityHeaders};
use crate::security::rate_limit::RateLimiter;
use crate::security::{cors, guard};
use crate::server;
use crate::store::RateLimitStore;
use crate::store::memory::MemoryRateLimitStore;

/// Everything a request handler may need, built once and shared.
pub struct AppState {
    pub settings: Settings,
    pub cookies: CookiePolicy,
    pub csrf: CsrfTokens,
    pub client_ip: ClientIpResolver,
    pub auth_limiter: RateLimiter,
    pub verify_limiter: Option<RateLimiter>,
    /// FRONTEND_URL + CORS_ORIGINS + DESKTOP_PROXY_ORIGINS.
    pub allowed_origins: Vec<String>,
    /// PUBLIC_URL without a trailing slash, and its origin.
    pub public_url: String,
    pub public_origin: String,
    pub security_headers: SecurityHeaders,
}

/// Why the server could not start; displayed as one line.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration error: {0}")]
    Config(#[from] ConfigError),
    #[error("BIND: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: Arc<AppState>,
}

impl Application {
    /// Prepares state and binds the listener; nothing is served yet.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        let listener =
            TcpListener::bind(settings.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.bind,
                    source,
                })?;
        let local = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        let state = Arc::new(build_state(settings, local)?);
        Ok(Self {
            router: router(state.clone()),
            listener,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // The listener was bound in `build`, which already read this once.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| self.state.settings.bind)
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains open connections.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let pruner = tokio::spawn(prune_periodically(self.state.clone()));
        let result = server::serve(self.listener, self.router, shutdown).await;
        pruner.abort();
        result
    }
}

fn build_state(settings: Settings, local: SocketAddr) -> Result<AppState, StartupError> {
    let csrf_key = match &settings.csrf_secret {
        Some(secret) => secret.expose().to_vec(),
        None => secrets::load_or_generate(&settings.data_dir, "csrf_secret", 32).map_err(|e| {
            ConfigError::new(
                "DATA_DIR",
                format!(
                    "cannot keep the generated CSRF secret in {}: {e}",
                    settings.data_dir.display()
                ),
            )
        })?,
    };
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    let public_origin = origin_of(&public_url);
    let auth_store: Arc<dyn RateLimitStore> =
        Arc::new(MemoryRateLimitStore::new(&settings.rate_limit_auth));
    let verify_limiter = (!settings.rate_limit_verify.is_empty()).then(|| {
        let store: Arc<dyn RateLimitStore> =
            Arc::new(MemoryRateLimitStore::new(&settings.rate_limit_verify));
        RateLimiter::new(settings.rate_limit_verify.clone(), store)
    });
    Ok(AppState {
        cookies: CookiePolicy::new(&settings.cookies, settings.csrf_token_ttl),
        csrf: CsrfTokens::new(&csrf_key, settings.csrf_token_ttl),
        client_ip: ClientIpResolver::new(settings.trusted_proxies.clone()),
        auth_limiter: RateLimiter::new(settings.rate_limit_auth.clone(), auth_store),
        verify_limiter,
        allowed_origins: settings.allowed_origins.clone(),
        public_url,
        public_origin,
        security_headers: SecurityHeaders::new(settings.is_production()),
        settings,
    })
}

/// `scheme://host[:port]` of an http(s) URL that config already validated.
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}

/// The router with the security layers, outermost last.
pub fn router(state: Arc<AppState>) -> Router {
    routes::router()
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(from_fn_with_state(state.clone(), guard::guard))
        .layer(cors::layer(&state.allowed_origins))
        .layer(from_fn_with_state(state.clone(), envelope::envelope))
        .with_state(state)
}

/// Rate-limit counters of clients whose budget has refilled are dropped, so
/// memory follows the number of recently active clients, not all ever seen.
async fn prune_periodically(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.auth_limiter.store().prune();
        if let Some(verify) = &state.verify_limiter {
            verify.store().prune();
        }
    }
}
