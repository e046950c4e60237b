//! Supabase Auth (GoTrue) as the session authority and the sign-in method:
//! the original system's own provider, done right.
//!
//! - Sign-in: `/auth/google/login` answers Supabase's `/authorize` URL with
//!   a PKCE challenge whose verifier is kept per browser (the flow store),
//!   never in process-wide state, so overlapping sign-ins cannot break each
//!   other; the callback exchanges the code (`grant_type=pkce`).
//! - The session cookie holds Supabase's access token and the refresh
//!   cookie its refresh token, so other services (and row-level security)
//!   accept them. Every request verifies the JWT locally ([`jwt`]) and asks
//!   our revocation set by its `session_id`: a logout is effective at once,
//!   though Supabase's JWT stays valid until it expires.
//! - Refresh: concurrent refreshes of one token in this process share one
//!   call to Supabase (two tabs, one request), and a finished one is shared
//!   with late duplicates for `REFRESH_REUSE_INTERVAL_SECONDS` (after it a
//!   replay goes to Supabase, whose reuse detection ends the family); the
//!   real client address
//!   goes along so Supabase rate-limits the person, not this server.
//! - Logout: revoked here first (the 200 never waits), then Supabase's
//!   `/logout` (refreshing first when the access token has expired) through
//!   the durable outbox, retried with backoff until Supabase confirms,
//!   across restarts.
//! - Sessions: Supabase cannot list or end sessions by id, so
//!   `/auth/sessions` works from our own record of sessions begun here.

pub mod api;
pub mod jwt;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, OnceCell};

use self::api::{AuthApi, Outcome, UserObject};
use crate::authority::cache::VerifiedCache;
use crate::authority::{
    AccessClaims, AuthError, ClientInfo, EndSessions, IssuedSession, Lifetime, ProviderGrant,
    SessionAuthority, SessionId, SessionInfo, SessionRef, User, UserId,
};
use crate::config::SupabaseSettings;
use crate::limits::coarse_ip;
use crate::secrets::{Sealer, hash_token, pkce_challenge};
use crate::signin::provider_client::{ProviderCallError, ProviderClient};
use crate::signin::{Callback, SignInMethod};
use crate::store::database::Database;
use crate::store::flows::{Flow, StartedFlow};
use crate::store::outbox::{Outbox, Pending};
use crate::store::revocations::RevocationStore;
use crate::store::supabase_sessions::{SupabaseSession, SupabaseSessions};
use crate::unix_now;

/// The outbox kind of a remote logout.
const LOGOUT: &str = "supabase.logout";
/// Remote logouts are given up after this many attempts (about a day).
const MAX_ATTEMPTS: i64 = 150;

/// Why a shared refresh failed (cloneable, for everyone who waited on it).
#[derive(Debug, Clone)]
enum Failure {
    Rejected,
    Busy(u64),
    Unavailable(String),
}

impl From<Failure> for AuthError {
    fn from(f: Failure) -> Self {
        match f {
            Failure::Rejected => AuthError::Rejected,
            Failure::Busy(retry_after) => AuthError::Busy { retry_after },
            Failure::Unavailable(e) => AuthError::Unavailable(anyhow::anyhow!("Supabase: {e}")),
        }
    }
}

type Shared = Arc<OnceCell<Result<IssuedSession, Failure>>>;

/// A session's latest tokens, sealed at rest.
#[derive(Serialize, Deserialize)]
struct Tokens {
    access: String,
    refresh: String,
}

/// A remote logout waiting in the outbox.
#[derive(Serialize, Deserialize)]
struct LogoutCall {
    access: String,
    refresh: String,
    scope: String,
}

pub struct Supabase {
    settings: SupabaseSettings,
    api: AuthApi,
    http: ProviderClient,
    verifier: jwt::Verifier,
    sessions: SupabaseSessions,
    revocations: Arc<dyn RevocationStore>,
    sealer: Sealer,
    outbox: Outbox,
    wake: Notify,
    metrics: crate::metrics::Metrics,
    verified: VerifiedCache,
    /// Account creation dates by user id (Supabase's JWT does not carry it).
    created: RwLock<HashMap<String, String>>,
    /// Refreshes in flight (no end yet) or finished within the reuse
    /// interval (their end), by refresh-token hash.
    refreshes: Mutex<HashMap<String, (Option<Instant>, Shared)>>,
    /// `REFRESH_REUSE_INTERVAL_SECONDS`: how long a finished refresh is
    /// shared with late duplicates of its token (0: only those in flight).
    reuse_interval: Duration,
    /// `PROVIDER_TOKENS=keep`: the provider's issuer and scopes.
    keep_provider_tokens: Option<(String, String)>,
    /// How long a session lives without use (`SESSION_IDLE_TIMEOUT`).
    idle_ttl: u64,
    /// How long a session lives from sign-in (`SESSION_MAX_LIFETIME`).
    lifetime: Lifetime,
}

