//! The `scribe` command line (issue 3, item 2) apart from `serve` and `migrate`.
//! None of these touch a database, so each runs once.

use scribe_tests::serde_json::Value;
use scribe_tests::*;

#[tokio::test]
async fn help_lists_the_subcommands() {
    let out = run_scribe(&["--help"], &[]).await;
    out.assert_success();
    for command in ["serve", "migrate", "openapi", "check-config", "--config"] {
        assert!(
            out.stdout.contains(command),
            "--help mentions {command}\n{out}"
        );
    }
}

#[tokio::test]
async fn version_prints_the_version_and_git_hash() {
    let out = run_scribe(&["--version"], &[]).await;
    out.assert_success();
    assert!(
        out.stdout.contains(env!("CARGO_PKG_VERSION")),
        "--version prints the version\n{out}"
    );
    assert!(
        out.stdout.contains("git"),
        "--version mentions the git hash\n{out}"
    );
}

#[tokio::test]
async fn unknown_subcommand_is_a_usage_error() {
    let out = run_scribe(&["frobnicate"], &[]).await;
    out.assert_code(2).assert_no_panic();
    assert!(out.stderr.contains("frobnicate"), "{out}");
}

#[tokio::test]
async fn openapi_prints_an_openapi_3_1_document() {
    let out = run_scribe(&["openapi"], &[]).await;
    out.assert_success();
    let doc: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("`scribe openapi` prints JSON: {e}\n{out}"));
    assert!(
        doc["openapi"]
            .as_str()
            .unwrap_or_default()
            .starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
}

/// The committed openapi/openapi.json matches the code (the drift check CI relies on).
#[tokio::test]
async fn openapi_check_passes_in_the_repository() {
    let out = run_scribe_in(&repo_root(), &["openapi", "--check"], &[]).await;
    assert!(
        out.status.success(),
        "openapi/openapi.json is stale: regenerate it with `cargo run -p scribe-server -- openapi --write`\n{out}"
    );
}

#[tokio::test]
async fn openapi_check_fails_on_a_stale_document() {
    let dir = tempfile::tempdir().unwrap();
    let stale = dir.path().join("openapi.json");
    std::fs::write(&stale, "{\"openapi\": \"3.1.0\", \"paths\": {}}\n").unwrap();
    let path = stale.display().to_string();
    let out = run_scribe(&["openapi", "--check", "--path", &path], &[]).await;
    assert!(
        !out.status.success(),
        "--check must fail on a stale file\n{out}"
    );
    out.assert_no_panic();

    let missing = dir.path().join("missing.json").display().to_string();
    let out = run_scribe(&["openapi", "--check", "--path", &missing], &[]).await;
    assert!(
        !out.status.success(),
        "--check must fail on a missing file\n{out}"
    );
    out.assert_no_panic();
}

/// `check-config` validates and prints the effective config with secrets redacted.
#[tokio::test]
async fn check_config_prints_the_config_without_secrets() {
    let setup = TestSetup::new(Backend::Sqlite)
        .await
        .with_config(serde_json::json!({
            "smtp_server": {
                "hostname": "smtp.example.org",
                "sender_email": "scribe@example.org",
                "username": "mailer",
                "password": "smtp-password-must-not-leak",
            },
        }));
    let secret = setup.config["security"]["secret_key"]
        .as_str()
        .unwrap()
        .to_string();
    let out = setup.run(&["check-config"]).await;
    out.assert_success();
    assert!(
        out.stdout.contains("smtp.example.org"),
        "prints the config\n{out}"
    );
    for leaked in [secret.as_str(), "smtp-password-must-not-leak"] {
        assert!(
            !out.output().contains(leaked),
            "a secret leaked: {leaked}\n{out}"
        );
    }
}
