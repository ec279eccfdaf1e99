use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(SiteBanners::Table)
                    .col(
                        ColumnDef::new(SiteBanners::Id)
                            .big_integer()
                            .not_null()
                            .auto_increment()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(SiteBanners::Html).text().not_null())
                    .col(ColumnDef::new(SiteBanners::Urgency).integer().not_null())
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SiteBanners::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum SiteBanners {
    Table,
    Id,
    Html,
    Urgency,
}