/// How often sessions past `SESSION_MAX_LIFETIME` are looked for: their
/// access tokens are Supabase's, with Supabase's expiry, so they are ended
/// here (refused at once) and at Supabase like a logout.
const LIFETIME_SWEEP: Duration = Duration::from_secs(2);

fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

/// How long an idle session lives here, and how many verified access
/// tokens are cached.
pub struct SessionLimits {
    pub idle_ttl: u64,
    /// `SESSION_MAX_LIFETIME`.
    pub max_lifetime: Option<u64>,
    pub cache_capacity: usize,
    /// `REFRESH_REUSE_INTERVAL_SECONDS`.
    pub reuse_interval: Duration,
    /// With `PROVIDER_TOKENS=keep`: the issuer of the provider Supabase
    /// signs in with and the scopes asked of it; the provider's tokens of
    /// a sign-in go to the person's connected account.
    pub keep_provider_tokens: Option<(String, String)>,
}

impl Supabase {
    pub fn new(
        settings: SupabaseSettings,
        db: Database,
        revocations: Arc<dyn RevocationStore>,
        sealer: Sealer,
        sessions: SessionLimits,
        metrics: crate::metrics::Metrics,
    ) -> Result<Self, ProviderCallError> {
        let SessionLimits {
            idle_ttl,
            max_lifetime,
            cache_capacity,
            reuse_interval,
            keep_provider_tokens,
        } = sessions;
        let http = ProviderClient::new()?;
        let base = settings.auth_url();
        let apikey = String::from_utf8_lossy(settings.publishable_key.expose()).to_string();
        let verifier = jwt::Verifier::new(
            base.clone(),
            settings.jwt_secret.as_ref().map(|s| s.expose()),
        );
        Ok(Self {
            api: AuthApi::new(http.clone(), base, apikey),
            http,
            verifier,
            outbox: Outbox::new(db.clone()),
            metrics,
            sessions: SupabaseSessions::new(db),
            revocations,
            sealer,
            wake: Notify::new(),
            verified: VerifiedCache::new(cache_capacity),
            created: RwLock::new(HashMap::new()),
            refreshes: Mutex::new(HashMap::new()),
            reuse_interval,
            keep_provider_tokens,
            idle_ttl,
            lifetime: Lifetime(max_lifetime),
            settings,
        })
    }

    /// With `SESSION_MAX_LIFETIME`: ends, every [`LIFETIME_SWEEP`], the
    /// sessions past it (refused here at once, logged out at Supabase
    /// through the outbox).
    async fn end_past_lifetime(&self) {
        if self.lifetime.0.is_none() {
            return;
        }
        let mut tick = tokio::time::interval(LIFETIME_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            // Batch after batch while they come full (a sign-in wave's
            // sessions all come due together).
            loop {
                let due = match self.sessions.begun_by(self.lifetime.begun_since()).await {
                    Ok(due) => due,
                    Err(error) => {
                        tracing::warn!(error = %error, "cannot look for sessions past their lifetime");
                        break;
                    }
                };
                let full = due.len() >= 100;
                for session_id in due {
                    if let Err(error) = self.end_sessions(EndSessions::Any { session_id }).await {
                        tracing::warn!(error = %error, "cannot end a session past its lifetime");
                    }
                }
                if !full {
                    break;
                }
            }
        }
    }

    fn seal<T: Serialize>(&self, value: &T) -> String {
        self.sealer
            .seal(serde_json::to_string(value).unwrap_or_default().as_bytes())
    }

    fn open<T: for<'de> Deserialize<'de>>(&self, sealed: &str) -> Option<T> {
        serde_json::from_slice(&self.sealer.open(sealed)?).ok()
    }

