//! Issue 4 over real HTTP: local accounts, sessions, API tokens, mails received by a real
//! SMTP server (the sink), provisioning, ToS, admin tokens, throttling — each on SQLite and
//! on PostgreSQL. Every rejected request is also checked to have changed nothing.

use std::time::Duration;

use scribe_tests::accounts::*;
use scribe_tests::reqwest::{header, Method};
use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

const NEW_PASSWORD: &str = "Another-Staple-7-horse";

async fn user_count(app: &TestApp) -> i64 {
    app.db().scalar_i64("SELECT COUNT(*) FROM users").await
}

/// The initial admin's one-time password, as logged once at start-up.
async fn initial_admin_password(app: &TestApp) -> String {
    let line = app
        .logs()
        .expect_line(
            "with the initial admin password",
            Duration::from_secs(10),
            |l| l.field("password").is_some(),
        )
        .await;
    line.field_text("password").unwrap()
}

db_test!(
    async fn signup_activation_login_tokens_and_logout(backend: Backend) {
        let (app, sink) = app_with_mail(backend, json!({})).await;
        let email = "Alice.Smith@Example.ORG";
        let body = json_body(signup(&app, email, PASSWORD).await, 200).await;
        assert!(
            body.as_str().unwrap().contains("Successfully created user"),
            "{body}"
        );

        // The activation link arrives by SMTP and works exactly once.
        let mail = mail_to(&sink, "Alice.Smith@example.org", "activ").await;
        assert!(mail.recipients.iter().all(|r| !r.is_empty()));
        let token = activation_token(&mail);
        let activate = format!("/api/local-account/activate?token={token}");
        assert_eq!(
            json_body(app.post(&activate).await, 200).await,
            json!("Success")
        );
        assert_error(app.post(&activate).await, 401).await;
        assert_error(
            app.post("/api/local-account/activate?token=garbage").await,
            401,
        )
        .await;

        // Login sets an HttpOnly session cookie; the domain part of the address is normalised.
        let response = login_as(&app, "Alice.Smith@EXAMPLE.org", PASSWORD, "").await;
        let cookie = token_cookie(&response).expect("login sets the token cookie");
        assert!(cookie.contains("HttpOnly"), "{cookie}");
        assert!(cookie.contains("SameSite=Lax"), "{cookie}");
        assert!(cookie.contains("Path=/"), "{cookie}");
        assert!(cookie.contains("Max-Age=3600"), "{cookie}");
        assert!(
            !cookie.contains("Secure"),
            "no_https instances send no Secure flag: {cookie}"
        );
        json_body(response, 200).await;
        let session = cookie_value(&cookie);
        assert!(
            session.len() >= 43,
            "a token carries at least 256 bits: {session}"
        );

        let info = json_body(
            send_as(&app, Method::GET, "/api/users/info", &session).await,
            200,
        )
        .await;
        assert_eq!(info["email"], "Alice.Smith@example.org");
        assert_eq!(info["user_type"], "local");
        assert_eq!(info["provider_name"], "project-W");
        assert_eq!(info["is_verified"], true);

        // An API token: never expires, never admin, usable as Bearer.
        let api_token = json_body(
            bearer(
                &app,
                Method::POST,
                "/api/users/get_new_api_token?name=script",
                &session,
            )
            .send()
            .await
            .unwrap(),
            200,
        )
        .await;
        let api_token = api_token.as_str().unwrap().to_owned();
        let tokens = json_body(
            bearer(
                &app,
                Method::GET,
                "/api/users/get_all_token_info",
                &api_token,
            )
            .send()
            .await
            .unwrap(),
            200,
        )
        .await;
        let tokens = tokens.as_array().unwrap();
        assert_eq!(tokens.len(), 2, "{tokens:?}");
        let api_info = tokens.iter().find(|t| t["name"] == "script").unwrap();
        assert_eq!(api_info["explicit"], true);
        assert_eq!(api_info["admin_privileges"], false);
        assert!(api_info["expires_at"].is_null());
        assert!(
            api_info["last_usage"].as_str().unwrap().ends_with("+00:00"),
            "{api_info}"
        );
        let session_info = tokens
            .iter()
            .find(|t| t["name"] == "blackbox-test")
            .unwrap();
        assert!(session_info["expires_at"]
            .as_str()
            .unwrap()
            .ends_with("+00:00"));

        // Invalidating the API token makes it useless at once.
        let id = api_info["id"].as_i64().unwrap();
        json_body(
            bearer(
                &app,
                Method::DELETE,
                &format!("/api/users/invalidate_token?token_id={id}"),
                &session,
            )
            .send()
            .await
            .unwrap(),
            200,
        )
        .await;
        let detail = assert_error(
            send_as(&app, Method::GET, "/api/users/info", &api_token).await,
            401,
        )
        .await;
        assert_eq!(detail, "Could not validate token");

        // Logout clears the cookie and kills the session.
        let response = send_as(&app, Method::DELETE, "/api/users/logout", &session).await;
        let cleared = token_cookie(&response).expect("logout clears the cookie");
        assert!(
            cleared.starts_with("token=;") || cleared.contains("Max-Age=0"),
            "{cleared}"
        );
        json_body(response, 200).await;
        assert_error(
            send_as(&app, Method::GET, "/api/users/info", &session).await,
            401,
        )
        .await;
    }
);

