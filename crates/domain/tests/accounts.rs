//! Local accounts against a real, migrated SQLite database: sign-up,
//! activation and email-change links, password reset and change, login and
//! its throttling, ToS, deletion, provisioning and the initial admin.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use scribe_tests::db_test;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use chrono::{Duration, Utc};
use common::*;
use scribe_domain::accounts::{self, LoginAttempt, UserType, LOCAL_PROVIDER_NAME};
use scribe_domain::entities::{login_failures, users};
use scribe_domain::error::LocSegment;
use scribe_domain::links::{self, LinkClaims, LinkPurpose};
use scribe_domain::passwords::PASSWORD_RULE_MESSAGE;
use scribe_domain::secret_key::SecretKey;
use scribe_domain::tokens;
use scribe_domain::DomainError;
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, Set};

fn locs(err: DomainError) -> Vec<Vec<LocSegment>> {
    match err {
        DomainError::Validation(violations) => violations.into_iter().map(|v| v.loc).collect(),
        other => panic!("expected a 422, got {other:?}"),
    }
}

fn loc(field: &str) -> Vec<LocSegment> {
    vec!["body".into(), field.into()]
}

// ------------------------------------------------------------------ sign-up

db_test!(
    async fn signup_mails_a_link_that_activates_once(backend: Backend) {
        let d = domain(backend).await;
        let id = accounts::signup(&d, "Jane.Doe@Example.ORG", PASSWORD)
            .await
            .unwrap();
        let row = user_row(&d, id).await;
        assert_eq!(
            row.email, "Jane.Doe@example.org",
            "domain lowercased, local part kept"
        );
        assert!(!row.is_verified);
        assert_eq!(row.user_type, "local");
        assert_eq!(row.provider_name, LOCAL_PROVIDER_NAME);
        assert!(row
            .password_hash
            .unwrap()
            .starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));

        let mails = mails(&d).await;
        assert_eq!(mails.len(), 1);
        assert_eq!(mails[0].to, vec!["Jane.Doe@example.org".to_owned()]);
        let link = mails[0].link();
        assert!(
            link.starts_with(&format!("{CLIENT_URL}/local/activate?token=")),
            "{link}"
        );

        accounts::activate(&d, &mails[0].token()).await.unwrap();
        assert!(user_row(&d, id).await.is_verified);
        assert_err(
            accounts::activate(&d, &mails[0].token()).await,
            "unauthenticated",
            "Could not validate account activation token",
        );
    }
);

db_test!(
    async fn signup_refuses_bad_input_and_changes_nothing(backend: Backend) {
        let d = domain_with(
            backend,
            "security:\n  local_account:\n    allowed_email_domains: [example.org]\n",
        )
        .await;
        verified_user(&d, "taken@example.org").await;
        let before = snapshot(&d).await;

        // Both problems at once, in body order, worded like pydantic.
        let err = accounts::signup(&d, "not-an-address", "short")
            .await
            .unwrap_err();
        let DomainError::Validation(violations) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            violations[1].msg,
            format!("Value error, {PASSWORD_RULE_MESSAGE}")
        );
        assert_eq!(locs(err), vec![loc("email"), loc("password")]);
        assert_eq!(
            locs(
                accounts::signup(&d, "new@example.org", "alllowercase-123")
                    .await
                    .unwrap_err()
            ),
            vec![loc("password")]
        );
        // Special-use domains are no address to sign up with.
        assert_eq!(
            locs(
                accounts::signup(&d, "admin@localhost", PASSWORD)
                    .await
                    .unwrap_err()
            ),
            vec![loc("email")]
        );
        assert_err(
            accounts::signup(&d, "x@other.org", PASSWORD).await,
            "invalid",
            "'other.org' is not an allowed email domain on this server",
        );
        // The domain is compared after normalising.
        assert_err(
            accounts::signup(&d, "taken@EXAMPLE.org", PASSWORD).await,
            "invalid",
            "E-Mail is already in use by another local account",
        );
        assert_eq!(snapshot(&d).await, before);

        // The local part keeps its case, so this is another account.
        accounts::signup(&d, "Taken@example.org", PASSWORD)
            .await
            .unwrap();
    }
);

db_test!(
    async fn signup_checks_input_before_the_mode(backend: Backend) {
        let d = domain_with(
            backend,
            "security:\n  local_account:\n    mode: no_signup\n",
        )
        .await;
        assert_eq!(
            locs(
                accounts::signup(&d, "a@example.org", "weak")
                    .await
                    .unwrap_err()
            ),
            vec![loc("password")]
        );
        assert_err(
            accounts::signup(&d, "a@example.org", PASSWORD).await,
            "not_allowed",
            "Signup of new local accounts is disabled on this server",
        );
        assert_eq!(users::Entity::find().count(&d.db).await.unwrap(), 0);
    }
);

