//! Configuration through the binary (issue 3, item 3; SPEC §3.9, §3.10 "Config"): a bad
//! config stops the program with exit code 2 and a message naming the key, before any
//! database is touched (so the rejection tests run once); good configs in Project-W's
//! spelling, `SCRIBE_*` overrides and `*_file` secrets take effect (those start a server and
//! run on both databases).

use std::time::Duration;

use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

/// A config that must not start: both the default command (serve) and `check-config` exit
/// with 2, name `key` on stderr, and don't panic.
async fn assert_rejected(setup: &TestSetup, key: &str) {
    for args in [&[][..], &["check-config"][..]] {
        let out = setup.run_with_timeout(args, Duration::from_secs(30)).await;
        out.assert_code(2).assert_no_panic();
        assert!(
            out.stderr.contains(key),
            "the error message must name `{key}`\n{out}"
        );
    }
}

async fn rejected_with(overrides: Value, key: &str) {
    let setup = TestSetup::new(Backend::Sqlite).await.with_config(overrides);
    assert_rejected(&setup, key).await;
}

#[tokio::test]
async fn unknown_top_level_key_is_rejected() {
    rejected_with(json!({ "frobnicate": true }), "frobnicate").await;
}

#[tokio::test]
async fn unknown_nested_key_is_rejected() {
    rejected_with(
        json!({ "web_server": { "bogus_option": 1 } }),
        "bogus_option",
    )
    .await;
    rejected_with(
        json!({ "security": { "tokens": { "session_lifetime": 60 } } }),
        "session_lifetime",
    )
    .await;
}

#[tokio::test]
async fn wrong_type_is_rejected() {
    rejected_with(json!({ "web_server": { "port": "eighty" } }), "port").await;
    rejected_with(
        json!({ "web_server": { "no_https": "sometimes" } }),
        "no_https",
    )
    .await;
    rejected_with(
        json!({ "cleanup": { "finished_job_retention_in_days": [1, 2] } }),
        "finished_job_retention_in_days",
    )
    .await;
}

#[tokio::test]
async fn invalid_enum_value_is_rejected() {
    rejected_with(
        json!({ "security": { "local_account": { "mode": "sometimes" } } }),
        "mode",
    )
    .await;
}

/// SPEC §3.10: session_expiration_time_minutes ≥ 15; rolling ≥ 5 and ≤ 0.4 × session.
#[tokio::test]
async fn token_lifetimes_out_of_range_are_rejected() {
    rejected_with(
        json!({ "security": { "tokens": { "session_expiration_time_minutes": 5 } } }),
        "session_expiration_time_minutes",
    )
    .await;
    rejected_with(
        json!({ "security": { "tokens": { "rolling_session_before_expiration_minutes": 4 } } }),
        "rolling_session_before_expiration_minutes",
    )
    .await;
    rejected_with(
        json!({ "security": { "tokens": {
            "session_expiration_time_minutes": 60,
            "rolling_session_before_expiration_minutes": 30,
        } } }),
        "rolling_session_before_expiration_minutes",
    )
    .await;
}

/// SPEC §3.10: finished_job_retention_in_days ≥ 1, user_retention_in_days ≥ 90.
#[tokio::test]
async fn retention_out_of_range_is_rejected() {
    rejected_with(
        json!({ "cleanup": { "finished_job_retention_in_days": 0 } }),
        "finished_job_retention_in_days",
    )
    .await;
    rejected_with(
        json!({ "cleanup": { "user_retention_in_days": 30 } }),
        "user_retention_in_days",
    )
    .await;
}

/// Project-W: an imprint links elsewhere (url) or has its own text, exactly one of them.
#[tokio::test]
async fn imprint_with_both_url_and_html_is_rejected() {
    rejected_with(
        json!({ "imprint": {
            "name": "Both",
            "url": "https://example.org/imprint",
            "additional_imprint_html": "<p>x</p>",
        } }),
        "imprint",
    )
    .await;
}

#[tokio::test]
async fn malformed_secret_key_is_rejected() {
    rejected_with(
        json!({ "security": { "secret_key": "abc123" } }),
        "secret_key",
    )
    .await;
}

#[tokio::test]
async fn missing_client_url_is_rejected() {
    let mut setup = TestSetup::new(Backend::Sqlite).await;
    setup.remove_config("client_url");
    assert_rejected(&setup, "client_url").await;
}

#[tokio::test]
async fn malformed_yaml_is_rejected() {
    let setup = TestSetup::new(Backend::Sqlite)
        .await
        .with_raw_config("client_url: [unclosed\nweb_server: {port: 0\n");
    for args in [&[][..], &["check-config"][..]] {
        let out = setup.run_with_timeout(args, Duration::from_secs(30)).await;
        out.assert_code(2).assert_no_panic();
    }
}

#[tokio::test]
async fn missing_config_file_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.yaml").display().to_string();
    let out = run_scribe(&["--config", &path, "check-config"], &[]).await;
    out.assert_code(2).assert_no_panic();
    assert!(out.stderr.contains("nope.yaml"), "names the file\n{out}");
}

