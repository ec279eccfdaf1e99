//! Shared helpers of the domain's integration tests: a `Domain` on a fresh,
//! migrated SQLite file per test, the mails it queued, and snapshots of the
//! account tables for "changes nothing" checks.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use scribe_domain::accounts::{self, LoginAttempt, User};
use scribe_domain::config::parse_str;
use scribe_domain::db::{connect, migrate, DatabaseSettings};
use scribe_domain::entities::{jobs, mail_outbox, tokens, tos_acceptances, users};
use scribe_domain::scheduling::step;
use scribe_domain::secret_key::SecretKey;
use scribe_domain::storage::BlobId;
use scribe_domain::tokens::{IssuedToken, Session};
use scribe_domain::Domain;
use scribe_tests::{Backend, TestDb};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, Set};

pub const SECRET_KEY: &str = "f26a5feb0eb502fb2b4f872026ce7b5d3986dbfef77d72d3f29050df2f8b3bdb";
pub const CLIENT_URL: &str = "https://scribe.example.org/#";
pub const PASSWORD: &str = "Correct-Horse-42";
pub const OTHER_PASSWORD: &str = "Battery-Staple-43";

/// A domain on its own database (a SQLite file, or a PostgreSQL database
/// dropped again afterwards).
pub struct TestDomain {
    pub d: Domain,
    // Field order is drop order: the pool closes before the database goes.
    _db: TestDb,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for TestDomain {
    type Target = Domain;
    fn deref(&self) -> &Domain {
        &self.d
    }
}

/// A domain whose config is the base config plus `extra_yaml` (top-level
/// sections such as `security:`).
pub async fn domain_with(backend: Backend, extra_yaml: &str) -> TestDomain {
    let yaml = format!("client_url: \"{CLIENT_URL}\"\nweb_server:\n  no_https: true\n{extra_yaml}");
    let config = match parse_str(&yaml, Vec::new()) {
        Ok(loaded) => loaded.config,
        Err(err) => panic!("test config should load: {err}\n{yaml}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let test_db = TestDb::create(backend, dir.path()).await;
    let db = connect(&DatabaseSettings {
        url: test_db.url().to_owned(),
        max_connections: 4,
        retry_for: Duration::from_secs(5),
    })
    .await
    .unwrap();
    migrate(&db).await.unwrap();
    let d = Domain::new(
        db,
        Arc::new(config),
        SecretKey::from_hex(SECRET_KEY).unwrap(),
    );
    TestDomain {
        d,
        _db: test_db,
        _dir: dir,
    }
}

pub async fn domain(backend: Backend) -> TestDomain {
    domain_with(backend, "").await
}

/// A mail in the outbox.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: Vec<String>,
    pub subject: String,
    pub body: String,
}

impl Mail {
    /// The `token=` value of the link in the body.
    pub fn token(&self) -> String {
        let start = self.body.find("?token=").expect("a link with a token") + "?token=".len();
        self.body[start..]
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap()
            .to_owned()
    }

    /// The link (up to the first whitespace) in the body.
    pub fn link(&self) -> String {
        let start = self.body.find(CLIENT_URL).expect("a link to the client");
        self.body[start..]
            .split(|c: char| c.is_whitespace())
            .next()
            .unwrap()
            .to_owned()
    }
}

/// Every mail queued so far, oldest first (no worker runs in these tests).
pub async fn mails(d: &Domain) -> Vec<Mail> {
    mail_outbox::Entity::find()
        .order_by_asc(mail_outbox::Column::Id)
        .all(&d.db)
        .await
        .unwrap()
        .into_iter()
        .map(|row| Mail {
            to: serde_json::from_str(&row.to_addresses).unwrap(),
            subject: row.subject,
            body: row.body,
        })
        .collect()
}

pub async fn last_mail_to(d: &Domain, address: &str) -> Mail {
    mails(d)
        .await
        .into_iter()
        .rev()
        .find(|mail| mail.to.iter().any(|to| to == address))
        .unwrap_or_else(|| panic!("no mail to {address}"))
}

/// Waits (polling, up to 10 s) until `count` mails are queued.
pub async fn wait_for_mails(d: &Domain, count: usize) -> Vec<Mail> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mails = mails(d).await;
        if mails.len() >= count || tokio::time::Instant::now() > deadline {
            return mails;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Users, tokens, ToS acceptances and queued mails, for comparing before and
/// after a refused request.
pub async fn snapshot(d: &Domain) -> String {
    let users = users::Entity::find()
        .order_by_asc(users::Column::Id)
        .all(&d.db)
        .await
        .unwrap();
    let tokens = tokens::Entity::find()
        .order_by_asc(tokens::Column::Id)
        .all(&d.db)
        .await
        .unwrap();
    let tos = tos_acceptances::Entity::find()
        .order_by_asc(tos_acceptances::Column::UserId)
        .order_by_asc(tos_acceptances::Column::TosId)
        .all(&d.db)
        .await
        .unwrap();
    let mails = mail_outbox::Entity::find()
        .order_by_asc(mail_outbox::Column::Id)
        .all(&d.db)
        .await
        .unwrap();
    format!("{users:#?}\n{tokens:#?}\n{tos:#?}\n{mails:#?}")
}

pub async fn user_row(d: &Domain, id: i64) -> users::Model {
    users::Entity::find_by_id(id)
        .one(&d.db)
        .await
        .unwrap()
        .expect("user exists")
}

pub async fn user_by_email(d: &Domain, email: &str) -> Option<users::Model> {
    users::Entity::find()
        .filter(users::Column::Email.eq(email))
        .one(&d.db)
        .await
        .unwrap()
}

pub async fn user(d: &Domain, id: i64) -> User {
    accounts::find_user(d, id)
        .await
        .unwrap()
        .expect("user exists")
}

pub async fn token_rows(d: &Domain, user_id: i64) -> Vec<tokens::Model> {
    tokens::Entity::find()
        .filter(tokens::Column::UserId.eq(user_id))
        .order_by_asc(tokens::Column::Id)
        .all(&d.db)
        .await
        .unwrap()
}

pub async fn set_token_expiry(d: &Domain, token_id: i64, expires_at: Option<DateTime<Utc>>) {
    tokens::Entity::update_many()
        .col_expr(tokens::Column::ExpiresAt, Expr::value(expires_at))
        .filter(tokens::Column::Id.eq(token_id))
        .exec(&d.db)
        .await
        .unwrap();
}

pub async fn set_last_usage(d: &Domain, token_id: i64, last_usage: DateTime<Utc>) {
    tokens::Entity::update_many()
        .col_expr(tokens::Column::LastUsage, Expr::value(last_usage))
        .filter(tokens::Column::Id.eq(token_id))
        .exec(&d.db)
        .await
        .unwrap();
}

/// Signs up and activates through the mailed link; returns the user id.
pub async fn verified_user(d: &Domain, email: &str) -> i64 {
    let id = accounts::signup(d, email, PASSWORD).await.unwrap();
    let token = last_mail_to(d, email).await.token();
    accounts::activate(d, &token).await.unwrap();
    id
}

pub fn attempt<'a>(username: &'a str, password: &'a str) -> LoginAttempt<'a> {
    LoginAttempt {
        username,
        password,
        scope: "",
        user_agent: Some("test-agent/1.0"),
        client_address: "192.0.2.1",
    }
}

pub async fn login(d: &Domain, email: &str, password: &str) -> IssuedToken {
    accounts::login_local(d, attempt(email, password))
        .await
        .unwrap()
}

/// Logs in and authenticates the new token.
pub async fn session(d: &Domain, email: &str) -> (IssuedToken, Session) {
    let token = login(d, email, PASSWORD).await;
    let session = scribe_domain::tokens::authenticate(d, &token.value)
        .await
        .unwrap();
    (token, session)
}

/// A user of another provider, as the OIDC/LDAP logins will create them.
pub async fn external_user(d: &Domain, user_type: &str, provider: &str, email: &str) -> i64 {
    users::ActiveModel {
        email: Set(email.to_owned()),
        user_type: Set(user_type.to_owned()),
        provider_name: Set(provider.to_owned()),
        external_id: Set(Some(format!("ext-{email}"))),
        password_hash: Set(None),
        is_verified: Set(true),
        is_admin: Set(false),
        provision_number: Set(None),
        activation_generation: Set(0),
        password_reset_generation: Set(0),
        created_at: Set(Utc::now()),
        ..Default::default()
    }
    .insert(&d.db)
    .await
    .unwrap()
    .id
}

/// The `detail` of an error, with its kind.
pub fn describe(err: &scribe_domain::DomainError) -> (&'static str, String) {
    use scribe_domain::DomainError as E;
    match err {
        E::Invalid(m) => ("invalid", m.clone()),
        E::Unauthenticated(m) => ("unauthenticated", m.clone()),
        E::Forbidden(m) => ("forbidden", m.clone()),
        E::NotAllowed(m) => ("not_allowed", m.clone()),
        E::Throttled { detail, .. } => ("throttled", detail.clone()),
        E::Validation(v) => ("validation", format!("{v:?}")),
        other => ("other", other.to_string()),
    }
}

/// Asserts an error of `kind` whose detail contains `detail`.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(
    result: Result<T, scribe_domain::DomainError>,
    kind: &str,
    detail: &str,
) {
    match result {
        Ok(value) => panic!("expected {kind} error `{detail}`, got Ok({value:?})"),
        Err(err) => {
            let (got_kind, got_detail) = describe(&err);
            assert_eq!(got_kind, kind, "{got_detail}");
            assert!(
                got_detail.contains(detail),
                "expected `{detail}` in `{got_detail}`"
            );
        }
    }
}

pub async fn store_blob(d: &Domain, bytes: &[u8]) -> BlobId {
    let mut writer = d.blobs.create().await.unwrap();
    writer.write(bytes).await.unwrap();
    writer.finish().await.unwrap().id
}

/// Inserts a job of `user_id` in `job_step`, finished at `finished` (if any), with an audio blob
/// unless finished and a transcript blob if successful.
pub async fn insert_job(
    d: &Domain,
    user_id: i64,
    job_step: &str,
    finished: Option<DateTime<Utc>>,
) -> (i64, Vec<BlobId>) {
    let audio = if finished.is_none() {
        Some(store_blob(d, b"audio").await)
    } else {
        None
    };
    let transcript = if job_step == step::SUCCESS || job_step == step::DOWNLOADED {
        Some(store_blob(d, b"{\"as_txt\":\"hi\"}").await)
    } else {
        None
    };
    let id = jobs::ActiveModel {
        user_id: Set(user_id),
        file_name: Set("a.mp3".into()),
        content_type: Set("audio/mpeg".into()),
        audio_blob_id: Set(audio.as_ref().map(|b| b.as_str().to_owned())),
        audio_size: Set(5),
        settings: Set("{}".into()),
        step: Set(job_step.into()),
        progress: Set(0.0),
        abort_requested: Set(false),
        error_msg: Set((job_step == step::FAILED).then(|| "boom".to_owned())),
        transcript_blob_id: Set(transcript.as_ref().map(|b| b.as_str().to_owned())),
        creation_timestamp: Set(Utc::now() - chrono::Duration::days(400)),
        finish_timestamp: Set(finished),
        ..Default::default()
    }
    .insert(&d.db)
    .await
    .unwrap()
    .id;
    (id, audio.into_iter().chain(transcript).collect())
}
