//! Job settings: the sets a user stored (as JSON, defaults filled in) and which of
//! them is the user's default. Deleting a user deletes both.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(JobSettings::Table)
                    .col(
                        ColumnDef::new(JobSettings::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(JobSettings::UserId).big_integer().not_null())
                    // The whole JobSettings object as JSON text: it is only ever read
                    // whole, and text behaves the same on SQLite and PostgreSQL.
                    .col(ColumnDef::new(JobSettings::Settings).text().not_null())
                    .col(
                        ColumnDef::new(JobSettings::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(JobSettings::Table, JobSettings::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Ownership checks look settings up by user, and deleting a user cascades.
        manager
            .create_index(
                Index::create()
                    .name("job_settings_user_id_idx")
                    .table(JobSettings::Table)
                    .col(JobSettings::UserId)
                    .to_owned(),
            )
            .await?;

        // One row per user at most (the primary key), so "the" default is always
        // well defined and replacing it is a single upsert, even when two requests
        // race. Project-W uses a flag plus a partial unique index instead.
        manager
            .create_table(
                Table::create()
                    .table(DefaultJobSettings::Table)
                    .col(
                        ColumnDef::new(DefaultJobSettings::UserId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(DefaultJobSettings::JobSettingsId)
                            .big_integer()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(DefaultJobSettings::Table, DefaultJobSettings::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(DefaultJobSettings::Table, DefaultJobSettings::JobSettingsId)
                            .to(JobSettings::Table, JobSettings::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // For the cascade from job_settings.
        manager
            .create_index(
                Index::create()
                    .name("default_job_settings_job_settings_id_idx")
                    .table(DefaultJobSettings::Table)
                    .col(DefaultJobSettings::JobSettingsId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(DefaultJobSettings::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(JobSettings::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum JobSettings {
    Table,
    Id,
    UserId,
    Settings,
    CreatedAt,
}

#[derive(DeriveIden)]
enum DefaultJobSettings {
    Table,
    UserId,
    JobSettingsId,
}
