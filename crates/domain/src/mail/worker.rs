//! The background worker that empties the outbox.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::outbox;
use super::transport::{Delivery, SmtpDelivery};
use super::MailQueue;
use crate::config::SmtpConfig;
use crate::entities::mail_outbox::Model;

/// After a wake-up the worker checks this often for a while, because the
/// wake-up can come before the enqueuing transaction commits.
const RECHECK_INTERVAL: Duration = Duration::from_millis(250);
const RECHECK_WINDOW: Duration = Duration::from_secs(5);
/// Keeps a claim race (another replica took the due row) from spinning.
const MIN_WAIT: Duration = Duration::from_millis(50);

/// Timings of the worker; [`Default`] is what the server uses.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Look at the outbox at least this often (other replicas' mails, retries).
    pub poll_interval: Duration,
    /// Wait after the first failed attempt; doubles with each further failure…
    pub first_retry_delay: Duration,
    /// …up to this.
    pub max_retry_delay: Duration,
    /// Give up (and log an error) after this many failed attempts.
    pub max_attempts: i32,
    /// Bound on connecting and on each SMTP command.
    pub smtp_timeout: Duration,
    /// How long a claimed row stays hidden from other workers; a row whose
    /// worker died mid-delivery is retried after it.
    pub lease: Duration,
    /// On shutdown, how long a delivery in flight may still take.
    pub shutdown_grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            poll_interval: Duration::from_secs(30),
            first_retry_delay: Duration::from_secs(30),
            max_retry_delay: Duration::from_secs(3600),
            // 30 s doubling, capped at 1 h: about 3.5 h from first to last try.
            max_attempts: 10,
            smtp_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(5),
        }
    }
}

impl WorkerSettings {
    /// The wait after the `attempts`-th failure (1-based).
    fn retry_delay(&self, attempts: i32) -> Duration {
        let doublings = attempts.saturating_sub(1).clamp(0, 30) as u32;
        self.first_retry_delay
            .saturating_mul(1 << doublings)
            .min(self.max_retry_delay)
    }
}

/// Delivers queued mail until `cancel` fires, with the default settings.
/// `smtp: None` writes each mail to the log instead (message `mail`, fields
/// `to`, `bcc`, `subject`, `body`).
pub async fn run_worker(
    db: DatabaseConnection,
    smtp: Option<SmtpConfig>,
    queue: MailQueue,
    cancel: CancellationToken,
) {
    run_worker_with(db, smtp, queue, cancel, WorkerSettings::default()).await;
}

/// [`run_worker`] with chosen timings.
pub async fn run_worker_with(
    db: DatabaseConnection,
    smtp: Option<SmtpConfig>,
    queue: MailQueue,
    cancel: CancellationToken,
    settings: WorkerSettings,
) {
    let delivery = match smtp {
        None => {
            tracing::info!("no smtp_server configured: mails are written to the log");
            Delivery::Log
        }
        Some(config) => match SmtpDelivery::new(&config, settings.smtp_timeout) {
            Ok(smtp) => Delivery::Smtp(Box::new(smtp)),
            Err(err) => {
                // Config validation should have caught this; the mails stay
                // queued for a restart with a fixed configuration.
                tracing::error!(error = %err, "unusable SMTP settings: no mail will be sent");
                cancel.cancelled().await;
                return;
            }
        },
    };
    let worker = Worker {
        db,
        delivery,
        settings,
        cancel,
    };
    worker.run(queue).await;
}

struct Worker {
    db: DatabaseConnection,
    delivery: Delivery,
    settings: WorkerSettings,
    cancel: CancellationToken,
}

