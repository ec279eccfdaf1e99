//! `scribe serve`: start-up, the HTTP server, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use scribe_domain::config::{Config, LoadedConfig};
use scribe_domain::secret_key::{KeyOrigin, SecretKey};
use scribe_domain::Domain;
use scribe_http::{AppState, BuildInfo};

use crate::tasks::BackgroundTasks;
use crate::{app, database, Failure};

pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    git_hash: env!("SCRIBE_GIT_HASH"),
};

pub async fn run(loaded: LoadedConfig) -> Result<(), Failure> {
    let config = Arc::new(loaded.config);
    let secret_key = load_secret_key(&config)?;
    let db = database::connect_and_migrate(&config).await?;
    let domain = Domain {
        db: db.clone(),
        config: config.clone(),
        secret_key,
    };
    let state = AppState {
        domain,
        build: BUILD,
    };
    let tasks = BackgroundTasks::new();

    let body_limit = config.web_server.max_request_body_bytes;
    let client_path = config.client_path.clone();
    let shutdown_timeout = config.web_server.shutdown_timeout_seconds;
    let server =
        HttpServer::new(move || app::build(state.clone(), body_limit, client_path.clone()))
            .workers(worker_count(&config))
            .shutdown_timeout(shutdown_timeout)
            .disable_signals()
            .bind((config.web_server.address, config.web_server.port))
            .map_err(|err| {
                Failure::Runtime(format!(
                    "cannot listen on {}:{}: {err}",
                    config.web_server.address, config.web_server.port
                ))
            })?;
    let addresses: Vec<SocketAddr> = server.addrs();
    let server = server.run();
    for address in &addresses {
        tracing::info!(address = %address, "listening");
    }
    tokio::spawn(stop_on_signal(server.handle()));

    let result = server.await;
    tracing::info!("HTTP server stopped; stopping background tasks");
    tasks.shutdown(Duration::from_secs(shutdown_timeout)).await;
    if let Err(err) = db.close().await {
        tracing::warn!(error = %err, "closing the database pool failed");
    }
    result.map_err(|err| Failure::Runtime(format!("HTTP server failed: {err}")))?;
    tracing::info!("shut down cleanly");
    Ok(())
}

fn worker_count(config: &Config) -> usize {
    config.web_server.worker_count.max(1)
}

fn load_secret_key(config: &Config) -> Result<SecretKey, Failure> {
    let configured = config
        .security
        .secret_key
        .as_ref()
        .map(|key| key.expose().as_str());
    let (key, origin) = SecretKey::load_or_generate(configured, &config.data_dir)
        .map_err(|err| Failure::Runtime(err.to_string()))?;
    match origin {
        KeyOrigin::Configured => {}
        KeyOrigin::GeneratedNow(path) | KeyOrigin::LoadedFromDataDir(path) => tracing::warn!(
            path = %path.display(),
            "no security.secret_key configured: using a generated key kept in the data directory. \
             Set security.secret_key (64 hex characters) for production; losing this file makes \
             encrypted data and sent links unusable"
        ),
    }
    Ok(key)
}

/// SIGTERM and SIGINT both mean "stop gracefully": stop accepting, let in-flight
/// requests finish (up to the shutdown timeout), then return from `run`.
async fn stop_on_signal(handle: actix_web::dev::ServerHandle) {
    wait_for_signal().await;
    tracing::info!("shutdown signal received; finishing in-flight requests");
    handle.stop(true).await;
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            tracing::error!("cannot install signal handlers; only Ctrl-C will stop the server");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}
