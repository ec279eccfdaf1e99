//! Outgoing mail. Requests never wait on the mail server: [`MailQueue::enqueue`]
//! stores the message in the `mail_outbox` table and wakes the background
//! worker ([`run_worker`]), which delivers over SMTP (or writes to the log when
//! no SMTP server is configured) and retries failures with backoff.
//!
//! The outbox lives in the database, so a restart loses nothing and several
//! replicas can share it: a worker claims one due row at a time with an atomic
//! lease, so no two replicas send the same row concurrently.

use std::sync::Arc;

use sea_orm::ConnectionTrait;
use tokio::sync::Notify;

use crate::error::{DomainError, DomainResult};

mod broadcast;
mod outbox;
pub mod templates;
mod transport;
mod worker;

#[cfg(test)]
mod tests;

pub use broadcast::send_to_all_users;
pub use worker::{run_worker, run_worker_with, WorkerSettings};

/// One message. Broadcasts use `bcc` so recipients don't see each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMail {
    pub to: Vec<String>,
    pub bcc: Vec<String>,
    pub subject: String,
    pub body: String,
}

impl OutgoingMail {
    /// A message to one recipient from a template's `(subject, body)`.
    pub fn to_one(to: impl Into<String>, (subject, body): (String, String)) -> Self {
        OutgoingMail {
            to: vec![to.into()],
            bcc: Vec::new(),
            subject,
            body,
        }
    }
}

/// A cheap, cloneable handle shared by every service that sends mail, and by
/// the worker that delivers it.
#[derive(Debug, Clone, Default)]
pub struct MailQueue {
    wake: Arc<Notify>,
}

impl MailQueue {
    pub fn new() -> Self {
        MailQueue::default()
    }

    /// Stores the message (inside the caller's transaction when `db` is one,
    /// so a rolled-back signup sends no mail) and wakes the worker.
    ///
    /// The wake-up may reach the worker before the caller commits; the worker
    /// then looks again at short intervals for a few seconds, so a committed
    /// mail goes out promptly without the caller having to call [`Self::wake`].
    pub async fn enqueue(&self, db: &impl ConnectionTrait, mail: OutgoingMail) -> DomainResult<()> {
        if mail.to.is_empty() && mail.bcc.is_empty() {
            return Err(DomainError::internal(
                "mail",
                format!("a mail without recipients: {:?}", mail.subject),
            ));
        }
        outbox::insert(db, &mail).await?;
        self.wake();
        Ok(())
    }

    /// Makes the worker look at the outbox now (e.g. right after a commit).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    async fn woken(&self) {
        self.wake.notified().await;
    }
}
