//! SPEC §3.1: `GET /api/about`, `GET /api/auth_settings`, and the probes `/healthz`, `/readyz`.

use std::time::Duration;

use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

/// Every key of the contract's `AboutResponse`, all required.
const ABOUT_KEYS: [&str; 8] = [
    "description",
    "git_hash",
    "imprint",
    "job_retention_in_days",
    "site_banners",
    "source_code",
    "terms_of_services",
    "version",
];

fn sorted_keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

/// `major.minor.patch[-pre][+build]` → (major, minor, patch).
fn parse_semver(version: &str) -> (u64, u64, u64) {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<u64> = core
        .split('.')
        .map(|p| {
            p.parse()
                .unwrap_or_else(|_| panic!("{version:?} is not semver"))
        })
        .collect();
    assert_eq!(parts.len(), 3, "{version:?} is not semver");
    (parts[0], parts[1], parts[2])
}

db_test!(
    async fn about_has_the_contract_shape_and_defaults(app: TestApp) {
        let about = app.get_json("/api/about").await;
        assert_eq!(sorted_keys(&about), ABOUT_KEYS, "{about}");

        assert!(!about["description"].as_str().unwrap().is_empty());
        let source = about["source_code"].as_str().unwrap();
        assert!(source.starts_with("http"), "source_code is a URL: {source}");

        let version = about["version"].as_str().unwrap();
        let (major, minor, _) = parse_semver(version);
        assert!((major, minor) > (0, 0), "version must be > 0.0: {version}");
        // The running build's version is the workspace version.
        assert_eq!(version, env!("CARGO_PKG_VERSION"));
        assert!(about["git_hash"].is_string(), "git_hash: {about}");

        // Nothing configured: no imprint, no ToS, no retention, no banners.
        assert_eq!(about["imprint"], Value::Null);
        assert_eq!(about["terms_of_services"], json!({}));
        assert_eq!(about["job_retention_in_days"], Value::Null);
        assert_eq!(about["site_banners"], json!([]));
    }
);

db_test!(
    async fn about_reports_imprint_terms_and_retention_from_config(backend: Backend) {
        // Project-W: the imprint has either a url or additional_imprint_html, not both.
        let imprint = json!({
            "name": "Scribe Test Lab",
            "email": "imprint@example.org",
            "url": null,
            "additional_imprint_html": "<p>Registered in Testland</p>",
        });
        // Project-W: ToS ids are integers (users/accept_tos?tos_id=).
        let terms = json!({
            "1": { "name": "Terms of use", "version": 3, "tos_html": "<p>Be nice.</p>" },
            "7": { "name": "Privacy", "version": 1, "tos_html": "<p>We keep nothing.</p>" },
        });
        let app = spawn_app_with(
            backend,
            json!({
                "imprint": {
                    "name": "Scribe Test Lab",
                    "email": "imprint@example.org",
                    "additional_imprint_html": "<p>Registered in Testland</p>",
                },
                "terms_of_services": terms,
                "cleanup": { "finished_job_retention_in_days": 7 },
            }),
        )
        .await;

        let about = app.get_json("/api/about").await;
        assert_eq!(sorted_keys(&about), ABOUT_KEYS, "{about}");
        assert_eq!(about["imprint"], imprint);
        assert_eq!(about["terms_of_services"], terms);
        assert_eq!(about["job_retention_in_days"], json!(7));
        assert_eq!(about["site_banners"], json!([]));
    }
);

db_test!(
    /// An imprint that links elsewhere: the unset fields are present as null.
    async fn about_imprint_optional_fields_are_null_when_unset(backend: Backend) {
        let app = spawn_app_with(
            backend,
            json!({ "imprint": { "name": "Only a link", "url": "https://example.org/imprint" } }),
        )
        .await;
        let about = app.get_json("/api/about").await;
        assert_eq!(
            about["imprint"],
            json!({
                "name": "Only a link",
                "email": null,
                "url": "https://example.org/imprint",
                "additional_imprint_html": null,
            })
        );
    }
);

db_test!(
    async fn auth_settings_defaults(app: TestApp) {
        let settings = app.get_json("/api/auth_settings").await;
        assert_eq!(
            settings,
            json!({
                "local_account": {
                    "mode": "enabled",
                    "allowed_email_domains": [],
                    "allow_creation_of_api_tokens": true,
                },
                "oidc_providers": {},
                "ldap_providers": {},
            })
        );
    }
);

db_test!(
    async fn auth_settings_reflect_the_local_account_config(backend: Backend) {
        let app = spawn_app_with(
            backend,
            json!({ "security": { "local_account": {
                "mode": "no_signup",
                "allowed_email_domains": ["example.org", "stud.example.org"],
                "allow_creation_of_api_tokens": false,
            }}}),
        )
        .await;
        let settings = app.get_json("/api/auth_settings").await;
        assert_eq!(
            settings["local_account"],
            json!({
                "mode": "no_signup",
                "allowed_email_domains": ["example.org", "stud.example.org"],
                "allow_creation_of_api_tokens": false,
            })
        );
        assert_eq!(settings["oidc_providers"], json!({}));
        assert_eq!(settings["ldap_providers"], json!({}));
    }
);

db_test!(
    /// Every `LocalAccountOperationModeEnum` value survives config → wire unchanged.
    async fn auth_settings_report_every_local_account_mode(backend: Backend) {
        for mode in ["disabled", "no_signup_hidden", "no_signup", "enabled"] {
            let app = spawn_app_with(
                backend,
                json!({ "security": { "local_account": { "mode": mode } } }),
            )
            .await;
            let settings = app.get_json("/api/auth_settings").await;
            assert_eq!(settings["local_account"]["mode"], json!(mode), "{settings}");
        }
    }
);

db_test!(
    async fn healthz_and_readyz_answer_ok(app: TestApp) {
        for path in ["/healthz", "/readyz"] {
            let response = app.get(path).await;
            assert_eq!(response.status(), 200, "{path}");
        }
    }
);

/// `/readyz` means "the database is reachable": take the database away from a running
/// server. PostgreSQL only: a SQLite file can't be taken from a process that has it open.
#[tokio::test]
async fn readyz_fails_when_the_database_is_gone_but_healthz_still_answers() {
    let app = spawn_app(Backend::Postgres).await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    app.db().drop_now().await;

    let response = app.get("/readyz").await;
    let status = response.status().as_u16();
    assert!(
        status >= 500,
        "/readyz with the database gone must fail, got {status}"
    );
    assert_error(response, status).await;
    assert_eq!(app.get("/healthz").await.status(), 200);
}

db_test!(
    /// Each response has `x-request-id`, and the request's log line has method, path, status,
    /// latency and that id.
    async fn requests_are_logged_with_their_request_id(app: TestApp) {
        let response = app.get("/api/about").await;
        let id = request_id(&response);
        assert_eq!(response.status(), 200);

        let line = app
            .logs()
            .expect_line("for GET /api/about", Duration::from_secs(10), |line| {
                line.field_text("request_id").as_deref() == Some(id.as_str())
                    && line.field_text("path").as_deref() == Some("/api/about")
            })
            .await;
        assert_eq!(
            line.field_text("method").as_deref(),
            Some("GET"),
            "{}",
            line.raw
        );
        assert_eq!(
            line.field_text("status").as_deref(),
            Some("200"),
            "{}",
            line.raw
        );
        assert!(line.field("latency_ms").is_some(), "{}", line.raw);

        // Errors get ids too, and distinct requests distinct ids.
        let other = app.get("/api/unknown").await;
        assert_ne!(request_id(&other), id);
    }
);
