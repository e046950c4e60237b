//! The embedded sign-in: accounts with an argon2id password or a passkey,
//! signed in on our own page (`/auth/signin`), with a TOTP second step
//! when the account has one, which issues a one-time code bound to the
//! flow's PKCE challenge and redirect URI, exactly as an external provider
//! would. The callback redeems the code and the local authority opens the
//! session.

mod flow;
pub mod hashing;
mod page;
mod passkey;
mod second_step;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use subtle::ConstantTimeEq;

use super::{Callback, SignInMethod};
use crate::authority::local::LocalAuthority;
use crate::authority::{
    AuthError, ClientInfo, EndSessions, IssuedSession, SessionAuthority, UserId,
};
use crate::cookies::CookiePolicy;
use crate::secrets::{hash_token, pkce_challenge, random_token};
use crate::security::csrf::CsrfTokens;
use crate::security::redirects::RedirectPolicy;
use crate::store::accounts::{AccountError, Accounts, User, normalize_email};
use crate::store::codes::{Codes, IssuedCode, Redeemed};
use crate::store::database::Database;
use crate::store::flows::{Flow, StartedFlow};
use crate::store::nonces::{Nonces, OneTime};
use crate::unix_now;
pub use hashing::{Busy, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, Passwords};

/// One-time codes live this long.
pub const CODE_TTL_SECONDS: u64 = 300;

/// Why an account could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error("the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    InvalidPassword,
    #[error(transparent)]
    Account(#[from] AccountError),
    #[error(transparent)]
    Busy(#[from] Busy),
}

/// Why a password check did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// What the sign-in page needs from the rest of the server.
pub struct PageConfig {
    /// `PUBLIC_URL`: the page lives at `PUBLIC_URL/auth/signin`.
    pub public_url: String,
    pub signup_enabled: bool,
    pub csrf: CsrfTokens,
    pub cookies: CookiePolicy,
    pub redirects: RedirectPolicy,
    /// Passkeys and second factors.
    pub credentials: Arc<crate::credentials::Credentials>,
}

/// Accounts that sign in with a password: registering them and checking
/// their password (also what the operator commands use).
#[derive(Clone)]
pub struct PasswordAccounts {
    accounts: Accounts,
    passwords: Passwords,
}

impl PasswordAccounts {
    pub fn new(accounts: Accounts, passwords: Passwords) -> Self {
        Self {
            accounts,
            passwords,
        }
    }

    /// Creates an account that signs in with this password.
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
    ) -> Result<User, RegisterError> {
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&password.chars().count()) {
            return Err(RegisterError::InvalidPassword);
        }
        // Refuse a bad email before spending a hash on it.
        if normalize_email(email).is_none() {
            return Err(AccountError::InvalidEmail(email.to_string()).into());
        }
        let hash = self
            .passwords
            .hash(password.to_string())
            .await
            .map_err(AccountError::Internal)??;
        let user = self
            .accounts
            .create_with_password(email, name, Some(hash))
            .await?;
        Ok(user)
    }

    /// The user if the password is right; `None` for a wrong password, an
    /// unknown email and an account without a password alike, in the same
    /// time.
    pub async fn authenticate(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Option<User>, CheckError> {
        if password.len() > MAX_PASSWORD_LEN * 4 {
            return Ok(None);
        }
        let (user, hash) = match self
            .accounts
            .password_credentials(email)
            .await
            .map_err(anyhow::Error::from)?
        {
            Some(c) => (Some(c.user), Some(c.password_hash)),
            None => (None, None),
        };
        let ok = self.passwords.verify(password.to_string(), hash).await?;
        Ok(user.filter(|_| ok))
    }
}

/// The password sign-in method: its page, its one-time codes.
pub struct PasswordSignIn {
    codes: Codes,
    nonces: Nonces,
    accounts: PasswordAccounts,
    authority: Arc<LocalAuthority>,
    page: PageConfig,
}

