//! Issue 6, LDAP: logins against a real OpenLDAP server (`slapd`, one per test, see
//! `scribe_tests::ldap`), revalidation with `scribe revalidate-users`, and what happens when
//! the directory is down or slow — each on SQLite and on PostgreSQL.

use std::time::{Duration, Instant};

use scribe_tests::accounts::*;
use scribe_tests::ldap::{self, password, Slapd, ADMINS_GROUP, PROVIDER, USERS_GROUP};
use scribe_tests::reqwest::{header, Method, Response};
use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

const WRONG_CREDENTIALS: &str = "Incorrect username or password";
const LOGIN_SUCCESS: &str = "Success. Returning your login token as a cookie";

fn login_path(provider: &str) -> String {
    format!("/api/ldap/login/{provider}")
}

/// Posts the LDAP login form without cookies.
async fn ldap_login(
    app: &TestApp,
    provider: &str,
    username: &str,
    pass: &str,
    scope: &str,
) -> Response {
    plain_client()
        .post(app.url(&login_path(provider)))
        .header(header::USER_AGENT, "ldap-blackbox-test")
        .form(&[("username", username), ("password", pass), ("scope", scope)])
        .send()
        .await
        .expect("the login request reaches the server")
}

/// Logs in at the test directory and returns the session token from `Set-Cookie`.
async fn ldap_session(app: &TestApp, username: &str, pass: &str, scope: &str) -> String {
    let response = ldap_login(app, PROVIDER, username, pass, scope).await;
    let cookie = token_cookie(&response).expect("a successful login sets the token cookie");
    assert_eq!(json_body(response, 200).await, json!(LOGIN_SUCCESS));
    cookie_value(&cookie)
}

async fn ldap_user_count(app: &TestApp) -> i64 {
    app.db()
        .scalar_i64("SELECT COUNT(*) FROM users WHERE user_type = 'ldap'")
        .await
}

async fn info(app: &TestApp, token: &str) -> Value {
    json_body(
        send_as(app, Method::GET, "/api/users/info", token).await,
        200,
    )
    .await
}

/// A refused login: 401 with Project-W's message, no cookie.
async fn assert_refused(app: &TestApp, username: &str, pass: &str) {
    let response = ldap_login(app, PROVIDER, username, pass, "").await;
    assert!(
        token_cookie(&response).is_none(),
        "{username:?}: no cookie on failure"
    );
    let detail = assert_error(response, 401).await;
    assert_eq!(detail, WRONG_CREDENTIALS, "login as {username:?}");
}