    /// The account creation date of `user_id`: remembered, else from our
    /// record, else asked of Supabase once (a token that did not come
    /// through us).
    async fn created_at(&self, user_id: &str, access_token: &str) -> Result<String, AuthError> {
        if let Some(at) = self
            .created
            .read()
            .ok()
            .and_then(|m| m.get(user_id).cloned())
        {
            return Ok(at);
        }
        let recorded = self.sessions.user_created_at(user_id).await?;
        let at = match recorded {
            Some(at) => at,
            None => match self.api.user(access_token).await {
                Outcome::Ok(user) => user.created_at.unwrap_or_default(),
                Outcome::Refused { .. } => return Err(AuthError::Rejected),
                Outcome::Limited { retry_after } => return Err(AuthError::Busy { retry_after }),
                Outcome::Unavailable(e) => {
                    return Err(AuthError::Unavailable(anyhow::anyhow!("Supabase: {e}")));
                }
            },
        };
        self.remember_created(user_id, &at);
        Ok(at)
    }

    fn remember_created(&self, user_id: &str, at: &str) {
        if let Ok(mut map) = self.created.write() {
            map.insert(user_id.to_string(), at.to_string());
        }
    }

    /// A session Supabase just issued (sign-in or refresh): its access token
    /// checked here too, recorded, and refused if it ended here meanwhile.
    async fn accept(
        &self,
        session: api::Session,
        client: &ClientInfo,
    ) -> Result<IssuedSession, Failure> {
        let now = unix_now();
        let claims = self
            .verifier
            .verify(&self.http, &session.access_token, now, false)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "Supabase issued a token that does not verify here (check SUPABASE_URL and SUPABASE_JWT_SECRET)");
                Failure::Unavailable(format!("its token does not verify: {e}"))
            })?;
        let session_id = claims
            .session_id
            .clone()
            .ok_or_else(|| Failure::Unavailable("its token has no session_id".into()))?;
        if self.revocations.is_revoked(&session_id) {
            return Err(Failure::Rejected);
        }
        let user_created_at = match session.user.as_ref().and_then(|u| u.created_at.clone()) {
            Some(at) => at,
            None => self
                .created_at(&claims.sub, &session.access_token)
                .await
                .map_err(|_| Failure::Unavailable("no account creation date".into()))?,
        };
        self.remember_created(&claims.sub, &user_created_at);
        let tokens = self.seal(&Tokens {
            access: session.access_token.clone(),
            refresh: session.refresh_token.clone(),
        });
        // Upserted unless the session ended here meanwhile.
        let began = self
            .sessions
            .record(SupabaseSession {
                session_id: session_id.clone(),
                user_id: claims.sub.clone(),
                user_created_at: user_created_at.clone(),
                now: now as i64,
                user_agent: client.user_agent.as_deref().map(|ua| truncate(ua, 256)),
                ip: coarse_ip(client.ip),
                refresh_hash: hash_token(&session.refresh_token),
                tokens,
            })
            .await
            .map_err(|e| Failure::Unavailable(format!("recording the session: {e}")))?;
        let Some(began) = began else {
            // The session ended here while Supabase still knew it.
            return Err(Failure::Rejected);
        };
        let (name, avatar_url) = match &session.user {
            Some(user) => jwt::profile(user.user_metadata.as_ref()),
            None => jwt::profile(claims.user_metadata.as_ref()),
        };
        let email = session
            .user
            .as_ref()
            .and_then(|u: &UserObject| u.email.clone())
            .or(claims.email.clone())
            .unwrap_or_default();
        Ok(IssuedSession {
            user: User {
                id: claims.sub.clone(),
                email,
                name,
                avatar_url,
                created_at: user_created_at,
            },
            session_id,
            access_token: session.access_token,
            refresh_token: session.refresh_token,
            // Supabase's expiry, but never past the session's absolute end.
            expires_at: self.lifetime.cap(claims.exp, began.max(0) as u64),
            provider_grant: None,
        })
    }

    async fn refresh_upstream(
        &self,
        token: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, Failure> {
        match self.api.refresh(token, Some(client.ip)).await {
            Outcome::Ok(session) => self.accept(session, client).await,
            Outcome::Refused { status, code } => {
                tracing::info!(status = status.as_u16(), code = %code, "Supabase refused the refresh");
                Err(Failure::Rejected)
            }
            Outcome::Limited { retry_after } => Err(Failure::Busy(retry_after)),
            Outcome::Unavailable(e) => Err(Failure::Unavailable(e)),
        }
    }

    /// The shared refresh of this token: the one in flight, or a new one.
    fn shared_refresh(&self, hash: &str) -> Shared {
        let Ok(mut map) = self.refreshes.lock() else {
            return Arc::new(OnceCell::new());
        };
        let window = self.reuse_interval;
        map.retain(|_, (ended, _)| ended.is_none_or(|at| at.elapsed() < window));
        map.entry(hash.to_string())
            .or_insert_with(|| (None, Arc::new(OnceCell::new())))
            .1
            .clone()
    }

    /// Tries a remote logout again later; a retried call is a failed one
    /// (`chronos_provider_failures_total`).
    async fn retry(&self, pending: &Pending) -> anyhow::Result<()> {
        self.metrics.provider_failed("revoke");
        Ok(self.outbox.retry(pending).await?)
    }

    /// The provider's tokens a PKCE exchange carried, for the person's
    /// connected account (when they are kept).
    fn provider_grant(&self, session: &api::Session) -> Option<ProviderGrant> {
        let (issuer, scopes) = self.keep_provider_tokens.as_ref()?;
        let access_token = session.provider_token.clone()?;
        let user = session.user.as_ref()?;
        let identity = user
            .identities
            .iter()
            .flatten()
            .find(|i| i.provider == self.settings.oauth_provider)?;
        Some(ProviderGrant {
            issuer: issuer.clone(),
            subject: identity.subject()?,
            email: identity.email().or_else(|| user.email.clone()),
            name: jwt::profile(user.user_metadata.as_ref()).0,
            access_token,
            expires_in: None,
            refresh_token: session.provider_refresh_token.clone(),
            scope: Some(scopes.clone()),
        })
    }

    /// One pending remote logout: done, or to be retried.
    async fn deliver(&self, pending: &Pending) -> anyhow::Result<()> {
        let give_up = |why: &str| {
            tracing::error!(attempts = pending.attempts, why, "Supabase logout given up");
        };
        let Some(call) = self.open::<LogoutCall>(&pending.payload) else {
            give_up("the sealed call does not open (DATA_DIR key changed?)");
            return Ok(self.outbox.done(pending.id).await?);
        };
        let retry = |e: String| {
            tracing::warn!(error = %e, attempts = pending.attempts, "Supabase logout deferred");
        };
        // Supabase wants a live access token: refresh first if it expired.
        let live = self
            .verifier
            .verify(&self.http, &call.access, unix_now() + 30, false)
            .await
            .is_ok();
        let access = if live {
            call.access.clone()
        } else {
            match self.api.refresh(&call.refresh, None).await {
                Outcome::Ok(session) => session.access_token,
                // The refresh token is gone: so is the session.
                Outcome::Refused { .. } => return Ok(self.outbox.done(pending.id).await?),
                Outcome::Limited { .. } => return self.retry(pending).await,
                Outcome::Unavailable(e) => {
                    retry(e);
                    return self.retry(pending).await;
                }
            }
        };
        match self.api.logout(&access, &call.scope).await {
            Outcome::Ok(()) => {
                tracing::info!(scope = %call.scope, "Supabase logout delivered");
                Ok(self.outbox.done(pending.id).await?)
            }
            // 401/403/404: already signed out there (what both SDKs assume).
            Outcome::Refused { status, code } => {
                tracing::info!(status = status.as_u16(), code = %code, "Supabase says the session is already gone");
                Ok(self.outbox.done(pending.id).await?)
            }
            Outcome::Limited { .. } => self.retry(pending).await,
            Outcome::Unavailable(e) if pending.attempts + 1 >= MAX_ATTEMPTS => {
                give_up(&e);
                Ok(self.outbox.done(pending.id).await?)
            }
            Outcome::Unavailable(e) => {
                retry(e);
                self.retry(pending).await
            }
        }
    }

    /// Writes down the remote logouts of ended sessions (the caller's
    /// transaction), and wakes the delivery.
    async fn queue_logouts(
        &self,
        ended: &[(SessionId, Option<String>)],
        global: bool,
    ) -> anyhow::Result<()> {
        let mut calls = Vec::new();
        for (_, tokens) in ended {
            let Some(tokens) = tokens.as_deref().and_then(|t| self.open::<Tokens>(t)) else {
                continue;
            };
            calls.push(LogoutCall {
                access: tokens.access,
                refresh: tokens.refresh,
                scope: if global { "global" } else { "local" }.into(),
            });
            // One global logout ends them all at Supabase.
            if global {
                break;
            }
        }
        for call in calls {
            self.outbox.push(LOGOUT, self.seal(&call)).await?;
        }
        self.wake.notify_one();
        Ok(())
    }
}

