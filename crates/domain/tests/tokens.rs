//! Session and API tokens against a real, migrated SQLite database:
//! authentication, rolling sessions, API tokens, listing, invalidation,
//! permission checks and the cleanup.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use scribe_tests::db_test;

use chrono::{Duration, Utc};
use common::*;
use scribe_domain::entities::{login_failures, tokens as token_rows_entity};
use scribe_domain::tokens::{self, hash_token};
use sea_orm::{ActiveModelTrait, EntityTrait, PaginatorTrait, Set};

/// For tests that change tokens in the database behind the server's back.
const NO_SESSION_CACHE: &str = "security:\n  tokens:\n    session_cache_seconds: 0\n";

db_test!(
    async fn tokens_are_stored_only_as_hashes(backend: Backend) {
        let d = domain(backend).await;
        let id = verified_user(&d, "a@example.org").await;
        let token = login(&d, "a@example.org", PASSWORD).await;
        assert_eq!(token.value.len(), 43);
        let rows = token_rows(&d, id).await;
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].token_hash, hash_token(&token.value));
        assert_ne!(rows[0].token_hash, token.value);
        let expires = rows[0].expires_at.unwrap();
        assert!(
            (expires - Utc::now() - Duration::minutes(60))
                .num_seconds()
                .abs()
                < 5
        );
    }
);

db_test!(
    async fn unknown_empty_and_expired_tokens_are_refused(backend: Backend) {
        let d = domain_with(backend, NO_SESSION_CACHE).await;
        verified_user(&d, "a@example.org").await;
        let (token, session) = session(&d, "a@example.org").await;
        for value in ["", "nope", &"x".repeat(10_000)] {
            assert_err(
                tokens::authenticate(&d, value).await,
                "unauthenticated",
                "Could not validate token",
            );
        }
        set_token_expiry(
            &d,
            session.token_id,
            Some(Utc::now() - Duration::seconds(1)),
        )
        .await;
        assert_err(
            tokens::authenticate(&d, &token.value).await,
            "unauthenticated",
            "Could not validate token",
        );
    }
);

db_test!(
    async fn last_usage_is_written_at_most_once_a_minute(backend: Backend) {
        let d = domain_with(backend, NO_SESSION_CACHE).await;
        let id = verified_user(&d, "a@example.org").await;
        let (token, session) = session(&d, "a@example.org").await;
        let recent = Utc::now() - Duration::seconds(30);
        set_last_usage(&d, session.token_id, recent).await;
        tokens::authenticate(&d, &token.value).await.unwrap();
        // (PostgreSQL keeps microseconds.)
        let unchanged = token_rows(&d, id).await[0].last_usage;
        assert!(
            (unchanged - recent).num_milliseconds().abs() < 1,
            "{unchanged}"
        );

        let old = Utc::now() - Duration::minutes(5);
        set_last_usage(&d, session.token_id, old).await;
        tokens::authenticate(&d, &token.value).await.unwrap();
        let usage = token_rows(&d, id).await[0].last_usage;
        assert!(usage > Utc::now() - Duration::seconds(5), "{usage}");
    }
);

