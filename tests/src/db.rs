//! Fresh databases per test: a SQLite file in the test's temp dir, or a PostgreSQL database
//! created on the local server and dropped again (atuin's tests-database, zero2prod's
//! per-test database).

use std::path::Path;
use std::time::Duration;

use sqlx::{Connection, PgConnection, SqliteConnection};

/// Where the tests' PostgreSQL databases are created: a URL of a role allowed to
/// `CREATE DATABASE`. Its path (the database) is only used for the admin connection.
pub const POSTGRES_URL_VAR: &str = "SCRIBE_TEST_POSTGRES_URL";
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// Set to keep PostgreSQL test databases for inspection (their names go to stderr).
pub const KEEP_DB_VAR: &str = "SCRIBE_TEST_KEEP_DB";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database that exists only for one test.
pub struct TestDb {
    backend: Backend,
    url: String,
    _guard: Option<DropDatabase>,
}

impl TestDb {
    /// SQLite: `<dir>/scribe.db` (not created; the server creates it).
    /// PostgreSQL: `CREATE DATABASE scribe_test_<random>`; fails the test, loudly, when the
    /// server can't be reached. The tests never skip a backend.
    pub async fn create(backend: Backend, dir: &Path) -> Self {
        match backend {
            Backend::Sqlite => Self {
                backend,
                url: format!("sqlite://{}", dir.join("scribe.db").display()),
                _guard: None,
            },
            Backend::Postgres => {
                let admin_url = postgres_admin_url();
                let name = format!("scribe_test_{}", hex::encode(rand::random::<[u8; 8]>()));
                let mut conn = connect_postgres_admin(&admin_url).await;
                create_database(&mut conn, &name).await;
                let _ = conn.close().await;
                Self {
                    backend,
                    url: database_url(&admin_url, &name),
                    _guard: Some(DropDatabase { admin_url, name }),
                }
            }
        }
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The URL the server is configured with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The PostgreSQL database's name; `None` for SQLite.
    pub fn postgres_name(&self) -> Option<&str> {
        self._guard.as_ref().map(|guard| guard.name.as_str())
    }

    /// Runs a query returning one integer (e.g. `SELECT COUNT(*) FROM seaql_migrations`).
    pub async fn scalar_i64(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("open {}: {e}", self.url));
                let value = sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = conn.close().await;
                value
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url));
                let value = sqlx::query_scalar::<_, i64>(sql)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = conn.close().await;
                value
            }
        }
    }

    /// Runs a statement (e.g. to age a token in place); returns the rows affected.
    pub async fn execute(&self, sql: &str) -> u64 {
        match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("open {}: {e}", self.url));
                let done = sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = conn.close().await;
                done.rows_affected()
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url));
                let done = sqlx::query(sql)
                    .execute(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("{sql}: {e}"));
                let _ = conn.close().await;
                done.rows_affected()
            }
        }
    }

    /// The names of the user tables, sorted.
    pub async fn table_names(&self) -> Vec<String> {
        let mut names = match self.backend {
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("open {}: {e}", self.url));
                let names = sqlx::query_scalar::<_, String>(
                    "SELECT name FROM sqlite_master WHERE type = 'table' \
                     AND name NOT LIKE 'sqlite_%'",
                )
                .fetch_all(&mut conn)
                .await
                .expect("list SQLite tables");
                let _ = conn.close().await;
                names
            }
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&self.url)
                    .await
                    .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url));
                let names = sqlx::query_scalar::<_, String>(
                    "SELECT table_name::text FROM information_schema.tables \
                     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
                )
                .fetch_all(&mut conn)
                .await
                .expect("list PostgreSQL tables");
                let _ = conn.close().await;
                names
            }
        };
        names.sort();
        names
    }

    /// PostgreSQL only: drops the database under a running server (terminating its
    /// connections), to see how the server copes with losing it.
    pub async fn drop_now(&self) {
        let guard = self
            ._guard
            .as_ref()
            .expect("drop_now is for PostgreSQL databases");
        let mut conn = connect_postgres_admin(&guard.admin_url).await;
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            guard.name
        ))
        .execute(&mut conn)
        .await
        .expect("drop the test database");
        let _ = conn.close().await;
    }
}

/// `$SCRIBE_TEST_POSTGRES_URL`, else [`DEFAULT_POSTGRES_URL`].
pub fn postgres_admin_url() -> String {
    std::env::var(POSTGRES_URL_VAR).unwrap_or_else(|_| DEFAULT_POSTGRES_URL.to_string())
}

/// The admin URL with its database replaced by `name`.
fn database_url(admin_url: &str, name: &str) -> String {
    let mut url = reqwest::Url::parse(admin_url)
        .unwrap_or_else(|e| panic!("{POSTGRES_URL_VAR}={admin_url} is not a URL: {e}"));
    url.set_path(&format!("/{name}"));
    url.to_string()
}

async fn connect_postgres_admin(admin_url: &str) -> PgConnection {
    let attempt = tokio::time::timeout(Duration::from_secs(15), PgConnection::connect(admin_url));
    let failure = match attempt.await {
        Ok(Ok(conn)) => return conn,
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 15 s".to_string(),
    };
    panic!(
        "\n\nPostgreSQL is required by the black-box tests (every test runs on SQLite AND \
         PostgreSQL; none is skipped), but it could not be reached at {admin_url}: {failure}\n\
         Run the tests with `scripts/test`, which starts the local cluster, or start PostgreSQL \
         yourself and set {POSTGRES_URL_VAR} to the URL of a role that may CREATE DATABASE \
         (default {DEFAULT_POSTGRES_URL}).\n"
    );
}

async fn create_database(conn: &mut PgConnection, name: &str) {
    // Concurrent CREATE DATABASE from the same template can fail with 55006 ("source database
    // is being accessed by other users"); it's transient, so try again a few times.
    let sql = format!("CREATE DATABASE \"{name}\"");
    let mut attempts = 0;
    loop {
        attempts += 1;
        match sqlx::query(&sql).execute(&mut *conn).await {
            Ok(_) => return,
            Err(sqlx::Error::Database(e))
                if e.code().as_deref() == Some("55006") && attempts < 20 =>
            {
                tokio::time::sleep(Duration::from_millis(100 * attempts)).await;
            }
            Err(e) => panic!("{sql} failed: {e}"),
        }
    }
}

/// Drops the PostgreSQL test database when the test ends, pass or fail.
struct DropDatabase {
    admin_url: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        if std::env::var_os(KEEP_DB_VAR).is_some() {
            eprintln!(
                "{KEEP_DB_VAR} is set: keeping PostgreSQL database {}",
                self.name
            );
            return;
        }
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop can't await, and the test's runtime may be the current-thread kind that is
        // busy running us: do the async work on a thread with its own small runtime.
        let result = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut conn = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                    .execute(&mut conn)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = conn.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("warning: dropping test database {} panicked", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_replaces_only_the_database() {
        assert_eq!(
            database_url(
                "postgres://u:p@127.0.0.1:5432/postgres?sslmode=disable",
                "x"
            ),
            "postgres://u:p@127.0.0.1:5432/x?sslmode=disable"
        );
    }
}
