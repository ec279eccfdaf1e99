//! Login throttling (SPEC §3.11: Project-W has none).
//!
//! Every failed login is a row in `login_failures` (account, client address,
//! time), so the limits hold across restarts and replicas. Two limits apply
//! before a password is even checked:
//! - per account *and* address: someone guessing at an account from one
//!   address is stopped there, while the owner logging in from another
//!   address is never blocked by it;
//! - per address over all accounts: one address can't spray guesses across
//!   many accounts.
//!
//! The trade-off: an attacker spreading guesses over many addresses gets
//! `max_failures_per_account` guesses per address and window. A global
//! per-account lock would stop that, but would also let anyone lock any user
//! out, which the issue rules out.
//!
//! The functions take the account as a string with its provider (see
//! [`account_key`]), so LDAP logins share this module.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};

use crate::config::LoginThrottlingConfig;
use crate::entities::login_failures;
use crate::error::{DomainError, DomainResult};
use crate::Domain;

/// Column widths of `login_failures` (m20261125_000002).
const MAX_ACCOUNT_CHARS: usize = 512;
const MAX_ADDRESS_CHARS: usize = 64;

/// The throttling key of a login name at a provider: `provider:name`, lower
/// case, so case variants of one name count together.
pub fn account_key(provider: &str, login_name: &str) -> String {
    // PostgreSQL text can't hold NUL; a name with one still counts against
    // the same key every time.
    let name = login_name.trim().to_lowercase().replace('\0', "\u{fffd}");
    truncate(&format!("{provider}:{name}"), MAX_ACCOUNT_CHARS)
}

fn truncate(text: &str, max_chars: usize) -> String {
    text.chars().take(max_chars).collect()
}

/// Refuses the attempt with [`DomainError::Throttled`] when either limit is
/// reached.
pub async fn check(d: &Domain, account: &str, client_address: &str) -> DomainResult<()> {
    check_at(d, account, client_address, Utc::now()).await
}

pub(crate) async fn check_at(
    d: &Domain,
    account: &str,
    client_address: &str,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    let limits = &d.config.security.login_throttling;
    let address = truncate(client_address, MAX_ADDRESS_CHARS);

    let pair = login_failures::Entity::find()
        .filter(login_failures::Column::Account.eq(account))
        .filter(login_failures::Column::ClientAddress.eq(address.as_str()));
    let account_wait = wait_time(
        &d.db,
        pair,
        limits.max_failures_per_account,
        Duration::minutes(limits.account_window_minutes.into()),
        now,
    )
    .await?;
    let per_address = login_failures::Entity::find()
        .filter(login_failures::Column::ClientAddress.eq(address.as_str()));
    let address_wait = wait_time(
        &d.db,
        per_address,
        limits.max_failures_per_address,
        Duration::minutes(limits.address_window_minutes.into()),
        now,
    )
    .await?;

    match account_wait.max(address_wait) {
        Some(wait) => {
            let retry_after_secs = u64::try_from(wait.num_seconds()).unwrap_or(0).max(1);
            tracing::warn!(
                account,
                client_address,
                retry_after_secs,
                "login refused: too many failed attempts"
            );
            Err(DomainError::Throttled {
                detail: format!(
                    "Too many failed login attempts. Please try again in {}.",
                    describe_wait(retry_after_secs)
                ),
                retry_after_secs,
            })
        }
        None => Ok(()),
    }
}

/// When `max` or more failures of `query` lie in the window: how long until
/// the `max`-th newest leaves it, which brings the count below the limit.
async fn wait_time(
    db: &impl ConnectionTrait,
    query: sea_orm::Select<login_failures::Entity>,
    max: u32,
    window: Duration,
    now: DateTime<Utc>,
) -> DomainResult<Option<Duration>> {
    let recent: Vec<DateTime<Utc>> = query
        .filter(login_failures::Column::FailedAt.gt(now - window))
        .order_by_desc(login_failures::Column::FailedAt)
        .select_only()
        .column(login_failures::Column::FailedAt)
        .limit(u64::from(max))
        .into_tuple()
        .all(db)
        .await?;
    if max == 0 || recent.len() < max as usize {
        return Ok(None);
    }
    Ok(recent.last().map(|oldest| *oldest + window - now))
}

fn describe_wait(seconds: u64) -> String {
    match seconds {
        1 => "1 second".to_owned(),
        s if s < 120 => format!("{s} seconds"),
        s => format!("{} minutes", s.div_ceil(60)),
    }
}

/// Counts a failed login.
pub async fn record_failure(d: &Domain, account: &str, client_address: &str) -> DomainResult<()> {
    record_failure_at(d, account, client_address, Utc::now()).await
}

pub(crate) async fn record_failure_at(
    d: &Domain,
    account: &str,
    client_address: &str,
    now: DateTime<Utc>,
) -> DomainResult<()> {
    tracing::warn!(account, client_address, "failed login");
    login_failures::ActiveModel {
        account: Set(account.to_owned()),
        client_address: Set(truncate(client_address, MAX_ADDRESS_CHARS)),
        failed_at: Set(now),
        ..Default::default()
    }
    .insert(&d.db)
    .await?;
    Ok(())
}

/// Forgets the failures of this account from this address after a successful
/// login, so an owner's typos don't add up over the day. Failures against
/// other accounts from the address still count towards its limit.
pub async fn clear(d: &Domain, account: &str, client_address: &str) -> DomainResult<()> {
    login_failures::Entity::delete_many()
        .filter(login_failures::Column::Account.eq(account))
        .filter(
            login_failures::Column::ClientAddress.eq(truncate(client_address, MAX_ADDRESS_CHARS)),
        )
        .exec(&d.db)
        .await?;
    Ok(())
}

/// Deletes failures too old to count for either limit; returns how many.
pub async fn purge_old_failures(d: &Domain) -> DomainResult<u64> {
    let horizon = longest_window(&d.config.security.login_throttling);
    let result = login_failures::Entity::delete_many()
        .filter(login_failures::Column::FailedAt.lt(Utc::now() - horizon))
        .exec(&d.db)
        .await?;
    Ok(result.rows_affected)
}

fn longest_window(limits: &LoginThrottlingConfig) -> Duration {
    Duration::minutes(
        limits
            .account_window_minutes
            .max(limits.address_window_minutes)
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_waits_read_well() {
        assert_eq!(
            account_key("project-W", " Jane@Example.org "),
            "project-W:jane@example.org"
        );
        assert_eq!(
            account_key("p", &"x".repeat(600)).chars().count(),
            MAX_ACCOUNT_CHARS
        );
        assert_eq!(account_key("p", "a\0b"), account_key("p", "a\0b"));
        assert!(!account_key("p", "a\0b").contains('\0'));
        assert_eq!(describe_wait(1), "1 second");
        assert_eq!(describe_wait(59), "59 seconds");
        assert_eq!(describe_wait(900), "15 minutes");
        assert_eq!(describe_wait(61 * 60 - 1), "61 minutes");
    }
}
