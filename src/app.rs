//! Building the application: state from settings, the router with its
//! layers, a bound listener (port 0 allowed, for tests), and running it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::config::{ConfigError, Settings};
use crate::cookies::CookiePolicy;
use crate::identity::IdentityProvider;
use crate::identity::embedded::{EmbeddedConfig, EmbeddedIdp, Passwords};
use crate::identity::tokens::AccessTokens;
use crate::routes;
use crate::secrets;
use crate::security::client_ip::ClientIpResolver;
use crate::security::cors::Cors;
use crate::security::csrf::CsrfTokens;
use crate::security::envelope::{Secured, SecurityHeaders};
use crate::security::rate_limit::RateLimiter;
use crate::security::redirects::RedirectPolicy;
use crate::server;
use crate::store::RateLimitStore;
use crate::store::flows::{FlowStore, SqliteFlows};
use crate::store::memory::MemoryRateLimitStore;
use crate::store::revocations::{RevocationStore, SqliteRevocations};
use crate::store::sqlite;

/// Everything a request handler may need, built once and shared.
pub struct AppState {
    pub settings: Settings,
    pub cookies: CookiePolicy,
    pub csrf: CsrfTokens,
    pub client_ip: ClientIpResolver,
    pub auth_limiter: RateLimiter,
    pub verify_limiter: Option<RateLimiter>,
    /// PUBLIC_URL's origin (the sign-in form posts from there).
    pub public_origin: String,
    pub security_headers: SecurityHeaders,
    pub cors: Cors,
    /// Where a sign-in may return to.
    pub redirects: RedirectPolicy,
    /// The identity provider the flows run against.
    pub idp: Arc<dyn IdentityProvider>,
    /// The embedded provider, when it is the one in use (its sign-in page).
    pub embedded: Option<Arc<EmbeddedIdp>>,
    pub flows: Arc<dyn FlowStore>,
    pub revocations: Arc<dyn RevocationStore>,
    /// `LOGOUT_CLEAR_SITE_DATA`, ready to send.
    pub clear_site_data: Option<http::HeaderValue>,
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
    service: Secured,
    state: Arc<AppState>,
}

impl Application {
    /// Prepares state and binds the listener; nothing is served yet.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, |_| {}).await
    }

    /// [`build`](Self::build), with a chance to replace parts of the state
    /// (stores, provider) before serving: the seam for alternative stores
    /// and for benchmark baselines.
    pub async fn build_with(
        settings: Settings,
        adjust: impl FnOnce(&mut AppState),
    ) -> Result<Self, StartupError> {
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
        let mut state = build_state(settings, local).await?;
        adjust(&mut state);
        let state = Arc::new(state);
        Ok(Self {
            service: service(state.clone()),
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
        let tasks = [
            tokio::spawn(prune_rate_limits(self.state.clone())),
            tokio::spawn(follow_revocations(self.state.clone())),
            tokio::spawn(prune_stores(self.state.clone())),
        ];
        let result = server::serve(self.listener, self.service, shutdown).await;
        for task in tasks {
            task.abort();
        }
        result
    }
}

/// A DATA_DIR problem, as a one-line configuration error.
fn data_dir_error(settings: &Settings, what: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(
        "DATA_DIR",
        format!("cannot keep {what} in {}: {e}", settings.data_dir.display()),
    )
}

async fn build_state(settings: Settings, local: SocketAddr) -> Result<AppState, StartupError> {
    secrets::ensure_dir(&settings.data_dir).map_err(|e| data_dir_error(&settings, "data", e))?;
    let csrf_key = match &settings.csrf_secret {
        Some(secret) => secret.expose().to_vec(),
        None => secrets::load_or_generate(&settings.data_dir, "csrf_secret", 32)
            .map_err(|e| data_dir_error(&settings, "the generated CSRF secret", e))?,
    };
    let public_url = settings.public_url_for(local);

    let Identity {
        pool,
        revocations,
        embedded,
    } = open_identity(&settings, &public_url).await?;
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
        public_origin,
        security_headers: SecurityHeaders::new(settings.is_production()),
        cors: Cors::new(&settings.allowed_origins),
        redirects: RedirectPolicy::new(
            &settings.frontend_url,
            settings.oauth_redirect_urls.clone(),
        ),
        idp: embedded.clone(),
        embedded: Some(embedded),
        flows: Arc::new(SqliteFlows::new(pool)),
        revocations,
        clear_site_data: settings
            .logout_clear_site_data
            .as_deref()
            .and_then(|v| http::HeaderValue::from_str(v).ok()),
        settings,
    })
}

