//! The mail subsystem against a real SMTP conversation over TCP (the harness's
//! SMTP sink) and a real, migrated SQLite database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use scribe_tests::smtp::{ReceivedMail, SmtpSink};
use scribe_tests::{db_test, Backend};
use sea_orm::{DatabaseConnection, EntityTrait, PaginatorTrait, Set, TransactionTrait};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::config::{Secret, SmtpConfig, SmtpSecurity};
use crate::db::{connect, migrate, DatabaseSettings};
use crate::entities::{mail_outbox, users};

const CLIENT_URL: &str = "http://localhost:5173/#";
const SENDER: &str = "scribe@example.org";
const WAIT: Duration = Duration::from_secs(10);

struct TestDb {
    db: DatabaseConnection,
    // Field order is drop order: the database goes before its directory.
    _guard: scribe_tests::TestDb,
    _dir: TempDir,
}

/// A fresh, migrated database: a SQLite file, or a PostgreSQL database on the
/// server the harness uses (dropped again with the guard).
async fn test_db(backend: Backend) -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let guard = scribe_tests::TestDb::create(backend, dir.path()).await;
    let settings = DatabaseSettings {
        url: guard.url().to_owned(),
        max_connections: 4,
        retry_for: Duration::from_secs(1),
    };
    let db = connect(&settings).await.unwrap();
    migrate(&db).await.unwrap();
    TestDb {
        db,
        _guard: guard,
        _dir: dir,
    }
}

fn plain_smtp(sink: &SmtpSink) -> SmtpConfig {
    SmtpConfig {
        hostname: "127.0.0.1".to_owned(),
        port: sink.port(),
        secure: SmtpSecurity::Plain,
        sender_email: SENDER.to_owned(),
        username: None,
        password: None,
    }
}

fn fast() -> WorkerSettings {
    WorkerSettings {
        poll_interval: Duration::from_secs(30),
        first_retry_delay: Duration::from_millis(50),
        max_retry_delay: Duration::from_millis(200),
        max_attempts: 5,
        smtp_timeout: Duration::from_secs(5),
        lease: Duration::from_secs(60),
        shutdown_grace: Duration::from_secs(1),
    }
}

struct RunningWorker {
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

impl RunningWorker {
    fn start(
        db: &DatabaseConnection,
        smtp: Option<SmtpConfig>,
        queue: &MailQueue,
        settings: WorkerSettings,
    ) -> Self {
        let cancel = CancellationToken::new();
        let handle = tokio::spawn(run_worker_with(
            db.clone(),
            smtp,
            queue.clone(),
            cancel.clone(),
            settings,
        ));
        RunningWorker { cancel, handle }
    }

    /// Cancels and checks that the worker returns promptly.
    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(3), self.handle)
            .await
            .expect("the worker stops promptly on cancellation")
            .unwrap();
    }
}

async fn outbox(db: &DatabaseConnection) -> Vec<mail_outbox::Model> {
    mail_outbox::Entity::find().all(db).await.unwrap()
}

