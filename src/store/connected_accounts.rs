//! Connected accounts (`connected_accounts`): a person's accounts at the
//! identity provider and the tokens those accounts granted, sealed by the
//! caller before they get here. One provider account `(issuer, subject)`
//! belongs to at most one person. A refresh at the provider is leased
//! through the row (`refreshing_until`), so that of all threads and
//! replicas exactly one refreshes an account at a time, without holding a
//! transaction open over the provider's answer.

use super::database::Database;
use super::ids::UserId;
use super::outbox::push_in;
use super::sql::{Exec, FromRow, Row, RowExt, StoreError, Work, args};

/// An account as the API shows it (no tokens).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: String,
    pub user_id: UserId,
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// Granted, space-separated.
    pub scopes: String,
    pub needs_reauth: bool,
    pub signs_in: bool,
    pub connected_at: i64,
}

/// The columns an [`Account`] is read from.
macro_rules! account_columns {
    () => {
        "id, user_id, provider, issuer, subject, email, name, scopes, needs_reauth, signs_in, connected_at"
    };
}

impl FromRow for Account {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            id: row.get(0)?,
            user_id: row.get(1)?,
            provider: row.get(2)?,
            issuer: row.get(3)?,
            subject: row.get(4)?,
            email: row.get(5)?,
            name: row.get(6)?,
            scopes: row.get(7)?,
            needs_reauth: row.get(8)?,
            signs_in: row.get(9)?,
            connected_at: row.get(10)?,
        })
    }
}

/// An account with its sealed tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    pub account: Account,
    pub access_token: Option<String>,
    pub access_expires_at: Option<i64>,
    pub refresh_token: Option<String>,
    /// A process refreshes it (or backs off) until then.
    pub refreshing_until: Option<i64>,
    /// Refreshes that failed in a row (the provider unreachable).
    pub refresh_failures: i64,
}

/// The columns of a [`Held`].
macro_rules! held_columns {
    () => {
        concat!(
            account_columns!(),
            ", access_token, access_expires_at, refresh_token, refreshing_until, refresh_failures"
        )
    };
}

impl FromRow for Held {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            account: Account::from_row(row)?,
            access_token: row.get(11)?,
            access_expires_at: row.get(12)?,
            refresh_token: row.get(13)?,
            refreshing_until: row.get(14)?,
            refresh_failures: row.get(15)?,
        })
    }
}

/// What a person just connected (or signed in with), tokens sealed.
#[derive(Debug, Clone)]
pub struct Connection {
    pub user_id: UserId,
    pub provider: String,
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub scopes: String,
    pub access_token: String,
    pub access_expires_at: i64,
    /// `None`: the provider sent none this time; a stored one is kept.
    pub refresh_token: Option<String>,
    pub signs_in: bool,
    pub now: i64,
}

/// Deletes an account and writes the revocation of its token (refresh
/// token, else access token) down in the outbox, in one transaction.
struct Disconnect {
    id: String,
    /// `None`: whoever it belongs to (an operator's command).
    user_id: Option<UserId>,
    revoke: &'static str,
}

impl Work for Disconnect {
    /// The account, if it was there (and the caller's).
    type Output = Option<Account>;

    async fn run<E: Exec>(self, tx: &mut E) -> Result<Option<Account>, StoreError> {
        const TAKE: &str = concat!(
            "DELETE FROM connected_accounts WHERE id = $1 AND (CAST($2 AS TEXT) IS NULL OR user_id = $2)
             RETURNING ",
            held_columns!()
        );
        let held: Option<Held> = tx
            .fetch_optional(TAKE, args![self.id, self.user_id])
            .await?;
        let Some(held) = held else { return Ok(None) };
        // The payload: the token's type hint (RFC 7009), a space, the token.
        let payload = match (&held.refresh_token, &held.access_token) {
            (Some(token), _) => Some(format!("refresh_token {token}")),
            (None, Some(token)) => Some(format!("access_token {token}")),
            (None, None) => None,
        };
        if let Some(payload) = payload {
            push_in(tx, self.revoke, &payload).await?;
        }
        Ok(Some(held.account))
    }
}

#[derive(Clone)]
pub struct ConnectedAccounts {
    db: Database,
}