impl PasswordSignIn {
    pub fn new(
        db: Database,
        accounts: PasswordAccounts,
        authority: Arc<LocalAuthority>,
        page: PageConfig,
    ) -> Self {
        Self {
            codes: Codes::new(db.clone()),
            nonces: Nonces::new(db),
            accounts,
            authority,
            page,
        }
    }

    pub fn accounts(&self) -> &PasswordAccounts {
        &self.accounts
    }

    /// After the page accepted the password: a one-time code for
    /// `redirect_uri`, bound to the flow's challenge.
    async fn issue_code(
        &self,
        user_id: &UserId,
        code_challenge: &str,
        redirect_uri: &str,
    ) -> anyhow::Result<String> {
        let code = random_token(32);
        let issued = IssuedCode {
            user_id: user_id.clone(),
            code_challenge: code_challenge.to_string(),
            redirect_uri: redirect_uri.to_string(),
            expires_at: (unix_now() + CODE_TTL_SECONDS) as i64,
        };
        self.codes.issue(hash_token(&code), issued).await?;
        Ok(code)
    }

    /// Records a form token's nonce; `false` when it was posted before.
    async fn first_use_of_form_token(&self, nonce: &str, expires_at: u64) -> anyhow::Result<bool> {
        Ok(self
            .nonces
            .first_use(OneTime::FormToken, hash_token(nonce), expires_at as i64)
            .await?)
    }

    /// Burns the code and returns its user when it was issued for this
    /// verifier and redirect URI. A replayed code also ends the session it
    /// was first exchanged for: someone else has seen it.
    async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<UserId, AuthError> {
        let now = unix_now() as i64;
        let code = match self.codes.redeem(hash_token(code), now).await? {
            Redeemed::Fresh(code) => code,
            Redeemed::Replayed(session) => {
                if let Some(session_id) = session {
                    self.authority
                        .end_sessions(EndSessions::Any { session_id })
                        .await?;
                }
                return Err(AuthError::Rejected);
            }
        };
        let IssuedCode {
            user_id,
            code_challenge: challenge,
            redirect_uri: bound_redirect,
            expires_at,
        } = code;
        let pkce_ok = bool::from(
            pkce_challenge(verifier)
                .as_bytes()
                .ct_eq(challenge.as_bytes()),
        );
        if expires_at <= now || !pkce_ok || bound_redirect != redirect_uri {
            return Err(AuthError::Rejected);
        }
        Ok(user_id)
    }
}

#[async_trait]
impl SignInMethod for PasswordSignIn {
    async fn authorize_url(
        &self,
        flow: &StartedFlow,
        redirect_uri: &str,
    ) -> Result<String, AuthError> {
        let mut url = url::Url::parse(&format!("{}/auth/signin", self.page.public_url))
            .map_err(|e| AuthError::Internal(e.into()))?;
        url.query_pairs_mut()
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("code_challenge", &pkce_challenge(&flow.code_verifier))
            .append_pair("code_challenge_method", "S256");
        Ok(url.into())
    }

    async fn complete(
        &self,
        callback: Callback<'_>,
        flow: &Flow,
        client: &ClientInfo,
    ) -> Result<IssuedSession, AuthError> {
        let user_id = self
            .redeem(callback.code, &flow.code_verifier, &flow.redirect_uri)
            .await?;
        let issued = self.authority.open(&user_id, client).await?;
        self.codes
            .exchanged_for(hash_token(callback.code), &issued.session_id)
            .await?;
        Ok(issued)
    }

    fn routes(self: Arc<Self>) -> Option<Router> {
        Some(page::router(self))
    }

    async fn prune(&self) -> anyhow::Result<()> {
        let now = unix_now() as i64;
        self.codes.purge(now - 3600).await?;
        self.nonces.purge(OneTime::FormToken, now).await?;
        self.page.credentials.prune().await?;
        Ok(())
    }
}
