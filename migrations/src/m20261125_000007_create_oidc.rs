//! OpenID Connect logins: each OIDC user's latest refresh token (encrypted, for
//! revalidation), and the `state` values of login responses already used, so
//! that a replayed callback is refused by every replica.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OidcRefreshTokens::Table)
                    .col(
                        ColumnDef::new(OidcRefreshTokens::UserId)
                            .big_integer()
                            .not_null()
                            .primary_key(),
                    )
                    // XChaCha20-Poly1305 under a key derived from secret_key, bound to the user
                    .col(
                        ColumnDef::new(OidcRefreshTokens::Ciphertext)
                            .blob()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(OidcRefreshTokens::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(OidcRefreshTokens::Table, OidcRefreshTokens::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(OidcUsedStates::Table)
                    // hex SHA-256 of the state value; the primary key makes a second use fail
                    .col(
                        ColumnDef::new(OidcUsedStates::StateHash)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    // when the login flow it belonged to expired; the row can go after that
                    .col(
                        ColumnDef::new(OidcUsedStates::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("oidc_used_states_expires_at_idx")
                    .table(OidcUsedStates::Table)
                    .col(OidcUsedStates::ExpiresAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OidcUsedStates::Table.into_iden(),
            OidcRefreshTokens::Table.into_iden(),
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
enum OidcRefreshTokens {
    Table,
    UserId,
    Ciphertext,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OidcUsedStates {
    Table,
    StateHash,
    ExpiresAt,
}
