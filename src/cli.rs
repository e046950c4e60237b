//! Operator commands (`chronos user ...`, `chronos session ...`). They act
//! on the same database as a running server, safely (SQLite WAL, busy
//! timeout); a server picks up the sessions they end within a second.

use std::io::{BufRead, IsTerminal};

use crate::app::{Identity, StartupError, open_identity};
use crate::config::Settings;
use crate::identity::embedded::AccountError;
use crate::identity::{EndSessions, IdentityProvider};

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

async fn open(settings: &Settings) -> Result<Identity, CliError> {
    Ok(open_identity(settings, &settings.public_url_for(settings.bind)).await?)
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
    match identity
        .embedded
        .accounts
        .create(email, &password, name)
        .await
    {
        Ok(user) => {
            println!("created {} ({})", user.email, user.id);
            Ok(())
        }
        Err(AccountError::Internal(e)) => Err(CliError::Internal(e)),
        Err(e) => Err(CliError::Usage(format!("cannot create the user: {e}"))),
    }
}

pub async fn user_list(settings: &Settings) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let users = identity.embedded.accounts.list().await?;
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

async fn find_user(identity: &Identity, email: &str) -> Result<crate::identity::User, CliError> {
    identity
        .embedded
        .accounts
        .find_by_email(email)
        .await?
        .ok_or_else(|| CliError::Usage(format!("no user with email {email:?}")))
}

pub async fn user_remove(settings: &Settings, email: &str) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let user = find_user(&identity, email).await?;
    identity.embedded.remove_user(&user.id).await?;
    println!("removed {} and ended their sessions", user.email);
    Ok(())
}

pub async fn user_logout(settings: &Settings, email: &str) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let user = find_user(&identity, email).await?;
    let ended = identity
        .embedded
        .end_sessions(EndSessions::AllOf {
            user_id: user.id.clone(),
        })
        .await
        .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
    println!("ended {} session(s) of {}", ended.len(), user.email);
    Ok(())
}

pub async fn session_list(settings: &Settings, email: Option<&str>) -> Result<(), CliError> {
    let identity = open(settings).await?;
    let users = match email {
        Some(email) => vec![find_user(&identity, email).await?],
        None => identity.embedded.accounts.list().await?,
    };
    println!(
        "{:<36}  {:<28}  {:<20}  {:<20}  {:<18}  user agent",
        "session", "user", "created", "last used", "ip"
    );
    for user in users {
        let sessions = identity
            .embedded
            .list_sessions(&user.id)
            .await
            .map_err(|e| CliError::Internal(anyhow::anyhow!("{e}")))?;
        for s in sessions {
            println!(
                "{:<36}  {:<28}  {:<20}  {:<20}  {:<18}  {}",
                s.id,
                user.email,
                s.created_at,
                s.last_used_at,
                s.ip.as_deref().unwrap_or("-"),
                s.user_agent.as_deref().unwrap_or("-")
            );
        }
    }
    Ok(())
}
