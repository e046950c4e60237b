//! Accounts of the embedded provider: create, authenticate, list, remove.

use sqlx::SqlitePool;

use super::passwords::{Busy, MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, Passwords};
use crate::identity::{User, rfc3339};
use crate::unix_now;

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("{0:?} is not an email address")]
    InvalidEmail(String),
    #[error("the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    InvalidPassword,
    #[error("the name must be at most 200 characters")]
    InvalidName,
    #[error("an account with this email already exists")]
    Exists,
    /// Too many passwords are being hashed right now.
    #[error(transparent)]
    Busy(#[from] Busy),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AccountError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.into())
    }
}

/// A `users` row without the password hash.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
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

#[derive(sqlx::FromRow)]
struct Credentials {
    #[sqlx(flatten)]
    user: UserRow,
    password_hash: String,
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

#[derive(Clone)]
pub struct Accounts {
    pool: SqlitePool,
    passwords: Passwords,
}

impl Accounts {
    pub fn new(pool: SqlitePool, passwords: Passwords) -> Self {
        Self { pool, passwords }
    }

    pub async fn create(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
    ) -> Result<User, AccountError> {
        let email =
            normalize_email(email).ok_or_else(|| AccountError::InvalidEmail(email.to_string()))?;
        let chars = password.chars().count();
        if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&chars) {
            return Err(AccountError::InvalidPassword);
        }
        let name = name.map(str::trim).filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.chars().count() > 200 || n.chars().any(char::is_control)) {
            return Err(AccountError::InvalidName);
        }
        let hash = self.passwords.hash(password.to_string()).await??;
        let id = uuid::Uuid::new_v4().to_string();
        let created_at = unix_now() as i64;
        let inserted = sqlx::query(
            "INSERT INTO users (id, email, name, avatar_url, password_hash, created_at)
             VALUES (?, ?, ?, NULL, ?, ?) ON CONFLICT (email) DO NOTHING",
        )
        .bind(&id)
        .bind(&email)
        .bind(name)
        .bind(&hash)
        .bind(created_at)
        .execute(&self.pool)
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

    /// The user if the password is right; `None` for a wrong password and
    /// for an unknown email alike, in the same time.
    pub async fn authenticate(
        &self,
        email: &str,
        password: &str,
    ) -> Result<Option<User>, AccountError> {
        if password.len() > MAX_PASSWORD_LEN * 4 {
            return Ok(None);
        }
        let email = normalize_email(email).unwrap_or_default();
        let row: Option<Credentials> = sqlx::query_as(
            "SELECT id, email, name, avatar_url, created_at, password_hash FROM users WHERE email = ?",
        )
        .bind(&email)
        .fetch_optional(&self.pool)
        .await?;
        let (user, hash) = match row {
            Some(c) => (Some(User::from(c.user)), Some(c.password_hash)),
            None => (None, None),
        };
        let ok = self.passwords.verify(password.to_string(), hash).await?;
        Ok(user.filter(|_| ok))
    }

    pub async fn get(&self, id: &str) -> anyhow::Result<Option<User>> {
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, name, avatar_url, created_at FROM users WHERE id = ?",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(User::from))
    }

    pub async fn find_by_email(&self, email: &str) -> anyhow::Result<Option<User>> {
        let Some(email) = normalize_email(email) else {
            return Ok(None);
        };
        let row: Option<UserRow> = sqlx::query_as(
            "SELECT id, email, name, avatar_url, created_at FROM users WHERE email = ?",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(User::from))
    }

    pub async fn list(&self) -> anyhow::Result<Vec<User>> {
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT id, email, name, avatar_url, created_at FROM users ORDER BY created_at, email",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(User::from).collect())
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