// ------------------------------------------------------------ activation

db_test!(
    async fn activation_links_are_bound_signed_and_expire(backend: Backend) {
        let d = domain(backend).await;
        let id = accounts::signup(&d, "a@example.org", PASSWORD)
            .await
            .unwrap();
        let good = last_mail_to(&d, "a@example.org").await.token();
        let before = snapshot(&d).await;

        let key = SecretKey::from_hex(SECRET_KEY).unwrap();
        let other_key = SecretKey::from_hex(&"11".repeat(32)).unwrap();
        let claims = |purpose, generation, at| {
            LinkClaims::new(purpose, id, generation, "a@example.org", None, at)
        };
        let expired = links::sign(
            &key,
            &claims(LinkPurpose::Activation, 1, Utc::now() - Duration::hours(25)),
        );
        let foreign = links::sign(&other_key, &claims(LinkPurpose::Activation, 1, Utc::now()));
        let reset = links::sign(&key, &claims(LinkPurpose::PasswordReset, 1, Utc::now()));
        let mut tampered = good.clone();
        tampered.insert(3, 'x');
        for token in [
            expired,
            foreign,
            reset,
            tampered,
            String::new(),
            "garbage".to_owned(),
        ] {
            assert_err(
                accounts::activate(&d, &token).await,
                "unauthenticated",
                "Could not validate account activation token",
            );
        }
        // Signed for a user that doesn't exist (any more).
        let ghost = links::sign(
            &key,
            &LinkClaims::new(
                LinkPurpose::Activation,
                999,
                1,
                "ghost@example.org",
                None,
                Utc::now(),
            ),
        );
        assert_err(
            accounts::activate(&d, &ghost).await,
            "invalid",
            "No user with email 'ghost@example.org' exists",
        );
        assert_eq!(snapshot(&d).await, before);
        accounts::activate(&d, &good).await.unwrap();
    }
);

db_test!(
    async fn resending_supersedes_the_previous_link(backend: Backend) {
        let d = domain(backend).await;
        let id = accounts::signup(&d, "a@example.org", PASSWORD)
            .await
            .unwrap();
        let first = last_mail_to(&d, "a@example.org").await.token();
        let unverified = user(&d, id).await;
        accounts::resend_activation_email(&d, &unverified)
            .await
            .unwrap();
        let second = last_mail_to(&d, "a@example.org").await.token();
        assert_ne!(first, second);
        assert_err(
            accounts::activate(&d, &first).await,
            "unauthenticated",
            "Could not validate account activation token",
        );
        accounts::activate(&d, &second).await.unwrap();

        let verified = user(&d, id).await;
        assert_err(
            accounts::resend_activation_email(&d, &verified).await,
            "invalid",
            "This user is already verified",
        );
    }
);

db_test!(
    async fn resending_is_for_local_unprovisioned_users(backend: Backend) {
        let d = domain_with(
        backend,
        "security:\n  local_account:\n    user_provisioning:\n      1: {email: p@example.org, password: provisioned-pw}\n",
    )
    .await;
        accounts::provision_users(&d).await.unwrap();
        // Even unverified, a provisioned user gets the provisioned 403 first.
        let provisioned = user_by_email(&d, "p@example.org").await.unwrap();
        users::Entity::update_many()
            .col_expr(users::Column::IsVerified, Expr::value(false))
            .filter(users::Column::Id.eq(provisioned.id))
            .exec(&d.db)
            .await
            .unwrap();
        let oidc = external_user(&d, "oidc", "Keycloak", "o@example.org").await;
        let mut oidc_user = user(&d, oidc).await;
        oidc_user.is_verified = false;
        let before = snapshot(&d).await;
        assert_err(
            accounts::resend_activation_email(&d, &user(&d, provisioned.id).await).await,
            "forbidden",
            "provisioned through the admin config file",
        );
        assert_err(
            accounts::resend_activation_email(&d, &oidc_user).await,
            "forbidden",
            "Only users who are logged in with a local Project-W account",
        );
        assert_eq!(snapshot(&d).await, before);
    }
);

// ------------------------------------------------------------ login