/// `SCRIBE_<KEY>__<NESTED>` overrides are validated like the file, naming the key.
#[tokio::test]
async fn invalid_environment_override_is_rejected() {
    let setup = TestSetup::new(Backend::Sqlite)
        .await
        .with_env("SCRIBE_WEB_SERVER__PORT", "not-a-port");
    assert_rejected(&setup, "port").await;

    let setup = TestSetup::new(Backend::Sqlite).await.with_env(
        "SCRIBE_SECURITY__TOKENS__SESSION_EXPIRATION_TIME_MINUTES",
        "5",
    );
    assert_rejected(&setup, "session_expiration_time_minutes").await;
}

db_test!(
    /// Environment beats the file, and strings from the environment become numbers.
    async fn environment_overrides_the_file(backend: Backend) {
        let app = TestSetup::new(backend)
            .await
            .with_config(json!({
                "cleanup": { "finished_job_retention_in_days": 3 },
                "security": { "local_account": { "mode": "enabled" } },
            }))
            .with_env("SCRIBE_CLEANUP__FINISHED_JOB_RETENTION_IN_DAYS", "9")
            .with_env("SCRIBE_SECURITY__LOCAL_ACCOUNT__MODE", "no_signup")
            .spawn()
            .await;
        let about = app.get_json("/api/about").await;
        assert_eq!(about["job_retention_in_days"], json!(9));
        let settings = app.get_json("/api/auth_settings").await;
        assert_eq!(settings["local_account"]["mode"], json!("no_signup"));
    }
);

db_test!(
    /// Secrets can come from files (`<key>_file`), as Docker and systemd credentials do.
    async fn secret_key_can_come_from_a_file(backend: Backend) {
        let mut setup = TestSetup::new(backend).await;
        let key_file = setup.dir.path().join("secret_key");
        std::fs::write(&key_file, format!("{}\n", random_secret_key())).unwrap();
        setup.remove_config("security.secret_key");
        setup.merge_config(json!({ "security": { "secret_key_file": key_file } }));
        let app = setup.spawn().await;
        app.get_json("/api/about").await;
    }
);

db_test!(
    /// An admin brings Project-W's config.yml as it is (SPEC §3.9): its spelling of the
    /// database URL, Redis settings Scribe ignores, web-server and logging keys Scribe may
    /// not use, and `!ENV ${VAR}` / `${VAR:default}` values.
    async fn project_w_config_file_is_accepted(backend: Backend) {
        let setup = TestSetup::new(backend).await;
        // Project-W only knows PostgreSQL; on the SQLite run Scribe's own key names the file.
        let database_key = match backend {
            Backend::Postgres => "postgres_connection_string",
            Backend::Sqlite => "database_url",
        };
        let yaml = format!(
            r#"# A Project-W v0.6.0 config.yml
client_url: http://localhost:5173/#
{database_key}: "{database_url}"
data_dir: "{data_dir}"
redis_connection:
  connection_string: redis://localhost:6379/0
web_server:
  address: 127.0.0.1
  port: 0
  no_https: true
  worker_count: 1
  allowed_hosts: ["*"]
  reverse_proxy:
    trusted_proxies: []
security:
  secret_key: !ENV ${{PW_SECRET_KEY}}
  local_account:
    mode: enabled
    allowed_email_domains: []
    allow_creation_of_api_tokens: true
  tokens:
    session_expiration_time_minutes: 60
    rolling_session_before_expiration_minutes: 10
smtp_server:
  hostname: smtp.example.org
  port: 587
  secure: starttls
  sender_email: project-w@example.org
  username: project-w
  password: !ENV ${{PW_SMTP_PASSWORD:not-set}}
imprint:
  name: !ENV ${{PW_IMPRINT_NAME}}
  email: !ENV ${{PW_UNSET_VARIABLE:imprint@example.org}}
  url: !ENV https://${{PW_HOST}}/imprint
terms_of_services:
  1:
    name: Terms of Services
    version: 1
    tos_html: <p>Terms</p>
cleanup:
  finished_job_retention_in_days: 30
logging:
  console:
    level: INFO
    fmt: "%(asctime)s %(levelname)s %(message)s"
    datefmt: "%Y-%m-%d %H:%M:%S"
    json_fmt: true
database:
  connect_timeout_seconds: 30
"#,
            database_url = setup.db.url(),
            data_dir = setup.data_dir().display(),
        );
        let app = setup
            .with_raw_config(yaml)
            .with_env("PW_SECRET_KEY", random_secret_key())
            .with_env("PW_IMPRINT_NAME", "Imprint From Env")
            .with_env("PW_HOST", "pw.example.org")
            .spawn()
            .await;
        let about = app.get_json("/api/about").await;
        assert_eq!(
            about["imprint"],
            json!({
                "name": "Imprint From Env",
                "email": "imprint@example.org",
                "url": "https://pw.example.org/imprint",
                "additional_imprint_html": null,
            })
        );
        assert_eq!(about["job_retention_in_days"], json!(30));
        assert_eq!(about["terms_of_services"]["1"]["version"], json!(1));
        // Redis is accepted, with a warning that Scribe doesn't use it.
        app.logs()
            .expect_line(
                "warning about redis_connection",
                Duration::from_secs(5),
                |line| line.raw.contains("redis_connection"),
            )
            .await;
    }
);