db_test!(
    async fn cookie_authenticates_and_bearer_wins_over_it(backend: Backend) {
        let (app, sink) = app_with_mail(backend, json!({})).await;
        signup_and_activate(&app, &sink, "carol@example.org").await;
        // The app's client keeps cookies: after login it is authenticated by cookie alone.
        json_body(
            app.post_form(
                "/api/local-account/login",
                &[("username", "carol@example.org"), ("password", PASSWORD)],
            )
            .await,
            200,
        )
        .await;
        let info = app.get_json("/api/users/info").await;
        assert_eq!(info["email"], "carol@example.org");
        // A bad Bearer header is used alone, even with a valid cookie (SPEC §3.10).
        let response = app
            .request(Method::GET, "/api/users/info")
            .header(header::AUTHORIZATION, "Bearer not-a-token")
            .send()
            .await
            .unwrap();
        assert_eq!(
            assert_error(response, 401).await,
            "Could not validate token"
        );
        // No credentials at all.
        let detail = assert_error(
            plain_client()
                .get(app.url("/api/users/info"))
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
        assert_eq!(detail, "Not authenticated");
    }
);

db_test!(
    async fn bad_signups_are_refused_and_change_nothing(backend: Backend) {
        let (app, _sink) = app_with_mail(
            backend,
            json!({"security": {"local_account": {"allowed_email_domains": ["example.org"]}}}),
        )
        .await;
        let before = user_count(&app).await;

        let weak = assert_validation_error(signup(&app, "bob@example.org", "short").await).await;
        assert!(weak.iter().any(|v| v.path() == "body.password"), "{weak:?}");
        let bad_email = assert_validation_error(signup(&app, "not-an-email", PASSWORD).await).await;
        assert!(
            bad_email.iter().any(|v| v.path() == "body.email"),
            "{bad_email:?}"
        );
        assert_error(signup(&app, "bob@elsewhere.org", PASSWORD).await, 400).await;
        assert_validation_error(
            app.post_json(
                "/api/local-account/signup",
                &json!({"email": "bob@example.org"}),
            )
            .await,
        )
        .await;
        assert_eq!(
            user_count(&app).await,
            before,
            "rejected signups created users"
        );

        json_body(signup(&app, "bob@example.org", PASSWORD).await, 200).await;
        assert_error(signup(&app, "bob@example.org", PASSWORD).await, 400).await;
        assert_eq!(user_count(&app).await, before + 1);
    }
);

db_test!(
    async fn wrong_password_and_unknown_user_look_the_same(backend: Backend) {
        let (app, sink) = app_with_mail(backend, json!({})).await;
        signup_and_activate(&app, &sink, "dave@example.org").await;
        let wrong = assert_error(
            login_as(&app, "dave@example.org", "Wrong-Password-1", "").await,
            401,
        )
        .await;
        let unknown = assert_error(
            login_as(&app, "nobody@example.org", PASSWORD, "").await,
            401,
        )
        .await;
        assert_eq!(wrong, unknown);
        assert_error(login_as(&app, "not an email", PASSWORD, "").await, 401).await;
        // Unsupported scope, and admin scope for a non-admin: 400.
        assert_error(
            login_as(&app, "dave@example.org", PASSWORD, "superuser").await,
            400,
        )
        .await;
        assert_error(
            login_as(&app, "dave@example.org", PASSWORD, "admin").await,
            400,
        )
        .await;
        // Unverified users can log in (the frontend then asks them to verify).
        json_body(signup(&app, "erin@example.org", PASSWORD).await, 200).await;
        let token = session_token(&app, "erin@example.org", PASSWORD, "").await;
        // ... but can't create API tokens before verifying.
        assert_error(
            bearer(
                &app,
                Method::POST,
                "/api/users/get_new_api_token?name=x",
                &token,
            )
            .send()
            .await
            .unwrap(),
            403,
        )
        .await;
    }
);

db_test!(
    async fn password_reset_works_once_and_reveals_nothing(backend: Backend) {
        let (app, sink) = app_with_mail(backend, json!({})).await;
        signup_and_activate(&app, &sink, "frank@example.org").await;

        let known = app
            .get("/api/local-account/request_password_reset?email=frank@example.org")
            .await;
        let known = json_body(known, 200).await;
        let unknown = app
            .get("/api/local-account/request_password_reset?email=ghost@example.org")
            .await;
        let unknown = json_body(unknown, 200).await;
        assert_eq!(
            known.as_str().unwrap().replace("frank@", "X@"),
            unknown.as_str().unwrap().replace("ghost@", "X@")
        );
        assert_error(
            app.get("/api/local-account/request_password_reset?email=nope")
                .await,
            400,
        )
        .await;

        let mail = mail_to(&sink, "frank@example.org", "password").await;
        let token = mail
            .token_after(&format!("{CLIENT_URL}/auth/local/reset-password?token="))
            .unwrap_or_else(|| panic!("no reset link in {}", mail.body));
        let weak = app
            .post_json(
                "/api/local-account/reset_password",
                &json!({"token": token, "new_password": "weak"}),
            )
            .await;
        assert_validation_error(weak).await;
        let reset = json!({"token": token, "new_password": NEW_PASSWORD});
        json_body(
            app.post_json("/api/local-account/reset_password", &reset)
                .await,
            200,
        )
        .await;
        assert_error(
            app.post_json("/api/local-account/reset_password", &reset)
                .await,
            401,
        )
        .await;
        assert_error(login_as(&app, "frank@example.org", PASSWORD, "").await, 401).await;
        json_body(
            login_as(&app, "frank@example.org", NEW_PASSWORD, "").await,
            200,
        )
        .await;
    }
);

db_test!(
    async fn email_and_password_changes_need_the_current_password(backend: Backend) {
        let (app, sink) = app_with_mail(backend, json!({})).await;
        signup_and_activate(&app, &sink, "grace@example.org").await;
        let session = session_token(&app, "grace@example.org", PASSWORD, "").await;
        let other_session = session_token(&app, "grace@example.org", PASSWORD, "").await;

        let change = |body: Value| {
            bearer(
                &app,
                Method::POST,
                "/api/local-account/change_user_email",
                &session,
            )
            .json(&body)
        };
        assert_error(
            change(json!({"new_email": "grace2@example.org", "password": "Wrong-Password-1"}))
                .send()
                .await
                .unwrap(),
            403,
        )
        .await;
        json_body(
            change(json!({"new_email": "grace2@example.org", "password": PASSWORD}))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        let mail = mail_to(&sink, "grace2@example.org", "").await;
        let token = activation_token(&mail);
        json_body(
            app.post(&format!("/api/local-account/activate?token={token}"))
                .await,
            200,
        )
        .await;
        let info = json_body(
            send_as(&app, Method::GET, "/api/users/info", &session).await,
            200,
        )
        .await;
        assert_eq!(info["email"], "grace2@example.org");

        let change_password = |body: Value| {
            bearer(
                &app,
                Method::POST,
                "/api/local-account/change_user_password",
                &session,
            )
            .json(&body)
        };
        assert_error(
            change_password(json!({"new_password": NEW_PASSWORD, "password": "Wrong-Password-1"}))
                .send()
                .await
                .unwrap(),
            403,
        )
        .await;
        json_body(
            change_password(json!({"new_password": NEW_PASSWORD, "password": PASSWORD}))
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        // The other session is signed out; this one stays.
        assert_error(
            send_as(&app, Method::GET, "/api/users/info", &other_session).await,
            401,
        )
        .await;
        json_body(
            send_as(&app, Method::GET, "/api/users/info", &session).await,
            200,
        )
        .await;
        json_body(
            login_as(&app, "grace2@example.org", NEW_PASSWORD, "").await,
            200,
        )
        .await;
    }
);

db_test!(
    async fn provisioned_admin_gets_admin_tokens_only_with_the_admin_scope(backend: Backend) {
        let (app, sink) = app_with_mail(
            backend,
            json!({"security": {"local_account": {"user_provisioning": {
                "0": {"email": "root@example.org", "password": "Provisioned-Pass-1", "is_admin": true}
            }}}}),
        )
        .await;
        // A provisioned admin exists, so no initial admin is generated.
        assert_eq!(user_count(&app).await, 1);

        let plain = session_token(&app, "root@example.org", "Provisioned-Pass-1", "").await;
        let banner = json!({"html": "<b>Maintenance</b>", "urgency": 10});
        let detail = assert_error(
            bearer(&app, Method::POST, "/api/admins/add_site_banner", &plain)
                .json(&banner)
                .send()
                .await
                .unwrap(),
            403,
        )
        .await;
        assert_eq!(detail, "Not enough permissions");

        let admin = session_token(&app, "root@example.org", "Provisioned-Pass-1", "admin").await;
        let id = json_body(
            bearer(&app, Method::POST, "/api/admins/add_site_banner", &admin)
                .json(&banner)
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        let low = json!({"html": "fyi", "urgency": 1});
        json_body(
            bearer(&app, Method::POST, "/api/admins/add_site_banner", &admin)
                .json(&low)
                .send()
                .await
                .unwrap(),
            200,
        )
        .await;
        let about = app.get_json("/api/about").await;
        assert_eq!(about["site_banners"][0]["id"], id);
        assert_eq!(about["site_banners"][0]["urgency"], 10);
        assert_eq!(about["site_banners"][1]["html"], "fyi");
        json_body(
            bearer(
                &app,
                Method::DELETE,
                &format!("/api/admins/delete_site_banner?banner_id={id}"),
                &admin,
            )
            .send()
            .await
            .unwrap(),
            200,
        )
        .await;
        assert_eq!(
            app.get_json("/api/about").await["site_banners"]
                .as_array()
                .unwrap()
                .len(),
            1
        );

        // Provisioned users can't be changed or deleted through the API.
        assert_error(
            bearer(
                &app,
                Method::POST,
                "/api/local-account/change_user_password",
                &plain,
            )
            .json(&json!({"new_password": NEW_PASSWORD, "password": "Provisioned-Pass-1"}))
            .send()
            .await
            .unwrap(),
            403,
        )
        .await;
        assert_error(
            send_as(&app, Method::DELETE, "/api/users/delete", &plain).await,
            403,
        )
        .await;
        assert_eq!(user_count(&app).await, 1);

        // API tokens are never admin tokens, even when made from an admin session.
        let api = json_body(
            bearer(
                &app,
                Method::POST,
                "/api/users/get_new_api_token?name=ci",
                &admin,
            )
            .send()
            .await
            .unwrap(),
            200,
        )
        .await;
        assert_error(
            bearer(
                &app,
                Method::POST,
                "/api/admins/add_site_banner",
                api.as_str().unwrap(),
            )
            .json(&banner)
            .send()
            .await
            .unwrap(),
            403,
        )
        .await;

        // Broadcast: one message, every verified user in Bcc only.
        signup_and_activate(&app, &sink, "henry@example.org").await;
        json_body(
            bearer(
                &app,
                Method::POST,
                "/api/admins/send_email_to_all_users",
                &admin,
            )
            .json(&json!({"subject": "Downtime tonight", "body": "We upgrade at 22:00."}))
            .send()
            .await
            .unwrap(),
            200,
        )
        .await;
        let broadcast = sink
            .wait_for(|m| m.subject == "Downtime tonight", MAIL_WAIT)
            .await
            .expect("the broadcast arrives");
        assert!(broadcast.body.contains("We upgrade at 22:00."));
        for address in ["root@example.org", "henry@example.org"] {
            assert!(
                broadcast.recipients.iter().any(|r| r == address),
                "{:?}",
                broadcast.recipients
            );
            let to = broadcast.header("To").unwrap_or_default();
            assert!(
                !to.contains(address),
                "recipients must be in Bcc, To was {to}"
            );
        }
    }
);

db_test!(
    async fn terms_of_service_acceptance(backend: Backend) {
        let (app, sink) = app_with_mail(
            backend,
            json!({"terms_of_services": {"1": {"name": "Rules", "version": 2, "tos_html": "<p>Be nice</p>"}}}),
        )
        .await;
        signup_and_activate(&app, &sink, "ivy@example.org").await;
        let session = session_token(&app, "ivy@example.org", PASSWORD, "").await;
        let accept = |id: i64, version: i64| {
            bearer(
                &app,
                Method::POST,
                &format!("/api/users/accept_tos?tos_id={id}&tos_version={version}"),
                &session,
            )
        };
        assert_error(accept(1, 3).send().await.unwrap(), 400).await;
        assert_error(accept(7, 1).send().await.unwrap(), 400).await;
        assert_validation_error(
            bearer(
                &app,
                Method::POST,
                "/api/users/accept_tos?tos_id=x&tos_version=1",
                &session,
            )
            .send()
            .await
            .unwrap(),
        )
        .await;
        json_body(accept(1, 2).send().await.unwrap(), 200).await;
        let info = json_body(
            send_as(&app, Method::GET, "/api/users/info", &session).await,
            200,
        )
        .await;
        assert_eq!(info["accepted_tos"], json!({"1": 2}));
    }
);

db_test!(
    async fn repeated_failures_are_throttled_per_account_and_address(backend: Backend) {
        let (app, sink) = app_with_mail(
            backend,
            json!({"web_server": {"reverse_proxy": {"trusted_proxies": ["127.0.0.1"]}}}),
        )
        .await;
        signup_and_activate(&app, &sink, "judy@example.org").await;
        let attempt = |password: &'static str, address: &'static str| {
            plain_client()
                .post(app.url("/api/local-account/login"))
                .header("X-Forwarded-For", address)
                .form(&[("username", "judy@example.org"), ("password", password)])
                .send()
        };
        for _ in 0..10 {
            assert_error(attempt("Wrong-Password-1", "10.0.0.66").await.unwrap(), 401).await;
        }
        let throttled = attempt("Wrong-Password-1", "10.0.0.66").await.unwrap();
        let retry_after = throttled
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .expect("a Retry-After header in seconds");
        assert!(retry_after > 0);
        assert_error(throttled, 429).await;
        // The guesser is blocked even with the right password ...
        assert_error(attempt(PASSWORD, "10.0.0.66").await.unwrap(), 429).await;
        // ... but the owner, from another address, still gets in.
        json_body(attempt(PASSWORD, "10.0.0.7").await.unwrap(), 200).await;
    }
);

db_test!(
    async fn the_initial_admin_is_created_once_with_a_logged_password(backend: Backend) {
        let (app, _sink) = app_with_mail(backend, json!({})).await;
        let password = initial_admin_password(&app).await;
        let admin = session_token(&app, "admin@localhost", &password, "admin").await;
        let info = json_body(
            send_as(&app, Method::GET, "/api/users/info", &admin).await,
            200,
        )
        .await;
        assert_eq!(info["is_verified"], true);
        // A restart finds the admin and creates no second one.
        let app = app.restart().await;
        assert_eq!(user_count(&app).await, 1);
    }
);

/// Moves the expiry of every session token to `minutes` from now, as if time had passed.
async fn age_sessions(app: &TestApp, minutes: i64) {
    let expiry = (std::time::SystemTime::now() + Duration::from_secs(minutes as u64 * 60))
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let rfc3339 = chrono_like_rfc3339(expiry);
    let updated = app
        .db()
        .execute(&format!(
            "UPDATE tokens SET expires_at = '{rfc3339}' WHERE explicit = false"
        ))
        .await;
    assert!(updated > 0, "no session token to age");
}

/// `YYYY-MM-DDTHH:MM:SS+00:00` for a UNIX time, without pulling a date crate into the tests.
fn chrono_like_rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let seconds = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

db_test!(
    async fn sessions_near_expiry_roll_over(backend: Backend) {
        // The test ages sessions in the database, behind the server's back.
        let (app, sink) = app_with_mail(
            backend,
            json!({"security": {"tokens": {"session_cache_seconds": 0}}}),
        )
        .await;
        signup_and_activate(&app, &sink, "kim@example.org").await;
        let old = session_token(&app, "kim@example.org", PASSWORD, "").await;

        // Far from expiry: nothing rotates.
        let response = plain_client()
            .get(app.url("/api/users/info"))
            .header(header::COOKIE, format!("token={old}"))
            .send()
            .await
            .unwrap();
        assert!(token_cookie(&response).is_none());
        json_body(response, 200).await;

        // Inside the rolling window (default 10 min): a cookie request gets a new token.
        age_sessions(&app, 5).await;
        let response = plain_client()
            .get(app.url("/api/users/info"))
            .header(header::COOKIE, format!("token={old}"))
            .send()
            .await
            .unwrap();
        let cookie = token_cookie(&response)
            .unwrap_or_else(|| panic!("a rotated token in Set-Cookie: {:?}", response.headers()));
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("Max-Age=3600"),
            "{cookie}"
        );
        json_body(response, 200).await;
        let new = cookie_value(&cookie);
        assert_ne!(new, old);
        json_body(
            send_as(&app, Method::GET, "/api/users/info", &new).await,
            200,
        )
        .await;
        // The previous value stays valid for a short grace period (requests in flight).
        json_body(
            send_as(&app, Method::GET, "/api/users/info", &old).await,
            200,
        )
        .await;

        // A session presented as Bearer has its expiry slid, without a new value.
        age_sessions(&app, 5).await;
        let response = send_as(&app, Method::GET, "/api/users/get_all_token_info", &new).await;
        assert!(token_cookie(&response).is_none());
        let tokens = json_body(response, 200).await;
        let expires = tokens[0]["expires_at"].as_str().unwrap().to_owned();
        let soon = chrono_like_rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 30 * 60,
        );
        assert!(
            expires[..19] > soon[..19],
            "expiry {expires} should be about an hour away"
        );
        json_body(
            send_as(&app, Method::GET, "/api/users/info", &new).await,
            200,
        )
        .await;
    }
);