impl ConnectedAccounts {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Connects (or reconnects) the account to the person: its tokens and
    /// scopes replaced, active again. `None` when it is connected to
    /// another person (then nothing changes).
    pub async fn connect(&self, c: Connection) -> Result<Option<String>, StoreError> {
        const CONNECT: &str = "INSERT INTO connected_accounts
               (id, user_id, provider, issuer, subject, email, name, scopes, access_token,
                access_expires_at, refresh_token, signs_in, connected_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
             ON CONFLICT (issuer, subject) DO UPDATE SET
               email = COALESCE(excluded.email, connected_accounts.email),
               name = COALESCE(excluded.name, connected_accounts.name),
               scopes = excluded.scopes,
               access_token = excluded.access_token,
               access_expires_at = excluded.access_expires_at,
               refresh_token = COALESCE(excluded.refresh_token, connected_accounts.refresh_token),
               signs_in = connected_accounts.signs_in OR excluded.signs_in,
               needs_reauth = FALSE,
               refreshing_until = NULL,
               refresh_failures = 0
             WHERE connected_accounts.user_id = excluded.user_id
             RETURNING id";
        let id = uuid::Uuid::new_v4().to_string();
        self.db
            .write_returning_one(
                CONNECT,
                args![
                    id,
                    c.user_id,
                    c.provider,
                    c.issuer,
                    c.subject,
                    c.email,
                    c.name,
                    c.scopes,
                    c.access_token,
                    c.access_expires_at,
                    c.refresh_token,
                    c.signs_in,
                    c.now
                ],
            )
            .await
    }

    /// The person's accounts, the one they sign in with first.
    pub async fn of_user(&self, user_id: &UserId) -> Result<Vec<Account>, StoreError> {
        const OF_USER: &str = concat!(
            "SELECT ",
            account_columns!(),
            " FROM connected_accounts WHERE user_id = $1 ORDER BY signs_in DESC, connected_at, id"
        );
        self.db.read(OF_USER, args![user_id]).await
    }

    /// The person's accounts with their tokens, the one they sign in with
    /// first.
    pub async fn held_of_user(&self, user_id: &UserId) -> Result<Vec<Held>, StoreError> {
        const OF_USER: &str = concat!(
            "SELECT ",
            held_columns!(),
            " FROM connected_accounts WHERE user_id = $1 ORDER BY signs_in DESC, connected_at, id"
        );
        self.db.read(OF_USER, args![user_id]).await
    }

    /// Every account, or those of the people with this email (the
    /// operator's listing).
    pub async fn all(&self, user_id: Option<&UserId>) -> Result<Vec<Account>, StoreError> {
        const ALL: &str = concat!(
            "SELECT ",
            account_columns!(),
            " FROM connected_accounts WHERE CAST($1 AS TEXT) IS NULL OR user_id = $1
             ORDER BY user_id, connected_at, id"
        );
        self.db.read(ALL, args![user_id]).await
    }

    /// One account with its tokens.
    pub async fn held(&self, id: &str) -> Result<Option<Held>, StoreError> {
        const HELD: &str = concat!(
            "SELECT ",
            held_columns!(),
            " FROM connected_accounts WHERE id = $1"
        );
        self.db.read_optional(HELD, args![id]).await
    }

    /// Disconnects the person's account `id` (the revocation of its token
    /// written down as an outbox call of kind `revoke`).
    pub async fn disconnect(
        &self,
        id: &str,
        user_id: Option<&UserId>,
        revoke: &'static str,
    ) -> Result<Option<Account>, StoreError> {
        let work = Disconnect {
            id: id.to_string(),
            user_id: user_id.cloned(),
            revoke,
        };
        self.db.transaction(work).await
    }

    /// Takes the lease to refresh the account until `lease_until`, if no
    /// one holds it (or backs off) and its access token expires by
    /// `stale_at`: the sealed refresh token then.
    pub async fn lease_refresh(
        &self,
        id: &str,
        now: i64,
        lease_until: i64,
        stale_at: i64,
    ) -> Result<Option<String>, StoreError> {
        const LEASE: &str = "UPDATE connected_accounts SET refreshing_until = $2
             WHERE id = $1 AND needs_reauth = FALSE AND refresh_token IS NOT NULL
               AND (refreshing_until IS NULL OR refreshing_until <= $3)
               AND (access_expires_at IS NULL OR access_expires_at <= $4)
             RETURNING refresh_token";
        self.db
            .write_returning_one(LEASE, args![id, lease_until, now, stale_at])
            .await
    }

    /// Stores a refresh's tokens (a rotated refresh token with them, in
    /// the same statement) and gives the lease back.
    pub async fn refreshed(
        &self,
        id: &str,
        access_token: String,
        access_expires_at: i64,
        refresh_token: Option<String>,
        scopes: Option<String>,
    ) -> Result<(), StoreError> {
        const REFRESHED: &str = "UPDATE connected_accounts SET access_token = $2,
               access_expires_at = $3, refresh_token = COALESCE($4, refresh_token),
               scopes = COALESCE($5, scopes), refreshing_until = NULL, refresh_failures = 0
             WHERE id = $1";
        self.db
            .write(
                REFRESHED,
                args![id, access_token, access_expires_at, refresh_token, scopes],
            )
            .await?;
        Ok(())
    }

    /// The provider refused the refresh token for good: the account needs
    /// the person to connect it again; its tokens are dropped.
    pub async fn refused(&self, id: &str) -> Result<(), StoreError> {
        const REFUSED: &str =
            "UPDATE connected_accounts SET needs_reauth = TRUE, access_token = NULL,
               access_expires_at = NULL, refresh_token = NULL, refreshing_until = NULL
             WHERE id = $1";
        self.db.write(REFUSED, args![id]).await?;
        Ok(())
    }

    /// The provider could not be reached: nobody refreshes it again before
    /// `retry_at`.
    pub async fn failed(&self, id: &str, retry_at: i64) -> Result<(), StoreError> {
        const FAILED: &str = "UPDATE connected_accounts SET refreshing_until = $2,
               refresh_failures = refresh_failures + 1 WHERE id = $1";
        self.db.write(FAILED, args![id, retry_at]).await?;
        Ok(())
    }

    /// The provider says the account's tokens were revoked there: it needs
    /// to be connected again. How many accounts that was.
    pub async fn revoked_at_provider(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<u64, StoreError> {
        const REVOKED: &str =
            "UPDATE connected_accounts SET needs_reauth = TRUE, access_token = NULL,
               access_expires_at = NULL, refresh_token = NULL, refreshing_until = NULL
             WHERE issuer = $1 AND subject = $2";
        self.db.write(REVOKED, args![issuer, subject]).await
    }

    /// How many accounts need to be connected again.
    pub async fn needing_reauth(&self) -> Result<i64, StoreError> {
        const COUNT: &str = "SELECT COUNT(*) FROM connected_accounts WHERE needs_reauth = TRUE";
        self.db.read_one(COUNT, args![]).await
    }
}
