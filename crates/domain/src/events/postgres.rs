//! LISTEN/NOTIFY: how replicas sharing one PostgreSQL database tell each other
//! about changes. Publishing is `pg_notify` on the caller's connection (so it
//! can ride in the caller's transaction); each replica's listener receives
//! every notification on a dedicated connection and hands it to its hub.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr, Statement,
};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::hub::Hub;
use super::{BoxFuture, JobSubscription, Message, Notifier, WakeupTopic, Wakeups};
use crate::db::redact_url;

/// The NOTIFY channel. Channels are per database, so Scribe instances on
/// other databases of the same server never see each other's events.
pub const CHANNEL: &str = "scribe_events";

/// The listener connection's `application_name`, so operators can tell it
/// apart in `pg_stat_activity`.
pub const LISTENER_APPLICATION_NAME: &str = "scribe-events";

/// Bounds one connection attempt (including LISTEN).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A silent connection is pinged this often: a peer that vanished without a
/// FIN (a NAT or load balancer dropping idle flows) would otherwise leave the
/// listener waiting forever while every event passes it by.
const PING_INTERVAL: Duration = Duration::from_secs(30);
const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Reconnect backoff: 100 ms doubling up to 30 s. A connection that lasted
/// this long counts as healthy, and its loss is retried at once.
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

pub(crate) struct PgNotifier {
    db: DatabaseConnection,
    hub: Arc<Hub>,
}

impl PgNotifier {
    pub(crate) fn new(db: DatabaseConnection, hub: Arc<Hub>) -> Self {
        PgNotifier { db, hub }
    }
}

/// `SELECT pg_notify(…)` on `conn`. Inside a transaction PostgreSQL queues it
/// until commit and drops it on rollback; identical payloads within one
/// transaction are delivered once, which is all a refetch hint needs.
async fn notify(conn: &dyn ConnectionTrait, message: Message) {
    let payload = match serde_json::to_string(&message) {
        Ok(payload) => payload,
        Err(err) => {
            tracing::error!(error = %err, ?message, "could not encode a live event");
            return;
        }
    };
    let statement = Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_notify($1, $2)",
        [CHANNEL.into(), payload.into()],
    );
    if let Err(err) = conn.execute(statement).await {
        tracing::warn!(
            error = %err,
            ?message,
            "could not publish a live event; subscribers miss it"
        );
    }
}

impl Notifier for PgNotifier {
    fn send(&self, message: Message) -> BoxFuture<'_, ()> {
        Box::pin(notify(&self.db, message))
    }

    fn send_in<'a>(&'a self, conn: &'a dyn ConnectionTrait, message: Message) -> BoxFuture<'a, ()> {
        Box::pin(notify(conn, message))
    }

    fn commit_and_send(
        &self,
        txn: DatabaseTransaction,
        messages: Vec<Message>,
    ) -> BoxFuture<'_, Result<(), DbErr>> {
        Box::pin(async move {
            for message in messages {
                notify(&txn, message).await;
            }
            txn.commit().await
        })
    }

    // Subscriptions are served by this replica's hub, which only the listener
    // feeds: a replica's own events come back through PostgreSQL like everyone
    // else's, so nothing is delivered twice.
    fn subscribe(&self, user_id: i64) -> JobSubscription {
        self.hub.subscribe(user_id)
    }

    fn subscribe_credentials(&self) -> tokio::sync::broadcast::Receiver<super::CredentialChange> {
        self.hub.subscribe_credentials()
    }

    fn subscribe_wakeups(&self, topic: WakeupTopic) -> Wakeups {
        self.hub.subscribe_wakeups(topic)
    }
}

/// What the listener task starts from: the URL and, normally, the connection
/// [`super::notifier_for`] already opened.
pub(crate) struct ListenerState {
    url: String,
    connection: Option<PgListener>,
}

impl ListenerState {
    pub(crate) async fn start(url: &str) -> Self {
        let connection = match connect(url).await {
            Ok(connection) => Some(connection),
            Err(err) => {
                tracing::warn!(
                    url = %redact_url(url),
                    error = %err,
                    "cannot listen for live events yet; retrying in the background"
                );
                None
            }
        };
        ListenerState {
            url: url.to_owned(),
            connection,
        }
    }
}

