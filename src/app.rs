//! Building the application: stores from the settings, the session
//! authority and the sign-in method on top of them, the security envelope
//! around the routes, a bound listener (port 0 allowed, for tests), and
//! the background tasks while it runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::authority::SessionAuthority;
use crate::authority::local::{LocalAuthority, LocalConfig};
use crate::authority::tokens::AccessTokens;
use crate::config::Provider;
use crate::config::{ConfigError, ProviderClientSettings, Settings};
use crate::cookies::CookiePolicy;
use crate::credentials::Credentials;
use crate::credentials::passkeys::{PasskeyVerifier, RelyingParty};
use crate::credentials::totp::SecondFactor;
use crate::metrics::{self as prometheus, Ended, Metrics};
use crate::proxy::Proxy;
use crate::routes::Routes;
use crate::routes::state::{AppState, Phase};
use crate::secrets::{self, Sealer};
use crate::security::Security;
use crate::security::client_ip::ClientIpResolver;
use crate::security::cors::Cors;
use crate::security::csrf::CsrfTokens;
use crate::security::dbsc::Dbsc;
use crate::security::envelope::{Envelope, EnvelopeLayer};
use crate::security::headers::SecurityHeaders;
use crate::security::rate_limit::RateLimiter;
use crate::security::redirects::RedirectPolicy;
use crate::server;
use crate::signin::SignInMethod;
use crate::signin::oidc::OidcSignIn;
use crate::signin::oidc::client::OidcClient;
use crate::signin::password::{PageConfig, PasswordAccounts, PasswordSignIn, Passwords};
use crate::store::RateLimitStore;
use crate::store::accounts::Accounts;
use crate::store::connected_accounts::ConnectedAccounts;
use crate::store::database::{Database, OpenError};
use crate::store::dbsc::DbscBindings;
use crate::store::flows::{DatabaseFlows, FlowStore};
use crate::store::memory::MemoryRateLimitStore;
use crate::store::passkeys::Passkeys;
use crate::store::redis::{AnnouncedRevocations, Redis, RedisRateLimitStore, RevocationFeed};
use crate::store::revocations::{DatabaseRevocations, RevocationStore};
use crate::store::second_factors::SecondFactors;
use crate::supabase::Supabase;
use crate::vault::Vault;
use crate::vault::risc::Risc;

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
    #[error("METRICS_BIND: cannot listen on {addr}: {source}")]
    MetricsBind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A DATA_DIR problem, as a one-line configuration error.
fn data_dir_error(settings: &Settings, what: &str, e: impl std::fmt::Display) -> ConfigError {
    ConfigError::new(
        "DATA_DIR",
        format!(
            "cannot keep {what} in {}: {e}",
            settings.server.data_dir.display()
        ),
    )
}

/// The state that outlives requests, opened from the settings. Each can be
/// swapped (benchmark baselines, other backends) before anything is built
/// on it: [`Application::build_with`].
pub struct Stores {
    /// The durable store (SQLite or PostgreSQL).
    pub database: Database,
    pub revocations: Arc<dyn RevocationStore>,
    pub flows: Arc<dyn FlowStore>,
    pub auth_limits: Arc<dyn RateLimitStore>,
    pub verify_limits: Option<Arc<dyn RateLimitStore>>,
    /// `RATE_LIMIT_PROXY`'s counters, when it is set.
    pub proxy_limits: Option<Arc<dyn RateLimitStore>>,
    /// With `REDIS_URL`: the channel revocations are announced on.
    pub revocation_feed: Option<Arc<RevocationFeed>>,
    /// The counters everything built on these stores moves.
    pub metrics: Metrics,
    /// An operator's command: what it ends is recorded as the operator's,
    /// and nothing is held for later (the command fails instead).
    pub by_operator: bool,
}

impl Stores {
    /// The server's stores.
    pub async fn open(settings: &Settings) -> Result<Self, StartupError> {
        Self::open_as(settings, false).await
    }