db_test!(
    async fn unverified_users_log_in_and_tokens_are_named_by_user_agent(backend: Backend) {
        let d = domain(backend).await;
        let id = accounts::signup(&d, "a@example.org", PASSWORD)
            .await
            .unwrap();
        let token = login(&d, "a@example.org", PASSWORD).await;
        assert_eq!(token.lifetime, Some(Duration::minutes(60)));
        let session = tokens::authenticate(&d, &token.value).await.unwrap();
        assert_eq!(session.user.id, id);
        assert!(!session.user.is_verified);
        assert!(!session.admin_privileges && !session.explicit);
        assert_eq!(session.user.user_type, UserType::Local);
        assert_eq!(session.user.provider_name, "project-W");

        let mut anonymous = attempt("a@EXAMPLE.org", PASSWORD);
        anonymous.user_agent = None;
        accounts::login_local(&d, anonymous).await.unwrap();
        let names: Vec<String> = token_rows(&d, id)
            .await
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, vec!["test-agent/1.0", "Unknown device"]);
    }
);

db_test!(
    async fn wrong_credentials_all_read_the_same(backend: Backend) {
        let d = domain(backend).await;
        verified_user(&d, "a@example.org").await;
        for (username, password) in [
            ("a@example.org", OTHER_PASSWORD),
            ("nobody@example.org", PASSWORD),
            ("not an email", PASSWORD),
            ("A@example.org", PASSWORD), // the local part is case-sensitive
        ] {
            assert_err(
                accounts::login_local(&d, attempt(username, password)).await,
                "unauthenticated",
                "Incorrect username or password",
            );
        }
        // Each failure is counted for throttling, and nothing else changed.
        assert_eq!(
            login_failures::Entity::find().count(&d.db).await.unwrap(),
            4
        );
        assert!(token_rows(&d, 1).await.is_empty());
    }
);

db_test!(
    async fn admin_tokens_need_the_admin_scope_and_an_admin(backend: Backend) {
        let d = domain_with(
        backend,
        "security:\n  local_account:\n    user_provisioning:\n      0: {email: root@example.org, password: Root-Password-1, is_admin: true}\n",
    )
    .await;
        accounts::provision_users(&d).await.unwrap();
        verified_user(&d, "user@example.org").await;
        let with_scope =
            |username: &'static str, password: &'static str, scope: &'static str| LoginAttempt {
                scope,
                ..attempt(username, password)
            };

        let plain =
            accounts::login_local(&d, with_scope("root@example.org", "Root-Password-1", ""))
                .await
                .unwrap();
        assert!(
            !tokens::authenticate(&d, &plain.value)
                .await
                .unwrap()
                .admin_privileges
        );
        let admin = accounts::login_local(
            &d,
            with_scope("root@example.org", "Root-Password-1", "admin"),
        )
        .await
        .unwrap();
        let admin = tokens::authenticate(&d, &admin.value).await.unwrap();
        assert!(admin.admin_privileges);
        admin.require_admin().unwrap();

        let before = snapshot(&d).await;
        assert_err(
            accounts::login_local(&d, with_scope("user@example.org", PASSWORD, "admin")).await,
            "invalid",
            "Your user isn't an admin",
        );
        assert_err(
            accounts::login_local(
                &d,
                with_scope("root@example.org", "Root-Password-1", "admin write"),
            )
            .await,
            "invalid",
            "We don't support that token permission scope",
        );
        assert_eq!(snapshot(&d).await, before);
    }
);

db_test!(
    async fn project_w_hashes_verify_and_are_rehashed_on_login(backend: Backend) {
        let d = domain(backend).await;
        let id = verified_user(&d, "a@example.org").await;
        // Project-W's argon2-cffi parameters (t=3, p=4), with less memory for speed.
        let salt = SaltString::encode_b64(b"saltsaltsaltsalt").unwrap();
        let old = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 3, 4, Some(32)).unwrap(),
        )
        .hash_password(PASSWORD.as_bytes(), &salt)
        .unwrap()
        .to_string();
        let mut row: users::ActiveModel = user_row(&d, id).await.into();
        row.password_hash = Set(Some(old.clone()));
        row.update(&d.db).await.unwrap();

        assert_err(
            accounts::login_local(&d, attempt("a@example.org", OTHER_PASSWORD)).await,
            "unauthenticated",
            "Incorrect",
        );
        assert_eq!(user_row(&d, id).await.password_hash.unwrap(), old);
        login(&d, "a@example.org", PASSWORD).await;
        let rehashed = user_row(&d, id).await.password_hash.unwrap();
        assert!(
            rehashed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{rehashed}"
        );
        login(&d, "a@example.org", PASSWORD).await;
        assert_eq!(user_row(&d, id).await.password_hash.unwrap(), rehashed);
    }
);

// ------------------------------------------------------------ throttling