async fn connect(url: &str) -> Result<PgListener, String> {
    let attempt = async {
        let options = PgConnectOptions::from_str(url)?.application_name(LISTENER_APPLICATION_NAME);
        // A pool of one that never recycles: PgListener takes its connection
        // from a pool. Reconnecting is ours to do (with backoff and logging),
        // so each attempt builds a fresh one.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .max_lifetime(None)
            .idle_timeout(None)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await?;
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.ignore_pool_close_event(true);
        listener.eager_reconnect(false);
        listener.listen(CHANNEL).await?;
        Ok::<_, sqlx::Error>(listener)
    };
    match tokio::time::timeout(CONNECT_TIMEOUT, attempt).await {
        Ok(result) => result.map_err(|err| err.to_string()),
        Err(_) => Err(format!(
            "no connection within {} s",
            CONNECT_TIMEOUT.as_secs()
        )),
    }
}

enum Ended {
    Shutdown,
    Lost(String),
}

/// The listener task: receive until the connection fails, reconnect, resync,
/// repeat, until `shutdown`.
pub(crate) async fn listen(hub: &Hub, state: ListenerState, shutdown: &CancellationToken) {
    let ListenerState {
        url,
        mut connection,
    } = state;
    // Consecutive failures (of connecting, or of connections that died young).
    let mut failures: u32 = 0;
    loop {
        let mut listener = match connection.take() {
            Some(listener) => listener,
            None => {
                if failures > 0 {
                    let delay = retry_delay(failures);
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(delay) => {}
                    }
                }
                let attempt = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    attempt = connect(&url) => attempt,
                };
                match attempt {
                    Ok(listener) => {
                        tracing::info!("listening for live events again");
                        // Whatever was published while we weren't listening is
                        // lost: say so, now that new events can't be missed.
                        hub.resync_all();
                        listener
                    }
                    Err(error) => {
                        failures = failures.saturating_add(1);
                        tracing::warn!(
                            url = %redact_url(&url),
                            %error,
                            retry_in_ms = retry_delay(failures).as_millis() as u64,
                            "cannot reconnect the live-event listener"
                        );
                        continue;
                    }
                }
            }
        };
        let connected_at = Instant::now();
        match receive(hub, &mut listener, shutdown).await {
            Ended::Shutdown => return,
            Ended::Lost(error) => {
                failures = if connected_at.elapsed() >= HEALTHY_AFTER {
                    0
                } else {
                    failures.saturating_add(1)
                };
                tracing::warn!(
                    %error,
                    "lost the live-event listener's connection; reconnecting (events meanwhile are lost, subscribers get a resync)"
                );
            }
        }
    }
}

fn retry_delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (FIRST_RETRY_DELAY * 2u32.pow(doublings)).min(MAX_RETRY_DELAY)
}

async fn receive(hub: &Hub, listener: &mut PgListener, shutdown: &CancellationToken) -> Ended {
    let mut next_ping = Instant::now() + PING_INTERVAL;
    loop {
        // `try_recv` is cancel-safe (sqlx reads whole messages into a buffer
        // before consuming them), so losing the race to the timer loses nothing.
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return Ended::Shutdown,
            received = listener.try_recv() => match received {
                Ok(Some(notification)) => {
                    next_ping = Instant::now() + PING_INTERVAL;
                    if notification.channel() == CHANNEL {
                        dispatch_payload(hub, notification.payload());
                    }
                }
                Ok(None) => return Ended::Lost("the connection was closed".to_owned()),
                Err(err) => return Ended::Lost(err.to_string()),
            },
            _ = tokio::time::sleep_until(next_ping) => {
                let ping = sqlx::query("SELECT 1").execute(&mut *listener);
                match tokio::time::timeout(PING_TIMEOUT, ping).await {
                    Ok(Ok(_)) => next_ping = Instant::now() + PING_INTERVAL,
                    Ok(Err(err)) => return Ended::Lost(err.to_string()),
                    Err(_) => {
                        return Ended::Lost(format!(
                            "no answer to a keep-alive query within {} s",
                            PING_TIMEOUT.as_secs()
                        ))
                    }
                }
            }
        }
    }
}

fn dispatch_payload(hub: &Hub, payload: &str) {
    match serde_json::from_str::<Message>(payload) {
        Ok(message) => hub.dispatch(message),
        // A newer replica may send kinds this one doesn't know during a
        // rolling upgrade; not worth a warning per event.
        Err(err) => tracing::debug!(error = %err, payload, "ignoring an unknown live event"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_double_up_to_the_cap() {
        assert_eq!(retry_delay(1), Duration::from_millis(100));
        assert_eq!(retry_delay(2), Duration::from_millis(200));
        assert_eq!(retry_delay(4), Duration::from_millis(800));
        assert_eq!(retry_delay(12), MAX_RETRY_DELAY);
        assert_eq!(retry_delay(u32::MAX), MAX_RETRY_DELAY);
    }
}