    /// An operator command's stores: the sessions it ends are recorded as
    /// ended by an operator.
    pub async fn open_for_operator(settings: &Settings) -> Result<Self, StartupError> {
        Self::open_as(settings, true).await
    }

    async fn open_as(settings: &Settings, by_operator: bool) -> Result<Self, StartupError> {
        secrets::ensure_dir(&settings.server.data_dir)
            .map_err(|e| data_dir_error(settings, "data", e))?;
        let database = Database::open(settings).await.map_err(|e| match e {
            OpenError::Pending { .. } => ConfigError::new("DATABASE_MIGRATE", e.to_string()),
            e => ConfigError::new(
                if settings.storage.database_url.is_some() {
                    "DATABASE_URL"
                } else {
                    "DATA_DIR"
                },
                format!("cannot open the database: {e}"),
            ),
        })?;
        let metrics = Metrics::new();
        metrics.proxy_routes(settings.proxy.routes.iter().map(|route| &route.prefix));
        let revocations: Arc<dyn RevocationStore> = Arc::new(
            DatabaseRevocations::load(
                database.clone(),
                settings.sessions.access_token_ttl,
                by_operator,
                {
                    let metrics = metrics.clone();
                    Box::new(move |n| metrics.sessions_ended(Ended::Operator, n))
                },
            )
            .await
            .map_err(|e| data_dir_error(settings, "revocations", e))?,
        );
        let limits = &settings.limits;
        let mut stores = Self {
            revocations,
            flows: Arc::new(DatabaseFlows::new(database.clone())),
            auth_limits: Arc::new(MemoryRateLimitStore::new(&limits.auth)),
            verify_limits: (!limits.verify.is_empty())
                .then(|| Arc::new(MemoryRateLimitStore::new(&limits.verify)) as _),
            proxy_limits: (!settings.proxy.limits.is_empty())
                .then(|| Arc::new(MemoryRateLimitStore::new(&settings.proxy.limits)) as _),
            revocation_feed: None,
            metrics,
            database,
            by_operator,
        };
        if let Some(url) = &settings.storage.redis_url {
            let redis = Redis::new(url, &settings.storage.redis_prefix)
                .map_err(|e| ConfigError::new("REDIS_URL", format!("cannot use it: {e}")))?;
            stores.share_through(redis, settings);
        }
        Ok(stores)
    }

    /// Rate limits become one budget across replicas, and revocations are
    /// announced to them, through Redis.
    fn share_through(&mut self, redis: Redis, settings: &Settings) {
        let limits = &settings.limits;
        self.auth_limits = Arc::new(RedisRateLimitStore::new(
            redis.clone(),
            "auth",
            &limits.auth,
            limits.fail,
        ));
        if !limits.verify.is_empty() {
            self.verify_limits = Some(Arc::new(RedisRateLimitStore::new(
                redis.clone(),
                "verify",
                &limits.verify,
                limits.fail,
            )));
        }
        if !settings.proxy.limits.is_empty() {
            self.proxy_limits = Some(Arc::new(RedisRateLimitStore::new(
                redis.clone(),
                "proxy",
                &settings.proxy.limits,
                limits.fail,
            )));
        }
        let feed = Arc::new(RevocationFeed::new(redis));
        self.revocations = Arc::new(AnnouncedRevocations::new(
            self.revocations.clone(),
            feed.clone(),
        ));
        self.revocation_feed = Some(feed);
    }
}

/// The session authority and the accounts over the stores (the server's,
/// and the operator commands').
#[derive(Clone)]
pub struct Identity {
    pub authority: Arc<LocalAuthority>,
    pub accounts: Accounts,
    pub passwords: PasswordAccounts,
    /// Connected provider accounts (the operator's `chronos account`).
    pub connected: ConnectedAccounts,
    /// TOTP factors and recovery codes (the operator's `chronos user mfa-reset`).
    pub second_factors: SecondFactors,
}

