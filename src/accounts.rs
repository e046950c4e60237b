//! Accounts: the people who can hold a session, whatever way they sign in.
//! Sign-in methods keep their own credentials beside an account (the
//! password sign-in its hash); the account itself is only the person.

use rusqlite::{Connection, OptionalExtension, params};
use sqlx::PgPool;

use crate::store::database::{Database, on_pool};
use crate::store::writer::WriteError;
use crate::unix_now;

/// The user object of the API (`{"id", "email", "name", "avatar_url", "created_at"}`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct User {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub avatar_url: Option<String>,
    /// RFC 3339.
    pub created_at: String,
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

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

impl From<WriteError> for AccountError {
    fn from(e: WriteError) -> Self {
        Self::Internal(e.into())
    }
}

/// A `users` row.
#[derive(sqlx::FromRow)]
pub struct UserRow {
    id: String,
    email: String,
    name: Option<String>,
    avatar_url: Option<String>,
    created_at: i64,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        User {
            id: row.id,
            email: row.email,
            name: row.name,
            avatar_url: row.avatar_url,
            created_at: rfc3339(row.created_at),
        }
    }
}

/// The columns of [`UserRow`], for queries that select a user (a macro,
/// so queries stay `&'static str` through `concat!`).
macro_rules! user_columns {
    () => {
        "id, email, name, avatar_url, created_at"
    };
}
pub(crate) use user_columns;

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

fn clean_name(name: Option<&str>) -> Result<Option<&str>, AccountError> {
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

#[derive(Clone)]
pub struct Accounts {
    db: Database,
}

/// A checked new account, ready to insert.
struct NewAccount {
    id: String,
    email: String,
    name: Option<String>,
    created_at: i64,
}

impl NewAccount {
    fn check(email: &str, name: Option<&str>) -> Result<Self, AccountError> {
        let email =
            normalize_email(email).ok_or_else(|| AccountError::InvalidEmail(email.to_string()))?;
        Ok(Self {
            id: uuid::Uuid::new_v4().to_string(),
            email,
            name: clean_name(name)?.map(String::from),
            created_at: unix_now() as i64,
        })
    }

    /// Inserts it (on the writer); `false` when the email is taken.
    fn insert(&self, conn: &Connection) -> rusqlite::Result<bool> {
        let inserted = conn.execute(
            "INSERT INTO users (id, email, name, avatar_url, created_at)
             VALUES (?1, ?2, ?3, NULL, ?4) ON CONFLICT (email) DO NOTHING",
            params![self.id, self.email, self.name, self.created_at],
        )?;
        Ok(inserted == 1)
    }

    /// [`insert`](Self::insert) on PostgreSQL.
    async fn insert_pg(&self, conn: &mut sqlx::PgConnection) -> sqlx::Result<bool> {
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, avatar_url, created_at)
             VALUES ($1, $2, $3, NULL, $4) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&self.id)
        .bind(&self.email)
        .bind(&self.name)
        .bind(self.created_at)
        .execute(conn)
        .await?;
        Ok(inserted.rows_affected() == 1)
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

/// A sign-in method's credentials, written with the account they belong
/// to: `insert` takes the new account's id as `$1` and `value` as `$2`
/// (in that order: SQLite numbers `$n` parameters as they first appear).
pub struct WithAccount {
    pub insert: &'static str,
    pub value: String,
}

impl Accounts {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Creates an account.
    pub async fn create(&self, email: &str, name: Option<&str>) -> Result<User, AccountError> {
        self.create_with(email, name, None).await
    }

    /// Creates an account and, in the same write, what `with` adds for it
    /// (a sign-in method's credentials), given the new account's id.
    pub async fn create_with(
        &self,
        email: &str,
        name: Option<&str>,
        with: Option<WithAccount>,
    ) -> Result<User, AccountError> {
        let account = NewAccount::check(email, name)?;
        let created = match &self.db {
            Database::Sqlite { writer, .. } => {
                writer
                    .write(move |c| {
                        if !account.insert(c)? {
                            return Ok(None);
                        }
                        if let Some(with) = with {
                            c.execute(with.insert, params![account.id, with.value])?;
                        }
                        Ok(Some(account))
                    })
                    .await?
            }
            Database::Postgres(pool) => {
                let mut tx = pool.begin().await?;
                if !account.insert_pg(&mut tx).await? {
                    return Err(AccountError::Exists);
                }
                if let Some(with) = with {
                    sqlx::query(with.insert)
                        .bind(&account.id)
                        .bind(with.value)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Some(account)
            }
        };
        created.map(NewAccount::user).ok_or(AccountError::Exists)
    }

    pub async fn find_by_email(&self, email: &str) -> anyhow::Result<Option<User>> {
        let Some(email) = normalize_email(email) else {
            return Ok(None);
        };
        const BY_EMAIL: &str = concat!("SELECT ", user_columns!(), " FROM users WHERE email = $1");
        let row: Option<UserRow> = on_pool!(&self.db, |pool| sqlx::query_as(BY_EMAIL)
            .bind(email)
            .fetch_optional(pool)
            .await?);
        Ok(row.map(User::from))
    }

    pub async fn list(&self) -> anyhow::Result<Vec<User>> {
        const LIST: &str = concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, email"
        );
        let rows: Vec<UserRow> = on_pool!(&self.db, |pool| sqlx::query_as(LIST)
            .fetch_all(pool)
            .await?);
        Ok(rows.into_iter().map(User::from).collect())
    }

    /// The account linked to the provider's `(issuer, subject)`: created
    /// at the first sign-in, its email, name and picture refreshed at each.
    /// An existing account with the same email is linked only when the
    /// provider says the email is verified (else it would hand that account
    /// to whoever claims its address).
    pub async fn federated(&self, person: &FederatedPerson) -> Result<User, AccountError> {
        let account = NewAccount::check(&person.email, person.name.as_deref())?;
        let avatar = person
            .avatar_url
            .clone()
            .filter(|a| a.len() <= 2048 && a.starts_with("https://"));
        let person = person.clone();
        let writer = match &self.db {
            Database::Sqlite { writer, .. } => writer,
            Database::Postgres(pool) => return federated_pg(pool, account, person, avatar).await,
        };
        writer
            .write(move |c| -> rusqlite::Result<Result<User, AccountError>> {
                let linked: Option<String> = c
                    .query_row(
                        "SELECT user_id FROM identities WHERE issuer = ?1 AND subject = ?2",
                        params![person.issuer, person.subject],
                        |r| r.get(0),
                    )
                    .optional()?;
                let user_id = match linked {
                    Some(id) => id,
                    None => {
                        let existing: Option<String> = c
                            .query_row(
                                "SELECT id FROM users WHERE email = ?1",
                                [&account.email],
                                |r| r.get(0),
                            )
                            .optional()?;
                        let id = match existing {
                            Some(_) if !person.email_verified => {
                                return Ok(Err(AccountError::Exists));
                            }
                            Some(id) => id,
                            None => {
                                account.insert(c)?;
                                account.id.clone()
                            }
                        };
                        c.execute(
                            "INSERT INTO identities (issuer, subject, user_id) VALUES (?1, ?2, ?3)",
                            params![person.issuer, person.subject, id],
                        )?;
                        id
                    }
                };
                let updated = c.execute(
                    "UPDATE users SET email = ?1, name = COALESCE(?2, name), avatar_url = ?3 WHERE id = ?4
                     AND NOT EXISTS (SELECT 1 FROM users other WHERE other.email = ?1 AND other.id <> ?4)",
                    params![account.email, account.name, avatar, user_id],
                )?;
                if updated == 0 {
                    // Another account holds this email now: refuse rather than merge.
                    return Ok(Err(AccountError::Exists));
                }
                let user = c.query_row(
                    concat!("SELECT ", user_columns!(), " FROM users WHERE id = ?1"),
                    [&user_id],
                    |r| {
                        Ok(User {
                            id: r.get(0)?,
                            email: r.get(1)?,
                            name: r.get(2)?,
                            avatar_url: r.get(3)?,
                            created_at: rfc3339(r.get(4)?),
                        })
                    },
                )?;
                Ok(Ok(user))
            })
            .await?
    }

    /// Deletes the user (its sessions, tokens and codes go with it).
    pub async fn delete(&self, id: &str) -> anyhow::Result<bool> {
        let id = id.to_string();
        let deleted = match &self.db {
            Database::Sqlite { writer, .. } => {
                writer
                    .write(move |c| c.execute("DELETE FROM users WHERE id = ?1", [id]))
                    .await? as u64
            }
            Database::Postgres(pool) => sqlx::query("DELETE FROM users WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected(),
        };
        Ok(deleted > 0)
    }
}

/// [`Accounts::federated`] on PostgreSQL, in one transaction: the first
/// sign-in of a person on two replicas at once links one account (the
/// loser's insert conflicts and the transaction is retried once).
async fn federated_pg(
    pool: &PgPool,
    account: NewAccount,
    person: FederatedPerson,
    avatar: Option<String>,
) -> Result<User, AccountError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match federated_pg_once(pool, &account, &person, avatar.as_deref()).await {
            Err(AccountError::Internal(e))
                if attempt == 1
                    && e.downcast_ref::<sqlx::Error>()
                        .and_then(|e| e.as_database_error())
                        .is_some_and(|d| d.is_unique_violation()) => {}
            other => return other,
        }
    }
}

