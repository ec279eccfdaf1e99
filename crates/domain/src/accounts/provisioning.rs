//! Accounts that come from the config (SPEC §3.2, §3.10, §4): provisioned
//! users, brought in line with `security.local_account.user_provisioning` at
//! every start, and the initial admin created when an instance has none.

use chrono::Utc;
use rand::Rng;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, TransactionTrait};

use super::{find_local_user_by_email, is_unique_violation, NewUser};
use crate::config::LocalAccountMode;
use crate::email_address::EmailAddress;
use crate::entities::{tokens, users};
use crate::error::{DomainError, DomainResult};
use crate::passwords::{self, Verification};
use crate::Domain;

/// Characters of generated passwords: no look-alikes (0/O, 1/l/I), and
/// symbols that survive copying from a log line.
const PASSWORD_ALPHABET: &[u8] =
    b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.!@#%+=";
const GENERATED_PASSWORD_CHARS: usize = 24;

/// The admin account [`ensure_initial_admin`] created, for the one log line
/// that shows its password.
#[derive(Clone, PartialEq, Eq)]
pub struct InitialAdmin {
    pub email: String,
    pub password: String,
}

impl std::fmt::Debug for InitialAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitialAdmin")
            .field("email", &self.email)
            .field("password", &"[redacted]")
            .finish()
    }
}

/// Creates or updates the users listed in `user_provisioning`, keyed by their
/// number: email, password and admin flag as configured, always verified. An
/// existing unprovisioned account with a listed address becomes that
/// provisioned user. Skipped when local accounts are disabled.
pub async fn provision_users(d: &Domain) -> DomainResult<()> {
    let local = &d.config.security.local_account;
    if local.mode == LocalAccountMode::Disabled {
        return Ok(());
    }
    for (number, entry) in &local.user_provisioning {
        let key = format!("security.local_account.user_provisioning.{number}");
        let address = EmailAddress::parse(&entry.email)
            .map_err(|err| DomainError::Internal(format!("{key}.email: {err}")))?;
        // A replica starting at the same time may insert the same user first;
        // the second round then finds and updates it.
        let mut attempts = 0;
        loop {
            attempts += 1;
            match provision_one(
                d,
                i64::from(*number),
                &address,
                entry.password.expose(),
                entry.is_admin,
            )
            .await
            {
                Err(err) if attempts < 2 && is_conflict(&err) => continue,
                Err(err) if is_conflict(&err) => {
                    return Err(DomainError::Internal(format!(
                        "{key}.email: `{address}` belongs to another account (another \
                         provisioned user's, or one whose address can't be moved)"
                    )))
                }
                Err(err) => return Err(err),
                Ok(user_id) => {
                    // Other replicas may hold sessions of this user with the
                    // admin flag or address the config just changed.
                    crate::tokens::credentials_changed(d, user_id).await;
                    tracing::info!(
                        user_id,
                        provision_number = number,
                        "provisioned user in sync"
                    );
                    break;
                }
            }
        }
    }
    Ok(())
}

/// Marker for a unique-index clash inside [`provision_one`].
const CONFLICT: &str = "provisioning conflict";

fn is_conflict(err: &DomainError) -> bool {
    matches!(err, DomainError::Conflict(message) if message == CONFLICT)
}

fn conflict_or(err: sea_orm::DbErr) -> DomainError {
    if is_unique_violation(&err) {
        DomainError::Conflict(CONFLICT.to_owned())
    } else {
        err.into()
    }
}

async fn provision_one(
    d: &Domain,
    number: i64,
    address: &EmailAddress,
    password: &str,
    is_admin: bool,
) -> DomainResult<i64> {
    let existing = match users::Entity::find()
        .filter(users::Column::ProvisionNumber.eq(number))
        .one(&d.db)
        .await?
    {
        Some(user) => Some(user),
        None => find_local_user_by_email(&d.db, address.as_str()).await?,
    };
    let Some(user) = existing else {
        let password_hash = d.passwords.hash(password).await?;
        let _now = Utc::now();
        let user = NewUser {
            is_verified: true,
            is_admin,
            provision_number: Some(number),
            ..NewUser::local(address.as_str(), password_hash)
        }
        .insert(&d.db)
        .await
        .map_err(conflict_or)?;
        return Ok(user.id);
    };

    // Keep a hash that already matches, so a restart rewrites nothing.
    let keep_hash = match user.password_hash.as_deref() {
        Some(hash) => d.passwords.verify(password, hash).await? == Verification::Match,
        None => false,
    };
    let mut update = users::Entity::update_many()
        .col_expr(users::Column::Email, Expr::value(address.as_str()))
        .col_expr(users::Column::IsAdmin, Expr::value(is_admin))
        .col_expr(users::Column::IsVerified, Expr::value(true))
        .col_expr(users::Column::ProvisionNumber, Expr::value(Some(number)))
        .filter(users::Column::Id.eq(user.id));
    if !keep_hash {
        let password_hash = d.passwords.hash(password).await?;
        update = update.col_expr(
            users::Column::PasswordHash,
            Expr::value(Some(password_hash)),
        );
    }
    update.exec(&d.db).await.map_err(conflict_or)?;
    Ok(user.id)
}