impl Identity {
    pub fn build(
        settings: &Settings,
        stores: &Stores,
        public_url: &str,
    ) -> Result<Self, StartupError> {
        let data_dir = &settings.server.data_dir;
        let tokens = Arc::new(
            AccessTokens::load_or_generate(
                data_dir,
                public_url,
                settings.sessions.access_token_ttl,
                settings.sessions.token_cache_size,
            )
            .map_err(|e| data_dir_error(settings, "the token signing key", e))?,
        );
        let refresh_key = secrets::load_or_generate(data_dir, "refresh_secret", 32)
            .map_err(|e| data_dir_error(settings, "the refresh-token secret", e))?;
        let authority = Arc::new(
            LocalAuthority::new(
                stores.database.clone(),
                tokens,
                stores.revocations.clone(),
                LocalConfig {
                    refresh_key,
                    refresh_ttl: settings.sessions.idle_timeout,
                    max_lifetime: settings.sessions.max_lifetime,
                    reuse_interval: settings.sessions.refresh_reuse_interval,
                    metrics: stores.metrics.clone(),
                    data_dir: data_dir.clone(),
                    hold_ends: !stores.by_operator,
                },
            )
            .map_err(|e| data_dir_error(settings, "the session authority", e))?,
        );
        Ok(Self {
            authority,
            accounts: Accounts::new(stores.database.clone()),
            connected: ConnectedAccounts::new(stores.database.clone()),
            second_factors: SecondFactors::new(stores.database.clone()),
            passwords: PasswordAccounts::new(
                Accounts::new(stores.database.clone()),
                Passwords::new(),
            ),
        })
    }
}

/// What the metrics exporter reads from the stores at scrape time.
fn live_readings(stores: &Stores) -> prometheus::exporter::Live {
    let reading = |store: Arc<dyn RateLimitStore>| -> prometheus::exporter::Reading {
        Box::new(move || store.tracked_keys())
    };
    let revocations = stores.revocations.clone();
    prometheus::exporter::Live {
        auth_limit_keys: reading(stores.auth_limits.clone()),
        verify_limit_keys: stores.verify_limits.clone().map(reading),
        revoked_sessions: Box::new(move || revocations.len()),
    }
}

/// The key that seals a provider's tokens at rest (DATA_DIR).
fn provider_sealer(settings: &Settings) -> Result<Sealer, StartupError> {
    Ok(
        Sealer::load_or_generate(&settings.server.data_dir, "provider_token_key")
            .map_err(|e| data_dir_error(settings, "the provider-token key", e))?,
    )
}

/// The embedded accounts' passkeys and second factors. The passkeys' RP
/// id and origin come from PUBLIC_URL (`WEBAUTHN_RP_ID` to override).
fn credentials(
    settings: &Settings,
    stores: &Stores,
    public_url: &str,
    sealer: &Sealer,
) -> Result<Credentials, StartupError> {
    let accounts = Accounts::new(stores.database.clone());
    let rp = RelyingParty::from_settings(public_url, settings.identity.webauthn_rp_id.as_deref())
        .map_err(|e| ConfigError::new("WEBAUTHN_RP_ID", e))?;
    let passkeys = match rp {
        Some(rp) => Some(
            PasskeyVerifier::new(
                &rp,
                Passkeys::new(stores.database.clone()),
                accounts.clone(),
            )
            .map_err(|e| ConfigError::new("WEBAUTHN_RP_ID", e))?,
        ),
        None => {
            tracing::debug!(
                public_url,
                "passkeys are off: PUBLIC_URL's host is an IP address (WebAuthn needs a domain name)"
            );
            None
        }
    };
    Ok(Credentials {
        passkeys,
        totp: SecondFactor::new(SecondFactors::new(stores.database.clone()), sealer.clone()),
        accounts,
        mfa_required: settings.identity.mfa_required,
    })
}

