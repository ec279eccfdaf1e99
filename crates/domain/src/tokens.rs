//! Session and API tokens (SPEC §3.3, §3.10, §3.11).
//!
//! A token is 256 random bits, handed out once as URL-safe base64 and stored
//! only as its hex SHA-256 (a fast hash is enough for values with this much
//! entropy). Lookups go by hash; the stored hash is then compared in constant
//! time anyway.
//!
//! Session tokens expire `session_expiration_time_minutes` after login or
//! renewal. Inside the last `rolling_session_before_expiration_minutes` a
//! request renews them ([`roll_session`], after the permission checks): a
//! cookie session gets a new value on the same row while the previous value
//! stays valid for [`ROTATION_GRACE`] (requests already in flight keep
//! working); a Bearer-presented session only has its expiry slid, since a
//! script can't pick up a new cookie mid-run. API tokens ("explicit") never
//! expire, never roll and never carry admin privileges.
//!
//! `last_usage` is written at most once per [`LAST_USAGE_RESOLUTION`] per
//! token, so authenticated reads don't turn into a write each.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use rand::RngCore;
use sea_orm::sea_query::{Expr, Query};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::accounts::{self, User, UserType};
use crate::config::Config;
use crate::entities::{tokens, users};
use crate::error::{DomainError, DomainResult};
use crate::events::CredentialChange;
use crate::session_cache::CachedSession;
use crate::Domain;

/// How long the value a session had before its rotation keeps working.
pub const ROTATION_GRACE: Duration = Duration::seconds(60);
/// `last_usage` is only rewritten when the stored value is older than this.
pub const LAST_USAGE_RESOLUTION: Duration = Duration::seconds(60);
/// Random bytes per token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Longer values can't be ours (ours are 43 characters); refused unhashed.
const MAX_TOKEN_CHARS: usize = 512;

/// Project-W's answer for an unknown, expired or garbled token.
pub const INVALID_TOKEN: &str = "Could not validate token";
const NOT_VERIFIED_TEMPLATE: &str = "Your email address needs to be verified to access this route. Please click on the link sent to '{email}' or request a new confirmation email.";
pub const NOT_ADMIN: &str = "Not enough permissions";
pub const TOS_NOT_ACCEPTED: &str = "You need to agree to the newest version of the terms of services of this instance to access this route";
pub const PROVISIONED_USER: &str = "This route cannot be called by the current user because they have been provisioned through the admin config file. Please change any user attributes there instead.";
pub const API_TOKENS_DISABLED: &str = "Creation of api tokens is disabled for your account type. Login using a different provider or ask the administrator to enable this.";

/// A token value handed to the client, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub value: String,
    /// The cookie's Max-Age: the session lifetime; `None` for API tokens.
    pub lifetime: Option<Duration>,
}

/// An authenticated request's user and token.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub token_id: i64,
    pub admin_privileges: bool,
    /// An API token: never expires, never rolls.
    pub explicit: bool,
    pub expires_at: Option<DateTime<Utc>>,
    /// The row's current hash when authenticated; rotation only replaces this
    /// one, so two requests rolling at once issue one new value, not two.
    token_hash: String,
}

/// Public token metadata for `get_all_token_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: i64,
    pub name: String,
    pub admin_privileges: bool,
    pub explicit: bool,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_usage: DateTime<Utc>,
}

impl From<tokens::Model> for TokenInfo {
    fn from(token: tokens::Model) -> Self {
        TokenInfo {
            id: token.id,
            name: token.name,
            admin_privileges: token.admin_privileges,
            explicit: token.explicit,
            expires_at: token.expires_at,
            last_usage: token.last_usage,
        }
    }
}

/// Hex SHA-256 of a token value, as stored in `tokens.token_hash`.
pub fn hash_token(value: &str) -> String {
    hex::encode(Sha256::digest(value.as_bytes()))
}

/// A fresh random value and its hash.
fn generate() -> (String, String) {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let value = URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&value);
    (value, hash)
}

fn session_lifetime(config: &Config) -> Duration {
    Duration::minutes(
        config
            .security
            .tokens
            .session_expiration_time_minutes
            .into(),
    )
}

fn invalid_token() -> DomainError {
    DomainError::Unauthenticated(INVALID_TOKEN.to_owned())
}

/// Creates a session token for a user who just logged in (local, LDAP or
/// OIDC). The name is shown in the token list (the User-Agent, usually).
pub async fn issue_session(
    d: &Domain,
    user_id: i64,
    name: &str,
    admin_privileges: bool,
) -> DomainResult<IssuedToken> {
    let now = Utc::now();
    let lifetime = session_lifetime(&d.config);
    let (value, hash) = generate();
    tokens::ActiveModel {
        user_id: Set(user_id),
        name: Set(name.to_owned()),
        token_hash: Set(hash),
        previous_hash: Set(None),
        previous_valid_until: Set(None),
        admin_privileges: Set(admin_privileges),
        explicit: Set(false),
        expires_at: Set(Some(now + lifetime)),
        last_usage: Set(now),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&d.db)
    .await?;
    Ok(IssuedToken {
        value,
        lifetime: Some(lifetime),
    })
}

