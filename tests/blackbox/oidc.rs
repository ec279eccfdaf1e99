//! Issue 6 over real HTTP: OpenID Connect logins through a real provider (the certified
//! `oidc-provider` package, one per test, see `scribe_tests::oidc`), completed by a
//! cookie-keeping browser that submits the provider's login form; the code flow with and
//! without PKCE, both client authentication methods, tampered and replayed callbacks, the
//! email and role rules, and revalidation with `scribe revalidate-users` — each on SQLite
//! and on PostgreSQL.

use scribe_tests::accounts::{
    add_banner, assert_admin_stripped, assert_token_revoked, revalidate, send_as, CLIENT_URL,
};
use scribe_tests::oidc::*;
use scribe_tests::reqwest::{header, Method, Response, StatusCode};
use scribe_tests::serde_json::{json, Value};
use scribe_tests::*;

async fn oidc_users(app: &TestApp) -> i64 {
    app.db()
        .scalar_i64("SELECT COUNT(*) FROM users WHERE user_type = 'oidc'")
        .await
}

/// The session token a successful callback sets, after checking the redirect to the client.
fn logged_in(response: &Response) -> String {
    assert_eq!(
        response.status(),
        StatusCode::FOUND,
        "the callback redirects to the client"
    );
    assert_eq!(
        response.headers().get(header::LOCATION).unwrap(),
        CLIENT_URL,
        "the callback redirects to client_url"
    );
    let cookie = set_cookie(response, "token").expect("the callback sets the token cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    assert!(cookie.contains("Max-Age=3600"), "{cookie}");
    let value = cookie
        .trim_start_matches("token=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(value.len() >= 43, "{cookie}");
    value
}

/// Signs `user` in and returns the session token.
async fn session_of(app: &TestApp, user: &str) -> String {
    let browser = Browser::new();
    logged_in(&browser.log_in(app, user).await)
}

async fn info(app: &TestApp, token: &str) -> Value {
    json_body(
        send_as(app, Method::GET, "/api/users/info", token).await,
        200,
    )
    .await
}

async fn token_infos(app: &TestApp, token: &str) -> Value {
    json_body(
        send_as(app, Method::GET, "/api/users/get_all_token_info", token).await,
        200,
    )
    .await
}

/// How Scribe authenticated at the provider's token endpoint, per grant type.
async fn auth_methods(provider: &OidcProvider, grant_type: &str) -> Vec<String> {
    provider
        .token_requests()
        .await
        .into_iter()
        .filter(|r| r["grant_type"] == grant_type && r["client_id"] == CLIENT_ID)
        .map(|r| r["method"].as_str().unwrap().to_owned())
        .collect()
}

db_test!(
    async fn oidc_code_flow_with_pkce_creates_a_verified_user_with_a_session(backend: Backend) {
        let (app, provider) = app_with_provider(backend, json!({}), json!({})).await;

        // auth_settings lists the provider under its configured name.
        let settings = app.get_json("/api/auth_settings").await;
        assert_eq!(
            settings["oidc_providers"][IDP],
            json!({"hidden": false, "icon_url": null, "allow_creation_of_api_tokens": true})
        );

        // oidc/login: a redirect to the provider's authorization endpoint with state, nonce,
        // the S256 challenge, the configured scopes and Scribe's redirect URI; the flow
        // cookie is HttpOnly and scoped to /api/oidc.
        let browser = Browser::new();
        let start = browser.get(&app.url("/api/oidc/login/testidp")).await;
        assert_eq!(start.status(), StatusCode::FOUND);
        let location = start
            .headers()
            .get(header::LOCATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            location.starts_with(&format!("{}/auth?", provider.issuer)),
            "{location}"
        );
        assert_eq!(query_param(&location, "response_type").unwrap(), "code");
        assert_eq!(query_param(&location, "client_id").unwrap(), CLIENT_ID);
        assert_eq!(
            query_param(&location, "redirect_uri").unwrap(),
            redirect_uri(&app, IDP)
        );
        let scopes = query_param(&location, "scope").unwrap();
        let scopes: Vec<&str> = scopes.split(' ').collect();
        for scope in ["openid", "email", "roles"] {
            assert!(scopes.contains(&scope), "{scopes:?}");
        }
        assert_eq!(
            query_param(&location, "code_challenge_method").unwrap(),
            "S256"
        );
        assert!(query_param(&location, "code_challenge").unwrap().len() >= 43);
        assert!(query_param(&location, "state").unwrap().len() >= 16);
        assert!(query_param(&location, "nonce").unwrap().len() >= 16);
        let flow = set_cookie(&start, "scribe_oidc_flow").expect("a flow cookie");
        assert!(flow.contains("HttpOnly"), "{flow}");
        assert!(flow.contains("Path=/api/oidc"), "{flow}");
        assert!(flow.contains("SameSite=Lax"), "{flow}");

        let callback = browser
            .sign_in_from(start, &app, "alice", "alice-password")
            .await;
        assert!(query_param(&callback, "code").is_some(), "{callback}");
        let response = browser.get(&callback).await;
        let cleared =
            set_cookie(&response, "scribe_oidc_flow").expect("the flow cookie is cleared");
        assert!(cleared.contains("Max-Age=0"), "{cleared}");
        let token = logged_in(&response);

        // The code was redeemed with client_secret_basic (the configured method).
        assert_eq!(
            auth_methods(&provider, "authorization_code").await,
            ["client_secret_basic"]
        );

        // The user: oidc, the configured spelling of the provider, verified; keyed by sub.
        let me = info(&app, &token).await;
        assert_eq!(me["email"], "alice@example.org");
        assert_eq!(me["user_type"], "oidc");
        assert_eq!(me["provider_name"], IDP);
        assert_eq!(me["is_verified"], true);
        assert_eq!(
            app.db()
                .scalar_i64(
                    "SELECT COUNT(*) FROM users WHERE user_type = 'oidc' AND external_id = 'alice'"
                )
                .await,
            1
        );
        // The provider's refresh token is kept, encrypted (never as plain text).
        assert_eq!(
            app.db()
                .scalar_i64("SELECT COUNT(*) FROM oidc_refresh_tokens")
                .await,
            1
        );

        // A normal session (not admin), named after the browser's User-Agent.
        let tokens = token_infos(&app, &token).await;
        assert_eq!(tokens.as_array().unwrap().len(), 1);
        assert_eq!(tokens[0]["admin_privileges"], false);
        assert_eq!(tokens[0]["explicit"], false);
        assert_eq!(tokens[0]["name"], "oidc-blackbox-browser");
        assert_error(add_banner(&app, &token).await, 403).await;

        // Job routes work for the OIDC user (verified, no ToS configured).
        json_body(
            send_as(
                &app,
                Method::GET,
                "/api/jobs/count?exclude_finished=false&exclude_downloaded=false",
                &token,
            )
            .await,
            200,
        )
        .await;
        json_body(
            send_as(&app, Method::GET, "/api/jobs/default_settings", &token).await,
            200,
        )
        .await;

        // A second login (any case in the route) is the same user with a second session.
        let again = Browser::new();
        let callback = again
            .sign_in(&app, "TESTIDP", "alice", "alice-password")
            .await;
        let second = logged_in(&again.get(&callback).await);
        assert_ne!(second, token);
        assert_eq!(info(&app, &second).await["id"], me["id"]);
        assert_eq!(oidc_users(&app).await, 1, "alice, once");
    }
);

db_test!(
    async fn oidc_code_flow_without_pkce_and_with_claims_in_the_id_token(backend: Backend) {
        // Keycloak-like: the claims arrive in the ID token, no userinfo request needed.
        let (app, _provider) = app_with_provider(
            backend,
            json!({"conformIdTokenClaims": false}),
            json!({"enable_pkce_s256_challenge": false}),
        )
        .await;
        let browser = Browser::new();
        let start = browser.get(&app.url("/api/oidc/login/TestIdP")).await;
        let location = start
            .headers()
            .get(header::LOCATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            query_param(&location, "code_challenge").is_none(),
            "{location}"
        );
        assert!(
            query_param(&location, "code_challenge_method").is_none(),
            "{location}"
        );
        let callback = browser
            .sign_in_from(start, &app, "bob", "bob-password")
            .await;
        let token = logged_in(&browser.get(&callback).await);
        assert_eq!(info(&app, &token).await["email"], "bob@example.org");
    }
);

db_test!(
    async fn oidc_client_secret_post_works_and_a_wrong_auth_method_is_refused(backend: Backend) {
        let (app, provider) = app_with_provider(
            backend,
            json!({}),
            json!({"client_auth_method": "client_secret_post"}),
        )
        .await;
        let token = session_of(&app, "alice").await;
        assert_eq!(info(&app, &token).await["email"], "alice@example.org");
        assert_eq!(
            auth_methods(&provider, "authorization_code").await,
            ["client_secret_post"]
        );

        // The provider now only accepts client_secret_basic for this client: Scribe (still
        // configured for client_secret_post) can't redeem the code.
        provider
            .register_client(
                CLIENT_ID,
                CLIENT_SECRET,
                "client_secret_basic",
                &[redirect_uri(&app, IDP)],
            )
            .await;
        let browser = Browser::new();
        let callback = browser.sign_in(&app, IDP, "bob", "bob-password").await;
        let detail = assert_error(browser.get(&callback).await, 400).await;
        assert!(
            detail.starts_with("Failed to authorize IdP access token:"),
            "{detail}"
        );
        assert!(detail.contains("invalid_client"), "{detail}");
        assert_eq!(
            app.db()
                .scalar_i64("SELECT COUNT(*) FROM users WHERE email = 'bob@example.org'")
                .await,
            0
        );
    }
);

db_test!(
    async fn oidc_client_secret_basic_with_a_wrong_secret_is_refused(backend: Backend) {
        let (app, provider) = app_with_provider(backend, json!({}), json!({})).await;
        provider
            .register_client(
                CLIENT_ID,
                "another-secret",
                "client_secret_basic",
                &[redirect_uri(&app, IDP)],
            )
            .await;
        let browser = Browser::new();
        let callback = browser.sign_in(&app, IDP, "alice", "alice-password").await;
        let detail = assert_error(browser.get(&callback).await, 400).await;
        assert!(detail.contains("invalid_client"), "{detail}");
        assert_eq!(oidc_users(&app).await, 0);
    }
);

db_test!(
    async fn oidc_tampered_state_and_missing_flow_cookie_are_refused(backend: Backend) {
        let (app, _provider) = app_with_provider(backend, json!({}), json!({})).await;

        let browser = Browser::new();
        let callback = browser.sign_in(&app, IDP, "alice", "alice-password").await;
        let state = query_param(&callback, "state").unwrap();
        let mut forged_state = state.clone();
        forged_state.replace_range(0..1, if state.starts_with('A') { "B" } else { "A" });
        let tampered = with_query_param(&callback, "state", &forged_state);
        let detail = assert_error(browser.get(&tampered).await, 400).await;
        assert!(detail.contains("mismatching state"), "{detail}");

        // The genuine callback from another browser (no flow cookie): refused too.
        let stranger = Browser::new();
        let detail = assert_error(stranger.get(&callback).await, 400).await;
        assert!(detail.contains("no valid login in progress"), "{detail}");

        // A forged flow cookie (signed with another key) doesn't help.
        let forged = scribe_tests::accounts::plain_client()
            .get(&callback)
            .header(header::COOKIE, "scribe_oidc_flow=eyJwIjoidGVzdGlkcCJ9.AAAA")
            .send()
            .await
            .unwrap();
        assert_error(forged, 400).await;

        // An answer naming another issuer (RFC 9207: a mix-up): refused.
        let browser = Browser::new();
        let callback = browser.sign_in(&app, IDP, "alice", "alice-password").await;
        assert!(query_param(&callback, "iss").is_some(), "{callback}");
        let mixed_up = with_query_param(&callback, "iss", "https://evil.example.org");
        let detail = assert_error(browser.get(&mixed_up).await, 400).await;
        assert!(detail.contains("another issuer"), "{detail}");

        // No state at all.
        let browser = Browser::new();
        let callback = browser.sign_in(&app, IDP, "alice", "alice-password").await;
        let without = callback.split('?').next().unwrap().to_owned()
            + "?code="
            + &query_param(&callback, "code").unwrap();
        let detail = assert_error(browser.get(&without).await, 400).await;
        assert!(detail.contains("mismatching state"), "{detail}");
        assert_eq!(oidc_users(&app).await, 0, "nobody logged in");
    }
);

db_test!(
    async fn oidc_replayed_callback_is_refused(backend: Backend) {
        let (app, _provider) = app_with_provider(backend, json!({}), json!({})).await;
        let browser = Browser::new();
        let start = browser.get(&app.url("/api/oidc/login/testidp")).await;
        let flow = set_cookie(&start, "scribe_oidc_flow").unwrap();
        let flow = flow.split(';').next().unwrap().to_owned();
        let callback = browser
            .sign_in_from(start, &app, "alice", "alice-password")
            .await;
        logged_in(&browser.get(&callback).await);

        // The same answer again, with the flow cookie it came with (an attacker who
        // captured both): refused, and no new session.
        let replay = scribe_tests::accounts::plain_client()
            .get(&callback)
            .header(header::COOKIE, &flow)
            .send()
            .await
            .unwrap();
        assert!(set_cookie(&replay, "token").is_none());
        let detail = assert_error(replay, 400).await;
        assert!(detail.contains("already used"), "{detail}");
        assert_eq!(
            app.db().scalar_i64("SELECT COUNT(*) FROM tokens").await,
            1,
            "one session only"
        );
    }
);

db_test!(
    async fn oidc_unverified_email_and_an_aborted_login_are_refused(backend: Backend) {
        let (app, _provider) = app_with_provider(backend, json!({}), json!({})).await;
        let browser = Browser::new();
        let detail = assert_error(browser.log_in(&app, "carol").await, 403).await;
        assert_eq!(
            detail,
            format!("The email address of this OIDC '{IDP}' account is not verified")
        );

        // The user cancels at the provider: its error comes back as a 400.
        let browser = Browser::new();
        let start = browser.get(&app.url("/api/oidc/login/testidp")).await;
        let page = match browser.follow(start, "http://nowhere/").await {
            Stop::Page(url, page) => {
                assert_eq!(page.status(), StatusCode::OK);
                url
            }
            Stop::At(url) => panic!("{url}"),
        };
        let uid = page.path().trim_start_matches("/interaction/").to_owned();
        let abort = browser
            .client
            .post(page.join(&format!("/interaction/{uid}/abort")).unwrap())
            .send()
            .await
            .unwrap();
        let callback = match browser.follow(abort, &app.url("/api/oidc/auth/")).await {
            Stop::At(url) => url,
            Stop::Page(url, _) => panic!("the provider didn't send the browser back: {url}"),
        };
        let detail = assert_error(browser.get(&callback).await, 400).await;
        assert!(detail.contains("access_denied"), "{detail}");
        assert_eq!(oidc_users(&app).await, 0, "nobody logged in");
    }
);

db_test!(
    async fn oidc_role_claims_as_string_or_list_decide_access_and_admin(backend: Backend) {
        let (app, _provider) = app_with_provider(backend, json!({}), json!({})).await;

        // roles: "scribe-user" (a string): a user, not an admin.
        let alice = session_of(&app, "alice").await;
        assert_eq!(
            token_infos(&app, &alice).await[0]["admin_privileges"],
            false
        );

        // roles: ["staff", "scribe-admin"] (a list with the admin role): an admin session
        // without any scope, although bob lacks the user role.
        let bob = session_of(&app, "bob").await;
        assert_eq!(token_infos(&app, &bob).await[0]["admin_privileges"], true);
        json_body(add_banner(&app, &bob).await, 200).await;

        // roles: ["staff", "visitor"] (a list without either role), or no roles claim: 403.
        for user in ["dave", "erin"] {
            let detail = assert_error(Browser::new().log_in(&app, user).await, 403).await;
            assert_eq!(
                detail,
                "Insufficient permissions: Your user lacks the required value for the roles claim"
            );
        }
        assert_eq!(oidc_users(&app).await, 2, "alice and bob");
    }
);

db_test!(
    async fn oidc_without_roles_configured_lets_every_verified_user_in(backend: Backend) {
        let (app, _provider) = app_with_provider(
            backend,
            json!({}),
            json!({"user_role": null, "admin_role": null}),
        )
        .await;
        for user in ["dave", "erin"] {
            let token = session_of(&app, user).await;
            assert_eq!(
                token_infos(&app, &token).await[0]["admin_privileges"],
                false
            );
        }
        // No admin role configured: bob is an ordinary user here.
        let bob = session_of(&app, "bob").await;
        assert_eq!(token_infos(&app, &bob).await[0]["admin_privileges"], false);
    }
);

db_test!(
    async fn oidc_user_with_a_local_accounts_address_gets_a_separate_account(backend: Backend) {
        let app_and_provider = {
            let provider = OidcProvider::start().await;
            let entry = provider_config(&provider, json!({}));
            let app = spawn_app_with(
                backend,
                json!({"security": {
                    "oidc_providers": {IDP: entry},
                    "local_account": {"user_provisioning": {"1": {
                        "email": "alice@example.org", "password": "Local-Password-123", "is_admin": true
                    }}}
                }}),
            )
            .await;
            provider
                .register_client(
                    CLIENT_ID,
                    CLIENT_SECRET,
                    "client_secret_basic",
                    &[redirect_uri(&app, IDP)],
                )
                .await;
            (app, provider)
        };
        let (app, _provider) = app_and_provider;
        let oidc = session_of(&app, "alice").await;
        let me = info(&app, &oidc).await;
        assert_eq!(me["user_type"], "oidc");
        let local = scribe_tests::accounts::session_token(
            &app,
            "alice@example.org",
            "Local-Password-123",
            "admin",
        )
        .await;
        let local_me = info(&app, &local).await;
        assert_eq!(local_me["user_type"], "local");
        assert_ne!(
            local_me["id"], me["id"],
            "the OIDC login didn't take over the local account"
        );
        // The OIDC session is not the local admin's.
        assert_error(add_banner(&app, &oidc).await, 403).await;
    }
);

db_test!(
    async fn oidc_api_tokens_follow_the_providers_setting(backend: Backend) {
        let (app, _provider) = app_with_provider(backend, json!({}), json!({})).await;
        let token = session_of(&app, "alice").await;
        let api = json_body(
            send_as(
                &app,
                Method::POST,
                "/api/users/get_new_api_token?name=script",
                &token,
            )
            .await,
            200,
        )
        .await;
        info(&app, api.as_str().unwrap()).await;

        let (app, _provider) = app_with_provider(
            backend,
            json!({}),
            json!({"allow_creation_of_api_tokens": false}),
        )
        .await;
        let settings = app.get_json("/api/auth_settings").await;
        assert_eq!(
            settings["oidc_providers"][IDP]["allow_creation_of_api_tokens"],
            false
        );
        let token = session_of(&app, "alice").await;
        let detail = assert_error(
            send_as(
                &app,
                Method::POST,
                "/api/users/get_new_api_token?name=script",
                &token,
            )
            .await,
            400,
        )
        .await;
        assert!(
            detail.contains("Creation of api tokens is disabled"),
            "{detail}"
        );
    }
);

db_test!(
    async fn oidc_unknown_provider_and_no_providers(backend: Backend) {
        let (app, _provider) = app_with_provider(backend, json!({}), json!({})).await;
        for path in ["/api/oidc/login/nope", "/api/oidc/auth/NoPe?code=x&state=y"] {
            let detail = assert_error(app.get(path).await, 400).await;
            assert_eq!(detail, "Unknown IdP 'nope'");
        }

        // Without providers the routes don't exist.
        let plain = spawn_app(backend).await;
        for path in ["/api/oidc/login/testidp", "/api/oidc/auth/testidp"] {
            assert_error(plain.get(path).await, 404).await;
        }
        assert_eq!(
            plain.get_json("/api/auth_settings").await["oidc_providers"],
            json!({})
        );
    }
);

db_test!(
    async fn oidc_provider_down_at_start_up_is_retried_later(backend: Backend) {
        // The provider is down when Scribe starts and at the first login: Scribe runs,
        // answers 503, and discovers the provider once it is back (same issuer).
        let provider = OidcProvider::start().await;
        let port = provider.port();
        let options = provider.options().clone();
        let entry = provider_config(&provider, json!({}));
        provider.stop().await;
        let app = spawn_app_with(
            backend,
            json!({"security": {"oidc_providers": {IDP: entry}}}),
        )
        .await;
        let detail = assert_error(app.get("/api/oidc/login/testidp").await, 503).await;
        assert!(detail.contains("can't be reached"), "{detail}");

        let provider = OidcProvider::restart_on(port, &options).await;
        provider
            .register_client(
                CLIENT_ID,
                CLIENT_SECRET,
                "client_secret_basic",
                &[redirect_uri(&app, IDP)],
            )
            .await;
        let token = session_of(&app, "alice").await;
        assert_eq!(info(&app, &token).await["email"], "alice@example.org");

        // The provider restarts with a new signing key: Scribe fetches the new keys.
        provider.stop().await;
        let provider = OidcProvider::restart_on(port, &options).await;
        provider
            .register_client(
                CLIENT_ID,
                CLIENT_SECRET,
                "client_secret_basic",
                &[redirect_uri(&app, IDP)],
            )
            .await;
        // Key refetches are rate-limited (10 s): a cached key set older than that is
        // replaced at once.
        tokio::time::sleep(std::time::Duration::from_secs(11)).await;
        let token = session_of(&app, "alice").await;
        assert_eq!(info(&app, &token).await["email"], "alice@example.org");
    }
);

db_test!(
    async fn oidc_revalidation_follows_the_provider(backend: Backend) {
        let (app, provider) = app_with_provider(backend, json!({}), json!({})).await;
        let alice = session_of(&app, "alice").await;
        let bob = session_of(&app, "bob").await;
        let api = json_body(
            send_as(
                &app,
                Method::POST,
                "/api/users/get_new_api_token?name=script",
                &alice,
            )
            .await,
            200,
        )
        .await;
        let api = api.as_str().unwrap().to_owned();

        // Nothing changed at the provider: nothing changes here.
        let report = revalidate(&app).await;
        assert!(report.contains("checked 2"), "{report}");
        json_body(add_banner(&app, &bob).await, 200).await;
        info(&app, &alice).await;

        // bob loses the admin role (keeps the user role): his session loses its admin
        // privileges but works.
        provider
            .set_claims(
                "bob",
                json!({"email": "bob@example.org", "email_verified": true, "roles": ["scribe-user"]}),
            )
            .await;
        // alice is removed from the provider: every token of hers goes.
        provider.delete_account("alice").await;
        let report = revalidate(&app).await;
        assert!(
            report.contains("1 lost access (2 tokens deleted)"),
            "{report}"
        );
        assert!(
            report.contains("1 lost the admin role (1 tokens lost admin privileges)"),
            "{report}"
        );
        assert_admin_stripped(&app, &bob).await;
        info(&app, &bob).await;
        for token in [&alice, &api] {
            assert_token_revoked(&app, token).await;
        }
        // Scribe asked with the users' refresh tokens, authenticated as configured.
        let refreshes = auth_methods(&provider, "refresh_token").await;
        assert!(refreshes.len() >= 4, "{refreshes:?}");
        assert!(
            refreshes.iter().all(|m| m == "client_secret_basic"),
            "{refreshes:?}"
        );

        // The provider is down: nothing changes (an outage doesn't log anybody out).
        provider.stop().await;
        let report = revalidate(&app).await;
        assert!(report.contains("2 unanswered"), "{report}");
        info(&app, &bob).await;
    }
);
