//! Accounts and the identities that sign them in: `users` (the person),
//! `password_credentials` (the embedded provider's hashes), `identities`
//! (an external provider's `(issuer, subject)` linked to an account).

use super::database::Database;
pub use super::ids::UserId;
use super::passkeys::StoredPasskey;
use super::sql::{Exec, FromRow, Row, RowExt, StoreError, Work, args};
use crate::unix_now;

/// The user object of the API (`{"id", "email", "name", "avatar_url", "created_at"}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
}

/// The columns a [`User`] is read from, for statements that select one
/// (a macro, so statements stay `&'static str` through `concat!`).
macro_rules! user_columns {
    () => {
        "id, email, name, avatar_url, created_at"
    };
}
pub(crate) use user_columns;

impl FromRow for User {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(User {
            id: row.get(0)?,
            email: row.get(1)?,
            name: row.get(2)?,
            avatar_url: row.get(3)?,
            created_at: rfc3339(row.get(4)?),
        })
    }
}

/// The user `user_id` names, inside a transaction.
pub(crate) async fn user_in<E: Exec>(
    tx: &mut E,
    user_id: &str,
) -> Result<Option<User>, StoreError> {
    const BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
    tx.fetch_optional(BY_ID, args![user_id]).await
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0:?} is not an email address")]
    InvalidEmail(String),
    #[error("the name must be at most 200 characters")]
    InvalidName,
    #[error("an account with this email already exists")]
    Exists,
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for AccountError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

/// RFC 3339 for a Unix time.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Trimmed and lower-cased; `None` when it does not look like an address.
pub fn normalize_email(email: &str) -> Option<String> {
    let email = email.trim().to_lowercase();
    let (local, domain) = email.split_once('@')?;
    let ok = (3..=254).contains(&email.len())
        && !local.is_empty()
        && !domain.is_empty()
        && !domain.contains('@')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && email
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\\\"".contains(c));
    ok.then_some(email)
}

/// A person's name: trimmed, empty as none, at most 200 characters, no
/// control characters.
pub fn clean_name(name: Option<&str>) -> Result<Option<&str>, AccountError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    if name.is_some_and(|n| n.chars().count() > 200 || n.chars().any(char::is_control)) {
        return Err(AccountError::InvalidName);
    }
    Ok(name)
}

/// A person as another identity provider vouches for them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedPerson {
    pub issuer: String,
    pub subject: String,
    pub email: String,
    pub email_verified: bool,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
}

/// A checked new account, ready to insert.
#[derive(Clone)]
struct NewAccount {
    id: UserId,
    email: String,
    name: Option<String>,
    created_at: i64,
}

impl NewAccount {
    fn check(email: &str, name: Option<&str>) -> Result<Self, AccountError> {
        let email =
            normalize_email(email).ok_or_else(|| AccountError::InvalidEmail(email.to_string()))?;
        Ok(Self {
            id: UserId::random(),
            email,
            name: clean_name(name)?.map(String::from),
            created_at: unix_now() as i64,
        })
    }

    /// Inserts it; `false` when the email is taken.
    async fn insert<E: Exec>(&self, tx: &mut E) -> Result<bool, StoreError> {
        const INSERT: &str = "INSERT INTO users (id, email, name, avatar_url, created_at)
             VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (email) DO NOTHING";
        let inserted = tx
            .execute(
                INSERT,
                args![&self.id, &self.email, self.name.clone(), self.created_at],
            )
            .await?;
        Ok(inserted == 1)
    }

    fn user(self) -> User {
        User {
            id: self.id,
            email: self.email,
            name: self.name,
            avatar_url: None,
            created_at: rfc3339(self.created_at),
        }
    }
}

/// Creates an account, with a password hash when it signs in with one,
/// or its first passkey when it signs in with that.
struct Create {
    account: NewAccount,
    password_hash: Option<String>,
    passkey: Option<StoredPasskey>,
}

impl Work for Create {
    /// `None` when the email is taken.
    type Output = Option<User>;

    async fn run<E: Exec>(self, tx: &mut E) -> Result<Option<User>, StoreError> {
        if !self.account.insert(tx).await? {
            return Ok(None);
        }
        if let Some(hash) = self.password_hash {
            const PASSWORD: &str =
                "INSERT INTO password_credentials (user_id, password_hash) VALUES ($1, $2)";
            tx.execute(PASSWORD, args![&self.account.id, hash]).await?;
        }
        if let Some(passkey) = &self.passkey
            && !passkey.insert(tx).await?
        {
            // The credential is another account's: nothing is created.
            return Err(StoreError::Statement("passkey already registered".into()));
        }
        Ok(Some(self.account.user()))
    }
}

/// Links a provider's person to an account (see [`Accounts::federated`]).
#[derive(Clone)]
struct Federate {
    account: NewAccount,
    person: FederatedPerson,
    avatar: Option<String>,
}

impl Work for Federate {
    type Output = Result<User, AccountError>;