db_test!(
    async fn guessing_is_throttled_per_account_and_address_but_the_owner_gets_in(backend: Backend) {
        let d = domain(backend).await;
        verified_user(&d, "a@example.org").await;
        let from = |address: &'static str, password: &'static str| LoginAttempt {
            client_address: address,
            ..attempt("a@example.org", password)
        };
        for _ in 0..10 {
            assert_err(
                accounts::login_local(&d, from("198.51.100.7", OTHER_PASSWORD)).await,
                "unauthenticated",
                "Incorrect username or password",
            );
        }
        // The 11th attempt from there is refused before the password is looked at.
        match accounts::login_local(&d, from("198.51.100.7", PASSWORD)).await {
            Err(DomainError::Throttled {
                detail,
                retry_after_secs,
            }) => {
                assert!(
                    detail.starts_with("Too many failed login attempts"),
                    "{detail}"
                );
                assert!(
                    (840..=900).contains(&retry_after_secs),
                    "{retry_after_secs}"
                );
            }
            other => panic!("expected 429, got {other:?}"),
        }
        // Refused attempts aren't counted again.
        assert_eq!(
            login_failures::Entity::find().count(&d.db).await.unwrap(),
            10
        );
        // The owner, elsewhere, is not locked out.
        accounts::login_local(&d, from("203.0.113.9", PASSWORD))
            .await
            .unwrap();
        // Case variants of the name count as the same account.
        assert!(matches!(
            accounts::login_local(
                &d,
                LoginAttempt {
                    client_address: "198.51.100.7",
                    ..attempt("a@EXAMPLE.ORG", PASSWORD)
                }
            )
            .await,
            Err(DomainError::Throttled { .. })
        ));
    }
);

db_test!(
    async fn one_address_spraying_many_accounts_is_throttled(backend: Backend) {
        let d = domain_with(
        backend,
        "security:\n  login_throttling:\n    max_failures_per_address: 3\n    address_window_minutes: 30\n",
    )
    .await;
        verified_user(&d, "a@example.org").await;
        for name in ["x@example.org", "y@example.org", "z@example.org"] {
            assert_err(
                accounts::login_local(&d, attempt(name, PASSWORD)).await,
                "unauthenticated",
                "Incorrect",
            );
        }
        match accounts::login_local(&d, attempt("a@example.org", PASSWORD)).await {
            Err(DomainError::Throttled {
                retry_after_secs, ..
            }) => assert!(
                (1700..=1800).contains(&retry_after_secs),
                "{retry_after_secs}"
            ),
            other => panic!("expected 429, got {other:?}"),
        }
        accounts::login_local(
            &d,
            LoginAttempt {
                client_address: "192.0.2.200",
                ..attempt("a@example.org", PASSWORD)
            },
        )
        .await
        .unwrap();
    }
);

db_test!(
    async fn old_failures_age_out_and_a_success_forgets_the_owners_typos(backend: Backend) {
        let d = domain_with(
            backend,
            "security:\n  login_throttling:\n    max_failures_per_account: 2\n",
        )
        .await;
        verified_user(&d, "a@example.org").await;
        for _ in 0..2 {
            let _ = accounts::login_local(&d, attempt("a@example.org", OTHER_PASSWORD)).await;
        }
        assert!(matches!(
            accounts::login_local(&d, attempt("a@example.org", PASSWORD)).await,
            Err(DomainError::Throttled { .. })
        ));
        // Sixteen minutes later the window has passed.
        login_failures::Entity::update_many()
            .col_expr(
                login_failures::Column::FailedAt,
                Expr::value(Utc::now() - Duration::minutes(16)),
            )
            .exec(&d.db)
            .await
            .unwrap();
        let _ = accounts::login_local(&d, attempt("a@example.org", OTHER_PASSWORD)).await;
        login(&d, "a@example.org", PASSWORD).await;
        // The success cleared this account's failures from this address.
        assert_eq!(
            login_failures::Entity::find().count(&d.db).await.unwrap(),
            0
        );
    }
);

// ------------------------------------------------------------ password reset

