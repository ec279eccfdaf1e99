//! What every user (local, LDAP or OIDC) does with their own account:
//! accepting terms of service and deleting it (SPEC §3.3).

use sea_orm::sea_query::OnConflict;
use sea_orm::{EntityTrait, Set};

use super::{load_user, User};
use crate::entities::{tos_acceptances, users};
use crate::error::{DomainError, DomainResult};
use crate::Domain;

/// The user with this id, if any.
pub async fn find_user(d: &Domain, user_id: i64) -> DomainResult<Option<User>> {
    match users::Entity::find_by_id(user_id).one(&d.db).await? {
        Some(model) => Ok(Some(load_user(&d.db, model).await?)),
        None => Ok(None),
    }
}

/// Records that the user accepted version `tos_version` of ToS `tos_id`. Any
/// version up to the current one is taken (and replaces an earlier
/// acceptance, as in Project-W); 400 for an unknown id or a later version.
pub async fn accept_tos(
    d: &Domain,
    user: &User,
    tos_id: i64,
    tos_version: i64,
) -> DomainResult<()> {
    let known = u32::try_from(tos_id)
        .ok()
        .and_then(|id| d.config.terms_of_services.get(&id))
        .is_some_and(|tos| tos_version <= i64::from(tos.version));
    if !known {
        return Err(DomainError::Invalid(format!(
            "No term of service found with id {tos_id} and version {tos_version}"
        )));
    }
    tos_acceptances::Entity::insert(tos_acceptances::ActiveModel {
        user_id: Set(user.id),
        tos_id: Set(tos_id),
        version: Set(tos_version),
    })
    .on_conflict(
        OnConflict::columns([
            tos_acceptances::Column::UserId,
            tos_acceptances::Column::TosId,
        ])
        .update_column(tos_acceptances::Column::Version)
        .to_owned(),
    )
    .exec_without_returning(&d.db)
    .await?;
    crate::tokens::credentials_changed(d, user.id).await;
    Ok(())
}

/// Deletes the account with its jobs (queued ones leave the queue, running
/// ones are taken from their runners, blobs deleted: SPEC §3.11); its tokens
/// and ToS acceptances go with it (foreign keys cascade). 403 for provisioned
/// users, who live in the config.
pub async fn delete_user(d: &Domain, user: &User) -> DomainResult<()> {
    user.require_not_provisioned()?;
    crate::jobs::deletion::delete_user_and_jobs(d, user.id).await?;
    tracing::info!(user_id = user.id, "user deleted their account");
    Ok(())
}
