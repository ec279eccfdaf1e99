//! Site banners: short notices (maintenance, outages) that `/api/about` shows
//! to every visitor, most urgent first.

use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, Set};

use crate::error::DomainResult;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "site_banners")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub html: String,
        pub urgency: i32,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteBanner {
    pub id: i64,
    pub html: String,
    pub urgency: i32,
}

impl From<entity::Model> for SiteBanner {
    fn from(model: entity::Model) -> Self {
        SiteBanner {
            id: model.id,
            html: model.html,
            urgency: model.urgency,
        }
    }
}

/// Highest urgency first; among equals, the older banner first.
pub async fn list_site_banners(db: &DatabaseConnection) -> DomainResult<Vec<SiteBanner>> {
    Ok(entity::Entity::find()
        .order_by_desc(entity::Column::Urgency)
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(SiteBanner::from)
        .collect())
}

pub async fn add_site_banner(
    db: &DatabaseConnection,
    html: String,
    urgency: i32,
) -> DomainResult<i64> {
    let banner = entity::ActiveModel {
        html: Set(html),
        urgency: Set(urgency),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(banner.id)
}

/// Deleting a banner that doesn't exist is not an error: the end state is the same.
pub async fn delete_site_banner(db: &DatabaseConnection, id: i64) -> DomainResult<()> {
    entity::Entity::delete_by_id(id).exec(db).await?;
    Ok(())
}
