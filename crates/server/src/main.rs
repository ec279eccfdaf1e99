//! `scribe`: the server binary and its admin commands.

mod app;
mod cli;
mod database;
mod logging;
mod probes;
mod serve;
mod spa;
mod tasks;
mod tls;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use scribe_domain::config::{self, LoadedConfig};

use crate::cli::{Cli, Command};

/// Why a command failed, which decides the exit code: 2 for configuration
/// (the admin must fix the file), 1 for everything at run time.
#[derive(Debug)]
pub enum Failure {
    Config(String),
    Runtime(String),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let result = match command {
        Command::Openapi { check, write, path } => openapi(check, write, &path),
        command => match load_config(&cli.config) {
            Ok(loaded) => run_with_config(command, loaded).await,
            Err(failure) => Err(failure),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(message)) => {
            eprintln!("scribe: configuration error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            tracing::error!("{message}");
            eprintln!("scribe: {message}");
            ExitCode::from(1)
        }
    }
}

fn load_config(path: &Option<std::path::PathBuf>) -> Result<LoadedConfig, Failure> {
    config::load(path.as_deref()).map_err(|err| Failure::Config(err.to_string()))
}

async fn run_with_config(command: Command, loaded: LoadedConfig) -> Result<(), Failure> {
    if let Command::CheckConfig = command {
        return check_config(&loaded);
    }
    logging::init(&loaded.config.logging).map_err(Failure::Config)?;
    match &loaded.source {
        config::ConfigSource::File(path) => {
            tracing::info!(path = %path.display(), "configuration loaded")
        }
        config::ConfigSource::Embedded => {
            tracing::info!("no configuration file found: using the embedded default")
        }
    }
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    match command {
        Command::Migrate { status } => migrate(&loaded.config, status).await,
        Command::RevalidateUsers => revalidate_users(loaded.config).await,
        _ => serve::run(loaded).await,
    }
}

fn check_config(loaded: &LoadedConfig) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    let source = match &loaded.source {
        config::ConfigSource::File(path) => path.display().to_string(),
        config::ConfigSource::Embedded => "embedded default".to_owned(),
    };
    let mut report = format!("# configuration is valid (source: {source})\n");
    for warning in &loaded.warnings {
        report.push_str(&format!("# warning: {warning}\n"));
    }
    report.push_str(&loaded.config.to_redacted_yaml());
    stdout
        .write_all(report.as_bytes())
        .map_err(|err| Failure::Runtime(format!("cannot write to stdout: {err}")))
}

async fn migrate(config: &config::Config, status_only: bool) -> Result<(), Failure> {
    let connection = database::connect(config).await?;
    let runtime = |err: String| Failure::Runtime(err);
    if !status_only {
        let applied = scribe_domain::db::migrate(&connection)
            .await
            .map_err(|err| runtime(err.to_string()))?;
        tracing::info!(count = applied.len(), "migrations applied");
    }
    let states = scribe_domain::db::migration_status(&connection)
        .await
        .map_err(|err| runtime(format!("cannot read migration status: {err}")))?;
    let mut report = String::new();
    for state in states {
        let status = if state.applied { "applied" } else { "pending" };
        report.push_str(&format!("{status}\t{}\n", state.name));
    }
    std::io::stdout()
        .lock()
        .write_all(report.as_bytes())
        .map_err(|err| runtime(format!("cannot write to stdout: {err}")))
}

async fn revalidate_users(config: config::Config) -> Result<(), Failure> {
    let config = std::sync::Arc::new(config);
    let secret_key = serve::load_secret_key(&config)?;
    let db = database::connect_and_migrate(&config).await?;
    // On PostgreSQL the running servers hear of the changed tokens at once
    // (their session caches forget them); on SQLite the caches' time to live
    // bounds the delay.
    let (events, _listener) =
        scribe_domain::events::notifier_for(&db, &config.effective_database_url()).await;
    let domain = scribe_domain::Domain::try_new(db, config, secret_key)
        .map_err(|err| Failure::Runtime(format!("cannot open the blob storage: {err}")))?
        .with_events(events);
    let report = scribe_domain::accounts::revalidation::revalidate_external_users(&domain)
        .await
        .map_err(|err| Failure::Runtime(format!("revalidation failed: {err}")))?;
    let summary = format!(
        "checked {} LDAP/OIDC users: {} lost access ({} tokens deleted), {} lost the admin role \
         ({} tokens lost admin privileges), {} became admins, {} unanswered (unchanged)\n",
        report.checked,
        report.revoked_users,
        report.deleted_tokens,
        report.demoted_users,
        report.stripped_tokens,
        report.promoted_users,
        report.unknown,
    );
    std::io::stdout()
        .lock()
        .write_all(summary.as_bytes())
        .map_err(|err| Failure::Runtime(format!("cannot write to stdout: {err}")))
}

fn openapi(check: bool, write: bool, path: &std::path::Path) -> Result<(), Failure> {
    let generated = app::openapi_json(&app::openapi_document());
    if check {
        let committed = std::fs::read_to_string(path)
            .map_err(|err| Failure::Runtime(format!("cannot read {}: {err}", path.display())))?;
        if committed != generated {
            return Err(Failure::Runtime(format!(
                "{} is out of date with the code; regenerate it with `scribe openapi --write`",
                path.display()
            )));
        }
        return Ok(());
    }
    if write {
        return std::fs::write(path, generated)
            .map_err(|err| Failure::Runtime(format!("cannot write {}: {err}", path.display())));
    }
    std::io::stdout()
        .lock()
        .write_all(generated.as_bytes())
        .map_err(|err| Failure::Runtime(format!("cannot write to stdout: {err}")))
}
