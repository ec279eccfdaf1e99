use std::time::Duration;

use scribe_domain::config::Config;
use scribe_domain::db::DatabaseConnection;
use scribe_domain::db::{self, DatabaseSettings};

use crate::Failure;

pub fn settings(config: &Config) -> DatabaseSettings {
    DatabaseSettings {
        url: config
            .database_url
            .as_ref()
            .map(|url| url.expose().clone())
            .unwrap_or_else(|| db::default_sqlite_url(&config.data_dir)),
        max_connections: config.database.max_connections,
        retry_for: Duration::from_secs(config.database.connect_timeout_seconds),
    }
}

pub async fn connect(config: &Config) -> Result<DatabaseConnection, Failure> {
    db::connect(&settings(config))
        .await
        .map_err(|err| Failure::Runtime(err.to_string()))
}

pub async fn connect_and_migrate(config: &Config) -> Result<DatabaseConnection, Failure> {
    let connection = connect(config).await?;
    let applied = db::migrate(&connection)
        .await
        .map_err(|err| Failure::Runtime(err.to_string()))?;
    if !applied.is_empty() {
        tracing::info!(migrations = ?applied, "applied database migrations");
    }
    Ok(connection)
}
