//! Local accounts: sign-up, activation and email-change links, password
//! reset, password and email changes, login (SPEC §3.2, §3.10).
//!
//! Checks run in Project-W's order, which is FastAPI's: the auth dependency's
//! 401/403s (the caller's), then this route's own dependency checks (403s),
//! then request-body validation (422), then the handler's checks (400/405).

use chrono::Utc;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    TransactionTrait,
};

use super::{
    find_local_user_by_email, is_unique_violation, NewUser, User, UserType, LOCAL_PROVIDER_NAME,
};
use crate::config::{Config, LocalAccountMode};
use crate::email_address::EmailAddress;
use crate::entities::users;
use crate::error::{DomainError, DomainResult};
use crate::links::{self, LinkClaims, LinkPurpose};
use crate::mail::{templates, OutgoingMail};
use crate::passwords::{self, Verification};
use crate::tokens::{self, IssuedToken, Session};
use crate::{throttle, Domain};

const SIGNUP_DISABLED: &str = "Signup of new local accounts is disabled on this server";
const EMAIL_TAKEN_ON_SIGNUP: &str = "E-Mail is already in use by another local account";
const BAD_ACTIVATION_TOKEN: &str = "Could not validate account activation token";
const BAD_RESET_TOKEN: &str = "Could not validate password reset token";
const ALREADY_VERIFIED: &str = "This user is already verified";
const BAD_RESET_EMAIL: &str = "The provided email is not a valid email address";
const CONFIRMATION_PASSWORD_INVALID: &str = "Confirmation password invalid";
const WRONG_CREDENTIALS: &str = "Incorrect username or password";
const NOT_AN_ADMIN: &str = "Your user isn't an admin";
const UNSUPPORTED_SCOPE: &str = "We don't support that token permission scope";
/// The OAuth2 scope that asks for an admin token.
pub const ADMIN_SCOPE: &str = "admin";
/// A session token's name when the client sent no User-Agent.
pub const UNKNOWN_DEVICE: &str = "Unknown device";

fn domain_not_allowed(domain: &str) -> DomainError {
    DomainError::Invalid(format!(
        "'{domain}' is not an allowed email domain on this server"
    ))
}

fn check_domain_allowed(config: &Config, address: &EmailAddress) -> DomainResult<()> {
    let allowed = &config.security.local_account.allowed_email_domains;
    if allowed.is_empty() || allowed.iter().any(|domain| domain == address.domain()) {
        Ok(())
    } else {
        Err(domain_not_allowed(address.domain()))
    }
}

/// Raises the user's generation counter for `column` and returns the new
/// value, inside `txn`. Writing first takes the row (SQLite: the database)
/// lock, so the value read back is ours.
async fn bump_generation(
    txn: &DatabaseTransaction,
    user_id: i64,
    column: users::Column,
) -> DomainResult<i64> {
    users::Entity::update_many()
        .col_expr(column, Expr::col(column).add(1))
        .filter(users::Column::Id.eq(user_id))
        .exec(txn)
        .await?;
    let generation: Option<i64> = users::Entity::find_by_id(user_id)
        .select_only()
        .column(column)
        .into_tuple()
        .one(txn)
        .await?;
    generation.ok_or_else(|| DomainError::internal("users", format!("user {user_id} vanished")))
}

/// Signs a link for `claims` and queues the mail `template` makes of it, in
/// `txn` (so a rolled-back change sends nothing).
async fn mail_link(
    d: &Domain,
    txn: &impl ConnectionTrait,
    to: &str,
    claims: &LinkClaims,
    template: fn(&str, &str) -> (String, String),
) -> DomainResult<()> {
    let token = links::sign(&d.secret_key, claims);
    let (subject, body) = template(&d.config.client_url, &token);
    d.mail
        .enqueue(
            txn,
            OutgoingMail {
                to: vec![to.to_owned()],
                bcc: Vec::new(),
                subject,
                body,
            },
        )
        .await
}