db_test!(
    async fn password_reset_works_once_and_ends_sessions(backend: Backend) {
        let d = domain(backend).await;
        let id = verified_user(&d, "a@example.org").await;
        let (_, old_session) = session(&d, "a@example.org").await;
        let api_token = tokens::create_api_token(&d, &old_session, "script")
            .await
            .unwrap();
        let mails_before = mails(&d).await.len();

        accounts::request_password_reset(&d, "a@example.org")
            .await
            .unwrap();
        let mails = wait_for_mails(&d, mails_before + 1).await;
        let mail = mails.last().unwrap();
        assert_eq!(mail.to, vec!["a@example.org".to_owned()]);
        assert!(mail
            .link()
            .starts_with(&format!("{CLIENT_URL}/auth/local/reset-password?token=")));
        let token = mail.token();

        let before = snapshot(&d).await;
        assert_eq!(
            locs(
                accounts::reset_password(&d, &token, "weak")
                    .await
                    .unwrap_err()
            ),
            vec![loc("new_password")]
        );
        assert_err(
            accounts::reset_password(&d, "nonsense", OTHER_PASSWORD).await,
            "unauthenticated",
            "Could not validate password reset token",
        );
        // An activation-type link is no reset link.
        let activation_token = links::sign(
            &SecretKey::from_hex(SECRET_KEY).unwrap(),
            &LinkClaims::new(
                LinkPurpose::Activation,
                id,
                1,
                "a@example.org",
                None,
                Utc::now(),
            ),
        );
        assert_err(
            accounts::reset_password(&d, &activation_token, OTHER_PASSWORD).await,
            "unauthenticated",
            "Could not validate password reset token",
        );
        assert_eq!(snapshot(&d).await, before);

        accounts::reset_password(&d, &token, OTHER_PASSWORD)
            .await
            .unwrap();
        assert_err(
            accounts::reset_password(&d, &token, "Third-Password-44").await,
            "unauthenticated",
            "Could not validate password reset token",
        );
        assert_err(
            tokens::authenticate(&d, "definitely-not-a-token").await,
            "unauthenticated",
            "Could not validate token",
        );
        // Sessions ended, the API token stays.
        let remaining = token_rows(&d, id).await;
        assert_eq!(remaining.len(), 1);
        assert!(remaining[0].explicit);
        tokens::authenticate(&d, &api_token).await.unwrap();
        login(&d, "a@example.org", OTHER_PASSWORD).await;
    }
);

db_test!(
    async fn reset_requests_reveal_nothing(backend: Backend) {
        let d = domain_with(
        backend,
        "security:\n  local_account:\n    user_provisioning:\n      3: {email: p@example.org, password: provisioned-pw}\n",
    )
    .await;
        accounts::provision_users(&d).await.unwrap();
        assert_err(
            accounts::request_password_reset(&d, "no-at-sign").await,
            "invalid",
            "The provided email is not a valid email address",
        );
        // Known or not, the answer is the same Ok.
        accounts::request_password_reset(&d, "nobody@example.org")
            .await
            .unwrap();
        accounts::request_password_reset(&d, "p@example.org")
            .await
            .unwrap();
        // What the background half did: nothing for either.
        let address = |text| scribe_domain::email_address::EmailAddress::parse(text).unwrap();
        assert!(
            !accounts::send_password_reset_link(&d, &address("nobody@example.org"))
                .await
                .unwrap()
        );
        assert!(
            !accounts::send_password_reset_link(&d, &address("p@example.org"))
                .await
                .unwrap()
        );
        verified_user(&d, "a@example.org").await;
        assert!(
            accounts::send_password_reset_link(&d, &address("a@EXAMPLE.org"))
                .await
                .unwrap()
        );
        assert!(mails(&d)
            .await
            .iter()
            .all(|m| m.to != vec!["p@example.org".to_owned()]));
    }
);

db_test!(
    async fn a_newer_reset_link_supersedes_the_older(backend: Backend) {
        let d = domain(backend).await;
        verified_user(&d, "a@example.org").await;
        let address = scribe_domain::email_address::EmailAddress::parse("a@example.org").unwrap();
        accounts::send_password_reset_link(&d, &address)
            .await
            .unwrap();
        let first = last_mail_to(&d, "a@example.org").await.token();
        accounts::send_password_reset_link(&d, &address)
            .await
            .unwrap();
        let second = last_mail_to(&d, "a@example.org").await.token();
        assert_err(
            accounts::reset_password(&d, &first, OTHER_PASSWORD).await,
            "unauthenticated",
            "Could not validate password reset token",
        );
        accounts::reset_password(&d, &second, OTHER_PASSWORD)
            .await
            .unwrap();
    }
);

// ------------------------------------------------------------ email change