/// Polls (no fixed sleep decides the outcome) until `check` holds or `WAIT` passes.
async fn eventually<F: std::future::Future<Output = bool>>(mut check: impl FnMut() -> F) -> bool {
    let deadline = tokio::time::Instant::now() + WAIT;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn wait_for_subject(sink: &SmtpSink, subject: &str) -> ReceivedMail {
    sink.wait_for(|m| m.subject == subject, WAIT)
        .await
        .unwrap_or_else(|| panic!("no mail {subject:?}; got {:?}", sink.messages()))
}

db_test!(
    async fn mail_goes_out_over_smtp_with_the_link(backend: Backend) {
        let test = test_db(backend).await;
        let sink = SmtpSink::start().await;
        let queue = MailQueue::new();
        let worker = RunningWorker::start(&test.db, Some(plain_smtp(&sink)), &queue, fast());

        let token = "a".repeat(120) + ".b-c_d";
        let mail = OutgoingMail::to_one(
            "new.user@example.org",
            templates::activation(CLIENT_URL, &token),
        );
        queue.enqueue(&test.db, mail.clone()).await.unwrap();

        let received = wait_for_subject(&sink, &mail.subject).await;
        assert_eq!(received.from, SENDER);
        assert_eq!(received.recipients, ["new.user@example.org"]);
        assert!(received
            .header("To")
            .unwrap()
            .contains("new.user@example.org"));
        assert!(received.header("From").unwrap().contains(SENDER));
        assert!(received.header("Message-ID").is_some());
        assert_eq!(received.body.trim_end(), mail.body.trim_end());
        assert_eq!(
            received.link(CLIENT_URL).unwrap(),
            format!("{CLIENT_URL}/local/activate?token={token}")
        );
        assert!(eventually(|| async { outbox(&test.db).await.is_empty() }).await);
        worker.stop().await;
    }
);

db_test!(
    async fn bcc_recipients_are_only_in_the_envelope(backend: Backend) {
        let test = test_db(backend).await;
        let sink = SmtpSink::start().await;
        let queue = MailQueue::new();
        let worker = RunningWorker::start(&test.db, Some(plain_smtp(&sink)), &queue, fast());

        let mail = OutgoingMail {
            to: vec!["visible@example.org".into()],
            bcc: vec!["hidden1@example.org".into(), "hidden2@example.org".into()],
            subject: "Grüße aus Scribe, a subject long enough to be folded by the mail builder"
                .into(),
            body: "Ümlauts and a long line: ".to_owned() + &"x".repeat(200),
        };
        queue.enqueue(&test.db, mail.clone()).await.unwrap();

        let received = wait_for_subject(&sink, &mail.subject).await;
        let mut recipients = received.recipients.clone();
        recipients.sort();
        assert_eq!(
            recipients,
            [
                "hidden1@example.org",
                "hidden2@example.org",
                "visible@example.org"
            ]
        );
        assert!(received.header("Bcc").is_none());
        assert!(!received.data.contains("hidden"), "{}", received.data);
        assert_eq!(received.body.trim_end(), mail.body);
        worker.stop().await;
    }
);

db_test!(
    async fn credentials_are_sent_when_configured(backend: Backend) {
        let test = test_db(backend).await;
        let sink = SmtpSink::start().await;
        let queue = MailQueue::new();
        let smtp = SmtpConfig {
            username: Some("scribe".into()),
            password: Some(Secret::new("s3cret".into())),
            ..plain_smtp(&sink)
        };
        let worker = RunningWorker::start(&test.db, Some(smtp), &queue, fast());

        let mail =
            OutgoingMail::to_one("u@example.org", templates::password_reset(CLIENT_URL, "t"));
        queue.enqueue(&test.db, mail.clone()).await.unwrap();
        let received = wait_for_subject(&sink, &mail.subject).await;
        assert_eq!(received.auth, Some(("scribe".into(), "s3cret".into())));
        assert_eq!(
            received.link(CLIENT_URL).unwrap(),
            format!("{CLIENT_URL}/auth/local/reset-password?token=t")
        );
        worker.stop().await;
    }
);

db_test!(
    async fn a_transient_failure_is_retried_then_delivered(backend: Backend) {
        let test = test_db(backend).await;
        let sink = SmtpSink::start().await;
        sink.fail_next(2);
        let queue = MailQueue::new();
        let worker = RunningWorker::start(&test.db, Some(plain_smtp(&sink)), &queue, fast());

        let mail = OutgoingMail::to_one("u@example.org", templates::broadcast("Retry me", "body"));
        queue.enqueue(&test.db, mail).await.unwrap();

        wait_for_subject(&sink, "Retry me").await;
        assert_eq!(sink.refused(), 2);
        assert_eq!(sink.messages().len(), 1);
        assert!(eventually(|| async { outbox(&test.db).await.is_empty() }).await);
        worker.stop().await;
    }
);

db_test!(
    async fn delivery_gives_up_after_the_last_attempt(backend: Backend) {
        let test = test_db(backend).await;
        let sink = SmtpSink::start().await;
        sink.fail_next(100);
        let queue = MailQueue::new();
        let settings = WorkerSettings {
            max_attempts: 3,
            ..fast()
        };
        let worker = RunningWorker::start(&test.db, Some(plain_smtp(&sink)), &queue, settings);

        let mail = OutgoingMail::to_one("u@example.org", templates::broadcast("Doomed", "body"));
        queue.enqueue(&test.db, mail).await.unwrap();

        assert!(eventually(|| async { outbox(&test.db).await.is_empty() }).await);
        assert_eq!(sink.refused(), 3);
        assert!(sink.messages().is_empty());
        worker.stop().await;
    }
);

db_test!(
    async fn starttls_is_required_not_skipped(backend: Backend) {
        // The sink offers no STARTTLS: the mail must not go out in the clear.
        let test = test_db(backend).await;
        let sink = SmtpSink::start().await;
        let queue = MailQueue::new();
        let smtp = SmtpConfig {
            secure: SmtpSecurity::Starttls,
            ..plain_smtp(&sink)
        };
        let worker = RunningWorker::start(&test.db, Some(smtp), &queue, WorkerSettings::default());

        let mail = OutgoingMail::to_one("u@example.org", templates::broadcast("Secret", "body"));
        queue.enqueue(&test.db, mail).await.unwrap();

        assert!(
            eventually(|| async {
                outbox(&test.db)
                    .await
                    .first()
                    .is_some_and(|row| row.attempts == 1 && row.last_error.is_some())
            })
            .await
        );
        let row = outbox(&test.db).await.remove(0);
        // Backed off by the default first delay.
        assert!(row.next_attempt_at > Utc::now() + chrono::Duration::seconds(20));
        assert!(sink.messages().is_empty());
        worker.stop().await;
    }
);

db_test!(
    async fn rolled_back_mail_is_dropped_and_late_commit_is_prompt(backend: Backend) {
        let test = test_db(backend).await;
        let sink = SmtpSink::start().await;
        let queue = MailQueue::new();
        // A 30 s poll: only the wake-up (and its rechecks) can make this prompt.
        let worker = RunningWorker::start(&test.db, Some(plain_smtp(&sink)), &queue, fast());

        let txn = test.db.begin().await.unwrap();
        let rolled_back = OutgoingMail::to_one("u@example.org", templates::broadcast("Never", "x"));
        queue.enqueue(&txn, rolled_back).await.unwrap();
        txn.rollback().await.unwrap();
        assert!(outbox(&test.db).await.is_empty());

        let txn = test.db.begin().await.unwrap();
        let committed = OutgoingMail::to_one("u@example.org", templates::broadcast("Later", "x"));
        queue.enqueue(&txn, committed).await.unwrap();
        // The worker was woken before the commit and found nothing yet.
        tokio::time::sleep(Duration::from_millis(300)).await;
        txn.commit().await.unwrap();

        let received = sink
            .wait_for(|m| m.subject == "Later", Duration::from_secs(4))
            .await;
        assert!(received.is_some(), "the committed mail waited for the poll");
        assert!(sink.messages().iter().all(|m| m.subject != "Never"));
        worker.stop().await;
    }
);

db_test!(
    async fn queued_mail_survives_until_a_worker_runs(backend: Backend) {
        let test = test_db(backend).await;
        let queue = MailQueue::new();
        let mail = OutgoingMail::to_one("u@example.org", templates::broadcast("Queued", "x"));
        queue.enqueue(&test.db, mail).await.unwrap();
        assert_eq!(outbox(&test.db).await.len(), 1);

        // A worker started later (after a restart, say) finds it without a wake-up.
        let sink = SmtpSink::start().await;
        let worker =
            RunningWorker::start(&test.db, Some(plain_smtp(&sink)), &MailQueue::new(), fast());
        wait_for_subject(&sink, "Queued").await;
        worker.stop().await;
    }
);

db_test!(
    async fn enqueue_refuses_a_mail_without_recipients(backend: Backend) {
        let test = test_db(backend).await;
        let mail = OutgoingMail {
            to: vec![],
            bcc: vec![],
            subject: "s".into(),
            body: "b".into(),
        };
        assert!(MailQueue::new().enqueue(&test.db, mail).await.is_err());
        assert!(outbox(&test.db).await.is_empty());
    }
);

/// Collects what a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn json_lines(&self) -> Vec<serde_json::Value> {
        String::from_utf8_lossy(&self.0.lock().unwrap())
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }
}

