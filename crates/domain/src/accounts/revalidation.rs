//! Periodic re-checking of LDAP and OIDC users against their provider, so that
//! someone removed from the directory (or who lost the admin role) loses the
//! sessions and API tokens Scribe issued while they still had access.
//!
//! What changes, by the provider's answer:
//! - revoked: every token of the user goes (sessions and API tokens), and the
//!   admin flag; the account itself stays (it may come back, and its jobs are
//!   the user's);
//! - still allowed, no longer admin: the flag goes and every token loses its
//!   admin privileges at once (the user keeps working as a normal user);
//! - still allowed, now admin: the flag is set; tokens gain nothing, an admin
//!   session still needs a login with scope `admin`;
//! - no answer: nothing changes, so an outage doesn't log everybody out.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait};

use super::UserType;
use crate::entities::{tokens, users};
use crate::error::DomainResult;
use crate::Domain;

/// Users read from the database per round trip.
const BATCH: u64 = 500;

/// What a provider says about a user Scribe already knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessCheck {
    /// Still allowed in; `is_admin` is the role the provider grants now.
    Granted { is_admin: bool },
    /// The provider no longer lets this user in: every token goes.
    Revoked,
    /// The provider couldn't answer (down, or nothing to ask it with): change
    /// nothing, so an outage doesn't log everybody out.
    Unknown,
}

/// The counts of one revalidation run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RevalidationReport {
    /// LDAP and OIDC users looked at.
    pub checked: u64,
    /// Users the provider no longer lets in who still had tokens (or the
    /// admin flag) until this run.
    pub revoked_users: u64,
    /// Their tokens, deleted.
    pub deleted_tokens: u64,
    /// Users who lost the admin role.
    pub demoted_users: u64,
    /// Tokens that lost their admin privileges.
    pub stripped_tokens: u64,
    /// Users who gained the admin role.
    pub promoted_users: u64,
    /// Users whose provider gave no answer (unchanged).
    pub unknown: u64,
}

/// Asks each LDAP and OIDC user's provider about them and applies the answer
/// (see the module documentation). Fails only on database errors; a provider
/// that can't answer leaves its users as they are.
pub async fn revalidate_external_users(d: &Domain) -> DomainResult<RevalidationReport> {
    let mut report = RevalidationReport::default();
    let mut after_id = 0;
    loop {
        let batch = users::Entity::find()
            .filter(
                users::Column::UserType.is_in([UserType::Ldap.as_str(), UserType::Oidc.as_str()]),
            )
            .filter(users::Column::Id.gt(after_id))
            .order_by_asc(users::Column::Id)
            .limit(BATCH)
            .all(&d.db)
            .await?;
        let Some(last) = batch.last() else {
            break;
        };
        after_id = last.id;
        for user in batch {
            let answer = match UserType::parse(&user.user_type) {
                Some(UserType::Ldap) => super::ldap::check_access(d, &user).await,
                Some(UserType::Oidc) => super::oidc::check_access(d, &user).await,
                _ => continue,
            };
            let answer = answer.unwrap_or_else(|err| {
                tracing::warn!(user_id = user.id, error = %err, "could not revalidate a user");
                AccessCheck::Unknown
            });
            report.checked += 1;
            apply(d, &user, answer, &mut report).await?;
        }
    }
    if report.revoked_users + report.demoted_users + report.promoted_users > 0 {
        tracing::info!(?report, "revalidated LDAP and OIDC users");
    } else {
        tracing::debug!(?report, "revalidated LDAP and OIDC users");
    }
    Ok(report)
}

async fn apply(
    d: &Domain,
    user: &users::Model,
    answer: AccessCheck,
    report: &mut RevalidationReport,
) -> DomainResult<()> {
    match answer {
        AccessCheck::Unknown => report.unknown += 1,
        AccessCheck::Revoked => {
            let txn = d.db.begin().await?;
            let deleted = tokens::Entity::delete_many()
                .filter(tokens::Column::UserId.eq(user.id))
                .exec(&txn)
                .await?
                .rows_affected;
            set_admin(&txn, user.id, false).await?;
            txn.commit().await?;
            crate::tokens::credentials_changed(d, user.id).await;
            report.deleted_tokens += deleted;
            // Users revoked in an earlier run have nothing left to lose.
            if deleted > 0 || user.is_admin {
                report.revoked_users += 1;
                tracing::info!(
                    user_id = user.id,
                    provider = %user.provider_name,
                    deleted_tokens = deleted,
                    "user lost access at their provider: tokens invalidated"
                );
            }
        }
        AccessCheck::Granted { is_admin: false } => {
            let txn = d.db.begin().await?;
            if user.is_admin {
                set_admin(&txn, user.id, false).await?;
                report.demoted_users += 1;
            }
            // Also covers admin tokens left over from an earlier demotion that
            // raced with a login.
            let stripped = tokens::Entity::update_many()
                .col_expr(tokens::Column::AdminPrivileges, Expr::value(false))
                .filter(tokens::Column::UserId.eq(user.id))
                .filter(tokens::Column::AdminPrivileges.eq(true))
                .exec(&txn)
                .await?
                .rows_affected;
            txn.commit().await?;
            if user.is_admin || stripped > 0 {
                crate::tokens::credentials_changed(d, user.id).await;
            }
            report.stripped_tokens += stripped;
            if user.is_admin || stripped > 0 {
                tracing::info!(
                    user_id = user.id,
                    provider = %user.provider_name,
                    stripped_tokens = stripped,
                    "user lost the admin role at their provider: admin privileges removed"
                );
            }
        }
        AccessCheck::Granted { is_admin: true } => {
            if !user.is_admin {
                set_admin(&d.db, user.id, true).await?;
                crate::tokens::credentials_changed(d, user.id).await;
                report.promoted_users += 1;
                tracing::info!(
                    user_id = user.id,
                    provider = %user.provider_name,
                    "user gained the admin role at their provider"
                );
            }
        }
    }
    Ok(())
}

async fn set_admin(
    db: &impl sea_orm::ConnectionTrait,
    user_id: i64,
    is_admin: bool,
) -> DomainResult<()> {
    users::Entity::update_many()
        .col_expr(users::Column::IsAdmin, Expr::value(is_admin))
        .filter(users::Column::Id.eq(user_id))
        .exec(db)
        .await?;
    Ok(())
}
