//! Connecting to SQLite (the embedded default) or PostgreSQL, and running the
//! migrations of the `scribe-migrations` crate on either.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use scribe_migrations::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::SqliteSynchronous;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
pub use sea_orm::DatabaseConnection;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DbBackend, DbErr, SqlxSqliteConnector, Statement,
    TransactionTrait,
};

/// Arbitrary but fixed: every Scribe replica takes this PostgreSQL advisory lock
/// around migrations, so replicas starting together migrate one after another.
const MIGRATION_LOCK_KEY: i64 = 0x5c41_be00_0000_0001;
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);
const MAX_ATTEMPT_TIME: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    pub url: String,
    pub max_connections: u32,
    /// How long start-up keeps retrying an unreachable database before giving up.
    pub retry_for: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    #[error("unsupported database URL {0}: expected sqlite:… or postgres(ql)://…")]
    UnsupportedUrl(String),
    #[error(
        "could not connect to the database at {url} within {waited_secs} s (last error: {cause})"
    )]
    Unreachable {
        url: String,
        waited_secs: u64,
        cause: String,
    },
    #[error("could not prepare the SQLite directory {path}: {cause}")]
    SqliteDirectory { path: String, cause: String },
    #[error("database migration failed: {0}")]
    Migration(String),
}

/// The SQLite database of the embedded default, a file in the data directory.
pub fn default_sqlite_url(data_dir: &Path) -> String {
    format!("sqlite://{}/scribe.db", data_dir.display())
}

/// Hides the password in `scheme://user:password@host/...` for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((credentials, host)) => match credentials.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:[redacted]@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn backend_of(url: &str) -> Result<DbBackend, DatabaseError> {
    if url.starts_with("sqlite:") {
        Ok(DbBackend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(DbBackend::Postgres)
    } else {
        Err(DatabaseError::UnsupportedUrl(redact_url(url)))
    }
}

/// Connects, retrying with exponential backoff for `settings.retry_for`, because
/// in container deployments the database often comes up after Scribe.
pub async fn connect(settings: &DatabaseSettings) -> Result<DatabaseConnection, DatabaseError> {
    let backend = backend_of(&settings.url)?;
    if backend == DbBackend::Sqlite {
        ensure_sqlite_directory(&settings.url)?;
    }
    let started = Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        // Each attempt gets at most the time left, so a short retry budget is honoured.
        let remaining = settings.retry_for.saturating_sub(started.elapsed());
        let attempt_timeout = remaining.clamp(Duration::from_millis(500), MAX_ATTEMPT_TIME);
        match connect_once(backend, settings, attempt_timeout).await {
            Ok(db) => return Ok(db),
            Err(err) if started.elapsed() + delay <= settings.retry_for => {
                tracing::warn!(
                    url = %redact_url(&settings.url),
                    error = %err,
                    retry_in_ms = delay.as_millis() as u64,
                    "database not reachable yet"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
            Err(err) => {
                return Err(DatabaseError::Unreachable {
                    url: redact_url(&settings.url),
                    waited_secs: started.elapsed().as_secs(),
                    cause: err.to_string(),
                })
            }
        }
    }
}

async fn connect_once(
    backend: DbBackend,
    settings: &DatabaseSettings,
    attempt_timeout: Duration,
) -> Result<DatabaseConnection, DbErr> {
    match backend {
        DbBackend::Sqlite => {
            let options = SqliteConnectOptions::from_str(&settings.url)
                .map_err(|err| DbErr::Custom(err.to_string()))?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(SQLITE_BUSY_TIMEOUT);
            let pool = SqlitePoolOptions::new()
                .max_connections(settings.max_connections.max(1))
                .acquire_timeout(SQLITE_BUSY_TIMEOUT)
                .connect_with(options)
                .await
                .map_err(|err| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(err)))?;
            Ok(SqlxSqliteConnector::from_sqlx_sqlite_pool(pool))
        }
        _ => {
            let mut options = ConnectOptions::new(settings.url.clone());
            options
                .max_connections(settings.max_connections.max(1))
                .connect_timeout(attempt_timeout)
                .acquire_timeout(attempt_timeout)
                .sqlx_logging(false);
            Database::connect(options).await
        }
    }
}