db_test!(
    async fn email_change_takes_effect_when_confirmed(backend: Backend) {
        let d = domain_with(
            backend,
            "security:\n  local_account:\n    allowed_email_domains: [example.org, example.com]\n",
        )
        .await;
        let id = verified_user(&d, "old@example.org").await;
        verified_user(&d, "other@example.org").await;
        let me = user(&d, id).await;
        let before = snapshot(&d).await;

        assert_err(
            accounts::change_email(&d, &me, "new@example.org", OTHER_PASSWORD).await,
            "forbidden",
            "Confirmation password invalid",
        );
        assert_eq!(
            locs(
                accounts::change_email(&d, &me, "new@", PASSWORD)
                    .await
                    .unwrap_err()
            ),
            vec![loc("new_email")]
        );
        assert_err(
            accounts::change_email(&d, &me, "new@elsewhere.net", PASSWORD).await,
            "invalid",
            "'elsewhere.net' is not an allowed email domain on this server",
        );
        assert_err(
            accounts::change_email(&d, &me, "other@EXAMPLE.org", PASSWORD).await,
            "invalid",
            "'other@example.org' is already in use by another user",
        );
        assert_eq!(snapshot(&d).await, before);

        accounts::change_email(&d, &me, "New@Example.com", PASSWORD)
            .await
            .unwrap();
        let mail = last_mail_to(&d, "New@example.com").await;
        assert!(mail
            .link()
            .starts_with(&format!("{CLIENT_URL}/local/activate?token=")));
        // Nothing changes until the link is opened.
        assert_eq!(user_row(&d, id).await.email, "old@example.org");
        accounts::activate(&d, &mail.token()).await.unwrap();
        let row = user_row(&d, id).await;
        assert_eq!(row.email, "New@example.com");
        assert!(row.is_verified);
        login(&d, "New@example.com", PASSWORD).await;
        assert_err(
            accounts::activate(&d, &mail.token()).await,
            "unauthenticated",
            "Could not validate account activation token",
        );
    }
);

db_test!(
    async fn email_change_confirmation_fails_if_the_address_was_taken_meanwhile(backend: Backend) {
        let d = domain(backend).await;
        let id = verified_user(&d, "old@example.org").await;
        accounts::change_email(&d, &user(&d, id).await, "wanted@example.org", PASSWORD)
            .await
            .unwrap();
        let token = last_mail_to(&d, "wanted@example.org").await.token();
        accounts::signup(&d, "wanted@example.org", PASSWORD)
            .await
            .unwrap();
        let before = snapshot(&d).await;
        assert_err(
            accounts::activate(&d, &token).await,
            "invalid",
            "'wanted@example.org' is already in use by another user",
        );
        assert_eq!(snapshot(&d).await, before);
    }
);

db_test!(
    async fn email_and_password_changes_are_for_local_unprovisioned_users(backend: Backend) {
        let d = domain_with(
        backend,
        "security:\n  local_account:\n    user_provisioning:\n      0: {email: p@example.org, password: Provisioned-1}\n",
    )
    .await;
        accounts::provision_users(&d).await.unwrap();
        let (_, provisioned) = {
            let token = login(&d, "p@example.org", "Provisioned-1").await;
            let session = tokens::authenticate(&d, &token.value).await.unwrap();
            (token, session)
        };
        let ldap = external_user(&d, "ldap", "Corp", "l@example.org").await;
        let ldap_user = user(&d, ldap).await;
        let before = snapshot(&d).await;
        assert_err(
            accounts::change_email(&d, &provisioned.user, "x@example.org", "Provisioned-1").await,
            "forbidden",
            "provisioned through the admin config file",
        );
        assert_err(
            accounts::change_password(&d, &provisioned, OTHER_PASSWORD, "Provisioned-1").await,
            "forbidden",
            "provisioned through the admin config file",
        );
        assert_err(
            accounts::change_email(&d, &ldap_user, "x@example.org", "whatever").await,
            "forbidden",
            "Only users who are logged in with a local Project-W account",
        );
        assert_err(
            accounts::delete_user(&d, &provisioned.user).await,
            "forbidden",
            "provisioned through the admin config file",
        );
        provisioned.require_not_provisioned().unwrap_err();
        assert_eq!(snapshot(&d).await, before);
    }
);

// ------------------------------------------------------------ password change

db_test!(
    async fn password_change_ends_the_other_sessions_only(backend: Backend) {
        let d = domain(backend).await;
        let id = verified_user(&d, "a@example.org").await;
        let (_, current) = session(&d, "a@example.org").await;
        let (other, _) = session(&d, "a@example.org").await;
        let api_token = tokens::create_api_token(&d, &current, "cron")
            .await
            .unwrap();
        let before = snapshot(&d).await;

        assert_err(
            accounts::change_password(&d, &current, OTHER_PASSWORD, "wrong").await,
            "forbidden",
            "Confirmation password invalid",
        );
        assert_eq!(
            locs(
                accounts::change_password(&d, &current, "weak", PASSWORD)
                    .await
                    .unwrap_err()
            ),
            vec![loc("new_password")]
        );
        assert_eq!(snapshot(&d).await, before);

        accounts::change_password(&d, &current, OTHER_PASSWORD, PASSWORD)
            .await
            .unwrap();
        assert_err(
            tokens::authenticate(&d, &other.value).await,
            "unauthenticated",
            "Could not validate token",
        );
        let ids: Vec<i64> = token_rows(&d, id).await.into_iter().map(|t| t.id).collect();
        assert_eq!(ids.len(), 2);
        assert!(ids.contains(&current.token_id));
        tokens::authenticate(&d, &api_token).await.unwrap();
        assert_err(
            accounts::login_local(&d, attempt("a@example.org", PASSWORD)).await,
            "unauthenticated",
            "Incorrect",
        );
        login(&d, "a@example.org", OTHER_PASSWORD).await;
    }
);