async fn federated_pg_once(
    pool: &PgPool,
    account: &NewAccount,
    person: &FederatedPerson,
    avatar: Option<&str>,
) -> Result<User, AccountError> {
    let mut tx = pool.begin().await?;
    let linked: Option<String> =
        sqlx::query_scalar("SELECT user_id FROM identities WHERE issuer = $1 AND subject = $2")
            .bind(&person.issuer)
            .bind(&person.subject)
            .fetch_optional(&mut *tx)
            .await?;
    let user_id = match linked {
        Some(id) => id,
        None => {
            let existing: Option<String> =
                sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
                    .bind(&account.email)
                    .fetch_optional(&mut *tx)
                    .await?;
            let id = match existing {
                Some(_) if !person.email_verified => return Err(AccountError::Exists),
                Some(id) => id,
                None => {
                    account.insert_pg(&mut tx).await?;
                    account.id.clone()
                }
            };
            sqlx::query("INSERT INTO identities (issuer, subject, user_id) VALUES ($1, $2, $3)")
                .bind(&person.issuer)
                .bind(&person.subject)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
            id
        }
    };
    let user: Option<UserRow> = sqlx::query_as(concat!(
        "UPDATE users SET email = $1, name = COALESCE($2, name), avatar_url = $3 WHERE id = $4
         AND NOT EXISTS (SELECT 1 FROM users other WHERE other.email = $1 AND other.id <> $4)
         RETURNING ",
        user_columns!()
    ))
    .bind(&account.email)
    .bind(&account.name)
    .bind(avatar)
    .bind(&user_id)
    .fetch_optional(&mut *tx)
    .await?;
    // None: another account holds this email now; refuse rather than merge.
    let user = user.ok_or(AccountError::Exists)?;
    tx.commit().await?;
    Ok(User::from(user))
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