/// Creates an unverified local account and mails its activation link.
/// Returns the new user's id.
///
/// 422 for a malformed address or a password that breaks the rule (both
/// reported), then 405 unless sign-up is enabled, 400 for a domain not
/// allowed or an address in use.
pub async fn signup(d: &Domain, email: &str, password: &str) -> DomainResult<i64> {
    let mut violations = Vec::new();
    let address = EmailAddress::parse_new(email)
        .map_err(|err| violations.push(err.violation("email")))
        .ok();
    if !passwords::satisfies_rule(password) {
        violations.push(passwords::rule_violation("password"));
    }
    let Some(address) = address.filter(|_| violations.is_empty()) else {
        return Err(DomainError::Validation(violations));
    };
    if d.config.security.local_account.mode != LocalAccountMode::Enabled {
        return Err(DomainError::NotAllowed(SIGNUP_DISABLED.to_owned()));
    }
    check_domain_allowed(&d.config, &address)?;

    // Hashed before the lookup, so a taken address answers no faster.
    let password_hash = d.passwords.hash(password).await?;
    if find_local_user_by_email(&d.db, address.as_str())
        .await?
        .is_some()
    {
        return Err(DomainError::Invalid(EMAIL_TAKEN_ON_SIGNUP.to_owned()));
    }

    let now = Utc::now();
    let txn = d.db.begin().await?;
    let inserted = NewUser {
        // The activation link mailed below is generation 1.
        activation_generation: 1,
        ..NewUser::local(address.as_str(), password_hash)
    }
    .insert(&txn)
    .await;
    let user = match inserted {
        Ok(user) => user,
        // Someone signed up with the same address a moment ago.
        Err(err) if is_unique_violation(&err) => {
            return Err(DomainError::Invalid(EMAIL_TAKEN_ON_SIGNUP.to_owned()))
        }
        Err(err) => return Err(err.into()),
    };
    let claims = LinkClaims::new(LinkPurpose::Activation, user.id, 1, &user.email, None, now);
    mail_link(d, &txn, &user.email, &claims, templates::activation).await?;
    txn.commit().await?;
    tracing::info!(user_id = user.id, "local account signed up");
    Ok(user.id)
}

/// Opens an activation or email-change link: verifies the address, or moves
/// the account to the new one. 401 for a bad, expired, used or superseded
/// link; 400 when the account is gone, already verified, or the new address
/// was taken meanwhile.
pub async fn activate(d: &Domain, token: &str) -> DomainResult<()> {
    let unauthenticated = || DomainError::Unauthenticated(BAD_ACTIVATION_TOKEN.to_owned());
    let claims = links::verify(
        &d.secret_key,
        token,
        &[LinkPurpose::Activation, LinkPurpose::EmailChange],
        Utc::now(),
    )
    .map_err(|_| unauthenticated())?;
    let no_user = || DomainError::Invalid(format!("No user with email '{}' exists", claims.email));
    let user = users::Entity::find_by_id(claims.user_id)
        .one(&d.db)
        .await?
        .filter(|user| user.user_type == UserType::Local.as_str())
        .ok_or_else(no_user)?;
    // A used or superseded link is a 401 even when its use moved the address.
    if user.activation_generation != claims.generation {
        return Err(unauthenticated());
    }
    if user.email != claims.email {
        return Err(no_user());
    }
    let new_email = claims.new_email.as_deref().unwrap_or(&claims.email);
    if user.is_verified && new_email == claims.email {
        return Err(DomainError::Invalid(format!(
            "Email address '{}' is already verified",
            claims.email
        )));
    }
    let taken = || DomainError::Invalid(format!("'{new_email}' is already in use by another user"));
    if new_email != user.email && find_local_user_by_email(&d.db, new_email).await?.is_some() {
        return Err(taken());
    }
    // Compare-and-set on the generation: of two concurrent uses, one wins.
    let updated = users::Entity::update_many()
        .col_expr(users::Column::Email, Expr::value(new_email))
        .col_expr(users::Column::IsVerified, Expr::value(true))
        .col_expr(
            users::Column::ActivationGeneration,
            Expr::value(claims.generation + 1),
        )
        .filter(users::Column::Id.eq(user.id))
        .filter(users::Column::ActivationGeneration.eq(claims.generation))
        .exec(&d.db)
        .await;
    match updated {
        Ok(result) if result.rows_affected == 1 => {
            tokens::credentials_changed(d, user.id).await;
            tracing::info!(
                user_id = user.id,
                email_changed = new_email != user.email,
                "email address verified"
            );
            Ok(())
        }
        Ok(_) => Err(unauthenticated()),
        Err(err) if is_unique_violation(&err) => Err(taken()),
        Err(err) => Err(err.into()),
    }
}

