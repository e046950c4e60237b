//! The password sign-in: accounts with an argon2id password, signed in on
//! our own page (`/auth/signin`), which issues a one-time code bound to the
//! flow's PKCE challenge and redirect URI, exactly as an external provider
//! would. The callback redeems the code and the local authority opens the
//! session.

pub mod hashing;
mod page;

use std::sync::Arc;

use async_trait::async_trait;
use axum::Router;
use rusqlite::OptionalExtension;
use subtle::ConstantTimeEq;

use super::{Callback, SignInMethod};
use crate::accounts::{
    AccountError, Accounts, User, UserRow, WithAccount, normalize_email, user_columns,
};
use crate::authority::local::LocalAuthority;
use crate::authority::{AuthError, ClientInfo, EndSessions, IssuedSession, SessionAuthority};
use crate::cookies::CookiePolicy;
use crate::secrets::{hash_token, pkce_challenge, random_token};
use crate::security::csrf::CsrfTokens;
use crate::security::redirects::RedirectPolicy;
use crate::store::database::Database;
use crate::store::flows::{Flow, StartedFlow};
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

#[derive(sqlx::FromRow)]
struct Credentials {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
}

/// What the sign-in page needs from the rest of the server.
pub struct PageConfig {
    /// `PUBLIC_URL`: the page lives at `PUBLIC_URL/auth/signin`.
    pub public_url: String,
    pub signup_enabled: bool,
    pub csrf: CsrfTokens,
    pub cookies: CookiePolicy,
    pub redirects: RedirectPolicy,
}

/// Accounts that sign in with a password: registering them and checking
/// their password (also what the operator commands use).
#[derive(Clone)]
pub struct PasswordAccounts {
    db: Database,
    accounts: Accounts,
    passwords: Passwords,
}