db_test!(
    async fn cookie_sessions_rotate_near_expiry_with_a_grace_period(backend: Backend) {
        // The test ends the grace period in the database, behind the session cache.
        let d = domain_with(backend, NO_SESSION_CACHE).await;
        let id = verified_user(&d, "a@example.org").await;
        let (token, session) = session(&d, "a@example.org").await;

        // Far from expiry: nothing happens.
        assert_eq!(
            tokens::roll_session(&d, &session, true).await.unwrap(),
            None
        );

        // 9 minutes 59 seconds left: floor is 9 < 10, so it rolls.
        set_token_expiry(
            &d,
            session.token_id,
            Some(Utc::now() + Duration::seconds(599)),
        )
        .await;
        let near = tokens::authenticate(&d, &token.value).await.unwrap();
        let rolled = tokens::roll_session(&d, &near, true)
            .await
            .unwrap()
            .unwrap();
        assert_ne!(rolled.value, token.value);
        assert_eq!(rolled.lifetime, Some(Duration::minutes(60)));
        let rows = token_rows(&d, id).await;
        assert_eq!(rows.len(), 1, "the same row gets the new value");
        assert_eq!(rows[0].token_hash, hash_token(&rolled.value));
        assert!(rows[0].expires_at.unwrap() > Utc::now() + Duration::minutes(59));

        // Both values work during the grace period, as the same session.
        let via_new = tokens::authenticate(&d, &rolled.value).await.unwrap();
        let via_old = tokens::authenticate(&d, &token.value).await.unwrap();
        assert_eq!(via_new.token_id, session.token_id);
        assert_eq!(via_old.token_id, session.token_id);
        // A second request that had decided to roll with the old state loses the race.
        assert_eq!(tokens::roll_session(&d, &near, true).await.unwrap(), None);

        // After the grace period only the new value works.
        let mut row: token_rows_entity::ActiveModel = token_rows(&d, id).await.remove(0).into();
        row.previous_valid_until = Set(Some(Utc::now() - Duration::seconds(1)));
        row.update(&d.db).await.unwrap();
        assert_err(
            tokens::authenticate(&d, &token.value).await,
            "unauthenticated",
            "Could not validate token",
        );
        tokens::authenticate(&d, &rolled.value).await.unwrap();
    }
);

db_test!(
    async fn bearer_sessions_slide_without_a_new_value(backend: Backend) {
        // The test moves the expiry in the database, behind the session cache.
        let d = domain_with(backend, NO_SESSION_CACHE).await;
        let id = verified_user(&d, "a@example.org").await;
        let (token, session) = session(&d, "a@example.org").await;
        set_token_expiry(
            &d,
            session.token_id,
            Some(Utc::now() + Duration::minutes(3)),
        )
        .await;
        let near = tokens::authenticate(&d, &token.value).await.unwrap();
        assert_eq!(tokens::roll_session(&d, &near, false).await.unwrap(), None);
        let row = token_rows(&d, id).await.remove(0);
        assert_eq!(row.token_hash, hash_token(&token.value));
        assert!(row.expires_at.unwrap() > Utc::now() + Duration::minutes(59));
        assert_eq!(row.previous_hash, None);
    }
);

db_test!(
    async fn api_tokens_never_expire_roll_or_carry_admin_rights(backend: Backend) {
        let d = domain_with(
        backend,
        "security:\n  local_account:\n    user_provisioning:\n      0: {email: root@example.org, password: Root-Password-1, is_admin: true}\n",
    )
    .await;
        scribe_domain::accounts::provision_users(&d).await.unwrap();
        let admin_login = scribe_domain::accounts::login_local(
            &d,
            scribe_domain::accounts::LoginAttempt {
                scope: "admin",
                ..attempt("root@example.org", "Root-Password-1")
            },
        )
        .await
        .unwrap();
        let admin_session = tokens::authenticate(&d, &admin_login.value).await.unwrap();
        assert!(admin_session.admin_privileges);

        let value = tokens::create_api_token(&d, &admin_session, "backup script")
            .await
            .unwrap();
        let api = tokens::authenticate(&d, &value).await.unwrap();
        assert!(api.explicit);
        assert!(!api.admin_privileges);
        assert_eq!(api.expires_at, None);
        api.require_admin().unwrap_err();
        assert_eq!(tokens::roll_session(&d, &api, true).await.unwrap(), None);
        assert_eq!(tokens::roll_session(&d, &api, false).await.unwrap(), None);
    }
);

