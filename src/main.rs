//! The `chronos` binary: `chronos` (or `chronos serve`) runs the server.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use chronos::app::Application;
use chronos::config::{Settings, VARIABLES};
use chronos::{server, telemetry};

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
}

fn env_help() -> String {
    let mut out = String::from("Configuration (environment variables):\n");
    for var in VARIABLES {
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
    runtime.block_on(async {
        telemetry::init();
        let app = match Application::build(settings).await {
            Ok(app) => app,
            Err(e) => return fail(e),
        };
        tracing::info!(address = %app.local_addr(), "listening");
        match app.run_until(server::shutdown_signal()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(format!("server error: {e}")),
        }
    })
}
