//! Operator commands (`chronos user ...`, `chronos session ...`). They act
//! on the same database as a running server, safely (SQLite WAL, busy
//! timeout); a server picks up the sessions they end within a second.

use std::io::{BufRead, IsTerminal};

use crate::app::{Identity, StartupError, Stores};
use crate::authority::{EndSessions, SessionAuthority};
use crate::config::Settings;
use crate::signin::password::RegisterError;
use crate::store::accounts::{AccountError, User};
use crate::store::sql::StoreError;

/// A failed command: one line for the operator.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Startup(#[from] StartupError),
    #[error("{0}")]
    Usage(String),
    #[error("{0:#}")]
    Internal(#[from] anyhow::Error),
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        Self::Internal(e.into())
    }
}

impl From<crate::authority::AuthError> for CliError {
    fn from(e: crate::authority::AuthError) -> Self {
        Self::Internal(anyhow::anyhow!("{e}"))
    }
}

async fn open(settings: &Settings) -> Result<Identity, CliError> {
    let stores = Stores::open_for_operator(settings).await?;
    Ok(Identity::build(
        settings,
        &stores,
        &settings.public_url_for(settings.server.bind),
    )?)
}

/// The password: prompted without echo on a terminal, else the first line
/// of standard input (so `echo "$PW" | chronos user add ...` works).
fn read_password() -> Result<String, CliError> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("Password: ")
            .map_err(|e| CliError::Usage(format!("cannot read the password: {e}")))?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::Usage(format!("cannot read the password from stdin: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    if password.is_empty() {
        return Err(CliError::Usage(
            "no password given (type it at the prompt or pipe it to stdin)".into(),
        ));
    }
    Ok(password)
}

pub async fn user_add(
    settings: &Settings,
    email: &str,
    name: Option<&str>,
) -> Result<(), CliError> {
    let password = read_password()?;
    let identity = open(settings).await?;
    match identity.passwords.register(email, &password, name).await {
        Ok(user) => {
            println!("created {} ({})", user.email, user.id);
            Ok(())
        }
        Err(RegisterError::Account(AccountError::Internal(e))) => Err(CliError::Internal(e)),
        Err(e) => Err(CliError::Usage(format!("cannot create the user: {e}"))),
    }
}

pub async fn user_list(settings: &Settings) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let users = identity.accounts.list().await?;
    println!("{:<36}  {:<32}  {:<24}  created", "id", "email", "name");
    for user in users {
        println!(
            "{:<36}  {:<32}  {:<24}  {}",
            user.id,
            user.email,
            user.name.as_deref().unwrap_or("-"),
            user.created_at
        );
    }
    Ok(())
}

async fn find_user(identity: &Identity, email: &str) -> Result<User, CliError> {
    identity
        .accounts
        .find_by_email(email)
        .await?
        .ok_or_else(|| CliError::Usage(format!("no user with email {email:?}")))
}

pub async fn user_remove(settings: &Settings, email: &str) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let user = find_user(&identity, email).await?;
    // Their provider accounts' tokens are revoked at the provider (a
    // running server delivers the revocations).
    for account in identity.connected.all(Some(&user.id)).await? {
        identity
            .connected
            .disconnect(&account.id, Some(&user.id), crate::vault::REVOKE)
            .await?;
    }
    identity
        .authority
        .end_sessions(EndSessions::AllOf {
            user_id: user.id.clone(),
        })
        .await?;
    identity.accounts.delete(&user.id).await?;
    println!("removed {} and ended their sessions", user.email);
    Ok(())
}

pub async fn user_logout(settings: &Settings, email: &str) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let user = find_user(&identity, email).await?;
    let ended = identity
        .authority
        .end_sessions(EndSessions::AllOf {
            user_id: user.id.clone(),
        })
        .await?;
    println!("ended {} session(s) of {}", ended.len(), user.email);
    Ok(())
}

/// `chronos user mfa-reset`: the user's TOTP factor, recovery codes and
/// failed attempts are gone; passkeys and sessions are left as they are.
pub async fn user_mfa_reset(settings: &Settings, email: &str) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let user = find_user(&identity, email).await?;
    if identity.second_factors.remove(&user.id).await? {
        println!("two-step sign-in is off for {}", user.email);
    } else {
        println!("{} had no two-step sign-in; nothing changed", user.email);
    }
    Ok(())
}

/// `chronos migrate`: brings the database up to date (for deployments that
/// run with `DATABASE_MIGRATE=off`).
pub async fn migrate(settings: &Settings) -> Result<(), CliError> {
    crate::secrets::ensure_dir(&settings.server.data_dir)
        .map_err(|e| CliError::Usage(format!("DATA_DIR: {e}")))?;
    let applied = crate::store::database::Database::migrate(settings)
        .await
        .map_err(|e| CliError::Internal(anyhow::anyhow!("cannot migrate the database: {e}")))?;
    println!("database up to date ({applied} migration(s) applied)");
    Ok(())
}