fn ensure_sqlite_directory(url: &str) -> Result<(), DatabaseError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Ok(());
    }
    match Path::new(path).parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|err| DatabaseError::SqliteDirectory {
                path: parent.display().to_string(),
                cause: err.to_string(),
            })
        }
        _ => Ok(()),
    }
}

/// Applies pending migrations. On PostgreSQL all of them run in one transaction
/// that holds an advisory lock, so concurrent replicas serialise here and the
/// later ones find nothing left to do. A database migrated by a newer Scribe
/// (with migrations this build doesn't know) is refused.
pub async fn migrate(db: &DatabaseConnection) -> Result<Vec<String>, DatabaseError> {
    let failed = |err: DbErr| DatabaseError::Migration(err.to_string());
    match db.get_database_backend() {
        DbBackend::Postgres => {
            // Everything, including creating the bookkeeping table, happens under
            // the lock: concurrent `CREATE TABLE IF NOT EXISTS` race in PostgreSQL.
            let txn = db.begin().await.map_err(failed)?;
            txn.execute(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK_KEY.into()],
            ))
            .await
            .map_err(failed)?;
            let pending = pending_migrations(&txn).await.map_err(failed)?;
            if !pending.is_empty() {
                Migrator::up(&txn, None).await.map_err(failed)?;
            }
            txn.commit().await.map_err(failed)?;
            Ok(pending)
        }
        _ => {
            let pending = pending_migrations(db).await.map_err(failed)?;
            if !pending.is_empty() {
                Migrator::up(db, None).await.map_err(failed)?;
            }
            Ok(pending)
        }
    }
}

async fn pending_migrations(db: &impl ConnectionTrait) -> Result<Vec<String>, DbErr> {
    Ok(migration_status(db)
        .await?
        .into_iter()
        .filter(|migration| !migration.applied)
        .map(|migration| migration.name)
        .collect())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    pub name: String,
    pub applied: bool,
}

pub async fn migration_status(db: &impl ConnectionTrait) -> Result<Vec<MigrationState>, DbErr> {
    Migrator::install(db).await?;
    Ok(Migrator::get_migration_with_status(db)
        .await?
        .into_iter()
        .map(|migration| MigrationState {
            name: migration.name().to_owned(),
            applied: migration.status() == sea_orm_migration::MigrationStatus::Applied,
        })
        .collect())
}

/// Readiness: the database answers a trivial query.
pub async fn ping(db: &DatabaseConnection) -> bool {
    db.ping().await.is_ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact_url("postgres://scribe:hunter2@db:5432/scribe"),
            "postgres://scribe:[redacted]@db:5432/scribe"
        );
        assert_eq!(
            redact_url("sqlite://data/scribe.db"),
            "sqlite://data/scribe.db"
        );
    }

    #[tokio::test]
    async fn sqlite_file_is_created_and_migrated_twice_without_harm() {
        let dir = tempfile::tempdir().unwrap();
        let settings = DatabaseSettings {
            url: default_sqlite_url(&dir.path().join("nested")),
            max_connections: 2,
            retry_for: Duration::from_secs(1),
        };
        let db = connect(&settings).await.unwrap();
        assert!(!migrate(&db).await.unwrap().is_empty());
        assert!(migrate(&db).await.unwrap().is_empty());
        assert!(migration_status(&db)
            .await
            .unwrap()
            .iter()
            .all(|m| m.applied));
        assert!(ping(&db).await);
    }

    #[tokio::test]
    async fn unreachable_database_gives_up_with_a_clear_error() {
        let settings = DatabaseSettings {
            url: "postgres://nobody:secret@127.0.0.1:1/none".to_owned(),
            max_connections: 1,
            retry_for: Duration::from_millis(500),
        };
        let err = connect(&settings).await.err().unwrap().to_string();
        assert!(err.contains("could not connect"), "{err}");
        assert!(!err.contains("secret"), "{err}");
    }
}