/// Finds the session a token value belongs to: 401 "Could not validate
/// token" for unknown, expired or rotated-out values.
pub async fn authenticate(d: &Domain, token_value: &str) -> DomainResult<Session> {
    if token_value.is_empty() || token_value.len() > MAX_TOKEN_CHARS {
        return Err(invalid_token());
    }
    let now = Utc::now();
    let presented = hash_token(token_value);

    let (cached, generation) = d.sessions.get(&presented);
    let cached = match cached {
        Some(cached) => cached,
        None => {
            let fresh = load_session(d, &presented, now).await?;
            d.sessions
                .insert(presented.clone(), fresh.clone(), generation);
            fresh
        }
    };
    if cached
        .valid_until
        .is_some_and(|valid_until| valid_until <= now)
    {
        return Err(invalid_token());
    }
    if now - cached.last_usage >= LAST_USAGE_RESOLUTION {
        tokens::Entity::update_many()
            .col_expr(tokens::Column::LastUsage, Expr::value(now))
            .filter(tokens::Column::Id.eq(cached.session.token_id))
            .exec(&d.db)
            .await?;
        d.sessions.touch(&presented, now);
    }
    Ok(cached.session)
}

/// The session a token hash belongs to, from the database: by its current
/// value, or by the value it had before its last rotation.
async fn load_session(
    d: &Domain,
    presented: &str,
    now: DateTime<Utc>,
) -> DomainResult<CachedSession> {
    let (token, user, stored, valid_until) = match tokens::Entity::find()
        .filter(tokens::Column::TokenHash.eq(presented))
        .find_also_related(users::Entity)
        .one(&d.db)
        .await?
    {
        Some((token, Some(user))) => {
            let stored = token.token_hash.clone();
            let valid_until = token.expires_at;
            (token, user, stored, valid_until)
        }
        _ => match tokens::Entity::find()
            .filter(tokens::Column::PreviousHash.eq(presented))
            .filter(tokens::Column::PreviousValidUntil.gt(now))
            .find_also_related(users::Entity)
            .one(&d.db)
            .await?
        {
            Some((token, Some(user))) => {
                let stored = token.previous_hash.clone().unwrap_or_default();
                let valid_until = match (token.expires_at, token.previous_valid_until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                (token, user, stored, valid_until)
            }
            _ => return Err(invalid_token()),
        },
    };
    if !bool::from(stored.as_bytes().ct_eq(presented.as_bytes())) {
        return Err(invalid_token());
    }
    let last_usage = token.last_usage;
    let user = accounts::load_user(&d.db, user).await?;
    Ok(CachedSession {
        session: Session {
            user,
            token_id: token.id,
            admin_privileges: token.admin_privileges,
            explicit: token.explicit,
            expires_at: token.expires_at,
            token_hash: token.token_hash,
        },
        valid_until,
        last_usage,
    })
}

/// Announces that `user_id`'s tokens or account changed, so that every
/// replica's session cache forgets them. Call it after the change committed.
pub async fn credentials_changed(d: &Domain, user_id: i64) {
    d.sessions.forget(CredentialChange::User(user_id));
    d.events.send(CredentialChange::User(user_id).into()).await;
}

impl Session {
    #[cfg(test)]
    pub(crate) fn for_tests(user: User, token_id: i64) -> Self {
        Session {
            user,
            token_id,
            admin_privileges: false,
            explicit: false,
            expires_at: None,
            token_hash: String::new(),
        }
    }

    /// 403 unless the user's email address is verified.
    pub fn require_verified(&self) -> DomainResult<()> {
        if self.user.is_verified {
            Ok(())
        } else {
            Err(DomainError::Forbidden(
                NOT_VERIFIED_TEMPLATE.replace("{email}", &self.user.email),
            ))
        }
    }

    /// 403 unless the token carries admin privileges.
    pub fn require_admin(&self) -> DomainResult<()> {
        if self.admin_privileges {
            Ok(())
        } else {
            Err(DomainError::Forbidden(NOT_ADMIN.to_owned()))
        }
    }

    /// 403 unless the user accepted the current version of every ToS.
    pub fn require_tos_accepted(&self, config: &Config) -> DomainResult<()> {
        if self.user.has_accepted_current_tos(config) {
            Ok(())
        } else {
            Err(DomainError::Forbidden(TOS_NOT_ACCEPTED.to_owned()))
        }
    }

    /// 403 for users provisioned from the config, who can't be changed
    /// through the API.
    pub fn require_not_provisioned(&self) -> DomainResult<()> {
        self.user.require_not_provisioned()
    }
}

/// Renews a session close to its expiry; call it after the permission checks
/// passed. A cookie session gets a new value (returned for `Set-Cookie`) on
/// the same row; a Bearer session only a later expiry (`None`). API tokens
/// and sessions far from expiry: `None`, nothing written.
pub async fn roll_session(
    d: &Domain,
    session: &Session,
    presented_as_cookie: bool,
) -> DomainResult<Option<IssuedToken>> {
    roll_session_at(d, session, presented_as_cookie, Utc::now()).await
}

pub(crate) async fn roll_session_at(
    d: &Domain,
    session: &Session,
    presented_as_cookie: bool,
    now: DateTime<Utc>,
) -> DomainResult<Option<IssuedToken>> {
    let Some(expires_at) = session.expires_at else {
        return Ok(None);
    };
    if session.explicit {
        return Ok(None);
    }
    let tokens_config = &d.config.security.tokens;
    // Project-W: int(seconds // 60) < rolling minutes.
    let minutes_left = (expires_at - now).num_seconds().div_euclid(60);
    if minutes_left >= i64::from(tokens_config.rolling_session_before_expiration_minutes) {
        return Ok(None);
    }
    let lifetime = session_lifetime(&d.config);
    if !presented_as_cookie {
        tokens::Entity::update_many()
            .col_expr(tokens::Column::ExpiresAt, Expr::value(Some(now + lifetime)))
            .filter(tokens::Column::Id.eq(session.token_id))
            .exec(&d.db)
            .await?;
        credentials_changed(d, session.user.id).await;
        return Ok(None);
    }
    let (value, hash) = generate();
    let rotated = tokens::Entity::update_many()
        .col_expr(tokens::Column::TokenHash, Expr::value(hash))
        .col_expr(
            tokens::Column::PreviousHash,
            Expr::value(Some(session.token_hash.clone())),
        )
        .col_expr(
            tokens::Column::PreviousValidUntil,
            Expr::value(Some(now + ROTATION_GRACE)),
        )
        .col_expr(tokens::Column::ExpiresAt, Expr::value(Some(now + lifetime)))
        .filter(tokens::Column::Id.eq(session.token_id))
        .filter(tokens::Column::TokenHash.eq(session.token_hash.as_str()))
        .exec(&d.db)
        .await?;
    if rotated.rows_affected == 0 {
        // Another request rotated it first (its response carries the new
        // cookie; this value stays valid for the grace period), or the
        // session was ended meanwhile.
        return Ok(None);
    }
    credentials_changed(d, session.user.id).await;
    Ok(Some(IssuedToken {
        value,
        lifetime: Some(lifetime),
    }))
}

/// Whether users of this account's provider may create API tokens.
fn api_tokens_allowed(config: &Config, user: &User) -> bool {
    let security = &config.security;
    match user.user_type {
        UserType::Local => security.local_account.allow_creation_of_api_tokens,
        UserType::Oidc => security
            .oidc_providers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&user.provider_name))
            .is_some_and(|(_, provider)| provider.allow_creation_of_api_tokens),
        UserType::Ldap => security
            .ldap_providers
            .get(&user.provider_name)
            .is_some_and(|provider| provider.allow_creation_of_api_tokens),
    }
}

