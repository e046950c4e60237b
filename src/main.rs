//! The `chronos` binary: `chronos` (or `chronos serve`) runs the server.

use std::process::ExitCode;

/// mimalloc: a request allocates a few dozen small blocks; glibc malloc
/// showed up at ~12% of a logout's CPU time in profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

use chronos::app::Application;
use chronos::config::{Settings, variables};
use chronos::{cli, server, telemetry};

#[derive(Parser)]
#[command(
    name = "chronos",
    version,
    about = "Chronos auth: a backend-for-frontend session server",
    long_about = "Chronos auth signs people in through an identity provider, keeps the \
provider's tokens in hardened httpOnly cookies, and ends sessions at logout.\n\n\
With no arguments and no environment it serves on 127.0.0.1:8000 in development mode.",
    after_help = env_help()
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Manage accounts of the embedded identity provider.
    #[command(subcommand)]
    User(UserCommand),
    /// Inspect sessions.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Connected provider accounts (PROVIDER_TOKENS=keep).
    #[command(subcommand)]
    Account(AccountCommand),
    /// Bring the database's schema up to date, then exit (for deployments
    /// that start servers with DATABASE_MIGRATE=off).
    Migrate,
    /// Move a deployment from its SQLite file to an empty PostgreSQL
    /// database without signing anyone out (stop the servers first).
    MigrateData {
        /// The SQLite database: sqlite://PATH (DATA_DIR/chronos.db by default).
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: postgres://user[:password]@host[:port]/database.
        #[arg(long)]
        to: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user; the password is read from stdin (prompted on a terminal).
    Add {
        email: String,
        #[arg(long)]
        name: Option<String>,
    },
    /// List users.
    List,
    /// Delete a user and end all of their sessions.
    Remove { email: String },
    /// End every session of a user at once (incident response); a running
    /// server refuses their tokens within a second.
    Logout { email: String },
    /// Turn off a user's two-step sign-in (TOTP and recovery codes), for
    /// someone who lost their authenticator; with MFA_REQUIRED they enrol
    /// again at their next sign-in.
    MfaReset { email: String },
}

#[derive(Subcommand)]
enum AccountCommand {
    /// List connected accounts, of one user or of everyone.
    List { email: Option<String> },
    /// Disconnect an account; a running server revokes its token at the
    /// provider.
    Remove { id: String },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// List active sessions, of one user or of everyone.
    List { email: Option<String> },
}

fn env_help() -> String {
    let mut out = String::from("Configuration (environment variables):\n");
    for var in variables() {
        out.push_str(&format!(
            "  {:<32} {}\n  {:<32} default: {}\n",
            var.name, var.help, "", var.default
        ));
    }
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::User(command) => admin(|settings| async move {
            match command {
                UserCommand::Add { email, name } => {
                    cli::user_add(&settings, &email, name.as_deref()).await
                }
                UserCommand::List => cli::user_list(&settings).await,
                UserCommand::Remove { email } => cli::user_remove(&settings, &email).await,
                UserCommand::Logout { email } => cli::user_logout(&settings, &email).await,
                UserCommand::MfaReset { email } => cli::user_mfa_reset(&settings, &email).await,
            }
        }),
        Command::Migrate => admin(|settings| async move { cli::migrate(&settings).await }),
        Command::MigrateData { from, to } => {
            admin(|settings| async move { cli::migrate_data(&settings, &from, &to).await })
        }
        Command::Account(command) => admin(|settings| async move {
            match command {
                AccountCommand::List { email } => {
                    cli::account_list(&settings, email.as_deref()).await
                }
                AccountCommand::Remove { id } => cli::account_remove(&settings, &id).await,
            }
        }),
        Command::Session(SessionCommand::List { email }) => {
            admin(|settings| async move { cli::session_list(&settings, email.as_deref()).await })
        }
    }
}

/// Runs an operator command against the configured database.
fn admin<F, Fut>(command: F) -> ExitCode
where
    F: FnOnce(Settings) -> Fut,
    Fut: std::future::Future<Output = Result<(), cli::CliError>>,
{
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => return fail(format!("configuration error: {e}")),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match runtime.block_on(command(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chronos: {e}");
            ExitCode::from(1)
        }
    }
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("chronos: {message}");
    ExitCode::from(2)
}

fn serve() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => return fail(format!("configuration error: {e}")),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    let _log_flush = telemetry::init(&settings.telemetry);
    runtime.block_on(async {
        let app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => return fail(e),
        };
        tracing::info!(address = %app.local_addr(), "listening");
        if let Some(metrics) = app.metrics_addr() {
            tracing::info!(address = %metrics, "metrics listening");
        }
        match app.run_until(server::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("server error: {e}")),
        }
    })
}