db_test!(
    async fn without_smtp_mail_is_written_to_the_log(backend: Backend) {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        // The test runtime is single-threaded, so the worker task logs here too.
        let _guard = tracing::subscriber::set_default(subscriber);

        let test = test_db(backend).await;
        let queue = MailQueue::new();
        let worker = RunningWorker::start(&test.db, None, &queue, fast());
        let mail = OutgoingMail::to_one("u@example.org", templates::activation(CLIENT_URL, "tok"));
        queue.enqueue(&test.db, mail.clone()).await.unwrap();

        assert!(eventually(|| async { outbox(&test.db).await.is_empty() }).await);
        worker.stop().await;

        let lines = captured.json_lines();
        let logged = lines
            .iter()
            .find(|line| line["fields"]["message"] == "mail")
            .unwrap_or_else(|| panic!("no mail line in {lines:?}"));
        assert_eq!(logged["fields"]["to"], "u@example.org");
        assert_eq!(logged["fields"]["subject"], mail.subject.as_str());
        let body = logged["fields"]["body"].as_str().unwrap();
        assert!(body.contains(&format!("{CLIENT_URL}/local/activate?token=tok\n")));
    }
);

async fn add_user(db: &DatabaseConnection, email: &str, user_type: &str, verified: bool) {
    users::Entity::insert(users::ActiveModel {
        email: Set(email.to_owned()),
        user_type: Set(user_type.to_owned()),
        provider_name: Set(if user_type == "local" {
            "project-W"
        } else {
            "ldap1"
        }
        .to_owned()),
        external_id: Set((user_type != "local").then(|| format!("ext-{email}"))),
        is_verified: Set(verified),
        created_at: Set(Utc::now()),
        ..Default::default()
    })
    .exec_without_returning(db)
    .await
    .unwrap();
}

