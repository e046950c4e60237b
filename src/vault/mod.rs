//! The token vault (`PROVIDER_TOKENS=keep`): the accounts a person has
//! connected at the identity provider, their tokens sealed at rest, and a
//! fresh provider access token for the app's services on demand, without
//! any service ever holding a refresh token.
//!
//! - A person's accounts: the one they sign in with, and any they connect
//!   (`GET /auth/google/connect`, then the usual callback). One provider
//!   account belongs to at most one person.
//! - Refresh done once: of every thread and replica, one refreshes an
//!   account at a time (a lease on its row; here, one task per account),
//!   and the others wait for its token. A rotated refresh token is stored
//!   with the new access token, before either is handed out. Only a
//!   definite refusal (`invalid_grant`, `unauthorized_client`) marks the
//!   account for reconnection; a provider that cannot be reached is tried
//!   again with backoff, and a still-valid token is served meanwhile.
//! - Disconnecting revokes the account's token at the provider (RFC 7009)
//!   through the outbox: answered at once, retried until the provider
//!   confirms.
//! - The provider's own revocations are heard ([`risc`]).

pub mod risc;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::authority::{AuthError, ProviderGrant, UserId};
use crate::config::VaultSettings;
use crate::metrics::Metrics;
use crate::secrets::Sealer;
use crate::signin::oidc::client::{OidcClient, RefreshError};
use crate::store::connected_accounts::{ConnectedAccounts, Connection, Held};
use crate::store::database::Database;
use crate::store::flows::{Flow, StartedFlow};
use crate::store::outbox::{Outbox, Pending};
use crate::store::sql::StoreError;
use crate::unix_now;

/// The outbox kind of a connected account's token revocation (the
/// operator's commands write it too; the server delivers it).
pub const REVOKE: &str = "vault.revoke";
/// How long a refresh may hold an account's lease.
const LEASE_SECONDS: i64 = 30;
/// How long an exchange waits for another replica's refresh.
const WAIT_FOR_REFRESH: Duration = Duration::from_secs(5);
/// The longest wait between refresh attempts of an unreachable provider.
const MAX_BACKOFF_SECONDS: i64 = 60;
/// When the provider does not say how long its access token lives.
const DEFAULT_EXPIRES_IN: u64 = 3600;

/// A provider access token, ready to hand to a service.
#[derive(Clone)]
pub struct Served {
    pub access_token: String,
    /// Seconds left.
    pub expires_in: u64,
    /// Granted, space-separated.
    pub scope: String,
}

/// Why no token was served (RFC 6749 §5.2 / RFC 8693 §2.2.2 shapes, at the
/// route).
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The provider refused the account's refresh token: it must be
    /// connected again.
    #[error("the account must be connected again")]
    NeedsReauth,
    /// The account is gone (disconnected meanwhile).
    #[error("no such connected account")]
    NoAccount,
    /// The provider cannot be reached and the stored token has expired.
    #[error("the provider cannot be reached; retry in {retry_after} s")]
    Unavailable { retry_after: u64 },
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for VaultError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// How connecting an account ended.
#[derive(Debug)]
pub enum Connected {
    Account(String),
    /// That provider account is connected to another person.
    OtherUser,
}

pub struct Vault {
    settings: VaultSettings,
    client: Arc<OidcClient>,
    accounts: ConnectedAccounts,
    sealer: Sealer,
    outbox: Outbox,
    wake: Notify,
    metrics: Metrics,
    /// One refresh per account at a time in this process (the row's lease
    /// does it across replicas).
    refreshing: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// People's accounts as last read, for [`SNAPSHOT_FOR`]: an exchange
    /// of a cached token then reads no database. What this process
    /// changes is forgotten at once; another replica's change (a
    /// disconnect, a refusal) is seen within that time.
    snapshots: quick_cache::sync::Cache<UserId, Snapshot>,
}

/// How long a person's accounts as read are used before reading again.
pub const SNAPSHOT_FOR: Duration = Duration::from_secs(1);

#[derive(Clone)]
struct Snapshot {
    read_at: tokio::time::Instant,
    accounts: Arc<Vec<Held>>,
}

impl Vault {
    pub fn new(
        settings: VaultSettings,
        client: Arc<OidcClient>,
        db: Database,
        sealer: Sealer,
        metrics: Metrics,
    ) -> Self {
        Self {
            settings,
            client,
            accounts: ConnectedAccounts::new(db.clone()),
            sealer,
            outbox: Outbox::new(db),
            wake: Notify::new(),
            metrics,
            refreshing: Mutex::new(HashMap::new()),
            snapshots: quick_cache::sync::Cache::new(100_000),
        }
    }