// ------------------------------------------------------------ ToS and deletion

db_test!(
    async fn any_tos_version_up_to_the_current_is_accepted(backend: Backend) {
        let d = domain_with(
        backend,
        "terms_of_services:\n  1: {name: Rules, version: 3, tos_html: x}\n  2: {name: Privacy, version: 1, tos_html: y}\n",
    )
    .await;
        let id = verified_user(&d, "a@example.org").await;
        let (_, session) = session(&d, "a@example.org").await;
        assert_err(
            session.require_tos_accepted(&d.config),
            "forbidden",
            "You need to agree to the newest version of the terms of services",
        );
        let me = &session.user;
        let before = snapshot(&d).await;
        for (tos_id, version) in [(9, 1), (1, 4), (-1, 1), (i64::MAX, 1)] {
            assert_err(
                accounts::accept_tos(&d, me, tos_id, version).await,
                "invalid",
                &format!("No term of service found with id {tos_id} and version {version}"),
            );
        }
        assert_eq!(snapshot(&d).await, before);

        accounts::accept_tos(&d, me, 1, 2).await.unwrap();
        accounts::accept_tos(&d, me, 2, 1).await.unwrap();
        let accepted = user(&d, id).await;
        assert_eq!(
            accepted.accepted_tos.into_iter().collect::<Vec<_>>(),
            vec![(1, 2), (2, 1)]
        );
        let session = tokens::authenticate(&d, &login(&d, "a@example.org", PASSWORD).await.value)
            .await
            .unwrap();
        session.require_tos_accepted(&d.config).unwrap_err();
        accounts::accept_tos(&d, &session.user, 1, 3).await.unwrap();
        let session = tokens::authenticate(&d, &login(&d, "a@example.org", PASSWORD).await.value)
            .await
            .unwrap();
        session.require_tos_accepted(&d.config).unwrap();
    }
);

db_test!(
    async fn deleting_an_account_takes_its_tokens_and_acceptances(backend: Backend) {
        let d = domain_with(
            backend,
            "terms_of_services:\n  1: {name: Rules, version: 1, tos_html: x}\n",
        )
        .await;
        let id = verified_user(&d, "a@example.org").await;
        let keep = verified_user(&d, "b@example.org").await;
        let (token, session) = session(&d, "a@example.org").await;
        accounts::accept_tos(&d, &session.user, 1, 1).await.unwrap();
        tokens::create_api_token(&d, &session, "x").await.unwrap();
        login(&d, "b@example.org", PASSWORD).await;

        accounts::delete_user(&d, &session.user).await.unwrap();
        assert!(accounts::find_user(&d, id).await.unwrap().is_none());
        assert!(token_rows(&d, id).await.is_empty());
        assert_err(
            tokens::authenticate(&d, &token.value).await,
            "unauthenticated",
            "Could not validate token",
        );
        assert_eq!(token_rows(&d, keep).await.len(), 1);
        // The email is free again.
        accounts::signup(&d, "a@example.org", PASSWORD)
            .await
            .unwrap();
    }
);

// ------------------------------------------------------------ provisioning

