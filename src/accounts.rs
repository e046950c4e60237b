//! Accounts: the people who can hold a session, whatever way they sign in.
//! Sign-in methods keep their own credentials beside an account (the
//! password sign-in its hash); the account itself is only the person.

use sqlx::{SqliteConnection, SqlitePool};

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
    pool: SqlitePool,
}

impl Accounts {
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
    }

    /// Creates an account.
    pub async fn create(&self, email: &str, name: Option<&str>) -> Result<User, AccountError> {
        let mut conn = self.pool.acquire().await?;
        Self::create_in(&mut conn, email, name).await
    }

    /// Creates an account inside the caller's transaction (a sign-in method
    /// storing its credentials with it).
    pub async fn create_in(
        conn: &mut SqliteConnection,
        email: &str,
        name: Option<&str>,
    ) -> Result<User, AccountError> {
        let email =
            normalize_email(email).ok_or_else(|| AccountError::InvalidEmail(email.to_string()))?;
        let name = clean_name(name)?;
        let id = uuid::Uuid::new_v4().to_string();
        let created_at = unix_now() as i64;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, avatar_url, created_at)
             VALUES (?, ?, ?, NULL, ?) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&id)
        .bind(&email)
        .bind(name)
        .bind(created_at)
        .execute(&mut *conn)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(AccountError::Exists);
        }
        Ok(User {
            id,
            email,
            name: name.map(String::from),
            avatar_url: None,
            created_at: rfc3339(created_at),
        })
    }

    pub async fn find_by_email(&self, email: &str) -> anyhow::Result<Option<User>> {
        let Some(email) = normalize_email(email) else {
            return Ok(None);
        };
        let row: Option<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE email = ?"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(User::from))
    }

    pub async fn list(&self) -> anyhow::Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users ORDER BY created_at, email"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(User::from).collect())
    }

    /// The account linked to the provider's `(issuer, subject)`: created
    /// at the first sign-in, its email, name and picture refreshed at each.
    /// An existing account with the same email is linked only when the
    /// provider says the email is verified (else it would hand that account
    /// to whoever claims its address).
    pub async fn federated(&self, person: &FederatedPerson) -> Result<User, AccountError> {
        let email = normalize_email(&person.email)
            .ok_or_else(|| AccountError::InvalidEmail(person.email.clone()))?;
        let name = clean_name(person.name.as_deref()).unwrap_or(None);
        let avatar = person
            .avatar_url
            .as_deref()
            .filter(|a| a.len() <= 2048 && a.starts_with("https://"));
        let mut tx = self.pool.begin().await?;
        let linked: Option<String> =
            sqlx::query_scalar("SELECT user_id FROM identities WHERE issuer = ? AND subject = ?")
                .bind(&person.issuer)
                .bind(&person.subject)
                .fetch_optional(&mut *tx)
                .await?;
        let user_id = match linked {
            Some(id) => id,
            None => {
                let existing: Option<String> =
                    sqlx::query_scalar("SELECT id FROM users WHERE email = ?")
                        .bind(&email)
                        .fetch_optional(&mut *tx)
                        .await?;
                let id = match existing {
                    Some(_) if !person.email_verified => return Err(AccountError::Exists),
                    Some(id) => id,
                    None => Self::create_in(&mut tx, &email, name).await?.id,
                };
                sqlx::query("INSERT INTO identities (issuer, subject, user_id) VALUES (?, ?, ?)")
                    .bind(&person.issuer)
                    .bind(&person.subject)
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                id
            }
        };
        let updated = sqlx::query(
            "UPDATE users SET email = ?, name = COALESCE(?, name), avatar_url = ? WHERE id = ?
             AND NOT EXISTS (SELECT 1 FROM users other WHERE other.email = ? AND other.id <> ?)",
        )
        .bind(&email)
        .bind(name)
        .bind(avatar)
        .bind(&user_id)
        .bind(&email)
        .bind(&user_id)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            // Another account holds this email now: refuse rather than merge.
            return Err(AccountError::Exists);
        }
        let row: UserRow = sqlx::query_as(concat!(
            "SELECT ",
            user_columns!(),
            " FROM users WHERE id = ?"
        ))
        .bind(&user_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(User::from(row))
    }

    /// Deletes the user (its sessions, tokens and codes go with it).
    pub async fn delete(&self, id: &str) -> anyhow::Result<bool> {
        let done = sqlx::query("DELETE FROM users WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
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
