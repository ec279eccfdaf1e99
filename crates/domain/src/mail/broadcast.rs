//! `send_email_to_all_users` (SPEC §3.7): an admin's message to every verified user.

use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QuerySelect, TransactionTrait};

use super::{templates, OutgoingMail};
use crate::entities::users;
use crate::error::DomainResult;
use crate::Domain;

/// Recipients per message. Project-W sends one message to everybody; mail
/// servers cap recipients per message (Postfix: 1000, many providers: 100-500),
/// so a large instance gets several messages, each still Bcc only.
const MAX_BCC_PER_MESSAGE: usize = 500;

/// Queues the broadcast: every verified user in Bcc (never in To, so nobody
/// sees the others' addresses); nothing is queued when there is no such user.
pub async fn send_to_all_users(d: &Domain, subject: &str, body: &str) -> DomainResult<()> {
    let mut addresses: Vec<String> = users::Entity::find()
        .select_only()
        .column(users::Column::Email)
        .filter(users::Column::IsVerified.eq(true))
        .into_tuple::<String>()
        .all(&d.db)
        .await?;
    // One address can belong to several accounts (local and LDAP, say).
    addresses.sort_unstable();
    addresses.dedup();
    if addresses.is_empty() {
        return Ok(());
    }
    let (subject, body) = templates::broadcast(subject, body);
    let txn = d.db.begin().await?;
    for chunk in addresses.chunks(MAX_BCC_PER_MESSAGE) {
        let mail = OutgoingMail {
            to: Vec::new(),
            bcc: chunk.to_vec(),
            subject: subject.clone(),
            body: body.clone(),
        };
        d.mail.enqueue(&txn, mail).await?;
    }
    txn.commit().await?;
    tracing::info!(recipients = addresses.len(), "broadcast mail queued");
    d.mail.wake();
    Ok(())
}