db_test!(
    async fn api_tokens_can_be_switched_off_per_provider(backend: Backend) {
        let d = domain_with(
        backend,
        "security:\n  local_account:\n    allow_creation_of_api_tokens: false\n  ldap_providers:\n    Corp:\n      server_address: ldap://ldap.example.org\n      service_account_auth: {user: cn=svc, password: x}\n      username_attributes: [uid]\n      uid_attribute: uid\n      mail_attribute: mail\n      user_query: {base_dn: dc=example, filter: objectClass=person}\n",
    )
    .await;
        verified_user(&d, "a@example.org").await;
        let (_, local) = session(&d, "a@example.org").await;
        let before = snapshot(&d).await;
        assert_err(
            tokens::create_api_token(&d, &local, "x").await,
            "invalid",
            "Creation of api tokens is disabled for your account type",
        );
        assert_eq!(snapshot(&d).await, before);

        // LDAP users follow their provider's setting (on by default).
        let ldap = external_user(&d, "ldap", "Corp", "l@example.org").await;
        let issued = tokens::issue_session(&d, ldap, "ldap login", false)
            .await
            .unwrap();
        let ldap_session = tokens::authenticate(&d, &issued.value).await.unwrap();
        tokens::create_api_token(&d, &ldap_session, "x")
            .await
            .unwrap();
        // A provider that is no longer configured allows none.
        let gone = external_user(&d, "oidc", "Removed", "o@example.org").await;
        let issued = tokens::issue_session(&d, gone, "oidc login", false)
            .await
            .unwrap();
        let gone_session = tokens::authenticate(&d, &issued.value).await.unwrap();
        assert_err(
            tokens::create_api_token(&d, &gone_session, "x").await,
            "invalid",
            "disabled",
        );
    }
);

db_test!(
    async fn token_list_is_newest_first_without_expired_ones(backend: Backend) {
        let d = domain(backend).await;
        let id = verified_user(&d, "a@example.org").await;
        let (_, first) = session(&d, "a@example.org").await;
        let (_, second) = session(&d, "a@example.org").await;
        let (_, expired) = session(&d, "a@example.org").await;
        tokens::create_api_token(&d, &first, "api").await.unwrap();
        let api_id = token_rows(&d, id).await.last().unwrap().id;
        let now = Utc::now();
        set_last_usage(&d, first.token_id, now - Duration::minutes(1)).await;
        set_last_usage(&d, second.token_id, now - Duration::minutes(30)).await;
        set_last_usage(&d, api_id, now - Duration::minutes(10)).await;
        set_token_expiry(&d, expired.token_id, Some(now - Duration::minutes(1))).await;

        let list = tokens::list_tokens(&d, id).await.unwrap();
        let ids: Vec<i64> = list.iter().map(|t| t.id).collect();
        assert_eq!(ids, vec![first.token_id, api_id, second.token_id]);
        let api = &list[1];
        assert_eq!(api.name, "api");
        assert!(api.explicit && !api.admin_privileges && api.expires_at.is_none());
        assert_eq!(list[0].name, "test-agent/1.0");
        assert!(!list[0].explicit && list[0].expires_at.is_some());
    }
);

db_test!(
    async fn invalidation_touches_only_the_callers_tokens(backend: Backend) {
        let d = domain(backend).await;
        let a = verified_user(&d, "a@example.org").await;
        let b = verified_user(&d, "b@example.org").await;
        let (a_token, a_session) = session(&d, "a@example.org").await;
        let (_, a_other) = session(&d, "a@example.org").await;
        let (b_token, b_session) = session(&d, "b@example.org").await;

        // Foreign and unknown ids: Ok, nothing deleted.
        let before = snapshot(&d).await;
        tokens::invalidate_token(&d, a, b_session.token_id)
            .await
            .unwrap();
        tokens::invalidate_token(&d, a, 987_654).await.unwrap();
        assert_eq!(snapshot(&d).await, before);

        tokens::invalidate_token(&d, a, a_other.token_id)
            .await
            .unwrap();
        assert_eq!(token_rows(&d, a).await.len(), 1);
        tokens::logout(&d, &a_session).await.unwrap();
        assert_err(
            tokens::authenticate(&d, &a_token.value).await,
            "unauthenticated",
            "Could not validate token",
        );

        session(&d, "a@example.org").await;
        tokens::create_api_token(&d, &b_session, "b's")
            .await
            .unwrap();
        tokens::invalidate_all_tokens(&d, a).await.unwrap();
        assert!(token_rows(&d, a).await.is_empty());
        assert_eq!(token_rows(&d, b).await.len(), 2);
        tokens::authenticate(&d, &b_token.value).await.unwrap();
    }
);