#[async_trait]
impl SessionAuthority for Supabase {
    async fn refresh(
        &self,
        refresh_token: &str,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        if refresh_token.len() > 4096 {
            return Err(AuthError::Rejected);
        }
        let hash = hash_token(refresh_token);
        // A refresh token of a session that ended here is refused without
        // asking Supabase (and without bringing the session back).
        let known = self.sessions.by_refresh(&hash).await?;
        if let Some((session_id, ended_at, _, _)) = &known
            && (ended_at.is_some() || self.revocations.is_revoked(session_id))
        {
            return Err(AuthError::Rejected);
        }
        // Past its absolute end, or idle past SESSION_IDLE_TIMEOUT: ended
        // here and at Supabase, not renewed.
        if let Some((session_id, _, begun_at, last_used_at)) = &known
            && (*begun_at <= self.lifetime.begun_since()
                || *last_used_at <= unix_now() as i64 - self.idle_ttl as i64)
        {
            self.end_sessions(EndSessions::Any {
                session_id: session_id.clone(),
            })
            .await?;
            return Err(AuthError::Rejected);
        }
        let shared = self.shared_refresh(&hash);
        let result = shared
            .get_or_init(|| self.refresh_upstream(refresh_token, client))
            .await
            .clone();
        if let Ok(mut map) = self.refreshes.lock()
            && let Some((ended, cell)) = map.get_mut(&hash)
            && Arc::ptr_eq(cell, &shared)
        {
            if result.is_err() {
                // Only a success is shared with late duplicates; after a
                // failure the next attempt asks again.
                map.remove(&hash);
            } else {
                // The reuse interval runs from the first to finish.
                ended.get_or_insert_with(Instant::now);
            }
        }
        if let (Err(Failure::Rejected), Some((session_id, _, _, _))) = (&result, known) {
            // Supabase refused a token of a session begun here (a replay
            // after the reuse interval, a session gone there): it ends here
            // too, so its access tokens and its newest refresh token are
            // refused from now on, whatever Supabase still accepts.
            tracing::info!(session_id = %session_id, "Supabase refused a refresh; the session ends here");
            if let Err(error) = self.end_sessions(EndSessions::Any { session_id }).await {
                tracing::error!(error = %error, "could not end the session Supabase refused");
            }
        }
        result.map_err(AuthError::from)
    }