/// The embedded identity provider and the stores it shares with the
/// server, opened from the settings (also used by the CLI).
pub struct Identity {
    pub pool: sqlx::SqlitePool,
    pub revocations: Arc<dyn RevocationStore>,
    pub embedded: Arc<EmbeddedIdp>,
}

pub async fn open_identity(
    settings: &Settings,
    public_url: &str,
) -> Result<Identity, StartupError> {
    secrets::ensure_dir(&settings.data_dir).map_err(|e| data_dir_error(settings, "data", e))?;
    let database_url = sqlite::database_url(settings);
    let pool = sqlite::open(&database_url).await.map_err(|e| {
        ConfigError::new(
            if settings.database_url.is_some() {
                "DATABASE_URL"
            } else {
                "DATA_DIR"
            },
            format!("cannot open the database: {e}"),
        )
    })?;
    let revocations: Arc<dyn RevocationStore> = Arc::new(
        SqliteRevocations::load(pool.clone(), settings.access_token_ttl)
            .await
            .map_err(|e| data_dir_error(settings, "revocations", e))?,
    );
    let tokens = Arc::new(
        AccessTokens::load_or_generate(&settings.data_dir, public_url, settings.access_token_ttl)
            .map_err(|e| data_dir_error(settings, "the token signing key", e))?,
    );
    let refresh_key = secrets::load_or_generate(&settings.data_dir, "refresh_secret", 32)
        .map_err(|e| data_dir_error(settings, "the refresh-token secret", e))?;
    let passwords = Passwords::new();
    let embedded = Arc::new(
        EmbeddedIdp::new(
            pool.clone(),
            passwords,
            tokens,
            revocations.clone(),
            EmbeddedConfig {
                public_url: public_url.to_string(),
                refresh_key,
                refresh_ttl: settings.cookies.max_age,
                reuse_interval: settings.refresh_reuse_interval,
            },
        )
        .map_err(|e| data_dir_error(settings, "the identity provider", e))?,
    );
    Ok(Identity {
        pool,
        revocations,
        embedded,
    })
}

/// `scheme://host[:port]` of an http(s) URL that config already validated.
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}

/// The routes inside the security layer: what the server serves.
pub fn service(state: Arc<AppState>) -> Secured {
    let router: Router = routes::router().with_state(state.clone());
    Secured { state, router }
}

/// Rate-limit counters of clients whose budget has refilled are dropped, so
/// memory follows the number of recently active clients, not all ever seen.
async fn prune_rate_limits(state: Arc<AppState>) {
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

/// How often revocations recorded by other processes (the CLI, replicas)
/// are picked up: the bound on how long a revoked session lingers here.
pub const REVOCATION_POLL: Duration = Duration::from_millis(250);

async fn follow_revocations(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(REVOCATION_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(error) = state.revocations.sync().await {
            tracing::warn!(error = format!("{error:#}"), "revocation sync failed");
        }
    }
}

/// Expired flows, codes, revocations and dead sessions are deleted hourly.
async fn prune_stores(state: Arc<AppState>) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let results = [
            state.flows.prune().await,
            state.revocations.prune().await,
            match &state.embedded {
                Some(idp) => idp.prune().await,
                None => Ok(()),
            },
        ];
        for error in results.into_iter().filter_map(Result::err) {
            tracing::warn!(error = format!("{error:#}"), "pruning failed");
        }
    }
}