/// The CSRF key: CSRF_SECRET_KEY, or the one generated into DATA_DIR.
fn csrf_tokens(settings: &Settings) -> Result<CsrfTokens, StartupError> {
    let key = match &settings.security.csrf_secret {
        Some(secret) => secret.expose().to_vec(),
        None => secrets::load_or_generate(&settings.server.data_dir, "csrf_secret", 32)
            .map_err(|e| data_dir_error(settings, "the generated CSRF secret", e))?,
    };
    Ok(CsrfTokens::new(&key, settings.security.csrf_token_ttl))
}

/// `DBSC=on`: the bound sessions, under a key generated into DATA_DIR.
fn device_binding(
    settings: &Settings,
    stores: &Stores,
    cookies: &CookiePolicy,
    public_url: &str,
    ttl: u64,
) -> Result<Dbsc, StartupError> {
    let key = secrets::load_or_generate(&settings.server.data_dir, "dbsc_secret", 32)
        .map_err(|e| data_dir_error(settings, "the DBSC key", e))?;
    Ok(Dbsc::new(
        &key,
        ttl,
        DbscBindings::new(stores.database.clone()),
        cookies.clone(),
        (public_url, &settings.security.frontend_url),
        stores.metrics.clone(),
    )
    .map_err(|e| ConfigError::new("PUBLIC_URL", e.to_string()))?)
}

/// What the server serves: the security envelope around the routes.
pub type Service = Envelope<Routes>;

pub struct Application {
    listener: TcpListener,
    /// `METRICS_BIND`'s listener, when metrics are on.
    metrics_listener: Option<TcpListener>,
    service: Service,
    state: Arc<AppState>,
    stores: Arc<Stores>,
    identity: Identity,
}