impl PasswordAccounts {
    pub fn new(db: Database, accounts: Accounts, passwords: Passwords) -> Self {
        Self {
            db,
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
            .create_with(
                email,
                name,
                Some(WithAccount {
                    insert: "INSERT INTO password_credentials (user_id, password_hash) VALUES ($1, $2)",
                    value: hash,
                }),
            )
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
        const SELECT: &str = concat!(
            "SELECT ",
            user_columns!(),
            ", p.password_hash FROM users
             JOIN password_credentials p ON p.user_id = users.id WHERE email = $1"
        );
        let row: Option<Credentials> = match (normalize_email(email), &self.db) {
            (None, _) => None,
            (Some(email), Database::Sqlite { pool, .. }) => sqlx::query_as(SELECT)
                .bind(email)
                .fetch_optional(pool)
                .await
                .map_err(anyhow::Error::from)?,
            (Some(email), Database::Postgres(pool)) => sqlx::query_as(SELECT)
                .bind(email)
                .fetch_optional(pool)
                .await
                .map_err(anyhow::Error::from)?,
        };
        let (user, hash) = match row {
            Some(c) => (Some(User::from(c.user)), Some(c.password_hash)),
            None => (None, None),
        };
        let ok = self.passwords.verify(password.to_string(), hash).await?;
        Ok(user.filter(|_| ok))
    }
}

/// The password sign-in method: its page, its one-time codes.
pub struct PasswordSignIn {
    db: Database,
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
            db,
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
        user_id: &str,
        code_challenge: &str,
        redirect_uri: &str,
    ) -> anyhow::Result<String> {
        let code = random_token(32);
        let row = (
            hash_token(&code),
            user_id.to_string(),
            code_challenge.to_string(),
            redirect_uri.to_string(),
            (unix_now() + CODE_TTL_SECONDS) as i64,
        );
        match &self.db {
            Database::Sqlite { writer, .. } => {
                writer
                    .write(move |c| {
                        c.execute(
                            "INSERT INTO auth_codes (code_hash, user_id, code_challenge, redirect_uri, expires_at)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                            rusqlite::params![row.0, row.1, row.2, row.3, row.4],
                        )
                    })
                    .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query(
                    "INSERT INTO auth_codes (code_hash, user_id, code_challenge, redirect_uri, expires_at)
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(row.0)
                .bind(row.1)
                .bind(row.2)
                .bind(row.3)
                .bind(row.4)
                .execute(pool)
                .await?;
            }
        }
        Ok(code)
    }

    /// Records a form token's nonce; `false` when it was posted before.
    async fn first_use_of_form_token(&self, nonce: &str, expires_at: u64) -> anyhow::Result<bool> {
        self.db
            .record_once(
                "INSERT INTO used_form_tokens (nonce, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                hash_token(nonce),
                expires_at as i64,
            )
            .await
    }

    /// Burns the code and returns its user when it was issued for this
    /// verifier and redirect URI. A replayed code also ends the session it
    /// was first exchanged for: someone else has seen it.
    async fn redeem(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> Result<String, AuthError> {
        let now = unix_now() as i64;
        let code_hash = hash_token(code);
        enum Redeemed {
            Fresh(String, String, String, i64),
            Replayed(Option<String>),
        }
        let redeemed = match &self.db {
            Database::Sqlite { writer, .. } => {
                writer
                    .write(move |c| {
                        let row = c
                            .query_row(
                                "UPDATE auth_codes SET used_at = ?1 WHERE code_hash = ?2 AND used_at IS NULL
                                 RETURNING user_id, code_challenge, redirect_uri, expires_at",
                                rusqlite::params![now, code_hash],
                                |r| Ok(Redeemed::Fresh(r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                            )
                            .optional()?;
                        match row {
                            Some(fresh) => Ok(fresh),
                            None => Ok(Redeemed::Replayed(
                                c.query_row(
                                    "SELECT session_id FROM auth_codes WHERE code_hash = ?1",
                                    [code_hash],
                                    |r| r.get(0),
                                )
                                .optional()?
                                .flatten(),
                            )),
                        }
                    })
                    .await?
            }
            Database::Postgres(pool) => {
                // One conditional UPDATE: of two replicas redeeming one
                // code at once, exactly one gets the row.
                let fresh: Option<(String, String, String, i64)> = sqlx::query_as(
                    "UPDATE auth_codes SET used_at = $1 WHERE code_hash = $2 AND used_at IS NULL
                     RETURNING user_id, code_challenge, redirect_uri, expires_at",
                )
                .bind(now)
                .bind(&code_hash)
                .fetch_optional(pool)
                .await?;
                match fresh {
                    Some((user, challenge, redirect, expires)) => {
                        Redeemed::Fresh(user, challenge, redirect, expires)
                    }
                    None => Redeemed::Replayed(
                        sqlx::query_scalar::<_, Option<String>>(
                            "SELECT session_id FROM auth_codes WHERE code_hash = $1",
                        )
                        .bind(&code_hash)
                        .fetch_optional(pool)
                        .await?
                        .flatten(),
                    ),
                }
            }
        };
        let (user_id, challenge, bound_redirect, expires_at) = match redeemed {
            Redeemed::Fresh(user_id, challenge, redirect, expires_at) => {
                (user_id, challenge, redirect, expires_at)
            }
            Redeemed::Replayed(session) => {
                if let Some(session_id) = session {
                    self.authority
                        .end_sessions(EndSessions::Any { session_id })
                        .await?;
                }
                return Err(AuthError::Rejected);
            }
        };
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
        let (session_id, code_hash) = (issued.session_id.clone(), hash_token(callback.code));
        match &self.db {
            Database::Sqlite { writer, .. } => {
                writer
                    .write(move |c| {
                        c.execute(
                            "UPDATE auth_codes SET session_id = ?1 WHERE code_hash = ?2",
                            rusqlite::params![session_id, code_hash],
                        )
                    })
                    .await?;
            }
            Database::Postgres(pool) => {
                sqlx::query("UPDATE auth_codes SET session_id = $1 WHERE code_hash = $2")
                    .bind(session_id)
                    .bind(code_hash)
                    .execute(pool)
                    .await?;
            }
        }
        Ok(issued)
    }

    fn routes(self: Arc<Self>) -> Option<Router> {
        Some(page::router(self))
    }

    async fn prune(&self) -> anyhow::Result<()> {
        let now = unix_now() as i64;
        self.db
            .purge(
                "DELETE FROM auth_codes WHERE code_hash IN
                   (SELECT code_hash FROM auth_codes WHERE expires_at < $1 LIMIT 1000)",
                now - 3600,
            )
            .await?;
        self.db
            .purge(
                "DELETE FROM used_form_tokens WHERE nonce IN
               (SELECT nonce FROM used_form_tokens WHERE expires_at < $1 LIMIT 1000)",
                now,
            )
            .await?;
        Ok(())
    }
}
