//! Migrations (issue 3, item 4): `scribe migrate` on an empty and an already-migrated
//! database, `migrate --status`, and migrations at start-up.

use scribe_tests::*;

/// sea-orm-migration's bookkeeping table.
const MIGRATIONS_TABLE: &str = "seaql_migrations";

async fn applied_migrations(db: &TestDb) -> i64 {
    db.scalar_i64(&format!("SELECT COUNT(*) FROM {MIGRATIONS_TABLE}"))
        .await
}

db_test!(
    async fn migrate_on_an_empty_database_then_again(backend: Backend) {
        let setup = TestSetup::new(backend).await;

        let status_before = setup.run(&["migrate", "--status"]).await;
        status_before.assert_success().assert_no_panic();
        // sea-orm names migrations m<date>_<seq>_<change>; --status lists every one.
        assert!(
            status_before.stdout.contains("m20"),
            "lists the migrations\n{status_before}"
        );

        setup
            .run(&["migrate"])
            .await
            .assert_success()
            .assert_no_panic();
        let applied = applied_migrations(&setup.db).await;
        assert!(applied > 0, "migrate applied nothing");
        let tables = setup.db.table_names().await;
        assert!(tables.len() > 1, "only {tables:?} after migrate");

        // Already migrated: nothing to do, still success, nothing changes.
        setup
            .run(&["migrate"])
            .await
            .assert_success()
            .assert_no_panic();
        assert_eq!(applied_migrations(&setup.db).await, applied);
        assert_eq!(setup.db.table_names().await, tables);

        let status_after = setup.run(&["migrate", "--status"]).await;
        status_after.assert_success();
        assert_ne!(
            status_before.stdout, status_after.stdout,
            "--status shows what is applied"
        );
        let listed = status_after
            .stdout
            .lines()
            .filter(|line| line.contains("m20"))
            .count() as i64;
        assert_eq!(
            listed, applied,
            "--status lists each migration once\n{status_after}"
        );

        // A server starts on the migrated database.
        let app = setup.spawn().await;
        app.get_json("/api/about").await;
    }
);

db_test!(
    /// `serve` migrates at start-up; a restart on the migrated database applies nothing new.
    async fn serve_migrates_at_start_up_and_restarts_cleanly(app: TestApp) {
        let applied = applied_migrations(app.db()).await;
        assert!(applied > 0, "serve applied no migrations");

        let app = app.restart().await;
        assert_eq!(applied_migrations(app.db()).await, applied);
        app.get_json("/api/about").await;
        assert_eq!(app.get("/readyz").await.status(), 200);
    }
);

/// Replicas starting together on one fresh PostgreSQL database must not race on the
/// migrations (advisory lock). PostgreSQL only: SQLite is single-process by design.
#[tokio::test]
async fn replicas_starting_together_share_one_migration_run() {
    const REPLICAS: usize = 4;
    let first = TestSetup::new(Backend::Postgres).await;
    // The other replicas' configs point at the first one's database (own data dirs).
    let mut setups = Vec::new();
    for _ in 1..REPLICAS {
        let mut other = TestSetup::new(Backend::Sqlite).await;
        other.config = first.config.clone();
        other.merge_config(serde_json::json!({ "data_dir": other.data_dir() }));
        setups.push(other);
    }
    setups.insert(0, first);

    let mut starting = tokio::task::JoinSet::new();
    for setup in setups {
        starting.spawn(setup.spawn());
    }
    let apps = starting.join_all().await;
    for app in &apps {
        app.get_json("/api/about").await;
    }
    // Completion order: find the replica whose setup owns the PostgreSQL database.
    let owner = apps
        .iter()
        .find(|app| app.backend() == Backend::Postgres)
        .unwrap();
    let applied = applied_migrations(owner.db()).await;
    let status = owner.setup.run(&["migrate", "--status"]).await;
    status.assert_success();
    let listed = status.stdout.lines().filter(|l| l.contains("m20")).count() as i64;
    assert_eq!(applied, listed, "each migration recorded once\n{status}");
}