impl Application {
    /// Prepares state and binds the listener; nothing is served yet.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, |_| {}).await
    }

    /// [`build`](Self::build), with a chance to replace stores before the
    /// authority and the routes are built on them.
    pub async fn build_with(
        settings: Settings,
        adjust: impl FnOnce(&mut Stores),
    ) -> Result<Self, StartupError> {
        let bind = settings.server.bind;
        let bind_error = |source| StartupError::Bind { addr: bind, source };
        let listener = TcpListener::bind(bind).await.map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let public_url = settings.public_url_for(local);
        let metrics_listener = match settings.server.metrics_bind {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::MetricsBind { addr, source })?,
            ),
            None => None,
        };

        let mut stores = Stores::open(&settings).await?;
        adjust(&mut stores);
        let cookies = CookiePolicy::new(
            &settings.cookies,
            settings.security.csrf_token_ttl,
            settings.sessions.dbsc_cookie_ttl,
        );
        let csrf = csrf_tokens(&settings)?;
        let redirects = RedirectPolicy::new(
            &settings.security.frontend_url,
            settings.security.oauth_redirect_urls.clone(),
        );
        let identity = Identity::build(&settings, &stores, &public_url)?;
        let sealer = provider_sealer(&settings)?;
        // The provider as an OpenID client: the sign-in's (oidc), or the
        // one Supabase signs in with (supabase, for the vault).
        let provider_client = match (&settings.identity.provider, &settings.vault.client) {
            (Provider::Oidc(oidc), _) => Some((
                ProviderClientSettings {
                    issuer: oidc.issuer.clone(),
                    client_id: oidc.client_id.clone(),
                    client_secret: oidc.client_secret.clone(),
                },
                "OIDC_ISSUER",
            )),
            (_, Some(client)) => Some((client.clone(), "PROVIDER_ISSUER")),
            _ => None,
        }
        .map(|(client, var)| {
            OidcClient::new(&client)
                .map(Arc::new)
                .map_err(|e| ConfigError::new(var, e.to_string()))
        })
        .transpose()?;
        // The embedded provider's passkeys and second factors.
        let mut embedded_credentials = None;
        let (authority, sign_in): (Arc<dyn SessionAuthority>, Arc<dyn SignInMethod>) =
            match (&settings.identity.provider, &provider_client) {
                (Provider::Embedded, _) | (Provider::Oidc(_), None) => (
                    identity.authority.clone(),
                    Arc::new(PasswordSignIn::new(
                        stores.database.clone(),
                        identity.passwords.clone(),
                        identity.authority.clone(),
                        PageConfig {
                            public_url: public_url.clone(),
                            signup_enabled: settings.identity.signup_enabled,
                            csrf: csrf.clone(),
                            cookies: cookies.clone(),
                            redirects: redirects.clone(),
                            credentials: embedded_credentials
                                .insert(Arc::new(credentials(
                                    &settings,
                                    &stores,
                                    &public_url,
                                    &sealer,
                                )?))
                                .clone(),
                        },
                    )),
                ),
                (Provider::Oidc(oidc), Some(client)) => (
                    identity.authority.clone(),
                    Arc::new(OidcSignIn::new(
                        oidc.clone(),
                        client.clone(),
                        stores.database.clone(),
                        identity.authority.clone(),
                        sealer.clone(),
                        stores.metrics.clone(),
                        settings.vault.keep,
                    )),
                ),
                (Provider::Supabase(supabase), _) => {
                    let supabase = Arc::new(
                        Supabase::new(
                            supabase.clone(),
                            stores.database.clone(),
                            stores.revocations.clone(),
                            sealer.clone(),
                            crate::supabase::SessionLimits {
                                idle_ttl: settings.sessions.idle_timeout,
                                max_lifetime: settings.sessions.max_lifetime,
                                cache_capacity: settings.sessions.token_cache_size,
                                reuse_interval: Duration::from_secs(
                                    settings.sessions.refresh_reuse_interval,
                                ),
                                keep_provider_tokens: settings.vault.client.as_ref().map(
                                    |client| (client.issuer.clone(), settings.vault.scopes.clone()),
                                ),
                            },
                            stores.metrics.clone(),
                        )
                        .map_err(|e| ConfigError::new("SUPABASE_URL", e.to_string()))?,
                    );
                    (supabase.clone(), supabase)
                }
            };
        let vault = match (settings.vault.keep, &provider_client) {
            (true, Some(client)) => Some(Arc::new(Vault::new(
                settings.vault.clone(),
                client.clone(),
                stores.database.clone(),
                sealer.clone(),
                stores.metrics.clone(),
            ))),
            _ => None,
        };
        let risc = match (&vault, &provider_client) {
            (Some(vault), Some(client)) => Some(Arc::new(
                Risc::new(
                    settings.vault.risc_issuer.clone(),
                    client.client_id().to_string(),
                    client.issuer().to_string(),
                    stores.database.clone(),
                    authority.clone(),
                    vault.clone(),
                )
                .map_err(|e| ConfigError::new("RISC_ISSUER", e.to_string()))?,
            )),
            _ => None,
        };
        let dbsc = match settings.sessions.dbsc_cookie_ttl {
            Some(ttl) => Some(Arc::new(device_binding(
                &settings,
                &stores,
                &cookies,
                &public_url,
                ttl,
            )?)),
            None => None,
        };
        if let Some(dbsc) = &dbsc {
            dbsc.follow(0)
                .await
                .map_err(|e| data_dir_error(&settings, "device-bound sessions", e))?;
        }
        let security = Arc::new(Security {
            dbsc,
            cookies,
            csrf,
            client_ip: ClientIpResolver::new(settings.security.trusted_proxies.clone()),
            auth_limiter: RateLimiter::new(
                settings.limits.auth.clone(),
                stores.auth_limits.clone(),
            ),
            verify_limiter: stores
                .verify_limits
                .clone()
                .map(|store| RateLimiter::new(settings.limits.verify.clone(), store)),
            proxy_limiter: stores
                .proxy_limits
                .clone()
                .map(|store| RateLimiter::new(settings.proxy.limits.clone(), store)),
            proxy_routes: settings.proxy.routes.clone(),
            proxy_max_body: settings.proxy.max_body,
            cors: Cors::new(&settings.security.allowed_origins),
            headers: SecurityHeaders::new(settings.is_production()),
            public_origin: origin_of(&public_url),
            logout_require_csrf: settings.security.logout_require_csrf,
            authority: authority.clone(),
            metrics: stores.metrics.clone(),
        });
        let proxy = if settings.proxy.routes.is_empty() {
            None
        } else {
            Some(Arc::new(
                Proxy::new(&settings.proxy, security.clone()).map_err(|e| {
                    ConfigError::new("PROXY_ROUTES", format!("cannot build the HTTP client: {e}"))
                })?,
            ))
        };
        let state = Arc::new(AppState {
            proxy,
            security: security.clone(),
            redirects,
            authority,
            sign_in,
            flows: stores.flows.clone(),
            clear_site_data: settings
                .sessions
                .logout_clear_site_data
                .as_deref()
                .and_then(|v| http::HeaderValue::from_str(v).ok()),
            phase: crate::routes::state::Phase::default(),
            database: stores.database.clone(),
            vault,
            risc,
            provider_client,
            credentials: embedded_credentials,
            settings,
        });
        Ok(Self {
            service: tower::Layer::layer(&EnvelopeLayer::new(security), Routes::new(state.clone())),
            listener,
            metrics_listener,
            state,
            stores: Arc::new(stores),
            identity,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // The listener was bound in `build`, which already read this once.
        self.listener
            .local_addr()
            .unwrap_or(self.state.settings.server.bind)
    }

    /// Where `GET /metrics` is served, when `METRICS_BIND` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    pub fn stores(&self) -> &Arc<Stores> {
        &self.stores
    }

    /// The authority and accounts, for tools and tests.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// Serves until `shutdown` resolves, then drains open connections.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
        let sign_in = self.state.sign_in.clone();
        let vault = self.state.vault.clone();
        let tasks = [
            tokio::spawn(async move { sign_in.run().await }),
            tokio::spawn(async move {
                if let Some(vault) = vault {
                    vault.run().await;
                }
            }),
            tokio::spawn(prune_rate_limits(self.stores.clone())),
            tokio::spawn(follow_revocations(
                self.stores.clone(),
                self.identity.authority.clone(),
                self.state.settings.storage.revocation_poll,
            )),
            tokio::spawn(follow_bindings(
                self.state.security.dbsc.clone(),
                self.state.settings.storage.revocation_poll,
            )),
            tokio::spawn(hear_revocations(self.stores.clone())),
            tokio::spawn(sweep_memory(
                self.stores.clone(),
                self.state.authority.clone(),
            )),
            tokio::spawn(prune_stores(
                self.stores.clone(),
                self.identity.authority.clone(),
                self.state.sign_in.clone(),
                self.state.security.dbsc.clone(),
            )),
        ];
        let exporter = self.metrics_listener.map(|listener| {
            let registry =
                prometheus::exporter::registry(&self.stores.metrics, live_readings(&self.stores));
            tokio::spawn(async move {
                if let Err(error) = prometheus::exporter::serve(listener, registry).await {
                    tracing::error!(error = %error, "the metrics endpoint stopped");
                }
            })
        });
        let service = self.service;
        let state = self.state.clone();
        let drain = state.settings.server.shutdown_timeout;
        state.phase.set(Phase::SERVING);
        let draining = async move {
            shutdown.await;
            state.phase.set(Phase::DRAINING);
        };
        let result = server::serve(
            self.listener,
            move |req, peer| service.serve(req, peer),
            draining,
            drain,
        )
        .await;
        for task in tasks.into_iter().chain(exporter) {
            task.abort();
        }
        result
    }
}

