//! Users and their credentials: local accounts (sign-up, activation, login,
//! password and email changes), provisioning from the config, ToS acceptance
//! and account deletion. LDAP and OIDC users share the `users` table and the
//! [`User`] type; their logins live in their own modules.
//!
//! Every function checks its input before writing anything, so a refused
//! request leaves the database as it was (failed logins excepted: they are
//! recorded for throttling).

use std::collections::BTreeMap;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
    Set, SqlErr,
};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::entities::{tos_acceptances, users};
use crate::error::{DomainError, DomainResult};

pub mod ldap;
mod local;
pub mod oidc;
mod profile;
mod provisioning;
pub mod revalidation;

pub use local::{
    activate, admin_privileges_for_scope, change_email, change_password, login_local,
    request_password_reset, resend_activation_email, reset_password, send_password_reset_link,
    signup, LoginAttempt, ADMIN_SCOPE, UNKNOWN_DEVICE,
};
pub use profile::{accept_tos, delete_user, find_user};
pub use provisioning::{ensure_initial_admin, provision_users, InitialAdmin};

/// `users/info`'s `provider_name` for local accounts.
pub const LOCAL_PROVIDER_NAME: &str = "project-W";

/// 403 for routes only local accounts may use (Project-W's wording).
pub const ONLY_LOCAL_USERS: &str =
    "Only users who are logged in with a local Project-W account can use this route";

/// Where an account comes from; on the wire `local`, `ldap` or `oidc`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserType {
    Local,
    Ldap,
    Oidc,
}

impl UserType {
    /// The value in `users.user_type` and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::Local => "local",
            UserType::Ldap => "ldap",
            UserType::Oidc => "oidc",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "local" => Some(UserType::Local),
            "ldap" => Some(UserType::Ldap),
            "oidc" => Some(UserType::Oidc),
            _ => None,
        }
    }
}

/// A user as the rest of Scribe sees it (no password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub user_type: UserType,
    /// "project-W" for local accounts, else the configured provider name.
    pub provider_name: String,
    pub is_verified: bool,
    pub is_admin: bool,
    /// Listed in `security.local_account.user_provisioning`: the API can't
    /// change or delete it.
    pub is_provisioned: bool,
    /// Accepted ToS version by ToS id.
    pub accepted_tos: BTreeMap<u32, u32>,
}

impl User {
    /// Whether the user accepted the current version of every configured ToS.
    pub fn has_accepted_current_tos(&self, config: &Config) -> bool {
        config
            .terms_of_services
            .iter()
            .all(|(id, tos)| self.accepted_tos.get(id).is_some_and(|v| *v >= tos.version))
    }

    /// 403 for provisioned users.
    pub fn require_not_provisioned(&self) -> DomainResult<()> {
        if self.is_provisioned {
            Err(DomainError::Forbidden(
                crate::tokens::PROVISIONED_USER.to_owned(),
            ))
        } else {
            Ok(())
        }
    }

    /// 403 for LDAP and OIDC users.
    pub fn require_local(&self) -> DomainResult<()> {
        if self.user_type == UserType::Local {
            Ok(())
        } else {
            Err(DomainError::Forbidden(ONLY_LOCAL_USERS.to_owned()))
        }
    }
}

/// A [`User`] from its row, with its ToS acceptances.
pub(crate) async fn load_user(
    db: &impl ConnectionTrait,
    model: users::Model,
) -> DomainResult<User> {
    let accepted: Vec<(i64, i64)> = tos_acceptances::Entity::find()
        .filter(tos_acceptances::Column::UserId.eq(model.id))
        .select_only()
        .column(tos_acceptances::Column::TosId)
        .column(tos_acceptances::Column::Version)
        .into_tuple()
        .all(db)
        .await?;
    let user_type = UserType::parse(&model.user_type).ok_or_else(|| {
        DomainError::internal(
            "users",
            format!(
                "user {} has the unknown type {:?}",
                model.id, model.user_type
            ),
        )
    })?;
    Ok(User {
        id: model.id,
        email: model.email,
        user_type,
        provider_name: model.provider_name,
        is_verified: model.is_verified,
        is_admin: model.is_admin,
        is_provisioned: model.provision_number.is_some(),
        accepted_tos: crate::tokens::tos_map(&accepted),
    })
}

/// The local account with this (normalised) address.
pub(crate) async fn find_local_user_by_email(
    db: &impl ConnectionTrait,
    email: &str,
) -> DomainResult<Option<users::Model>> {
    Ok(users::Entity::find()
        .filter(users::Column::UserType.eq(UserType::Local.as_str()))
        .filter(users::Column::ProviderName.eq(LOCAL_PROVIDER_NAME))
        .filter(users::Column::Email.eq(email))
        .one(db)
        .await?)
}

/// A user row about to be inserted: what differs between the ways an account
/// comes to be (sign-up, provisioning, the initial admin, LDAP, OIDC).
pub(crate) struct NewUser<'a> {
    pub email: &'a str,
    pub user_type: UserType,
    pub provider_name: &'a str,
    /// The LDAP uid value or the OIDC subject.
    pub external_id: Option<&'a str>,
    pub password_hash: Option<String>,
    pub is_verified: bool,
    pub is_admin: bool,
    pub provision_number: Option<i64>,
    pub activation_generation: i64,
}

impl<'a> NewUser<'a> {
    /// An unverified local account without admin rights.
    pub(crate) fn local(email: &'a str, password_hash: String) -> Self {
        NewUser {
            email,
            user_type: UserType::Local,
            provider_name: LOCAL_PROVIDER_NAME,
            external_id: None,
            password_hash: Some(password_hash),
            is_verified: false,
            is_admin: false,
            provision_number: None,
            activation_generation: 0,
        }
    }

    /// A user of an LDAP directory or OIDC provider, which vouches for the address.
    pub(crate) fn external(
        user_type: UserType,
        provider_name: &'a str,
        external_id: &'a str,
        email: &'a str,
        is_admin: bool,
    ) -> Self {
        NewUser {
            email,
            user_type,
            provider_name,
            external_id: Some(external_id),
            password_hash: None,
            is_verified: true,
            is_admin,
            provision_number: None,
            activation_generation: 0,
        }
    }

    pub(crate) async fn insert(self, db: &impl ConnectionTrait) -> Result<users::Model, DbErr> {
        users::ActiveModel {
            email: Set(self.email.to_owned()),
            user_type: Set(self.user_type.as_str().to_owned()),
            provider_name: Set(self.provider_name.to_owned()),
            external_id: Set(self.external_id.map(str::to_owned)),
            password_hash: Set(self.password_hash),
            is_verified: Set(self.is_verified),
            is_admin: Set(self.is_admin),
            provision_number: Set(self.provision_number),
            activation_generation: Set(self.activation_generation),
            password_reset_generation: Set(0),
            created_at: Set(chrono::Utc::now()),
            ..Default::default()
        }
        .insert(db)
        .await
    }
}

pub(crate) fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}