impl Worker {
    async fn run(&self, queue: MailQueue) {
        let mut recheck_until: Option<Instant> = None;
        while !self.cancel.is_cancelled() {
            let mut wait = match self.deliver_due().await {
                Some(wait) => wait,
                // Delivered one; look for the next straight away.
                None => continue,
            };
            if recheck_until.is_some_and(|until| Instant::now() < until) {
                wait = wait.min(RECHECK_INTERVAL);
            }
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                () = queue.woken() => recheck_until = Some(Instant::now() + RECHECK_WINDOW),
                () = tokio::time::sleep(wait) => {}
            }
        }
        tracing::debug!("mail worker stopped");
    }

    /// Delivers the earliest due row, if there is one (`None`); otherwise
    /// returns how long to wait before looking again.
    async fn deliver_due(&self) -> Option<Duration> {
        let poll = self.settings.poll_interval;
        let now = Utc::now();
        // Reading first keeps an idle worker from taking SQLite's write lock.
        match outbox::next_due(&self.db).await {
            Ok(None) => return Some(poll),
            Ok(Some(due)) if due > now => {
                let until_due = (due - now).to_std().unwrap_or_default();
                return Some(until_due.clamp(MIN_WAIT, poll));
            }
            Ok(Some(_)) => {}
            Err(err) => {
                tracing::warn!(error = %err, "could not read the mail outbox");
                return Some(poll);
            }
        }
        let lease_until = later(now, self.settings.lease);
        match outbox::claim_next(&self.db, now, lease_until).await {
            Ok(Some(row)) => {
                self.deliver(row).await;
                None
            }
            // Another replica was quicker.
            Ok(None) => Some(MIN_WAIT),
            Err(err) => {
                tracing::warn!(error = %err, "could not claim a mail from the outbox");
                Some(poll)
            }
        }
    }

    async fn deliver(&self, row: Model) {
        let mail = match row.to_mail() {
            Ok(mail) => mail,
            Err(err) => {
                tracing::error!(mail_id = row.id, error = %err, "unreadable mail in the outbox; dropping it");
                self.remove(row.id).await;
                return;
            }
        };
        let send = self.delivery.send(row.id, &mail);
        tokio::pin!(send);
        let result = tokio::select! {
            result = &mut send => result,
            () = self.cancel.cancelled() => {
                match tokio::time::timeout(self.settings.shutdown_grace, &mut send).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::info!(mail_id = row.id, "shutdown interrupted a mail delivery; it will be retried");
                        if let Err(err) = outbox::release(&self.db, row.id).await {
                            tracing::warn!(mail_id = row.id, error = %err, "could not release the mail; it is retried when its lease ends");
                        }
                        return;
                    }
                }
            }
        };
        let recipients = mail.to.len() + mail.bcc.len();
        match result {
            Ok(()) => {
                if matches!(self.delivery, Delivery::Smtp(_)) {
                    tracing::info!(mail_id = row.id, recipients, subject = %mail.subject, "mail sent");
                }
                self.remove(row.id).await;
            }
            Err(err) => {
                let attempts = row.attempts.saturating_add(1);
                if err.permanent || attempts >= self.settings.max_attempts {
                    tracing::error!(
                        mail_id = row.id,
                        attempts,
                        recipients,
                        subject = %mail.subject,
                        error = %err.message,
                        "giving up on a mail"
                    );
                    self.remove(row.id).await;
                    return;
                }
                let delay = self.settings.retry_delay(attempts);
                tracing::warn!(
                    mail_id = row.id,
                    attempts,
                    recipients,
                    subject = %mail.subject,
                    retry_in_secs = delay.as_secs_f64(),
                    error = %err.message,
                    "mail delivery failed; will retry"
                );
                let next = later(Utc::now(), delay);
                if let Err(db_err) =
                    outbox::reschedule(&self.db, row.id, attempts, next, &err.message).await
                {
                    tracing::warn!(mail_id = row.id, error = %db_err, "could not reschedule the mail; it is retried when its lease ends");
                }
            }
        }
    }

    async fn remove(&self, id: i64) {
        if let Err(err) = outbox::remove(&self.db, id).await {
            // The lease runs out and the mail is sent again: at least once.
            tracing::warn!(mail_id = id, error = %err, "could not remove a handled mail from the outbox");
        }
    }
}

fn later(from: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    from + chrono::Duration::from_std(by).unwrap_or(chrono::Duration::hours(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_from_30_seconds_up_to_an_hour() {
        let settings = WorkerSettings::default();
        let secs: Vec<u64> = (1..=10)
            .map(|n| settings.retry_delay(n).as_secs())
            .collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(settings.retry_delay(1000).as_secs(), 3600);
    }
}