/// Mails a new activation link (the previous one stops working). 403 for
/// provisioned and non-local users, 400 if already verified.
pub async fn resend_activation_email(d: &Domain, user: &User) -> DomainResult<()> {
    user.require_not_provisioned()?;
    user.require_local()?;
    if user.is_verified {
        return Err(DomainError::Invalid(ALREADY_VERIFIED.to_owned()));
    }
    let txn = d.db.begin().await?;
    let generation = bump_generation(&txn, user.id, users::Column::ActivationGeneration).await?;
    let claims = LinkClaims::new(
        LinkPurpose::Activation,
        user.id,
        generation,
        &user.email,
        None,
        Utc::now(),
    );
    mail_link(d, &txn, &user.email, &claims, templates::activation).await?;
    txn.commit().await?;
    Ok(())
}

/// Mails a password-reset link if a local, non-provisioned account has this
/// address. 400 for a malformed address; otherwise the same answer, at once,
/// whether or not the account exists: the lookup and the mail happen in the
/// background, so neither answer nor timing tells.
pub async fn request_password_reset(d: &Domain, email: &str) -> DomainResult<()> {
    let address =
        EmailAddress::parse(email).map_err(|_| DomainError::Invalid(BAD_RESET_EMAIL.to_owned()))?;
    let d = d.clone();
    tokio::spawn(async move {
        if let Err(err) = send_password_reset_link(&d, &address).await {
            tracing::error!(error = %err, "could not send a password reset link");
        }
    });
    Ok(())
}

/// The background half of [`request_password_reset`], run inline: whether a
/// mail was queued (for the CLI and tests; the route must not reveal it).
pub async fn send_password_reset_link(d: &Domain, address: &EmailAddress) -> DomainResult<bool> {
    let Some(user) = find_local_user_by_email(&d.db, address.as_str()).await? else {
        return Ok(false);
    };
    if user.provision_number.is_some() {
        return Ok(false);
    }
    let txn = d.db.begin().await?;
    let generation = bump_generation(&txn, user.id, users::Column::PasswordResetGeneration).await?;
    let claims = LinkClaims::new(
        LinkPurpose::PasswordReset,
        user.id,
        generation,
        &user.email,
        None,
        Utc::now(),
    );
    mail_link(d, &txn, &user.email, &claims, templates::password_reset).await?;
    txn.commit().await?;
    Ok(true)
}

/// Sets a new password through a reset link, which then stops working, and
/// ends the account's sessions (API tokens stay). 422 for a password that
/// breaks the rule, 401 for a bad, expired, used or superseded link, 400 if
/// the account is gone.
pub async fn reset_password(d: &Domain, token: &str, new_password: &str) -> DomainResult<()> {
    passwords::check_rule(new_password, "new_password")?;
    let unauthenticated = || DomainError::Unauthenticated(BAD_RESET_TOKEN.to_owned());
    let claims = links::verify(
        &d.secret_key,
        token,
        &[LinkPurpose::PasswordReset],
        Utc::now(),
    )
    .map_err(|_| unauthenticated())?;
    let no_user = || {
        DomainError::Invalid(format!(
            "No local user with the email {} exists",
            claims.email
        ))
    };
    let user = users::Entity::find_by_id(claims.user_id)
        .one(&d.db)
        .await?
        .filter(|user| user.user_type == UserType::Local.as_str())
        .ok_or_else(no_user)?;
    if user.password_reset_generation != claims.generation {
        return Err(unauthenticated());
    }
    // The link was for the address the account had then.
    if user.email != claims.email {
        return Err(no_user());
    }
    if user.provision_number.is_some() {
        return Err(DomainError::Forbidden(
            crate::tokens::PROVISIONED_USER.to_owned(),
        ));
    }
    let password_hash = d.passwords.hash(new_password).await?;
    let txn = d.db.begin().await?;
    let updated = users::Entity::update_many()
        .col_expr(
            users::Column::PasswordHash,
            Expr::value(Some(password_hash)),
        )
        .col_expr(
            users::Column::PasswordResetGeneration,
            Expr::value(claims.generation + 1),
        )
        .filter(users::Column::Id.eq(user.id))
        .filter(users::Column::PasswordResetGeneration.eq(claims.generation))
        .exec(&txn)
        .await?;
    if updated.rows_affected != 1 {
        return Err(unauthenticated());
    }
    let ended = tokens::end_sessions(&txn, user.id, None).await?;
    txn.commit().await?;
    tokens::credentials_changed(d, user.id).await;
    tracing::info!(user_id = user.id, ended_sessions = ended, "password reset");
    Ok(())
}

