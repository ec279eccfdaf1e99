//! `scribe serve`: start-up, the HTTP server, and graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::HttpServer;
use scribe_domain::config::{Config, LoadedConfig};
use scribe_domain::secret_key::{KeyOrigin, SecretKey};
use scribe_domain::{accounts, events, mail, tokens, Domain};
use scribe_http::{AppState, BuildInfo};

use crate::tasks::{self, BackgroundTasks};
use crate::{app, database, tls, Failure};

pub const BUILD: BuildInfo = BuildInfo {
    version: env!("CARGO_PKG_VERSION"),
    git_hash: env!("SCRIBE_GIT_HASH"),
};

pub async fn run(loaded: LoadedConfig) -> Result<(), Failure> {
    let config = Arc::new(loaded.config);
    let secret_key = load_secret_key(&config)?;
    let db = database::connect_and_migrate(&config).await?;
    let (events, event_listener) =
        events::notifier_for(&db, &config.effective_database_url()).await;
    let domain = Domain::try_new(db.clone(), config.clone(), secret_key)
        .map_err(|err| Failure::Runtime(format!("cannot open the blob storage: {err}")))?
        .with_events(events);
    let state = AppState {
        domain,
        build: BUILD,
    };
    prepare_accounts(&state.domain).await?;
    let mut tasks = start_background_tasks(&state.domain);
    tasks.spawn("events", move |cancel| event_listener.run(cancel));

    let body_limit = config.web_server.max_request_body_bytes;
    let client_path = config.client_path.clone();
    let shutdown_timeout = config.web_server.shutdown_timeout_seconds;
    let server =
        HttpServer::new(move || app::build(state.clone(), body_limit, client_path.clone()))
            .workers(worker_count(&config))
            .shutdown_timeout(shutdown_timeout)
            .disable_signals();
    let address = (config.web_server.address, config.web_server.port);
    let cannot_listen = |err: std::io::Error| {
        Failure::Runtime(format!(
            "cannot listen on {}:{}: {err}",
            config.web_server.address, config.web_server.port
        ))
    };
    let server = match &config.web_server.ssl {
        Some(ssl) => {
            let tls = tls::server_config(ssl).map_err(Failure::Config)?;
            server
                .bind_rustls_0_23(address, tls)
                .map_err(cannot_listen)?
        }
        None => server.bind(address).map_err(cannot_listen)?,
    };
    let addresses: Vec<SocketAddr> = server.addrs();
    let server = server.run();
    for address in &addresses {
        tracing::info!(address = %address, "listening");
    }
    tokio::spawn(stop_on_signal(server.handle()));

    let result = server.await;
    tracing::info!("HTTP server stopped; stopping background tasks");
    // In-flight requests had their time; tasks get a short grace so the whole
    // shutdown stays within the 30 s orchestrators usually allow.
    tasks.shutdown(TASK_SHUTDOWN_GRACE).await;
    if let Err(err) = db.close().await {
        tracing::warn!(error = %err, "closing the database pool failed");
    }
    result.map_err(|err| Failure::Runtime(format!("HTTP server failed: {err}")))?;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// Syncs the users provisioned in the config file and makes sure someone can
/// administer the instance: without any admin, one is created and its one-time
/// password logged once.
async fn prepare_accounts(domain: &Domain) -> Result<(), Failure> {
    let failed = |err: scribe_domain::DomainError| {
        Failure::Runtime(format!("preparing accounts failed: {err}"))
    };
    accounts::provision_users(domain).await.map_err(failed)?;
    if let Some(admin) = accounts::ensure_initial_admin(domain)
        .await
        .map_err(failed)?
    {
        tracing::warn!(
            email = %admin.email,
            password = %admin.password,
            "created the initial admin account; this password is shown only once: log in and change it"
        );
    }
    Ok(())
}

fn start_background_tasks(domain: &Domain) -> BackgroundTasks {
    let mut tasks = BackgroundTasks::new();
    let (db, smtp, queue) = (
        domain.db.clone(),
        domain.config.smtp_server.clone(),
        domain.mail.clone(),
    );
    tasks.spawn("mail", move |cancel| {
        mail::run_worker(db, smtp, queue, cancel)
    });
    let reaper_domain = domain.clone();
    tasks.spawn("reaper", move |cancel| {
        scribe_domain::runners::run_reaper(reaper_domain, cancel)
    });
    let cleanup_domain = domain.clone();
    tasks.spawn("cleanup", move |cancel| {
        tasks::every("cleanup", CLEANUP_PERIOD, cancel, move || {
            let domain = cleanup_domain.clone();
            async move {
                let purged = tokens::purge_expired(&domain)
                    .await
                    .map_err(|err| err.to_string())?;
                if purged > 0 {
                    tracing::info!(purged, "removed expired tokens and login failures");
                }
                // Uploads cut off by a crash leave incomplete blobs; a day is far
                // longer than any upload takes.
                let orphans = domain
                    .blobs
                    .purge_orphans(ORPHAN_BLOB_AGE)
                    .await
                    .map_err(|err| err.to_string())?;
                if orphans > 0 {
                    tracing::info!(orphans, "removed incomplete uploads");
                }
                // Logs its own count; off unless
                // cleanup.finished_job_retention_in_days is set.
                scribe_domain::jobs::retention::purge_finished_jobs(&domain)
                    .await
                    .map_err(|err| err.to_string())?;
                Ok(())
            }
        })
    });
    let revalidation_domain = domain.clone();
    tasks.spawn("revalidation", move |cancel| async move {
        // A wrong LDAP address or service password shows in the log now
        // rather than at the first login.
        accounts::ldap::check_directories(&revalidation_domain).await;
        tasks::every("revalidation", REVALIDATION_PERIOD, cancel, move || {
            let domain = revalidation_domain.clone();
            async move {
                accounts::revalidation::revalidate_external_users(&domain)
                    .await
                    .map(|_| ())
                    .map_err(|err| err.to_string())
            }
        })
        .await
    });
    tasks
}

/// LDAP and OIDC users are re-checked with their provider this often (and on
/// demand with `scribe revalidate-users`): a session outlives a revocation by
/// at most about its own default lifetime.
const REVALIDATION_PERIOD: Duration = Duration::from_secs(3600);

const ORPHAN_BLOB_AGE: Duration = Duration::from_secs(24 * 3600);
const TASK_SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Housekeeping runs hourly; each part is cheap when there is nothing to do.
const CLEANUP_PERIOD: Duration = Duration::from_secs(3600);

fn worker_count(config: &Config) -> usize {
    config.web_server.worker_count.max(1)
}

pub(crate) fn load_secret_key(config: &Config) -> Result<SecretKey, Failure> {
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
