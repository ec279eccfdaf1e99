//! Site banners: short notices (maintenance, outages) that `/api/about` shows
//! to every visitor, most urgent first.
//!
//! `/api/about` is the most requested route (every page load of the frontend),
//! so the list is cached for a second instead of queried per request. Changes
//! made through this replica show at once; other replicas' within the second.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, Set};

use crate::error::DomainResult;
use crate::Domain;

const CACHE_LIFETIME: Duration = Duration::from_secs(1);

/// When the list was read, and the list.
type Cached = Option<(Instant, Arc<Vec<SiteBanner>>)>;

/// The cached banner list; shared by every clone of the `Domain`.
#[derive(Debug, Clone, Default)]
pub struct BannerCache {
    cached: Arc<RwLock<Cached>>,
}

impl BannerCache {
    fn fresh(&self) -> Option<Arc<Vec<SiteBanner>>> {
        let cached = self.cached.read().ok()?;
        cached
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CACHE_LIFETIME)
            .map(|(_, banners)| banners.clone())
    }

    fn store(&self, banners: Arc<Vec<SiteBanner>>) {
        if let Ok(mut cached) = self.cached.write() {
            *cached = Some((Instant::now(), banners));
        }
    }

    fn invalidate(&self) {
        if let Ok(mut cached) = self.cached.write() {
            *cached = None;
        }
    }
}

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
pub async fn list_site_banners(d: &Domain) -> DomainResult<Arc<Vec<SiteBanner>>> {
    if let Some(banners) = d.banners.fresh() {
        return Ok(banners);
    }
    let banners = Arc::new(query_site_banners(&d.db).await?);
    d.banners.store(banners.clone());
    Ok(banners)
}

async fn query_site_banners(db: &DatabaseConnection) -> DomainResult<Vec<SiteBanner>> {
    Ok(entity::Entity::find()
        .order_by_desc(entity::Column::Urgency)
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(SiteBanner::from)
        .collect())
}

pub async fn add_site_banner(d: &Domain, html: String, urgency: i32) -> DomainResult<i64> {
    let banner = entity::ActiveModel {
        html: Set(html),
        urgency: Set(urgency),
        ..Default::default()
    }
    .insert(&d.db)
    .await?;
    d.banners.invalidate();
    Ok(banner.id)
}

/// Deleting a banner that doesn't exist is not an error: the end state is the same.
pub async fn delete_site_banner(d: &Domain, id: i64) -> DomainResult<()> {
    entity::Entity::delete_by_id(id).exec(&d.db).await?;
    d.banners.invalidate();
    Ok(())
}
