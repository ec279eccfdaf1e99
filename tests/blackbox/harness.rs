//! The harness itself: fresh databases really are fresh, and really go away.

use scribe_tests::*;
use sqlx::{Connection, PgConnection};

async fn postgres_database_exists(name: &str) -> bool {
    let mut conn = PgConnection::connect(&postgres_admin_url()).await.unwrap();
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM pg_database WHERE datname = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    count == 1
}

#[tokio::test]
async fn postgres_test_databases_are_created_empty_and_dropped_afterwards() {
    let keep = std::env::var_os("SCRIBE_TEST_KEEP_DB").is_some();
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::create(Backend::Postgres, dir.path()).await;
    let name = db.postgres_name().unwrap().to_string();
    assert!(postgres_database_exists(&name).await);
    assert!(db.table_names().await.is_empty());
    drop(db);
    assert_eq!(
        postgres_database_exists(&name).await,
        keep,
        "{name}: dropped unless SCRIBE_TEST_KEEP_DB is set"
    );
}

#[tokio::test]
async fn sqlite_test_databases_live_in_the_test_dir() {
    let setup = TestSetup::new(Backend::Sqlite).await;
    assert!(setup.db.url().starts_with("sqlite://"));
    assert!(setup
        .db
        .url()
        .contains(&setup.dir.path().display().to_string()));
}