/// `scheme://host[:port]` of an http(s) URL that config already validated.
fn origin_of(url: &str) -> String {
    url::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| url.to_string())
}

/// Rate-limit counters of clients whose budget has refilled are dropped, so
/// memory follows the number of recently active clients, not all ever seen.
async fn prune_rate_limits(stores: Arc<Stores>) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        stores.auth_limits.prune();
        for store in [&stores.verify_limits, &stores.proxy_limits]
            .into_iter()
            .flatten()
        {
            store.prune();
        }
    }
}

/// Once a minute, expired access tokens leave the verified cache (off the
/// request threads: a million entries take tens of milliseconds) and
/// revocations whose tokens have all expired leave the revoked set, so both
/// follow recent activity, not the hours between purges.
async fn sweep_memory(stores: Arc<Stores>, authority: Arc<dyn SessionAuthority>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        stores.revocations.forget_expired();
        let authority = authority.clone();
        let _ =
            tokio::task::spawn_blocking(move || authority.sweep_verified(crate::unix_now())).await;
    }
}

/// Also stores, once the database answers again, the session ends it
/// could not take while it was unreachable. A database that stays down is
/// logged when it goes and when it comes back, not at every poll.
async fn follow_revocations(stores: Arc<Stores>, authority: Arc<LocalAuthority>, poll: Duration) {
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        match stores.revocations.sync().await {
            Err(error) if !failing => {
                failing = true;
                tracing::error!(
                    error = format!("{error:#}"),
                    "revocation sync failed; retrying"
                );
            }
            Err(_) => {}
            Ok(()) => {
                if failing {
                    failing = false;
                    tracing::info!("revocation sync recovered");
                }
                authority.store_unstored().await;
            }
        }
    }
}