fn domain(db: &DatabaseConnection) -> crate::Domain {
    let config = crate::config::parse_str(crate::config::EMBEDDED_DEFAULT, Vec::new())
        .unwrap()
        .config;
    crate::Domain::new(
        db.clone(),
        Arc::new(config),
        crate::secret_key::SecretKey::generate(),
    )
}

db_test!(
    async fn broadcast_mail_puts_every_verified_user_in_bcc_only(backend: Backend) {
        let test = test_db(backend).await;
        let d = domain(&test.db);

        send_to_all_users(&d, "Nobody here", "x").await.unwrap();
        assert_eq!(
            mail_outbox::Entity::find().count(&test.db).await.unwrap(),
            0
        );

        add_user(&test.db, "alice@example.org", "local", true).await;
        add_user(&test.db, "bob@example.org", "local", true).await;
        add_user(&test.db, "unverified@example.org", "local", false).await;
        // The same address on another provider gets one copy.
        add_user(&test.db, "alice@example.org", "ldap", true).await;

        let sink = SmtpSink::start().await;
        let worker = RunningWorker::start(&test.db, Some(plain_smtp(&sink)), &d.mail, fast());
        send_to_all_users(&d, "Maintenance on Sunday", "Scribe is down from 8 to 10.")
            .await
            .unwrap();

        let received = wait_for_subject(&sink, "Maintenance on Sunday").await;
        let mut recipients = received.recipients.clone();
        recipients.sort();
        assert_eq!(recipients, ["alice@example.org", "bob@example.org"]);
        assert!(received.header("To").is_none());
        assert!(received.header("Bcc").is_none());
        assert!(!received.data.contains("alice") && !received.data.contains("bob"));
        assert!(received.body.starts_with("Scribe is down from 8 to 10.\n"));
        assert!(eventually(|| async { outbox(&test.db).await.is_empty() }).await);
        assert_eq!(sink.messages().len(), 1);
        worker.stop().await;
    }
);

db_test!(
    async fn two_workers_send_each_mail_once(backend: Backend) {
        // Two replicas on one database: the claim gives every row to one of them.
        let test = test_db(backend).await;
        let sink = SmtpSink::start().await;
        let (queue_a, queue_b) = (MailQueue::new(), MailQueue::new());
        let a = RunningWorker::start(&test.db, Some(plain_smtp(&sink)), &queue_a, fast());
        let b = RunningWorker::start(&test.db, Some(plain_smtp(&sink)), &queue_b, fast());
        for n in 0..20 {
            let mail = OutgoingMail::to_one(
                format!("u{n}@example.org"),
                templates::broadcast(&format!("Mail {n}"), "x"),
            );
            queue_a.enqueue(&test.db, mail).await.unwrap();
            queue_b.wake();
        }
        assert!(eventually(|| async { outbox(&test.db).await.is_empty() }).await);
        let mut subjects: Vec<String> = sink.messages().into_iter().map(|m| m.subject).collect();
        assert_eq!(subjects.len(), 20, "{subjects:?}");
        subjects.sort();
        subjects.dedup();
        assert_eq!(subjects.len(), 20);
        a.stop().await;
        b.stop().await;
    }
);
