//! Passkeys (`passkeys`) and the WebAuthn ceremonies under way
//! (`webauthn_ceremonies`). A credential id is the table's key, so it can
//! belong to one account only; a ceremony is taken by the one answer it
//! gets.

use super::database::Database;
use super::ids::UserId;
use super::sql::{Exec, StoreError, args};

/// One passkey as kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPasskey {
    /// base64url.
    pub credential_id: String,
    pub user_id: UserId,
    pub name: String,
    /// The verifier's credential (public key, sign counter, backup flags), JSON.
    pub credential: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

type PasskeyRow = (String, UserId, String, String, i64, Option<i64>);

impl From<PasskeyRow> for StoredPasskey {
    fn from(row: PasskeyRow) -> Self {
        let (credential_id, user_id, name, credential, created_at, last_used_at) = row;
        Self {
            credential_id,
            user_id,
            name,
            credential,
            created_at,
            last_used_at,
        }
    }
}

macro_rules! passkey_columns {
    () => {
        "credential_id, user_id, name, credential, created_at, last_used_at"
    };
}

impl StoredPasskey {
    /// Inserts it; `false` when the credential id is registered already.
    pub(crate) async fn insert<E: Exec>(&self, tx: &mut E) -> Result<bool, StoreError> {
        const INSERT: &str = concat!(
            "INSERT INTO passkeys (",
            passkey_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING"
        );
        let inserted = tx
            .execute(
                INSERT,
                args![
                    &self.credential_id,
                    &self.user_id,
                    &self.name,
                    &self.credential,
                    self.created_at,
                    self.last_used_at
                ],
            )
            .await?;
        Ok(inserted == 1)
    }
}

/// What a ceremony is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A signed-in person adds a passkey.
    Register,
    /// Signing in with a passkey.
    SignIn,
    /// Creating an account with a passkey.
    SignUp,
}

impl Purpose {
    fn as_str(self) -> &'static str {
        match self {
            Self::Register => "register",
            Self::SignIn => "signin",
            Self::SignUp => "signup",
        }
    }
}

/// A ceremony's server half, as taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ceremony {
    /// The user it was begun for, or the flow it belongs to.
    pub binding: String,
    /// The verifier's state, JSON.
    pub state: String,
    pub expires_at: i64,
}

#[derive(Clone)]
pub struct Passkeys {
    db: Database,
}

impl Passkeys {
    pub fn new(db: Database) -> Self {
        Self { db }
    }

    /// Adds a passkey to its account; `false` when the credential id is
    /// registered already (to this account or another).
    pub async fn add(&self, passkey: &StoredPasskey) -> Result<bool, StoreError> {
        struct Add(StoredPasskey);
        impl super::sql::Work for Add {
            type Output = bool;
            async fn run<E: Exec>(self, tx: &mut E) -> Result<bool, StoreError> {
                self.0.insert(tx).await
            }
        }
        self.db.transaction(Add(passkey.clone())).await
    }

    /// The account's passkeys, oldest first.
    pub async fn of_user(&self, user_id: &str) -> Result<Vec<StoredPasskey>, StoreError> {
        const OF_USER: &str = concat!(
            "SELECT ",
            passkey_columns!(),
            " FROM passkeys WHERE user_id = $1 ORDER BY created_at, credential_id"
        );
        let rows: Vec<PasskeyRow> = self.db.read(OF_USER, args![user_id]).await?;
        Ok(rows.into_iter().map(StoredPasskey::from).collect())
    }

    /// The passkey with this credential id, whoever it belongs to.
    pub async fn by_credential(
        &self,
        credential_id: &str,
    ) -> Result<Option<StoredPasskey>, StoreError> {
        const BY_ID: &str = concat!(
            "SELECT ",
            passkey_columns!(),
            " FROM passkeys WHERE credential_id = $1"
        );
        let row: Option<PasskeyRow> = self.db.read_optional(BY_ID, args![credential_id]).await?;
        Ok(row.map(StoredPasskey::from))
    }

    /// Records a sign-in with the passkey: its new counter and flags.
    /// Compare-and-set on the credential as it was read, so of two
    /// sign-ins with the same counter (a clone, or a race across
    /// replicas) only one is accepted.
    pub async fn used(
        &self,
        credential_id: &str,
        was: &str,
        now_credential: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        const USED: &str = "UPDATE passkeys SET credential = $1, last_used_at = $2
             WHERE credential_id = $3 AND credential = $4";
        Ok(self
            .db
            .write(USED, args![now_credential, now, credential_id, was])
            .await?
            == 1)
    }

    /// Renames one of the account's passkeys; `false` when it has none by that id.
    pub async fn rename(
        &self,
        user_id: &str,
        credential_id: &str,
        name: &str,
    ) -> Result<bool, StoreError> {
        const RENAME: &str =
            "UPDATE passkeys SET name = $1 WHERE credential_id = $2 AND user_id = $3";
        Ok(self
            .db
            .write(RENAME, args![name, credential_id, user_id])
            .await?
            == 1)
    }

    /// Removes one of the account's passkeys; `false` when it has none by that id.
    pub async fn remove(&self, user_id: &str, credential_id: &str) -> Result<bool, StoreError> {
        const REMOVE: &str = "DELETE FROM passkeys WHERE credential_id = $1 AND user_id = $2";
        Ok(self.db.write(REMOVE, args![credential_id, user_id]).await? == 1)
    }

    /// Keeps a ceremony's state until `expires_at` under its id's hash.
    pub async fn begin(
        &self,
        id_hash: String,
        purpose: Purpose,
        binding: &str,
        state: String,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        const BEGIN: &str =
            "INSERT INTO webauthn_ceremonies (id_hash, purpose, binding, state, expires_at)
             VALUES ($1, $2, $3, $4, $5)";
        self.db
            .write(
                BEGIN,
                args![id_hash, purpose.as_str(), binding, state, expires_at],
            )
            .await?;
        Ok(())
    }

    /// Takes the ceremony (it is gone afterwards, answered or not): `None`
    /// when there is none of this purpose under that id.
    pub async fn take(
        &self,
        id_hash: String,
        purpose: Purpose,
    ) -> Result<Option<Ceremony>, StoreError> {
        const TAKE: &str = "DELETE FROM webauthn_ceremonies WHERE id_hash = $1 AND purpose = $2
             RETURNING binding, state, expires_at";
        let row: Option<(String, String, i64)> = self
            .db
            .write_returning_one(TAKE, args![id_hash, purpose.as_str()])
            .await?;
        Ok(row.map(|(binding, state, expires_at)| Ceremony {
            binding,
            state,
            expires_at,
        }))
    }

    /// Deletes ceremonies expired before `before`.
    pub async fn purge(&self, before: i64) -> Result<u64, StoreError> {
        const PURGE: &str = "DELETE FROM webauthn_ceremonies WHERE id_hash IN
               (SELECT id_hash FROM webauthn_ceremonies WHERE expires_at < $1 LIMIT 1000)";
        self.db.purge(PURGE, before).await
    }
}
