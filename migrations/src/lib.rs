//! Scribe's schema. One file per change, never edited once released; `Migrator`
//! lists them in order. Runs at start-up and with `scribe migrate`.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_create_site_banners;
mod m20261125_000002_create_accounts;
mod m20261125_000003_create_mail_outbox;
mod m20261125_000004_create_job_settings;
mod m20261125_000005_create_blobs;
mod m20261125_000006_create_jobs_and_runners;
mod m20261125_000007_create_oidc;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_site_banners::Migration),
            Box::new(m20261125_000002_create_accounts::Migration),
            Box::new(m20261125_000003_create_mail_outbox::Migration),
            Box::new(m20261125_000004_create_job_settings::Migration),
            Box::new(m20261125_000005_create_blobs::Migration),
            Box::new(m20261125_000006_create_jobs_and_runners::Migration),
            Box::new(m20261125_000007_create_oidc::Migration),
        ]
    }
}
