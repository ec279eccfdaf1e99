//! Live events: "this user's job changed" for the SSE route (SPEC §3.5 `GET
//! /events`), and wake-ups that tell a background worker on *every* replica to
//! look at the database now (a job was queued, an outbox row was committed).
//!
//! Everything goes through one object-safe [`Notifier`] (SPEC §2 "State"):
//! - SQLite (one process): an in-process hub of `tokio` channels.
//! - PostgreSQL (possibly several replicas): publishing is `SELECT
//!   pg_notify('scribe_events', payload)` on the database connection, and one
//!   listener task per replica ([`EventListener::run`]) LISTENs on a dedicated
//!   connection and fans every notification out to that replica's hub. A
//!   replica's own events also take this round trip, so there is one delivery
//!   path and each subscriber sees each event once.
//!
//! # What a subscriber can rely on
//! - **Only its user's events**, in the order they were published (PostgreSQL:
//!   in commit order), each at most once, and only those published after it
//!   subscribed.
//! - **Losses are announced.** Events can be lost when a subscriber falls more
//!   than [`SUBSCRIBER_BUFFER`] events behind, or (PostgreSQL) while the
//!   listener's connection is down. Either way the subscriber then receives
//!   [`Delivery::Resync`]: "you may have missed something, refetch". After a
//!   reconnect it is sent only once LISTEN is in place again, so a refetch done
//!   on receiving it misses nothing later.
//! - **Transactions.** [`Notifier::commit_and_send`] delivers only if the commit
//!   succeeds, on both backends. On PostgreSQL [`Notifier::publish_in`] does the
//!   same inside a transaction the caller commits later (that is NOTIFY's own
//!   semantics); the in-process hub has no commit hook, so there it delivers at
//!   once (see the method).
//! - **Never failing the caller.** Publishing returns nothing; a failed
//!   `pg_notify` is logged and that event is lost without a `Resync` (as is an
//!   event whose replica dies between its commit and [`Notifier::publish`]).
//!   Events are hints to refetch, never the data itself.
//!
//! Wake-ups are coalesced: a worker that is busy while several arrive wakes
//! once. Every replica's subscribers are woken, and all topics are woken after
//! a listener reconnect, since wake-ups may have been missed meanwhile.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

mod hub;
mod local;
mod postgres;

#[cfg(test)]
mod tests;

pub use hub::{JobSubscription, Wakeups, SUBSCRIBER_BUFFER};
pub use local::InProcessNotifier;
pub use postgres::{CHANNEL, LISTENER_APPLICATION_NAME};

use hub::Hub;

/// What happened to a job (SPEC §3.5: the SSE event names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JobEventKind {
    #[serde(rename = "job_created")]
    Created,
    #[serde(rename = "job_updated")]
    Updated,
    #[serde(rename = "job_deleted")]
    Deleted,
}

impl JobEventKind {
    /// The SSE event name: `job_created`, `job_updated` or `job_deleted`.
    pub fn name(self) -> &'static str {
        match self {
            JobEventKind::Created => "job_created",
            JobEventKind::Updated => "job_updated",
            JobEventKind::Deleted => "job_deleted",
        }
    }
}

/// A change to one of `user_id`'s jobs; the SSE route sends `event:
/// kind.name()`, `data: job_id`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct JobEvent {
    pub user_id: i64,
    pub job_id: i64,
    pub kind: JobEventKind,
}

impl JobEvent {
    pub fn created(user_id: i64, job_id: i64) -> Self {
        JobEvent {
            user_id,
            job_id,
            kind: JobEventKind::Created,
        }
    }

    pub fn updated(user_id: i64, job_id: i64) -> Self {
        JobEvent {
            user_id,
            job_id,
            kind: JobEventKind::Updated,
        }
    }

    pub fn deleted(user_id: i64, job_id: i64) -> Self {
        JobEvent {
            user_id,
            job_id,
            kind: JobEventKind::Deleted,
        }
    }
}

/// Which background worker a wake-up is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WakeupTopic {
    /// A job was queued or a runner became free: try to assign.
    Scheduler,
    /// A row of the mail outbox was committed: deliver it.
    Mail,
}

impl WakeupTopic {
    pub const ALL: [WakeupTopic; 2] = [WakeupTopic::Scheduler, WakeupTopic::Mail];

    fn index(self) -> usize {
        match self {
            WakeupTopic::Scheduler => 0,
            WakeupTopic::Mail => 1,
        }
    }
}

/// Whose sessions and tokens may have changed (ended, rotated, lost admin
/// rights, user changed or deleted): caches of authenticated sessions drop
/// what they hold for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialChange {
    User(i64),
    /// Anyone's: after a gap in delivery.
    All,
}

/// Anything a notifier carries. Its JSON is the NOTIFY payload:
/// `{"job":{"user_id":1,"job_id":2,"kind":"job_updated"}}`, `{"wakeup":"mail"}`,
/// `{"credentials":{"user":1}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Message {
    Job(JobEvent),
    Wakeup(WakeupTopic),
    Credentials(CredentialChange),
}

impl From<CredentialChange> for Message {
    fn from(change: CredentialChange) -> Self {
        Message::Credentials(change)
    }
}

impl From<JobEvent> for Message {
    fn from(event: JobEvent) -> Self {
        Message::Job(event)
    }
}

impl From<WakeupTopic> for Message {
    fn from(topic: WakeupTopic) -> Self {
        Message::Wakeup(topic)
    }
}