db_test!(
    async fn permission_checks_use_project_ws_words(backend: Backend) {
        let d = domain_with(
            backend,
            "terms_of_services:\n  1: {name: Rules, version: 2, tos_html: x}\n",
        )
        .await;
        scribe_domain::accounts::signup(&d, "new@example.org", PASSWORD)
            .await
            .unwrap();
        let (_, new) = session(&d, "new@example.org").await;
        assert_err(
        new.require_verified(),
        "forbidden",
        "Your email address needs to be verified to access this route. Please click on the link sent to 'new@example.org' or request a new confirmation email.",
    );
        assert_err(new.require_admin(), "forbidden", "Not enough permissions");
        assert_err(
        new.require_tos_accepted(&d.config),
        "forbidden",
        "You need to agree to the newest version of the terms of services of this instance to access this route",
    );
        new.require_not_provisioned().unwrap();
        // Without any ToS configured there is nothing to accept.
        let plain = domain(backend).await;
        verified_user(&plain, "a@example.org").await;
        let (_, s) = session(&plain, "a@example.org").await;
        s.require_tos_accepted(&plain.config).unwrap();
        s.require_verified().unwrap();
    }
);

db_test!(
    async fn cleanup_keeps_each_users_latest_token_and_recent_failures(backend: Backend) {
        let d = domain(backend).await;
        let a = verified_user(&d, "a@example.org").await;
        let b = verified_user(&d, "b@example.org").await;
        let now = Utc::now();
        let (_, a_old) = session(&d, "a@example.org").await;
        let (_, a_latest_expired) = session(&d, "a@example.org").await;
        let (_, b_live) = session(&d, "b@example.org").await;
        let (_, b_expired) = session(&d, "b@example.org").await;
        set_token_expiry(&d, a_old.token_id, Some(now - Duration::hours(5))).await;
        set_last_usage(&d, a_old.token_id, now - Duration::hours(6)).await;
        set_token_expiry(
            &d,
            a_latest_expired.token_id,
            Some(now - Duration::hours(1)),
        )
        .await;
        set_last_usage(&d, a_latest_expired.token_id, now - Duration::hours(2)).await;
        set_token_expiry(&d, b_expired.token_id, Some(now - Duration::hours(1))).await;
        set_last_usage(&d, b_expired.token_id, now - Duration::hours(2)).await;

        for minutes_ago in [5, 120] {
            login_failures::ActiveModel {
                account: Set("project-W:x@example.org".to_owned()),
                client_address: Set("192.0.2.1".to_owned()),
                failed_at: Set(now - Duration::minutes(minutes_ago)),
                ..Default::default()
            }
            .insert(&d.db)
            .await
            .unwrap();
        }

        let deleted = tokens::purge_expired(&d).await.unwrap();
        assert_eq!(deleted, 3, "two tokens and one failure");
        let a_ids: Vec<i64> = token_rows(&d, a).await.iter().map(|t| t.id).collect();
        assert_eq!(a_ids, vec![a_latest_expired.token_id]);
        let b_ids: Vec<i64> = token_rows(&d, b).await.iter().map(|t| t.id).collect();
        assert_eq!(b_ids, vec![b_live.token_id]);
        assert_eq!(
            login_failures::Entity::find().count(&d.db).await.unwrap(),
            1
        );
        // The expired token kept for the inactivity cleanup still doesn't log in
        // and isn't listed.
        assert!(tokens::list_tokens(&d, a).await.unwrap().is_empty());
        assert_eq!(tokens::purge_expired(&d).await.unwrap(), 0);
    }
);
