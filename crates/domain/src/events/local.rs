//! The notifier of a single process (SQLite): publishing is a send on the hub.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseTransaction, DbErr};

use super::hub::Hub;
use super::{BoxFuture, JobSubscription, Message, Notifier, WakeupTopic, Wakeups};

/// Delivers within this process only. [`super::notifier_for`] picks it for
/// SQLite; on its own (`InProcessNotifier::new()`) it suits tests of code
/// that publishes or subscribes.
pub struct InProcessNotifier {
    hub: Arc<Hub>,
}

impl InProcessNotifier {
    pub fn new() -> Self {
        Self::with_hub(Arc::new(Hub::new()))
    }

    pub(crate) fn with_hub(hub: Arc<Hub>) -> Self {
        InProcessNotifier { hub }
    }
}

impl Default for InProcessNotifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Notifier for InProcessNotifier {
    fn send(&self, message: Message) -> BoxFuture<'_, ()> {
        self.hub.dispatch(message);
        Box::pin(std::future::ready(()))
    }

    fn send_in<'a>(
        &'a self,
        _conn: &'a dyn ConnectionTrait,
        message: Message,
    ) -> BoxFuture<'a, ()> {
        // No commit hook to wait for: delivered now (documented on the trait).
        self.send(message)
    }

    fn commit_and_send(
        &self,
        txn: DatabaseTransaction,
        messages: Vec<Message>,
    ) -> BoxFuture<'_, Result<(), DbErr>> {
        Box::pin(async move {
            txn.commit().await?;
            for message in messages {
                self.hub.dispatch(message);
            }
            Ok(())
        })
    }

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