    async fn run<E: Exec>(self, tx: &mut E) -> Result<Self::Output, StoreError> {
        let Self {
            account,
            person,
            avatar,
        } = self;
        let linked: Option<UserId> = linked_in(tx, &person.issuer, &person.subject).await?;
        let user_id = match linked {
            Some(id) => id,
            None => {
                const BY_EMAIL: &str = "SELECT id FROM users WHERE email = $1";
                let existing: Option<UserId> =
                    tx.fetch_optional(BY_EMAIL, args![&account.email]).await?;
                let id = match existing {
                    // Linking would hand that account to whoever claims its address.
                    Some(_) if !person.email_verified => return Ok(Err(AccountError::Exists)),
                    Some(id) => id,
                    None => {
                        account.insert(tx).await?;
                        account.id.clone()
                    }
                };
                const LINK: &str =
                    "INSERT INTO identities (issuer, subject, user_id) VALUES ($1, $2, $3)";
                tx.execute(LINK, args![&person.issuer, &person.subject, &id])
                    .await?;
                id
            }
        };
        const REFRESH: &str = concat!(
            "UPDATE users SET email = $1, name = COALESCE($2, name), avatar_url = $3 WHERE id = $4
             AND NOT EXISTS (SELECT 1 FROM users other WHERE other.email = $1 AND other.id <> $4)
             RETURNING ",
            user_columns!()
        );
        let user: Option<User> = tx
            .fetch_optional(
                REFRESH,
                args![&account.email, account.name.clone(), avatar, &user_id],
            )
            .await?;
        // None: another account holds this email now; refuse rather than merge.
        Ok(user.ok_or(AccountError::Exists))
    }
}

/// The account linked to a provider's `(issuer, subject)`.
const LINKED: &str = "SELECT user_id FROM identities WHERE issuer = $1 AND subject = $2";

/// [`LINKED`], inside a transaction.
async fn linked_in<E: Exec>(
    tx: &mut E,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserId>, StoreError> {
    tx.fetch_optional(LINKED, args![issuer, subject]).await
}

/// A password sign-in's account and its hash.
pub struct PasswordCredentials {
    pub user: User,
    pub password_hash: String,
}

impl FromRow for PasswordCredentials {
    fn from_row(row: &dyn Row) -> Result<Self, StoreError> {
        Ok(Self {
            user: User::from_row(row)?,
            password_hash: row.get(5)?,
        })
    }
}

#[derive(Clone)]
pub struct Accounts {
    db: Database,
}

impl Accounts {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates an account.
    pub async fn create(&self, email: &str, name: Option<&str>) -> Result<User, AccountError> {
        self.create_with_password(email, name, None).await
    }

    /// Creates an account that signs in with the password `password_hash`
    /// is the hash of (in the same transaction).
    pub async fn create_with_password(
        &self,
        email: &str,
        name: Option<&str>,
        password_hash: Option<String>,
    ) -> Result<User, AccountError> {
        let account = NewAccount::check(email, name)?;
        let work = Create {
            account,
            password_hash,
            passkey: None,
        };
        self.db.transaction(work).await?.ok_or(AccountError::Exists)
    }

    /// Creates an account `id` (the user handle its passkey was made for)
    /// that signs in with `passkey` only, in one transaction.
    pub async fn create_with_passkey(
        &self,
        id: UserId,
        email: &str,
        name: Option<&str>,
        passkey: StoredPasskey,
    ) -> Result<User, AccountError> {
        let account = NewAccount {
            id,
            ..NewAccount::check(email, name)?
        };
        let work = Create {
            account,
            password_hash: None,
            passkey: Some(passkey),
        };
        self.db.transaction(work).await?.ok_or(AccountError::Exists)
    }

    /// The account `id` names.
    pub async fn by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        const BY_ID: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE id = $1");
        self.db.read_optional(BY_ID, args![id]).await
    }

    pub async fn find_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let Some(email) = normalize_email(email) else {
            return Ok(None);
        };
        const BY_EMAIL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
        self.db.read_optional(BY_EMAIL, args![email]).await
    }

    /// The account with this email and its password hash, if it has one.
    pub async fn password_credentials(
        &self,
        email: &str,
    ) -> Result<Option<PasswordCredentials>, StoreError> {
        let Some(email) = normalize_email(email) else {
            return Ok(None);
        };
        const WITH_HASH: &str = concat!(
            "SELECT ",
            user_columns!(),
            ", p.password_hash FROM users
             JOIN password_credentials p ON p.user_id = users.id WHERE email = $1"
        );
        self.db.read_optional(WITH_HASH, args![email]).await
    }

    pub async fn list(&self) -> Result<Vec<User>, StoreError> {
        const LIST: &str = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, email"
        );
        self.db.read(LIST, args![]).await
    }

    /// The account linked to the provider's `(issuer, subject)`: created
    /// at the first sign-in, its email, name and picture refreshed at each.
    /// An existing account with the same email is linked only when the
    /// provider says the email is verified (else it would hand that account
    /// to whoever claims its address). On PostgreSQL the first sign-in of a
    /// person on two replicas at once links one account: the loser's insert
    /// conflicts and its transaction is tried once more.
    pub async fn federated(&self, person: &FederatedPerson) -> Result<User, AccountError> {
        let account = NewAccount::check(&person.email, person.name.as_deref())?;
        let avatar = person
            .avatar_url
            .clone()
            .filter(|a| a.len() <= 2048 && a.starts_with("https://"));
        let work = Federate {
            account,
            person: person.clone(),
            avatar,
        };
        match self.db.transaction(work.clone()).await {
            Err(e) if e.is_unique_violation() => self.db.transaction(work).await?,
            other => other?,
        }
    }

    /// The account linked to the provider's `(issuer, subject)`, if any.
    pub async fn linked(&self, issuer: &str, subject: &str) -> Result<Option<UserId>, StoreError> {
        self.db.read_optional(LINKED, args![issuer, subject]).await
    }

    /// Deletes the user (its sessions, tokens and codes go with it).
    pub async fn delete(&self, id: &UserId) -> Result<bool, StoreError> {
        const DELETE: &str = "DELETE FROM users WHERE id = $1";
        Ok(self.db.write(DELETE, args![id]).await? > 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_or_refused() {
        assert_eq!(
            normalize_email("  Ann@Example.COM "),
            Some("ann@example.com".into())
        );
        for bad in [
            "",
            "ann",
            "@example.com",
            "ann@",
            "a b@example.com",
            "ann@@x",
            "<a>@x.y",
            "a@.x",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad}");
        }
    }
}