    async fn verify_access_token(&self, token: &str) -> Result<Arc<AccessClaims>, AuthError> {
        let now = unix_now();
        if let Some(claims) = self.verified.get(token) {
            return if claims.exp > now {
                Ok(claims)
            } else {
                Err(AuthError::Rejected)
            };
        }
        let claims = self
            .verifier
            .verify(&self.http, token, now, false)
            .await
            .map_err(|_| AuthError::Rejected)?;
        if claims.session_id.is_none() {
            return Err(AuthError::Rejected);
        }
        let created_at = self.created_at(&claims.sub, token).await?;
        let access = claims.to_access(self.verifier.issuer(), created_at);
        Ok(self.verified.insert(token, access))
    }

    fn revocations(&self) -> &dyn RevocationStore {
        self.revocations.as_ref()
    }

    async fn session_of_access_token(&self, token: &str) -> Option<SessionRef> {
        if let Some(claims) = self.verified.get(token) {
            return Some(SessionRef {
                user_id: claims.sub.clone(),
                session_id: claims.sid.clone(),
            });
        }
        let claims = self
            .verifier
            .verify(&self.http, token, unix_now(), true)
            .await
            .ok()?;
        Some(SessionRef {
            user_id: claims.sub,
            session_id: claims.session_id?,
        })
    }

    async fn session_of_refresh_token(
        &self,
        refresh_token: &str,
    ) -> Result<Option<SessionRef>, AuthError> {
        Ok(self.sessions.owner(&hash_token(refresh_token)).await?)
    }

