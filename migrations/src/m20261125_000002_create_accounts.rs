//! Users of every kind (local, LDAP, OIDC) in one table, their ToS acceptances,
//! their tokens (stored only as hashes), and failed logins for throttling.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(
                        ColumnDef::new(Users::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Users::Email).string_len(320).not_null())
                    // local | ldap | oidc
                    .col(ColumnDef::new(Users::UserType).string_len(16).not_null())
                    // "project-W" for local accounts, else the configured provider name
                    .col(
                        ColumnDef::new(Users::ProviderName)
                            .string_len(255)
                            .not_null(),
                    )
                    // OIDC: "<iss> <sub>"; LDAP: the uid attribute; local: null
                    .col(ColumnDef::new(Users::ExternalId).string_len(1024).null())
                    .col(ColumnDef::new(Users::PasswordHash).text().null())
                    .col(
                        ColumnDef::new(Users::IsVerified)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Users::IsAdmin)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(Users::ProvisionNumber).big_integer().null())
                    // Bumped when a link of that purpose is used or re-sent, which
                    // makes every earlier link of that purpose invalid (single use).
                    .col(
                        ColumnDef::new(Users::ActivationGeneration)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Users::PasswordResetGeneration)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Users::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_provider_email_key")
                    .table(Users::Table)
                    .col(Users::UserType)
                    .col(Users::ProviderName)
                    .col(Users::Email)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_provider_external_id_key")
                    .table(Users::Table)
                    .col(Users::UserType)
                    .col(Users::ProviderName)
                    .col(Users::ExternalId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("users_provision_number_key")
                    .table(Users::Table)
                    .col(Users::ProvisionNumber)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(TosAcceptances::Table)
                    .col(
                        ColumnDef::new(TosAcceptances::UserId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TosAcceptances::TosId)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(TosAcceptances::Version)
                            .big_integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(TosAcceptances::UserId)
                            .col(TosAcceptances::TosId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(TosAcceptances::Table, TosAcceptances::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tokens::Table)
                    .col(
                        ColumnDef::new(Tokens::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Tokens::UserId).big_integer().not_null())
                    .col(ColumnDef::new(Tokens::Name).text().not_null())
                    // hex SHA-256 of the token value
                    .col(ColumnDef::new(Tokens::TokenHash).string_len(64).not_null())
                    // the value before the last rotation, valid for a short grace period
                    .col(ColumnDef::new(Tokens::PreviousHash).string_len(64).null())
                    .col(
                        ColumnDef::new(Tokens::PreviousValidUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Tokens::AdminPrivileges)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Tokens::Explicit)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Tokens::ExpiresAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Tokens::LastUsage)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tokens::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Tokens::Table, Tokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tokens_token_hash_key")
                    .table(Tokens::Table)
                    .col(Tokens::TokenHash)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tokens_previous_hash_idx")
                    .table(Tokens::Table)
                    .col(Tokens::PreviousHash)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("tokens_user_id_idx")
                    .table(Tokens::Table)
                    .col(Tokens::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LoginFailures::Table)
                    .col(
                        ColumnDef::new(LoginFailures::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    // the normalised login name (email or LDAP username), with the provider
                    .col(
                        ColumnDef::new(LoginFailures::Account)
                            .string_len(512)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LoginFailures::ClientAddress)
                            .string_len(64)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LoginFailures::FailedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("login_failures_account_idx")
                    .table(LoginFailures::Table)
                    .col(LoginFailures::Account)
                    .col(LoginFailures::FailedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("login_failures_address_idx")
                    .table(LoginFailures::Table)
                    .col(LoginFailures::ClientAddress)
                    .col(LoginFailures::FailedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            LoginFailures::Table.into_iden(),
            Tokens::Table.into_iden(),
            TosAcceptances::Table.into_iden(),
            Users::Table.into_iden(),
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
    Email,
    UserType,
    ProviderName,
    ExternalId,
    PasswordHash,
    IsVerified,
    IsAdmin,
    ProvisionNumber,
    ActivationGeneration,
    PasswordResetGeneration,
    CreatedAt,
}

#[derive(DeriveIden)]
enum TosAcceptances {
    Table,
    UserId,
    TosId,
    Version,
}

#[derive(DeriveIden)]
enum Tokens {
    Table,
    Id,
    UserId,
    Name,
    TokenHash,
    PreviousHash,
    PreviousValidUntil,
    AdminPrivileges,
    Explicit,
    ExpiresAt,
    LastUsage,
    CreatedAt,
}

#[derive(DeriveIden)]
enum LoginFailures {
    Table,
    Id,
    Account,
    ClientAddress,
    FailedAt,
}