/// What a [`JobSubscription`] yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Event(JobEvent),
    /// Events for this user may have been lost (the subscriber fell behind,
    /// or the cross-replica listener reconnected). Refetch the job list; the
    /// SSE route can end the stream (the browser's EventSource reconnects and
    /// the client reloads) or send `job_updated` for each of the user's jobs.
    Resync,
}

/// A boxed `Send` future, so that [`Notifier`] stays object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Publishes job events and wake-ups, and hands out subscriptions to them.
/// Share it as `Arc<dyn Notifier>`; build it with [`notifier_for`].
pub trait Notifier: Send + Sync {
    /// Delivers `message` now. Use it outside a transaction, or after the
    /// commit of the change it announces. Never fails: errors are logged.
    fn send(&self, message: Message) -> BoxFuture<'_, ()>;

    /// Publishes `message` as part of the transaction `conn` belongs to.
    /// PostgreSQL: delivered when that transaction commits, never if it rolls
    /// back (outside a transaction: at once). In-process (SQLite): SQLite has
    /// no commit hook, so it is delivered at once, possibly before the commit;
    /// fine for wake-ups whose worker rechecks, but a client refetching on the
    /// event might still see the old state. When you own the transaction,
    /// prefer [`Notifier::commit_and_send`].
    fn send_in<'a>(&'a self, conn: &'a dyn ConnectionTrait, message: Message) -> BoxFuture<'a, ()>;

    /// Commits `txn` and delivers `messages` if and only if the commit
    /// succeeded, on every backend. The commit's error is the caller's;
    /// delivery problems are only logged.
    fn commit_and_send(
        &self,
        txn: DatabaseTransaction,
        messages: Vec<Message>,
    ) -> BoxFuture<'_, Result<(), DbErr>>;

    /// `user_id`'s job events from now on (see [`JobSubscription::recv`]).
    fn subscribe(&self, user_id: i64) -> JobSubscription;

    /// Wake-ups of `topic` from now on (see [`Wakeups::wait`]).
    fn subscribe_wakeups(&self, topic: WakeupTopic) -> Wakeups;

    /// Credential changes from now on. A receiver that lags behind gets
    /// `RecvError::Lagged` and must then forget everything it cached.
    fn subscribe_credentials(&self) -> broadcast::Receiver<CredentialChange>;

    /// [`Notifier::send`] for a job event.
    fn publish(&self, event: JobEvent) -> BoxFuture<'_, ()> {
        self.send(Message::Job(event))
    }

    /// [`Notifier::send_in`] for a job event.
    fn publish_in<'a>(
        &'a self,
        conn: &'a dyn ConnectionTrait,
        event: JobEvent,
    ) -> BoxFuture<'a, ()> {
        self.send_in(conn, Message::Job(event))
    }

    /// [`Notifier::send`] for a wake-up.
    fn publish_wakeup(&self, topic: WakeupTopic) -> BoxFuture<'_, ()> {
        self.send(Message::Wakeup(topic))
    }

    /// [`Notifier::send_in`] for a wake-up.
    fn publish_wakeup_in<'a>(
        &'a self,
        conn: &'a dyn ConnectionTrait,
        topic: WakeupTopic,
    ) -> BoxFuture<'a, ()> {
        self.send_in(conn, Message::Wakeup(topic))
    }
}

/// The background half of a notifier; spawn [`EventListener::run`].
///
/// PostgreSQL: nothing is delivered on this replica (its own events included)
/// unless it runs. In-process: delivery works without it; running it only
/// ends every subscription at shutdown.
#[must_use = "spawn EventListener::run, or no live events reach this replica's subscribers"]
pub struct EventListener {
    hub: Arc<Hub>,
    source: Source,
}

enum Source {
    InProcess,
    Postgres(postgres::ListenerState),
}

impl EventListener {
    /// Runs until `shutdown` is cancelled, then ends every [`JobSubscription`]
    /// (their `recv` returns `None`). On PostgreSQL it receives notifications,
    /// pings the connection every 30 s, and reconnects with backoff (logging
    /// each loss) whenever the connection fails.
    pub async fn run(self, shutdown: CancellationToken) {
        match self.source {
            Source::InProcess => shutdown.cancelled().await,
            Source::Postgres(state) => postgres::listen(&self.hub, state, &shutdown).await,
        }
        self.hub.close();
    }
}

/// The notifier for `db`: LISTEN/NOTIFY on PostgreSQL, in-process otherwise.
/// `database_url` is the URL `db` was opened with
/// (`config.effective_database_url()`); on PostgreSQL the listener opens its
/// own connection with it. The first LISTEN happens here, so events published
/// once this returns reach this replica's subscribers as soon as the listener
/// runs. If that first connection fails, it is logged and the listener keeps
/// trying in the background.
pub async fn notifier_for(
    db: &DatabaseConnection,
    database_url: &str,
) -> (Arc<dyn Notifier>, EventListener) {
    let hub = Arc::new(Hub::new());
    match db.get_database_backend() {
        DbBackend::Postgres => {
            let state = postgres::ListenerState::start(database_url).await;
            let notifier = postgres::PgNotifier::new(db.clone(), hub.clone());
            let listener = EventListener {
                hub,
                source: Source::Postgres(state),
            };
            (Arc::new(notifier), listener)
        }
        _ => {
            let notifier = InProcessNotifier::with_hub(hub.clone());
            let listener = EventListener {
                hub,
                source: Source::InProcess,
            };
            (Arc::new(notifier), listener)
        }
    }
}
