//! `chronos migrate-data`: moves a deployment from its SQLite file to
//! PostgreSQL without signing anyone out. Accounts, passwords and
//! identities, sessions with their refresh state, the revocations whose
//! tokens may still be alive, the outbox's pending calls, what providers
//! told us about our sessions, Supabase sessions, the device-bound
//! sessions' keys and the one-time values
//! still in force are copied in one PostgreSQL transaction (all or
//! nothing), into a database that holds none of these yet. Sign-ins in
//! progress at that moment start again; sessions still on the chain tokens
//! of old versions cannot move (PostgreSQL never had them) and are counted.
//! The servers must be stopped while it runs.

use super::database::Database;
use super::sql::{Exec, FromRow, IntoArgs, PgConn, StoreError, Value, args};
use crate::unix_now;

/// Rows read from the source at a time.
const PAGE: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum MoveError {
    #[error("--from must be a SQLite database (sqlite://PATH)")]
    SourceNotSqlite,
    #[error("--to must be a PostgreSQL database (postgres://...)")]
    TargetNotPostgres,
    #[error("the target database is not empty ({0}); move into a fresh database")]
    TargetNotEmpty(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How many rows of each kind moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Moved {
    pub users: u64,
    pub passwords: u64,
    pub identities: u64,
    pub sessions: u64,
    /// Sessions on legacy chain tokens, left behind (they sign in again).
    pub legacy_sessions: i64,
    pub revocations: u64,
    pub outbox: u64,
    pub provider_sessions: u64,
    pub supabase_sessions: u64,
    /// The refresh tokens Supabase issued for them (their hashes).
    pub supabase_sessions_tokens: u64,
    /// Sessions bound to a device key (DBSC).
    pub device_bindings: u64,
    /// Passkeys, TOTP factors and unused recovery codes.
    pub passkeys: u64,
    pub second_factors: u64,
    pub recovery_codes: u64,
    pub one_time_values: u64,
}

/// Copies every row `select` reads from the source (a page at a time:
/// `$1` is the page size, `$2` the offset, `extra` the rest) into the
/// target with `insert`.
async fn copy<R: FromRow + IntoArgs>(
    from: &Database,
    to: &mut PgConn<'_>,
    select: &'static str,
    extra: &[Value],
    insert: &'static str,
) -> Result<u64, StoreError> {
    let mut copied = 0;
    loop {
        let mut page_args = args![PAGE, copied as i64];
        page_args.extend_from_slice(extra);
        let rows: Vec<R> = from.read(select, page_args).await?;
        let read = rows.len() as i64;
        for row in rows {
            to.execute(insert, row.into_args()).await?;
        }
        copied += read as u64;
        if read < PAGE {
            return Ok(copied);
        }
    }
}

/// Moves what `from` (SQLite) holds into `to` (PostgreSQL, migrated and
/// empty). Revocations older than `window` seconds (the longest access
/// token's life) name only expired tokens and are left behind.
pub async fn move_to_postgres(
    from: &Database,
    to: &Database,
    window: u64,
) -> Result<Moved, MoveError> {
    if from.is_postgres() {
        return Err(MoveError::SourceNotSqlite);
    }
    let Database::Postgres(pool) = to else {
        return Err(MoveError::TargetNotPostgres);
    };
    const HELD: &str = "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM sessions),
            (SELECT COUNT(*) FROM supabase_sessions), (SELECT COUNT(*) FROM revocations),
            (SELECT COUNT(*) FROM outbox)";
    let (users, sessions, supabase, revocations, outbox): (i64, i64, i64, i64, i64) =
        to.read_one(HELD, args![]).await?;
    if users + sessions + supabase + revocations + outbox > 0 {
        return Err(MoveError::TargetNotEmpty(format!(
            "{users} users, {sessions} sessions, {supabase} Supabase sessions, \
             {revocations} revocations, {outbox} pending calls"
        )));
    }
    let now = unix_now() as i64;
    let live = now - window as i64;
    const LEGACY: &str = "SELECT COUNT(*) FROM sessions WHERE refresh_counter IS NULL";
    let mut moved = Moved {
        legacy_sessions: from.read_one(LEGACY, args![]).await?,
        ..Moved::default()
    };
    let mut tx = pool.begin().await.map_err(StoreError::from)?;
    let to = &mut PgConn(&mut tx);
    type UserRow = (String, String, Option<String>, Option<String>, i64);
    moved.users = copy::<UserRow>(
        from,
        to,
        "SELECT id, email, name, avatar_url, created_at FROM users ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO users (id, email, name, avatar_url, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .await?;
    moved.passwords = copy::<(String, String)>(
        from,
        to,
        "SELECT user_id, password_hash FROM password_credentials ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO password_credentials (user_id, password_hash) VALUES ($1, $2)",
    )
    .await?;
    moved.identities = copy::<(String, String, String)>(
        from,
        to,
        "SELECT issuer, subject, user_id FROM identities ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO identities (issuer, subject, user_id) VALUES ($1, $2, $3)",
    )
    .await?;
    type SessionRow = (
        String,
        String,
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<i64>,
        i64,
        i64,
        Option<i64>,
    );
    moved.sessions = copy::<SessionRow>(
        from,
        to,
        "SELECT id, user_id, created_at, last_used_at, user_agent, ip, revoked_at,
                refresh_counter, COALESCE(refresh_issued_at, created_at), rotated_at_ms
         FROM sessions WHERE refresh_counter IS NOT NULL ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO sessions (id, user_id, created_at, last_used_at, user_agent, ip, revoked_at,
                               refresh_counter, refresh_issued_at, rotated_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .await?;
    moved.revocations = copy::<(String, i64, bool)>(
        from,
        to,
        "SELECT session_id, revoked_at, by_operator FROM revocations WHERE revoked_at >= $3
         ORDER BY seq LIMIT $1 OFFSET $2",
        &[live.into()],
        "INSERT INTO revocations (session_id, revoked_at, by_operator) VALUES ($1, $2, $3)",
    )
    .await?;
    moved.outbox = copy::<(String, String, i64, i64, i64)>(
        from,
        to,
        "SELECT kind, payload, attempts, next_attempt_at, created_at FROM outbox
         ORDER BY id LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO outbox (kind, payload, attempts, next_attempt_at, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .await?;
    type ProviderRow = (
        String,
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
        Option<String>,
    );
    moved.provider_sessions = copy::<ProviderRow>(
        from,
        to,
        "SELECT p.session_id, p.issuer, p.subject, p.provider_sid, p.refresh_token, p.created_at,
                p.id_token
         FROM provider_sessions p JOIN sessions s ON s.id = p.session_id
         WHERE s.refresh_counter IS NOT NULL ORDER BY p.rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO provider_sessions (session_id, issuer, subject, provider_sid, refresh_token, created_at, id_token)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .await?;
    type SupabaseRow = (
        String,
        String,
        String,
        i64,
        i64,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    moved.supabase_sessions = copy::<SupabaseRow>(
        from,
        to,
        "SELECT session_id, user_id, user_created_at, created_at, last_used_at, user_agent, ip,
                refresh_hash, tokens, ended_at
         FROM supabase_sessions ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO supabase_sessions (session_id, user_id, user_created_at, created_at,
                last_used_at, user_agent, ip, refresh_hash, tokens, ended_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .await?;
    moved.supabase_sessions_tokens = copy::<(String, String, i64)>(
        from,
        to,
        "SELECT refresh_hash, session_id, issued_at FROM supabase_refresh_tokens
         ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO supabase_refresh_tokens (refresh_hash, session_id, issued_at) VALUES ($1, $2, $3)",
    )
    .await?;
    moved.device_bindings = copy::<(String, String, String, String, i64, i64)>(
        from,
        to,
        "SELECT session_id, algorithm, thumbprint, public_jwk, bound_at, refreshed_at
         FROM dbsc_bindings ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO dbsc_bindings (session_id, algorithm, thumbprint, public_jwk, bound_at, refreshed_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .await?;
    moved.passkeys = copy::<(String, String, String, String, i64, Option<i64>)>(
        from,
        to,
        "SELECT credential_id, user_id, name, credential, created_at, last_used_at
         FROM passkeys ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO passkeys (credential_id, user_id, name, credential, created_at, last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .await?;
    moved.second_factors = copy::<(String, String, Option<i64>, i64, i64)>(
        from,
        to,
        "SELECT user_id, secret, confirmed_at, last_step, created_at
         FROM totp_factors ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO totp_factors (user_id, secret, confirmed_at, last_step, created_at)
         VALUES ($1, $2, $3, $4, $5)",
    )
    .await?;
    moved.recovery_codes = copy::<(String, String, i64)>(
        from,
        to,
        "SELECT code_hash, user_id, created_at FROM recovery_codes ORDER BY rowid LIMIT $1 OFFSET $2",
        &[],
        "INSERT INTO recovery_codes (code_hash, user_id, created_at) VALUES ($1, $2, $3)",
    )
    .await?;
    // One-time values still in force: (their value, when they expire).
    const ONE_TIME: [(&str, &str); 3] = [
        (
            "SELECT nonce, expires_at FROM used_form_tokens WHERE expires_at >= $3
             ORDER BY rowid LIMIT $1 OFFSET $2",
            "INSERT INTO used_form_tokens (nonce, expires_at) VALUES ($1, $2)",
        ),
        (
            "SELECT jti_hash, expires_at FROM seen_logout_tokens WHERE expires_at >= $3
             ORDER BY rowid LIMIT $1 OFFSET $2",
            "INSERT INTO seen_logout_tokens (jti_hash, expires_at) VALUES ($1, $2)",
        ),
        (
            "SELECT jti_hash, expires_at FROM used_dbsc_challenges WHERE expires_at >= $3
             ORDER BY rowid LIMIT $1 OFFSET $2",
            "INSERT INTO used_dbsc_challenges (jti_hash, expires_at) VALUES ($1, $2)",
        ),
    ];
    for (select, insert) in ONE_TIME {
        moved.one_time_values +=
            copy::<(String, i64)>(from, to, select, &[now.into()], insert).await?;
    }
    tx.commit().await.map_err(StoreError::from)?;
    Ok(moved)
}
