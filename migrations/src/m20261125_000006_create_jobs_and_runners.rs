//! Jobs, runners and online runner sessions. The queue and the assignments are
//! rows here (SPEC §2 "State"): a restart loses nothing and several replicas can
//! schedule on one PostgreSQL database.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Runners::Table)
                    .col(
                        ColumnDef::new(Runners::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // hex SHA-256 of the runner token
                    .col(ColumnDef::new(Runners::TokenHash).string_len(64).not_null())
                    .col(
                        ColumnDef::new(Runners::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("runners_token_hash_key")
                    .table(Runners::Table)
                    .col(Runners::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .col(
                        ColumnDef::new(Jobs::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Jobs::UserId).big_integer().not_null())
                    .col(ColumnDef::new(Jobs::FileName).text().not_null())
                    // the uploaded part's audio/* or video/* type, served back to runners
                    .col(ColumnDef::new(Jobs::ContentType).string_len(255).not_null())
                    .col(ColumnDef::new(Jobs::AudioBlobId).string_len(64).null())
                    .col(
                        ColumnDef::new(Jobs::AudioSize)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    // the JobSettings the job was submitted with, as JSON
                    .col(ColumnDef::new(Jobs::Settings).text().not_null())
                    // not_queued | pending_runner | runner_assigned | runner_in_progress
                    // | aborting | success | failed | downloaded
                    .col(ColumnDef::new(Jobs::Step).string_len(32).not_null())
                    .col(
                        ColumnDef::new(Jobs::Progress)
                            .double()
                            .not_null()
                            .default(0.0),
                    )
                    .col(
                        ColumnDef::new(Jobs::AbortRequested)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Jobs::ErrorMsg).text().null())
                    .col(ColumnDef::new(Jobs::TranscriptBlobId).string_len(64).null())
                    // the runner holding or last having held the job, and its
                    // self-description at the time (kept after it goes away)
                    .col(ColumnDef::new(Jobs::RunnerId).big_integer().null())
                    .col(ColumnDef::new(Jobs::RunnerName).string_len(40).null())
                    .col(ColumnDef::new(Jobs::RunnerVersion).text().null())
                    .col(ColumnDef::new(Jobs::RunnerGitHash).string_len(40).null())
                    .col(ColumnDef::new(Jobs::RunnerSourceCodeUrl).text().null())
                    .col(
                        ColumnDef::new(Jobs::CreationTimestamp)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Jobs::FinishTimestamp)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Jobs::Table, Jobs::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Jobs::Table, Jobs::RunnerId)
                            .to(Runners::Table, Runners::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        for (name, columns) in [
            ("jobs_user_id_idx", vec![Jobs::UserId, Jobs::Id]),
            (
                "jobs_user_file_name_idx",
                vec![Jobs::UserId, Jobs::FileName, Jobs::Id],
            ),
            ("jobs_step_idx", vec![Jobs::Step, Jobs::Id]),
            ("jobs_finish_timestamp_idx", vec![Jobs::FinishTimestamp]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Jobs::Table);
            for column in columns {
                index.col(column);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(RunnerSessions::Table)
                    .col(
                        ColumnDef::new(RunnerSessions::RunnerId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(RunnerSessions::SessionTokenHash)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RunnerSessions::Name)
                            .string_len(40)
                            .not_null(),
                    )
                    .col(ColumnDef::new(RunnerSessions::Version).text().not_null())
                    .col(
                        ColumnDef::new(RunnerSessions::GitHash)
                            .string_len(40)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RunnerSessions::SourceCodeUrl)
                            .text()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RunnerSessions::Priority)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RunnerSessions::RegisteredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(RunnerSessions::LastHeartbeat)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    // the job assigned to this runner; unique: one job, one runner
                    .col(ColumnDef::new(RunnerSessions::JobId).big_integer().null())
                    // true once the runner fetched the audio (SPEC §3.6)
                    .col(
                        ColumnDef::new(RunnerSessions::JobInProgress)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RunnerSessions::Table, RunnerSessions::RunnerId)
                            .to(Runners::Table, Runners::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(RunnerSessions::Table, RunnerSessions::JobId)
                            .to(Jobs::Table, Jobs::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("runner_sessions_job_id_key")
                    .table(RunnerSessions::Table)
                    .col(RunnerSessions::JobId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            RunnerSessions::Table.into_iden(),
            Jobs::Table.into_iden(),
            Runners::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Runners {
    Table,
    Id,
    TokenHash,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    UserId,
    FileName,
    ContentType,
    AudioBlobId,
    AudioSize,
    Settings,
    Step,
    Progress,
    AbortRequested,
    ErrorMsg,
    TranscriptBlobId,
    RunnerId,
    RunnerName,
    RunnerVersion,
    RunnerGitHash,
    RunnerSourceCodeUrl,
    CreationTimestamp,
    FinishTimestamp,
}

#[derive(DeriveIden)]
enum RunnerSessions {
    Table,
    RunnerId,
    SessionTokenHash,
    Name,
    Version,
    GitHash,
    SourceCodeUrl,
    Priority,
    RegisteredAt,
    LastHeartbeat,
    JobId,
    JobInProgress,
}
