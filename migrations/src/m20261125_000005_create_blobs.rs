//! Blob storage (SPEC §3.8, issue 5): `blobs` catalogues every stored blob
//! (audio, transcripts), whichever backend holds its data; `blob_chunks`
//! holds the sealed chunks of the database backend, the embedded default.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Blobs::Table)
                    // Random hex ids, also used as file names.
                    .col(
                        ColumnDef::new(Blobs::Id)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    // Plaintext bytes.
                    .col(
                        ColumnDef::new(Blobs::Size)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    // False while being written or deleted: an old incomplete row
                    // is a crash leftover that purge_orphans removes.
                    .col(
                        ColumnDef::new(Blobs::Complete)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Blobs::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("blobs_complete_created_at_idx")
                    .table(Blobs::Table)
                    .col(Blobs::Complete)
                    .col(Blobs::CreatedAt)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(BlobChunks::Table)
                    .col(ColumnDef::new(BlobChunks::BlobId).string_len(64).not_null())
                    .col(
                        ColumnDef::new(BlobChunks::ChunkIndex)
                            .big_integer()
                            .not_null(),
                    )
                    // Sealed chunk: header, ciphertext, tag (about 64 KiB).
                    .col(ColumnDef::new(BlobChunks::Data).blob().not_null())
                    .primary_key(
                        Index::create()
                            .col(BlobChunks::BlobId)
                            .col(BlobChunks::ChunkIndex),
                    )
                    // No chunk can outlive its catalogue row, so none can leak.
                    .foreign_key(
                        ForeignKey::create()
                            .from(BlobChunks::Table, BlobChunks::BlobId)
                            .to(Blobs::Table, Blobs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        if manager.get_database_backend() == DbBackend::Postgres {
            // Ciphertext doesn't compress: store it out of line without
            // PostgreSQL trying to first.
            manager
                .get_connection()
                .execute_unprepared(
                    "ALTER TABLE blob_chunks ALTER COLUMN data SET STORAGE EXTERNAL",
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(BlobChunks::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Blobs::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Blobs {
    Table,
    Id,
    Size,
    Complete,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BlobChunks {
    Table,
    BlobId,
    ChunkIndex,
    Data,
}