/// `chronos account list [EMAIL]`: connected provider accounts.
pub async fn account_list(settings: &Settings, email: Option<&str>) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let user = match email {
        Some(email) => Some(find_user(&identity, email).await?.id),
        None => None,
    };
    let accounts = identity.connected.all(user.as_ref()).await?;
    println!(
        "{:<36}  {:<36}  {:<8}  {:<32}  {:<6}  {:<8}  connected",
        "account", "user", "provider", "email", "signs", "reauth"
    );
    for a in accounts {
        println!(
            "{:<36}  {:<36}  {:<8}  {:<32}  {:<6}  {:<8}  {}",
            a.id,
            a.user_id,
            a.provider,
            a.email.as_deref().unwrap_or("-"),
            if a.signs_in { "yes" } else { "no" },
            if a.needs_reauth { "needed" } else { "no" },
            crate::store::accounts::rfc3339(a.connected_at)
        );
    }
    Ok(())
}

/// `chronos account remove ID`: disconnects the account; its token is
/// revoked at the provider by a running server.
pub async fn account_remove(settings: &Settings, id: &str) -> Result<(), CliError> {
    let identity = open(settings).await?;
    match identity
        .connected
        .disconnect(id, None, crate::vault::REVOKE)
        .await?
    {
        Some(account) => {
            println!(
                "disconnected {} ({}); its token will be revoked at the provider",
                account.id,
                account.email.as_deref().unwrap_or("no email")
            );
            Ok(())
        }
        None => Err(CliError::Usage(format!("no connected account {id:?}"))),
    }
}

/// `chronos migrate-data --from sqlite://PATH --to postgres://...`: moves a
/// deployment to PostgreSQL without signing anyone out (the servers
/// stopped meanwhile).
pub async fn migrate_data(settings: &Settings, from: &str, to: &str) -> Result<(), CliError> {
    use crate::store::database::Database;
    use crate::store::migrate_data::move_to_postgres;
    let open = |url: &str, flag: &str| {
        let url = url.to_string();
        let flag = flag.to_string();
        async move {
            Database::open_url(&url, &settings.storage)
                .await
                .map_err(|e| CliError::Usage(format!("{flag}: cannot open the database: {e}")))
        }
    };
    if !from.starts_with("sqlite:") {
        return Err(CliError::Usage(
            "--from must be a SQLite database (sqlite://PATH)".into(),
        ));
    }
    if !crate::store::postgres::is_postgres(to) {
        return Err(CliError::Usage(
            "--to must be a PostgreSQL database (postgres://...)".into(),
        ));
    }
    let source = open(from, "--from").await?;
    let target = open(to, "--to").await?;
    let moved = move_to_postgres(&source, &target, settings.sessions.access_token_ttl)
        .await
        .map_err(|e| CliError::Usage(e.to_string()))?;
    println!(
        "moved {} users ({} with a password, {} linked identities), {} sessions, \
         {} live revocations, {} pending provider calls, {} provider sessions, \
         {} Supabase sessions, {} device-bound sessions, {} passkeys, {} TOTP factors, \
         {} recovery codes, {} one-time values",
        moved.users,
        moved.passwords,
        moved.identities,
        moved.sessions,
        moved.revocations,
        moved.outbox,
        moved.provider_sessions,
        moved.supabase_sessions,
        moved.device_bindings,
        moved.passkeys,
        moved.second_factors,
        moved.recovery_codes,
        moved.one_time_values
    );
    if moved.legacy_sessions > 0 {
        println!(
            "left behind {} sessions still on chain refresh tokens (from before self-describing \
             tokens): those people sign in again",
            moved.legacy_sessions
        );
    }
    source.close().await;
    target.close().await;
    Ok(())
}

pub async fn session_list(settings: &Settings, email: Option<&str>) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let sessions = match email {
        Some(email) => {
            let user = find_user(&identity, email).await?;
            identity
                .authority
                .list_sessions(&user.id)
                .await?
                .into_iter()
                .map(|s| (user.email.clone(), s))
                .collect()
        }
        // One query for everyone, not one per account.
        None => identity.authority.list_all_sessions().await?,
    };
    println!(
        "{:<36}  {:<28}  {:<20}  {:<20}  {:<18}  user agent",
        "session", "user", "created", "last used", "ip"
    );
    for (email, s) in sessions {
        println!(
            "{:<36}  {:<28}  {:<20}  {:<20}  {:<18}  {}",
            s.id,
            email,
            s.created_at,
            s.last_used_at,
            s.ip.as_deref().unwrap_or("-"),
            s.user_agent.as_deref().unwrap_or("-")
        );
    }
    Ok(())
}