/// A random password that satisfies the password rule.
pub(crate) fn generate_password() -> String {
    let mut rng = rand::rng();
    loop {
        let password: String = (0..GENERATED_PASSWORD_CHARS)
            .map(|_| char::from(PASSWORD_ALPHABET[rng.random_range(0..PASSWORD_ALPHABET.len())]))
            .collect();
        if passwords::satisfies_rule(&password) {
            return password;
        }
    }
}

/// Makes sure the instance has an admin (SPEC §4). When no user is an admin,
/// no provisioned user will be, and no OIDC or LDAP provider names admins,
/// creates `initial_admin_email` as a verified local admin with a random
/// password and returns it so the server logs it once. An unprovisioned
/// account that already has the address is taken over: it becomes the admin
/// with the new password, and its sessions end.
pub async fn ensure_initial_admin(d: &Domain) -> DomainResult<Option<InitialAdmin>> {
    let security = &d.config.security;
    let local = &security.local_account;
    if local.mode == LocalAccountMode::Disabled
        || local.user_provisioning.values().any(|user| user.is_admin)
        || security
            .oidc_providers
            .values()
            .any(|p| p.admin_role.is_some())
        || security
            .ldap_providers
            .values()
            .any(|p| p.admin_query.is_some())
    {
        return Ok(None);
    }
    let admins = users::Entity::find()
        .filter(users::Column::IsAdmin.eq(true))
        .count(&d.db)
        .await?;
    if admins > 0 {
        return Ok(None);
    }
    let address = EmailAddress::parse(&local.initial_admin_email).map_err(|err| {
        DomainError::Internal(format!("security.local_account.initial_admin_email: {err}"))
    })?;
    let password = generate_password();
    let password_hash = d.passwords.hash(&password).await?;

    match find_local_user_by_email(&d.db, address.as_str()).await? {
        Some(user) if user.provision_number.is_some() => {
            // A provisioned non-admin has the address; the config decides about it.
            tracing::warn!(
                email = %address,
                "no admin exists, but initial_admin_email belongs to a provisioned user; \
                 no initial admin created"
            );
            return Ok(None);
        }
        Some(user) => {
            tracing::warn!(
                user_id = user.id,
                email = %address,
                "no admin exists: the existing account with initial_admin_email becomes the \
                 admin with a new password"
            );
            let txn = d.db.begin().await?;
            users::Entity::update_many()
                .col_expr(users::Column::IsAdmin, Expr::value(true))
                .col_expr(users::Column::IsVerified, Expr::value(true))
                .col_expr(
                    users::Column::PasswordHash,
                    Expr::value(Some(password_hash)),
                )
                .col_expr(
                    users::Column::ActivationGeneration,
                    Expr::col(users::Column::ActivationGeneration).add(1),
                )
                .col_expr(
                    users::Column::PasswordResetGeneration,
                    Expr::col(users::Column::PasswordResetGeneration).add(1),
                )
                .filter(users::Column::Id.eq(user.id))
                .exec(&txn)
                .await?;
            tokens::Entity::delete_many()
                .filter(tokens::Column::UserId.eq(user.id))
                .exec(&txn)
                .await?;
            txn.commit().await?;
            crate::tokens::credentials_changed(d, user.id).await;
        }
        None => {
            let inserted = NewUser {
                is_verified: true,
                is_admin: true,
                ..NewUser::local(address.as_str(), password_hash)
            }
            .insert(&d.db)
            .await;
            match inserted {
                Ok(_) => {}
                // Another replica created it at the same moment and logs it.
                Err(err) if is_unique_violation(&err) => return Ok(None),
                Err(err) => return Err(err.into()),
            }
        }
    }
    Ok(Some(InitialAdmin {
        email: address.into_string(),
        password,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_passwords_follow_the_rule_and_differ() {
        let first = generate_password();
        assert_eq!(first.chars().count(), GENERATED_PASSWORD_CHARS);
        assert!(passwords::satisfies_rule(&first));
        assert_ne!(first, generate_password());
        let admin = InitialAdmin {
            email: "a@b.org".to_owned(),
            password: first.clone(),
        };
        assert!(!format!("{admin:?}").contains(&first));
    }
}