    pub fn settings(&self) -> &VaultSettings {
        &self.settings
    }

    pub fn accounts(&self) -> &ConnectedAccounts {
        &self.accounts
    }

    /// The provider's consent screen for connecting an account: the
    /// configured scopes, a refresh token asked for.
    pub async fn connect_url(
        &self,
        flow: &StartedFlow,
        redirect_uri: &str,
    ) -> Result<String, AuthError> {
        let mut params = vec![("prompt".to_string(), "consent".to_string())];
        if self.client.is_google() {
            params.push(("access_type".into(), "offline".into()));
            params.push(("include_granted_scopes".into(), "true".into()));
        }
        self.client
            .authorize_url(flow, redirect_uri, &self.settings.scopes, &params)
            .await
    }

    /// The code of a connect flow: the account it names, connected to the
    /// person who started the flow.
    pub async fn complete_connect(
        &self,
        code: &str,
        state: Option<&str>,
        flow: &Flow,
        user_id: &UserId,
    ) -> Result<Connected, AuthError> {
        if state.is_some_and(|state| state != flow.state) {
            return Err(AuthError::Rejected);
        }
        let (tokens, claims) = self.client.exchange_code(code, flow).await?;
        let Some(access_token) = tokens.access_token.clone() else {
            tracing::warn!("the provider granted no access token");
            return Err(AuthError::Rejected);
        };
        let claims = self
            .client
            .with_userinfo(claims, Some(&access_token))
            .await?;
        let grant = ProviderGrant {
            issuer: self.client.issuer().to_string(),
            subject: claims.sub,
            email: claims.email,
            name: claims.name,
            access_token,
            expires_in: tokens.expires_in,
            refresh_token: tokens.refresh_token,
            scope: tokens.scope.or_else(|| Some(self.settings.scopes.clone())),
        };
        Ok(self.keep(user_id, grant, false).await?)
    }

    /// Keeps what the provider granted as the person's connected account
    /// (`signs_in`: the account they sign in with).
    pub async fn keep(
        &self,
        user_id: &UserId,
        grant: ProviderGrant,
        signs_in: bool,
    ) -> Result<Connected, StoreError> {
        let now = unix_now() as i64;
        let expires_in = grant.expires_in.unwrap_or(DEFAULT_EXPIRES_IN) as i64;
        let connection = Connection {
            user_id: user_id.clone(),
            provider: self.settings.name.clone(),
            issuer: grant.issuer,
            subject: grant.subject,
            email: grant.email,
            name: grant.name,
            scopes: normalize_scopes(grant.scope.as_deref().unwrap_or_default()),
            access_token: self.sealer.seal(grant.access_token.as_bytes()),
            access_expires_at: now + expires_in,
            refresh_token: grant.refresh_token.map(|t| self.sealer.seal(t.as_bytes())),
            signs_in,
            now,
        };
        self.snapshots.remove(user_id);
        Ok(match self.accounts.connect(connection).await? {
            Some(id) => {
                tracing::info!(account = %id, signs_in, "provider account connected");
                Connected::Account(id)
            }
            None => Connected::OtherUser,
        })
    }

    /// Disconnects the person's account (`None`: any person's, the
    /// operator's command): its token revoked at the provider through the
    /// outbox. `false` when there was no such account.
    pub async fn disconnect(&self, user_id: Option<&UserId>, id: &str) -> Result<bool, StoreError> {
        let gone = self.accounts.disconnect(id, user_id, REVOKE).await?;
        if let Some(account) = &gone {
            self.snapshots.remove(&account.user_id);
            self.wake.notify_one();
        }
        Ok(gone.is_some())
    }

    /// Disconnects every account of the person (their account is removed).
    pub async fn disconnect_all_of(&self, user_id: &UserId) -> Result<usize, StoreError> {
        let mut n = 0;
        for account in self.accounts.of_user(user_id).await? {
            n += usize::from(self.disconnect(Some(user_id), &account.id).await?);
        }
        Ok(n)
    }

    /// A provider access token of `account` valid for at least the refresh
    /// margin: the stored one, or a new one from the provider.
    pub async fn token(&self, held: &Held) -> Result<Served, VaultError> {
        let margin = self.settings.refresh_margin as i64;
        if held.account.needs_reauth {
            return Err(VaultError::NeedsReauth);
        }
        if let Some(served) = self.fresh(held, unix_now() as i64 + margin) {
            return Ok(served);
        }
        // One refresh per account in this process: the others wait here,
        // then find its token.
        let id = &held.account.id;
        let gate = self.gate(id);
        let _one = gate.lock().await;
        let outcome = self.refresh_or_wait(id, margin).await;
        self.forget_gate(id, &gate);
        self.snapshots.remove(&held.account.user_id);
        outcome
    }