db_test!(
    async fn ldap_login_by_uid_and_by_mail_gives_one_verified_user(backend: Backend) {
        let slapd = Slapd::start().await;
        let app = spawn_app_with(backend, slapd.config(json!({}))).await;

        // auth_settings lists the directory with its display settings.
        let settings = app.get_json("/api/auth_settings").await;
        assert_eq!(
            settings["ldap_providers"][PROVIDER],
            json!({"hidden": false, "icon_url": null, "allow_creation_of_api_tokens": true}),
            "{settings}"
        );

        let response = ldap_login(&app, PROVIDER, "alice", &password("alice"), "").await;
        let cookie = token_cookie(&response).expect("login sets the token cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("Max-Age=3600"),
            "{cookie}"
        );
        assert_eq!(json_body(response, 200).await, json!(LOGIN_SUCCESS));
        let by_uid = cookie_value(&cookie);
        let alice = info(&app, &by_uid).await;
        assert_eq!(alice["email"], "alice@example.org");
        assert_eq!(alice["provider_name"], PROVIDER);
        assert_eq!(alice["user_type"], "ldap");
        assert_eq!(alice["is_verified"], true);

        // The same person by mail address: the same account.
        let by_mail = ldap_session(&app, "alice@example.org", &password("alice"), "").await;
        assert_eq!(info(&app, &by_mail).await["id"], alice["id"]);
        assert_eq!(ldap_user_count(&app).await, 1);

        // The session works for user and job routes, cookie or Bearer.
        let tokens = json_body(
            send_as(&app, Method::GET, "/api/users/get_all_token_info", &by_uid).await,
            200,
        )
        .await;
        assert_eq!(tokens.as_array().unwrap().len(), 2, "{tokens}");
        assert!(tokens
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["admin_privileges"] == false));
        assert_eq!(tokens[0]["name"], "ldap-blackbox-test");
        assert_eq!(
            json_body(
                send_as(
                    &app,
                    Method::GET,
                    "/api/jobs/count?exclude_finished=false&exclude_downloaded=false",
                    &by_uid
                )
                .await,
                200
            )
            .await,
            json!(0)
        );
        json_body(
            send_as(&app, Method::GET, "/api/jobs/default_settings", &by_uid).await,
            200,
        )
        .await;
        let settings_id = json_body(
            bearer(&app, Method::POST, "/api/jobs/submit_settings", &by_uid)
                .json(&json!({"model": "small", "language": "de"}))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        assert!(settings_id.is_i64(), "{settings_id}");
        let cookie_client = http_client();
        let via_cookie = cookie_client
            .get(app.url("/api/users/info"))
            .header(header::COOKIE, format!("token={by_uid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(json_body(via_cookie, 200).await["id"], alice["id"]);

        // API tokens are allowed for this directory by default.
        let api_token = json_body(
            send_as(
                &app,
                Method::POST,
                "/api/users/get_new_api_token?name=script",
                &by_uid,
            )
            .await,
            200,
        )
        .await;
        let api_token = api_token.as_str().unwrap();
        assert_eq!(info(&app, api_token).await["id"], alice["id"]);

        // The address comes from the directory: normalised on first login, and a change there
        // reaches Scribe at the next login.
        let ada = ldap_session(&app, "ada", &password("ada"), "").await;
        assert_eq!(info(&app, &ada).await["email"], "Ada.Lovelace@example.org");
        slapd.set_mail("alice", "alice.new@example.org").await;
        let again = ldap_session(&app, "alice", &password("alice"), "").await;
        let alice_now = info(&app, &again).await;
        assert_eq!(alice_now["id"], alice["id"]);
        assert_eq!(alice_now["email"], "alice.new@example.org");
        assert_eq!(ldap_user_count(&app).await, 2);

        // Logging out ends the session like a local one.
        json_body(
            send_as(&app, Method::DELETE, "/api/users/logout", &again).await,
            200,
        )
        .await;
        assert_error(
            send_as(&app, Method::GET, "/api/users/info", &again).await,
            401,
        )
        .await;
    }
);

db_test!(
    async fn ldap_refusals_share_one_message_and_change_nothing(backend: Backend) {
        let slapd = Slapd::start().await;
        let app = spawn_app_with(backend, slapd.config(json!({}))).await;

        // Wrong password, unknown user, a person the queries don't allow, an entry without a
        // mail address: one answer for all, so the answer doesn't tell which it was.
        assert_refused(&app, "alice", "wrong-Pass-1").await;
        assert_refused(&app, "alice", &password("ada")).await;
        assert_refused(&app, "nobody", "wrong-Pass-1").await;
        assert_refused(&app, "carol", &password("carol")).await;
        assert_refused(&app, "nomail", &password("nomail")).await;
        // A name matching two entries logs nobody in, even with one of their passwords.
        assert_refused(&app, "twins@example.org", &password("twin1")).await;
        assert_eq!(ldap_user_count(&app).await, 0);
        assert_eq!(app.db().scalar_i64("SELECT COUNT(*) FROM tokens").await, 0);

        // The service account can't log in: it is not a person under the queries.
        assert_refused(&app, "scribe", ldap::SERVICE_PASSWORD).await;

        // Two entries giving the same address to different people: the second is refused
        // with a clear error instead of taking over the first one's account.
        ldap_session(&app, "twin1", &password("twin1"), "").await;
        let response = ldap_login(&app, PROVIDER, "twin2", &password("twin2"), "").await;
        let detail = assert_error(response, 409).await;
        assert!(detail.contains("twins@example.org"), "{detail}");
        assert_eq!(ldap_user_count(&app).await, 1);

        // A form without a password is a 422, like any malformed form.
        let response = plain_client()
            .post(app.url(&login_path(PROVIDER)))
            .form(&[("username", "alice")])
            .send()
            .await
            .unwrap();
        assert_validation_error_at(response, &["body", "password"]).await;
    }
);

db_test!(
    async fn ldap_filter_injection_and_empty_passwords_never_log_in(backend: Backend) {
        let slapd = Slapd::start().await;
        let app = spawn_app_with(backend, slapd.config(json!({}))).await;

        // Unescaped, each of these would match alice, the admin or everyone; with any real
        // password from the directory they must still fail.
        let injections = [
            "*",
            "*)(uid=*",
            "admin)(|(uid=*",
            "admin*",
            "a*",
            "alice)(uid=*",
            "*)(|(objectClass=*",
            "(uid=alice)",
            "alice\\",
            "alice\u{0}",
        ];
        for name in injections {
            for pass in [password("alice"), password("admin"), "*".to_owned()] {
                assert_refused(&app, name, &pass).await;
            }
        }
        // An empty password would be an anonymous bind, which "succeeds": never a login.
        for name in ["alice", "admin", "alice@example.org", "*"] {
            assert_refused(&app, name, "").await;
        }
        assert_eq!(ldap_user_count(&app).await, 0);
        assert!(
            !slapd
                .log()
                .contains(&format!("BIND dn=\"{}\"", ldap::user_dn("alice"))),
            "no bind as a person was even attempted:\n{}",
            slapd.log()
        );

        // The real names still work afterwards.
        ldap_session(&app, "admin", &password("admin"), "").await;
        ldap_session(&app, "alice", &password("alice"), "").await;
        assert_eq!(ldap_user_count(&app).await, 2);
    }
);

db_test!(
    async fn ldap_admins_get_admin_tokens_only_with_scope_admin(backend: Backend) {
        let slapd = Slapd::start().await;
        let app = spawn_app_with(backend, slapd.config(json!({}))).await;

        // `admin` is only in the admin group: admin_query alone lets them in, as an admin.
        let plain = ldap_session(&app, "admin", &password("admin"), "").await;
        assert_eq!(
            assert_error(add_banner(&app, &plain).await, 403).await,
            "Not enough permissions"
        );
        let admin = ldap_session(&app, "admin", &password("admin"), "admin").await;
        json_body(add_banner(&app, &admin).await, 200).await;
        let tokens = json_body(
            send_as(&app, Method::GET, "/api/users/get_all_token_info", &admin).await,
            200,
        )
        .await;
        let privileges: Vec<&Value> = tokens
            .as_array()
            .unwrap()
            .iter()
            .map(|t| &t["admin_privileges"])
            .collect();
        assert_eq!(
            privileges.iter().filter(|p| ***p == json!(true)).count(),
            1,
            "{tokens}"
        );

        // Someone in both groups is found by admin_query first: an admin.
        let ada = ldap_session(&app, "ada", &password("ada"), "admin").await;
        json_body(add_banner(&app, &ada).await, 200).await;

        // A non-admin asking for scope admin, or anybody for an unknown scope: 400, nothing
        // issued.
        let before = app.db().scalar_i64("SELECT COUNT(*) FROM tokens").await;
        let response = ldap_login(&app, PROVIDER, "alice", &password("alice"), "admin").await;
        assert!(token_cookie(&response).is_none());
        assert_eq!(
            assert_error(response, 400).await,
            "Your user isn't an admin"
        );
        let response = ldap_login(&app, PROVIDER, "admin", &password("admin"), "read").await;
        assert_eq!(
            assert_error(response, 400).await,
            "We don't support that token permission scope"
        );
        assert_eq!(
            app.db().scalar_i64("SELECT COUNT(*) FROM tokens").await,
            before
        );
    }
);

db_test!(
    async fn ldap_revalidation_revokes_removed_users_and_demotes_former_admins(backend: Backend) {
        let slapd = Slapd::start().await;
        let app = spawn_app_with(backend, slapd.config(json!({}))).await;

        let alice = ldap_session(&app, "alice", &password("alice"), "").await;
        let alice_api = json_body(
            send_as(
                &app,
                Method::POST,
                "/api/users/get_new_api_token?name=cron",
                &alice,
            )
            .await,
            200,
        )
        .await;
        let alice_api = alice_api.as_str().unwrap().to_owned();
        let ada_admin = ldap_session(&app, "ada", &password("ada"), "admin").await;
        let ada_plain = ldap_session(&app, "ada", &password("ada"), "").await;
        let admin = ldap_session(&app, "admin", &password("admin"), "admin").await;

        // Nothing changed in the directory: nothing changes here.
        let report = revalidate(&app).await;
        assert!(report.contains("checked 3 "), "{report}");
        assert!(report.contains("0 lost access"), "{report}");
        json_body(add_banner(&app, &ada_admin).await, 200).await;
        info(&app, &alice_api).await;

        // alice leaves the directory; ada leaves the admin group but stays a user.
        slapd.delete_user("alice").await;
        slapd.remove_from_group("ada", ADMINS_GROUP).await;
        let report = revalidate(&app).await;
        assert!(
            report.contains("1 lost access (2 tokens deleted)"),
            "{report}"
        );
        assert!(
            report.contains("1 lost the admin role (1 tokens lost admin privileges)"),
            "{report}"
        );

        for token in [&alice, &alice_api] {
            assert_token_revoked(&app, token).await;
        }
        assert_refused(&app, "alice", &password("alice")).await;

        // ada keeps working, without admin privileges, and can't get them back.
        assert_admin_stripped(&app, &ada_admin).await;
        info(&app, &ada_plain).await;
        info(&app, &ada_admin).await;
        let response = ldap_login(&app, PROVIDER, "ada", &password("ada"), "admin").await;
        assert_eq!(
            assert_error(response, 400).await,
            "Your user isn't an admin"
        );
        // The untouched admin stays one.
        json_body(add_banner(&app, &admin).await, 200).await;

        // Taking ada out of the users group too revokes her.
        slapd.remove_from_group("ada", USERS_GROUP).await;
        let report = revalidate(&app).await;
        assert!(report.contains("1 lost access"), "{report}");
        assert_token_revoked(&app, &ada_plain).await;
        // Accounts stay (their jobs are theirs); only the tokens went.
        assert_eq!(ldap_user_count(&app).await, 3);
    }
);

db_test!(
    async fn ldap_provider_names_are_exact_and_unconfigured_ldap_is_not_found(backend: Backend) {
        let slapd = Slapd::start().await;
        let setup = TestSetup::new(backend).await;
        let no_ldap = setup.spawn().await;
        let response = ldap_login(&no_ldap, PROVIDER, "alice", &password("alice"), "").await;
        assert_error(response, 404).await;
        drop(no_ldap);

        let app = spawn_app_with(backend, slapd.config(json!({}))).await;
        for name in ["Nope", "openldap", "OPENLDAP"] {
            let response = ldap_login(&app, name, "alice", &password("alice"), "").await;
            assert_eq!(
                assert_error(response, 400).await,
                format!("Could not query user, ldap server {name} not known")
            );
        }
        // A name with a space travels percent-encoded.
        let spaced = "Example Directory";
        let app = spawn_app_with(
            backend,
            json!({"security": {"ldap_providers": {spaced: slapd.provider_config()}}}),
        )
        .await;
        let response =
            ldap_login(&app, "Example%20Directory", "alice", &password("alice"), "").await;
        json_body(response, 200).await;
        let provider = app
            .db()
            .scalar_i64("SELECT COUNT(*) FROM users WHERE provider_name = 'Example Directory'")
            .await;
        assert_eq!(provider, 1);
    }
);

db_test!(
    async fn ldap_unreachable_or_silent_directories_fail_fast_with_503(backend: Backend) {
        // Nothing listens on the first (port 1 is reserved, so no other test's server can
        // be there); the second accepts connections and never answers.
        let closed = "ldap://127.0.0.1:1".to_owned();
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_url = format!("ldap://{}", silent.local_addr().unwrap());
        let mut slapd = Slapd::start().await;
        let mut closed_config = ldap::provider_config(&closed);
        closed_config["timeout_seconds"] = json!(2);
        let mut silent_config = ldap::provider_config(&silent_url);
        silent_config["timeout_seconds"] = json!(1);
        let app = spawn_app_with(
            backend,
            json!({"security": {"ldap_providers": {
                "Closed": closed_config,
                "Silent": silent_config,
                PROVIDER: slapd.provider_config(),
            }}}),
        )
        .await;

        for (provider, limit) in [("Closed", 3), ("Silent", 4)] {
            let started = Instant::now();
            let response = ldap_login(&app, provider, "alice", &password("alice"), "").await;
            let detail = assert_error(response, 503).await;
            assert!(detail.contains("try again later"), "{detail}");
            let elapsed = started.elapsed();
            assert!(
                elapsed < Duration::from_secs(limit),
                "{provider}: 503 only after {elapsed:?}"
            );
        }
        // An outage is no failed login: it doesn't count towards throttling.
        assert_eq!(
            app.db()
                .scalar_i64("SELECT COUNT(*) FROM login_failures")
                .await,
            0
        );

        // A directory that goes away after a login: its pooled connection is found dead, the
        // login answers 503, revalidation changes nothing (no answer is no revocation).
        let alice = ldap_session(&app, "alice", &password("alice"), "").await;
        slapd.stop().await;
        let response = ldap_login(&app, PROVIDER, "alice", &password("alice"), "").await;
        assert_error(response, 503).await;
        let report = revalidate(&app).await;
        assert!(report.contains("0 lost access"), "{report}");
        assert!(report.contains("1 unanswered"), "{report}");
        info(&app, &alice).await;
        drop(silent);
    }
);

db_test!(
    async fn ldap_failed_logins_are_throttled(backend: Backend) {
        let slapd = Slapd::start().await;
        let mut config = slapd.config(json!({}));
        merge_json(
            &mut config,
            json!({"security": {"login_throttling": {"max_failures_per_account": 2}}}),
        );
        let app = spawn_app_with(backend, config).await;
        assert_refused(&app, "alice", "wrong-Pass-1").await;
        assert_refused(&app, "Alice", "wrong-Pass-2").await;
        let response = ldap_login(&app, PROVIDER, "alice", &password("alice"), "").await;
        assert!(response.headers().contains_key(header::RETRY_AFTER));
        assert_error(response, 429).await;
        // Another person is not affected.
        ldap_session(&app, "ada", &password("ada"), "").await;
    }
);

db_test!(
    async fn ldap_over_ldaps_and_starttls_trusts_the_configured_ca(backend: Backend) {
        let slapd = Slapd::start_with_tls().await;
        let ca = slapd.ca_pem.clone().unwrap();
        let ldaps = slapd.ldaps_url.clone().unwrap();
        let mut with_ca = ldap::provider_config(&ldaps);
        with_ca["ca_pem_file_path"] = json!(ca);
        let mut starttls = ldap::provider_config(&slapd.url);
        starttls["start_tls"] = json!(true);
        starttls["ca_pem_file_path"] = json!(ca);
        // Without the CA, the system's trust store doesn't know the test CA.
        let system_roots = ldap::provider_config(&ldaps);
        let app = spawn_app_with(
            backend,
            json!({"security": {"ldap_providers": {
                "LDAPS": with_ca,
                "StartTLS": starttls,
                "Untrusted": system_roots,
            }}}),
        )
        .await;

        for provider in ["LDAPS", "StartTLS"] {
            let response = ldap_login(&app, provider, "ada", &password("ada"), "admin").await;
            let cookie = token_cookie(&response).expect("login sets the token cookie");
            json_body(response, 200).await;
            let token = cookie_value(&cookie);
            assert_eq!(info(&app, &token).await["provider_name"], provider);
            json_body(add_banner(&app, &token).await, 200).await;
        }
        let response = ldap_login(&app, "Untrusted", "ada", &password("ada"), "").await;
        assert_error(response, 503).await;
        app.expect_log("the certificate error", |line| {
            line.raw.contains("LDAP directory unreachable") && line.raw.contains("certificate")
        })
        .await;
    }
);