/// Creates an API token (never expires, never admin) and returns its value.
/// 400 when API tokens are switched off for the user's provider. The caller
/// checks that the email is verified first.
pub async fn create_api_token(d: &Domain, session: &Session, name: &str) -> DomainResult<String> {
    if !api_tokens_allowed(&d.config, &session.user) {
        return Err(DomainError::Invalid(API_TOKENS_DISABLED.to_owned()));
    }
    let now = Utc::now();
    let (value, hash) = generate();
    tokens::ActiveModel {
        user_id: Set(session.user.id),
        name: Set(name.to_owned()),
        token_hash: Set(hash),
        previous_hash: Set(None),
        previous_valid_until: Set(None),
        admin_privileges: Set(false),
        explicit: Set(true),
        expires_at: Set(None),
        last_usage: Set(now),
        created_at: Set(now),
        ..Default::default()
    }
    .insert(&d.db)
    .await?;
    tracing::info!(user_id = session.user.id, "API token created");
    Ok(value)
}

/// The user's tokens that still work, most recently used first.
pub async fn list_tokens(d: &Domain, user_id: i64) -> DomainResult<Vec<TokenInfo>> {
    let now = Utc::now();
    Ok(tokens::Entity::find()
        .filter(tokens::Column::UserId.eq(user_id))
        .filter(
            tokens::Column::ExpiresAt
                .is_null()
                .or(tokens::Column::ExpiresAt.gt(now)),
        )
        .order_by_desc(tokens::Column::LastUsage)
        .order_by_desc(tokens::Column::Id)
        .all(&d.db)
        .await?
        .into_iter()
        .map(TokenInfo::from)
        .collect())
}

