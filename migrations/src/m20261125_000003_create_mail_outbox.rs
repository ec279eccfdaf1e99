//! The mail outbox: requests store outgoing mail here (inside their own
//! transaction) and a background worker delivers it, so no request waits on the
//! mail server and a restart loses nothing.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(MailOutbox::Table)
                    .col(
                        ColumnDef::new(MailOutbox::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // JSON arrays of addresses.
                    .col(ColumnDef::new(MailOutbox::ToAddresses).text().not_null())
                    .col(ColumnDef::new(MailOutbox::BccAddresses).text().not_null())
                    .col(ColumnDef::new(MailOutbox::Subject).text().not_null())
                    .col(ColumnDef::new(MailOutbox::Body).text().not_null())
                    .col(
                        ColumnDef::new(MailOutbox::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    // When the row is next due. A worker claims a row by moving this
                    // into the future (a lease), so replicas never send it twice
                    // concurrently and a crashed worker's row becomes due again.
                    .col(
                        ColumnDef::new(MailOutbox::NextAttemptAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(MailOutbox::LastError).text().null())
                    .col(
                        ColumnDef::new(MailOutbox::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("mail_outbox_next_attempt_at_idx")
                    .table(MailOutbox::Table)
                    .col(MailOutbox::NextAttemptAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(MailOutbox::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum MailOutbox {
    Table,
    Id,
    ToAddresses,
    BccAddresses,
    Subject,
    Body,
    Attempts,
    NextAttemptAt,
    LastError,
    CreatedAt,
}