    async fn end_sessions(&self, which: EndSessions) -> Result<Vec<SessionId>, AuthError> {
        let global = matches!(
            which,
            EndSessions::AllOf { .. } | EndSessions::AllOfUntil { .. }
        );
        let mut rows = self.sessions.end(&which, unix_now() as i64).await?;
        // The freshest tokens carry a global logout.
        rows.sort_by_key(|row| std::cmp::Reverse(row.last_used_at));
        let ended: Vec<(SessionId, Option<String>)> = rows
            .into_iter()
            .map(|row| (row.session_id, row.tokens))
            .collect();
        let ids: Vec<SessionId> = ended.iter().map(|(id, _)| id.clone()).collect();
        self.revocations.revoke(&ids).await?;
        if let Err(error) = self.queue_logouts(&ended, global).await {
            tracing::error!(
                error = format!("{error:#}"),
                "could not queue Supabase logouts"
            );
        }
        Ok(ids)
    }

    async fn is_live(&self, session_id: &str) -> Result<bool, AuthError> {
        let horizon = unix_now() as i64 - self.idle_ttl as i64;
        Ok(!self.revocations.is_revoked(session_id)
            && self
                .sessions
                .is_live(session_id, horizon, self.lifetime.begun_since())
                .await?)
    }

    async fn list_sessions(&self, user_id: &UserId) -> Result<Vec<SessionInfo>, AuthError> {
        let horizon = unix_now() as i64 - self.idle_ttl as i64;
        let rows = self
            .sessions
            .list_of(user_id, horizon, self.lifetime.begun_since())
            .await?;
        Ok(rows
            .into_iter()
            .filter(|row| !self.revocations.is_revoked(&row.id))
            .collect())
    }

    fn jwks(&self) -> Arc<str> {
        serde_json::to_string(&*self.verifier.keys().current())
            .unwrap_or_else(|_| r#"{"keys":[]}"#.into())
            .into()
    }

    fn superseded(&self, access_token: &str) {
        self.verified.forget(access_token);
    }

    fn sweep_verified(&self, now: u64) {
        self.verified.sweep(now);
    }
}

#[async_trait]
impl SignInMethod for Supabase {
    async fn authorize_url(
        &self,
        flow: &StartedFlow,
        redirect_uri: &str,
    ) -> Result<String, AuthError> {
        let mut url = url::Url::parse(&format!("{}/authorize", self.api.base()))
            .map_err(|e| AuthError::Internal(e.into()))?;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("provider", &self.settings.oauth_provider)
                .append_pair("redirect_to", redirect_uri)
                .append_pair("code_challenge", &pkce_challenge(&flow.code_verifier))
                .append_pair("code_challenge_method", "s256");
            if let Some(scopes) = &self.settings.scopes {
                query.append_pair("scopes", scopes);
            }
            for (name, value) in &self.settings.auth_params {
                query.append_pair(name, value);
            }
        }
        Ok(url.into())
    }

    async fn complete(
        &self,
        callback: Callback<'_>,
        flow: &Flow,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        match self
            .api
            .exchange(callback.code, &flow.code_verifier, client.ip)
            .await
        {
            Outcome::Ok(session) => {
                let grant = self.provider_grant(&session);
                let mut issued = self
                    .accept(session, client)
                    .await
                    .map_err(AuthError::from)?;
                issued.provider_grant = grant;
                Ok(issued)
            }
            Outcome::Refused { status, code } => {
                tracing::info!(status = status.as_u16(), code = %code, "Supabase refused the code");
                Err(AuthError::Rejected)
            }
            Outcome::Limited { retry_after } => Err(AuthError::Busy { retry_after }),
            Outcome::Unavailable(e) => {
                Err(AuthError::Unavailable(anyhow::anyhow!("Supabase: {e}")))
            }
        }
    }

    async fn run(&self) {
        // The keys early (a token with an unknown kid fetches them anyway).
        let mut wait = Duration::from_secs(1);
        let load_keys = async {
            while let Err(error) = self.verifier.keys().load(&self.http).await {
                if self.settings.jwt_secret.is_some() {
                    return; // HS256 projects may publish no keys at all.
                }
                tracing::warn!(error = %error, retry_in_s = wait.as_secs(), "Supabase keys not loaded");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        };
        tokio::join!(
            load_keys,
            self.outbox.deliver_forever(
                LOGOUT,
                &self.wake,
                |p| async move { self.deliver(&p).await }
            ),
            self.end_past_lifetime(),
        );
    }

    async fn prune(&self) -> anyhow::Result<()> {
        self.sessions
            .purge(unix_now() as i64 - self.idle_ttl as i64 - 86_400)
            .await?;
        Ok(())
    }
}