db_test!(
    async fn provisioned_users_are_created_verified_and_resynced_by_number(backend: Backend) {
        let config = |email: &str, password: &str, admin: bool| {
            format!(
            "security:\n  local_account:\n    user_provisioning:\n      7: {{email: \"{email}\", password: \"{password}\", is_admin: {admin}}}\n"
        )
        };
        let first = domain_with(backend, &config("Boss@Example.org", "first-password", true)).await;
        accounts::provision_users(&first).await.unwrap();
        accounts::provision_users(&first).await.unwrap();
        let row = user_by_email(&first, "Boss@example.org").await.unwrap();
        assert!(row.is_verified && row.is_admin);
        assert_eq!(row.provision_number, Some(7));
        let hash = row.password_hash.clone();
        // A second start with the same config rewrites nothing.
        accounts::provision_users(&first).await.unwrap();
        assert_eq!(user_row(&first, row.id).await.password_hash, hash);
        // Provisioned passwords need only 12 characters.
        login(&first, "Boss@example.org", "first-password").await;

        // The same database, started with a changed entry 7.
        let second_config = scribe_domain::config::parse_str(
            &format!(
                "client_url: \"{CLIENT_URL}\"\nweb_server:\n  no_https: true\n{}",
                config("chief@example.org", "second-password", false)
            ),
            Vec::new(),
        )
        .unwrap()
        .config;
        let second = scribe_domain::Domain::new(
            first.db.clone(),
            std::sync::Arc::new(second_config),
            SecretKey::from_hex(SECRET_KEY).unwrap(),
        );
        accounts::provision_users(&second).await.unwrap();
        let row = user_row(&second, row.id).await;
        assert_eq!(row.email, "chief@example.org");
        assert!(!row.is_admin && row.is_verified);
        login(&second, "chief@example.org", "second-password").await;
        assert_eq!(users::Entity::find().count(&second.db).await.unwrap(), 1);
    }
);

db_test!(
    async fn provisioning_adopts_an_existing_account_and_skips_when_disabled(backend: Backend) {
        let d = domain_with(
        backend,
        "security:\n  local_account:\n    user_provisioning:\n      1: {email: a@example.org, password: admin-password}\n",
    )
    .await;
        let id = accounts::signup(&d, "a@example.org", PASSWORD)
            .await
            .unwrap();
        accounts::provision_users(&d).await.unwrap();
        let row = user_row(&d, id).await;
        assert_eq!(row.provision_number, Some(1));
        assert!(row.is_verified);
        login(&d, "a@example.org", "admin-password").await;

        let disabled = domain_with(
        backend,
        "security:\n  local_account:\n    mode: disabled\n    user_provisioning:\n      1: {email: a@example.org, password: admin-password, is_admin: true}\n",
    )
    .await;
        accounts::provision_users(&disabled).await.unwrap();
        assert_eq!(
            accounts::ensure_initial_admin(&disabled).await.unwrap(),
            None
        );
        assert_eq!(users::Entity::find().count(&disabled.db).await.unwrap(), 0);
    }
);

db_test!(
    async fn an_instance_without_admins_gets_one_once(backend: Backend) {
        let d = domain(backend).await;
        verified_user(&d, "someone@example.org").await;
        let admin = accounts::ensure_initial_admin(&d).await.unwrap().unwrap();
        assert_eq!(admin.email, "admin@localhost");
        assert!(scribe_domain::passwords::satisfies_rule(&admin.password));
        let token = accounts::login_local(
            &d,
            LoginAttempt {
                scope: "admin",
                ..attempt("admin@localhost", &admin.password)
            },
        )
        .await
        .unwrap();
        let session = tokens::authenticate(&d, &token.value).await.unwrap();
        session.require_verified().unwrap();
        session.require_admin().unwrap();
        assert!(!session.user.is_provisioned);
        assert_eq!(accounts::ensure_initial_admin(&d).await.unwrap(), None);

        let configured = domain_with(
            backend,
            "security:\n  local_account:\n    initial_admin_email: ops@example.org\n",
        )
        .await;
        let admin = accounts::ensure_initial_admin(&configured)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(admin.email, "ops@example.org");

        let provisioned = domain_with(
        backend,
        "security:\n  local_account:\n    user_provisioning:\n      0: {email: root@example.org, password: root-password, is_admin: true}\n",
    )
    .await;
        accounts::provision_users(&provisioned).await.unwrap();
        assert_eq!(
            accounts::ensure_initial_admin(&provisioned).await.unwrap(),
            None
        );
        assert_eq!(
            users::Entity::find().count(&provisioned.db).await.unwrap(),
            1
        );
    }
);

db_test!(
    async fn an_account_squatting_the_admin_address_is_taken_over(backend: Backend) {
        let d = domain_with(
            backend,
            "security:\n  local_account:\n    initial_admin_email: ops@example.org\n",
        )
        .await;
        let id = verified_user(&d, "ops@example.org").await;
        let (squatter, _) = session(&d, "ops@example.org").await;
        let admin = accounts::ensure_initial_admin(&d).await.unwrap().unwrap();
        assert!(user_row(&d, id).await.is_admin);
        assert_err(
            tokens::authenticate(&d, &squatter.value).await,
            "unauthenticated",
            "Could not validate token",
        );
        assert_err(
            accounts::login_local(&d, attempt("ops@example.org", PASSWORD)).await,
            "unauthenticated",
            "Incorrect",
        );
        login(&d, "ops@example.org", &admin.password).await;
    }
);