/// Deletes one of the user's tokens; unknown or foreign ids change nothing
/// and are no error (Project-W answers "Success" to them too).
pub async fn invalidate_token(d: &Domain, user_id: i64, token_id: i64) -> DomainResult<()> {
    tokens::Entity::delete_many()
        .filter(tokens::Column::Id.eq(token_id))
        .filter(tokens::Column::UserId.eq(user_id))
        .exec(&d.db)
        .await?;
    credentials_changed(d, user_id).await;
    Ok(())
}

/// Deletes every token of the user, API tokens included.
pub async fn invalidate_all_tokens(d: &Domain, user_id: i64) -> DomainResult<()> {
    tokens::Entity::delete_many()
        .filter(tokens::Column::UserId.eq(user_id))
        .exec(&d.db)
        .await?;
    credentials_changed(d, user_id).await;
    Ok(())
}

/// Ends the session the request came with.
pub async fn logout(d: &Domain, session: &Session) -> DomainResult<()> {
    invalidate_token(d, session.user.id, session.token_id).await
}

/// Deletes the user's session tokens except `keep` (API tokens stay): after a
/// password change or reset.
pub(crate) async fn end_sessions(
    db: &impl ConnectionTrait,
    user_id: i64,
    keep: Option<i64>,
) -> DomainResult<u64> {
    let mut delete = tokens::Entity::delete_many()
        .filter(tokens::Column::UserId.eq(user_id))
        .filter(tokens::Column::Explicit.eq(false));
    if let Some(keep) = keep {
        delete = delete.filter(tokens::Column::Id.ne(keep));
    }
    Ok(delete.exec(db).await?.rows_affected)
}

/// The cleanup task's part for accounts: deletes expired session tokens but
/// each user's most recently used one (the inactivity cleanup reads a user's
/// activity from it, SPEC §3.10), forgets rotated-out values past their grace
/// period, and drops failed logins too old to count. Returns the number of
/// rows deleted.
pub async fn purge_expired(d: &Domain) -> DomainResult<u64> {
    purge_expired_at(d, Utc::now()).await
}

pub(crate) async fn purge_expired_at(d: &Domain, now: DateTime<Utc>) -> DomainResult<u64> {
    use tokens::Column as C;
    let newer = sea_orm::sea_query::Alias::new("newer");
    // A token is "not the latest" when the user has another one used later
    // (or at the same time, with a higher id).
    let newer_token_exists = Query::select()
        .expr(Expr::val(1))
        .from_as(tokens::Entity, newer.clone())
        .and_where(Expr::col((newer.clone(), C::UserId)).equals((tokens::Entity, C::UserId)))
        .and_where(
            Expr::col((newer.clone(), C::LastUsage))
                .gt(Expr::col((tokens::Entity, C::LastUsage)))
                .or(Expr::col((newer.clone(), C::LastUsage))
                    .eq(Expr::col((tokens::Entity, C::LastUsage)))
                    .and(Expr::col((newer.clone(), C::Id)).gt(Expr::col((tokens::Entity, C::Id))))),
        )
        .to_owned();
    let deleted_tokens = tokens::Entity::delete_many()
        .filter(C::ExpiresAt.is_not_null())
        .filter(C::ExpiresAt.lte(now))
        .filter(Expr::exists(newer_token_exists))
        .exec(&d.db)
        .await?
        .rows_affected;

    tokens::Entity::update_many()
        .col_expr(C::PreviousHash, Expr::value(Option::<String>::None))
        .col_expr(
            C::PreviousValidUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .filter(C::PreviousValidUntil.lte(now))
        .exec(&d.db)
        .await?;

    let deleted_failures = crate::throttle::purge_old_failures(d).await?;
    Ok(deleted_tokens + deleted_failures)
}

/// Accepted ToS versions by id, as `users/info` shows them.
pub(crate) fn tos_map(rows: &[(i64, i64)]) -> BTreeMap<u32, u32> {
    rows.iter()
        .filter_map(|&(tos_id, version)| {
            Some((
                u32::try_from(tos_id).ok()?,
                u32::try_from(version.max(0)).ok()?,
            ))
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn values_are_256_bit_and_stored_as_hex_sha256() {
        let (value, hash) = generate();
        assert_eq!(value.len(), 43);
        assert_eq!(URL_SAFE_NO_PAD.decode(&value).unwrap().len(), 32);
        assert_eq!(hash.len(), 64);
        assert_eq!(hash, hash_token(&value));
        assert_ne!(generate().0, value);
    }
}