/// The checks of Project-W's `validate_token_local_not_provisioned_confirmed`:
/// 403 for provisioned and non-local users and for a wrong current password.
async fn confirm_local_user(d: &Domain, user: &User, password: &str) -> DomainResult<users::Model> {
    user.require_not_provisioned()?;
    user.require_local()?;
    let refused = || DomainError::Forbidden(CONFIRMATION_PASSWORD_INVALID.to_owned());
    let model = users::Entity::find_by_id(user.id)
        .one(&d.db)
        .await?
        .ok_or_else(refused)?;
    let Some(hash) = model.password_hash.as_deref() else {
        d.passwords.verify_dummy(password).await?;
        return Err(refused());
    };
    if !d.passwords.verify(password, hash).await?.is_match() {
        return Err(refused());
    }
    Ok(model)
}

/// Mails a confirmation link to `new_email`; the address changes when it is
/// opened ([`activate`]). 403 for provisioned or non-local users and a wrong
/// current password, 422 for a malformed address, 400 for a domain not
/// allowed or an address in use.
pub async fn change_email(
    d: &Domain,
    user: &User,
    new_email: &str,
    password: &str,
) -> DomainResult<()> {
    let model = confirm_local_user(d, user, password).await?;
    let address =
        EmailAddress::parse_new(new_email).map_err(|err| err.into_validation("new_email"))?;
    check_domain_allowed(&d.config, &address)?;
    if find_local_user_by_email(&d.db, address.as_str())
        .await?
        .is_some()
    {
        return Err(DomainError::Invalid(format!(
            "'{address}' is already in use by another user"
        )));
    }
    let txn = d.db.begin().await?;
    let generation = bump_generation(&txn, user.id, users::Column::ActivationGeneration).await?;
    let claims = LinkClaims::new(
        LinkPurpose::EmailChange,
        user.id,
        generation,
        &model.email,
        Some(address.as_str()),
        Utc::now(),
    );
    mail_link(
        d,
        &txn,
        address.as_str(),
        &claims,
        templates::email_change_confirmation,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Sets a new password after confirming the current one, and ends the
/// user's other sessions (the current one and API tokens stay). 403 for
/// provisioned or non-local users and a wrong current password, 422 for a
/// new password that breaks the rule.
pub async fn change_password(
    d: &Domain,
    session: &Session,
    new_password: &str,
    password: &str,
) -> DomainResult<()> {
    let user = &session.user;
    confirm_local_user(d, user, password).await?;
    passwords::check_rule(new_password, "new_password")?;
    let password_hash = d.passwords.hash(new_password).await?;
    let txn = d.db.begin().await?;
    users::Entity::update_many()
        .col_expr(
            users::Column::PasswordHash,
            Expr::value(Some(password_hash)),
        )
        // Reset links mailed before the change stop working.
        .col_expr(
            users::Column::PasswordResetGeneration,
            Expr::col(users::Column::PasswordResetGeneration).add(1),
        )
        .filter(users::Column::Id.eq(user.id))
        .exec(&txn)
        .await?;
    let ended = tokens::end_sessions(&txn, user.id, Some(session.token_id)).await?;
    txn.commit().await?;
    tokens::credentials_changed(d, user.id).await;
    tracing::info!(
        user_id = user.id,
        ended_sessions = ended,
        "password changed"
    );
    Ok(())
}

/// A login with the OAuth2 password form.
#[derive(Debug, Clone, Copy)]
pub struct LoginAttempt<'a> {
    /// The email address.
    pub username: &'a str,
    pub password: &'a str,
    /// The OAuth2 scope string ("" when absent); `admin` asks for an admin token.
    pub scope: &'a str,
    /// Becomes the token's name.
    pub user_agent: Option<&'a str>,
    /// The client's IP address, for throttling.
    pub client_address: &'a str,
}

/// Project-W's `check_admin_privileges`: 400 for a scope other than `admin`,
/// and for `admin` when the user isn't one.
pub fn admin_privileges_for_scope(scope: &str, is_admin: bool) -> DomainResult<bool> {
    let mut admin = false;
    for scope in scope.split_whitespace() {
        if scope != ADMIN_SCOPE {
            return Err(DomainError::Invalid(UNSUPPORTED_SCOPE.to_owned()));
        }
        if !is_admin {
            return Err(DomainError::Invalid(NOT_AN_ADMIN.to_owned()));
        }
        admin = true;
    }
    Ok(admin)
}

/// Logs a local user in (verified or not) and returns a new session token.
/// 429 when throttled, 401 "Incorrect username or password" for a wrong
/// password, an unknown account or a username that isn't an address, 400 for
/// a scope the user can't have.
pub async fn login_local(d: &Domain, attempt: LoginAttempt<'_>) -> DomainResult<IssuedToken> {
    let account = throttle::account_key(LOCAL_PROVIDER_NAME, attempt.username);
    throttle::check(d, &account, attempt.client_address).await?;
    let wrong_credentials = || DomainError::Unauthenticated(WRONG_CREDENTIALS.to_owned());

    let user = match EmailAddress::parse(attempt.username) {
        Ok(address) => find_local_user_by_email(&d.db, address.as_str()).await?,
        Err(_) => None,
    };
    let verification = match user.as_ref().and_then(|user| user.password_hash.as_deref()) {
        Some(hash) => d.passwords.verify(attempt.password, hash).await?,
        None => {
            // As slow as a wrong password, so timing doesn't reveal accounts.
            d.passwords.verify_dummy(attempt.password).await?;
            Verification::Mismatch
        }
    };
    let Some(user) = user.filter(|_| verification.is_match()) else {
        throttle::record_failure(d, &account, attempt.client_address).await?;
        return Err(wrong_credentials());
    };
    // A scope the user can't have is refused before anything is written.
    let admin_privileges = admin_privileges_for_scope(attempt.scope, user.is_admin)?;
    throttle::clear(d, &account, attempt.client_address).await?;

    if verification == Verification::MatchNeedsRehash {
        let password_hash = d.passwords.hash(attempt.password).await?;
        users::Entity::update_many()
            .col_expr(
                users::Column::PasswordHash,
                Expr::value(Some(password_hash)),
            )
            .filter(users::Column::Id.eq(user.id))
            .exec(&d.db)
            .await?;
        tracing::info!(
            user_id = user.id,
            "password rehashed with the current parameters"
        );
    }

    let name = attempt.user_agent.unwrap_or(UNKNOWN_DEVICE);
    let token = tokens::issue_session(d, user.id, name, admin_privileges).await?;
    tracing::info!(user_id = user.id, admin_privileges, "local login");
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_project_w() {
        assert!(!admin_privileges_for_scope("", true).unwrap_or(true));
        assert!(admin_privileges_for_scope("admin", true).unwrap_or(false));
        assert!(admin_privileges_for_scope(" admin admin ", true).unwrap_or(false));
        for (scope, is_admin, detail) in [
            ("admin", false, NOT_AN_ADMIN),
            ("read", true, UNSUPPORTED_SCOPE),
            ("admin read", true, UNSUPPORTED_SCOPE),
        ] {
            match admin_privileges_for_scope(scope, is_admin) {
                Err(DomainError::Invalid(message)) => assert_eq!(message, detail),
                other => panic!("{scope}: {other:?}"),
            }
        }
    }
}