/// How far back each read of the bindings reaches before the last one
/// that succeeded began: bindings are stamped by their own process's clock.
const BINDING_OVERLAP: u64 = 300;

/// Sessions other processes bound to a device key (DBSC), learned every
/// revocation poll: each read goes back to where the last successful one
/// began (less [`BINDING_OVERLAP`]), so no outage of the database, however
/// long, loses one.
async fn follow_bindings(dbsc: Option<Arc<Dbsc>>, poll: Duration) {
    let Some(dbsc) = dbsc else {
        return std::future::pending().await;
    };
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    // Everything up to the start (the start-up load) is known.
    let mut known_until = crate::unix_now();
    loop {
        tick.tick().await;
        let started = crate::unix_now();
        match dbsc
            .follow(known_until.saturating_sub(BINDING_OVERLAP))
            .await
        {
            Err(error) if !failing => {
                failing = true;
                tracing::error!(
                    error = format!("{error:#}"),
                    "DBSC binding sync failed; retrying"
                );
            }
            Err(_) => {}
            Ok(_) => {
                failing = false;
                known_until = started;
            }
        }
    }
}

/// Revocations other replicas announce through Redis, applied as they come.
async fn hear_revocations(stores: Arc<Stores>) {
    match &stores.revocation_feed {
        Some(feed) => feed.listen(stores.revocations.clone()).await,
        None => std::future::pending().await,
    }
}

/// How often expired flows, codes, revocations and dead sessions are
/// deleted (in batches of 1,000, each a short write); the first time one
/// period after start, never during start-up.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// `dbsc`: the bound sessions, whose bindings go once their sessions have
/// (so after the authority's purge).
async fn prune_stores(
    stores: Arc<Stores>,
    authority: Arc<LocalAuthority>,
    sign_in: Arc<dyn SignInMethod>,
    dbsc: Option<Arc<Dbsc>>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + PURGE_EVERY, PURGE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let results = [
            stores.flows.prune().await,
            stores.revocations.prune().await,
            authority.purge().await.map(|_| ()),
            sign_in.prune().await,
            match &dbsc {
                Some(dbsc) => dbsc
                    .purge(crate::unix_now())
                    .await
                    .map(|_| ())
                    .map_err(Into::into),
                None => Ok(()),
            },
        ];
        for error in results.into_iter().filter_map(Result::err) {
            tracing::warn!(error = format!("{error:#}"), "pruning failed");
        }
    }
}
