//! The in-process fan-out every notifier delivers through: one broadcast
//! channel per subscribed user, one watch channel per wake-up topic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

use super::{CredentialChange, Delivery, JobEvent, Message, WakeupTopic};

/// How many undelivered events one subscription may hold before the oldest
/// are dropped and it gets a [`Delivery::Resync`] instead. Per user, so one
/// busy user never makes another lag.
pub const SUBSCRIBER_BUFFER: usize = 256;

/// Credential changes a cache may fall behind by before it must forget all.
const CREDENTIALS_BUFFER: usize = 1024;

pub(crate) struct Hub {
    users: Mutex<Users>,
    topics: [watch::Sender<()>; WakeupTopic::ALL.len()],
    credentials: broadcast::Sender<CredentialChange>,
}

#[derive(Default)]
struct Users {
    closed: bool,
    /// Only users with a live subscription have an entry: an event for anyone
    /// else costs one map lookup.
    channels: HashMap<i64, broadcast::Sender<Delivery>>,
}

impl Hub {
    pub(crate) fn new() -> Self {
        Hub {
            users: Mutex::new(Users::default()),
            topics: std::array::from_fn(|_| watch::Sender::new(())),
            credentials: broadcast::Sender::new(CREDENTIALS_BUFFER),
        }
    }

    fn users(&self) -> MutexGuard<'_, Users> {
        // The critical sections can't leave the map inconsistent, so a panic
        // elsewhere while holding the lock is no reason to stop delivering.
        self.users
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn dispatch(&self, message: Message) {
        match message {
            Message::Job(event) => self.dispatch_job(event),
            Message::Wakeup(topic) => self.wake(topic),
            // No receiver (no cache yet) is fine: there is nothing to forget.
            Message::Credentials(change) => {
                let _ = self.credentials.send(change);
            }
        }
    }

    fn dispatch_job(&self, event: JobEvent) {
        let mut users = self.users();
        if let Some(sender) = users.channels.get(&event.user_id) {
            if sender.send(Delivery::Event(event)).is_err() {
                // No receivers left (their drop cleans up too; this is a backstop).
                users.channels.remove(&event.user_id);
            }
        }
    }

    fn wake(&self, topic: WakeupTopic) {
        // `send_replace` marks the value changed even with no receivers.
        self.topics[topic.index()].send_replace(());
    }

    /// After a gap in delivery: tells every subscriber to refetch and wakes
    /// every worker.
    pub(crate) fn resync_all(&self) {
        {
            let users = self.users();
            for sender in users.channels.values() {
                let _ = sender.send(Delivery::Resync);
            }
        }
        for topic in WakeupTopic::ALL {
            self.wake(topic);
        }
        let _ = self.credentials.send(CredentialChange::All);
    }

    /// Ends every subscription (their `recv` returns `None`) and every future
    /// one. Wake-up channels stay as they are: workers stop through their
    /// own cancellation token.
    pub(crate) fn close(&self) {
        let mut users = self.users();
        users.closed = true;
        users.channels.clear();
    }

    pub(crate) fn subscribe(self: &Arc<Self>, user_id: i64) -> JobSubscription {
        let mut users = self.users();
        if users.closed {
            let (_, receiver) = broadcast::channel(1);
            return JobSubscription {
                user_id,
                receiver,
                hub: Weak::new(),
            };
        }
        let receiver = match users.channels.get(&user_id) {
            Some(sender) => sender.subscribe(),
            None => {
                let (sender, receiver) = broadcast::channel(SUBSCRIBER_BUFFER);
                users.channels.insert(user_id, sender);
                receiver
            }
        };
        JobSubscription {
            user_id,
            receiver,
            hub: Arc::downgrade(self),
        }
    }

    pub(crate) fn subscribe_credentials(&self) -> broadcast::Receiver<CredentialChange> {
        self.credentials.subscribe()
    }

    pub(crate) fn subscribe_wakeups(&self, topic: WakeupTopic) -> Wakeups {
        Wakeups {
            receiver: self.topics[topic.index()].subscribe(),
        }
    }

    #[cfg(test)]
    pub(crate) fn subscribed_users(&self) -> usize {
        self.users().channels.len()
    }
}

/// One user's job events. Dropping it unsubscribes.
pub struct JobSubscription {
    user_id: i64,
    receiver: broadcast::Receiver<Delivery>,
    /// Weak, so that subscriptions don't keep a dropped notifier's channels
    /// open; empty for a subscription made after shutdown.
    hub: Weak<Hub>,
}

impl JobSubscription {
    pub fn user_id(&self) -> i64 {
        self.user_id
    }

    /// The next event or [`Delivery::Resync`]; `None` once the notifier has
    /// shut down (the SSE stream should end then). Cancel-safe, so it can sit
    /// in a `tokio::select!` next to a keep-alive timer.
    pub async fn recv(&mut self) -> Option<Delivery> {
        match self.receiver.recv().await {
            Ok(delivery) => Some(delivery),
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(
                    user_id = self.user_id,
                    missed,
                    "a live-event subscriber fell behind; asking it to resync"
                );
                Some(Delivery::Resync)
            }
            Err(RecvError::Closed) => None,
        }
    }
}

impl Drop for JobSubscription {
    fn drop(&mut self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut users = hub.users();
        // While this receiver lives, the user's entry is its channel: entries
        // are only removed when they have no receivers, or all at once by
        // `close`, after which none are added. Under the lock no new receiver
        // can appear, so a count of one means this is the last.
        if let Some(sender) = users.channels.get(&self.user_id) {
            if sender.receiver_count() <= 1 {
                users.channels.remove(&self.user_id);
            }
        }
    }
}

/// Wake-ups of one topic, coalesced: any number published since the last
/// wait make the next wait return once.
pub struct Wakeups {
    receiver: watch::Receiver<()>,
}

impl Wakeups {
    /// Returns once a wake-up has been published since the subscription or
    /// the previous wait. Once the notifier is gone it never returns, so a
    /// worker's loop keeps ending through its own cancellation token.
    /// Cancel-safe.
    pub async fn wait(&mut self) {
        if self.receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Consumes a pending wake-up without waiting; `true` if there was one.
    pub fn try_wait(&mut self) -> bool {
        match self.receiver.has_changed() {
            Ok(true) => {
                self.receiver.mark_unchanged();
                true
            }
            _ => false,
        }
    }
}