    async fn refresh_or_wait(&self, id: &str, margin: i64) -> Result<Served, VaultError> {
        let held = self.held(id).await?;
        let now = unix_now() as i64;
        if let Some(served) = self.fresh(&held, now + margin) {
            return Ok(served);
        }
        if held.refresh_token.is_none() {
            // Nothing to refresh with (the provider granted no refresh
            // token): the stored token while it lasts, then reconnection.
            return self.fresh(&held, now).ok_or(VaultError::NeedsReauth);
        }
        let leased = self
            .accounts
            .lease_refresh(id, now, now + LEASE_SECONDS, now + margin)
            .await?;
        match leased {
            Some(sealed) => self.refresh(&held, &sealed).await,
            None => self.wait_for_refresh(id, margin).await,
        }
    }

    /// Another replica refreshes the account (or the provider is being
    /// given a rest): its token when it is there, else the stored one
    /// while it lasts.
    async fn wait_for_refresh(&self, id: &str, margin: i64) -> Result<Served, VaultError> {
        let started = tokio::time::Instant::now();
        loop {
            let held = self.held(id).await?;
            let now = unix_now() as i64;
            if let Some(served) = self.fresh(&held, now + margin) {
                return Ok(served);
            }
            if held.refreshing_until.is_none_or(|until| until <= now) {
                // The lease is over (its holder gave up, or the backoff
                // ended) without a fresh token: take it.
                return Box::pin(self.refresh_or_wait(id, margin)).await;
            }
            // Failed refreshes: the lease is a backoff, not a refresh under way.
            let backing_off = held.refresh_failures > 0;
            if backing_off || started.elapsed() >= WAIT_FOR_REFRESH {
                if let Some(served) = self.fresh(&held, now) {
                    return Ok(served);
                }
                let retry_after = held
                    .refreshing_until
                    .map_or(1, |until| (until - now).max(1));
                return Err(VaultError::Unavailable {
                    retry_after: retry_after as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Refreshes the account at the provider (this process holds its lease).
    async fn refresh(&self, held: &Held, sealed_refresh: &str) -> Result<Served, VaultError> {
        let id = &held.account.id;
        let refresh_token = self
            .sealer
            .open(sealed_refresh)
            .and_then(|t| String::from_utf8(t).ok())
            .ok_or_else(|| {
                anyhow::anyhow!("a sealed refresh token does not open (DATA_DIR key changed?)")
            })?;
        let now = unix_now() as i64;
        match self.client.refresh(&refresh_token).await {
            Ok(answer) => {
                let Some(access_token) = answer.access_token else {
                    return self.failed(held, "no access token in the answer").await;
                };
                let expires_in = answer.expires_in.unwrap_or(DEFAULT_EXPIRES_IN);
                let scope = answer.scope.as_deref().map(normalize_scopes);
                // The rotated refresh token, if any, is stored with the
                // access token in one statement, before either is served.
                self.accounts
                    .refreshed(
                        id,
                        self.sealer.seal(access_token.as_bytes()),
                        now + expires_in as i64,
                        answer.refresh_token.map(|t| self.sealer.seal(t.as_bytes())),
                        scope.clone(),
                    )
                    .await?;
                self.metrics.provider_refresh("refreshed");
                tracing::info!(account = %id, "provider access token refreshed");
                Ok(Served {
                    access_token,
                    expires_in,
                    scope: scope.unwrap_or_else(|| held.account.scopes.clone()),
                })
            }
            Err(RefreshError::Refused(error)) => {
                self.accounts.refused(id).await?;
                self.metrics.provider_refresh("refused");
                tracing::warn!(account = %id, error = %error, "the provider refused the refresh token; the account must be connected again");
                self.count_needing_reauth().await;
                Err(VaultError::NeedsReauth)
            }
            Err(RefreshError::Failed(why)) => self.failed(held, &why).await,
        }
    }

    /// A refresh that may work later: backed off (1 s, 2 s, 4 s... a
    /// minute), the stored token served while it lasts.
    async fn failed(&self, held: &Held, why: &str) -> Result<Served, VaultError> {
        let now = unix_now() as i64;
        let backoff = 1i64
            .checked_shl(held.refresh_failures.clamp(0, 10) as u32)
            .unwrap_or(MAX_BACKOFF_SECONDS)
            .min(MAX_BACKOFF_SECONDS);
        self.accounts
            .failed(&held.account.id, now + backoff)
            .await?;
        self.metrics.provider_refresh("failed");
        self.metrics.provider_failed("token_refresh");
        tracing::warn!(account = %held.account.id, error = %why, retry_in_s = backoff, "provider token refresh failed");
        match self.fresh(held, now) {
            Some(served) => Ok(served),
            None => Err(VaultError::Unavailable {
                retry_after: backoff as u64,
            }),
        }
    }

    async fn held(&self, id: &str) -> Result<Held, VaultError> {
        let held = self.accounts.held(id).await?.ok_or(VaultError::NoAccount)?;
        if held.account.needs_reauth {
            return Err(VaultError::NeedsReauth);
        }
        Ok(held)
    }

    /// The stored access token, if it is still valid at `until`.
    fn fresh(&self, held: &Held, until: i64) -> Option<Served> {
        let expires_at = held.access_expires_at?;
        if expires_at <= until {
            return None;
        }
        let access_token = self
            .sealer
            .open(held.access_token.as_deref()?)
            .and_then(|t| String::from_utf8(t).ok())?;
        Some(Served {
            access_token,
            expires_in: (expires_at - unix_now() as i64).max(0) as u64,
            scope: held.account.scopes.clone(),
        })
    }

    fn gate(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let Ok(mut gates) = self.refreshing.lock() else {
            return Arc::new(tokio::sync::Mutex::new(()));
        };
        gates.entry(id.to_string()).or_default().clone()
    }

    /// Forgets the account's gate once nobody else holds it.
    fn forget_gate(&self, id: &str, gate: &Arc<tokio::sync::Mutex<()>>) {
        if let Ok(mut gates) = self.refreshing.lock()
            && Arc::strong_count(gate) <= 2
        {
            gates.remove(id);
        }
    }

    async fn count_needing_reauth(&self) {
        if let Ok(n) = self.accounts.needing_reauth().await {
            self.metrics.set_accounts_needing_reauth(n);
        }
    }

    /// One pending revocation (its payload: the token type hint, a space,
    /// the sealed token): done, or to be retried.
    async fn deliver(&self, pending: &Pending) -> anyhow::Result<()> {
        let hinted = pending
            .payload
            .split_once(' ')
            .unwrap_or(("refresh_token", pending.payload.as_str()));
        self.client
            .deliver_revocation(&self.outbox, &self.metrics, &self.sealer, pending, hinted)
            .await
    }

    /// Delivers revocations until the process ends, and keeps the count of
    /// accounts needing reconnection current.
    pub async fn run(&self) {
        let count = async {
            loop {
                self.count_needing_reauth().await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }
        };
        tokio::join!(
            count,
            self.outbox.deliver_forever(
                REVOKE,
                &self.wake,
                |p| async move { self.deliver(&p).await }
            )
        );
    }

    /// The account of `user_id` a service asks for, with its tokens: by id
    /// or email (`hint`), else the one the person signs in with.
    pub async fn account_of(
        &self,
        user_id: &UserId,
        hint: Option<&str>,
    ) -> Result<Option<Held>, StoreError> {
        let snapshot = match self.snapshots.get(user_id) {
            Some(snapshot) if snapshot.read_at.elapsed() < SNAPSHOT_FOR => snapshot,
            _ => {
                let snapshot = Snapshot {
                    read_at: tokio::time::Instant::now(),
                    accounts: Arc::new(self.accounts.held_of_user(user_id).await?),
                };
                self.snapshots.insert(user_id.clone(), snapshot.clone());
                snapshot
            }
        };
        let mut accounts = snapshot.accounts.iter();
        Ok(match hint {
            Some(hint) => accounts
                .find(|h| {
                    h.account.id == hint
                        || h.account
                            .email
                            .as_deref()
                            .is_some_and(|email| email.eq_ignore_ascii_case(hint))
                })
                .cloned(),
            None => accounts.find(|h| h.account.signs_in).cloned(),
        })
    }

    /// Forgets what was read of everyone's accounts (the provider revoked
    /// some, whose people are not known here).
    pub fn forget_snapshots(&self) {
        self.snapshots.clear();
    }
}

/// Scopes as a set: deduplicated, in a stable order, space-separated.
pub fn normalize_scopes(scopes: &str) -> String {
    let mut all: Vec<&str> = scopes.split_whitespace().collect();
    all.sort_unstable();
    all.dedup();
    all.join(" ")
}
